'use strict';
// Every `error` the hub answers with, its code and the client's id echoed; that a
// refused message leaves the connection working; the strike rule (10 bad messages in a
// row → 1008); and the per-connection and per-user rate limits.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const {
  startServer,
  HubClient,
  closeAll,
  metrics,
  metric,
  delay,
} = require('./hub_helpers');

describe('hub errors (default options)', () => {
  let srv;
  const clients = [];
  let n = 0;
  const open = async (user = `u${++n}`) => {
    const c = await HubClient.open(srv, user);
    clients.push(c);
    return c;
  };

  before(async () => {
    srv = await startServer(['--stream', '']);
  });
  afterEach(async () => {
    await closeAll(clients);
  });
  after(async () => {
    await closeAll(clients);
    if (srv) await srv.stop();
  });

  it("regression (the guide's crash): send_to_room without room_id or with room_id 123 is an error and the connection keeps working", async () => {
    const a = await open();
    const b = await open();
    await a.expectError({ type: 'send_to_room', payload: { text: 'no room' }, id: 'c1' }, 'missing_field', { id: 'c1' });
    await a.expectError({ type: 'send_to_room', payload: { room_id: 123, text: 'numeric room' }, id: 'c2' }, 'bad_field', { id: 'c2' });
    await a.expectError({ type: 'send_to_room', id: 'c3' }, 'missing_field', { id: 'c3' });
    await a.expectError({ type: 'send_to_room', payload: { room_id: null }, id: 'c4' }, 'missing_field', { id: 'c4' });
    assert.ok(a.isOpen && srv.proc.exitCode === null, 'connection and server still up');
    await a.ping();
    await a.join('after-crash');
    await b.join('after-crash');
    const ack = await a.request('send_to_room', { room_id: 'after-crash', text: 'still works' });
    assert.equal(ack.type, 'ack');
    assert.equal((await b.take((m) => m.type === 'send_to_room')).payload.text, 'still works');
  });

  it('bad_json: not JSON text (no id can be read)', async () => {
    const a = await open();
    for (const raw of ['not json', '{"type":"ping","id":"x"', '', '{"type":"ping"} trailing', '\u00ff'])
      await a.expectError(raw, 'bad_json');
    // Duplicate member names are refused by the parser.
    await a.expectError('{"type":"ping","type":"ping","id":"d"}', 'bad_json');
    const e = await a.expectError('{"type":"ping","id":"j1",}', 'bad_json');
    assert.equal(e.payload.id, undefined);
    await a.ping();
  });

  it('bad_envelope: not an object, type missing / number / empty, payload an array, id of the wrong kind', async () => {
    const a = await open();
    await a.expectError('[1,2,3]', 'bad_envelope');
    await a.expectError({ payload: {}, id: 'e1' }, 'bad_envelope', { id: 'e1' });
    await a.expectError({ type: 5, id: 'e2' }, 'bad_envelope', { id: 'e2' });
    await a.expectError({ type: '', id: 'e3' }, 'bad_envelope', { id: 'e3' });
    await a.expectError({ type: 'join_room', payload: ['room'], id: 'e4' }, 'bad_envelope', { id: 'e4' });
    await a.expectError({ type: 'join_room', payload: 'room', id: 9 }, 'bad_envelope', { id: 9 });
    await a.ping(); // resets the strike count (10 in a row would close)
    const e5 = await a.expectError({ type: 'ping', id: { a: 1 } }, 'bad_envelope');
    assert.equal(e5.payload.id, undefined, 'an unusable id is not echoed');
    await a.expectError({ type: 'ping', id: [1] }, 'bad_envelope');
    await a.expectError({ type: 'ping', id: 1.5 }, 'bad_envelope');
    await a.expectError({ type: 'ping', id: 'x'.repeat(65) }, 'bad_envelope');
    const ok = await a.request('ping', undefined, { id: 'x'.repeat(64) });
    assert.equal(ok.type, 'pong', 'a 64-byte id is fine');
  });

  it('a JSON text that is not an object (string, number, null) → bad_envelope, not bad_json', async () => {
    // envelope.h: bad_json is "not JSON text"; bad_envelope is "not an object".
    // "just a string", 42 and null are JSON texts (RFC 8259), so they are bad envelopes.
    const a = await open();
    for (const raw of ['"just a string"', '42', 'null', 'true']) {
      a.sendRaw(raw);
      const e = await a.takeType('error');
      assert.equal(e.payload.code, 'bad_envelope', `${raw} is JSON, but not an object: ${JSON.stringify(e)}`);
    }
  });

  it('unknown_type, with the id echoed (string and integer)', async () => {
    const a = await open();
    await a.expectError({ type: 'fly_to_moon', payload: {}, id: 'u1' }, 'unknown_type', { id: 'u1' });
    await a.expectError({ type: 'JOIN_ROOM', id: 77 }, 'unknown_type', { id: 77 });
    await a.expectError({ type: 'pong', id: 'u3' }, 'unknown_type', { id: 'u3' });
  });

  it('missing_field and bad_field for every type that needs a name', async () => {
    const a = await open();
    const long = 'r'.repeat(200);
    for (const type of ['join_room', 'leave_room', 'send_to_room', 'chat_message', 'room_members']) {
      await a.expectError({ type, payload: {}, id: `${type}-m` }, 'missing_field', { id: `${type}-m` });
      await a.expectError({ type, payload: { room_id: 123, content: 'x' }, id: `${type}-n` }, 'bad_field', { id: `${type}-n` });
      await a.expectError({ type, payload: { room_id: '', content: 'x' }, id: `${type}-e` }, 'bad_field', { id: `${type}-e` });
      await a.expectError({ type, payload: { room_id: long, content: 'x' }, id: `${type}-l` }, 'bad_field', { id: `${type}-l` });
      await a.expectError({ type, payload: { room_id: 'a\nb', content: 'x' }, id: `${type}-c` }, 'bad_field', { id: `${type}-c` });
      await a.expectError({ type, payload: { room_id: ['r'], content: 'x' }, id: `${type}-a` }, 'bad_field', { id: `${type}-a` });
      await a.ping(); // resets the strike count
    }
    await a.expectError({ type: 'send_to_user', payload: { text: 'x' }, id: 'su-m' }, 'missing_field', { id: 'su-m' });
    await a.expectError({ type: 'send_to_user', payload: { user_id: 7 }, id: 'su-n' }, 'bad_field', { id: 'su-n' });
    await a.expectError({ type: 'send_to_user', payload: { user_id: '' }, id: 'su-e' }, 'bad_field', { id: 'su-e' });
    await a.expectError({ type: 'send_to_user', payload: { user_id: long }, id: 'su-l' }, 'bad_field', { id: 'su-l' });
    await a.ping();
    // chat_message: content required, a string
    await a.expectError({ type: 'chat_message', payload: { room_id: 'c' }, id: 'cm-m' }, 'missing_field', { id: 'cm-m' });
    await a.expectError({ type: 'chat_message', payload: { room_id: 'c', content: 5 }, id: 'cm-n' }, 'bad_field', { id: 'cm-n' });
    // join_room: presence must be a boolean
    await a.expectError({ type: 'join_room', payload: { room_id: 'p', presence: 'yes' }, id: 'pr' }, 'bad_field', { id: 'pr' });
    // 128 bytes is the limit: accepted
    await a.join('r'.repeat(128));
    await a.expectError({ type: 'join_room', payload: { room_id: 'r'.repeat(129) }, id: 'r129' }, 'bad_field', { id: 'r129' });
  });

  it('leave_room of a room not joined → not_member', async () => {
    const a = await open();
    const b = await open();
    await b.join('someone-elses');
    await a.expectError({ type: 'leave_room', payload: { room_id: 'never-joined' }, id: 'l1' }, 'not_member', { id: 'l1' });
    await a.expectError({ type: 'leave_room', payload: { room_id: 'someone-elses' }, id: 'l2' }, 'not_member', { id: 'l2' });
    await a.join('joined-once');
    await a.leave('joined-once');
    await a.expectError({ type: 'leave_room', payload: { room_id: 'joined-once' }, id: 'l3' }, 'not_member', { id: 'l3' });
  });

  it('binary frames → binary_not_supported, connection kept', async () => {
    const a = await open();
    a.sendRaw(Buffer.from('{"type":"ping"}'), { binary: true });
    const e = await a.takeType('error');
    assert.equal(e.payload.code, 'binary_not_supported');
    await a.ping();
  });

  it('10 consecutive bad messages → close 1008; a good message in between resets the count', async () => {
    const before = await metrics(srv);
    const a = await open();
    for (let i = 0; i < 9; i++) await a.expectError(`bad ${i}`, 'bad_json');
    await a.ping(); // resets
    for (let i = 0; i < 9; i++) await a.expectError({ type: 'nope', id: i }, 'unknown_type', { id: i });
    await a.ping(); // resets again: 18 bad messages so far, never 10 in a row
    assert.ok(a.isOpen);
    for (let i = 0; i < 9; i++) a.sendRaw(`still bad ${i}`);
    a.sendRaw(Buffer.from([1, 2, 3]), { binary: true }); // the 10th, of another kind
    const close = await a.waitClose(5000);
    assert.equal(close.code, 1008, JSON.stringify(close));
    const errors = a.all.filter((m) => m.type === 'error');
    assert.equal(errors.length, 9 + 9 + 10, 'every bad message was answered before the close');
    assert.equal(errors[errors.length - 1].payload.code, 'binary_not_supported');
    const after = await metrics(srv);
    assert.equal(metric(after, 'wshub_hub_strike_closes_total') - metric(before, 'wshub_hub_strike_closes_total'), 1);
  });

  it('10 well-formed but refused messages in a row (send_to_room without room_id) → 1008', async () => {
    // client.c: "Every refused message is answered with an error ... a client that keeps
    // sending bad or excess messages (strikes_to_close in a row) is closed with 1008."
    const a = await open();
    for (let i = 0; i < 10; i++) a.send('send_to_room', { text: `no room ${i}` }, { id: i });
    const close = await a.waitClose(3000).catch((e) => {
      const codes = a.all.filter((m) => m.type === 'error').map((m) => m.payload.code);
      throw new Error(`${e.message}: after ${codes.length} refusals (${codes.join(',')}) the connection is still open`);
    });
    assert.equal(close.code, 1008);
    assert.equal(a.all.filter((m) => m.type === 'error').length, 10);
  });

  it('refusals of every kind add up: missing_field, bad_field, not_member, forbidden mixed with envelope errors → 1008', async () => {
    const a = await open();
    const bad = ['{"type":"join_room"}', '{"type":"join_room","payload":{"room_id":5}}',
      '{"type":"leave_room","payload":{"room_id":"q"}}', '{"type":"broadcast","payload":{}}',
      '{"type":"send_to_user","payload":{}}', 'x', '{"type":"zzz"}',
      '{"type":"chat_message","payload":{"room_id":"c"}}', '{"type":"room_members","payload":{"room_id":""}}',
      '{"type":"send_to_room"}'];
    for (const m of bad) a.sendRaw(m);
    const close = await a.waitClose(3000).catch((e) => {
      throw new Error(`${e.message}; got ${JSON.stringify(a.all.map((m) => m.payload && m.payload.code))}`);
    });
    assert.equal(close.code, 1008);
    assert.equal(close.reason, 'too many bad messages');
    assert.deepEqual(a.all.filter((m) => m.type === 'error').map((m) => m.payload.code),
      ['missing_field', 'bad_field', 'not_member', 'forbidden', 'missing_field', 'bad_json', 'unknown_type',
        'missing_field', 'bad_field', 'missing_field']);
  });

  it('envelope-level errors of every kind add up: 10 in a row → 1008 "too many bad messages"', async () => {
    const a = await open();
    const bad = ['x', '[]', '{"type":1}', '{"type":"zzz"}', '{"payload":{}}', '{"type":"ping","id":{}}',
      '{"type":"ping","payload":[1]}', '{"type":""}', '{"type":"a","type":"b"}'];
    for (const m of bad) a.sendRaw(m);
    a.sendRaw(Buffer.from([0]), { binary: true });
    const close = await a.waitClose(5000).catch((e) => {
      throw new Error(`${e.message}; got ${JSON.stringify(a.all)}`);
    });
    assert.equal(close.code, 1008);
    assert.equal(close.reason, 'too many bad messages');
    assert.deepEqual(a.all.filter((m) => m.type === 'error').map((m) => m.payload.code),
      ['bad_json', 'bad_envelope', 'bad_envelope', 'unknown_type', 'bad_envelope', 'bad_envelope',
        'bad_envelope', 'bad_envelope', 'bad_json', 'binary_not_supported']);
  });
});

describe('hub errors: --send-policy members', () => {
  let srv;
  const clients = [];
  before(async () => {
    srv = await startServer(['--stream', '', '--send-policy', 'members']);
  });
  after(async () => {
    await closeAll(clients);
    if (srv) await srv.stop();
  });

  it('sending to a room one has not joined → not_member; after joining it works', async () => {
    const a = await HubClient.open(srv, 'alice');
    const b = await HubClient.open(srv, 'bob');
    clients.push(a, b);
    await b.join('club');
    await a.expectError({ type: 'send_to_room', payload: { room_id: 'club', text: 'x' }, id: 'nm1' }, 'not_member', { id: 'nm1' });
    await a.expectError({ type: 'chat_message', payload: { room_id: 'club', content: 'x' }, id: 'nm2' }, 'not_member', { id: 'nm2' });
    await b.expectNone((m) => m.type === 'send_to_room' || m.type === 'chat_message', 200);
    await a.join('club');
    const ack = await a.request('send_to_room', { room_id: 'club', text: 'member now' });
    assert.equal(ack.type, 'ack');
    assert.equal((await b.take((m) => m.type === 'send_to_room')).payload.text, 'member now');
    // Membership is per connection: alice's other connection is not a member.
    const a2 = await HubClient.open(srv, 'alice');
    clients.push(a2);
    await a2.expectError({ type: 'send_to_room', payload: { room_id: 'club' }, id: 'nm3' }, 'not_member', { id: 'nm3' });
  });
});

describe('hub errors: --max-rooms-per-connection 2', () => {
  let srv;
  const clients = [];
  before(async () => {
    srv = await startServer(['--stream', '', '--max-rooms-per-connection', '2']);
  });
  after(async () => {
    await closeAll(clients);
    if (srv) await srv.stop();
  });

  it('the third join → too_large; rejoining a joined room is not a new one; after a leave there is room again', async () => {
    const a = await HubClient.open(srv, 'alice');
    clients.push(a);
    await a.join('one');
    await a.join('two');
    await a.expectError({ type: 'join_room', payload: { room_id: 'three' }, id: 'tl' }, 'too_large', { id: 'tl' });
    await a.join('two'); // already in: fine
    const r = await a.request('room_members', { room_id: 'three' });
    assert.deepEqual(r.payload.members, [], 'the refused join left no trace');
    await a.leave('one');
    await a.join('three');
    // The limit is per connection.
    const a2 = await HubClient.open(srv, 'alice');
    clients.push(a2);
    await a2.join('x');
    await a2.join('y');
  });
});

describe('hub errors: --rate-limit 5/5', () => {
  let srv;
  const clients = [];
  before(async () => {
    srv = await startServer(['--stream', '', '--rate-limit', '5/5']);
  });
  after(async () => {
    await closeAll(clients);
    if (srv) await srv.stop();
  });

  it('the 6th message of a burst → rate_limited (id echoed); keeping on → 1008', async () => {
    const before = await metrics(srv);
    const a = await HubClient.open(srv, 'alice');
    clients.push(a);
    for (let i = 1; i <= 6; i++) a.send('ping', undefined, { id: i });
    const answers = await a.takeN(() => true, 6, 5000, 'answers');
    assert.deepEqual(answers.slice(0, 5).map((m) => [m.type, m.id]), [1, 2, 3, 4, 5].map((i) => ['pong', i]));
    assert.equal(answers[5].type, 'error');
    assert.equal(answers[5].payload.code, 'rate_limited');
    assert.equal(answers[5].payload.id, 6);
    for (let i = 7; i <= 30; i++) a.send('ping', undefined, { id: i });
    const close = await a.waitClose(5000);
    assert.equal(close.code, 1008, JSON.stringify(close));
    const limited = a.all.filter((m) => m.type === 'error' && m.payload.code === 'rate_limited');
    assert.equal(limited.length, 10, 'closed on the 10th refusal in a row');
    const after = await metrics(srv);
    assert.ok(metric(after, 'wshub_hub_rate_limited_total') - metric(before, 'wshub_hub_rate_limited_total') >= 10);
  });

  it('another connection of the same user has its own bucket', async () => {
    const a1 = await HubClient.open(srv, 'bob');
    const a2 = await HubClient.open(srv, 'bob');
    clients.push(a1, a2);
    for (let i = 1; i <= 5; i++) a1.send('ping', undefined, { id: i });
    const r1 = await a1.takeN(() => true, 5);
    assert.ok(r1.every((m) => m.type === 'pong'));
    for (let i = 1; i <= 5; i++) a2.send('ping', undefined, { id: i });
    const r2 = await a2.takeN(() => true, 5);
    assert.ok(r2.every((m) => m.type === 'pong'), JSON.stringify(r2));
  });

  it('the bucket refills: after a pause the connection may send again', async () => {
    const a = await HubClient.open(srv, 'carol');
    clients.push(a);
    for (let i = 1; i <= 7; i++) a.send('ping', undefined, { id: i });
    const r = await a.takeN(() => true, 7);
    assert.equal(r.filter((m) => m.type === 'error').length, 2);
    await delay(450); // 5/s: at least 2 tokens back
    await a.ping();
    await a.ping();
  });
});

describe('hub errors: --user-rate-limit 1/5 on --threads 1', () => {
  let srv;
  const clients = [];
  before(async () => {
    srv = await startServer(['--stream', '', '--user-rate-limit', '1/5'], { threads: 1 });
  });
  after(async () => {
    await closeAll(clients);
    if (srv) await srv.stop();
  });

  it('the limit applies across two connections of the same user, not to other users', async () => {
    const a1 = await HubClient.open(srv, 'alice');
    const a2 = await HubClient.open(srv, 'alice');
    const b = await HubClient.open(srv, 'bob');
    clients.push(a1, a2, b);
    for (let i = 1; i <= 3; i++) a1.send('ping', undefined, { id: `a1-${i}` });
    const r1 = await a1.takeN(() => true, 3);
    assert.ok(r1.every((m) => m.type === 'pong'), JSON.stringify(r1));
    for (let i = 1; i <= 3; i++) a2.send('ping', undefined, { id: `a2-${i}` });
    const r2 = await a2.takeN(() => true, 3);
    assert.deepEqual(r2.map((m) => m.type), ['pong', 'pong', 'error'],
      `the user's 6th message (3rd on the second connection) is refused: ${JSON.stringify(r2)}`);
    assert.equal(r2[2].payload.code, 'rate_limited');
    assert.equal(r2[2].payload.id, 'a2-3');
    // bob is another user: his own bucket.
    for (let i = 1; i <= 5; i++) b.send('ping', undefined, { id: i });
    const rb = await b.takeN(() => true, 5);
    assert.ok(rb.every((m) => m.type === 'pong'), JSON.stringify(rb));
    // the first connection is limited too now
    const e = await a1.request('ping');
    assert.equal(e.type, 'error');
    assert.equal(e.payload.code, 'rate_limited');
  });
});
