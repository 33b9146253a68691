'use strict';
// Tokens that expire while connected: the server warns with token_expiring before
// exp, takes a fresh token with `refresh` (same user; new exp and room claims apply),
// refuses bad ones with an error, and closes 4001 at exp + leeway without one. The
// JS client refreshes on its own (getToken) and, after a 4001, gets a new token and
// reconnects. Counted in the hub.token.* metrics.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const WebSocket = require('ws');
const h = require('./hub_helpers');

const SECRET = 'token-refresh-test-secret-at-least-32-bytes';
const sign = (claims) => h.signHS256(claims, SECRET);
let lib;
const cleanups = [];

before(async () => {
  lib = await import(path.join(__dirname, '..', '..', 'clients', 'js', 'wshub.js'));
});
after(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

async function server(args = ['--auth', 'hs256', '--jwt-secret', SECRET, '--jwt-leeway', '1s']) {
  const s = await h.startServer(args);
  cleanups.push(() => s.stop());
  return s;
}

async function open(srv, token) {
  const c = await h.HubClient.open(srv, token);
  cleanups.push(() => c.close());
  return c;
}

const delta = (a, b, k) => h.metric(b, k) - h.metric(a, k);

test('warned before exp, then closed 4001 at exp + leeway without a refresh', async () => {
  const srv = await server();
  const m0 = await h.metrics(srv);
  const exp = h.nowS() + 3;
  const c = await open(srv, sign({ sub: 'alice', exp }));
  const w = await c.takeType('token_expiring', 6000);
  assert.equal(w.payload.expires_at, exp);
  assert.ok(w.payload.expires_in <= 3 && w.payload.expires_in >= 0, JSON.stringify(w));
  assert.equal(w.id, undefined);
  const closed = await c.waitClose(8000);
  assert.deepEqual(closed, { code: 4001, reason: 'token expired' });
  assert.ok(h.nowS() >= exp + 1, 'not closed before exp + leeway');
  const m1 = await h.metrics(srv);
  assert.equal(delta(m0, m1, 'wshub_hub_token_expiring_total'), 1);
  assert.equal(delta(m0, m1, 'wshub_hub_token_expired_closes_total'), 1);
});

test('a refresh with a fresh token keeps the connection past the old exp; its room claims apply', async () => {
  const srv = await server();
  const m0 = await h.metrics(srv);
  const exp = h.nowS() + 3;
  const c = await open(srv, sign({ sub: 'bob', exp, rooms: { join: ['a'], publish: ['a'] } }));
  await c.join('a');
  await c.takeType('token_expiring', 6000);
  const exp2 = h.nowS() + 600;
  const r = await c.request('refresh', { token: sign({ sub: 'bob', exp: exp2, rooms: { join: ['b'], publish: ['b'] } }) });
  assert.equal(r.type, 'token_refreshed', JSON.stringify(r));
  assert.equal(r.payload.expires_at, exp2);
  await h.delay((exp + 2 - h.nowS()) * 1000 + 500); // past the old exp + leeway
  assert.equal(c.closed, null, 'still open');
  await c.ping();
  await c.join('b');
  await c.expectError({ type: 'join_room', payload: { room_id: 'c' }, id: 'j' }, 'forbidden', { id: 'j' });
  const m1 = await h.metrics(srv);
  assert.equal(delta(m0, m1, 'wshub_hub_token_refreshes_total'), 1);
  assert.equal(delta(m0, m1, 'wshub_hub_token_expired_closes_total'), 0);
});

test('refused refreshes: another user, bad signature, expired, missing or non-string token', async () => {
  const srv = await server();
  const m0 = await h.metrics(srv);
  const c = await open(srv, sign({ sub: 'carol', exp: h.nowS() + 600 }));
  const other = await c.request('refresh', { token: sign({ sub: 'mallory', exp: h.nowS() + 600 }) }, { id: 'r1' });
  assert.equal(other.payload.code, 'forbidden');
  assert.match(other.payload.message, /another user/);
  const badSig = await c.request('refresh', { token: h.signHS256({ sub: 'carol', exp: h.nowS() + 600 }, 'x'.repeat(40)) }, { id: 'r2' });
  assert.equal(badSig.payload.code, 'forbidden');
  assert.match(badSig.payload.message, /\(bad_signature\)/);
  const expired = await c.request('refresh', { token: sign({ sub: 'carol', exp: h.nowS() - 60 }) }, { id: 'r3' });
  assert.match(expired.payload.message, /\(expired\)/);
  assert.equal((await c.request('refresh', {}, { id: 'r4' })).payload.code, 'missing_field');
  assert.equal((await c.request('refresh', { token: 5 }, { id: 'r5' })).payload.code, 'bad_field');
  await c.ping(); // still connected, still carol
  const m1 = await h.metrics(srv);
  assert.equal(delta(m0, m1, 'wshub_hub_token_refresh_refused_total'), 3);
  assert.equal(delta(m0, m1, 'wshub_hub_token_refreshes_total'), 0);
});

test('--auth none: a refresh names the same user or is refused; nothing expires', async () => {
  const srv = await server([]);
  const c = await open(srv, 'dave');
  const ok = await c.request('refresh', { token: 'dave' });
  assert.equal(ok.type, 'token_refreshed');
  assert.deepEqual(ok.payload, {});
  const bad = await c.request('refresh', { token: 'erin' });
  assert.equal(bad.payload.code, 'forbidden');
});

test('the JS client refreshes in the connection with getToken', async () => {
  const srv = await server();
  let calls = 0;
  const getToken = () => {
    calls++;
    return sign({ sub: 'fay', exp: h.nowS() + (calls === 1 ? 3 : 600) });
  };
  const c = lib.connect(srv.wsUrl('/ws'), { WebSocket, getToken });
  cleanups.push(async () => c.close());
  const drops = [];
  c.on('disconnect', (i) => drops.push(i));
  await new Promise((r) => c.on('connect', r));
  const refreshed = await h.withTimeout(new Promise((r) => c.on('token_refreshed', r)), 6000, 'token_refreshed');
  assert.ok(refreshed.expires_at > h.nowS() + 500);
  assert.equal(calls, 2);
  await h.delay(3500); // past the first token's exp + leeway
  assert.equal((await c.ping()).type, 'pong');
  assert.deepEqual(drops, [], 'the connection was never dropped');
});

test('the JS client after a 4001: new token, reconnect (and stops without getToken)', async () => {
  const srv = await server();
  let calls = 0;
  const getToken = () => {
    calls++;
    if (calls === 2) return h.signHS256({ sub: 'gus', exp: h.nowS() + 600 }, 'y'.repeat(40)); // refresh refused
    return sign({ sub: 'gus', exp: h.nowS() + (calls === 1 ? 2 : 600) });
  };
  const c = lib.connect(srv.wsUrl('/ws'), { WebSocket, getToken, backoff: { initial: 10, max: 50 } });
  cleanups.push(async () => c.close());
  const closes = [];
  c.on('close', (i) => closes.push(i));
  const dropped = h.withTimeout(new Promise((r) => c.on('disconnect', r)), 8000, 'disconnect');
  await new Promise((r) => c.on('connect', r));
  const d = await dropped;
  assert.equal(d.code, lib.CLOSE_TOKEN_EXPIRED);
  await h.withTimeout(new Promise((r) => c.on('connect', r)), 5000, 'reconnect');
  assert.equal(calls, 3);
  assert.deepEqual(closes, []);
  assert.equal(c.state, 'open');

  // A fixed token cannot be renewed: the client stops with a close event.
  const s = lib.connect(srv.wsUrl('/ws'), { WebSocket, token: sign({ sub: 'hal', exp: h.nowS() + 2 }) });
  cleanups.push(async () => s.close());
  const [info] = await h.withTimeout(new Promise((r) => s.on('close', (...a) => r(a))), 8000, 'close');
  assert.equal(info.code, 4001);
  assert.equal(s.state, 'closed');
});
