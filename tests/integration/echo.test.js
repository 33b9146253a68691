'use strict';
// GET /echo with the ws client, plus the HTTP endpoints and configuration sources
// that change what /echo does.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const {
  startServer,
  runWshub,
  connect,
  nextMessage,
  nextMessages,
  nextPong,
  waitClose,
  pendingMessages,
  httpGet,
  delay,
} = require('./harness');

const MiB = 1024 * 1024;

// Sends data and expects it back unchanged, with the same frame type.
async function roundTrip(ws, data, { binary } = {}) {
  const isBin = binary ?? Buffer.isBuffer(data);
  ws.send(data, { binary: isBin });
  const m = await nextMessage(ws, 10000);
  assert.equal(m.isBinary, isBin, 'frame type echoed');
  if (isBin) assert.ok(m.data.equals(Buffer.from(data)), 'binary payload echoed byte for byte');
  else assert.equal(m.data.toString('utf8'), data);
  return m;
}

async function closeAll(clients) {
  await Promise.all(clients.map(async (ws) => {
    if (ws.readyState === ws.OPEN) ws.close(1000);
    if (ws.readyState !== ws.CLOSED) await waitClose(ws).catch(() => ws.terminate());
  }));
}

describe('echo: messages', () => {
  let srv;
  const clients = [];
  const open = async (url = srv.url) => {
    const ws = await connect(url);
    clients.push(ws);
    return ws;
  };
  before(async () => {
    srv = await startServer([]);
  });
  after(async () => {
    await closeAll(clients);
    await srv.stop();
  });

  it('echoes text as text', async () => {
    const ws = await open();
    await roundTrip(ws, 'hello, wshub');
    await roundTrip(ws, 'second message');
  });

  it('echoes binary as binary', async () => {
    const ws = await open();
    await roundTrip(ws, Buffer.from([0, 1, 2, 0xfe, 0xff, 0x80, 0x7f]));
    await roundTrip(ws, crypto.randomBytes(70000)); // 64-bit length header
    await roundTrip(ws, crypto.randomBytes(300)); // 16-bit length header
  });

  it('echoes multi-byte unicode text (2-, 3- and 4-byte sequences, emoji)', async () => {
    const ws = await open();
    const s = 'héllo — 日本語テキスト — 😀🎉👩‍👩‍👧 — ∑ Ω ß';
    const m = await roundTrip(ws, s);
    assert.ok(m.data.equals(Buffer.from(s, 'utf8')));
    await roundTrip(ws, '😀'.repeat(5000));
  });

  it('echoes empty text and empty binary messages', async () => {
    const ws = await open();
    await roundTrip(ws, '');
    await roundTrip(ws, Buffer.alloc(0));
    await roundTrip(ws, 'after empty');
  });

  it('echoes a message of exactly 1 MiB (the default limit)', async () => {
    const ws = await open();
    await roundTrip(ws, crypto.randomBytes(MiB));
    const text = 'x'.repeat(MiB);
    await roundTrip(ws, text);
  });

  it('closes with 1009 on a message of 1 MiB + 1', async () => {
    const ws = await open();
    ws.send(crypto.randomBytes(MiB + 1));
    const { code } = await waitClose(ws, 10000);
    assert.equal(code, 1009);
  });

  it('closes with 1009 when fragments add up to more than 1 MiB', async () => {
    const ws = await open();
    ws.send(Buffer.alloc(MiB / 2), { fin: false, binary: true });
    ws.send(Buffer.alloc(MiB / 2), { fin: false, binary: true });
    ws.send(Buffer.alloc(1), { fin: true, binary: true });
    const { code } = await waitClose(ws, 10000);
    assert.equal(code, 1009);
  });

  it('closes with 1007 on a text message that is not valid UTF-8', async () => {
    const ws = await open();
    ws.send(Buffer.from([0x61, 0xc3, 0x28, 0x62]), { binary: false });
    const { code } = await waitClose(ws);
    assert.equal(code, 1007);
  });

  it('returns 1000 pipelined messages, all in order', async () => {
    const ws = await open();
    const N = 1000;
    for (let i = 0; i < N; i++) ws.send(`msg-${i}-${'p'.repeat(i % 50)}`);
    const got = await nextMessages(ws, N, 20000);
    for (let i = 0; i < N; i++) {
      assert.equal(got[i].isBinary, false);
      assert.equal(got[i].data.toString(), `msg-${i}-${'p'.repeat(i % 50)}`, `message ${i}`);
    }
  });

  it('reassembles a fragmented text message', async () => {
    const ws = await open();
    ws.send('Hel', { fin: false });
    ws.send('lo, ', { fin: false });
    ws.send('', { fin: false });
    ws.send('wörld 😀', { fin: true });
    const m = await nextMessage(ws);
    assert.equal(m.isBinary, false);
    assert.equal(m.data.toString('utf8'), 'Hello, wörld 😀');
    assert.equal(pendingMessages(ws), 0);
  });

  it('reassembles a fragmented text message split inside a UTF-8 sequence', async () => {
    const ws = await open();
    const bytes = Buffer.from('a😀b', 'utf8'); // 61 f0 9f 98 80 62
    ws.send(bytes.subarray(0, 3), { fin: false, binary: false });
    ws.send(bytes.subarray(3), { fin: true, binary: false });
    const m = await nextMessage(ws);
    assert.equal(m.isBinary, false);
    assert.equal(m.data.toString('utf8'), 'a😀b');
  });

  it('reassembles a fragmented binary message', async () => {
    const ws = await open();
    const parts = [crypto.randomBytes(1000), crypto.randomBytes(70000), crypto.randomBytes(1)];
    ws.send(parts[0], { fin: false, binary: true });
    ws.send(parts[1], { fin: false, binary: true });
    ws.send(parts[2], { fin: true, binary: true });
    const m = await nextMessage(ws);
    assert.equal(m.isBinary, true);
    assert.ok(m.data.equals(Buffer.concat(parts)));
  });

  it('answers a ping between fragments and still reassembles the message', async () => {
    const ws = await open();
    ws.send('first-', { fin: false });
    ws.ping(Buffer.from('mid'));
    ws.send('second', { fin: true });
    const pong = await nextPong(ws);
    assert.equal(pong.toString(), 'mid');
    const m = await nextMessage(ws);
    assert.equal(m.data.toString(), 'first-second');
  });

  it('answers a client ping with a pong carrying the same payload', async () => {
    const ws = await open();
    const payload = Buffer.from('ping-payload-123');
    ws.ping(payload);
    const pong = await nextPong(ws);
    assert.ok(pong.equals(payload));
    const big = crypto.randomBytes(125); // largest control frame payload
    ws.ping(big);
    assert.ok((await nextPong(ws)).equals(big));
    ws.ping();
    assert.equal((await nextPong(ws)).length, 0);
    await roundTrip(ws, 'still open');
  });

  it('client close(1000, "bye") completes the closing handshake with 1000', async () => {
    const ws = await open();
    await roundTrip(ws, 'before close');
    ws.close(1000, 'bye');
    const { code } = await waitClose(ws);
    assert.equal(code, 1000);
  });

  it('client close(4001) is answered with 4001', async () => {
    const ws = await open();
    ws.close(4001);
    const { code } = await waitClose(ws);
    assert.equal(code, 4001);
  });

  it('a client terminated abruptly mid-stream does not disturb the others', async () => {
    const a = await open();
    const b = await open();
    await roundTrip(b, 'b-before');
    const chunk = crypto.randomBytes(16 * 1024);
    for (let i = 0; i < 200; i++) a.send(chunk);
    await delay(20);
    a.terminate();
    for (let i = 0; i < 100; i++) await roundTrip(b, `b-${i}`);
    // a second abrupt drop, this time part-way through a frame being written
    const c = await open();
    c.send(crypto.randomBytes(MiB));
    setImmediate(() => c.terminate());
    await roundTrip(b, crypto.randomBytes(50000));
    const d = await open();
    await roundTrip(d, 'new connection after the drops');
    const h = await httpGet(srv.port, '/healthz');
    assert.equal(h.status, 200);
  });
});

describe('echo: HTTP endpoints', () => {
  let srv;
  before(async () => {
    srv = await startServer([]);
  });
  after(async () => {
    await srv.stop();
  });

  it('GET /healthz answers 200 with JSON status ok', async () => {
    const r = await httpGet(srv.port, '/healthz');
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^application\/json/);
    assert.deepEqual(JSON.parse(r.body), { status: 'ok' });
  });

  it('an unknown path answers 404 with a JSON error code not_found', async () => {
    const r = await httpGet(srv.port, '/no/such/thing');
    assert.equal(r.status, 404);
    assert.match(r.headers['content-type'], /^application\/json/);
    const body = JSON.parse(r.body);
    assert.equal(body.error.code, 'not_found');
    assert.equal(typeof body.error.message, 'string');
  });

  it('a WebSocket upgrade on an unknown path is refused with 404', async () => {
    await assert.rejects(connect(srv.wsUrl('/nope')), (e) => e.statusCode === 404);
  });
});

describe('echo: concurrency', () => {
  for (const threads of [1, 4]) {
    describe(`--threads ${threads}`, () => {
      let srv;
      before(async () => {
        srv = await startServer([], { threads });
      });
      after(async () => {
        await srv.stop({ timeout: 10000 });
      });

      it('200 concurrent connections x 10 messages each, all echoed in order', async () => {
        const C = 200;
        const M = 10;
        const clients = await Promise.all(Array.from({ length: C }, () => connect(srv.url, { timeout: 10000 })));
        try {
          for (let c = 0; c < C; c++) {
            for (let m = 0; m < M; m++) {
              if (m % 2) clients[c].send(Buffer.from(`c${c}-m${m}`));
              else clients[c].send(`c${c}-m${m}`);
            }
          }
          await Promise.all(clients.map(async (ws, c) => {
            const got = await nextMessages(ws, M, 20000);
            got.forEach((g, m) => {
              assert.equal(g.isBinary, m % 2 === 1, `client ${c} message ${m} type`);
              assert.equal(g.data.toString(), `c${c}-m${m}`, `client ${c} message ${m}`);
            });
          }));
        } finally {
          await closeAll(clients);
        }
        for (const ws of clients) assert.equal(pendingMessages(ws), 0);
      });
    });
  }
});

describe('echo: graceful shutdown', () => {
  it('SIGTERM sends 1001 "server shutting down" to 20 clients and exits 0 within 3 s', async () => {
    const srv = await startServer([]);
    let clients = [];
    try {
      clients = await Promise.all(Array.from({ length: 20 }, () => connect(srv.url)));
      await Promise.all(clients.map((ws, i) => roundTrip(ws, `hi ${i}`)));
      const closes = Promise.all(clients.map((ws) => waitClose(ws, 3000)));
      const t0 = Date.now();
      await srv.stop({ timeout: 3000 });
      const elapsed = Date.now() - t0;
      assert.ok(elapsed < 3000, `exit took ${elapsed} ms`);
      const got = await closes;
      got.forEach((c, i) => {
        assert.equal(c.code, 1001, `client ${i} close code`);
        assert.equal(c.reason, 'server shutting down', `client ${i} close reason`);
      });
    } finally {
      clients.forEach((ws) => ws.terminate());
      await srv.stop({ timeout: 3000 }).catch(() => {});
    }
  });
});

describe('echo: configuration', () => {
  let tmp;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wshub-echo-test-'));
  });
  after(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('--no-echo: /echo answers 404 (plain GET and upgrade)', async () => {
    const srv = await startServer(['--no-echo']);
    try {
      const r = await httpGet(srv.port, '/echo');
      assert.equal(r.status, 404);
      assert.equal(JSON.parse(r.body).error.code, 'not_found');
      await assert.rejects(connect(srv.url), (e) => e.statusCode === 404);
      const h = await httpGet(srv.port, '/healthz');
      assert.equal(h.status, 200);
    } finally {
      await srv.stop();
    }
  });

  it('--threads abc is rejected with exit code 2 and a message naming --threads', async () => {
    // --threads first: the error must be about it, whatever else is checked after
    const r = await runWshub(['--threads', 'abc', '--listen', '127.0.0.1:0']);
    assert.equal(r.signal, null, r.stderr);
    assert.equal(r.code, 2, `exit code; stderr:\n${r.stderr}`);
    assert.match(r.stderr, /--threads/);
    assert.match(r.stderr, /abc/);
  });

  it('--help exits 0 and documents --listen, --threads, --config, --log-level, WSHUB_LISTEN', async () => {
    const r = await runWshub(['--help']);
    assert.equal(r.code, 0, `exit code; stderr:\n${r.stderr}`);
    for (const s of ['--listen', '--threads', '--config', '--log-level', 'WSHUB_LISTEN'])
      assert.ok(r.stdout.includes(s), `--help output mentions ${s}`);
  });

  it('WSHUB_MAX_MESSAGE_SIZE=1000: 1000 bytes pass, 1001 bytes get 1009', async () => {
    const srv = await startServer([], { env: { WSHUB_MAX_MESSAGE_SIZE: '1000' } });
    const clients = [];
    try {
      const ok = await connect(srv.url);
      clients.push(ok);
      await roundTrip(ok, crypto.randomBytes(1000));
      await roundTrip(ok, 'y'.repeat(1000));
      const bad = await connect(srv.url);
      clients.push(bad);
      bad.send(crypto.randomBytes(1001));
      assert.equal((await waitClose(bad)).code, 1009);
    } finally {
      await closeAll(clients);
      await srv.stop();
    }
  });

  it('--config file with max-message-size = 2000: 2000 bytes pass, 2001 get 1009', async () => {
    const file = path.join(tmp, 'wshub.conf');
    fs.writeFileSync(file, '# test config\nmax-message-size = 2000\n');
    const srv = await startServer(['--config', file]);
    const clients = [];
    try {
      const ok = await connect(srv.url);
      clients.push(ok);
      await roundTrip(ok, crypto.randomBytes(2000));
      const bad = await connect(srv.url);
      clients.push(bad);
      bad.send(crypto.randomBytes(2001));
      assert.equal((await waitClose(bad)).code, 1009);
      // the limit counts the whole message, not one fragment
      const frag = await connect(srv.url);
      clients.push(frag);
      frag.send(Buffer.alloc(1500), { fin: false, binary: true });
      frag.send(Buffer.alloc(501), { fin: true, binary: true });
      assert.equal((await waitClose(frag)).code, 1009);
    } finally {
      await closeAll(clients);
      await srv.stop();
    }
  });
});
