"""Redis killed and restarted under two wshub nodes (issue 12): while Redis is
unreachable `/readyz` answers 503 on every node, every publish gets an `error` with
code `unavailable` (HTTP 503 `unavailable` on the API) and is counted in
`wshub_cluster_unavailable_total`, nothing of it is delivered, and the nodes' memory
stays bounded however many publishes are refused. When Redis is back on the same port
the nodes reconnect and resubscribe by themselves:

* a Redis that lost its data (no persistence): every member is told with a
  `room_joined` carrying `recovered: false` and the room's new epoch and position,
  the same on both nodes, and publishing continues from there;
* a Redis that kept its data (append-only file): the same epoch, positions continue,
  nobody is told anything, a member on the other node receives the next messages
  (it was resubscribed), and a recovery from before the outage still works.

And one node cut off from Redis (a relay that stops forwarding) while the other
keeps working: the cut-off node reports not ready and refuses publishes, its users
leave the other node's listings after the presence timeout and come back after, and
its members get what they missed or are told (never a silent gap).

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_cluster_redis
"""

import asyncio
import unittest

from cluster_harness import (ASAN, STEP, Client, ClusterTestCase, RedisServer, WshubServer,
                             _free_port, async_wait_until, http_status, node_metric, publish,
                             publish_window, run, wait_until)
from wshub_harness import rss_bytes

UNAVAILABLE = "wshub_cluster_unavailable_total"
ROOM = "rd-room"


def is_unsolicited_rejoin(m):
    return m["type"] == "room_joined" and "id" not in m


class RedisLossBase(ClusterTestCase):
    CLUSTER = dict(nodes=2, redis=1, node_args=["--no-presence"])

    async def ready_on_all(self, status):
        for n in self.nodes:
            await async_wait_until(lambda n=n: http_status(n.port, "/readyz") == status, STEP,
                                   "%s /readyz %d" % (n.name, status))

    async def setup_room(self):
        n0, n1 = self.nodes
        a = await Client.open(n0.port, "ra")
        b = await Client.open(n1.port, "rb")
        ja = await a.join(ROOM)
        await b.join(ROOM)
        replies = await publish_window(a, lambda i: ("send_to_room", {"room_id": ROOM, "n": i}), 5)
        s5 = max(r["payload"]["seq"] for r in replies.values())
        self.assertEqual(s5, ja["seq"] + 5)
        await b.wait_room_seq(ROOM, s5)
        return a, b, ja["epoch"], s5

    async def outage(self, a, b):
        """Redis is down: every publish is refused with `unavailable`, counted, not
        delivered; RSS stays bounded. Returns nothing; Redis is still down after."""
        n0, n1 = self.nodes
        redis = self.cluster.redis[0]
        reconnects = [node_metric(n.port, "wshub_redis_reconnects_total") for n in self.nodes]
        redis.kill()
        await self.ready_on_all(503)
        self.assertEqual([node_metric(n.port, "wshub_cluster_up") for n in self.nodes], [0, 0],
                         "the outage is visible in the metrics too")
        u0, u1 = node_metric(n0.port, UNAVAILABLE), node_metric(n1.port, UNAVAILABLE)
        k = 50
        replies = await publish_window(a, lambda i: ("send_to_room", {"room_id": ROOM, "outage": i}), k)
        codes = sorted({(r["type"], r["payload"].get("code")) for r in replies.values()})
        self.assertEqual(codes, [("error", "unavailable")], "room publishes during the outage")
        ur = await publish_window(b, lambda i: ("send_to_user", {"user_id": "ra", "outage": i}), 10)
        codes = sorted({(r["type"], r["payload"].get("code")) for r in ur.values()})
        self.assertEqual(codes, [("error", "unavailable")], "user publishes during the outage")
        st, body = await asyncio.to_thread(publish, n1.port, {"type": "tick", "room_id": ROOM,
                                                              "payload": {"outage": "api"}})
        self.assertEqual((st, (body or {}).get("error", {}).get("code")), (503, "unavailable"), body)
        st, body = await asyncio.to_thread(publish, n1.port, {"type": "tick", "user_id": "ra",
                                                              "payload": {"outage": "api"}})
        self.assertEqual((st, (body or {}).get("error", {}).get("code")), (503, "unavailable"), body)
        self.assertEqual(node_metric(n0.port, UNAVAILABLE) - u0, k, "n0 counted its refusals")
        self.assertEqual(node_metric(n1.port, UNAVAILABLE) - u1, 10 + 2, "n1 counted its refusals")
        # Memory: many more refused publishes leave the nodes' RSS where it was
        # (a refusal holds nothing; the reconnection attempts keep nothing).
        rss0 = [rss_bytes(n.proc.pid) for n in self.nodes]
        many = 500 if ASAN else 3000
        await publish_window(a, lambda i: ("send_to_room", {"room_id": ROOM, "outage": i, "pad": "x" * 512}),
                             many, window=64, start=k)
        rss1 = [rss_bytes(n.proc.pid) for n in self.nodes]
        cap = (96 if ASAN else 24) << 20
        for n, r0, r1 in zip(self.nodes, rss0, rss1):
            self.assertLess(r1 - r0, cap, "%s RSS grew %.1f MiB while Redis was down" % (n.name, (r1 - r0) / 2**20))
        for x in (a, b):
            self.assertFalse([m for m in x.room_frames(ROOM) if "outage" in (m.get("payload") or {})],
                             "%s: a refused message was delivered" % x.name)
        self.assertTrue(all(n.alive() for n in self.nodes))
        await async_wait_until(lambda: all(node_metric(n.port, "wshub_redis_reconnects_total") > r
                                           for n, r in zip(self.nodes, reconnects)), STEP,
                               "the nodes try to reconnect (wshub_redis_reconnects_total)")


class RedisLostDataTests(RedisLossBase):
    def test_redis_killed_and_restarted_empty(self):
        async def go():
            a, b, epoch, s5 = await self.setup_room()
            await self.outage(a, b)
            self.cluster.redis[0].restart()  # same port, no data: every stream is new
            await self.ready_on_all(200)
            self.assertEqual([node_metric(n.port, "wshub_cluster_up") for n in self.nodes], [1, 1])
            told = {}
            for x in (a, b):
                m = await x.until(is_unsolicited_rejoin, what="room_joined with recovered: false")
                told[x.name] = m["payload"]
            for name, p in told.items():
                self.assertEqual(p["room_id"], ROOM)
                self.assertIs(p.get("recovered"), False, p)
                self.assertNotEqual(p["epoch"], epoch, "%s: a new epoch after the data loss" % name)
            self.assertEqual(told["ra"]["epoch"], told["rb"]["epoch"], "one new epoch on both nodes")
            self.assertEqual(told["ra"]["seq"], told["rb"]["seq"])
            base = told["ra"]["seq"]
            replies = await publish_window(a, lambda i: ("send_to_room", {"room_id": ROOM, "after": i}), 3)
            self.assertEqual(sorted(r["payload"]["seq"] for r in replies.values()
                                    if r["type"] == "ack"), [base + 1, base + 2, base + 3], replies)
            for x in (a, b):
                await async_wait_until(lambda x=x: len([m for m in x.room_frames(ROOM)
                                                        if "after" in m["payload"]]) == 3, STEP,
                                       "%s gets the 3 messages after the restart" % x.name)
                after = [m for m in x.room_frames(ROOM) if "after" in m["payload"]]
                self.assertEqual([(m["seq"], m["payload"]["after"]) for m in after],
                                 [(base + 1, 0), (base + 2, 1), (base + 3, 2)])
            # A recovery from the old epoch is answered recovered: false, on any node.
            c = await Client.open(self.nodes[1].port, "rc2")
            j = await c.join(ROOM, since={"seq": s5, "epoch": epoch})
            self.assertEqual((j["recovered"], j["epoch"], j["seq"]), (False, told["ra"]["epoch"], base + 3), j)
            for x in (a, b, c):
                await x.close()

        run(go())


class RedisKeptDataTests(RedisLossBase):
    CLUSTER = dict(nodes=2, redis=1, redis_persist=True, node_args=["--no-presence"])

    def test_redis_killed_and_restarted_with_its_data(self):
        async def go():
            a, b, epoch, s5 = await self.setup_room()
            await self.outage(a, b)
            self.cluster.redis[0].restart()  # same port, same append-only file
            await self.ready_on_all(200)
            # Resubscribed: the next messages reach b on the other node, same epoch,
            # positions continuing.
            replies = await publish_window(a, lambda i: ("send_to_room", {"room_id": ROOM, "after": i}), 3)
            self.assertEqual(sorted(r["payload"].get("seq") for r in replies.values()), [s5 + 1, s5 + 2, s5 + 3],
                             replies)
            await b.wait_room_seq(ROOM, s5 + 3)
            self.assertEqual([m["seq"] for m in b.room_frames(ROOM)][-3:], [s5 + 1, s5 + 2, s5 + 3])
            for x in (a, b):
                self.assertEqual([m for m in x.log if is_unsolicited_rejoin(m)], [],
                                 "%s: nothing was lost, nobody is told to reload" % x.name)
            c = await Client.open(self.nodes[1].port, "rc2")
            j = await c.join(ROOM, since={"seq": s5 - 2, "epoch": epoch})
            self.assertEqual((j["recovered"], j["replayed"], j["epoch"]), (True, 5, epoch), j)
            await c.wait_room_seq(ROOM, s5 + 3)
            self.assertEqual([m["seq"] for m in c.room_frames(ROOM)], list(range(s5 - 1, s5 + 4)))
            for x in (a, b, c):
                await x.close()

        run(go())


class PartitionTests(ClusterTestCase):
    """One node cut off from Redis (a relay that stops forwarding, no RST: only the
    node's own watchdogs can notice) while the other keeps working."""

    CLUSTER = dict(nodes=2, redis=1, via_proxy=[1], presence_timeout="3s", node_args=["--no-presence"])

    def test_one_node_cut_off_from_redis(self):
        n0, n1 = self.nodes
        proxy = self.cluster.proxies[1]
        room = "rd-part"
        check = asyncio.to_thread
        # Detection needs the node's command watchdog (5 s by default) or its
        # connect timeout; the deadline leaves room for a loaded machine.
        detect = STEP + 10

        async def go():
            a = await Client.open(n0.port, "pa")
            b = await Client.open(n1.port, "pb")
            await a.join(room)
            jb = await b.join(room)
            await check(self.assertListing, "online", ["pa", "pb"])
            replies = await publish_window(a, lambda i: ("send_to_room", {"room_id": room, "n": i}), 3)
            await b.wait_room_seq(room, max(r["payload"]["seq"] for r in replies.values()))
            proxy.blackhole()
            await async_wait_until(lambda: http_status(n1.port, "/readyz") == 503, detect,
                                   "the cut-off node reports not ready")
            self.assertEqual(http_status(n0.port, "/readyz"), 200, "the other node is not affected")
            r = await b.request("send_to_room", {"room_id": room, "n": 100})
            self.assertEqual((r["type"], r["payload"].get("code")), ("error", "unavailable"), r)
            # Its users vanish from the other node's listings after the presence timeout.
            await check(self.assertListing, "online", ["pa"], [n0.port], 3 + STEP)
            await check(self.assertListing, "members:" + room, ["pa"], [n0.port], 3 + STEP)
            during = await publish_window(a, lambda i: ("send_to_room", {"room_id": room, "n": i}), 5, start=3)
            self.assertEqual({x["type"] for x in during.values()}, {"ack"})
            proxy.heal()
            await async_wait_until(lambda: http_status(n1.port, "/readyz") == 200, detect,
                                   "the node is ready again once it reaches Redis")
            await check(self.assertListing, "online", ["pa", "pb"])
            await check(self.assertListing, "members:" + room, ["pa", "pb"])
            after = await publish_window(a, lambda i: ("send_to_room", {"room_id": room, "n": i}), 2, start=8)
            last = max(x["payload"]["seq"] for x in after.values())
            await b.wait_room_seq(room, last)
            # b missed the partition's messages: it must get them, or be told
            # (room_joined, recovered: false) -- never a silent gap, never twice.
            pos = jb["seq"]
            for m in b.log:
                if m["type"] == "room_joined" and "id" not in m and m["payload"]["room_id"] == room:
                    if m["payload"].get("recovered") is False:
                        pos = m["payload"]["seq"]
                elif m.get("room_id") == room and "seq" in m:
                    self.assertEqual(m["seq"], pos + 1, "b: a silent gap or a duplicate: %r" % b.log)
                    pos = m["seq"]
            self.assertEqual(pos, last)
            r = await b.request("send_to_room", {"room_id": room, "n": 200})
            self.assertEqual(r["type"], "ack", r)
            await a.wait_room_seq(room, r["payload"]["seq"])
            for x in (a, b):
                await x.close()

        run(go())


class StartBeforeRedisTests(unittest.TestCase):
    """A node started before its Redis answers is ready soon after Redis does. The
    heartbeat that registers a node (which it needs to be ready) used to wait a whole
    beat period when it found Redis down: with --presence-timeout 300s that is ~98 s,
    far past STEP, so this fails without the prompt retry."""

    def test_node_ready_soon_after_redis_starts(self):
        r = RedisServer()
        r.port = _free_port()  # known now, started later
        node = WshubServer(["--redis", r.url, "--presence-timeout", "300s", "--no-presence"],
                           threads=1)
        try:
            node.start()  # /healthz: up, Redis not yet there
            self.assertEqual(http_status(node.port, "/readyz"), 503)
            r.start()
            wait_until(lambda: http_status(node.port, "/readyz") == 200, STEP,
                       "/readyz 200 after Redis started")
        finally:
            if node.proc is not None and node.proc.poll() is None:
                rc, _, killed = node.stop()
                node.check_stopped_cleanly(rc, killed)
            r.stop()


if __name__ == "__main__":
    unittest.main()
