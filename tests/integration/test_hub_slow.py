"""The hub under pressure: slow consumers (close with 1013, or drop-oldest with a
`dropped` notice), a client that sends a burst while reading normally, the live data
stream (--stream), and a graceful shutdown with clients in rooms.

Raw-socket clients (wshub_harness.RawClient) are used where a client must stop
reading on purpose; the `websockets` library where a well-behaved client is wanted.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_hub_slow
"""

import asyncio
import json
import socket
import time
import unittest

import websockets
from websockets.exceptions import ConnectionClosed

from wshub_harness import (envelope, metrics, rss_bytes, close_code, run, OP_CLOSE, OP_TEXT, ConnectionClosed as RawClosed, RawClient,
                           ServerTestCase, build_frame)

KiB = 1024
MiB = 1024 * KiB
STEP_TIMEOUT = 10.0
RSS_BOUND = 64 * MiB  # growth of the server's RSS allowed during a flood








class Hub(RawClient):
    """A raw /ws client speaking the hub's JSON."""

    def __init__(self, port, user, **kw):
        super().__init__(port, path="/ws?token=%s" % user, **kw)
        self.user = user

    def send_json(self, type_, payload=None, **extra):
        self.send_text(envelope(type_, payload, **extra))

    def recv_json(self, timeout=STEP_TIMEOUT):
        op, data = self.recv_message(timeout)
        if op != OP_TEXT:
            raise AssertionError("expected a text message, got opcode %d" % op)
        return json.loads(data)

    def recv_until(self, pred, timeout=STEP_TIMEOUT, keep=None):
        """Next message matching pred; others are appended to keep (if given)."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.recv_json(max(0.01, deadline - time.monotonic()))
            if pred(m):
                return m
            if keep is not None:
                keep.append(m)

    def join(self, room, presence=None):
        p = {"room_id": room}
        if presence is not None:
            p["presence"] = presence
        self.send_json("join_room", p, id="join-" + room)
        m = self.recv_until(lambda m: m.get("id") == "join-" + room)
        if m["type"] != "room_joined":
            raise AssertionError("join %s: %r" % (room, m))


def room_frames(room, start, n, size=1 * KiB):
    """n send_to_room frames, numbered from start, each about `size` bytes of JSON."""
    out = []
    for i in range(start, start + n):
        head = envelope("send_to_room", {"room_id": room, "n": i, "pad": ""})
        pad = "x" * max(0, size - len(head))
        out.append(build_frame(OP_TEXT, envelope("send_to_room", {"room_id": room, "n": i, "pad": pad})))
    return b"".join(out)


class HubSlowTestCase(ServerTestCase):
    START_CLASS_SERVER = False

    def hub(self, port, user, **kw):
        c = Hub(port, user, **kw)
        self.addCleanup(c.close)
        return c

    def flood(self, srv, room, good, stop, batch=50, max_msgs=12000, size=1 * KiB):
        """A publisher (not a member) sends numbered ~1 KiB messages to room in batches;
        after each batch the well-behaved member `good` must receive all of them (so at
        most `batch` messages are ever in flight for it). Stops after the batch in which
        stop(metrics) is true. Returns (messages sent, peak RSS growth, good's seqs)."""
        pub = self.hub(srv.port, "publisher")
        base_rss = rss_bytes(srv.proc.pid)
        peak = 0
        sent = 0
        seqs = []
        while sent < max_msgs:
            pub.send_raw(room_frames(room, sent, batch, size))
            for i in range(sent, sent + batch):
                m = good.recv_until(lambda m: m.get("type") == "send_to_room")
                self.assertEqual(m["payload"]["n"], i, "the good member gets every message in order")
                self.assertEqual(m["from"], "publisher")
                seqs.append(m["seq"])
            sent += batch
            peak = max(peak, rss_bytes(srv.proc.pid) - base_rss)
            if stop(metrics(srv.port)):
                break
        return sent, peak, seqs


class SlowConsumerCloseTests(HubSlowTestCase):
    def test_slow_consumer_is_closed_1013_others_unaffected_memory_bounded(self):
        srv = self.start_server(("--stream", "", "--no-presence", "--send-queue-messages", "64"))
        slow = self.hub(srv.port, "slow", rcvbuf=4 * KiB)
        slow.join("flood")
        good = self.hub(srv.port, "good")
        good.join("flood")
        sent, peak, seqs = self.flood(
            srv, "flood", good, lambda m: m["wshub_hub_slow_consumer_closes_total"] >= 1)
        m = metrics(srv.port)
        self.assertGreaterEqual(m["wshub_hub_slow_consumer_closes_total"], 1,
                                "the slow member was never closed after %d messages" % sent)
        self.assertLess(peak, RSS_BOUND, "server RSS grew by %.1f MiB" % (peak / MiB))
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))), "good member: seqs contiguous")
        # The slow client finally reads: what was already in its socket, then close 1013
        # (or nothing, if the server gave up on the close handshake and dropped it).
        close = None
        got = 0
        try:
            while True:
                f = slow.recv_frame(timeout=3.0)
                if f.opcode == OP_CLOSE:
                    close = f
                    break
                got += 1
        except (RawClosed, socket.timeout):
            pass
        if close is not None:
            self.assertEqual(close.code, 1013, close)
            self.assertEqual(close.reason, b"send queue full")
            slow.send_close(1013)  # completes the close handshake
            self.assertTrue(slow.wait_tcp_closed(timeout=3.0))
        slow.close()
        self.assertLess(got, sent, "the slow member cannot have received everything")
        # The others carry on: one more batch, and the slow one is no longer a member.
        pub = self.hub(srv.port, "publisher2")
        pub.send_raw(room_frames("flood", 10 ** 6, 20, 200))
        for i in range(20):
            self.assertEqual(good.recv_until(lambda m: m.get("type") == "send_to_room")["payload"]["n"],
                             10 ** 6 + i)
        # Once its connection is gone, the slow client is no longer a member.
        deadline = time.monotonic() + 3.0
        while True:
            good.send_json("room_members", {"room_id": "flood"}, id="rm")
            r = good.recv_until(lambda m: m.get("id") == "rm")
            if r["payload"]["members"] == ["good"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(r["payload"]["members"], ["good"])

    def test_burst_from_a_reading_client_is_not_a_slow_consumer(self):
        """A client that reads normally sends 300 small messages (about 20 KiB) to a room
        it is in, in one write. Its socket is empty and writable, so it is not a slow
        consumer: it must get its 300 messages back, not a 1013 (default queue: 256)."""
        srv = self.start_server(("--stream", "", "--no-presence"), threads=1)
        c = self.hub(srv.port, "burster")
        c.join("r")
        frames = b"".join(build_frame(OP_TEXT, envelope("send_to_room", {"room_id": "r", "n": i}))
                          for i in range(300))
        self.assertLess(len(frames), 32 * KiB)
        c.send_raw(frames)
        got = []
        try:
            while len(got) < 300:
                f = c.recv_frame(timeout=5.0)
                if f.opcode == OP_CLOSE:
                    self.fail("closed %s %r after %d of 300 messages: a burst of 300 messages "
                              "produced in one loop turn counts as a full send queue even "
                              "though nothing was ever refused by the socket"
                              % (f.code, f.reason, len(got)))
                got.append(json.loads(f.payload)["payload"]["n"])
        except RawClosed:
            self.fail("connection dropped after %d of 300 messages" % len(got))
        self.assertEqual(got, list(range(300)))


class DropOldestTests(HubSlowTestCase):
    def test_drop_oldest_tells_the_client_how_many_and_keeps_it_open(self):
        srv = self.start_server(("--stream", "", "--no-presence", "--send-queue-messages", "64",
                                 "--slow-consumer", "drop-oldest"))
        slow = self.hub(srv.port, "slow", rcvbuf=4 * KiB)
        slow.join("flood")
        good = self.hub(srv.port, "good")
        good.join("flood")
        dropped_key = 'wshub_hub_messages_dropped_total{reason="drop_oldest"}'
        sent, peak, seqs = self.flood(srv, "flood", good, lambda m: m[dropped_key] >= 200)
        m = metrics(srv.port)
        self.assertGreater(m[dropped_key], 0, "nothing dropped after %d messages" % sent)
        self.assertEqual(m["wshub_hub_slow_consumer_closes_total"], 0)
        # The send-queue depth histogram saw the slow member's queue fill up to its
        # bound (64), and never beyond it.
        depth = "wshub_hub_send_queue_depth_messages"
        self.assertLess(m[depth + '_bucket{le="32"}'], m[depth + "_count"])
        self.assertEqual(m[depth + '_bucket{le="64"}'], m[depth + "_count"])
        self.assertLess(peak, RSS_BOUND, "server RSS grew by %.1f MiB" % (peak / MiB))
        first_seq = seqs[0]
        # Now the slow client reads everything, then proves it is still connected.
        received = []
        notices = []
        slow.send_json("ping", id="after")
        while True:
            msg = slow.recv_json(timeout=STEP_TIMEOUT)
            if msg["type"] == "send_to_room":
                received.append(msg["seq"])
            elif msg["type"] == "dropped":
                notices.append(msg["payload"]["count"])
            elif msg.get("id") == "after":
                self.assertEqual(msg["type"], "pong")
                break
            else:
                self.fail("unexpected %r" % msg)
        # the notice may come after the pong: give it a moment
        if not notices:
            try:
                while True:
                    msg = slow.recv_json(timeout=1.0)
                    if msg["type"] == "dropped":
                        notices.append(msg["payload"]["count"])
                        break
            except socket.timeout:
                pass
        self.assertTrue(notices, "no `dropped` message after losing messages")
        self.assertTrue(all(n > 0 for n in notices), notices)
        self.assertEqual(received, sorted(set(received)), "increasing, no duplicates")
        missing = sent - len(received)
        self.assertGreater(missing, 0)
        self.assertEqual(sum(notices), missing,
                         "the dropped counts (%r) add up to the messages missing (%d of %d; seqs %d..)"
                         % (notices, missing, sent, first_seq))
        self.assertEqual(received[-1], first_seq + sent - 1, "the newest message is kept")
        slow.send_json("ping", id="still")
        self.assertEqual(slow.recv_until(lambda m: m.get("id") == "still")["type"], "pong")


class StreamTests(HubSlowTestCase):
    def connect(self, port, user):
        return websockets.connect("ws://127.0.0.1:%d/ws?token=%s" % (port, user), compression=None,
                                  open_timeout=STEP_TIMEOUT, close_timeout=3, ping_interval=None)

    def test_live_stream_reaches_members_only_and_only_while_the_room_has_members(self):
        srv = self.start_server(("--stream", "live:200ms"))
        published = lambda: metrics(srv.port)["wshub_hub_messages_published_total"]

        async def main():
            p0 = published()
            await asyncio.sleep(0.8)
            self.assertEqual(published(), p0, "published to an empty room")
            async with self.connect(srv.port, "watcher") as member, \
                    self.connect(srv.port, "bystander") as other:
                await member.send(envelope("join_room", {"room_id": "live"}, id="j"))
                updates = []
                t0 = time.monotonic()
                while len(updates) < 4:
                    m = json.loads(await asyncio.wait_for(member.recv(), STEP_TIMEOUT))
                    if m["type"] == "data_update":
                        updates.append((time.monotonic() - t0, m))
                elapsed = updates[-1][0]
                self.assertLess(elapsed, 2.0, "4 updates took %.2f s at 200 ms" % elapsed)
                seqs = [m["seq"] for _, m in updates]
                self.assertEqual(seqs, sorted(set(seqs)))
                for _, m in updates:
                    self.assertEqual(m["room_id"], "live")
                    p = m["payload"]
                    self.assertEqual(p["room_id"], "live")
                    self.assertEqual(p["source"], "host")
                    d = p["data"]
                    self.assertIsInstance(d["cpu_percent"], (int, float))
                    self.assertTrue(0 <= d["cpu_percent"] <= 100, d)
                    self.assertGreater(d["memory"]["total_kib"], 0)
                    self.assertTrue(0 <= d["memory"]["available_kib"] <= d["memory"]["total_kib"], d)
                    self.assertIn("1m", d["load"])
                    for k in ("rx_bytes", "tx_bytes", "rx_bytes_per_s", "tx_bytes_per_s"):
                        self.assertIn(k, d["network"])
                    self.assertNotIn("from", m)
                # the bystander (connected, not a member) gets nothing
                with self.assertRaises(asyncio.TimeoutError):
                    await asyncio.wait_for(other.recv(), 0.6)
                await member.send(envelope("leave_room", {"room_id": "live"}, id="l"))
                while True:
                    m = json.loads(await asyncio.wait_for(member.recv(), STEP_TIMEOUT))
                    if m.get("id") == "l":
                        self.assertEqual(m["type"], "room_left")
                        break
                await asyncio.sleep(0.3)
                p1 = published()
                await asyncio.sleep(0.8)
                self.assertEqual(published(), p1, "still publishing after the last member left")
                # nothing more reaches the former member
                with self.assertRaises(asyncio.TimeoutError):
                    await asyncio.wait_for(member.recv(), 0.5)

        run(main())


class ShutdownTests(HubSlowTestCase):
    def test_sigterm_closes_clients_in_rooms_with_1001_and_exits_0(self):
        srv = self.start_server(("--stream", "", "--shutdown-timeout", "3s"), threads=2)

        async def main():
            conns = []
            for i in range(10):
                conns.append(await websockets.connect(
                    "ws://127.0.0.1:%d/ws?token=user%d" % (srv.port, i % 4), compression=None,
                    open_timeout=STEP_TIMEOUT, close_timeout=3, ping_interval=None))
            try:
                for i, ws in enumerate(conns):
                    await ws.send(envelope("join_room", {"room_id": "room%d" % (i % 3)}, id="j"))
                    while json.loads(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)).get("id") != "j":
                        pass
                t0 = time.monotonic()
                srv.terminate()
                codes = []
                for ws in conns:
                    try:
                        while True:  # presence events may still be queued before the close
                            await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
                    except ConnectionClosed as e:
                        codes.append(close_code(e))
                self.assertEqual(codes, [1001] * 10)
                return t0
            finally:
                for ws in conns:
                    await ws.close()

        t0 = run(main())
        rc = srv.wait(timeout=5)
        self.assertEqual(rc, 0, "exit code %s; stderr:\n%s" % (rc, srv.stderr()[-5000:]))
        self.assertLess(time.monotonic() - t0, 3.0, "clients answered the close, yet the server waited")


if __name__ == "__main__":
    unittest.main()
