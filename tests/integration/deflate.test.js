'use strict';
// permessage-deflate with the Node `ws` client: negotiation on /echo and /ws, echo of
// compressed messages, compress-once on room fan-out, --no-compression and
// --compression-threshold, and the counters in /metrics that prove what happened.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');

const {
  startServer,
  connect,
  track,
  nextMessage,
  waitClose,
  HubClient,
  closeAll,
  metrics,
  metric,
  eventually,
} = require('./hub_helpers');

// 10 KB that deflate shrinks a lot, as chat history or JSON would.
const repetitive = (n) => '{"type":"chat","text":"hello world"} '.repeat(Math.ceil(n / 37)).slice(0, n);

// Opens a client like connect() does and keeps the server's Sec-WebSocket-Extensions
// answer (ws.extensions only lists the extension names).
async function open(url, perMessageDeflate) {
  let answer = null;
  const WebSocket = require('ws');
  const probe = track(new WebSocket(url, { perMessageDeflate }));
  probe.on('upgrade', (res) => (answer = res.headers['sec-websocket-extensions'] ?? ''));
  await new Promise((resolve, reject) => {
    probe.once('open', resolve);
    probe.once('error', reject);
  });
  return { ws: probe, answer };
}

async function echo(ws, data) {
  ws.send(data);
  const m = await nextMessage(ws, 10000);
  return m.data.toString('utf8');
}

describe('permessage-deflate: /echo', () => {
  let srv;
  const clients = [];
  before(async () => {
    srv = await startServer(['--threads', '1'], { threads: null });
  });
  after(async () => {
    await closeAll(clients);
    await srv.stop();
  });

  it('negotiates with server_no_context_takeover and echoes a 10 KB message compressed both ways', async () => {
    const { ws, answer } = await open(srv.url, { threshold: 0 });
    clients.push(ws);
    assert.match(answer, /^permessage-deflate; server_no_context_takeover/);
    const before = await metrics(srv);
    const msg = repetitive(10000);
    assert.equal(await echo(ws, msg), msg);
    const after = await metrics(srv);
    const d = (k) => metric(after, k) - metric(before, k);
    assert.equal(d('wshub_deflate_inflated_messages_total'), 1, 'the client message was inflated');
    assert.equal(d('wshub_deflate_received_inflated_bytes_total'), 10000);
    assert.ok(d('wshub_deflate_received_compressed_bytes_total') < 1000, 'it arrived compressed');
    assert.equal(d('wshub_deflate_compressed_messages_total'), 1, 'the echo was compressed');
    assert.equal(d('wshub_deflate_sent_uncompressed_bytes_total'), 10000);
    assert.ok(d('wshub_deflate_sent_compressed_bytes_total') < 1000);
    assert.equal(d('wshub_deflate_frames_sent_total'), 1);
  });

  it('binary, multi-byte text, empty and incompressible messages round trip', async () => {
    const ws = await connect(srv.url, { perMessageDeflate: { threshold: 0 } });
    clients.push(ws);
    const text = 'h\u00e9llo \u20ac \u{1F600} '.repeat(500);
    assert.equal(await echo(ws, text), text);
    const bin = Buffer.alloc(50000, 0x5a);
    ws.send(bin);
    let m = await nextMessage(ws, 10000);
    assert.ok(m.isBinary && m.data.equals(bin));
    assert.equal(await echo(ws, ''), '');
    const noise = require('node:crypto').randomBytes(8000);
    ws.send(noise);
    m = await nextMessage(ws, 10000);
    assert.ok(m.data.equals(noise));
  });

  it('a client that keeps its compression context (no client_no_context_takeover) is followed across messages', async () => {
    const { ws, answer } = await open(srv.url,
      { threshold: 0, clientNoContextTakeover: false, clientMaxWindowBits: true });
    clients.push(ws);
    assert.equal(answer, 'permessage-deflate; server_no_context_takeover; client_max_window_bits=12',
      'the server asks for a 4 KiB client window');
    for (let i = 0; i < 20; i++) {
      const msg = repetitive(3000) + i;
      assert.equal(await echo(ws, msg), msg);
    }
  });

  it('client_no_context_takeover is accepted when offered', async () => {
    const { ws, answer } = await open(srv.url, { threshold: 0, clientNoContextTakeover: true });
    clients.push(ws);
    assert.equal(answer, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover');
    for (let i = 0; i < 5; i++) {
      const msg = repetitive(5000) + i;
      assert.equal(await echo(ws, msg), msg);
    }
  });

  it('a compression bomb is refused with 1009 and counted', async () => {
    const ws = await connect(srv.url, { perMessageDeflate: { threshold: 0 } });
    const before = await metrics(srv);
    ws.send(Buffer.alloc(64 * 1024 * 1024)); // 64 MiB of zeros: about 64 KiB compressed
    const { code } = await waitClose(ws, 20000);
    assert.equal(code, 1009);
    await eventually(async () => metric(await metrics(srv), 'wshub_deflate_bombs_total') ===
      metric(before, 'wshub_deflate_bombs_total') + 1, { what: 'bomb counted' });
  });
});

describe('permessage-deflate: room fan-out compresses once', () => {
  let srv;
  const clients = [];
  before(async () => {
    srv = await startServer(['--threads', '1', '--stream', ''], { threads: null });
  });
  after(async () => {
    await closeAll(clients);
    await srv.stop();
  });

  it('one 5 KB room message to 6 compressing members is compressed once; a member without compression gets it plain', async () => {
    const room = 'deflate-room';
    const members = [];
    for (let i = 0; i < 6; i++) {
      const c = await HubClient.open(srv, `z${i}`, { perMessageDeflate: { threshold: 100000 } });
      members.push(c);
    }
    const plain = await HubClient.open(srv, 'plain', { perMessageDeflate: false });
    members.push(plain);
    clients.push(...members);
    for (const c of members) await c.join(room);
    const text = repetitive(5000);
    const before = await metrics(srv);
    members[0].send('send_to_room', { room_id: room, text });
    for (const c of members) {
      const m = await c.take((x) => x.type === 'send_to_room' && x.room_id === room, 10000);
      assert.equal(m.payload.text, text);
    }
    const after = await metrics(srv);
    const d = (k) => metric(after, k) - metric(before, k);
    assert.equal(d('wshub_deflate_compressed_messages_total'), 1, 'compressed once for all recipients');
    assert.equal(d('wshub_deflate_cache_hits_total'), 5, 'the other 5 got the same compressed frame');
    assert.equal(d('wshub_deflate_frames_sent_total'), 6);
  });
});

describe('permessage-deflate: options', () => {
  it('--no-compression: the offer is ignored and messages go uncompressed', async () => {
    const srv = await startServer(['--no-compression']);
    try {
      const { ws, answer } = await open(srv.url, { threshold: 0 });
      assert.equal(answer, '', 'no Sec-WebSocket-Extensions in the answer');
      const msg = repetitive(10000);
      assert.equal(await echo(ws, msg), msg);
      const m = await metrics(srv);
      assert.equal(metric(m, 'wshub_deflate_connections_total'), 0);
      assert.equal(metric(m, 'wshub_deflate_compressed_messages_total'), 0);
      ws.close(1000);
      await waitClose(ws);
    } finally {
      await srv.stop();
    }
  });

  it('WSHUB_COMPRESSION_THRESHOLD=20000: a 10 KB echo goes uncompressed, a 30 KB one compressed', async () => {
    const srv = await startServer([], { env: { WSHUB_COMPRESSION_THRESHOLD: '20000' } });
    try {
      const ws = await connect(srv.url, { perMessageDeflate: { threshold: 0 } });
      const small = repetitive(10000), big = repetitive(30000);
      assert.equal(await echo(ws, small), small);
      let m = await metrics(srv);
      assert.equal(metric(m, 'wshub_deflate_compressed_messages_total'), 0);
      assert.equal(await echo(ws, big), big);
      m = await metrics(srv);
      assert.equal(metric(m, 'wshub_deflate_compressed_messages_total'), 1);
      ws.close(1000);
      await waitClose(ws);
    } finally {
      await srv.stop();
    }
  });
});
