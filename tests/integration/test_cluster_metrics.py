"""Cluster mode's metrics (issue 12) against a real Redis.

One wshub node joined through its own `redis-server` (Debian's, started here on a free
loopback port with no persistence, stopped by PID). A `websockets` client connects,
joins a room and publishes N messages; the node's /metrics must then be valid for
Prometheus' own `promtool check metrics`, its cluster counters must have moved by
exactly N, and the number of Redis subscriptions must be what Redis itself reports
(`PUBSUB CHANNELS`). Then Redis is killed: /readyz turns 503 `unavailable`,
`wshub_cluster_up` turns 0, a publish gets the error `unavailable` and is counted.
Redis is started again on the same port: the node reconnects by itself, /readyz is
200 again, the reconnection is counted and publishing works again.

A node without --redis has none of these metrics (its exposition is unchanged).

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_cluster_metrics
"""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import websockets

from wshub_harness import HOST, ServerTestCase, _free_port, http_request

STEP_TIMEOUT = 10.0  # one message or reply
OUTAGE_TIMEOUT = 30.0  # Redis loss or return seen by the node (backoff is at most 5 s)
N = 20
ROOM = "metrics-room"
USER = "alice"


def tool(env_name, name):
    path = os.environ.get(env_name) or shutil.which(name) or "/usr/bin/" + name
    if not os.access(path, os.X_OK):
        raise AssertionError("%s not found: run scripts/setup.sh test" % name)
    return path


def get(port, path):
    status, _, body = http_request(
        port, ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
    return status, body.decode()


def scrape(port):
    """(the exposition text, {sample with labels: value})."""
    status, text = get(port, "/metrics")
    if status != 200:
        raise AssertionError("/metrics answered %d" % status)
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return text, samples


def poll(what, fn, timeout):
    """Calls fn until it returns something true; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %.0f s" % (what, timeout))
        time.sleep(0.05)


class Redis:
    """A redis-server of our own on 127.0.0.1:port, no persistence."""

    def __init__(self, port, workdir):
        self.port = port
        self.workdir = workdir
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.workdir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [tool("WSHUB_REDIS_SERVER", "redis-server"), "--port", str(self.port), "--bind", HOST,
             "--save", "", "--appendonly", "no", "--dir", self.workdir, "--loglevel", "warning"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited %s (see %s/redis.log)"
                                     % (self.proc.returncode, self.workdir))
            try:
                if self.command("PING") == "PONG":
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError("redis-server did not answer PING within 10 s")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.proc is not None:
            self.log.close()
        self.proc = None

    def command(self, *args):
        """One command, RESP2; answers a str, an int or a list of them."""
        req = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode()
            req += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection((HOST, self.port), timeout=5) as s:
            s.sendall(req)
            f = s.makefile("rb")
            return self._reply(f)

    def _reply(self, f):
        line = f.readline()
        if not line.endswith(b"\r\n"):
            raise OSError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise AssertionError("redis error: %s" % rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else f.read(n + 2)[:-2].decode()
        if kind == b"*":
            return [self._reply(f) for _ in range(int(rest))]
        raise AssertionError("unexpected reply %r" % line)


def cluster_samples(samples):
    return {k: v for k, v in samples.items() if k.startswith(("wshub_cluster_", "wshub_redis_"))}


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT))


async def publish(ws, mid, text):
    await ws.send(json.dumps({"type": "send_to_room", "id": mid,
                              "payload": {"room_id": ROOM, "text": text}}))


class ClusterMetrics(ServerTestCase):
    START_CLASS_SERVER = False

    def promtool_check(self, text):
        p = subprocess.run([tool("WSHUB_PROMTOOL", "promtool"), "check", "metrics"],
                           input=text.encode(), capture_output=True, timeout=30)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, b""), text)

    def test_single_node_has_no_cluster_metrics(self):
        node = self.start_server()
        text, samples = scrape(node.port)
        self.assertEqual(cluster_samples(samples), {})
        self.assertNotIn("wshub_cluster_", text)
        self.assertNotIn("wshub_redis_", text)
        self.assertEqual(get(node.port, "/readyz")[0], 200)

    def test_cluster_metrics_through_a_redis_outage(self):
        tmp = tempfile.TemporaryDirectory(prefix="wshub-cmetrics-")
        self.addCleanup(tmp.cleanup)
        redis = Redis(_free_port(), tmp.name).start()
        self.addCleanup(redis.kill)
        node = self.start_server(["--redis", "redis://%s:%d" % (HOST, redis.port)])
        port = node.port
        poll("/readyz 200 once Redis is reached", lambda: get(port, "/readyz")[0] == 200,
             OUTAGE_TIMEOUT)

        text, m0 = scrape(port)
        self.promtool_check(text)
        self.assertEqual(m0["wshub_cluster_redis_instances"], 1)
        self.assertEqual(m0["wshub_cluster_up"], 1)
        self.assertEqual(m0["wshub_cluster_subscriptions"], 0)  # nobody connected yet
        self.assertGreaterEqual(m0["wshub_redis_connects_total"], 2)  # commands + subscriber

        async def live_phase():
            ws = await websockets.connect("ws://%s:%d/ws?token=%s" % (HOST, port, USER),
                                          max_size=None)
            await ws.send(json.dumps({"type": "join_room", "id": "j1",
                                      "payload": {"room_id": ROOM, "presence": False}}))
            joined = await recv_json(ws)
            self.assertEqual(joined["type"], "room_joined", joined)
            # A barrier: once its own delivery is back, whatever the join published
            # before it (a presence event) has been counted both ways, in Redis' order.
            await publish(ws, "barrier", "barrier")
            acked = delivered = False
            while not (acked and delivered):
                f = await recv_json(ws)
                acked |= f["type"] == "ack" and f["payload"].get("id") == "barrier"
                delivered |= f["type"] == "send_to_room" and f["payload"].get("text") == "barrier"
            before = scrape(port)[1]
            texts = ["message %d %s" % (i, "x" * i) for i in range(N)]
            for i, t in enumerate(texts):
                await publish(ws, "m%d" % i, t)
            acks, got = [], []
            while len(acks) < N or len(got) < N:
                f = await recv_json(ws)
                if f["type"] == "ack":
                    acks.append(f["payload"]["id"])
                elif f["type"] == "send_to_room":
                    got.append(f["payload"]["text"])
                else:
                    self.fail("unexpected frame %r" % f)
            self.assertEqual(sorted(acks), sorted("m%d" % i for i in range(N)))
            self.assertEqual(got, texts)  # one order, the publisher's own included
            after = scrape(port)[1]
            return ws, before, after, texts

        async def outage_publish(ws, mid):
            await publish(ws, mid, "during the outage")
            return await recv_json(ws)

        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)

        def step(coro):
            return loop.run_until_complete(asyncio.wait_for(coro, 60))

        ws, before, after, texts = step(live_phase())
        self.addCleanup(lambda: step(ws.close()))

        def delta(key):
            return after[key] - before[key]

        self.assertEqual(delta("wshub_cluster_messages_published_total"), N)
        self.assertEqual(delta("wshub_cluster_messages_received_total"), N)
        self.assertGreaterEqual(delta("wshub_redis_commands_total"), N)  # one per message
        self.assertGreaterEqual(delta("wshub_redis_replies_total"), N)
        self.assertGreaterEqual(delta("wshub_redis_rtt_seconds_count"), N)
        self.assertGreater(delta("wshub_redis_rtt_seconds_sum"), 0)
        self.assertEqual(after['wshub_redis_rtt_seconds_bucket{le="+Inf"}'],
                         after["wshub_redis_rtt_seconds_count"])
        self.assertGreater(delta("wshub_redis_sent_bytes_total"),
                           sum(len(t) for t in texts))
        self.assertGreaterEqual(delta("wshub_redis_received_bytes_total"),
                                sum(len(t) for t in texts))
        self.assertEqual(delta("wshub_cluster_unavailable_total"), 0)
        self.assertEqual(after["wshub_redis_error_replies_total"], 0)
        self.assertEqual(after["wshub_cluster_up"], 1)
        self.assertEqual(after["wshub_cluster_redis_instances_up"], 1)
        # Watched: the room and the user's own stream. Redis agrees (besides them, the
        # node listens to the broadcast channel).
        self.assertEqual(after["wshub_cluster_subscriptions"], 2)
        channels = [c for c in redis.command("PUBSUB", "CHANNELS") if "{all}" not in c]
        self.assertEqual(len(channels), 2, channels)
        text, _ = scrape(port)
        self.promtool_check(text)

        # ---- Redis dies.
        redis.kill()
        status, body = poll("/readyz 503 after Redis died", lambda: (
            lambda r: r if r[0] == 503 else None)(get(port, "/readyz")), OUTAGE_TIMEOUT)
        self.assertIn("unavailable", body)
        down = scrape(port)[1]
        self.assertEqual(down["wshub_cluster_up"], 0)
        self.assertEqual(down["wshub_cluster_redis_instances_up"], 0)
        self.assertGreater(down["wshub_redis_failures_total"], after["wshub_redis_failures_total"])
        err = step(outage_publish(ws, "o1"))
        self.assertEqual(err["type"], "error", err)
        self.assertEqual(err["payload"]["code"], "unavailable", err)
        self.assertEqual(err["payload"].get("id"), "o1", err)
        out = scrape(port)[1]
        self.assertEqual(out["wshub_cluster_unavailable_total"]
                         - down["wshub_cluster_unavailable_total"], 1)
        self.assertEqual(out['wshub_hub_errors_total{code="unavailable"}']
                         - down['wshub_hub_errors_total{code="unavailable"}'], 1)
        self.assertEqual(out["wshub_cluster_messages_published_total"],
                         after["wshub_cluster_messages_published_total"])
        self.promtool_check(scrape(port)[0])

        # ---- Redis comes back on the same port, empty.
        redis.start()
        poll("/readyz 200 after Redis came back", lambda: get(port, "/readyz")[0] == 200,
             OUTAGE_TIMEOUT)
        back = scrape(port)[1]
        self.assertEqual(back["wshub_cluster_up"], 1)
        self.assertGreater(back["wshub_redis_reconnects_total"],
                           after["wshub_redis_reconnects_total"])
        self.assertGreater(back["wshub_redis_connects_total"], after["wshub_redis_connects_total"])
        # Every watched stream subscribed again.
        poll("both streams subscribed again in Redis", lambda: len(
            [c for c in redis.command("PUBSUB", "CHANNELS") if "{all}" not in c]) == 2,
            OUTAGE_TIMEOUT)
        self.assertEqual(scrape(port)[1]["wshub_cluster_subscriptions"], 2)
        # Redis came back empty: both streams' epochs changed under a live member.
        poll("both streams' resets counted", lambda: scrape(port)[1][
            "wshub_cluster_stream_resets_total"] - after["wshub_cluster_stream_resets_total"] >= 2,
            OUTAGE_TIMEOUT)

        async def publish_again():
            await publish(ws, "a1", "after the outage")
            acked = delivered = False
            while not (acked and delivered):
                f = await recv_json(ws)
                if f["type"] == "ack" and f["payload"].get("id") == "a1":
                    acked = True
                elif f["type"] == "send_to_room" and f["payload"].get("text") == "after the outage":
                    delivered = True
                elif f["type"] == "error":
                    self.fail("publish after Redis came back: %r" % f)
            return True

        self.assertTrue(step(publish_again()))
        final = scrape(port)[1]
        self.assertEqual(final["wshub_cluster_messages_published_total"]
                         - back["wshub_cluster_messages_published_total"], 1)
        self.assertGreaterEqual(final["wshub_cluster_messages_received_total"]
                                - back["wshub_cluster_messages_received_total"], 1)
        self.assertEqual(final["wshub_cluster_stream_resets_total"]
                         - after["wshub_cluster_stream_resets_total"], 2)
        self.assertEqual(final["wshub_cluster_unavailable_total"]
                         - out["wshub_cluster_unavailable_total"], 0)
        self.promtool_check(scrape(port)[0])


if __name__ == "__main__":
    unittest.main()
