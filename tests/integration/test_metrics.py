"""GET /metrics after a known workload, checked three ways.

* Exact values: two `websockets` clients join a room and exchange messages, one sends
  text that is not JSON, four upgrades are refused for four different reasons, and
  then both close with 1000. Every counter the workload touches is asserted to its
  exact value, bytes included (worked out from the frames the clients saw).
* `promtool check metrics` (Prometheus' own linter) on a real scrape: no complaint.
* A real Prometheus server, started here in its own temporary directory and scraping
  wshub every second: its HTTP API reports `up == 1` and the workload's values.

promtool and prometheus come from the Debian package `prometheus` (scripts/setup.sh
test); CMake passes their paths in WSHUB_PROMTOOL and WSHUB_PROMETHEUS.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_metrics
"""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import websockets

from wshub_harness import HOST, ServerTestCase, _free_port, http_request, run, upgrade_request

STEP_TIMEOUT = 5.0
ROOM = "lobby"


def scrape_text(port):
    status, headers, body = http_request(
        port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    if status != 200:
        raise AssertionError("/metrics answered %d" % status)
    return headers, body.decode()


def parse(text):
    """{'name{labels}': value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def wire_len(payload_len):
    """Bytes of an unmasked server frame carrying payload_len bytes."""
    if payload_len < 126:
        return 2 + payload_len
    if payload_len < 65536:
        return 4 + payload_len
    return 10 + payload_len


def tool(env_name, name):
    path = os.environ.get(env_name) or shutil.which(name) or "/usr/bin/" + name
    if not os.access(path, os.X_OK):
        raise AssertionError("%s not found (Debian package prometheus): run scripts/setup.sh test"
                             % name)
    return path


async def workload(port):
    """Runs the workload; returns what the clients sent and received."""
    uri = "ws://%s:%d/ws?token=" % (HOST, port)
    sent, received = [], {"alice": [], "bob": []}

    async def send(ws, text):
        sent.append(text)
        await ws.send(text)

    async def expect(ws, who, n):
        for _ in range(n):
            received[who].append(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT))

    alice = await websockets.connect(uri + "alice", max_size=None)
    bob = await websockets.connect(uri + "bob", max_size=None)
    join = json.dumps({"type": "join_room", "payload": {"room_id": ROOM, "presence": False}})
    await send(alice, join)
    await expect(alice, "alice", 1)
    await send(bob, join)
    await expect(bob, "bob", 1)
    for i in range(3):
        await send(alice, json.dumps({"type": "send_to_room",
                                      "payload": {"room_id": ROOM, "text": "m%d" % i}}))
    await expect(alice, "alice", 3)
    await expect(bob, "bob", 3)
    await send(bob, "this is not JSON")
    await expect(bob, "bob", 1)
    return alice, bob, sent, received


def refuse_upgrades(port):
    """Four refused upgrades, one per reason; returns their statuses."""
    reqs = [
        upgrade_request(port, path="/ws"),  # no token: 401
        upgrade_request(port, path="/ws?token=carol",
                        headers=[("Origin", "http://evil.example")]),  # 403
        upgrade_request(port, path="/ws?token=carol", version="8"),  # 426
        upgrade_request(port, path="/ws?token=carol", omit=("sec-websocket-key",)),  # 400
    ]
    return [http_request(port, r)[0] for r in reqs]


class MetricsAfterWorkload(ServerTestCase):
    THREADS = 2

    def wait_metric(self, port, key, want, timeout=STEP_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            got = parse(scrape_text(port)[1]).get(key)
            if got == want or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def test_exact_values(self):
        port = self.start_server(threads=2).port  # its own: counters start at zero
        before = parse(scrape_text(port)[1])
        for key, value in before.items():
            if not key.startswith(("wshub_http_", "wshub_connections_")):
                self.assertEqual(value, 0, key)  # a fresh server

        async def scenario():
            alice, bob, sent, received = await workload(port)
            statuses = refuse_upgrades(port)
            live = parse(scrape_text(port)[1])
            await alice.close()
            await bob.close()
            return sent, received, statuses, live

        sent, received, statuses, m = run(scenario())
        self.assertEqual(statuses, [401, 403, 426, 400])
        frames = received["alice"] + received["bob"]
        types = sorted(json.loads(f)["type"] for f in frames)
        self.assertEqual(types, ["error", "room_joined", "room_joined"] + ["send_to_room"] * 6)

        self.assertEqual(m["wshub_websocket_active_connections"], 2)
        self.assertEqual(m["wshub_websocket_upgrades_total"], 2)
        self.assertEqual(m["wshub_websocket_messages_received_total"], len(sent))
        self.assertEqual(m["wshub_websocket_received_bytes_total"],
                         sum(len(t.encode()) for t in sent))
        self.assertEqual(m["wshub_websocket_messages_sent_total"], len(frames))
        self.assertEqual(m["wshub_websocket_sent_bytes_total"],
                         sum(wire_len(len(f.encode())) for f in frames))
        self.assertEqual(m["wshub_hub_rooms"], 1)
        self.assertEqual(m["wshub_hub_online_users"], 2)
        # Three room messages and the two presence "join" events (delivered to no one:
        # both members asked for no presence).
        self.assertEqual(m["wshub_hub_messages_published_total"], 5)
        self.assertEqual(m["wshub_hub_deliveries_total"], len(frames))
        self.assertEqual(m['wshub_hub_errors_total{code="bad_json"}'], 1)
        self.assertEqual(sum(v for k, v in m.items() if k.startswith("wshub_hub_errors_total")), 1)
        reasons = {"bad_request": 1, "upgrade_required": 1, "origin_not_allowed": 1,
                   "unauthorized": 1, "server_full": 0, "too_many_connections": 0,
                   "internal": 0}
        got = {k.split('"')[1]: v for k, v in m.items()
               if k.startswith("wshub_websocket_handshake_failures_total{")}
        self.assertEqual(got, reasons)
        # Histograms: every queued frame has a depth; every room delivery a latency.
        self.assertEqual(m["wshub_hub_send_queue_depth_messages_count"], len(frames))
        self.assertEqual(m['wshub_hub_send_queue_depth_messages_bucket{le="+Inf"}'], len(frames))
        self.assertEqual(m["wshub_hub_delivery_latency_seconds_count"], 6)
        self.assertEqual(m['wshub_hub_delivery_latency_seconds_bucket{le="+Inf"}'], 6)
        self.assertGreater(m["wshub_hub_delivery_latency_seconds_sum"], 0)
        self.assertLess(m["wshub_hub_delivery_latency_seconds_sum"], 6 * 1.0)
        self.assertEqual(m["wshub_http_responses_total{status_class=\"1xx\"}"], 2)

        # After both clients closed with 1000.
        self.assertEqual(self.wait_metric(port, "wshub_websocket_active_connections", 0), 0)
        m = parse(scrape_text(port)[1])
        self.assertEqual(m['wshub_websocket_closes_received_total{code="1000"}'], 2)
        self.assertEqual(m['wshub_websocket_closes_sent_total{code="1000"}'], 2)
        self.assertEqual(m["wshub_hub_rooms"], 0)
        self.assertEqual(m["wshub_hub_online_users"], 0)
        self.assertEqual(m["wshub_websocket_protocol_errors_total"], 0)

    def test_promtool_accepts_a_real_scrape(self):
        alice_bob = run(self._some_traffic())
        self.assertTrue(alice_bob)
        headers, text = scrape_text(self.port)
        self.assertIn("text/plain; version=0.0.4", headers.get("content-type", ""))
        self.assertIn("wshub_hub_delivery_latency_seconds_bucket", text)
        p = subprocess.run([tool("WSHUB_PROMTOOL", "promtool"), "check", "metrics"],
                           input=text.encode(), capture_output=True, timeout=30)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, b""))
        # And it does complain about a broken exposition (the check can fail).
        bad = text.replace("# HELP wshub_hub_rooms Rooms with at least one member.\n", "")
        p = subprocess.run([tool("WSHUB_PROMTOOL", "promtool"), "check", "metrics"],
                           input=bad.encode(), capture_output=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)

    async def _some_traffic(self):
        alice, bob, _, _ = await workload(self.port)
        refuse_upgrades(self.port)
        await alice.close()
        await bob.close()
        return True


class ScrapedByPrometheus(ServerTestCase):
    """A real Prometheus server scrapes wshub; its query API shows the values."""
    THREADS = 2
    DEADLINE = 60.0  # Prometheus starts in a second or two; scrapes every second

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.TemporaryDirectory(prefix="wshub-prom-")
        self.addCleanup(self.tmp.cleanup)
        self.prom_port = _free_port()
        cfg = os.path.join(self.tmp.name, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: wshub\n    scrape_interval: 1s\n"
                    "    scrape_timeout: 1s\n    static_configs:\n"
                    "      - targets: ['%s:%d']\n" % (HOST, self.port))
        self.prom_log = open(os.path.join(self.tmp.name, "prometheus.log"), "w+")
        self.addCleanup(self.prom_log.close)
        self.prom = subprocess.Popen(
            [tool("WSHUB_PROMETHEUS", "prometheus"), "--config.file=" + cfg,
             "--storage.tsdb.path=" + os.path.join(self.tmp.name, "data"),
             "--web.listen-address=%s:%d" % (HOST, self.prom_port), "--log.level=warn"],
            stdout=self.prom_log, stderr=subprocess.STDOUT, cwd=self.tmp.name)
        self.addCleanup(self.stop_prometheus)

    def stop_prometheus(self):
        if self.prom.poll() is None:
            os.kill(self.prom.pid, signal.SIGTERM)
            try:
                self.prom.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.prom.pid, signal.SIGKILL)
                self.prom.wait(timeout=5)

    def query(self, expr):
        url = "http://%s:%d/api/v1/query?query=%s" % (HOST, self.prom_port,
                                                      urllib.parse.quote(expr))
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise AssertionError("query %r: %r" % (expr, body))
        return [s["value"][1] for s in body["data"]["result"]]

    def wait_for(self, expr, want):
        deadline = time.monotonic() + self.DEADLINE
        last = None
        while time.monotonic() < deadline:
            if self.prom.poll() is not None:
                self.prom_log.seek(0)
                self.fail("prometheus exited %s:\n%s" % (self.prom.returncode,
                                                         self.prom_log.read()[-5000:]))
            try:
                last = self.query(expr)
                if last == [want]:
                    return
            except OSError as e:  # not listening yet
                last = e
            time.sleep(0.25)
        self.prom_log.seek(0)
        self.fail("prometheus: %s is %r, want %r; log:\n%s"
                  % (expr, last, want, self.prom_log.read()[-5000:]))

    def test_prometheus_scrapes_the_values(self):
        async def scenario():
            alice, bob, sent, _ = await workload(self.port)
            refuse_upgrades(self.port)
            return alice, bob, sent

        async def close(alice, bob):
            await alice.close()
            await bob.close()

        loop = asyncio.new_event_loop()
        try:
            alice, bob, sent = loop.run_until_complete(asyncio.wait_for(scenario(), 30))
            self.wait_for('up{job="wshub"}', "1")
            self.wait_for("wshub_websocket_messages_received_total", str(len(sent)))
            self.wait_for("wshub_websocket_active_connections", "2")
            self.wait_for("wshub_hub_rooms", "1")
            self.wait_for('wshub_websocket_handshake_failures_total{reason="unauthorized"}', "1")
            self.wait_for("wshub_hub_delivery_latency_seconds_count", "6")
            self.wait_for('wshub_hub_send_queue_depth_messages_bucket{le="+Inf"}', "9")
            loop.run_until_complete(asyncio.wait_for(close(alice, bob), 10))
            self.wait_for("wshub_websocket_active_connections", "0")
            self.wait_for('wshub_websocket_closes_received_total{code="1000"}', "2")
        finally:
            loop.close()


if __name__ == "__main__":
    unittest.main()
