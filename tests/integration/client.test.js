'use strict';
// The JavaScript client (clients/js/wshub.js) against the real server: replies and
// errors, the guide's handler names, reconnect after the server is killed and started
// again, the offline queue and its bound, recovery of room and user streams across a
// dropped connection while another client publishes, the heartbeat watchdog (a proxy
// that stops forwarding), backoff bounds, tokens fetched again on reconnect, and no
// reconnect after close() or a 1008.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const WebSocket = require('ws');
const h = require('./hub_helpers');
const { startProxy } = require('./tcp_proxy');

const CLIENT = path.join(__dirname, '..', '..', 'clients', 'js', 'wshub.js');
let lib;
const cleanups = [];

before(async () => {
  lib = await import(CLIENT);
});

after(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

// A server stopped at the end of the file (unless the test stopped it itself).
async function server(args = [], opts) {
  const srv = await h.startServer(args, opts);
  cleanups.push(async () => {
    if (srv.proc.exitCode === null && srv.proc.signalCode === null) await srv.stop();
  });
  return srv;
}

async function proxyTo(port) {
  const p = await startProxy(port);
  cleanups.push(() => p.close());
  return p;
}

// A client of the library (ws from tests/js as its WebSocket), closed at the end.
// setup(c) runs before it starts connecting (to record its first events).
function client(url, opts = {}, setup = () => {}) {
  const c = new lib.WshubClient(url, { WebSocket, token: 'alice', ...opts });
  setup(c);
  c.open();
  cleanups.push(() => c.close());
  return c;
}

// Resolves with the arguments of the next `type` event for which pred holds.
function nextEvent(c, type, pred = () => true, timeout = 5000) {
  let off;
  return h
    .withTimeout(new Promise((resolve) => {
      off = c.on(type, (...args) => {
        if (pred(...args)) resolve(args);
      });
    }), timeout, `client event ${type}`)
    .finally(() => off());
}

function record(c, type) {
  const seen = [];
  c.on(type, (...args) => seen.push(args));
  return seen;
}

const wsUrl = (port) => `ws://127.0.0.1:${port}/ws`;

test('requests are settled by their replies: room_joined, ack, queries, error codes', async () => {
  const srv = await server();
  const c = client(wsUrl(srv.port));
  await nextEvent(c, 'connect');
  assert.equal(c.state, 'open');
  const j = await c.join('lobby');
  assert.equal(j.type, 'room_joined');
  assert.equal(j.payload.room_id, 'lobby');
  const a = await c.chat('lobby', 'hello');
  assert.equal(a.type, 'ack');
  assert.equal(a.payload.room_id, 'lobby');
  assert.equal(typeof a.payload.seq, 'number');
  const u = await c.sendToUser('bob', { text: 'psst' });
  assert.equal(u.type, 'ack');
  const r = await c.listRooms();
  assert.deepEqual(r.rooms.find((x) => x.room_id === 'lobby'), { room_id: 'lobby', members: 1 });
  assert.deepEqual((await c.onlineUsers()).online_users, ['alice']);
  assert.equal((await c.ping()).type, 'pong');

  await assert.rejects(c.sendToRoom('bad\u0001room', { x: 1 }), (e) => e instanceof lib.WshubError && e.code === 'bad_field');
  await assert.rejects(c.request('leave_room', { room_id: 'elsewhere' }), (e) => e.code === 'not_member');
  await assert.rejects(c.request('frobnicate', {}), (e) => e.code === 'unknown_type' && e.reply.type === 'error');
  // An error answers a request; it is not also reported as an unsolicited error.
  const errors = record(c, 'error');
  await c.ping();
  assert.equal(errors.length, 0);
  // An error that answers no request is the 'error' event, once, as a WshubError.
  c.send('frobnicate', {});
  await c.ping();
  assert.equal(errors.length, 1);
  assert.ok(errors[0][0] instanceof lib.WshubError && errors[0][0].code === 'unknown_type', String(errors[0][0]));
  const left = await c.leave('lobby');
  assert.equal(left.type, 'room_left');
  assert.equal(c.rooms.has('lobby'), false);
});

test('a user id with spaces and symbols (dev mode) arrives intact; the url keeps its own parameters', async () => {
  const srv = await server();
  const name = 'John Doe+1 & co/=%?'; // printable ASCII: the dev-mode rule
  const c = client(`${wsUrl(srv.port)}?app=demo&token=ignored`, { token: name });
  await nextEvent(c, 'connect');
  assert.deepEqual((await c.onlineUsers()).online_users, [name]);
  const s = await h.HubClient.open(srv, 'probe');
  cleanups.push(() => s.close());
  await c.join('r');
  await s.join('r');
  const got = nextEvent(c, 'chat_message');
  await s.request('chat_message', { room_id: 'r', content: 'hi' });
  await got;
  assert.deepEqual((await c.roomMembers('r')).members.sort(), [name, 'probe'].sort());
});

test("the guide's handler names and on(type) receive chat, notifications and data updates", async () => {
  const srv = await server(['--api-key', 'k', '--stream', 'stats:100ms']);
  const got = { chat: [], note: [], data: [] };
  const c = client(wsUrl(srv.port), {
    token: 'carol',
    onChatMessage: (p) => got.chat.push(p),
    onNotification: (p) => got.note.push(p),
  });
  c.onDataUpdate = (p) => got.data.push(p); // the guide overrides methods
  const viaOn = record(c, 'chat_message');
  const connected = record(c, 'connect');
  await nextEvent(c, 'connect');
  await c.join('lobby');
  await c.join('stats');
  const bob = await h.HubClient.open(srv, 'bob');
  cleanups.push(() => bob.close());
  await bob.request('chat_message', { room_id: 'lobby', content: 'hi carol' });
  const r = await h.publish(srv, { type: 'notification', user_id: 'carol', payload: { title: 'New reply' } }, { key: 'k' });
  assert.equal(r.status, 202);
  await h.eventually(() => got.chat.length >= 1 && got.note.length >= 1 && got.data.length >= 1, { what: 'all three kinds' });
  assert.deepEqual(got.chat[0], { room_id: 'lobby', user_id: 'bob', content: 'hi carol' });
  assert.equal(viaOn[0][1].from, 'bob');
  assert.equal(got.note[0].title, 'New reply');
  assert.equal(typeof got.data[0].data.cpu_percent, 'number');
  assert.equal(connected.length, 1);
  assert.equal(connected[0][0].reconnect, false);
});

test('reconnects after the server is killed and restarted; rooms re-joined; queued chat delivered', async () => {
  const s1 = await server();
  const proxy = await proxyTo(s1.port);
  let states;
  const c = client(wsUrl(proxy.port), { backoff: { initial: 50, max: 400 } }, (x) => (states = record(x, 'state')));
  await nextEvent(c, 'connect');
  await c.join('lobby');

  s1.proc.kill('SIGKILL');
  await s1.exited;
  await nextEvent(c, 'disconnect');
  assert.ok(['reconnecting', 'connecting'].includes(c.state), c.state);
  const queued = c.chat('lobby', 'sent while the server was down');

  const s2 = await server();
  const bob = await h.HubClient.open(s2, 'bob');
  cleanups.push(() => bob.close());
  await bob.join('lobby');
  const reconnected = nextEvent(c, 'connect', (i) => i.reconnect, 10000);
  proxy.target = s2.port;
  await reconnected;
  const ack = await queued;
  assert.equal(ack.type, 'ack');
  const m = await bob.take((x) => x.type === 'chat_message', 5000, 'the queued chat');
  assert.equal(m.payload.content, 'sent while the server was down');
  assert.equal(m.from, 'alice');
  assert.equal(c.rooms.get('lobby').joined, true);
  const names = states.map(([s]) => s);
  assert.deepEqual(names.slice(0, 2), ['connecting', 'open']);
  assert.ok(names.includes('reconnecting'), names.join(','));
  assert.equal(names[names.length - 1], 'open');
});

test('offline queue: flushed in order after the rejoin; overflow rejected with queue_full', async () => {
  const proxy = await proxyTo(null); // refuses: the client stays offline
  const c = client(wsUrl(proxy.port), { queueLimit: 3, backoff: { initial: 20, max: 100 } });
  const joined = c.join('q');
  const sends = [0, 1, 2].map((i) => c.chat('q', `m${i}`));
  await assert.rejects(c.chat('q', 'm3'), (e) => e.code === 'queue_full');
  const errors = record(c, 'error');
  assert.equal(c.send('chat_message', { room_id: 'q', content: 'no room' }), false, 'the guide-style send is refused too');
  assert.equal(errors.length, 1);
  assert.equal(errors[0][0].code, 'queue_full');
  await assert.rejects(c.listRooms(), (e) => e.code === 'disconnected'); // queries are not queued
  assert.equal(c.state === 'connecting' || c.state === 'reconnecting', true);

  const srv = await server();
  const bob = await h.HubClient.open(srv, 'bob');
  cleanups.push(() => bob.close());
  await bob.join('q');
  proxy.target = srv.port;
  await joined;
  const acks = await Promise.all(sends);
  const seqs = acks.map((a) => a.payload.seq);
  assert.deepEqual([...seqs].sort((x, y) => x - y), seqs, 'acked in order');
  const got = await bob.takeN((x) => x.type === 'chat_message', 3, 5000, 'queued chats');
  assert.deepEqual(got.map((x) => x.payload.content), ['m0', 'm1', 'm2']);
  // The queue has room again once flushed.
  assert.equal((await c.chat('q', 'm4')).type, 'ack');
});

test('no reconnect after close(); close() rejects what is pending', async () => {
  const srv = await server();
  const proxy = await proxyTo(srv.port);
  const c = client(wsUrl(proxy.port), { backoff: { initial: 10, max: 20 } });
  await nextEvent(c, 'connect');
  const closed = nextEvent(c, 'close');
  c.close();
  const [info] = await closed;
  assert.equal(info.byClient, true);
  assert.equal(c.state, 'closed');
  await assert.rejects(c.chat('lobby', 'x'), (e) => e.code === 'closed');
  const accepted = proxy.accepted;
  await h.delay(300); // 15 backoff caps
  assert.equal(proxy.accepted, accepted, 'no connection attempt after close()');
});

test('a 1008 from the server stops reconnecting, with a close event', async () => {
  const srv = await server();
  const proxy = await proxyTo(srv.port);
  const c = client(wsUrl(proxy.port), { backoff: { initial: 10, max: 20 } });
  await nextEvent(c, 'connect');
  const closed = nextEvent(c, 'close');
  for (let i = 0; i < 10; i++) c.send('no_such_type', {}); // ten strikes
  const [info] = await closed;
  assert.equal(info.code, 1008);
  assert.equal(info.byClient, false);
  assert.equal(c.state, 'closed');
  const accepted = proxy.accepted;
  await h.delay(300);
  assert.equal(proxy.accepted, accepted, 'no connection attempt after 1008');
});

test('watchdog: a connection that stops forwarding is dropped and replaced', async () => {
  const srv = await server();
  const proxy = await proxyTo(srv.port);
  const c = client(wsUrl(proxy.port), { heartbeat: { interval: 200, timeout: 300 }, backoff: { initial: 10, max: 50 } });
  await nextEvent(c, 'connect');
  await c.join('w');
  // Healthy but idle: pings are answered, no timeout.
  const timeouts = record(c, 'heartbeat_timeout');
  await h.delay(600);
  assert.equal(timeouts.length, 0);
  const accepted = proxy.accepted;
  const again = nextEvent(c, 'connect', (i) => i.reconnect, 5000);
  proxy.stall();
  await again;
  assert.equal(timeouts.length, 1);
  assert.ok(proxy.accepted > accepted);
  assert.equal((await c.chat('w', 'alive')).type, 'ack');
});

test('a request without a reply within requestTimeout is rejected with timeout', async () => {
  const srv = await server();
  const proxy = await proxyTo(srv.port);
  const c = client(wsUrl(proxy.port), { heartbeat: false, requestTimeout: 200 });
  await nextEvent(c, 'connect');
  proxy.stall();
  await assert.rejects(c.ping(), (e) => e.code === 'timeout');
});

test('backoff: full jitter within [0, min(max, initial*factor^n)]', async () => {
  const b = { initial: 10, max: 80, factor: 2 };
  for (let n = 0; n < 40; n++) {
    const cap = Math.min(b.max, b.initial * 2 ** n);
    assert.equal(lib.backoffDelay(n, b, () => 0), 0);
    assert.equal(lib.backoffDelay(n, b, () => 0.999999), Math.floor(0.999999 * cap));
    const d = lib.backoffDelay(n, b);
    assert.ok(d >= 0 && d <= cap, `attempt ${n}: ${d} outside [0, ${cap}]`);
  }
  // The client uses it: against a port that refuses, the announced delays follow the caps.
  const proxy = await proxyTo(null);
  const c = client(wsUrl(proxy.port), { backoff: b, random: () => 0.999999 });
  const seen = record(c, 'disconnect');
  await h.eventually(() => seen.length >= 6, { what: 'six attempts' });
  c.close();
  const delays = seen.slice(0, 6).map(([i]) => i.delay);
  assert.deepEqual(delays, [0, 1, 2, 3, 4, 5].map((n) => Math.floor(0.999999 * Math.min(b.max, b.initial * 2 ** n))));
  const c2 = client(wsUrl(proxy.port), { backoff: b });
  const seen2 = record(c2, 'disconnect');
  await h.eventually(() => seen2.length >= 8, { what: 'eight attempts' });
  c2.close();
  seen2.forEach(([i], n) => assert.ok(i.delay >= 0 && i.delay <= Math.min(b.max, b.initial * 2 ** n), JSON.stringify(i)));
  assert.ok(proxy.accepted >= 14);
});

test('getToken is called again on every reconnect (an expired first token is retried)', async () => {
  const secret = 'client-test-secret-of-at-least-32-bytes';
  const srv = await server(['--auth', 'hs256', '--jwt-secret', secret]);
  const proxy = await proxyTo(srv.port);
  let calls = 0;
  const getToken = async () => {
    calls++;
    const exp = calls === 1 ? h.nowS() - 600 : h.nowS() + 600; // the first one is refused (401)
    return h.signHS256({ sub: 'dave', exp }, secret);
  };
  const c = client(wsUrl(proxy.port), { getToken, backoff: { initial: 10, max: 50 } });
  await nextEvent(c, 'connect');
  assert.equal(calls, 2);
  proxy.dropAll();
  await nextEvent(c, 'connect', (i) => i.reconnect);
  assert.equal(calls, 3);
  assert.deepEqual((await c.onlineUsers()).online_users, ['dave']);
});

// ------------------------------------------------------------------ recovery (history)


test('recovery: 0 lost, 0 duplicated across dropped connections while another client publishes', async () => {
  const srv = await server();
  const proxy = await proxyTo(srv.port);
  const c = client(wsUrl(proxy.port), { backoff: { initial: 10, max: 50 } });
  const got = [];
  c.on('send_to_room', (p) => got.push(p.n));
  const joins = record(c, 'joined');
  const failed = record(c, 'recovery_failed');
  await c.join('feed');
  const bob = await h.HubClient.open(srv, 'bob');
  cleanups.push(() => bob.close());
  const N = 300;
  for (let i = 0; i < N; i++) {
    bob.send('send_to_room', { room_id: 'feed', n: i });
    if (i % 50 === 25) proxy.dropAll(); // alice's connection dies mid-stream
    if (i % 10 === 0) await h.delay(5);
  }
  // And a gap that surely has messages in it: alice is away while bob sends 50. She
  // has caught up first: a client further behind than the history's 100 messages is
  // rightly told recovered: false (under a slow sanitizer build she can lag that far).
  await h.eventually(() => c.state === 'open', { what: 'alice back' });
  await h.eventually(() => got.length >= N, { timeout: 10000, what: `alice caught up (have ${got.length})` });
  proxy.target = null;
  proxy.dropAll();
  const M = 50;
  for (let i = N; i < N + M; i++) bob.send('send_to_room', { room_id: 'feed', n: i });
  await bob.ping();
  const back = nextEvent(c, 'joined', (i) => i.rejoin, 10000);
  proxy.target = srv.port;
  const [last] = await back;
  assert.equal(last.recovered, true);
  assert.ok(last.replayed >= M, JSON.stringify(last));
  await h.eventually(() => got.length >= N + M, { timeout: 10000, what: `${N + M} messages (have ${got.length})` });
  await bob.ping();
  await c.ping();
  assert.deepEqual(got, [...Array(N + M).keys()], 'every message once, in order');
  assert.equal(failed.length, 0);
  const rejoins = joins.filter(([i]) => i.rejoin);
  assert.ok(rejoins.length >= 2);
  assert.ok(rejoins.every(([i]) => i.recovered === true), JSON.stringify(rejoins));
});

test('recovery of the user stream (send_to_user) across a dropped connection', async () => {
  const srv = await server();
  const proxy = await proxyTo(srv.port);
  const c = client(wsUrl(proxy.port), { token: 'erin', backoff: { initial: 10, max: 50 } });
  const sessions = record(c, 'session');
  const got = [];
  c.on('send_to_user', (p) => got.push(p.n));
  await nextEvent(c, 'connect');
  const bob = await h.HubClient.open(srv, 'bob');
  cleanups.push(() => bob.close());
  const N = 120;
  for (let i = 0; i < N; i++) {
    bob.send('send_to_user', { user_id: 'erin', n: i });
    if (i % 40 === 20) proxy.dropAll();
    if (i % 10 === 0) await h.delay(5);
  }
  // Caught up before the last drop: a client still replaying (far behind after the
  // drops above, on a slow machine) could be more than --history-size (100) behind
  // when it comes back, and that recovery fails by design.
  await h.eventually(() => c.state === 'open' && got.length >= N, { timeout: 10000, what: `erin back with all ${N} (have ${got.length})` });
  proxy.target = null;
  proxy.dropAll();
  const M = 30;
  for (let i = N; i < N + M; i++) bob.send('send_to_user', { user_id: 'erin', n: i });
  await bob.ping();
  const back = nextEvent(c, 'session', () => true, 10000);
  proxy.target = srv.port;
  const [last] = await back;
  // On failure: what the client had and what the server said (seen once in a CI run
  // of the sanitizer build, not reproduced since).
  const seen = () => JSON.stringify({ last, sessions: sessions.map(([s]) => s), got: got.length, user: c.user });
  assert.equal(last.recovered, true, seen());
  assert.ok(last.replayed >= M, seen());
  await h.eventually(() => got.length >= N + M, { timeout: 10000, what: `${N + M} user messages (have ${got.length})` });
  await c.ping();
  assert.deepEqual(got, [...Array(N + M).keys()]);
  assert.ok(sessions.length >= 3);
  assert.equal(sessions[0][0].recovered, false, 'a first connect (since=0, no epoch) learns the position');
  assert.ok(sessions.slice(1).every(([s]) => s.recovered === true), JSON.stringify(sessions));
});

test('after a server restart the room cannot be continued: recovery_failed, then live again', async () => {
  const s1 = await server();
  const proxy = await proxyTo(s1.port);
  const c = client(wsUrl(proxy.port), { backoff: { initial: 20, max: 100 } });
  await c.join('news');
  await c.chat('news', 'before');
  const before = c.rooms.get('news');
  const epoch1 = before.epoch;
  await s1.stop();
  const s2 = await server();
  const failed = nextEvent(c, 'recovery_failed', (i) => i.room_id === 'news', 10000);
  const reconnected = nextEvent(c, 'connect', (i) => i.reconnect, 10000);
  proxy.target = s2.port;
  const [info] = await failed;
  assert.equal(info.stream, 'room');
  assert.equal(info.lastEpoch, epoch1);
  assert.notEqual(info.epoch, epoch1);
  await reconnected;
  const bob = await h.HubClient.open(s2, 'bob');
  cleanups.push(() => bob.close());
  const live = nextEvent(c, 'chat_message', (p) => p.content === 'after');
  await bob.request('chat_message', { room_id: 'news', content: 'after' });
  await live;
});

test('installed as a package in Node without a global WebSocket: falls back to ws', async () => {
  const fs = require('node:fs');
  const os = require('node:os');
  const { execFile } = require('node:child_process');
  const srv = await server();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wshub-client-pkg-'));
  cleanups.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(path.join(__dirname, '..', '..', 'clients', 'js'), path.join(dir, 'node_modules', 'wshub-client'));
  fs.symlinkSync(path.dirname(require.resolve('ws/package.json')), path.join(dir, 'node_modules', 'ws'));
  fs.writeFileSync(path.join(dir, 'main.mjs'), `
    import { connect } from 'wshub-client';
    delete globalThis.WebSocket;
    const c = connect(process.argv[2], { token: 'pkg-user' });
    c.on('connect', async () => {
      const r = await c.join('pkg-room');
      console.log(JSON.stringify({ type: r.type, users: (await c.onlineUsers()).online_users }));
      c.close();
    });
    c.on('error', (e) => console.error('client error:', e.message));
    setTimeout(() => { console.error('state after 20 s:', c.state); process.exit(3); }, 20000).unref();
  `);
  const out = await new Promise((resolve, reject) => {
    execFile(process.execPath, ['--preserve-symlinks', path.join(dir, 'main.mjs'), wsUrl(srv.port)], { cwd: dir, timeout: 30000 },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message} (exit ${err.code}, signal ${err.signal})\n${stdout}\n${stderr}`)) : resolve(stdout)));
  });
  assert.deepEqual(JSON.parse(out), { type: 'room_joined', users: ['pkg-user'] });
});
