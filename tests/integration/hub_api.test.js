'use strict';
// The HTTP API: the read endpoints (/api/online, /api/rooms, /api/rooms/{id}/members),
// POST /api/publish (key, targets, the service messages' checks), /readyz during a
// graceful shutdown, and /metrics against a known workload.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const crypto = require('node:crypto');

const {
  HOST,
  startServer,
  HubClient,
  closeAll,
  request,
  getJson,
  publish,
  metrics,
  metric,
  delay,
  eventually,
  withTimeout,
  RawClient,
} = require('./hub_helpers');

const KEY = 'test-api-key-0123456789';

describe('hub API (--api-key)', () => {
  let srv;
  const clients = [];
  let n = 0;
  const uniq = (s) => `${s}-${++n}`;
  const open = async (user) => {
    const c = await HubClient.open(srv, user);
    clients.push(c);
    return c;
  };

  before(async () => {
    srv = await startServer(['--stream', '', '--api-key', KEY]);
  });
  afterEach(async () => {
    await closeAll(clients);
  });
  after(async () => {
    await closeAll(clients);
    if (srv) await srv.stop();
  });

  it('GET /api/online lists users once each, sorted, with count (and connections)', async () => {
    const [zed, amy] = [uniq('zed'), uniq('amy')];
    await open(zed);
    await open(zed);
    await open(amy);
    const r = await eventually(async () => {
      const x = await getJson(srv, '/api/online');
      return x.json && x.json.online_users.includes(zed) && x.json.online_users.includes(amy) ? x : null;
    }, { what: 'both users online' });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /application\/json/);
    const u = r.json.online_users;
    assert.deepEqual([...u].sort(), u, 'sorted');
    assert.equal(u.filter((x) => x === zed).length, 1, 'a user with two connections is listed once');
    assert.equal(r.json.count, u.length);
    assert.ok(r.json.connections >= 3);
    await closeAll(clients);
    const gone = await eventually(async () => {
      const x = await getJson(srv, '/api/online');
      return !x.json.online_users.includes(zed) && !x.json.online_users.includes(amy) ? x : null;
    }, { what: 'users gone after close' });
    assert.equal(gone.json.count, gone.json.online_users.length);
  });

  it('GET /api/rooms and /api/rooms/{id}/members (percent-encoded ids; unknown → 404)', async () => {
    const [a, b] = [uniq('a'), uniq('b')];
    const ca = await open(a);
    const cb = await open(b);
    await ca.join('a b');
    await cb.join('a b');
    await ca.join('x/y');
    await ca.join('ünï');
    const rooms = await getJson(srv, '/api/rooms');
    assert.equal(rooms.status, 200);
    const find = (id) => rooms.json.rooms.find((x) => x.room_id === id);
    assert.deepEqual(find('a b'), { room_id: 'a b', members: 2 });
    assert.deepEqual(find('x/y'), { room_id: 'x/y', members: 1 });
    assert.equal(rooms.json.count, rooms.json.rooms.length);
    const ids = rooms.json.rooms.map((x) => x.room_id);
    assert.deepEqual([...ids].sort(), ids, 'sorted by id');

    let m = await getJson(srv, '/api/rooms/a%20b/members');
    assert.equal(m.status, 200, m.body);
    assert.deepEqual(m.json, { room_id: 'a b', members: [a, b].sort(), count: 2, total: 2, next_cursor: null });
    m = await getJson(srv, '/api/rooms/x%2Fy/members');
    assert.equal(m.status, 200, m.body);
    assert.deepEqual(m.json.members, [a]);
    m = await getJson(srv, `/api/rooms/${encodeURIComponent('ünï')}/members`);
    assert.equal(m.status, 200, m.body);
    assert.equal(m.json.room_id, 'ünï');

    const unknown = await getJson(srv, '/api/rooms/no-such-room/members');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, 'not_found');
    assert.equal((await getJson(srv, '/api/rooms/a%20b/members/extra')).status, 404);
    assert.equal((await getJson(srv, '/api/rooms//members')).status >= 400, true);
    const bad = await getJson(srv, '/api/rooms/%zz/members');
    assert.ok(bad.status === 400 || bad.status === 404, `bad encoding: ${bad.status}`);
  });

  it('POST /api/publish: the key is required (401 without or wrong), via X-API-Key or Authorization: Bearer', async () => {
    const body = { broadcast: true, type: 'announcement', payload: { text: 'x' } };
    let r = await publish(srv, body);
    assert.equal(r.status, 401);
    assert.equal(r.json.error.code, 'unauthorized');
    r = await publish(srv, body, { key: 'wrong' });
    assert.equal(r.status, 401);
    r = await publish(srv, body, { key: `${KEY}x` });
    assert.equal(r.status, 401, 'a longer key with the right prefix');
    r = await publish(srv, body, { key: KEY.slice(0, -1) });
    assert.equal(r.status, 401, 'a prefix of the key');
    r = await publish(srv, body, { key: 'wrong', via: 'bearer' });
    assert.equal(r.status, 401);
    r = await publish(srv, body, { headers: { Authorization: `Basic ${Buffer.from(`x:${KEY}`).toString('base64')}` } });
    assert.equal(r.status, 401, 'Basic is not the key');
    r = await publish(srv, body, { key: KEY });
    assert.equal(r.status, 202, r.body);
    r = await publish(srv, body, { key: KEY, via: 'bearer' });
    assert.equal(r.status, 202, r.body);
    r = await publish(srv, body, { headers: { Authorization: `bearer ${KEY}` } });
    assert.equal(r.status, 202, `the scheme is case-insensitive: ${r.body}`);
  });

  it('POST /api/publish to a room: every member connection gets it with a seq; the response carries that seq', async () => {
    const room = uniq('news');
    const [a, b] = [uniq('a'), uniq('b')];
    const a1 = await open(a);
    const a2 = await open(a);
    const b1 = await open(b);
    const other = await open(uniq('other'));
    for (const c of [a1, a2, b1]) await c.join(room);
    const r = await publish(srv, { room_id: room, type: 'headline', payload: { title: 'hello' } }, { key: KEY });
    assert.equal(r.status, 202, r.body);
    assert.equal(r.json.status, 'published');
    assert.equal(r.json.room_id, room);
    assert.equal(typeof r.json.seq, 'number');
    for (const c of [a1, a2, b1]) {
      const m = await c.takeType('headline');
      assert.deepEqual(m.payload, { title: 'hello' });
      assert.equal(m.room_id, room);
      assert.equal(m.seq, r.json.seq);
      assert.equal(m.from, undefined, 'from the server: no from');
    }
    await other.expectNone((m) => m.type === 'headline', 200);
    // A second one: a larger seq.
    const r2 = await publish(srv, { room_id: room, type: 'headline', payload: { title: 'again' } }, { key: KEY });
    assert.ok(r2.json.seq > r.json.seq);
    assert.equal((await b1.takeType('headline')).seq, r2.json.seq);
    // To a room with no members: accepted, delivered to no one.
    const r3 = await publish(srv, { room_id: uniq('empty'), type: 'headline', payload: {} }, { key: KEY });
    assert.equal(r3.status, 202);
    assert.equal(r3.json.status, 'no_members');
    assert.equal(r3.json.seq, undefined);
  });

  it('POST /api/publish to a user reaches all its connections; broadcast reaches everyone', async () => {
    const [a, b] = [uniq('a'), uniq('b')];
    const aC = [await open(a), await open(a), await open(a)];
    const b1 = await open(b);
    const r = await publish(srv, { user_id: a, type: 'notification', payload: { title: 'You have mail', body: 'hi' } }, { key: KEY });
    assert.equal(r.status, 202, r.body);
    assert.deepEqual(r.json, { status: 'published', user_id: a, seq: 1 }, 'the first message of a\'s user stream');
    for (const c of aC) {
      const m = await c.takeType('notification');
      assert.deepEqual(m.payload, { title: 'You have mail', body: 'hi', priority: 'normal' }, 'priority defaults to normal');
      assert.equal(m.seq, r.json.seq, 'its position in the user stream');
    }
    await b1.expectNone((m) => m.type === 'notification', 200);

    const rb = await publish(srv, { broadcast: true, type: 'maintenance', payload: { at: 'midnight' } }, { key: KEY });
    assert.equal(rb.status, 202, rb.body);
    for (const c of [...aC, b1]) assert.deepEqual((await c.takeType('maintenance')).payload, { at: 'midnight' });
    for (const c of [...aC, b1]) await c.expectNone((m) => m.type === 'maintenance', 100, 'a duplicate');
  });

  it('POST /api/publish validates notification, chat_message and data_update', async () => {
    const u = uniq('n');
    const c = await open(u);
    const room = uniq('chat');
    await c.join(room);
    const bad = async (body, code = 'bad_field') => {
      const r = await publish(srv, body, { key: KEY });
      assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${r.body}`);
      assert.equal(r.json.error.code, code, r.body);
      return r;
    };
    await bad({ user_id: u, type: 'notification', payload: { body: 'no title' } });
    await bad({ user_id: u, type: 'notification', payload: { title: 5 } });
    await bad({ user_id: u, type: 'notification', payload: { title: 't', priority: 'urgent' } });
    await bad({ user_id: u, type: 'notification', payload: { title: 't', priority: 1 } });
    await bad({ user_id: u, type: 'notification', payload: { title: 't', link: 7 } });
    await bad({ user_id: u, type: 'notification' }); // no payload: no title
    for (const p of ['low', 'normal', 'high']) {
      const r = await publish(srv, { user_id: u, type: 'notification', payload: { title: p, priority: p } }, { key: KEY });
      assert.equal(r.status, 202, r.body);
      assert.equal((await c.takeType('notification')).payload.priority, p);
    }
    await bad({ room_id: room, type: 'chat_message', payload: { user_id: 'bot' } }); // no content
    await bad({ room_id: room, type: 'chat_message', payload: { content: 'hi' } }); // no user_id
    await bad({ room_id: room, type: 'chat_message', payload: { content: 3, user_id: 'bot' } });
    await bad({ room_id: room, type: 'data_update', payload: { nodata: 1 } });
    await c.expectNone((m) => m.type === 'chat_message' || m.type === 'data_update', 100, 'a refused message');
    const ok = await publish(srv, { room_id: room, type: 'chat_message', payload: { content: 'hi', user_id: 'bot' } }, { key: KEY });
    assert.equal(ok.status, 202, ok.body);
    const m = await c.takeType('chat_message');
    assert.deepEqual(m.payload, { content: 'hi', user_id: 'bot', room_id: room }, 'room_id filled in');
    assert.equal(m.seq, ok.json.seq);
    const d = await publish(srv, { room_id: room, type: 'data_update', payload: { data: { x: [1, 2] } } }, { key: KEY });
    assert.equal(d.status, 202, d.body);
    assert.deepEqual((await c.takeType('data_update')).payload, { data: { x: [1, 2] } });
  });

  it('POST /api/publish refuses bad JSON, non-objects, bad types and zero or two targets (400)', async () => {
    const raw = async (text) => {
      const r = await request(srv, 'POST', '/api/publish', { headers: { 'X-API-Key': KEY }, body: text });
      assert.equal(r.status, 400, `${text} → ${r.status} ${r.body}`);
      return r;
    };
    assert.equal((await raw('{not json')).json.error.code, 'bad_json');
    assert.equal((await raw('[1,2]')).json.error.code, 'bad_envelope'); // JSON, not an object
    assert.equal((await raw('')).json.error.code, 'bad_json');
    assert.equal((await raw('{"room_id":"r","room_id":"s","type":"t"}')).json.error.code, 'bad_json');
    const env = async (body) => {
      const r = await publish(srv, body, { key: KEY });
      assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${r.body}`);
      assert.equal(r.json.error.code, 'bad_envelope', r.body);
    };
    await env({ room_id: 'r', user_id: 'u', type: 't', payload: {} });
    await env({ room_id: 'r', broadcast: true, type: 't', payload: {} });
    await env({ user_id: 'u', broadcast: true, type: 't' });
    await env({ type: 't', payload: {} });
    await env({ broadcast: false, type: 't' });
    await env({ room_id: 'r', payload: {} });
    await env({ room_id: 'r', type: 5 });
    await env({ room_id: 'r', type: '' });
    await env({ room_id: 'r', type: 'x'.repeat(65) });
    await env({ room_id: 'r', type: 't', payload: [1] });
    // Ids follow the rule of /ws, with its code (issue 14): bad_field.
    for (const body of [{ room_id: 5, type: 't' }, { room_id: '', type: 't' }, { user_id: 'u'.repeat(129), type: 't' }]) {
      const r = await publish(srv, body, { key: KEY });
      assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${r.body}`);
      assert.equal(r.json.error.code, 'bad_field', r.body);
    }
    const ok = await publish(srv, { room_id: 'r', broadcast: false, type: 't' }, { key: KEY });
    assert.equal(ok.status, 202, `broadcast:false is no target: ${ok.body}`);
  });

  it('GET /readyz is 200 while serving; /healthz too', async () => {
    const r = await getJson(srv, '/readyz');
    assert.equal(r.status, 200);
    assert.equal(r.json.status, 'ready');
    assert.equal((await getJson(srv, '/healthz')).status, 200);
  });
});

describe('hub API without --api-key', () => {
  it('POST /api/publish is disabled: 403 whatever the key', async () => {
    const srv = await startServer(['--stream', '']);
    try {
      let r = await publish(srv, { broadcast: true, type: 't', payload: {} });
      assert.equal(r.status, 403);
      assert.equal(r.json.error.code, 'forbidden');
      r = await publish(srv, { broadcast: true, type: 't', payload: {} }, { key: 'anything' });
      assert.equal(r.status, 403);
      r = await publish(srv, { broadcast: true, type: 't', payload: {} }, { key: '', via: 'bearer' });
      assert.equal(r.status, 403);
      assert.equal((await getJson(srv, '/api/online')).status, 200, 'the read API stays on');
    } finally {
      await srv.stop();
    }
  });
});

// A /ws client that completes the upgrade by hand and then never reads or answers
// anything (so the server's close handshake with it cannot finish).
async function deafClient(srv, user) {
  const sock = net.connect({ host: HOST, port: srv.port });
  await withTimeout(new Promise((res, rej) => {
    sock.once('connect', res);
    sock.once('error', rej);
  }), 5000, 'connect');
  const key = crypto.randomBytes(16).toString('base64');
  sock.write(`GET /ws?token=${user} HTTP/1.1\r\nHost: ${HOST}:${srv.port}\r\nUpgrade: websocket\r\n` +
    `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  let buf = '';
  await withTimeout(new Promise((res, rej) => {
    const onData = (d) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n\r\n')) {
        sock.off('data', onData);
        sock.pause(); // never read again
        if (/^HTTP\/1\.1 101/.test(buf)) res();
        else rej(new Error(`upgrade refused: ${buf}`));
      }
    };
    sock.on('data', onData);
    sock.once('error', rej);
  }), 5000, 'upgrade');
  return sock;
}

describe('hub API: /readyz during a graceful shutdown', () => {
  it('answers 503 once shutting down (a client that never answers the close keeps it going)', async () => {
    const srv = await startServer(['--stream', '', '--close-timeout', '2s', '--shutdown-timeout', '3s']);
    let deaf;
    let pending;
    try {
      deaf = await deafClient(srv, 'deaf');
      assert.equal((await getJson(srv, '/readyz')).status, 200);
      // An HTTP connection accepted before the signal, its request not yet sent.
      pending = await RawClient.connect(srv.port);
      pending.write(`GET /readyz HTTP/1.1\r\nHost: ${HOST}\r\n`);
      await delay(100);
      const t0 = Date.now();
      srv.proc.kill('SIGTERM');
      await delay(300);
      pending.write('\r\n');
      const r = await pending.readResponse({ timeout: 4000 }).catch((e) => {
        throw new Error(`no answer to GET /readyz sent during the shutdown (${e.message}) ` +
          `${Date.now() - t0} ms after SIGTERM; server log:\n${srv.stderr().slice(-1500)}`);
      });
      assert.equal(r.status, 503, `readyz during shutdown: ${r.status} ${r.body}`);
      assert.equal(JSON.parse(r.body).error.code, 'shutting_down');
      assert.ok(Date.now() - t0 < 2000, 'answered while the shutdown was still going on');
      assert.equal(srv.proc.exitCode, null, 'still shutting down (the deaf client holds it)');
      // No second signal (that would mean "exit now"): wait for the graceful exit.
      const res = await withTimeout(srv.exited, 6000, 'wshub to exit after the shutdown');
      assert.deepEqual(res, { code: 0, signal: null }, srv.stderr().slice(-2000));
      assert.ok(Date.now() - t0 >= 1500, 'the shutdown waited for the deaf client (close timeout 2s)');
    } finally {
      if (deaf) deaf.destroy();
      if (pending) pending.destroy();
      await srv.stop({ timeout: 6000 }).catch(() => {});
    }
  });
});

describe('hub API: /metrics', () => {
  it('counts deliveries and errors by code for a known workload', async () => {
    const srv = await startServer(['--stream', '', '--no-presence', '--api-key', KEY]);
    const cl = [];
    try {
      for (const u of ['a', 'a', 'b', 'c']) cl.push(await HubClient.open(srv, u));
      const [a1, a2, b1, c1] = cl;
      for (const c of [a1, a2, b1]) await c.join('m'); // 3 member connections
      const m0 = await metrics(srv);
      const delta = (m, k) => metric(m, k) - metric(m0, k);
      // Deliveries only (no ids: no acks): 5 room messages × 3 members, 1 user message ×
      // 2 connections, 1 API room message × 3 members.
      for (let i = 0; i < 5; i++) a1.send('send_to_room', { room_id: 'm', i });
      c1.send('send_to_user', { user_id: 'a', x: 1 });
      await publish(srv, { room_id: 'm', type: 'api', payload: {} }, { key: KEY });
      for (const c of [a1, a2, b1]) await c.takeN((m) => m.room_id === 'm', 6);
      for (const c of [a1, a2]) await c.takeType('send_to_user');
      const m1 = await metrics(srv);
      assert.equal(delta(m1, 'wshub_hub_deliveries_total'), 5 * 3 + 2 + 3);
      assert.equal(delta(m1, 'wshub_hub_messages_published_total'), 5 + 1 + 1);
      // Errors by code.
      for (let i = 0; i < 3; i++) await c1.expectError(`garbage ${i}`, 'bad_json');
      await c1.expectError({ type: 'what' }, 'unknown_type');
      const m = await metrics(srv);
      assert.equal(metric(m, 'wshub_hub_errors_total{code="bad_json"}'), 3);
      assert.equal(metric(m, 'wshub_hub_errors_total{code="unknown_type"}'), 1);
      assert.equal(metric(m, 'wshub_hub_errors_total{code="not_member"}'), 0);
      assert.equal(delta(m, 'wshub_hub_messages_published_total'), 7, 'errors are not published');
      assert.equal(metric(m, 'wshub_hub_online_users'), 3);
      assert.equal(metric(m, 'wshub_hub_rooms'), 1);
      assert.equal(metric(m, 'wshub_websocket_active_connections'), 4);
      const text = (await request(srv, 'GET', '/metrics')).body;
      assert.match(text, /^# TYPE wshub_hub_deliveries_total counter$/m);
      assert.match(text, /^# TYPE wshub_hub_errors_total counter$/m);
    } finally {
      await closeAll(cl);
      await srv.stop();
    }
  });
});
