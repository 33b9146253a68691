"""Three wshub nodes joined through one Redis (issue 12; docs/cluster.md): room, user
and broadcast delivery across nodes, one `seq` order at every member with concurrent
publishers on different nodes, listings that are the same from every node, a node
with no member of a room receiving none of its messages, one EVALSHA per published
room message, recovery on another node than the one a client left, and presence
events once per user cluster-wide. Real clients: Python `websockets`; a real
`redis-server` on a free loopback port (cluster_harness.py).

Every wait is bounded and polls for an expected state; assertions are on exact
sequences and counts, never on durations.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_cluster
"""

import asyncio
import json
import unittest

from cluster_harness import (ASAN, STEP, Client, ClusterTestCase, async_wait_until,
                             contiguous, node_metric, publish, publish_window,
                             room_channel, run)

RECEIVED = "wshub_cluster_messages_received_total"


def same_frame(m):
    """What every member must see identically (timestamps are the publisher's too,
    but comparing them adds nothing)."""
    return (m["seq"], m["type"], m.get("from"), m.get("room_id"), json_key(m.get("payload")))


def json_key(p):
    return json.dumps(p, sort_keys=True)


class ClusterTests(ClusterTestCase):
    # Presence events off: room positions are taken by the messages of the test alone,
    # so sequences and EVALSHA counts are exact. PresenceTests below turns them on.
    CLUSTER = dict(nodes=3, redis=1, node_args=["--no-presence", "--client-broadcast"])

    def numsub(self, channel):
        return sum(r.numsub(channel) for r in self.cluster.redis)

    def test_room_user_and_broadcast_reach_every_node(self):
        n0, n1, n2 = (n.port for n in self.nodes)
        room = "c-basic"

        async def go():
            a = await Client.open(n0, "alice")
            b = await Client.open(n1, "bob")
            c = await Client.open(n2, "carol")
            a2 = await Client.open(n2, "alice")  # alice's second connection, another node
            joined = {}
            for x in (a, b, c):
                joined[x] = await x.join(room)
            # No wait for the listings: a member gets every message published after
            # its room_joined (docs/protocol.md 3.1), on any node.
            epochs = {j["epoch"] for j in joined.values()}
            self.assertEqual(len(epochs), 1, "one epoch for the room on every node: %r" % joined)
            base = max(j["seq"] for j in joined.values())
            r1 = await a.request("send_to_room", {"room_id": room, "text": "from n0"})
            r2 = await b.request("chat_message", {"room_id": room, "content": "from n1"})
            st, r3 = await asyncio.to_thread(publish, n2, {"type": "data_update", "room_id": room,
                                                           "payload": {"data": {"v": 3}}})
            self.assertEqual(r1["type"], "ack", r1)
            self.assertEqual(r2["type"], "ack", r2)
            self.assertEqual(st, 202, r3)
            seqs = [r1["payload"]["seq"], r2["payload"]["seq"], r3["seq"]]
            self.assertEqual(seqs, [base + 1, base + 2, base + 3],
                             "acks carry consecutive positions assigned in Redis")
            for x in (a, b, c):
                await x.wait_room_seq(room, base + 3)
            got = {x.name: [same_frame(m) for m in x.room_frames(room)] for x in (a, b, c)}
            self.assertEqual(got["alice"], got["bob"])
            self.assertEqual(got["alice"], got["carol"])
            self.assertEqual([f[0] for f in got["alice"]], seqs)
            self.assertEqual([f[1:3] for f in got["alice"]],
                             [("send_to_room", "alice"), ("chat_message", "bob"), ("data_update", None)])
            self.assertEqual(a2.room_frames(room), [], "a connection not in the room gets nothing of it")

            # User messages: every connection of alice (n0 and n2), from n1 and the API.
            u1 = await b.request("send_to_user", {"user_id": "alice", "k": 1})
            u2 = await c.request("send_to_user", {"user_id": "alice", "k": 2})
            st, u3 = await asyncio.to_thread(publish, n1, {"type": "notification", "user_id": "alice",
                                                           "payload": {"title": "t3"}})
            self.assertEqual((u1["type"], u2["type"], st), ("ack", "ack", 202), (u1, u2, u3))
            for x in (a, a2):
                await async_wait_until(lambda x=x: any(m["seq"] == u3["seq"] for m in x.user_frames()),
                                       STEP, "%s gets the API notification" % x.name)
            ua = [(m["seq"], m["type"], json_key(m["payload"])) for m in a.user_frames()]
            ua2 = [(m["seq"], m["type"], json_key(m["payload"])) for m in a2.user_frames()]
            self.assertEqual(ua, ua2, "both connections of alice: same user stream")
            self.assertEqual(len(ua), 3, ua)
            self.assertTrue(contiguous([s for s, _, _ in ua]), ua)
            self.assertEqual(ua[-1][0], u3["seq"])
            self.assertEqual([t for _, t, _ in ua], ["send_to_user", "send_to_user", "notification"])
            for x in (b, c):
                self.assertEqual(x.user_frames(), [], "%s got alice's messages" % x.name)

            # Broadcast: from a client on n2 and from the API on n0, once at every
            # connection on every node (the sender's included); "end" closes the count.
            bc = await c.request("broadcast", {"text": "client broadcast"})
            self.assertEqual(bc["type"], "ack", bc)
            st, body = await asyncio.to_thread(publish, n0, {"type": "announcement", "broadcast": True,
                                                             "payload": {"text": "api"}})
            self.assertEqual(st, 202, body)
            st, body = await asyncio.to_thread(publish, n1, {"type": "announcement", "broadcast": True,
                                                             "payload": {"text": "end"}})
            self.assertEqual(st, 202, body)
            want = sorted([("broadcast", json_key({"text": "client broadcast"}), "carol"),
                           ("announcement", json_key({"text": "api"}), None),
                           ("announcement", json_key({"text": "end"}), None)])
            for x in (a, a2, b, c):
                def bcs(x=x):
                    return [(m["type"], json_key(m["payload"]), m.get("from")) for m in x.log
                            if m["type"] in ("broadcast", "announcement")]
                # Two nodes, no order promised between them: each arrives once.
                await async_wait_until(lambda: len(bcs()) >= 3, STEP, "%s gets 3 broadcasts" % x.name)
                self.assertEqual(sorted(bcs()), want, x.name)
                self.assertFalse([m for m in x.log if m["type"] in ("broadcast", "announcement") and "seq" in m],
                                 "broadcasts have no seq")
            for x in (a, a2, b, c):
                await x.close()

        run(go())

    def test_concurrent_publishers_on_three_nodes_one_order(self):
        room = "c-order"
        per = 60 if ASAN else 150

        async def go():
            members = [await Client.open(n.port, "m%d" % i) for i, n in enumerate(self.nodes)]
            pubs = [await Client.open(n.port, "p%d" % i) for i, n in enumerate(self.nodes)]
            base = max([(await m.join(room))["seq"] for m in members])
            results = await asyncio.gather(*[
                publish_window(p, lambda i, p=p: ("send_to_room", {"room_id": room, "pub": p.name, "n": i}), per,
                               window=16)
                for p in pubs])
            by_seq = {}
            for p, replies in zip(pubs, results):
                self.assertEqual(len(replies), per)
                for i, r in replies.items():
                    self.assertEqual(r["type"], "ack", r)
                    by_seq[r["payload"]["seq"]] = (p.name, i)
            total = per * len(pubs)
            self.assertEqual(sorted(by_seq), list(range(base + 1, base + total + 1)),
                             "every message got its own position, with no gap")
            for m in members:
                await m.wait_room_seq(room, base + total)
            lists = [[(f["seq"], f["from"], f["payload"]["pub"], f["payload"]["n"]) for f in m.room_frames(room)]
                     for m in members]
            for m, lst in zip(members, lists):
                self.assertEqual(len(lst), total, "%s: %d frames" % (m.name, len(lst)))
                self.assertEqual([s for s, *_ in lst], list(range(base + 1, base + total + 1)),
                                 "%s: seq contiguous, in order, no duplicate" % m.name)
                for s, frm, pub, n in lst:
                    self.assertEqual((frm, n), by_seq[s], "%s: seq %d is the message acked with it" % (m.name, s))
            self.assertEqual(lists[0], lists[1], "m0 and m1 saw one order")
            self.assertEqual(lists[0], lists[2], "m0 and m2 saw one order")
            for p in pubs:  # each publisher's messages in the order it sent them
                ns = [n for _, frm, _, n in lists[0] if frm == p.name]
                self.assertEqual(ns, list(range(per)), p.name)
            for x in members + pubs:
                await x.close()

        run(go())

    def test_client_gone_with_answers_on_their_way(self):
        """A client that sends a burst of publishes and closes at once is closed while
        the cluster's answers to it are on their way: its memory (the connection and
        the client, one allocation) is kept until the last answer is back, then freed.
        The sanitizer build reports a use after free or a leak if that goes wrong. Every
        publish the node read is still delivered, in the order sent."""
        room = "c-gone"
        burst = 200

        async def go():
            m = await Client.open(self.nodes[1].port, "member")
            base = (await m.join(room))["seq"]
            p = await Client.open(self.nodes[0].port, "leaver")
            await p.join(room)
            for i in range(burst):
                await p.send("send_to_room", {"room_id": room, "n": i}, "g%d" % i)
            # FIN right behind the frames (a half-close: the socket still reads, so no
            # reset makes the node drop unread input): the node reads the burst and
            # then the end of the connection, and closes it with the answers still out.
            p.ws.transport.write_eof()
            await m.wait_room_seq(room, base + burst)
            got = [(f["seq"], f["payload"]["n"]) for f in m.room_frames(room) if f.get("from") == "leaver"]
            self.assertEqual(got, [(base + 1 + i, i) for i in range(burst)])
            # The node is whole: a new connection publishes and is answered.
            q = await Client.open(self.nodes[0].port, "after")
            await q.join(room)
            r = await q.request("send_to_room", {"room_id": room, "n": "after"})
            self.assertEqual(r["type"], "ack", r)
            for x in (m, q):
                await x.close()

        run(go())

    def test_listings_are_the_same_from_every_node(self):
        n0, n1, n2 = (n.port for n in self.nodes)
        ids = [n.node_id for n in self.nodes]
        self.assertTrue(all(ids) and len(set(ids)) == 3, "each node logs its own node id: %r" % ids)
        ra, rb = "c-list-a", "c-list-b"

        async def go():
            u1 = await Client.open(n0, "lu1")
            u2 = await Client.open(n1, "lu2")
            u3a = await Client.open(n2, "lu3")
            u3b = await Client.open(n0, "lu3")
            u4 = await Client.open(n1, "lu4")
            await u1.join(ra)
            await u1.join(rb)
            await u2.join(ra)
            await u3a.join(rb)
            await u3b.join(rb)
            check = asyncio.to_thread
            await check(self.assertListing, "online", ["lu1", "lu2", "lu3", "lu4"])
            await check(self.assertListing, "rooms", [(ra, 2), (rb, 2)])
            await check(self.assertListing, "members:" + ra, ["lu1", "lu2"])
            await check(self.assertListing, "members:" + rb, ["lu1", "lu3"])
            # The /ws queries give the same answers on every node.
            for x in (u1, u2, u3a):
                o = await x.request("online_users", {"limit": 1000})
                self.assertEqual(o["payload"]["online_users"], ["lu1", "lu2", "lu3", "lu4"], x.name)
                self.assertEqual(o["payload"]["total"], 4)
                rm = await x.request("room_members", {"room_id": rb})
                self.assertEqual(rm["payload"]["members"], ["lu1", "lu3"], x.name)
                lr = await x.request("list_rooms", {"limit": 1000})
                self.assertEqual(lr["payload"]["rooms"], [{"room_id": ra, "members": 2},
                                                          {"room_id": rb, "members": 2}], x.name)
            # Leaving and closing: lu1 goes entirely, lu3 keeps its n0 connection.
            await u1.close()
            await u3a.close()
            await check(self.assertListing, "online", ["lu2", "lu3", "lu4"])
            await check(self.assertListing, "rooms", [(ra, 1), (rb, 1)])
            await check(self.assertListing, "members:" + rb, ["lu3"])
            await u2.leave(ra)
            await check(self.assertListing, "members:" + ra, None)
            await check(self.assertListing, "rooms", [(rb, 1)])
            for x in (u2, u3b, u4):
                await x.close()
            await check(self.assertListing, "online", [])
            await check(self.assertListing, "rooms", [])

        run(go())

    def test_node_without_members_receives_nothing_of_the_room(self):
        n0, n1, n2 = self.nodes
        room = "c-quiet"
        chan = room_channel(room)

        async def go():
            x0 = await Client.open(n0.port, "q0")
            x1 = await Client.open(n1.port, "q1")
            y2 = await Client.open(n2.port, "q2")  # publishes from n2, never a member
            await x0.join(room)
            j = await x1.join(room)
            self.assertEqual(self.numsub(chan), 2, "subscribed by n0 and n1 once they have members")
            before = [node_metric(n.port, RECEIVED) for n in self.nodes]
            k_ws, k_api = 20, 5
            replies = await publish_window(y2, lambda i: ("send_to_room", {"room_id": room, "n": i}), k_ws)
            self.assertEqual(sorted(r["payload"]["seq"] for r in replies.values()),
                             list(range(j["seq"] + 1, j["seq"] + k_ws + 1)))
            for i in range(k_api):
                st, body = await asyncio.to_thread(publish, n2.port, {"type": "tick", "room_id": room,
                                                                      "payload": {"i": i}})
                self.assertEqual(st, 202, body)
            last = j["seq"] + k_ws + k_api
            self.assertEqual(body["seq"], last)
            for x in (x0, x1):
                await x.wait_room_seq(room, last)
                self.assertEqual([m["seq"] for m in x.room_frames(room)], list(range(j["seq"] + 1, last + 1)))
            after = [node_metric(n.port, RECEIVED) for n in self.nodes]
            delta = [a - b for a, b in zip(after, before)]
            self.assertEqual(delta, [k_ws + k_api, k_ws + k_api, 0],
                             "messages received from Redis per node (n2 has no member)")
            self.assertEqual(y2.room_frames(room), [])
            # A member on n2 subscribes it; its leave unsubscribes it again.
            await y2.join(room)
            await async_wait_until(lambda: self.numsub(chan) == 3, STEP, "NUMSUB 3 after a join on n2")
            await y2.leave(room)
            await async_wait_until(lambda: self.numsub(chan) == 2, STEP, "NUMSUB 2 after the leave on n2")
            await x0.close()
            await x1.leave(room)
            await async_wait_until(lambda: self.numsub(chan) == 0, STEP, "NUMSUB 0 once the room is empty")
            await x1.close()
            await y2.close()

        run(go())

    def test_one_evalsha_per_published_room_message(self):
        room = "c-evalsha"

        async def go():
            members = [await Client.open(n.port, "e%d" % i) for i, n in enumerate(self.nodes)]
            for m in members:
                await m.join(room)
            # Registration in Redis is asynchronous: let it settle before counting.
            await asyncio.to_thread(self.assertListing, "members:" + room, ["e0", "e1", "e2"])
            # MONITOR, not INFO commandstats alone: the nodes' presence heartbeats and
            # sweeps are EVALSHA calls too, a few a second whatever the traffic.
            mons = [r.monitor() for r in self.cluster.redis]
            self.addCleanup(lambda: [m.stop() for m in mons])
            k = 10
            results = await asyncio.gather(*[
                publish_window(m, lambda i, m=m: ("send_to_room", {"room_id": room, "from": m.name, "i": i}), k)
                for m in members])
            chats = await publish_window(members[0], lambda i: ("chat_message", {"room_id": room, "content": str(i)}),
                                         5, start=100)
            for i in range(5):
                st, body = await asyncio.to_thread(publish, self.nodes[i % 3].port,
                                                   {"type": "data_update", "room_id": room, "payload": {"data": i}})
                self.assertEqual(st, 202, body)
            n = 3 * k + 5 + 5
            self.assertTrue(all(r["type"] == "ack" for res in results + [chats] for r in res.values()))
            last = max(max(r["payload"]["seq"] for r in res.values()) for res in results + [chats])
            last = max(last, body["seq"])
            for m in members:
                await m.wait_room_seq(room, last)
                self.assertEqual(len(m.room_frames(room)), n)
            cmds = []
            for mon in mons:
                mon.sync()
                cmds += mon.client_commands("{room:%s}" % room)
            self.assertEqual([c[0] for c in cmds], ["EVALSHA"] * n,
                             "one Redis command (EVALSHA) per published message, whatever the members "
                             "and nodes: %r" % [c[:4] for c in cmds if c[0] != "EVALSHA"][:5])
            for m in members:
                await m.close()

        run(go())

    def test_room_and_user_recovery_on_another_node(self):
        n0, n1, n2 = (n.port for n in self.nodes)
        room = "c-recover"

        async def go():
            alice = await Client.open(n0, "ralice")
            bob = await Client.open(n1, "rbob")
            pub = await Client.open(n2, "rpub")
            j = await alice.join(room)
            await bob.join(room)
            r = await publish_window(pub, lambda i: ("send_to_room", {"room_id": room, "n": i}), 5)
            s5 = max(x["payload"]["seq"] for x in r.values())
            await alice.wait_room_seq(room, s5)
            seen = alice.room_frames(room)
            self.assertEqual([m["seq"] for m in seen], list(range(j["seq"] + 1, s5 + 1)))
            alice.abort()  # n0 loses alice without a closing handshake
            r = await publish_window(pub, lambda i: ("send_to_room", {"room_id": room, "n": i}), 7, start=5)
            s12 = max(x["payload"]["seq"] for x in r.values())
            self.assertEqual(s12, s5 + 7)
            await bob.wait_room_seq(room, s12)
            # Back on n2, not n0: the history is in Redis.
            alice2 = await Client.open(n2, "ralice")
            rj = await alice2.join(room, since={"seq": s5, "epoch": j["epoch"]})
            self.assertEqual((rj["recovered"], rj["replayed"], rj["seq"], rj["epoch"]),
                             (True, 7, s12, j["epoch"]), rj)
            r = await publish_window(pub, lambda i: ("send_to_room", {"room_id": room, "n": i}), 3, start=12)
            s15 = s12 + 3
            await alice2.wait_room_seq(room, s15)
            await bob.wait_room_seq(room, s15)
            got = [same_frame(m) for m in alice2.room_frames(room)]
            want = [same_frame(m) for m in bob.room_frames(room) if m["seq"] > s5]
            self.assertEqual([g[0] for g in got], list(range(s5 + 1, s15 + 1)), "no gap, no duplicate")
            self.assertEqual(got, want, "the replayed frames are the ones delivered live")

            # The user stream: connect with since=0 on n0, recover on n1.
            dave = await Client.open(n0, "rdave", "&since=0")
            sess = (await dave.until(lambda m: m["type"] == "session", what="session"))["payload"]
            for i in range(2):
                await bob.request("send_to_user", {"user_id": "rdave", "i": i})
            await async_wait_until(lambda: len(dave.user_frames()) == 2, STEP, "dave gets 2 messages")
            last = dave.user_frames()[-1]["seq"]
            epoch = sess["epoch"]
            self.assertEqual(last, sess["seq"] + 2)
            await dave.close()
            await bob.request("send_to_user", {"user_id": "rdave", "i": 2})
            st, body = await asyncio.to_thread(publish, n2, {"type": "notification", "user_id": "rdave",
                                                             "payload": {"title": "away"}})
            self.assertEqual((st, body.get("seq")), (202, last + 2), body)
            await pub.request("send_to_user", {"user_id": "rdave", "i": 3})
            dave2 = await Client.open(n1, "rdave", "&since=%d&epoch=%s" % (last, epoch))
            s2 = (await dave2.until(lambda m: m["type"] == "session", what="session"))["payload"]
            self.assertEqual((s2["recovered"], s2["replayed"], s2["seq"], s2["epoch"]),
                             (True, 3, last + 3, epoch), s2)
            await async_wait_until(lambda: len(dave2.user_frames()) == 3, STEP, "dave gets the 3 missed")
            await bob.request("send_to_user", {"user_id": "rdave", "i": 4})
            await async_wait_until(lambda: len(dave2.user_frames()) == 4, STEP, "then live")
            self.assertEqual([m["seq"] for m in dave2.user_frames()], list(range(last + 1, last + 5)))
            self.assertEqual([m["type"] for m in dave2.user_frames()],
                             ["send_to_user", "notification", "send_to_user", "send_to_user"])
            for x in (alice2, bob, pub, dave2):
                await x.close()

        run(go())


class PresenceTests(ClusterTestCase):
    """Presence events on: one join and one leave per user cluster-wide, whatever the
    number of its connections and nodes."""

    CLUSTER = dict(nodes=3, redis=1)

    def test_presence_events_once_per_user_cluster_wide(self):
        n0, n1, n2 = (n.port for n in self.nodes)
        room = "c-presence"

        async def go():
            obs = await Client.open(n2, "pobs")
            j = await obs.join(room)
            await obs.until(lambda m: m["type"] == "presence" and m["payload"]["user_id"] == "pobs",
                            what="own join event")
            other = await Client.open(n1, "pother")
            await other.join(room)
            await obs.until(lambda m: m["type"] == "presence" and m["payload"]["user_id"] == "pother",
                            what="pother's join")
            a1 = await Client.open(n0, "palice")
            await a1.join(room)
            await obs.until(lambda m: m["type"] == "presence" and m["payload"]["user_id"] == "palice",
                            what="palice's join")
            a2 = await Client.open(n1, "palice")
            await a2.join(room)  # a second connection of palice, on another node: no event
            await asyncio.to_thread(self.assertListing, "members:" + room, ["palice", "pobs", "pother"])
            await a1.leave(room)  # palice is still in the room through n1: no event
            await a2.close()  # her last connection: one leave
            await obs.until(lambda m: m["type"] == "presence" and m["payload"]["event"] == "leave",
                            what="palice's leave")
            await asyncio.to_thread(self.assertListing, "members:" + room, ["pobs", "pother"])
            mark = await obs.request("send_to_room", {"room_id": room, "mark": 1})
            end = mark["payload"]["seq"]
            for x in (obs, other):
                await x.wait_room_seq(room, end)
            ev = [(m["payload"]["user_id"], m["payload"]["event"]) for m in obs.room_frames(room, ("presence",))]
            self.assertEqual(ev, [("pobs", "join"), ("pother", "join"), ("palice", "join"), ("palice", "leave")])
            seqs = [m["seq"] for m in obs.room_frames(room)]
            self.assertEqual(seqs, list(range(j["seq"] + 1, end + 1)), "presence events take positions too")
            ev2 = [(m["payload"]["user_id"], m["payload"]["event"]) for m in other.room_frames(room, ("presence",))]
            self.assertEqual(ev2, ev[1:], "pother (another node) saw the same events from its join on")
            for x in (obs, other, a1):
                await x.close()

        run(go())


if __name__ == "__main__":
    unittest.main()
