"""The list-rooms amplification attack of issue 14 (finding 1), scaled to CI, with the
server's defaults (only the data stream is turned off).

One address opens many /ws connections and joins as many rooms as the defaults let it
(--max-rooms-per-connection 256, --max-rooms-per-ip 10000: the joins past 10,000 get
limit_reached); a room per join, the worst case for the registry. Then flood connections from the same address pipeline hundreds of
list_rooms / online_users queries (the largest page each) and do not read, while a
probe client measures ping round trips. Checked:
  - the address could not create more than --max-rooms-per-ip rooms;
  - replies are paginated (at most 1000 ids, with total and next_cursor);
  - the flood gets rate_limited errors (the query bucket is on by default);
  - no stall: the probe's p99 round trip stays under a generous bound (the behaviour
    before the fix was a ~10 s stall; this is a "does not stall" check, not a
    benchmark: the figures are printed);
  - the server's RSS growth during the flood stays under the bound derived in
    docs/security.md (flood connections x --send-queue-bytes, plus slack).

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_list_flood
"""

import json
import os
import threading
import time
import unittest

from wshub_harness import envelope, OP_TEXT, RawClient, ServerTestCase, build_frame, rss_bytes, metrics

MiB = 1024 * 1024
ROOMS_PER_CONN = 256        # --max-rooms-per-connection default
ROOMS_PER_IP = 10000        # --max-rooms-per-ip default
SEND_QUEUE_BYTES = 4 * MiB  # --send-queue-bytes default
FLOOD_CONNS = 12
FLOOD_QUERIES = 300         # per flood connection, pipelined
PROBE_PINGS = 300
# "Does not stall": generous for ASan on a busy 2-core machine; before the fix a
# single list_rooms of 100k rooms held the registry lock for seconds.
P99_BOUND_S = 0.5 if os.environ.get("WSHUB_VARIANT") == "asan" else 0.25
RSS_SLACK = 48 * MiB


class Hub(RawClient):
    def __init__(self, port, user, **kw):
        super().__init__(port, path="/ws?token=%s" % user, **kw)

    def recv_json(self, timeout=10.0):
        op, data = self.recv_message(timeout)
        assert op == OP_TEXT
        return json.loads(data)


class ListFlood(ServerTestCase):
    SERVER_ARGS = ("--stream", "")

    def test_one_address_cannot_stall_the_server_with_listings(self):
        srv = self.server
        rss0 = rss_bytes(srv.proc.pid)
        # 1. As many rooms as one address may create, and 5 joins more (refused; fewer
        # than the 10 refusals in a row that close a connection).
        counts = [ROOMS_PER_CONN] * (ROOMS_PER_IP // ROOMS_PER_CONN)
        counts.append(ROOMS_PER_IP - sum(counts) + 5)
        owners, joined, refused = [], 0, 0
        for i, n in enumerate(counts):
            c = Hub(self.port, "attacker%d" % i)
            self.addCleanup(c.close)
            owners.append(c)
            c.send_raw(b"".join(build_frame(OP_TEXT, envelope(
                "join_room", {"room_id": "flood-%d-%d" % (i, k), "presence": False}, id=k))
                for k in range(n)))
        for c, n in zip(owners, counts):
            for _ in range(n):
                m = c.recv_json()
                if m["type"] == "room_joined":
                    joined += 1
                else:
                    self.assertEqual(m["payload"]["code"], "limit_reached", m)
                    refused += 1
        self.assertEqual((joined, refused), (ROOMS_PER_IP, 5),
                         "one address gets exactly its room budget")
        rss_rooms = rss_bytes(srv.proc.pid)

        # 2. The flood: pipelined listings of the largest page, nobody reading.
        floods = []
        for i in range(FLOOD_CONNS):
            c = Hub(self.port, "flooder%d" % i)
            self.addCleanup(c.close)
            floods.append(c)
        probe = Hub(self.port, "probe")
        self.addCleanup(probe.close)
        rtts, peak = [], [rss_rooms]
        started = threading.Event()

        def flood():
            started.set()
            for k in range(FLOOD_QUERIES // 50):
                for i, c in enumerate(floods):
                    try:
                        c.send_raw(b"".join(build_frame(OP_TEXT, envelope(
                            "list_rooms" if (i + j) % 2 else "online_users", {"limit": 1000},
                            id=j)) for j in range(k * 50, k * 50 + 50)))
                    except OSError:
                        pass  # closed by the server (strikes, slow consumer): fine

        t = threading.Thread(target=flood)
        t.start()
        started.wait()
        for n in range(PROBE_PINGS):
            t0 = time.monotonic()
            probe.send_text(envelope("ping", id=n))
            while probe.recv_json().get("id") != n:
                pass
            rtts.append(time.monotonic() - t0)
            if n % 20 == 0:
                peak.append(rss_bytes(srv.proc.pid))
            time.sleep(0.002)
        t.join(30)
        peak.append(rss_bytes(srv.proc.pid))

        # 3. What the flood got: paginated replies, then rate_limited errors.
        pages = limited = 0
        for c in floods:
            try:
                while True:
                    m = c.recv_json(timeout=2.0)
                    if m["type"] == "error":
                        self.assertEqual(m["payload"]["code"], "rate_limited", m)
                        limited += 1
                    else:
                        p = m["payload"]
                        items = p.get("rooms", p.get("online_users"))
                        self.assertLessEqual(len(items), 1000)
                        self.assertIn("next_cursor", p)
                        if m["type"] == "list_rooms":
                            self.assertEqual(p["total"], ROOMS_PER_IP)
                            self.assertEqual(len(items), 1000)
                        pages += 1
            except Exception:  # closed (1008 after repeated refusals) or drained
                pass
        self.assertGreater(limited, 0, "the flood met the query rate limit")
        self.assertGreater(metrics(self.port)["wshub_hub_query_rate_limited_total"], 0)

        rtts.sort()
        p50, p99 = rtts[len(rtts) // 2], rtts[int(len(rtts) * 0.99) - 1]
        growth = max(peak) - rss_rooms
        print("\nlist flood: %d rooms (%d refused) RSS %.1f -> %.1f MiB; flood of %d x %d "
              "listings: %d pages served, %d rate_limited; probe ping p50 %.1f ms p99 %.1f ms "
              "max %.1f ms; RSS growth during flood %.1f MiB"
              % (joined, refused, rss0 / MiB, rss_rooms / MiB, FLOOD_CONNS, FLOOD_QUERIES, pages,
                 limited, p50 * 1e3, p99 * 1e3, rtts[-1] * 1e3, growth / MiB))
        self.assertLess(p99, P99_BOUND_S, "the probe's pings stalled during the flood")
        self.assertLess(growth, FLOOD_CONNS * SEND_QUEUE_BYTES + RSS_SLACK,
                        "RSS grew past the stated bound")


if __name__ == "__main__":
    unittest.main()
