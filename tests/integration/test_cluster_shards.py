"""Two Redis instances under the nodes (issue 12): rooms and users are sharded over
both by a hash of the stream name. The layout is checked in Redis itself (each
stream's keys (`:x`, `:seq`, `:epoch`), its channel's subscribers and its EVALSHA calls (MONITOR) on exactly one
instance, some streams on each), and the three-node tests of test_cluster.py run
again unchanged on top of the two instances.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_cluster_shards
"""

import asyncio
import unittest

import test_cluster
from cluster_harness import (STEP, Client, ClusterTestCase, async_wait_until, publish, room_channel, run)


class ShardedClusterTests(test_cluster.ClusterTests):
    CLUSTER = dict(test_cluster.ClusterTests.CLUSTER, redis=2)


class ShardedPresenceTests(test_cluster.PresenceTests):
    CLUSTER = dict(test_cluster.PresenceTests.CLUSTER, redis=2)


class ShardLayoutTests(ClusterTestCase):
    CLUSTER = dict(nodes=2, redis=2, node_args=["--no-presence"])

    def test_rooms_and_users_spread_over_both_instances(self):
        n0, n1 = (n.port for n in self.nodes)
        r0, r1 = self.cluster.redis
        rooms = ["sh-room-%d" % i for i in range(24)]
        users = ["sh-user-%d" % i for i in range(24)]

        async def go():
            a = await Client.open(n0, "sha")
            b = await Client.open(n1, "shb")
            joined = {}
            for room in rooms:
                joined[room] = (await a.join(room))["seq"]
                self.assertEqual((await b.join(room))["seq"], joined[room])
            mons = [r.monitor() for r in (r0, r1)]
            self.addCleanup(lambda: [m.stop() for m in mons])
            for i, room in enumerate(rooms):
                st, body = await asyncio.to_thread(publish, (n0, n1)[i % 2],
                                                   {"type": "tick", "room_id": room, "payload": {"i": i}})
                self.assertEqual(st, 202, body)
            for m in mons:
                m.sync()
            calls = [len([c for c in m.client_commands("{room:sh-room-") if c[0] == "EVALSHA"]) for m in mons]
            others = [[c[:3] for c in m.client_commands("{room:sh-room-") if c[0] != "EVALSHA"] for m in mons]
            for i, user in enumerate(users):
                st, body = await asyncio.to_thread(publish, (n0, n1)[i % 2],
                                                   {"type": "tick", "user_id": user, "payload": {"i": i}})
                self.assertEqual(st, 202, body)
            owner = {}
            for name in rooms + users:
                kind = "room" if name.startswith("sh-room") else "user"
                keys = ["wshub:{%s:%s}:%s" % (kind, name, k) for k in ("x", "seq", "epoch")]
                found = [r.cmd("EXISTS", *keys) for r in (r0, r1)]
                self.assertEqual(sorted(found), [0, 3], "%s:%s stream keys per instance: %r" % (kind, name, found))
                owner[name] = found.index(3)
            for group in (rooms, users):
                on = {owner[x] for x in group}
                self.assertEqual(on, {0, 1}, "streams on both instances: %r" % {x: owner[x] for x in group})
            # Each room: its channel subscribed by both nodes on its own instance only;
            # its message one EVALSHA on that instance.
            for room in rooms:
                subs = [r.numsub(room_channel(room)) for r in (r0, r1)]
                want = [0, 0]
                want[owner[room]] = 2
                self.assertEqual(subs, want, room)
            per = [sum(1 for room in rooms if owner[room] == k) for k in (0, 1)]
            self.assertEqual(calls, per, "EVALSHA calls per instance = messages to its rooms")
            self.assertEqual(others, [[], []], "no other command for a room message")
            # Delivery: both members got each room's message once, at the next position.
            want = {room: [(joined[room] + 1, i)] for i, room in enumerate(rooms)}
            for x in (a, b):
                def got(x=x):
                    return {room: [(m["seq"], m["payload"]["i"]) for m in x.room_frames(room)] for room in rooms}
                await async_wait_until(lambda x=x: sum(len(v) for v in got().values()) >= len(rooms), STEP,
                                       "%s gets a message in every room" % x.name)
                self.assertEqual(got(), want, x.name)
            for x in (a, b):
                await x.close()

        run(go())


if __name__ == "__main__":
    unittest.main()
