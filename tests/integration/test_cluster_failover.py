"""A node killed with kill -9 while clients publish (issue 12): three wshub nodes and
one Redis behind Debian's haproxy. Two subscribers -- the JavaScript client of
clients/js (cluster_client.js in a node process) and a Python one that reconnects the
same way -- sit on the node that is killed; two publishers on the other nodes keep
sending to the room and to the subscribers' user streams. The subscribers reconnect
through haproxy to a surviving node and recover with since/epoch: every acknowledged
message arrives exactly once, positions contiguous, nothing lost, nothing twice
(counted on the raw frames, before the JS library's own duplicate filter). The dead
node's users and room members disappear from the other nodes' listings within the
presence timeout (3 s here).

Run: WSHUB_BIN=/path/to/wshub NODE_PATH=tests/js/node_modules \
     /usr/bin/python3 -m unittest -v test_cluster_failover
"""

import asyncio
import unittest

from cluster_harness import (ASAN, STEP, Client, ClusterTestCase, JsSub, ResilientSub,
                             async_wait_until, listing, node_metric, run)

ROOM = "f-room"
GHOST_ROOM = "f-ghost"
PRESENCE_TIMEOUT = 3.0


async def publish_until(client, targets, stop):
    """Alternates a room message and a message to one of `targets` (acked one at a
    time, paced) until `stop` is set. Returns ({n: room seq}, {user: [n, ...]})."""
    room_acks, user_sent = {}, {u: [] for u in targets}
    i = 0
    while not stop.is_set():
        r = await client.request("send_to_room", {"room_id": ROOM, "pub": client.name, "n": i})
        assert r["type"] == "ack", r
        room_acks[i] = r["payload"]["seq"]
        u = targets[i % len(targets)]
        r = await client.request("send_to_user", {"user_id": u, "pub": client.name, "n": i})
        assert r["type"] == "ack", r
        user_sent[u].append(i)
        i += 1
        await asyncio.sleep(0.01)  # pacing only: ~100 messages/s per publisher
    return room_acks, user_sent


class FailoverTests(ClusterTestCase):
    # Presence events off: every room position is a publisher's message. A history
    # deep enough for the seconds a reconnect takes, whatever the machine's load.
    CLUSTER = dict(nodes=3, redis=1, balancer=True, presence_timeout="%ds" % PRESENCE_TIMEOUT,
                   node_args=["--no-presence", "--history-size", "100000"])

    def check_stream(self, name, frames, first_seq, expect):
        """frames of one stream at one subscriber: positions first_seq+1.. with no gap
        and no duplicate, and exactly the acknowledged messages `expect` {(pub, n)}."""
        seqs = [m["seq"] for m in frames]
        self.assertTrue(seqs, "%s: nothing received" % name)
        self.assertEqual(seqs, list(range(first_seq + 1, first_seq + 1 + len(seqs))),
                         "%s: positions with a gap or a duplicate: %r" % (name, _runs(seqs)))
        got = [(m["payload"]["pub"], m["payload"]["n"]) for m in frames]
        self.assertEqual(len(got), len(set(got)), "%s: a message twice" % name)
        self.assertEqual(set(got), expect, "%s: lost %d, unexpected %d"
                         % (name, len(expect - set(got)), len(set(got) - expect)))

    def test_kill_9_of_a_node_clients_recover_elsewhere(self):
        n0, n1, n2 = self.nodes
        lb = self.cluster.haproxy
        before_kill = 20 if ASAN else 40

        async def go():
            ghost = await Client.open(n2.port, "fghost")  # direct to n2: dies with it
            stay = await Client.open(n0.port, "fstay")
            await ghost.join(GHOST_ROOM)
            await stay.join(GHOST_ROOM)
            py = ResilientSub(lb.url("/ws", node="n2"), "fpy", [ROOM])
            js = JsSub(lb.url("/ws", node="n2"), "fjs", [ROOM])
            self.addCleanup(js.stop)
            await asyncio.wait_for(py.ready.wait(), STEP)

            def js_ready():
                js.check_alive()
                return js.events("ready")
            await async_wait_until(js_ready, STEP, "JS client joined")
            pubs = [await Client.open(n0.port, "fpub0"), await Client.open(n1.port, "fpub1")]
            check = asyncio.to_thread
            await check(self.assertListing, "members:" + GHOST_ROOM, ["fghost", "fstay"])
            await check(self.assertListing, "online", ["fghost", "fjs", "fpub0", "fpub1", "fpy", "fstay"])
            self.assertEqual(node_metric(n2.port, "wshub_websocket_active_connections"), 3,
                             "ghost and both subscribers are on n2 (the ?node=n2 rule of haproxy)")
            py_join = [p for e, p in py.events if e == "joined"][0]
            py_sess = [p for e, p in py.events if e == "session"][0]
            js_join = js.events("joined")[0]["a"][0]
            js_sess = js.events("session")[0]["a"][0]

            stop = asyncio.Event()
            tasks = [asyncio.ensure_future(publish_until(p, ["fpy", "fjs"], stop)) for p in pubs]
            try:
                await async_wait_until(lambda: len(py.room_frames(ROOM)) >= before_kill and
                                       len(js.room_frames(ROOM)) >= before_kill, STEP,
                                       "subscribers receive before the kill")
                n2.kill9()
                # Both come back through haproxy on another node and keep receiving.
                await async_wait_until(lambda: py.connects >= 2, STEP, "Python client reconnected")
                await async_wait_until(lambda: (js.check_alive(), len(js.events("connect")) >= 2)[1],
                                       STEP, "JS client reconnected")
                mark_py, mark_js = len(py.room_frames(ROOM)), len(js.room_frames(ROOM))
                await async_wait_until(lambda: len(py.room_frames(ROOM)) >= mark_py + before_kill and
                                       len(js.room_frames(ROOM)) >= mark_js + before_kill, STEP,
                                       "subscribers receive after the reconnect")
            finally:
                stop.set()
                results = await asyncio.gather(*tasks, return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r
            room_expect = {}
            user_expect = {"fpy": set(), "fjs": set()}
            for p, (room_acks, user_sent) in zip(pubs, results):
                for n, seq in room_acks.items():
                    room_expect[seq] = (p.name, n)
                for u, ns in user_sent.items():
                    user_expect[u] |= {(p.name, n) for n in ns}
            last = max(room_expect)
            self.assertEqual(sorted(room_expect), list(range(py_join["seq"] + 1, last + 1)),
                             "the publishers' acks: one position each, no gap")
            await async_wait_until(lambda: py.room_frames(ROOM) and py.room_frames(ROOM)[-1]["seq"] >= last and
                                   js.room_frames(ROOM) and js.room_frames(ROOM)[-1]["seq"] >= last, STEP,
                                   "both subscribers reach the last acked position %d" % last)
            await async_wait_until(lambda: len(py.user_frames()) >= len(user_expect["fpy"]) and
                                   len(js.user_frames()) >= len(user_expect["fjs"]), STEP,
                                   "both subscribers get every acked user message")
            self.check_stream("python room", py.room_frames(ROOM), py_join["seq"], set(room_expect.values()))
            self.check_stream("js room", js.room_frames(ROOM), js_join["seq"], set(room_expect.values()))
            self.check_stream("python user", py.user_frames(), py_sess["seq"], user_expect["fpy"])
            self.check_stream("js user", js.user_frames(), js_sess["seq"], user_expect["fjs"])
            # Both recovered (not told to reload): the room with since, the user stream
            # with ?since=&epoch=.
            rejoins = [p for e, p in py.events if e == "joined"][1:]
            self.assertTrue(rejoins and all(p.get("recovered") is True for p in rejoins), py.events)
            sessions = [p for e, p in py.events if e == "session"][1:]
            self.assertTrue(sessions and all(p.get("recovered") is True for p in sessions), py.events)
            js_rejoins = [e["a"][0] for e in js.events("joined")[1:]]
            self.assertTrue(js_rejoins and all(j.get("recovered") is True for j in js_rejoins), js_rejoins)
            js_sessions = [e["a"][0] for e in js.events("session")[1:]]
            self.assertTrue(js_sessions and all(s.get("recovered") is True for s in js_sessions), js_sessions)
            self.assertEqual(js.events("recovery_failed"), [])
            # What the JS library handed to the application: the same, once each.
            js_app = [m["m"] for m in js.events("message") if m["m"].get("room_id") == ROOM and "seq" in m["m"]]
            self.assertEqual([m["seq"] for m in js_app], [m["seq"] for m in js.room_frames(ROOM)])

            # The dead node's users and members vanish from the survivors' listings
            # (bounded by the presence timeout; the deadline leaves room for a loaded
            # machine) while the reconnected clients stay listed.
            ports = [n0.port, n1.port]
            await check(self.assertListing, "members:" + GHOST_ROOM, ["fstay"], ports,
                        PRESENCE_TIMEOUT + STEP)
            await check(self.assertListing, "online", ["fjs", "fpub0", "fpub1", "fpy", "fstay"], ports,
                        PRESENCE_TIMEOUT + STEP)
            self.assertEqual(listing(n0.port, "members:" + ROOM), ["fjs", "fpy"])
            await py.stop()
            await asyncio.to_thread(js.stop)
            for x in pubs + [stay]:
                await x.close()
            ghost.abort()

        run(go())


class ShardedFailoverTests(FailoverTests):
    """The same with two Redis instances: the room and the two user streams may live
    on either."""

    CLUSTER = dict(FailoverTests.CLUSTER, redis=2)


def _runs(seqs):
    """A short description of where a sequence breaks (for failure messages)."""
    out = []
    for a, b in zip(seqs, seqs[1:]):
        if b != a + 1:
            out.append((a, b))
    return out[:10]


if __name__ == "__main__":
    unittest.main()
