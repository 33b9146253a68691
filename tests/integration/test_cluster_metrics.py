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

A node without --redis has none of these metrics (its exposition is unchanged). The
OTLP metrics export comes from the same registry: a receiver started here decodes the
protobuf requests (a few lines of wire-format reading) and finds the cluster metrics
only from the node with --redis, and still in the final export made after the cluster
was stopped.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_cluster_metrics
"""

import asyncio
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import struct
import tempfile
import threading
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


def pb_fields(buf):
    """[(field number, value)] of one protobuf message: ints for varint and fixed
    fields, bytes for length-delimited ones."""
    out, i = [], 0

    def varint():
        nonlocal i
        v = shift = 0
        while True:
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return v

    while i < len(buf):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out.append((field, varint()))
        elif wire == 1:
            out.append((field, struct.unpack_from("<q", buf, i)[0]))
            i += 8
        elif wire == 2:
            n = varint()
            out.append((field, bytes(buf[i:i + n])))
            i += n
        elif wire == 5:
            out.append((field, struct.unpack_from("<i", buf, i)[0]))
            i += 4
        else:
            raise AssertionError("wire type %d" % wire)
    return out


def otlp_metrics(body):
    """{metric name: value} of an ExportMetricsServiceRequest: the as_int of the first
    point of sums and gauges, the count of histograms."""
    got = {}
    for f, rm in pb_fields(body):
        for f2, sm in pb_fields(rm) if f == 1 else ():
            for f3, m in pb_fields(sm) if f2 == 2 else ():
                if f3 != 2:
                    continue
                fields = pb_fields(m)
                name = next(v for k, v in fields if k == 1).decode()
                value = None
                for k, data in fields:
                    if k in (5, 7, 9):
                        points = [pb_fields(v) for kk, v in pb_fields(data) if kk == 1]
                        if points:
                            want = 4 if k == 9 else 6
                            value = next((v for kk, v in points[0] if kk == want), None)
                got[name] = value
    return got


class OtlpReceiver:
    """An OTLP/HTTP endpoint on 127.0.0.1 keeping every /v1/metrics request body."""

    def __init__(self):
        bodies = self.bodies = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/v1/metrics":
                    bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.endpoint = "http://%s:%d/v1/metrics" % (HOST, self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def latest(self):
        return otlp_metrics(self.bodies[-1]) if self.bodies else {}


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

    def test_otlp_export_has_the_cluster_metrics(self):
        rx = OtlpReceiver()
        self.addCleanup(rx.stop)
        env = {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": rx.endpoint, "OTEL_TRACES_EXPORTER": "none",
               "OTEL_METRIC_EXPORT_INTERVAL": "200"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # the servers started below inherit it

        def restore():
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.addCleanup(restore)

        single = self.start_server()
        poll("an OTLP export from the single node", lambda: rx.bodies, OUTAGE_TIMEOUT)
        names = rx.latest()
        self.assertIn("websocket.active_connections", names)
        self.assertEqual([n for n in names if n.startswith(("wshub.cluster.", "wshub.redis."))],
                         [])
        rc, _, killed = single.stop()
        single.check_stopped_cleanly(rc, killed)

        tmp = tempfile.TemporaryDirectory(prefix="wshub-cmetrics-")
        self.addCleanup(tmp.cleanup)
        redis = Redis(_free_port(), tmp.name).start()
        self.addCleanup(redis.kill)
        del rx.bodies[:]
        node = self.start_server(["--redis", "redis://%s:%d" % (HOST, redis.port)])
        # As a load balancer would: joins are refused `unavailable` until the node has
        # reached Redis and registered its presence.
        poll("/readyz 200 once Redis is reached", lambda: get(node.port, "/readyz")[0] == 200,
             OUTAGE_TIMEOUT)

        async def traffic():
            async with websockets.connect("ws://%s:%d/ws?token=%s" % (HOST, node.port, USER)) as ws:
                await ws.send(json.dumps({"type": "join_room", "id": "j1",
                                          "payload": {"room_id": ROOM, "presence": False}}))
                self.assertEqual((await recv_json(ws))["type"], "room_joined")
                for i in range(3):
                    await publish(ws, "m%d" % i, "otlp %d" % i)
                acks = delivered = 0
                while acks < 3 or delivered < 3:
                    f = await recv_json(ws)
                    acks += f["type"] == "ack"
                    delivered += f["type"] == "send_to_room"
            return True

        self.assertTrue(asyncio.run(asyncio.wait_for(traffic(), 60)))
        m = poll("an OTLP export with the three messages", lambda: (
            lambda g: g if (g.get("wshub.cluster.messages.published") or 0) >= 3 else None)(
                rx.latest()), OUTAGE_TIMEOUT)
        for name in ("wshub.cluster.up", "wshub.cluster.messages.received",
                     "wshub.cluster.unavailable", "wshub.redis.commands", "wshub.redis.rtt"):
            self.assertIn(name, m)
        self.assertEqual(m["wshub.cluster.redis.instances"], 1)
        self.assertEqual(m["wshub.cluster.up"], 1)
        self.assertGreaterEqual(m["wshub.cluster.messages.received"], 3)
        self.assertGreaterEqual(m["wshub.redis.rtt"], 3)

        # The final export, made after the cluster thread was stopped, still has them.
        n_before = len(rx.bodies)
        rc, _, killed = node.stop()
        self.assertGreater(len(rx.bodies), n_before)
        last = rx.latest()
        self.assertEqual(last.get("wshub.cluster.redis.instances"), 1)
        self.assertGreaterEqual(last.get("wshub.cluster.messages.published"), 3)
        node.check_stopped_cleanly(rc, killed)

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
            # The join's presence event goes to Redis only after a presence round trip
            # of its own, so it can land after the barrier: wait until both are counted.
            want = m0["wshub_cluster_messages_received_total"] + 2
            deadline = time.monotonic() + 10
            before = scrape(port)[1]
            while before["wshub_cluster_messages_received_total"] < want:
                self.assertLess(time.monotonic(), deadline, "the presence event never came")
                await asyncio.sleep(0.02)
                before = scrape(port)[1]
            self.assertEqual(before["wshub_cluster_messages_received_total"], want)
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
