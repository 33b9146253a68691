"""The HTTP API in cluster mode (issue 12): two wshub nodes joined through one Redis.

POST /api/publish answers once Redis has placed the message, with the position
(`seq`) every member receives, whichever node they are on; the listings
(/api/online, /api/rooms, /api/rooms/{id}/members) answer from Redis, so every node
gives the same ids. With Redis gone, publishes get 503 `unavailable` (counted in
wshub_api_publish_refused_total{code="unavailable"}) and listings 503; with Redis
back on the same port, publishing works again.

The test starts its own redis-server on a free loopback port (no persistence) and
stops it by PID.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_cluster_api
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from wshub_harness import (HOST, ConnectionClosed, HttpConn, RawClient, ServerTestCase,
                           _free_port, http_request, metrics)

KEY = "cluster-key"
DEADLINE = 10.0  # bound of every poll (presence reaching Redis, Redis coming back)
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


class Redis:
    """A throwaway redis-server on 127.0.0.1:port, stopped by PID."""

    def __init__(self, port=None):
        self.port = port or _free_port()
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="wshub-redis-")

    def start(self):
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [REDIS, "--bind", HOST, "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited %s" % self.proc.returncode)
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("redis-server did not answer on port %d" % self.port)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()  # by PID (Popen.kill)
            self.proc.wait(timeout=10)
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def pause(self, on):
        self.proc.send_signal(signal.SIGSTOP if on else signal.SIGCONT)

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.pause(False)
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def request(port, method, path, body=None):
    raw = json.dumps(body).encode() if body is not None else b""
    head = "%s %s HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\nConnection: close\r\n" % (
        method, path, KEY)
    if body is not None:
        head += "Content-Length: %d\r\n" % len(raw)
    st, headers, resp = http_request(port, head.encode() + b"\r\n" + raw, timeout=15)
    return st, headers, json.loads(resp) if resp else None


def publish_bytes(body):
    raw = json.dumps(body).encode()
    return (b"POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: " + KEY.encode()
            + b"\r\nContent-Length: %d\r\n\r\n" % len(raw) + raw)


def publish(port, body):
    return request(port, "POST", "/api/publish", body)


def refused_unavailable(port):
    return metrics(port).get('wshub_api_publish_refused_total{code="unavailable"}', 0.0)


class ClusterApiTest(ServerTestCase):
    START_CLASS_SERVER = False

    def setUp(self):
        super().setUp()
        self.redis = Redis().start()
        self.addCleanup(self.redis.cleanup)
        self.args = ("--redis", "redis://%s:%d" % (HOST, self.redis.port), "--api-key", KEY,
                     "--presence-timeout", "5s")
        self.a = self.start_server(self.args)
        self.b = self.start_server(self.args)
        self.wait_ready(self.a)
        self.wait_ready(self.b)

    def wait_ready(self, srv):
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            st, _, _ = http_request(srv.port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n"
                                    b"Connection: close\r\n\r\n")
            if st == 200:
                return
            time.sleep(0.05)
        self.fail("node on port %d not ready; stderr:\n%s" % (srv.port, srv.stderr()[-5000:]))

    def ws(self, srv, user):
        c = RawClient(srv.port, path="/ws?user_id=" + user)
        self.addCleanup(c.close)
        return c

    def next_json(self, c, skip=("presence",)):
        while True:
            _, payload = c.recv_message()
            m = json.loads(payload)
            if m["type"] not in skip:
                return m

    def join(self, c, room):
        c.send_text(json.dumps({"type": "join_room", "payload": {"room_id": room}, "id": "j"}))
        m = self.next_json(c)
        self.assertEqual(m["type"], "room_joined", m)

    def poll_listing(self, path, want):
        """Polls both nodes until they give `want` (presence travels through Redis
        after the join is acknowledged); returns the two answers."""
        deadline = time.monotonic() + DEADLINE
        while True:
            got = [request(srv.port, "GET", path) for srv in (self.a, self.b)]
            bodies = [g[2] for g in got]
            if all(g[0] == 200 for g in got) and all(want(b) for b in bodies):
                return bodies
            if time.monotonic() > deadline:
                self.fail("%s never settled: A %r, B %r" % (path, got[0], got[1]))
            time.sleep(0.05)

    def test_publish_seq_reaches_other_node(self):
        bob = self.ws(self.b, "bob")
        self.join(bob, "lobby")
        seqs = []
        for i in range(3):
            st, _, resp = publish(self.a.port, {"type": "news", "room_id": "lobby",
                                                "payload": {"n": i}})
            self.assertEqual(st, 202, resp)
            self.assertEqual((resp["status"], resp["room_id"]), ("published", "lobby"), resp)
            m = self.next_json(bob)
            self.assertEqual((m["type"], m["payload"], m["room_id"]), ("news", {"n": i}, "lobby"))
            self.assertEqual(m["seq"], resp["seq"], "the member got another position than the API")
            seqs.append(resp["seq"])
        self.assertEqual(seqs, sorted(set(seqs)))
        # Publishing through B continues the same stream.
        st, _, resp = publish(self.b.port, {"type": "news", "room_id": "lobby", "payload": {}})
        self.assertEqual((st, resp["seq"]), (202, seqs[-1] + 1), resp)
        self.assertEqual(self.next_json(bob)["seq"], resp["seq"])
        # A room without members anywhere still gets a position (its stream is in Redis).
        st, _, resp = publish(self.a.port, {"type": "news", "room_id": "empty", "payload": {}})
        self.assertEqual((st, resp["status"], resp["room_id"], resp["seq"]),
                         (202, "published", "empty", 1), resp)
        st, _, resp = publish(self.a.port, {"type": "news", "broadcast": True, "payload": {}})
        self.assertEqual((st, resp), (202, {"status": "published", "broadcast": True}))
        self.assertEqual(self.next_json(bob)["type"], "news")

    def test_user_publish_reaches_both_nodes(self):
        on_a = self.ws(self.a, "carol")
        on_b = self.ws(self.b, "carol")
        # The user's channel is subscribed with the first connection; a join round
        # trip on each makes sure both connections are registered.
        self.join(on_a, "r1")
        self.join(on_b, "r1")
        self.poll_listing("/api/rooms/r1/members", lambda b: b["members"] == ["carol"])
        for i in range(2):
            st, _, resp = publish(self.b.port, {"type": "notification", "user_id": "carol",
                                                "payload": {"title": "t%d" % i}})
            self.assertEqual(st, 202, resp)
            self.assertEqual((resp["status"], resp["user_id"]), ("published", "carol"), resp)
            for c in (on_a, on_b):
                m = self.next_json(c)
                self.assertEqual((m["type"], m["payload"]["title"]), ("notification", "t%d" % i))
                self.assertEqual(m.get("seq"), resp["seq"], m)

    def test_listings_identical_from_both_nodes(self):
        alice_a = self.ws(self.a, "alice")
        alice_b = self.ws(self.b, "alice")
        bob_b = self.ws(self.b, "bob")
        self.join(alice_a, "lobby")
        self.join(bob_b, "lobby")
        self.join(bob_b, "room/with space")
        self.join(alice_b, "a+b")

        online = self.poll_listing("/api/online", lambda b: b["online_users"] == ["alice", "bob"])
        for o in online:
            self.assertEqual((o["count"], o["total"], o["next_cursor"]), (2, 2, None), o)
        # "connections" is each node's own count of /ws connections.
        self.assertEqual([o["connections"] for o in online], [1, 2])

        want_rooms = [{"room_id": "a+b", "members": 1}, {"room_id": "lobby", "members": 2},
                      {"room_id": "room/with space", "members": 1}]
        ra, rb = self.poll_listing("/api/rooms", lambda b: b["rooms"] == want_rooms)
        self.assertEqual(ra, rb)
        self.assertEqual(ra, {"rooms": want_rooms, "count": 3, "total": 3, "next_cursor": None})
        # Pages: the cursor walks the same listing.
        pa = request(self.a.port, "GET", "/api/rooms?limit=2")[2]
        self.assertEqual((pa["rooms"], pa["next_cursor"]), (want_rooms[:2], "lobby"))
        pb = request(self.b.port, "GET", "/api/rooms?limit=2&cursor=lobby")[2]
        self.assertEqual((pb["rooms"], pb["next_cursor"], pb["total"]), (want_rooms[2:], None, 3))

        ma, mb = self.poll_listing("/api/rooms/lobby/members",
                                   lambda b: b["members"] == ["alice", "bob"])
        self.assertEqual(ma, mb)
        self.assertEqual(ma, {"members": ["alice", "bob"], "count": 2, "total": 2,
                              "next_cursor": None, "room_id": "lobby"})
        sa, sb = self.poll_listing("/api/rooms/room%2Fwith%20space/members",
                                   lambda b: b["members"] == ["bob"])
        self.assertEqual(sa, sb)
        self.assertEqual(sa["room_id"], "room/with space")

        for srv in (self.a, self.b):
            st, _, body = request(srv.port, "GET", "/api/rooms/nowhere/members")
            self.assertEqual((st, body["error"]["code"]), (404, "not_found"), body)
            # Argument checks stay as on one node (before any Redis round trip).
            st, _, body = request(srv.port, "GET", "/api/rooms?limit=0")
            self.assertEqual((st, body["error"]["code"]), (400, "bad_field"), body)

    def test_redis_down_then_back(self):
        bob = self.ws(self.b, "bob")
        self.join(bob, "lobby")
        st, _, resp = publish(self.a.port, {"type": "news", "room_id": "lobby", "payload": {}})
        self.assertEqual(st, 202, resp)
        before = refused_unavailable(self.a.port)

        self.redis.kill()
        # The node notices the loss by itself (a closed connection); until then a
        # publish may already be refused by Redis' failure: either way 503.
        for body in ({"type": "news", "room_id": "lobby", "payload": {}},
                     {"type": "news", "user_id": "bob", "payload": {}},
                     {"type": "news", "broadcast": True, "payload": {}}):
            st, headers, resp = publish(self.a.port, body)
            self.assertEqual((st, resp["error"]["code"]), (503, "unavailable"), resp)
            self.assertEqual(headers.get("retry-after"), "1", headers)
        self.assertEqual(refused_unavailable(self.a.port), before + 3)
        for path in ("/api/online", "/api/rooms", "/api/rooms/lobby/members"):
            st, _, resp = request(self.b.port, "GET", path)
            self.assertEqual((st, resp["error"]["code"]), (503, "unavailable"), (path, resp))

        self.redis.start()  # the same port
        self.wait_ready(self.a)
        deadline = time.monotonic() + DEADLINE
        while True:
            st, _, resp = publish(self.a.port, {"type": "news", "room_id": "lobby",
                                                "payload": {"back": True}})
            if st == 202:
                break
            self.assertEqual(st, 503, resp)  # a node may still be re-subscribing
            if time.monotonic() > deadline:
                self.fail("publish never worked again: %r" % resp)
            time.sleep(0.1)
        self.assertEqual(resp["status"], "published", resp)
        self.assertGreaterEqual(resp["seq"], 1)
        st, _, online = request(self.a.port, "GET", "/api/online")
        self.assertEqual(st, 200, online)

    def test_redis_stalled_answers_before_the_http_timeout(self):
        """Redis alive but silent: the publish waits for the Redis command timeout
        (5 s), which answers 503 before the request's own deferral timeout (504)."""
        before = refused_unavailable(self.a.port)
        self.redis.pause(True)
        try:
            st, headers, resp = publish(self.a.port, {"type": "news", "room_id": "lobby",
                                                      "payload": {}})
        finally:
            self.redis.pause(False)
        self.assertEqual((st, resp["error"]["code"]), (503, "unavailable"), resp)
        self.assertEqual(headers.get("retry-after"), "1", headers)
        self.assertEqual(refused_unavailable(self.a.port), before + 1)

    def test_pipelined_publishes_answered_in_order(self):
        """Requests behind a deferred one wait for its answer: one keep-alive
        connection gets its answers in request order, with increasing positions."""
        with HttpConn(self.a.port, timeout=15) as c:
            c.send(b"".join(publish_bytes({"type": "news", "room_id": "pipe", "payload": {"n": i}})
                            for i in range(5)) + b"GET /api/rooms HTTP/1.1\r\nHost: x\r\n\r\n")
            seqs = []
            for _ in range(5):
                st, _, body = c.read_response()
                resp = json.loads(body)
                self.assertEqual((st, resp["status"]), (202, "published"), resp)
                seqs.append(resp["seq"])
            st, _, body = c.read_response()
            self.assertEqual(st, 200, body)
            self.assertIn("rooms", json.loads(body))
        self.assertEqual(seqs, [1, 2, 3, 4, 5])

    def in_flight(self, srv):
        """A publish and a listing waiting on a stalled Redis, then SIGTERM."""
        deferred = metrics(srv.port).get("wshub_http_deferred_total", 0.0)
        # Ready first (Redis reached and this node's presence registered): a node that
        # is not ready answers at once instead of waiting on Redis.
        deadline = time.monotonic() + DEADLINE
        while request(srv.port, "GET", "/readyz")[0] != 200:
            if time.monotonic() > deadline:
                self.fail("the node never became ready")
            time.sleep(0.02)
        self.redis.pause(True)
        self.addCleanup(self.redis.pause, False)
        pub = HttpConn(srv.port, timeout=15)
        self.addCleanup(pub.close)
        pub.send(publish_bytes({"type": "news", "room_id": "lobby", "payload": {}}))
        lst = HttpConn(srv.port, timeout=15)
        self.addCleanup(lst.close)
        lst.send(b"GET /api/online HTTP/1.1\r\nHost: x\r\n\r\n")
        # SIGTERM only once both wait on Redis (before, they would be refused with
        # shutting_down instead).
        deadline = time.monotonic() + DEADLINE
        while metrics(srv.port).get("wshub_http_deferred_total", 0.0) < deferred + 2:
            if time.monotonic() > deadline:
                self.fail("the requests were never deferred")
            time.sleep(0.02)
        srv.proc.terminate()
        return pub, lst

    def test_shutdown_answers_what_waits_on_redis(self):
        """Graceful shutdown waits for Redis's answer (here its 5 s failure) within
        --shutdown-timeout, and the process exits cleanly."""
        srv = self.start_server(self.args + ("--shutdown-timeout", "20s"))
        pub, lst = self.in_flight(srv)
        for c in (pub, lst):
            st, _, body = c.read_response()
            self.assertEqual((st, json.loads(body)["error"]["code"]), (503, "unavailable"), body)
        self.assertEqual(srv.proc.wait(timeout=30), 0, srv.stderr()[-5000:])

    def test_shutdown_deadline_with_answers_pending(self):
        """The shutdown deadline drops connections whose answer is still with Redis;
        the answer arriving afterwards (or never) must not touch them: clean exit."""
        srv = self.start_server(self.args + ("--shutdown-timeout", "1s"))
        pub, lst = self.in_flight(srv)
        for c in (pub, lst):
            with self.assertRaises(ConnectionClosed):
                c.read_response()
        self.assertEqual(srv.proc.wait(timeout=30), 0, srv.stderr()[-5000:])


if __name__ == "__main__":
    unittest.main()
