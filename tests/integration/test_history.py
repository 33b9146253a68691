"""History and recovery (docs/protocol.md, "Recovery"): a client that drops off and
comes back with its position gets exactly what it missed, in order, then live
traffic, with no gap and no duplicate; or `recovered: false` with the new position
when that cannot be done honestly. Real clients: Python `websockets`.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_history
"""

import asyncio
import json
import os
import subprocess
import time
import unittest
import urllib.error
import urllib.request

import websockets

from wshub_harness import ServerTestCase, metrics, rss_bytes

STEP = 15.0  # seconds any one expected message may take (ASan, loaded CI machine)
ASAN = os.environ.get("WSHUB_VARIANT") == "asan"
KEY = "hist-key"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 240))


class Client:
    """A /ws client with a reader task: messages land in a queue in arrival order."""

    def __init__(self, ws):
        self.ws = ws
        self.q = asyncio.Queue()
        self.task = asyncio.ensure_future(self._read())
        self.n = 0

    @classmethod
    async def open(cls, port, user, query=""):
        ws = await websockets.connect("ws://127.0.0.1:%d/ws?token=%s%s" % (port, user, query),
                                      max_queue=None, ping_interval=None, close_timeout=1)
        return cls(ws)

    async def _read(self):
        try:
            async for m in self.ws:
                await self.q.put(json.loads(m))
        except websockets.ConnectionClosed:
            pass
        await self.q.put(None)

    async def send(self, type_, payload=None, id=None):
        o = {"type": type_, "payload": payload or {}}
        if id is not None:
            o["id"] = id
        await self.ws.send(json.dumps(o))

    async def next(self, timeout=STEP):
        m = await asyncio.wait_for(self.q.get(), timeout)
        if m is None:
            raise AssertionError("connection closed (code %s)" % self.ws.close_code)
        return m

    async def until(self, pred, timeout=STEP, skipped=None):
        deadline = time.monotonic() + timeout
        while True:
            m = await self.next(max(0.01, deadline - time.monotonic()))
            if pred(m):
                return m
            if skipped is not None:
                skipped.append(m)

    async def request(self, type_, payload, timeout=STEP, skipped=None):
        self.n += 1
        rid = "r%d" % self.n
        await self.send(type_, payload, rid)
        # Replies carry the id at the top (room_joined, ...); acks and errors in
        # their payload.
        return await self.until(
            lambda m: m.get("id") == rid or (m["type"] in ("ack", "error") and
                                             m["payload"].get("id") == rid), timeout, skipped)

    async def join(self, room, since=None, skipped=None):
        p = {"room_id": room}
        if since is not None:
            p["since"] = since
        m = await self.request("join_room", p, skipped=skipped)
        assert m["type"] == "room_joined", m
        return m["payload"]

    async def quiet(self, seconds):
        """Asserts nothing arrives for `seconds`."""
        try:
            m = await asyncio.wait_for(self.q.get(), seconds)
        except asyncio.TimeoutError:
            return
        raise AssertionError("unexpected message: %r" % (m,))

    def abort(self):
        """Drops the TCP connection without a closing handshake (a phone in a tunnel)."""
        self.ws.transport.abort()

    async def close(self):
        await self.ws.close()
        self.task.cancel()


def room_msgs(room):
    return lambda m: m.get("room_id") == room and m["type"] == "send_to_room"


async def publish_n(pub, room, start, n, window=64):
    """n acked send_to_room messages numbered start.., at most `window` unacked."""
    acks = {}
    inflight = 0
    for i in range(start, start + n):
        await pub.send("send_to_room", {"room_id": room, "n": i}, id="p%d" % i)
        inflight += 1
        while inflight >= window:
            m = await pub.until(lambda m: m["type"] == "ack")
            acks[m["payload"]["id"]] = m["payload"]["seq"]
            inflight -= 1
    while inflight:
        m = await pub.until(lambda m: m["type"] == "ack")
        acks[m["payload"]["id"]] = m["payload"]["seq"]
        inflight -= 1
    return acks


def http_get(port, path, key=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path))
    if key:
        req.add_header("X-API-Key", key)
    try:
        with urllib.request.urlopen(req, timeout=STEP) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def http_post(port, path, body, key=KEY):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 data=json.dumps(body).encode(), method="POST")
    req.add_header("X-API-Key", key)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=STEP) as r:
        return r.status, json.loads(r.read())


class RecoverAfterDrop(ServerTestCase):
    """Abrupt disconnect, 500 messages from others, re-join with since: exactly those
    500 in order (more than the send queue holds: the replay is paced), then live."""

    START_CLASS_SERVER = False
    ARGS = ("--history-size", "1000", "--no-presence")

    def scenario(self, threads):
        srv = self.start_server(self.ARGS, threads=threads)
        room = "drop-%d" % threads

        async def go():
            m = await Client.open(srv.port, "mia")
            pubs = [await Client.open(srv.port, "pub%d" % i) for i in range(2)]
            j = await m.join(room)
            self.assertEqual(j["seq"], 0)
            self.assertEqual(len(j["epoch"]), 16)
            for p in pubs:
                await p.join(room)
            acks = await publish_n(pubs[0], room, 0, 20)
            got = [await m.until(room_msgs(room)) for _ in range(20)]
            last = got[-1]["seq"]
            self.assertEqual(last, max(acks.values()))
            m.abort()
            # 500 from two publishers, interleaved.
            a, b = await asyncio.gather(publish_n(pubs[0], room, 1000, 250),
                                        publish_n(pubs[1], room, 2000, 250))
            missed = sorted(list(a.values()) + list(b.values()))
            self.assertEqual(missed, list(range(last + 1, last + 501)))
            m2 = await Client.open(srv.port, "mia")
            j2 = await m2.join(room, since={"seq": last, "epoch": j["epoch"]})
            self.assertEqual(j2["recovered"], True, j2)
            self.assertEqual(j2["replayed"], 500)
            self.assertEqual(j2["seq"], last + 500)
            self.assertEqual(j2["epoch"], j["epoch"])
            replay = [await m2.until(room_msgs(room)) for _ in range(500)]
            self.assertEqual([x["seq"] for x in replay], missed)
            by_seq = dict((v, int(k[1:])) for k, v in list(a.items()) + list(b.items()))
            self.assertEqual([x["payload"]["n"] for x in replay], [by_seq[s] for s in missed])
            # Then live traffic, nothing twice.
            live = await publish_n(pubs[1], room, 3000, 5)
            nxt = [await m2.until(room_msgs(room)) for _ in range(5)]
            self.assertEqual([x["seq"] for x in nxt], sorted(live.values()))
            self.assertEqual(nxt[0]["seq"], last + 501)
            await m2.quiet(0.3)
            for c in [m2] + pubs:
                await c.close()

        run(go())
        mt = metrics(srv.port)
        self.assertEqual(mt.get('wshub_hub_recoveries_total{stream="room",result="recovered"}'), 1)
        self.assertEqual(mt.get("wshub_hub_replayed_messages_total"), 500)

    def test_one_thread(self):
        self.scenario(1)

    def test_four_threads(self):
        self.scenario(4)


class RecoverRace(ServerTestCase):
    """200 re-joins with since while two publishers send without pause: for every one,
    replay + live is the exact run of positions from since + 1, no gap, no duplicate."""

    THREADS = 4
    SERVER_ARGS = ("--history-size", "5000", "--no-presence")

    def test_race(self):
        room = "race"
        port = self.port
        rounds, workers = 200, 4

        async def go():
            stop = asyncio.Event()
            watcher = await Client.open(port, "watch")
            j = await watcher.join(room)
            epoch = j["epoch"]
            latest = {"seq": 0}

            async def watch():
                while not stop.is_set():
                    try:
                        m = await watcher.until(room_msgs(room), timeout=0.5)
                    except asyncio.TimeoutError:
                        continue
                    self.assertEqual(m["seq"], latest["seq"] + 1, "the watcher saw a gap")
                    latest["seq"] = m["seq"]

            async def publisher(i):
                p = await Client.open(port, "pub%d" % i)
                n = 0
                while not stop.is_set():
                    await publish_n(p, room, i * 10**7 + n, 16, window=8)
                    n += 16
                await p.close()

            async def rejoiner(w):
                for r in range(rounds // workers):
                    since = latest["seq"]
                    c = await Client.open(port, "re%d" % w)
                    jr = await c.join(room, since={"seq": since, "epoch": epoch})
                    self.assertTrue(jr["recovered"], jr)
                    want = since + 40  # replay and at least some live traffic
                    seqs = []
                    while not seqs or seqs[-1] < want:
                        m = await c.until(room_msgs(room))
                        seqs.append(m["seq"])
                    self.assertEqual(seqs, list(range(since + 1, since + 1 + len(seqs))),
                                     "round %d/%d: gap or duplicate" % (w, r))
                    if r % 2:
                        c.abort()
                    else:
                        await c.close()

            tasks = [asyncio.ensure_future(watch())]
            tasks += [asyncio.ensure_future(publisher(i)) for i in range(2)]
            await asyncio.gather(*[rejoiner(w) for w in range(workers)])
            stop.set()
            await asyncio.gather(*tasks)
            await watcher.close()

        run(go())
        mt = metrics(port)
        self.assertEqual(mt.get('wshub_hub_recoveries_total{stream="room",result="recovered"}'), 200)
        self.assertEqual(mt.get('wshub_hub_recoveries_total{stream="room",result="not_recovered"}', 0), 0)
        self.assertEqual(mt.get("wshub_hub_replay_aborts_total", 0), 0)


class NotRecovered(ServerTestCase):
    """Positions that cannot be continued are refused honestly."""

    START_CLASS_SERVER = False

    def test_epoch_mismatch_and_restart(self):
        srv = self.start_server(("--no-presence",))

        async def first():
            c = await Client.open(srv.port, "ed")
            j = await c.join("room-e")
            pub = await Client.open(srv.port, "pub")
            await publish_n(pub, "room-e", 0, 3)
            [await c.until(room_msgs("room-e")) for _ in range(3)]
            c2 = await Client.open(srv.port, "ed")
            j2 = await c2.join("room-e", since={"seq": 1, "epoch": "0000000000000000"})
            self.assertEqual(j2["recovered"], False)
            self.assertEqual(j2["replayed"], 0)
            self.assertEqual((j2["seq"], j2["epoch"]), (3, j["epoch"]))
            await c2.quiet(0.3)  # nothing replayed
            await publish_n(pub, "room-e", 10, 1)
            self.assertEqual((await c2.until(room_msgs("room-e")))["seq"], 4)
            for x in (c, c2, pub):
                await x.close()
            return j["epoch"]

        epoch = run(first())
        srv2 = self.start_server(("--no-presence",))

        async def after_restart():
            c = await Client.open(srv2.port, "ed")
            j = await c.join("room-e", since={"seq": 3, "epoch": epoch})
            self.assertEqual(j["recovered"], False)
            self.assertNotEqual(j["epoch"], epoch)
            self.assertEqual(j["seq"], 0)
            await c.close()

        run(after_restart())

    def test_history_too_short(self):
        srv = self.start_server(("--no-presence", "--history-size", "10"))

        async def go():
            c = await Client.open(srv.port, "sh")
            j = await c.join("short")
            pub = await Client.open(srv.port, "pub")
            await publish_n(pub, "short", 0, 30)
            c2 = await Client.open(srv.port, "sh")
            j2 = await c2.join("short", since={"seq": 5, "epoch": j["epoch"]})
            self.assertEqual((j2["recovered"], j2["seq"]), (False, 30))
            await c2.quiet(0.3)
            # Still within the last 10: recovered.
            c3 = await Client.open(srv.port, "sh")
            j3 = await c3.join("short", since={"seq": 20, "epoch": j["epoch"]})
            self.assertEqual((j3["recovered"], j3["replayed"]), (True, 10))
            self.assertEqual([(await c3.until(room_msgs("short")))["seq"] for _ in range(10)],
                             list(range(21, 31)))
            # History API: the same window, as delivered; older positions gone.
            st, h = http_get(srv.port, "/api/rooms/short/history?since=0&limit=1000")
            self.assertEqual(st, 200, h)
            self.assertEqual((h["seq"], h["first_seq"], h["epoch"], h["complete"]),
                             (30, 21, j["epoch"], False))
            self.assertEqual([m["seq"] for m in h["messages"]], list(range(21, 31)))
            self.assertEqual([m["payload"]["n"] for m in h["messages"]], list(range(20, 30)))
            st, h = http_get(srv.port, "/api/rooms/short/history?since=25&limit=2")
            self.assertEqual(([m["seq"] for m in h["messages"]], h["complete"]), ([26, 27], True))
            st, _ = http_get(srv.port, "/api/rooms/nowhere/history")
            self.assertEqual(st, 404)
            st, e = http_get(srv.port, "/api/rooms/short/history?limit=0")
            self.assertEqual((st, e["error"]["code"]), (400, "bad_field"))
            st, _ = http_get(srv.port, "/api/users/sh/history")
            self.assertEqual(st, 403, "user history needs the API key")
            for x in (c, c2, c3, pub):
                await x.close()

        run(go())

    def test_ttl_and_room_expiry(self):
        srv = self.start_server(("--no-presence", "--history-ttl", "1s"))

        async def go():
            c = await Client.open(srv.port, "tt")
            j = await c.join("ttl")
            pub = await Client.open(srv.port, "pub")
            await publish_n(pub, "ttl", 0, 3)
            await asyncio.sleep(1.3)
            await publish_n(pub, "ttl", 3, 1)  # seq 4, fresh
            c2 = await Client.open(srv.port, "tt")
            j2 = await c2.join("ttl", since={"seq": 1, "epoch": j["epoch"]})
            self.assertEqual((j2["recovered"], j2["seq"]), (False, 4), "2 and 3 expired")
            c3 = await Client.open(srv.port, "tt")
            j3 = await c3.join("ttl", since={"seq": 3, "epoch": j["epoch"]})
            self.assertEqual((j3["recovered"], j3["replayed"]), (True, 1))
            # Everyone leaves: the stream outlives the room for its TTL ...
            for x in (c, c2, c3, pub):
                await x.close()
            await asyncio.sleep(0.2)
            c4 = await Client.open(srv.port, "tt")
            j4 = await c4.join("ttl", since={"seq": 4, "epoch": j["epoch"]})
            self.assertEqual((j4["recovered"], j4["seq"], j4["epoch"]), (True, 4, j["epoch"]),
                             "seq carries on: the room's stream outlived its members")
            await c4.close()
            # ... and not longer: a new epoch after it.
            await asyncio.sleep(2.5)
            c5 = await Client.open(srv.port, "tt")
            j5 = await c5.join("ttl", since={"seq": 4, "epoch": j["epoch"]})
            self.assertEqual(j5["recovered"], False)
            self.assertNotEqual(j5["epoch"], j["epoch"])
            self.assertEqual(j5["seq"], 0)
            await c5.close()

        run(go())

    def test_bad_since(self):
        srv = self.start_server()

        async def go():
            c = await Client.open(srv.port, "bs")
            for since in ({"seq": -1, "epoch": "x"}, {"seq": 1}, "5", {"seq": "1", "epoch": "e"}):
                m = await c.request("join_room", {"room_id": "b", "since": since})
                self.assertEqual((m["type"], m["payload"]["code"]), ("error", "bad_field"), since)
            await c.close()
            for q in ("&since=abc", "&since=-1", "&since=1&epoch=" + "x" * 40):
                with self.assertRaises(websockets.InvalidStatusCode) as cm:
                    await Client.open(srv.port, "bs", q)
                self.assertEqual(cm.exception.status_code, 400)

        run(go())


class BadHistoryOptions(unittest.TestCase):
    """A --history rule, size or memory that cannot be used stops start-up with exit
    status 2 and a message naming the option."""

    def test_refused(self):
        from wshub_harness import wshub_bin
        for args, said in ((["--history", "lobby:x:1m"], "--history"),
                           (["--history", "ok:1:1m", "--history", "nope"], "--history"),
                           (["--history-memory", "1KiB"], "--history-memory"),
                           (["--history-size", "2000000"], "--history-size")):
            p = subprocess.run([wshub_bin(), "--listen", "127.0.0.1:0"] + args,
                               capture_output=True, text=True, timeout=STEP)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertIn(said, p.stderr, args)


class UserStream(ServerTestCase):
    """A user's notifications sent while all its connections were closed arrive on
    reconnect, in order; the session message carries the position."""

    SERVER_ARGS = ("--api-key", KEY)

    def test_offline_notifications(self):
        port = self.port

        async def go():
            a1 = await Client.open(port, "ula", "&since=0")
            s = await a1.next()
            self.assertEqual(s["type"], "session")
            self.assertEqual((s["payload"]["user_id"], s["payload"]["seq"],
                              s["payload"]["recovered"]), ("ula", 0, False))
            epoch = s["payload"]["epoch"]
            a2 = await Client.open(port, "ula")  # no since: no session message
            bob = await Client.open(port, "bob")
            await bob.request("send_to_user", {"user_id": "ula", "n": 0})
            for c in (a1, a2):
                m = await c.until(lambda m: m["type"] == "send_to_user")
                self.assertEqual((m["seq"], m["payload"]["n"]), (1, 0))
            a1.abort()
            await a2.close()
            await asyncio.sleep(0.2)
            # Offline now: 3 from bob, 3 through the API.
            for i in range(1, 4):
                ack = await bob.request("send_to_user", {"user_id": "ula", "n": i})
                self.assertEqual(ack["type"], "ack")
            seqs = []
            for i in range(4, 7):
                st, r = await asyncio.get_running_loop().run_in_executor(
                    None, http_post, port, "/api/publish",
                    {"user_id": "ula", "type": "notification", "payload": {"title": "t%d" % i}})
                self.assertEqual(st, 202)
                seqs.append(r["seq"])
            self.assertEqual(seqs, [5, 6, 7])
            a3 = await Client.open(port, "ula", "&since=1&epoch=" + epoch)
            s3 = await a3.next()
            self.assertEqual(s3["type"], "session")
            self.assertEqual((s3["payload"]["recovered"], s3["payload"]["replayed"],
                              s3["payload"]["seq"], s3["payload"]["epoch"]), (True, 6, 7, epoch))
            got = [await a3.next() for _ in range(6)]
            self.assertEqual([m["seq"] for m in got], list(range(2, 8)))
            self.assertEqual([m["type"] for m in got], ["send_to_user"] * 3 + ["notification"] * 3)
            await bob.request("send_to_user", {"user_id": "ula", "n": 99})
            m = await a3.next()
            self.assertEqual((m["seq"], m["payload"]["n"]), (8, 99))
            await a3.quiet(0.3)
            # The history API (with the key) holds the same frames.
            st, h = http_get(port, "/api/users/ula/history?since=5", KEY)
            self.assertEqual((st, [m["seq"] for m in h["messages"]]), (200, [6, 7, 8]))
            # A wrong epoch: not recovered, nothing replayed, the position given.
            a4 = await Client.open(port, "ula", "&since=1&epoch=ffffffffffffffff")
            s4 = await a4.next()
            self.assertEqual((s4["payload"]["recovered"], s4["payload"]["seq"]), (False, 8))
            await a4.quiet(0.3)
            for c in (a3, a4, bob):
                await c.close()

        run(go())
        mt = metrics(port)
        self.assertEqual(mt.get('wshub_hub_recoveries_total{stream="user",result="recovered"}'), 1)
        self.assertEqual(mt.get('wshub_hub_recoveries_total{stream="user",result="not_recovered"}'), 1)


class MemoryCap(ServerTestCase):
    """10,000 rooms with full histories stay under --history-memory: the least
    recently used streams lose their history first, counted in metrics, and RSS
    stays bounded."""

    START_CLASS_SERVER = False

    def test_cap(self):
        rooms, size = 10000, (10 if ASAN else 20)
        cap = 4 << 20
        srv = self.start_server(("--no-presence", "--history-memory", "4MiB", "--history-size",
                                 str(size), "--max-rooms-per-connection", str(rooms)), threads=2)

        async def go():
            m = await Client.open(srv.port, "mem")
            for base in range(0, rooms, 500):
                for i in range(base, base + 500):
                    await m.send("join_room", {"room_id": "m%05d" % i})
                for _ in range(500):
                    await m.until(lambda x: x["type"] == "room_joined")
            rss0 = rss_bytes(srv.proc.pid)
            pub = await Client.open(srv.port, "pub")
            body = "x" * 100
            for r in range(size):
                for i in range(rooms):
                    await pub.send("send_to_room", {"room_id": "m%05d" % i, "b": body})
                # keep the member's queue moving
                got = 0
                while got < rooms:
                    await m.until(lambda x: x["type"] == "send_to_room")
                    got += 1
            rss1 = rss_bytes(srv.proc.pid)
            await m.close()
            await pub.close()
            return rss0, rss1

        rss0, rss1 = run(go())
        mt = metrics(srv.port)
        self.assertLessEqual(mt["wshub_history_bytes"], cap)
        self.assertGreater(mt["wshub_history_evicted_messages_total"], 0)
        self.assertGreater(mt["wshub_history_evicted_streams_total"], 0)
        self.assertEqual(mt["wshub_history_streams"], rooms)
        # Uncapped, the histories would hold rooms * size frames of ~200 B (40 MB for
        # the plain build's 20 each); RSS may grow by the cap plus allocator slack.
        if not ASAN:  # ASan's quarantine keeps freed blocks: RSS says nothing there
            self.assertLess(rss1 - rss0, cap + (12 << 20),
                            "RSS grew %.1f MiB" % ((rss1 - rss0) / 2**20))
        # The most recently used rooms keep their history; the oldest lost it.
        st, h = http_get(srv.port, "/api/rooms/m%05d/history" % (rooms - 1))
        self.assertEqual(len(h["messages"]) > 0, True, h)


if __name__ == "__main__":
    unittest.main()
