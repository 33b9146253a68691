'use strict';
// Who may open /ws: JWT authentication (HS256, RS256) with the token in the query, an
// Authorization header or a Sec-WebSocket-Protocol entry; the token's room and
// broadcast claims; the Origin check; and the connection limits (503 / 429).

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const {
  startServer,
  HubClient,
  closeAll,
  request,
  upgradeRequest,
  upgradeStatus,
  eventually,
  signHS256,
  signRS256,
  b64url,
  nowS,
} = require('./hub_helpers');

const SECRET = 'an-hs256-secret-of-at-least-32-bytes!!';

// The refused upgrade's status and error code.
async function refusal(srv, urlPath, headers = {}) {
  const r = await upgradeRequest(srv, urlPath, headers);
  assert.ok(!r.upgraded, `expected a refusal, got 101 for ${urlPath}`);
  return { status: r.status, code: r.json && r.json.error && r.json.error.code, headers: r.headers };
}

// Proves who the server thinks the client is: `from` of its own room message.
async function identity(c, room) {
  await c.join(room);
  const ack = await c.request('send_to_room', { room_id: room, probe: true });
  assert.equal(ack.type, 'ack', JSON.stringify(ack));
  const m = await c.take((x) => x.type === 'send_to_room' && x.room_id === room);
  return m.from;
}

describe('hub auth: --auth hs256', () => {
  let srv;
  const clients = [];
  const keep = (c) => (clients.push(c), c);
  const tok = (claims, secret = SECRET, header) => signHS256({ exp: nowS() + 300, ...claims }, secret, header);

  before(async () => {
    srv = await startServer(['--stream', '', '--auth', 'hs256', '--jwt-secret', SECRET]);
  });
  afterEach(async () => {
    await closeAll(clients);
  });
  after(async () => {
    await closeAll(clients);
    if (srv) await srv.stop();
  });

  it('a valid token in ?token= is accepted and its sub is the user', async () => {
    const c = keep(await HubClient.open(srv, 'alice', { path: `/ws?token=${tok({ sub: 'alice' })}` }));
    assert.equal(await identity(c, 'id-q'), 'alice');
    const r = await c.request('online_users');
    assert.ok(r.payload.online_users.includes('alice'));
  });

  it('a valid token in Authorization: Bearer is accepted', async () => {
    const c = keep(await HubClient.open(srv, 'bob', { path: '/ws', headers: { Authorization: `Bearer ${tok({ sub: 'bob' })}` } }));
    assert.equal(await identity(c, 'id-h'), 'bob');
  });

  it("a token in Sec-WebSocket-Protocol ['wshub', 'bearer.T'] is accepted and the server picks 'wshub'", async () => {
    const t = tok({ sub: 'carol' });
    const c = keep(await HubClient.open(srv, 'carol', { path: '/ws', protocols: ['wshub', `bearer.${t}`] }));
    assert.equal(c.ws.protocol, 'wshub');
    assert.equal(await identity(c, 'id-p1'), 'carol');
  });

  it("a token in Sec-WebSocket-Protocol ['bearer.T'] alone is accepted and that entry is echoed", async () => {
    const t = tok({ sub: 'dave' });
    const c = keep(await HubClient.open(srv, 'dave', { path: '/ws', protocols: [`bearer.${t}`] }));
    assert.equal(c.ws.protocol, `bearer.${t}`);
    assert.equal(await identity(c, 'id-p2'), 'dave');
  });

  it('refusals: expired, wrong signature, missing, alg none, malformed, not yet valid, bad sub → 401 with the reason code', async () => {
    let r = await refusal(srv, `/ws?token=${tok({ sub: 'eve', exp: nowS() - 3600 })}`);
    assert.deepEqual([r.status, r.code], [401, 'expired']);
    assert.match(r.headers['www-authenticate'] || '', /^Bearer/);
    r = await refusal(srv, `/ws?token=${tok({ sub: 'eve' }, 'another-secret-that-is-32-bytes-long!!')}`);
    assert.deepEqual([r.status, r.code], [401, 'bad_signature']);
    r = await refusal(srv, '/ws');
    assert.deepEqual([r.status, r.code], [401, 'missing_token']);
    r = await refusal(srv, '/ws?token=');
    assert.equal(r.status, 401);
    // alg none, unsigned
    const none = `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64url(JSON.stringify({ sub: 'eve', exp: nowS() + 300 }))}.`;
    r = await refusal(srv, `/ws?token=${none}`);
    assert.equal(r.status, 401);
    assert.ok(['bad_alg', 'bad_signature', 'malformed_token'].includes(r.code), r.code);
    // alg none with a valid HS256 signature over it: still refused (alg must match)
    r = await refusal(srv, `/ws?token=${tok({ sub: 'eve' }, SECRET, { alg: 'none', typ: 'JWT' })}`);
    assert.deepEqual([r.status, r.code], [401, 'bad_alg']);
    r = await refusal(srv, `/ws?token=${tok({ sub: 'eve' }, SECRET, { alg: 'hs256', typ: 'JWT' })}`);
    assert.deepEqual([r.status, r.code], [401, 'bad_alg'], 'alg names are case-sensitive');
    r = await refusal(srv, '/ws?token=not.a.jwt');
    assert.deepEqual([r.status, r.code], [401, 'malformed_token']);
    r = await refusal(srv, `/ws?token=${tok({ sub: 'eve', nbf: nowS() + 3600 })}`);
    assert.deepEqual([r.status, r.code], [401, 'not_yet_valid']);
    r = await refusal(srv, `/ws?token=${tok({ name: 'no sub' })}`);
    assert.deepEqual([r.status, r.code], [401, 'bad_subject']);
    r = await refusal(srv, `/ws?token=${signHS256({ sub: 'eve' }, SECRET)}`);
    assert.deepEqual([r.status, r.code], [401, 'expired'], 'no exp counts as expired');
    r = await refusal(srv, '/ws', { Authorization: `Bearer ${tok({ sub: 'eve' }, 'x'.repeat(40))}` });
    assert.deepEqual([r.status, r.code], [401, 'bad_signature']);
    // the guide's ?user_id= is not a token when authentication is on
    r = await refusal(srv, '/ws?user_id=alice');
    assert.deepEqual([r.status, r.code], [401, 'missing_token']);
  });

  it('an exp just past, within the 30 s leeway, is still accepted', async () => {
    keep(await HubClient.open(srv, 'frank', { path: `/ws?token=${tok({ sub: 'frank', exp: nowS() - 5 })}` }));
  });

  it('room claims: join only pub*, publish only pub-news', async () => {
    const t = tok({ sub: 'reader', rooms: { join: ['pub*'], publish: ['pub-news'] } });
    const c = keep(await HubClient.open(srv, 'reader', { path: `/ws?token=${t}` }));
    await c.expectError({ type: 'join_room', payload: { room_id: 'priv' }, id: 'j1' }, 'forbidden', { id: 'j1' });
    await c.join('pub-a');
    await c.expectError({ type: 'send_to_room', payload: { room_id: 'pub-a', text: 'x' }, id: 's1' }, 'forbidden', { id: 's1' });
    await c.expectError({ type: 'chat_message', payload: { room_id: 'pub-a', content: 'x' }, id: 's2' }, 'forbidden', { id: 's2' });
    await c.join('pub-news');
    const ack = await c.request('send_to_room', { room_id: 'pub-news', text: 'ok' });
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    assert.equal((await c.take((m) => m.type === 'send_to_room' && m.room_id === 'pub-news')).payload.text, 'ok');
    await c.join('pub'); // "pub*" also matches "pub"
    await c.expectError({ type: 'join_room', payload: { room_id: 'Pub-x' }, id: 'j2' }, 'forbidden', { id: 'j2' });
    // Without the rooms claim nothing is restricted.
    const free = keep(await HubClient.open(srv, 'free', { path: `/ws?token=${tok({ sub: 'free' })}` }));
    await free.join('priv');
    assert.equal((await free.request('send_to_room', { room_id: 'priv' })).type, 'ack');
  });

  it('a rooms claim of the wrong shape is refused at the upgrade (401 bad_claims)', async () => {
    for (const rooms of [['pub'], { join: 'pub' }, { joins: ['pub'] }, { join: [5] }]) {
      const r = await refusal(srv, `/ws?token=${tok({ sub: 'x', rooms })}`);
      assert.deepEqual([r.status, r.code], [401, 'bad_claims'], JSON.stringify(rooms));
    }
  });

  it('the broadcast claim allows broadcast; without it broadcast is forbidden', async () => {
    const listener = keep(await HubClient.open(srv, 'listener', { path: `/ws?token=${tok({ sub: 'listener' })}` }));
    const plain = keep(await HubClient.open(srv, 'plain', { path: `/ws?token=${tok({ sub: 'plain' })}` }));
    await plain.expectError({ type: 'broadcast', payload: { text: 'no' }, id: 'b0' }, 'forbidden', { id: 'b0' });
    const falseClaim = keep(await HubClient.open(srv, 'nope', { path: `/ws?token=${tok({ sub: 'nope', broadcast: false })}` }));
    await falseClaim.expectError({ type: 'broadcast', payload: { text: 'no' }, id: 'b1' }, 'forbidden', { id: 'b1' });
    const admin = keep(await HubClient.open(srv, 'admin', { path: `/ws?token=${tok({ sub: 'admin', broadcast: true })}` }));
    const ack = await admin.request('broadcast', { text: 'hello all' }, { id: 'b2' });
    assert.equal(ack.type, 'ack', `broadcast with the claim: ${JSON.stringify(ack)}`);
    for (const c of [listener, plain, admin]) {
      const m = await c.takeType('broadcast');
      assert.equal(m.from, 'admin');
      assert.deepEqual(m.payload, { text: 'hello all' });
    }
  });
});

describe('hub auth: --auth rs256', () => {
  let srv;
  let dir;
  let privateKey;
  let publicPem;
  const clients = [];

  before(async () => {
    const kp = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    privateKey = kp.privateKey;
    publicPem = kp.publicKey.export({ type: 'spki', format: 'pem' });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wshub-hub-auth-'));
    const file = path.join(dir, 'public.pem');
    fs.writeFileSync(file, publicPem);
    srv = await startServer(['--stream', '', '--auth', 'rs256', '--jwt-public-key', file]);
  });
  after(async () => {
    await closeAll(clients);
    if (srv) await srv.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a valid RS256 token is accepted; another key, HS256 (even keyed with the public key) and expired are refused', async () => {
    const good = signRS256({ sub: 'rsa-user', exp: nowS() + 300 }, privateKey);
    const c = await HubClient.open(srv, 'rsa-user', { path: `/ws?token=${good}` });
    clients.push(c);
    assert.equal(await identity(c, 'rs'), 'rsa-user');
    const c2 = await HubClient.open(srv, 'rsa-user', { path: '/ws', headers: { Authorization: `Bearer ${good}` } });
    clients.push(c2);

    const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    let r = await refusal(srv, `/ws?token=${signRS256({ sub: 'x', exp: nowS() + 300 }, other)}`);
    assert.deepEqual([r.status, r.code], [401, 'bad_signature']);
    r = await refusal(srv, `/ws?token=${signHS256({ sub: 'x', exp: nowS() + 300 }, publicPem)}`);
    assert.deepEqual([r.status, r.code], [401, 'bad_alg'], 'alg confusion: HS256 keyed with the public key');
    r = await refusal(srv, `/ws?token=${signRS256({ sub: 'x', exp: nowS() - 3600 }, privateKey)}`);
    assert.deepEqual([r.status, r.code], [401, 'expired']);
  });
});

describe('hub auth: --auth none', () => {
  let srv;
  const clients = [];
  before(async () => {
    srv = await startServer(['--stream', '']);
  });
  after(async () => {
    await closeAll(clients);
    if (srv) await srv.stop();
  });

  it('the token is the user id, from ?token=, Authorization or the subprotocol', async () => {
    const a = await HubClient.open(srv, 'plain-a');
    const b = await HubClient.open(srv, 'plain-b', { path: '/ws', headers: { Authorization: 'Bearer plain-b' } });
    const c = await HubClient.open(srv, 'plain-c', { path: '/ws', protocols: ['wshub', 'bearer.plain-c'] });
    clients.push(a, b, c);
    assert.equal(await identity(a, 'n1'), 'plain-a');
    assert.equal(await identity(b, 'n2'), 'plain-b');
    assert.equal(await identity(c, 'n3'), 'plain-c');
    assert.equal(c.ws.protocol, 'wshub');
    const r = await refusal(srv, '/ws');
    assert.deepEqual([r.status, r.code], [401, 'missing_token']);
    const bad = await refusal(srv, '/ws?token=a%22b');
    assert.deepEqual([bad.status, bad.code], [401, 'bad_subject']);
  });

  it("the guide's ?user_id= is accepted in --auth none mode (token.h: auth_token_find_for)", async () => {
    const r = await upgradeRequest(srv, '/ws?user_id=guide-user');
    assert.equal(r.status, 101, `GET /ws?user_id=guide-user → ${r.status} ${r.body}`);
  });
});

describe('hub auth: Origin', () => {
  it('no Origin and same-origin are allowed, any other origin is 403', async () => {
    const srv = await startServer(['--stream', '']);
    try {
      assert.equal(await upgradeStatus(srv, '/ws?token=o1'), 101);
      assert.equal(await upgradeStatus(srv, '/ws?token=o2', { headers: { Origin: `http://127.0.0.1:${srv.port}` } }), 101);
      const r = await refusal(srv, '/ws?token=o3', { Origin: 'https://evil.example.com' });
      assert.deepEqual([r.status, r.code], [403, 'origin_not_allowed']);
      assert.equal((await refusal(srv, '/ws?token=o4', { Origin: 'https://app.example.com' })).status, 403);
      assert.equal((await refusal(srv, '/ws?token=o5', { Origin: `http://127.0.0.1:${srv.port + 1}` })).status, 403);
    } finally {
      await srv.stop();
    }
  });

  it('--allowed-origins https://app.example.com allows that origin (and still same-origin), not others', async () => {
    const srv = await startServer(['--stream', '', '--allowed-origins', 'https://app.example.com']);
    try {
      assert.equal(await upgradeStatus(srv, '/ws?token=o1', { headers: { Origin: 'https://app.example.com' } }), 101);
      assert.equal(await upgradeStatus(srv, '/ws?token=o2', { headers: { Origin: `http://127.0.0.1:${srv.port}` } }), 101);
      assert.equal(await upgradeStatus(srv, '/ws?token=o3'), 101);
      assert.equal((await refusal(srv, '/ws?token=o4', { Origin: 'https://other.example.com' })).status, 403);
      assert.equal((await refusal(srv, '/ws?token=o5', { Origin: 'http://app.example.com' })).status, 403, 'scheme matters');
      assert.equal((await refusal(srv, '/ws?token=o6', { Origin: 'https://app.example.com.evil.net' })).status, 403);
    } finally {
      await srv.stop();
    }
  });
});

describe('hub auth: connection limits', () => {
  it('--max-connections 3: the 4th upgrade gets 503; after a close there is room again; refused tokens take no slot', async () => {
    const srv = await startServer(['--stream', '', '--max-connections', '3']);
    const cl = [];
    try {
      // Failed authentications release their slot.
      for (let i = 0; i < 5; i++) assert.equal((await refusal(srv, '/ws')).status, 401);
      for (const u of ['m1', 'm2', 'm3']) cl.push(await HubClient.open(srv, u));
      const r = await refusal(srv, '/ws?token=m4');
      assert.deepEqual([r.status, r.code], [503, 'server_full']);
      assert.ok(r.headers['retry-after'], 'Retry-After on 503');
      // Order of checks: the limit comes before the token, the Origin before the limit.
      assert.equal((await refusal(srv, '/ws')).status, 503);
      assert.equal((await refusal(srv, '/ws?token=m5', { Origin: 'https://evil.example.com' })).status, 403);
      assert.equal((await getJsonStatus(srv, '/healthz')), 200, 'plain HTTP is not limited');
      await cl.shift().close();
      const again = await eventually(async () => {
        try {
          return await HubClient.open(srv, 'm4');
        } catch (e) {
          if (e.statusCode === 503) return null;
          throw e;
        }
      }, { what: 'a slot after a close' });
      cl.push(again);
      assert.equal((await refusal(srv, '/ws?token=m6')).status, 503);
    } finally {
      await closeAll(cl);
      await srv.stop();
    }
  });

  it('--max-connections-per-ip 2: the 3rd from 127.0.0.1 gets 429; after closing one a new one is accepted', async () => {
    const srv = await startServer(['--stream', '', '--max-connections-per-ip', '2']);
    const cl = [];
    try {
      cl.push(await HubClient.open(srv, 'p1'));
      cl.push(await HubClient.open(srv, 'p2'));
      const r = await refusal(srv, '/ws?token=p3');
      assert.deepEqual([r.status, r.code], [429, 'too_many_connections']);
      await cl.shift().close();
      const again = await eventually(async () => {
        try {
          return await HubClient.open(srv, 'p3');
        } catch (e) {
          if (e.statusCode === 429) return null;
          throw e;
        }
      }, { what: 'a slot after a close' });
      cl.push(again);
      assert.equal((await refusal(srv, '/ws?token=p4')).status, 429);
    } finally {
      await closeAll(cl);
      await srv.stop();
    }
  });
});

async function getJsonStatus(srv, p) {
  return (await request(srv, 'GET', p)).status;
}
