'use strict';
// The hub over /ws, end to end: rooms, users with several connections, presence,
// queries (over WS and the HTTP API), acks and sequence numbers, and ordering under
// concurrent senders. The whole suite runs twice, on one worker thread and on four,
// so that every delivery path (same shard, other shards) is exercised.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const {
  startServer,
  HubClient,
  closeAll,
  getJson,
  eventually,
} = require('./hub_helpers');

const isRoomMsg = (room, type = 'send_to_room') => (m) => m.type === type && m.room_id === room;
const isPresence = (room, user, event) => (m) => m.type === 'presence' && m.room_id === room &&
  (user === undefined || m.payload.user_id === user) && (event === undefined || m.payload.event === event);

function assertIncreasing(seqs, what) {
  for (let i = 1; i < seqs.length; i++)
    assert.ok(seqs[i] > seqs[i - 1], `${what}: seq not strictly increasing at ${i}: ${seqs.slice(Math.max(0, i - 3), i + 2)}`);
}

for (const threads of [1, 4]) {
  describe(`hub core (--threads ${threads})`, () => {
    let srv;
    const clients = [];
    let uniq = 0;
    // Unique user and room names per test: tests share the server.
    const name = (s) => `${s}-t${threads}-${++uniq}`;
    const open = async (user, opts) => {
      const c = await HubClient.open(srv, user, opts);
      clients.push(c);
      return c;
    };
    const openN = async (user, n) => {
      const out = [];
      for (let i = 0; i < n; i++) out.push(await open(user));
      return out;
    };

    before(async () => {
      srv = await startServer(['--stream', ''], { threads });
    });
    afterEach(async () => {
      await closeAll(clients);
    });
    after(async () => {
      await closeAll(clients);
      if (srv) await srv.stop();
    });

    it('room messages reach every member connection (sender included) and no one else; from is the authenticated user', async () => {
      const [alice, bob, carol, dave] = ['alice', 'bob', 'carol', 'dave'].map(name);
      const room = name('room');
      const aliceC = await openN(alice, 3); // the third one does not join
      const bobC = await openN(bob, 3);
      const carolC = await openN(carol, 1);
      const daveC = await openN(dave, 1);
      const members = [aliceC[0], aliceC[1], ...bobC, ...carolC];
      for (const c of members) await c.join(room);
      const outsiders = [aliceC[2], ...daveC];

      // Every member connection sends one message claiming to be someone else.
      members.forEach((c, i) => c.send('send_to_room', { room_id: room, n: i, user_id: 'mallory', text: `hello ${i}` }));

      let reference = null;
      for (const c of members) {
        const got = await c.takeN(isRoomMsg(room), members.length, 10000, `room messages at ${c.user}`);
        for (const m of got) {
          const sender = members[m.payload.n];
          assert.equal(m.from, sender.user, `from is the sender's authenticated user: ${JSON.stringify(m)}`);
          assert.equal(m.payload.user_id, 'mallory', 'the payload is relayed as sent');
          assert.equal(m.payload.text, `hello ${m.payload.n}`);
          assert.equal(m.room_id, room);
          assert.equal(typeof m.seq, 'number');
          assert.match(m.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        }
        assert.deepEqual(got.map((m) => m.payload.n).sort((a, b) => a - b), members.map((_, i) => i),
          `${c.user} got each member's message exactly once`);
        assertIncreasing(got.map((m) => m.seq), `at ${c.user}`);
        const order = got.map((m) => `${m.seq}:${m.payload.n}`);
        if (reference === null) reference = order;
        else assert.deepEqual(order, reference, 'every member sees the same messages with the same seqs in the same order');
      }
      for (const c of outsiders) await c.expectNone((m) => m.room_id === room, 300, 'a message of a room it is not in');
      for (const c of members) await c.expectNone(isRoomMsg(room), 0, 'a duplicate room message');
    });

    it('leave_room stops delivery to that connection only; the user stays a member through its other connection', async () => {
      const [alice, bob] = ['alice', 'bob'].map(name);
      const room = name('room');
      const [a1, a2] = await openN(alice, 2);
      const [b1] = await openN(bob, 1);
      for (const c of [a1, a2, b1]) await c.join(room);
      await a1.leave(room);
      b1.send('send_to_room', { room_id: room, text: 'after a1 left' });
      const m = await a2.take(isRoomMsg(room));
      assert.equal(m.payload.text, 'after a1 left');
      await b1.take(isRoomMsg(room));
      await a1.expectNone(isRoomMsg(room), 300, 'a message after leaving');
      let r = await a1.request('room_members', { room_id: room });
      assert.deepEqual(r.payload.members, [alice, bob].sort());
      await a2.leave(room);
      r = await a1.request('room_members', { room_id: room });
      assert.deepEqual(r.payload.members, [bob]);
      assert.equal(r.payload.count, 1);
    });

    it('send_to_user reaches every connection of that user and only them', async () => {
      const [alice, bob, carol] = ['alice', 'bob', 'carol'].map(name);
      const aliceC = await openN(alice, 2);
      const bobC = await openN(bob, 3);
      const [carol1] = await openN(carol, 1);

      const ack = await carol1.request('send_to_user', { user_id: bob, text: 'psst', user_from: 'mallory' });
      assert.equal(ack.type, 'ack', JSON.stringify(ack));
      assert.equal(ack.payload.seq, undefined, 'the ack names no position: the seq is the recipient\'s');
      const seqs = new Set();
      for (const c of bobC) {
        const m = await c.takeType('send_to_user');
        assert.equal(m.from, carol);
        assert.deepEqual(m.payload, { user_id: bob, text: 'psst', user_from: 'mallory' });
        // The position in bob's user stream: the same at each of his connections.
        assert.equal(typeof m.seq, 'number');
        seqs.add(m.seq);
        assert.equal(m.room_id, undefined);
      }
      assert.equal(seqs.size, 1);
      // To oneself: every connection, the sending one included.
      aliceC[0].send('send_to_user', { user_id: alice, text: 'note to self' });
      for (const c of aliceC) assert.equal((await c.takeType('send_to_user')).payload.text, 'note to self');
      for (const c of [...aliceC, carol1]) await c.expectNone((m) => m.type === 'send_to_user', 300);
      for (const c of bobC) await c.expectNone((m) => m.type === 'send_to_user', 0, 'a duplicate');
      // To a user who is not connected: accepted, delivered to no one.
      const ack2 = await carol1.request('send_to_user', { user_id: name('nobody'), text: 'x' });
      assert.equal(ack2.type, 'ack');
    });

    it('broadcast is refused (forbidden) without --client-broadcast and reaches everyone with it', async () => {
      const [alice, bob] = ['alice', 'bob'].map(name);
      const [a1] = await openN(alice, 1);
      const [b1] = await openN(bob, 1);
      const e = await a1.request('broadcast', { text: 'all' }, { id: 'b-1' });
      assert.equal(e.type, 'error');
      assert.equal(e.payload.code, 'forbidden');
      assert.equal(e.payload.id, 'b-1');
      await b1.expectNone((m) => m.type === 'broadcast', 300);
      await a1.ping();

      const srv2 = await startServer(['--stream', '', '--client-broadcast'], { threads });
      const local = [];
      try {
        for (const u of [alice, alice, bob, 'carol']) local.push(await HubClient.open(srv2, u));
        const ack = await local[0].request('broadcast', { text: 'to everyone' }, { id: 7 });
        assert.equal(ack.type, 'ack', JSON.stringify(ack));
        assert.equal(ack.payload.id, 7);
        for (const c of local) {
          const m = await c.takeType('broadcast');
          assert.equal(m.from, alice);
          assert.deepEqual(m.payload, { text: 'to everyone' });
        }
        for (const c of local) await c.expectNone((m) => m.type === 'broadcast', 200, 'a duplicate broadcast');
      } finally {
        await closeAll(local);
        await srv2.stop();
      }
    });

    it('presence: first connection joining → join, later ones nothing, last one leaving (or closing) → leave', async () => {
      const [alice, bob, carol, dave] = ['alice', 'bob', 'carol', 'dave'].map(name);
      const room = name('room');
      const [b1] = await openN(bob, 1);
      const [a1, a2] = await openN(alice, 2);
      const [c1] = await openN(carol, 1);
      const [d1] = await openN(dave, 1);
      const nextPresence = (c) => c.takeType('presence', 5000, (m) => m.room_id === room);

      await b1.join(room);
      let p = await nextPresence(b1);
      assert.deepEqual(p.payload, { room_id: room, user_id: bob, event: 'join' }, 'the joiner sees its own join');
      assert.equal(p.from, undefined, 'presence comes from the server');
      const seqs = [p.seq];

      await a1.join(room);
      p = await nextPresence(b1);
      assert.deepEqual(p.payload, { room_id: room, user_id: alice, event: 'join' });
      seqs.push(p.seq);
      p = await nextPresence(a1);
      assert.deepEqual(p.payload, { room_id: room, user_id: alice, event: 'join' });

      await a2.join(room); // alice's second connection: no event
      await c1.join(room); // a marker: bob's next event must be carol's join
      p = await nextPresence(b1);
      assert.deepEqual(p.payload, { room_id: room, user_id: carol, event: 'join' },
        'no presence event for a second connection of a user already in the room');
      seqs.push(p.seq);
      // a2 joined after alice's join event: its first event is carol's.
      p = await nextPresence(a2);
      assert.deepEqual(p.payload, { room_id: room, user_id: carol, event: 'join' });

      await a1.leave(room); // alice is still in through a2: no event
      await d1.join(room); // marker
      p = await nextPresence(b1);
      assert.deepEqual(p.payload, { room_id: room, user_id: dave, event: 'join' },
        'no leave event while another connection of the user is still in the room');
      seqs.push(p.seq);
      await a1.expectNone((m) => m.type === 'presence' && m.room_id === room && m.payload.user_id === dave, 200,
        'presence after leaving');
      const r = await b1.request('room_members', { room_id: room });
      assert.deepEqual(r.payload.members, [alice, bob, carol, dave].sort());

      await a2.close(); // alice's last connection in the room goes away
      p = await nextPresence(b1);
      assert.deepEqual(p.payload, { room_id: room, user_id: alice, event: 'leave' });
      seqs.push(p.seq);

      await c1.leave(room);
      p = await nextPresence(b1);
      assert.deepEqual(p.payload, { room_id: room, user_id: carol, event: 'leave' });
      seqs.push(p.seq);
      assertIncreasing(seqs, 'presence events at bob');
      await b1.expectNone((m) => m.type === 'presence' && m.room_id === room, 200, 'an extra presence event');
      const r2 = await b1.request('room_members', { room_id: room });
      assert.deepEqual(r2.payload.members, [bob, dave].sort());
    });

    it('presence opt-out: a member that joined with presence:false gets no presence events but still gets messages', async () => {
      const [bob, carol, dave] = ['bob', 'carol', 'dave'].map(name);
      const room = name('room');
      const [b1] = await openN(bob, 1);
      const [c1] = await openN(carol, 1);
      const [d1] = await openN(dave, 1);
      await b1.join(room);
      await c1.join(room, { presence: false });
      await d1.join(room);
      await d1.leave(room);
      // bob sees dave join and leave
      const evs = await b1.takeN((m) => m.type === 'presence' && m.payload.user_id === dave, 2);
      assert.deepEqual(evs.map((m) => m.payload.event), ['join', 'leave']);
      b1.send('send_to_room', { room_id: room, text: 'still here' });
      assert.equal((await c1.take(isRoomMsg(room))).payload.text, 'still here');
      await c1.expectNone((m) => m.type === 'presence', 200, 'a presence event after opting out');
      const bad = await c1.request('join_room', { room_id: room, presence: 'no' });
      assert.equal(bad.type, 'error');
      assert.equal(bad.payload.code, 'bad_field');

      // Joining again with presence:true turns the events back on.
      await c1.join(room, { presence: true });
      await d1.join(room);
      const p = await c1.take(isPresence(room, dave, 'join'));
      assert.equal(p.payload.event, 'join');
    });

    it('online_users, room_members and list_rooms agree over WS and the HTTP API', async () => {
      const [alice, bob] = ['alice', 'bob'].map(name);
      const [r1, r2, unknown] = ['r1', 'r2', 'nothing'].map(name);
      const [a1, a2] = await openN(alice, 2);
      const [b1] = await openN(bob, 1);
      await a1.join(r1);
      await a2.join(r1);
      await b1.join(r1);
      await b1.join(r2);

      await eventually(async () => {
        const ws = await a1.request('online_users');
        const api = await getJson(srv, '/api/online');
        assert.equal(api.status, 200);
        assert.equal(ws.type, 'online_users');
        assert.ok(ws.payload.online_users.includes(alice) && ws.payload.online_users.includes(bob));
        assert.equal(ws.payload.count, ws.payload.online_users.length);
        assert.deepEqual([...ws.payload.online_users].sort(), ws.payload.online_users, 'sorted');
        assert.equal(new Set(ws.payload.online_users).size, ws.payload.online_users.length, 'each user once');
        assert.deepEqual(api.json.online_users, ws.payload.online_users);
        assert.equal(api.json.count, ws.payload.count);
        return true;
      }, { timeout: 3000, what: 'online_users over WS and API to agree' });

      const wsRooms = await a1.request('list_rooms');
      const apiRooms = await getJson(srv, '/api/rooms');
      assert.equal(apiRooms.status, 200);
      const pick = (rooms) => rooms.filter((x) => x.room_id === r1 || x.room_id === r2);
      assert.deepEqual(pick(wsRooms.payload.rooms), [{ room_id: r1, members: 2 }, { room_id: r2, members: 1 }],
        'members counts distinct users');
      assert.deepEqual(pick(apiRooms.json.rooms), pick(wsRooms.payload.rooms));
      assert.equal(wsRooms.payload.count, wsRooms.payload.rooms.length);
      assert.equal(apiRooms.json.count, apiRooms.json.rooms.length);

      const wsm = await b1.request('room_members', { room_id: r1 });
      assert.deepEqual(wsm.payload, { room_id: r1, members: [alice, bob].sort(), count: 2, total: 2, next_cursor: null });
      const apim = await getJson(srv, `/api/rooms/${encodeURIComponent(r1)}/members`);
      assert.equal(apim.status, 200);
      assert.deepEqual(apim.json, { room_id: r1, members: [alice, bob].sort(), count: 2, total: 2, next_cursor: null });

      const wsu = await b1.request('room_members', { room_id: unknown });
      assert.deepEqual(wsu.payload, { room_id: unknown, members: [], count: 0, total: 0, next_cursor: null });
      const apiu = await getJson(srv, `/api/rooms/${encodeURIComponent(unknown)}/members`);
      assert.equal(apiu.status, 404);

      // After everyone leaves, the room is gone from both views.
      await b1.leave(r2);
      const after2 = await getJson(srv, '/api/rooms');
      assert.ok(!after2.json.rooms.some((x) => x.room_id === r2), 'an empty room is not listed');
      assert.equal((await getJson(srv, `/api/rooms/${encodeURIComponent(r2)}/members`)).status, 404);
    });

    it('ack carries the id (string or integer), the room and the seq the members saw; no id, no ack', async () => {
      const [alice, bob] = ['alice', 'bob'].map(name);
      const room = name('room');
      const [a1] = await openN(alice, 1);
      const [b1] = await openN(bob, 1);
      const j = await a1.request('join_room', { room_id: room }, { id: 'join-1' });
      assert.equal(j.type, 'room_joined');
      assert.equal(j.id, 'join-1');
      await b1.join(room);

      const ack = await a1.request('send_to_room', { room_id: room, k: 1 }, { id: 'msg-1' });
      assert.equal(ack.type, 'ack', JSON.stringify(ack));
      assert.deepEqual(Object.keys(ack.payload).sort(), ['id', 'room_id', 'seq']);
      assert.equal(ack.payload.id, 'msg-1');
      assert.equal(ack.payload.room_id, room);
      const atB = await b1.take(isRoomMsg(room));
      const atA = await a1.take(isRoomMsg(room));
      assert.equal(atB.seq, ack.payload.seq);
      assert.equal(atA.seq, ack.payload.seq);
      assert.equal(atB.id, undefined, "the sender's id is not relayed to others");

      const ack2 = await a1.request('send_to_room', { room_id: room, k: 2 }, { id: 42 });
      assert.equal(ack2.payload.id, 42);
      assert.ok(ack2.payload.seq > ack.payload.seq);
      assert.equal((await b1.take(isRoomMsg(room))).seq, ack2.payload.seq);

      a1.send('send_to_room', { room_id: room, k: 3 }); // no id: no ack
      assert.equal((await b1.take(isRoomMsg(room))).payload.k, 3);
      await a1.ping();
      await a1.expectNone((m) => m.type === 'ack', 100, 'an ack for a message without id');
    });

    it("the guide's client envelope works unchanged (its timestamp is replaced by the server's)", async () => {
      const [alice, bob] = ['alice', 'bob'].map(name);
      const [a1] = await openN(alice, 1);
      const [b1] = await openN(bob, 1);
      await a1.join('r1');
      await b1.join('r1');
      const t0 = Date.now();
      a1.sendRaw('{"type":"send_to_room","payload":{"room_id":"r1","message":"Hello from the guide"},' +
        '"timestamp":"2024-01-01T00:00:00Z","trace_id":"abc","span_id":"def"}');
      for (const c of [a1, b1]) {
        const m = await c.take(isRoomMsg('r1'));
        assert.deepEqual(m.payload, { room_id: 'r1', message: 'Hello from the guide' });
        assert.equal(m.from, alice);
        assert.notEqual(m.timestamp, '2024-01-01T00:00:00Z', 'the server stamps its own time');
        assert.ok(Math.abs(Date.parse(m.timestamp) - t0) < 60000, `server timestamp ${m.timestamp} is now`);
        assert.equal(m.trace_id, undefined);
      }
      // chat_message: the server stamps the author as user_id.
      b1.send('chat_message', { room_id: 'r1', content: 'hi alice', user_id: 'mallory' });
      for (const c of [a1, b1]) {
        const m = await c.take(isRoomMsg('r1', 'chat_message'));
        assert.deepEqual(m.payload, { room_id: 'r1', user_id: bob, content: 'hi alice' });
        assert.equal(m.from, bob);
      }
      await a1.leave('r1');
      await b1.leave('r1');
    });

    it('one sender, several targets: a recipient gets room and user messages in the order they were sent', async () => {
      const [alice, bob] = ['alice', 'bob'].map(name);
      const room = name('room');
      const [a1] = await openN(alice, 1);
      const bobC = await openN(bob, 2);
      for (const c of bobC) await c.join(room);
      for (let i = 0; i < 100; i++) {
        if (i % 2) a1.send('send_to_user', { user_id: bob, i });
        else a1.send('send_to_room', { room_id: room, i });
      }
      for (const c of bobC) {
        const got = await c.takeN((m) => (m.type === 'send_to_user' || m.type === 'send_to_room') && m.from === alice, 100);
        assert.deepEqual(got.map((m) => m.payload.i), [...Array(100).keys()], 'in send order');
      }
    });

    // 4 senders × 200 numbered messages to one room; every member (senders included,
    // spread over the workers) must get each sender's messages in order, with seqs
    // strictly increasing and contiguous, nothing lost or duplicated.
    async function burst({ paced }) {
      const room = name(paced ? 'paced' : 'busy');
      const PER = 200;
      const CHUNK = 20;
      const senders = [];
      for (let k = 0; k < 4; k++) senders.push(await open(name(`sender${k}`)));
      const listeners = [...await openN(name('lis'), 3), ...await openN(name('ten'), 3)];
      const marker = await open(name('marker'));
      const members = [...senders, ...listeners, marker];
      for (const c of members) await c.join(room);
      // The marker joined last: once every member has its join event, no other event of
      // the joins is still on its way.
      for (const c of members) await c.take(isPresence(room, marker.user, 'join'));

      if (!paced) {
        // As fast as possible: each sender's 200 messages leave in one TCP write.
        for (const c of senders) c.ws._socket.cork();
        for (let i = 0; i < PER; i++)
          for (let k = 0; k < senders.length; k++)
            senders[k].send('send_to_room', { room_id: room, s: k, n: i });
        for (const c of senders) c.ws._socket.uncork();
      } else {
        // Each sender waits for the ack of every CHUNK-th message before going on, so
        // at most 4 × CHUNK messages are in flight at once.
        await Promise.all(senders.map(async (c, k) => {
          for (let i = 0; i < PER; i += CHUNK) {
            for (let j = i; j < i + CHUNK - 1; j++) c.send('send_to_room', { room_id: room, s: k, n: j });
            const ack = await c.request('send_to_room', { room_id: room, s: k, n: i + CHUNK - 1 }, { timeout: 10000 });
            assert.equal(ack.type, 'ack', JSON.stringify(ack));
          }
        }));
      }

      let reference = null;
      for (const c of members) {
        const got = await c.takeN(isRoomMsg(room), PER * senders.length, 20000, `burst at ${c.user}`);
        const next = [0, 0, 0, 0];
        for (const m of got) {
          assert.equal(m.payload.n, next[m.payload.s],
            `${c.user}: sender ${m.payload.s}'s messages out of order (expected n=${next[m.payload.s]}, got ${m.payload.n})`);
          next[m.payload.s]++;
          assert.equal(m.from, senders[m.payload.s].user);
        }
        assert.deepEqual(next, [PER, PER, PER, PER]);
        const seqs = got.map((m) => m.seq);
        assertIncreasing(seqs, `at ${c.user}`);
        assert.equal(seqs[seqs.length - 1] - seqs[0], seqs.length - 1,
          'no gaps: nothing else was published to the room during the burst');
        const order = got.map((m) => `${m.seq}/${m.payload.s}/${m.payload.n}`).join(',');
        if (reference === null) reference = order;
        else assert.equal(order, reference, 'every member sees one order');
        await c.expectNone(isRoomMsg(room), 0, 'an extra message');
      }
      for (const c of members) assert.ok(c.isOpen, `${c.user} still connected`);
    }

    it('ordering: 4 senders × 200 messages as fast as possible reach every member in order, none lost or duplicated', async () => {
      await burst({ paced: false });
    });

    it('ordering (paced: at most 80 messages in flight): 4 senders × 200 messages, in order, none lost or duplicated', async () => {
      await burst({ paced: true });
    });
  });
}
