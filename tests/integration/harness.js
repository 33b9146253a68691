'use strict';
// Shared helpers for wshub's Node integration tests: start/stop the server binary
// (WSHUB_BIN), WebSocket clients whose events are queued from the moment they are
// created (no message or close can be missed), and a raw HTTP client over net.Socket.
// Every wait has a timeout so that no test can hang.

const { spawn } = require('node:child_process');
const net = require('node:net');
const http = require('node:http');
const assert = require('node:assert/strict');
const WebSocket = require('ws');

const BIN = process.env.WSHUB_BIN;
const HOST = '127.0.0.1';
const DEFAULT_TIMEOUT_MS = 5000;

// Under ctest these come from tests.cmake; the same defaults when run by hand, so a
// leak (99) or undefined behaviour (98) in a sanitizer build is an exit-code failure.
const SANITIZER_ENV = {
  ASAN_OPTIONS: process.env.ASAN_OPTIONS ?? 'detect_leaks=1:abort_on_error=0:exitcode=99',
  UBSAN_OPTIONS: process.env.UBSAN_OPTIONS ?? 'print_stacktrace=1:halt_on_error=1:exitcode=98',
};

// Processes started here and not yet reaped: killed (by PID) if the test process
// exits without stopping them, so a failing test never leaves a server behind.
const live = new Set();
process.on('exit', () => {
  for (const proc of live) {
    try {
      process.kill(proc.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

function requireBin() {
  assert.ok(BIN, 'WSHUB_BIN must name the wshub binary under test');
  return BIN;
}

// Rejects with `what` when p has not settled within ms.
function withTimeout(p, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

const delay = (ms) => new Promise((r) => setTimeout(r, ms));

function describeExit(code, signal) {
  return signal ? `signal ${signal}` : `exit code ${code}`;
}

// Resolves {code, signal} when proc exits (immediately if it already has).
function exited(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null)
    return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode });
  return new Promise((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

// Runs wshub to completion (for --help, bad options...): {code, signal, stdout, stderr}.
async function runWshub(args, { env = {}, timeout = DEFAULT_TIMEOUT_MS } = {}) {
  const proc = spawn(requireBin(), args, {
    env: { ...process.env, ...SANITIZER_ENV, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  proc.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const closed = new Promise((resolve) => proc.once('close', resolve));
  try {
    await withTimeout(closed, timeout, `wshub ${args.join(' ')} to exit`);
  } catch (e) {
    proc.kill('SIGKILL');
    await exited(proc);
    throw new Error(`${e.message}\n--- stderr ---\n${stderr}`);
  } finally {
    live.delete(proc);
  }
  return { code: proc.exitCode, signal: proc.signalCode, stdout, stderr };
}

// Starts wshub on 127.0.0.1 with an ephemeral port. Options:
//   threads: --threads N (default 2, so runs do not depend on the machine's CPUs)
//   env:     extra environment variables
//   timeout: how long to wait for the "listening" line
// Returns {port, url, wsUrl(path), proc, stderr(), stop(opts)}.
async function startServer(args = [], { threads = 2, env = {}, timeout = DEFAULT_TIMEOUT_MS } = {}) {
  const argv = ['--listen', `${HOST}:0`];
  if (threads !== null && threads !== undefined) argv.push('--threads', String(threads));
  argv.push(...args);
  const proc = spawn(requireBin(), argv, {
    env: { ...process.env, ...SANITIZER_ENV, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(proc);
  let stderr = '';
  let stdout = '';
  proc.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  proc.stderr.setEncoding('utf8');
  const exit = exited(proc);
  exit.then(() => live.delete(proc));

  const port = await withTimeout(
    new Promise((resolve, reject) => {
      proc.stderr.on('data', (d) => {
        stderr += d;
        const m = /msg=listening\b.*?\bport=(\d+)/.exec(stderr) ||
          /"msg":"listening".*?"port":"?(\d+)/.exec(stderr);
        if (m) resolve(Number(m[1]));
      });
      proc.once('error', reject);
      exit.then(({ code, signal }) =>
        reject(new Error(`wshub exited (${describeExit(code, signal)}) before listening\n` +
          `args: ${argv.join(' ')}\n--- stderr ---\n${stderr}`)));
    }),
    timeout,
    `wshub to log its listening port (args: ${argv.join(' ')})`,
  ).catch((e) => {
    proc.kill('SIGKILL');
    throw new Error(`${e.message}\n--- stderr so far ---\n${stderr}`);
  });

  let stopping = null;
  const server = {
    port,
    proc,
    pid: proc.pid,
    url: `ws://${HOST}:${port}/echo`,
    httpUrl: `http://${HOST}:${port}`,
    wsUrl: (path = '/echo') => `ws://${HOST}:${port}${path}`,
    stderr: () => stderr,
    stdout: () => stdout,
    exited: exit,
    // SIGTERM, wait for the exit (SIGKILL and fail after timeout), assert exit code 0.
    stop({ timeout: stopTimeout = DEFAULT_TIMEOUT_MS } = {}) {
      if (stopping) return stopping;
      stopping = (async () => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
        let res;
        try {
          res = await withTimeout(exit, stopTimeout, `wshub (pid ${proc.pid}) to exit after SIGTERM`);
        } catch (e) {
          proc.kill('SIGKILL');
          await exit;
          throw new Error(`${e.message}; killed it\n--- stderr ---\n${stderr}`);
        }
        // let the stderr pipe drain so failure messages are complete
        await withTimeout(new Promise((r) => (proc.stderr.readableEnded ? r() : proc.stderr.once('end', r))),
          1000, 'stderr end').catch(() => {});
        assert.equal(res.signal, null,
          `wshub died of ${res.signal}\n--- stderr ---\n${stderr}`);
        assert.equal(res.code, 0,
          `wshub exited with code ${res.code} (99: leak, 98: UB under sanitizers)\n--- stderr ---\n${stderr}`);
        return res;
      })();
      return stopping;
    },
  };
  return server;
}

// ---------------------------------------------------------------- WebSocket clients

const STATE = Symbol('wshub-test-state');

// Attaches queues to ws: messages, pongs and the close are recorded from the start.
function track(ws) {
  const st = {
    messages: [],
    msgWaiters: [],
    pongs: [],
    pongWaiters: [],
    errors: [],
    close: null,
    closeWaiters: [],
  };
  ws[STATE] = st;
  ws.on('message', (data, isBinary) => {
    const m = { data, isBinary };
    const w = st.msgWaiters.shift();
    if (w) w.resolve(m);
    else st.messages.push(m);
  });
  ws.on('pong', (data) => {
    const w = st.pongWaiters.shift();
    if (w) w.resolve(data);
    else st.pongs.push(data);
  });
  ws.on('error', (err) => st.errors.push(err));
  ws.on('close', (code, reason) => {
    st.close = { code, reason: reason.toString('utf8') };
    for (const w of st.closeWaiters.splice(0)) w.resolve(st.close);
    const err = new Error(`connection closed (code ${code}) while waiting`);
    for (const w of st.msgWaiters.splice(0)) w.reject(err);
    for (const w of st.pongWaiters.splice(0)) w.reject(err);
  });
  return ws;
}

// Opens a WebSocket (offering `protocols`, if given); resolves with it once open.
// Rejects on error, a non-101 answer, or timeout.
function connect(url, { timeout = DEFAULT_TIMEOUT_MS, protocols, ...opts } = {}) {
  const ws = track(new WebSocket(url, protocols, { perMessageDeflate: true, ...opts }));
  const opened = new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) => {
      const e = new Error(`unexpected HTTP ${res.statusCode} to the upgrade`);
      e.statusCode = res.statusCode;
      res.resume();
      req.destroy();
      reject(e);
    });
    ws.once('close', (code) => reject(new Error(`closed (${code}) before open`)));
  });
  return withTimeout(opened, timeout, `WebSocket open ${url}`).catch((e) => {
    ws.terminate();
    throw e;
  });
}

function waiter(queue, waiters, closed, timeout, what) {
  if (queue.length) return Promise.resolve(queue.shift());
  if (closed) return Promise.reject(new Error(`connection already closed (code ${closed.code}): ${what}`));
  let entry;
  const p = new Promise((resolve, reject) => {
    entry = { resolve, reject };
    waiters.push(entry);
  });
  return withTimeout(p, timeout, what).catch((e) => {
    const i = waiters.indexOf(entry);
    if (i >= 0) waiters.splice(i, 1);
    throw e;
  });
}

// Next message: {data: Buffer, isBinary}.
function nextMessage(ws, timeout = DEFAULT_TIMEOUT_MS) {
  const st = ws[STATE];
  return waiter(st.messages, st.msgWaiters, st.close, timeout, 'next message');
}

// Next n messages, in order.
async function nextMessages(ws, n, timeout = DEFAULT_TIMEOUT_MS) {
  const st = ws[STATE];
  const deadline = Date.now() + timeout;
  const out = [];
  while (out.length < n) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`timed out: got ${out.length} of ${n} messages`);
    out.push(await waiter(st.messages, st.msgWaiters, st.close, left,
      `message ${out.length + 1} of ${n}`));
  }
  return out;
}

function nextPong(ws, timeout = DEFAULT_TIMEOUT_MS) {
  const st = ws[STATE];
  return waiter(st.pongs, st.pongWaiters, st.close, timeout, 'pong');
}

// Resolves {code, reason} when the connection closes.
function waitClose(ws, timeout = DEFAULT_TIMEOUT_MS) {
  const st = ws[STATE];
  if (st.close) return Promise.resolve(st.close);
  let entry;
  const p = new Promise((resolve, reject) => {
    entry = { resolve, reject };
    st.closeWaiters.push(entry);
  });
  return withTimeout(p, timeout, 'WebSocket close').catch((e) => {
    const i = st.closeWaiters.indexOf(entry);
    if (i >= 0) st.closeWaiters.splice(i, 1);
    throw e;
  });
}

// Unread messages (for asserting that nothing else arrived).
function pendingMessages(ws) {
  return ws[STATE].messages.length;
}

// Sends and resolves once ws has handed the data to the socket.
function sendAsync(ws, data, opts = {}) {
  return new Promise((resolve, reject) => ws.send(data, opts, (err) => (err ? reject(err) : resolve())));
}

// ---------------------------------------------------------------- HTTP helpers

// One HTTP request with the http module: {status, headers, body: string}.
function httpGet(port, path, { method = 'GET', headers = {}, timeout = DEFAULT_TIMEOUT_MS } = {}) {
  const p = new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port, path, method, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode, headers: res.headers, body: '', upgraded: true });
    });
    req.end();
  });
  return withTimeout(p, timeout, `${method} ${path}`);
}

// A raw HTTP/1.x client over net.Socket that parses responses off a byte stream.
class RawClient {
  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.ended = false;
    this.error = null;
    this.waiters = [];
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this._wake();
    });
    sock.on('end', () => {
      this.ended = true;
      this._wake();
    });
    sock.on('error', (e) => {
      this.error = e;
      this._wake();
    });
    sock.on('close', () => {
      this.ended = true;
      this._wake();
    });
  }

  static connect(port, timeout = DEFAULT_TIMEOUT_MS) {
    const sock = net.connect({ host: HOST, port });
    const c = new RawClient(sock);
    return withTimeout(
      new Promise((resolve, reject) => {
        sock.once('connect', () => resolve(c));
        sock.once('error', reject);
      }),
      timeout,
      `TCP connect to ${port}`,
    ).catch((e) => {
      sock.destroy();
      throw e;
    });
  }

  write(data) {
    this.sock.write(data);
  }

  _wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  _until(check, timeout, what) {
    return withTimeout(
      new Promise((resolve, reject) => {
        const test = () => {
          let r;
          try {
            r = check();
          } catch (e) {
            reject(e);
            return;
          }
          if (r !== undefined) resolve(r);
          else this.waiters.push(test);
        };
        test();
      }),
      timeout,
      what,
    );
  }

  // Parses one response from the buffer, or returns undefined when incomplete.
  // head: the request was HEAD (no body whatever Content-Length says).
  _parse(head) {
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const lines = this.buf.subarray(0, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i <= 0) throw new Error(`bad header line: ${JSON.stringify(l)}`);
      const k = l.slice(0, i).trim().toLowerCase();
      const v = l.slice(i + 1).trim();
      headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
    }
    let len = 0;
    if (!head) {
      if (headers['transfer-encoding']) throw new Error('chunked responses not supported here');
      if (headers['content-length'] === undefined)
        throw new Error(`response without Content-Length: ${lines[0]}`);
      len = Number(headers['content-length']);
    }
    const start = end + 4;
    if (this.buf.length < start + len) return undefined;
    const body = this.buf.subarray(start, start + len).toString('utf8');
    this.buf = this.buf.subarray(start + len);
    return { version: `1.${m[1]}`, status: Number(m[2]), reason: m[3] || '', headers, body };
  }

  // Next complete response.
  readResponse({ head = false, timeout = DEFAULT_TIMEOUT_MS } = {}) {
    return this._until(() => {
      const r = this._parse(head);
      if (r) return r;
      if (this.ended || this.error)
        throw new Error(`connection ended before a complete response ` +
          `(${this.error ? this.error.code : 'EOF'}); have ${JSON.stringify(this.buf.toString('latin1'))}`);
      return undefined;
    }, timeout, 'HTTP response');
  }

  // Resolves once the server has closed the connection; returns any bytes left over.
  waitEnd(timeout = DEFAULT_TIMEOUT_MS) {
    return this._until(() => (this.ended || this.error ? this.buf : undefined), timeout,
      'server to close the connection');
  }

  // Resolves true if the connection is still open after ms.
  async stillOpenAfter(ms) {
    await delay(ms);
    return !this.ended && !this.error;
  }

  destroy() {
    this.sock.destroy();
  }
}

module.exports = {
  BIN,
  HOST,
  DEFAULT_TIMEOUT_MS,
  withTimeout,
  delay,
  startServer,
  runWshub,
  connect,
  track,
  nextMessage,
  nextMessages,
  nextPong,
  waitClose,
  pendingMessages,
  sendAsync,
  httpGet,
  RawClient,
};
