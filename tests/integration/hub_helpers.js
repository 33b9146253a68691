'use strict';
// Helpers for the hub's integration tests (hub*.test.js), on top of harness.js:
// a JSON client for /ws whose received messages are kept in a buffer that tests take
// from by predicate (so an unrelated presence event never gets in the way), HTTP
// requests with a body, a /metrics parser and JWT builders. Every wait is bounded.

const http = require('node:http');
const crypto = require('node:crypto');
const assert = require('node:assert/strict');

const harness = require('./harness');

const WebSocket = require('ws');

const { HOST, connect, withTimeout, delay } = harness;

const DEFAULT_TIMEOUT_MS = 5000;
let idCounter = 0;
const nextId = (prefix = 'id') => `${prefix}-${++idCounter}`;

// One /ws connection speaking the hub's JSON envelope.
class HubClient {
  constructor(ws, user) {
    this.ws = ws;
    this.user = user;
    this.msgs = []; // parsed, not yet taken
    this.all = []; // every parsed message, in arrival order (for debugging/asserts)
    this.binary = [];
    this.waiters = [];
    this.closed = null;
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        this.binary.push(data);
        return;
      }
      let m;
      try {
        m = JSON.parse(data.toString('utf8'));
      } catch (e) {
        m = { type: '__unparsable__', raw: data.toString('utf8') };
      }
      this.msgs.push(m);
      this.all.push(m);
      this._wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString('utf8') };
      this._wake();
    });
  }

  // Connects to /ws?token=USER, or to `path` (e.g. '/ws' with a header token); opts go
  // to the ws client (headers, ...); protocols: offered subprotocols.
  static async open(srv, user, { path, protocols, timeout, ...opts } = {}) {
    const url = srv.wsUrl(path || `/ws?token=${encodeURIComponent(user)}`);
    const ws = protocols
      ? await connectWithProtocols(url, protocols, { timeout, ...opts })
      : await connect(url, { timeout, ...opts });
    return new HubClient(ws, user);
  }

  _wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  get isOpen() {
    return this.ws.readyState === this.ws.OPEN;
  }

  send(type, payload, extra = {}) {
    const o = { type, ...extra };
    if (payload !== undefined) o.payload = payload;
    this.ws.send(JSON.stringify(o));
  }

  sendRaw(data, { binary = false } = {}) {
    this.ws.send(data, { binary });
  }

  // Takes (removes and returns) the first buffered message matching pred, waiting for
  // one up to timeout. Rejects on timeout or close, listing what is buffered.
  take(pred = () => true, timeout = DEFAULT_TIMEOUT_MS, what = 'a matching message') {
    const deadline = Date.now() + timeout;
    return new Promise((resolve, reject) => {
      const check = () => {
        const i = this.msgs.findIndex(pred);
        if (i >= 0) {
          resolve(this.msgs.splice(i, 1)[0]);
          return;
        }
        if (this.closed) {
          reject(new Error(`${this.user}: connection closed (${this.closed.code} ${this.closed.reason}) ` +
            `while waiting for ${what}; buffered: ${this._dump()}`));
          return;
        }
        const left = deadline - Date.now();
        if (left <= 0) {
          reject(new Error(`${this.user}: timed out after ${timeout} ms waiting for ${what}; ` +
            `buffered: ${this._dump()}`));
          return;
        }
        const t = setTimeout(() => {
          const k = this.waiters.indexOf(onWake);
          if (k >= 0) this.waiters.splice(k, 1);
          check();
        }, left);
        const onWake = () => {
          clearTimeout(t);
          check();
        };
        this.waiters.push(onWake);
      };
      check();
    });
  }

  takeType(type, timeout, extraPred = () => true) {
    return this.take((m) => m.type === type && extraPred(m), timeout, `a "${type}" message`);
  }

  // Takes n matching messages in arrival order.
  async takeN(pred, n, timeout = DEFAULT_TIMEOUT_MS, what = 'messages') {
    const deadline = Date.now() + timeout;
    const out = [];
    while (out.length < n) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`${this.user}: got ${out.length} of ${n} ${what}; buffered: ${this._dump()}`);
      out.push(await this.take(pred, left, `${what} ${out.length + 1} of ${n}`));
    }
    return out;
  }

  // Sends a message with an id and takes the server's direct answer to it: a message
  // carrying that id at the top level (room_joined, room_left, query replies) or in
  // its payload (ack, error).
  async request(type, payload, { id = nextId(type), timeout = DEFAULT_TIMEOUT_MS, extra = {} } = {}) {
    this.send(type, payload, { id, ...extra });
    return this.take((m) => m.id === id || (m.payload && m.payload.id === id), timeout,
      `the answer to ${type} id=${id}`);
  }

  async join(room, { presence } = {}) {
    const p = { room_id: room };
    if (presence !== undefined) p.presence = presence;
    const r = await this.request('join_room', p);
    assert.equal(r.type, 'room_joined', `${this.user} join ${room}: ${JSON.stringify(r)}`);
    assert.equal(r.payload.room_id, room);
    return r;
  }

  async leave(room) {
    const r = await this.request('leave_room', { room_id: room });
    assert.equal(r.type, 'room_left', `${this.user} leave ${room}: ${JSON.stringify(r)}`);
    return r;
  }

  // Sends an error-provoking text and takes the error (by id when given).
  async expectError(raw, code, { id, timeout = DEFAULT_TIMEOUT_MS } = {}) {
    this.sendRaw(typeof raw === 'string' ? raw : JSON.stringify(raw));
    const e = await this.take((m) => m.type === 'error' && (id === undefined || m.payload.id === id),
      timeout, `error ${code}${id !== undefined ? ` id=${JSON.stringify(id)}` : ''}`);
    assert.equal(e.payload.code, code, `error for ${typeof raw === 'string' ? raw : JSON.stringify(raw)}: ` +
      JSON.stringify(e));
    assert.equal(typeof e.payload.message, 'string');
    if (id !== undefined) assert.deepEqual(e.payload.id, id, 'error echoes the id');
    return e;
  }

  // Round trip that proves the connection still works (and that everything the server
  // sent before the pong has arrived).
  async ping(timeout = DEFAULT_TIMEOUT_MS) {
    const r = await this.request('ping', undefined, { timeout });
    assert.equal(r.type, 'pong', JSON.stringify(r));
    return r;
  }

  // Asserts that no buffered or arriving message matches pred within ms.
  async expectNone(pred, ms = 300, what = 'an unexpected message') {
    await delay(ms);
    const bad = this.msgs.filter(pred);
    assert.equal(bad.length, 0, `${this.user} got ${what}: ${JSON.stringify(bad).slice(0, 2000)}`);
  }

  // Discards buffered messages matching pred (all when omitted).
  discard(pred = () => true) {
    this.msgs = this.msgs.filter((m) => !pred(m));
  }

  // Resolves {code, reason} when the connection closes.
  waitClose(timeout = DEFAULT_TIMEOUT_MS) {
    if (this.closed) return Promise.resolve(this.closed);
    return withTimeout(new Promise((resolve) => {
      const check = () => {
        if (this.closed) resolve(this.closed);
        else this.waiters.push(check);
      };
      check();
    }), timeout, `${this.user}: WebSocket close`);
  }

  async close() {
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) {
      try {
        this.ws.close(1000);
      } catch {
        /* not open yet */
      }
    }
    if (this.ws.readyState !== this.ws.CLOSED) await this.waitClose(3000).catch(() => this.ws.terminate());
  }

  _dump() {
    const s = JSON.stringify(this.msgs.slice(0, 20));
    return s.length > 1500 ? `${s.slice(0, 1500)}... (${this.msgs.length} messages)` : s;
  }
}

// harness.connect with subprotocols offered.
function connectWithProtocols(url, protocols, opts = {}) {
  return harness.connect(url, { ...opts, protocols });
}

async function closeAll(clients) {
  await Promise.all(clients.splice(0).map((c) => c.close()));
}

// ---------------------------------------------------------------- HTTP

// {status, headers, body (string), json (parsed or undefined)}.
function request(srv, method, path, { headers = {}, body, timeout = DEFAULT_TIMEOUT_MS } = {}) {
  const port = typeof srv === 'number' ? srv : srv.port;
  const data = body === undefined ? undefined
    : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body), 'utf8');
  const h = { ...headers };
  if (data) {
    if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['Content-Type'] = 'application/json';
    h['Content-Length'] = data.length;
  }
  const p = new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port, path, method, headers: h, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode, headers: res.headers, body: '', json: undefined, upgraded: true });
    });
    if (data) req.write(data);
    req.end();
  });
  return withTimeout(p, timeout, `${method} ${path}`);
}

const getJson = (srv, path, opts) => request(srv, 'GET', path, opts);

// POST /api/publish with the key (or none).
function publish(srv, body, { key, via = 'x-api-key', headers = {} } = {}) {
  const h = { ...headers };
  if (key !== undefined) {
    if (via === 'bearer') h.Authorization = `Bearer ${key}`;
    else h['X-API-Key'] = key;
  }
  return request(srv, 'POST', '/api/publish', { headers: h, body });
}

// Parses Prometheus text: Map from `name{labels}` (as printed) to number.
async function metrics(srv) {
  const r = await request(srv, 'GET', '/metrics');
  assert.equal(r.status, 200, `/metrics: ${r.status} ${r.body}`);
  const m = new Map();
  for (const line of r.body.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

function metric(map, key) {
  assert.ok(map.has(key), `metric ${key} missing; have ${[...map.keys()].join(', ')}`);
  return map.get(key);
}

// Polls fn until it returns a truthy value (returned) or timeout (throws).
async function eventually(fn, { timeout = DEFAULT_TIMEOUT_MS, interval = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await delay(interval);
  }
}

// ---------------------------------------------------------------- JWT

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function jwtParts(header, payload) {
  return `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
}

function signHS256(payload, secret, header = { alg: 'HS256', typ: 'JWT' }) {
  const input = jwtParts(header, payload);
  const sig = crypto.createHmac('sha256', secret).update(input).digest();
  return `${input}.${b64url(sig)}`;
}

function signRS256(payload, privateKey, header = { alg: 'RS256', typ: 'JWT' }) {
  const input = jwtParts(header, payload);
  const sig = crypto.sign('sha256', Buffer.from(input), privateKey);
  return `${input}.${b64url(sig)}`;
}

const nowS = () => Math.floor(Date.now() / 1000);

// The status of a refused upgrade (or 101 when it is accepted; the socket is closed).
async function upgradeStatus(srv, path, opts = {}) {
  try {
    const ws = await connect(srv.wsUrl(path), opts);
    ws.terminate();
    return 101;
  } catch (e) {
    if (e.statusCode) return e.statusCode;
    throw e;
  }
}

// Refused upgrade: {status, body json} from a plain HTTP request with upgrade headers.
function upgradeRequest(srv, path, headers = {}) {
  return request(srv, 'GET', path, {
    headers: {
      Connection: 'Upgrade',
      Upgrade: 'websocket',
      'Sec-WebSocket-Version': '13',
      'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
      ...headers,
    },
  });
}

module.exports = {
  ...harness,
  HubClient,
  connectWithProtocols,
  closeAll,
  nextId,
  request,
  getJson,
  publish,
  metrics,
  metric,
  eventually,
  b64url,
  signHS256,
  signRS256,
  nowS,
  upgradeStatus,
  upgradeRequest,
};
