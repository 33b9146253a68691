"""wshub-bench, the load generator, against the real server: each mode runs for about
two seconds at small scale (echo 10 connections; fanout 50 subscribers, 1 publisher,
1000 messages/s; idle 200 connections with --server-pid; churn 100 connections/s), and
the final JSON line is checked: its shape, non-zero throughput, no lost or duplicated
delivery. Also: usage errors (exit 2), a refused connection (exit 1 with a JSON line),
and, against a small scripted server, fragmented echoes with pings in between (the
bench's own frame parser) and a protocol error.

The bench binary: $WSHUB_BENCH_BIN, else derived from $WSHUB_BIN (".../wshub" gives
".../wshub-bench", ".../wshub-asan" gives ".../wshub-bench-asan").

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_bench
"""

import json
import os
import re
import socket
import subprocess
import threading
import unittest

from wshub_harness import (HOST, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                           ConnectionClosed, RawClient, ServerTestCase, accept_for,
                           build_frame, http_request, wshub_bin)

RUN_TIMEOUT = 60.0  # upper bound for any one bench run
_SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:")
LATENCY_KEYS = ("count", "p50", "p90", "p99", "p999", "max", "mean")


def bench_bin():
    path = os.environ.get("WSHUB_BENCH_BIN")
    if not path:
        d, base = os.path.split(wshub_bin())
        if base in ("wshub", "wshub-asan"):
            base = "wshub-bench" + base[len("wshub"):]
        path = os.path.join(d, base)
    if not os.access(path, os.X_OK):
        raise RuntimeError("wshub-bench binary %r is not executable (set WSHUB_BENCH_BIN)" % path)
    return path


def bench_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=99")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=98")
    return env


def closed_port():
    """A port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class BenchTestCase(ServerTestCase):
    THREADS = 2

    def url(self, path):
        return "ws://%s:%d%s" % (HOST, self.port, path)

    def run_bench(self, *args, timeout=RUN_TIMEOUT):
        """(exit code, stdout, stderr) of one run."""
        cmd = [bench_bin()] + [str(a) for a in args]
        try:
            proc = subprocess.run(cmd, env=bench_env(), stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            self.fail("wshub-bench %r did not finish within %.0f s; stdout:\n%s\nstderr:\n%s"
                      % (args, timeout, (e.stdout or b"").decode(errors="replace"),
                         (e.stderr or b"").decode(errors="replace")))
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace")
        self.assertNotRegex(err, _SANITIZER_RE, "sanitizer report from wshub-bench")
        return proc.returncode, out, err

    def run_ok(self, *args):
        """Runs a mode that must succeed; returns the parsed JSON line (the last line)."""
        rc, out, err = self.run_bench(*args)
        lines = out.strip().splitlines()
        self.assertTrue(lines, "no output; stderr:\n%s" % err)
        try:
            doc = json.loads(lines[-1])
        except ValueError:
            self.fail("the last line is not JSON: %r\nstdout:\n%s\nstderr:\n%s"
                      % (lines[-1], out, err))
        self.assertEqual(rc, 0, "exit %d; stdout:\n%s\nstderr:\n%s" % (rc, out, err))
        self.assertIs(doc["ok"], True, doc)
        self.assertIsNone(doc["error"], doc)
        if "--json-only" not in args:
            self.assertGreater(len(lines), 1, "no human summary before the JSON line")
        return doc

    def check_common(self, doc, mode, with_pid=True):
        for key in ("mode", "url", "params", "results", "server_cpu_s", "client_cpu_s",
                    "client_cpu_pct", "server_rss_kib", "ok", "error"):
            self.assertIn(key, doc)
        self.assertEqual(doc["mode"], mode)
        self.assertIsInstance(doc["params"], dict)
        self.assertIsInstance(doc["results"], dict)
        self.assertGreaterEqual(doc["client_cpu_s"], 0)
        if with_pid:
            self.assertIsInstance(doc["server_cpu_s"], (int, float))
            self.assertGreaterEqual(doc["server_cpu_s"], 0)
            self.assertIsInstance(doc["server_rss_kib"], int)
            self.assertGreater(doc["server_rss_kib"], 0)
        else:
            self.assertIsNone(doc["server_cpu_s"])
            self.assertIsNone(doc["server_rss_kib"])

    def check_latency(self, lat, expect_samples=True):
        for key in LATENCY_KEYS:
            self.assertIn(key, lat)
        if expect_samples:
            self.assertGreater(lat["count"], 0)
            self.assertGreater(lat["p50"], 0)
            self.assertLessEqual(lat["p50"], lat["p90"])
            self.assertLessEqual(lat["p90"], lat["p99"])
            self.assertLessEqual(lat["p99"], lat["p999"])
            self.assertLessEqual(lat["p999"], lat["max"])


class BenchModeTests(BenchTestCase):
    def test_echo(self):
        pid = self.server.proc.pid
        doc = self.run_ok("echo", "--url", self.url("/echo"), "--connections", 10,
                          "--duration", 2, "--warmup", 0.5, "--server-pid", pid, "--quiet")
        self.check_common(doc, "echo")
        self.assertEqual(doc["params"]["connections"], 10)
        self.assertEqual(doc["params"]["inflight"], 1)
        self.assertEqual(doc["params"]["size"], 32)
        self.assertIs(doc["params"]["binary"], False)
        r = doc["results"]
        self.assertGreater(r["messages"], 0)
        self.assertGreater(r["messages_per_s"], 0)
        self.assertAlmostEqual(r["window_s"], 2.0, delta=0.5)
        self.check_latency(r["rtt_us"])
        self.assertEqual(r["rtt_us"]["count"], r["messages"])
        self.assertEqual(r["connect_failures"], 0)
        self.assertEqual(r["disconnects"], 0)
        self.assertEqual(r["bad_echoes"], 0)
        self.assertIn("server_cpu_per_msg_us", doc)

    def test_echo_binary_pipelined_json_only(self):
        rc, out, err = self.run_bench("echo", "--url", self.url(""), "-c", 4, "-k", 8,
                                      "--size", 2000, "--binary", "-d", 1, "-w", 0,
                                      "--json-only")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out.strip().splitlines()), 1, "--json-only prints one line")
        self.assertEqual(err, "", "--json-only implies --quiet")
        doc = json.loads(out)
        self.check_common(doc, "echo", with_pid=False)
        self.assertTrue(doc["url"].endswith("/echo"), "default path /echo: %s" % doc["url"])
        self.assertIs(doc["params"]["binary"], True)
        self.assertGreater(doc["results"]["messages_per_s"], 0)

    def test_fanout(self):
        pid = self.server.proc.pid
        doc = self.run_ok("fanout", "--url", self.url("/ws"), "--subscribers", 50,
                          "--publishers", 1, "--rate", 1000, "--duration", 2, "--warmup", 0.5,
                          "--server-pid", pid, "--quiet")
        self.check_common(doc, "fanout")
        p = doc["params"]
        self.assertEqual((p["subscribers"], p["publishers"], p["rooms"]), (50, 1, 1))
        self.assertEqual(p["rate"], 1000)
        r = doc["results"]
        self.assertEqual(r["lost"], 0)
        self.assertEqual(r["duplicated"], 0)
        self.assertEqual(r["disconnects"], 0)
        self.assertEqual(r["bad_messages"], 0)
        self.assertEqual(r["publisher_errors"], 0)
        self.assertGreater(r["deliveries"], 0)
        self.assertGreater(r["deliveries_per_s"], 0)
        self.assertGreater(r["published_per_s"], 0)
        # a fixed rate: about 1000 published a second, each delivered to 50
        self.assertAlmostEqual(r["published_per_s"], 1000, delta=300)
        self.assertAlmostEqual(r["deliveries"] / r["published"], 50, delta=5)
        self.check_latency(r["latency_us"])
        self.assertIn("server_cpu_per_msg_us", doc)

    def test_fanout_deflate(self):
        """--deflate: deliveries arrive compressed, are inflated and checked like plain
        ones, and the server compressed each message once per worker, not per
        subscriber."""
        doc = self.run_ok("fanout", "--url", self.url("/ws"), "--subscribers", 40,
                          "--size", 2000, "--rate", 200, "-d", 1, "-w", 0.3, "--deflate",
                          "--quiet")
        self.assertTrue(doc["params"]["deflate"])
        r = doc["results"]
        self.assertEqual((r["lost"], r["duplicated"], r["bad_messages"], r["protocol_errors"]),
                         (0, 0, 0, 0))
        self.assertGreater(r["deliveries"], 0)
        status, _, body = http_request(self.server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                                       b"Connection: close\r\n\r\n")
        m = dict(line.rsplit(" ", 1) for line in body.decode().splitlines()
                 if line and not line.startswith("#"))
        made = int(m["wshub_deflate_compressed_messages_total"])
        sent = int(m["wshub_deflate_frames_sent_total"])
        self.assertGreater(made, 0)
        self.assertGreaterEqual(sent, 40 * r["published"])
        self.assertLessEqual(made * 10, sent, "compressed once per worker, not per subscriber")

    def test_fanout_rooms_publishers_max_rate(self):
        doc = self.run_ok("fanout", "--url", self.url(""), "--subscribers", 30,
                          "--publishers", 3, "--rooms", 3, "-d", 1, "-w", 0.3, "--quiet")
        self.check_common(doc, "fanout", with_pid=False)
        self.assertTrue(doc["url"].endswith("/ws"), "default path /ws: %s" % doc["url"])
        r = doc["results"]
        self.assertEqual(r["lost"], 0)
        self.assertEqual(r["duplicated"], 0)
        self.assertGreater(r["deliveries_per_s"], 0)

    def test_idle(self):
        pid = self.server.proc.pid
        doc = self.run_ok("idle", "--url", self.url("/echo"), "--connections", 200,
                          "--hold", 1, "--server-pid", pid, "--quiet")
        self.check_common(doc, "idle")
        self.assertEqual(doc["params"]["connections"], 200)
        r = doc["results"]
        self.assertEqual(r["opened"], 200)
        self.assertEqual(r["still_open"], 200)
        self.assertEqual(r["connect_failures"], 0)
        self.assertGreater(r["connect_rate_per_s"], 0)
        self.assertIsInstance(r["rss_before_kib"], int)
        self.assertIsInstance(r["rss_after_kib"], int)
        # a shared server may reuse memory freed by earlier tests: any number will do
        self.assertIsInstance(r["bytes_per_connection"], (int, float))
        self.assertIn("server_cpu_per_conn_us", doc)

    def test_churn(self):
        pid = self.server.proc.pid
        doc = self.run_ok("churn", "--url", self.url("/echo"), "--rate", 100, "--duration", 2,
                          "--warmup", 0.5, "--server-pid", pid, "--quiet")
        self.check_common(doc, "churn")
        r = doc["results"]
        self.assertGreater(r["completed"], 0)
        self.assertGreater(r["completed_per_s"], 0)
        self.assertAlmostEqual(r["completed_per_s"], 100, delta=30)
        self.assertEqual(r["failures"], 0)
        self.check_latency(r["latency_us"])


class BenchErrorTests(BenchTestCase):
    def test_help(self):
        rc, out, _ = self.run_bench("--help")
        self.assertEqual(rc, 0)
        for word in ("echo", "fanout", "idle", "churn", "--server-pid", "--json-only",
                     "--inflight", "--subscribers", "--sources", "--hold", "--rate"):
            self.assertIn(word, out)

    def test_usage_errors(self):
        url = self.url("/echo")
        cases = [
            (),
            ("nope", "--url", url),
            ("echo",),  # no --url
            ("echo", "--url", "http://127.0.0.1:1/"),
            ("echo", "--url", url, "--connections", "0"),
            ("echo", "--url", url, "--size", "8"),  # text carries 16 hex digits
            ("echo", "--url", url, "--bogus"),
            ("idle", "--url", url, "--inflight", "2"),  # not an idle option
            ("idle", "--url", url, "--connections", "19001"),
            ("fanout", "--url", url, "--subscribers", "2", "--rooms", "3"),
            ("churn", "--url", url, "--rate", "0"),
            ("fanout", "--url", url, "--spread-ports", "0"),
            ("fanout", "--url", url, "--spread-ports", "80,x"),
            ("fanout", "--url", url, "--spread-ports", ",".join(["80"] * 16)),  # 15 at most
            ("echo", "--url", url, "--spread-ports", "80"),  # fanout only
        ]
        for args in cases:
            with self.subTest(args=args):
                rc, out, err = self.run_bench(*args)
                self.assertEqual(rc, 2, "args %r: exit %d\n%s%s" % (args, rc, out, err))
                self.assertIn("wshub-bench", err)
        rc, _, err = self.run_bench("idle", "--url", url, "--connections", "19001")
        self.assertIn("19000", err)

    def test_fanout_spread_ports(self):
        # the same node listed twice: every subscriber lands on it, nothing is lost
        doc = self.run_ok("fanout", "--url", self.url("/ws"), "--subscribers", 20, "--rooms", 2,
                          "--spread-ports", self.port, "--rate", 200, "--duration", 1,
                          "--warmup", 0.3, "--quiet")
        r = doc["results"]
        self.assertEqual((r["lost"], r["duplicated"], r["connect_failures"]), (0, 0, 0))
        self.assertGreater(r["deliveries"], 0)
        # a closed port second: subscriber s goes to port (s / rooms) mod 2, so with 8
        # subscribers in 2 rooms exactly 2, 3, 6 and 7 are refused (the first of them is
        # subscriber 2), and the publisher, always on --url, is not
        rc, out, err = self.run_bench("fanout", "--url", self.url("/ws"), "--subscribers", 8,
                                      "--rooms", 2, "--spread-ports", closed_port(),
                                      "--max-failures", 4, "--timeout", 1, "-d", 1,
                                      "--json-only")
        self.assertEqual(rc, 1, out + err)
        doc = json.loads(out.strip().splitlines()[-1])
        self.assertIs(doc["ok"], False)
        self.assertEqual(doc["results"]["connect_failures"], 4, doc)
        self.assertIn("subscriber 2 ", doc["error"])
        self.assertIn("refused", doc["error"])

    def test_refused_connection(self):
        rc, out, err = self.run_bench("echo", "--url", "ws://%s:%d/echo" % (HOST, closed_port()),
                                      "-c", 3, "-d", 1, "--quiet")
        self.assertEqual(rc, 1, out + err)
        doc = json.loads(out.strip().splitlines()[-1])
        self.assertIs(doc["ok"], False)
        self.assertIn("refused", doc["error"])
        self.assertEqual(doc["results"]["connect_failures"], 3)

    def test_refused_upgrade(self):
        rc, out, err = self.run_bench("echo", "--url", self.url("/no-such-path"), "-c", 2, "-d", 1,
                                      "--json-only")
        self.assertEqual(rc, 1, out + err)
        doc = json.loads(out)
        self.assertIs(doc["ok"], False)
        self.assertIn("404", doc["error"])


class FakeEchoServer:
    """A scripted WebSocket echo server on a thread per connection. mode "fragment"
    echoes every message as two fragments with a ping between them, written in two
    pieces cut inside the second frame header; mode "masked" answers with a masked
    frame, which a server must never send; mode "tamper" echoes every message with its
    last byte changed; mode "keys" reads the frames itself, keeps every masking key,
    and echoes the unmasked payload."""

    def __init__(self, mode):
        self.mode = mode
        self.pongs = 0
        self.closes = 0
        self.keys = []  # mode "keys": the masking key of every data frame received
        self.lock = threading.Lock()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.stopping = False
        self.threads = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self):
        while not self.stopping:
            try:
                sock, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, sock):
        sock.settimeout(5.0)
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                buf += chunk
            head, rest = buf.split(b"\r\n\r\n", 1)
            key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head).group(1).decode()
            sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                          % accept_for(key)).encode())
            if self.mode == "keys":
                self._serve_keys(sock, rest)
                return
            client = RawClient.from_socket(sock, buf=rest)
            while True:
                f = client.recv_frame(timeout=5.0)
                if f.opcode == OP_PONG:
                    with self.lock:
                        self.pongs += 1
                elif f.opcode == OP_CLOSE:
                    with self.lock:
                        self.closes += 1
                    sock.sendall(build_frame(OP_CLOSE, f.payload, mask=False))
                    return
                elif f.opcode in (OP_TEXT, OP_BINARY):
                    p = f.payload
                    if self.mode == "masked":
                        sock.sendall(build_frame(f.opcode, p, mask=True))
                        continue
                    if self.mode == "tamper":
                        p = p[:-1] + bytes([p[-1] ^ 1])
                        sock.sendall(build_frame(f.opcode, p, mask=False))
                        continue
                    out = (build_frame(f.opcode, p[:5], fin=False, mask=False)
                           + build_frame(OP_PING, b"hi", mask=False)
                           + build_frame(OP_CONT, p[5:], fin=True, mask=False))
                    cut = len(out) - len(p[5:]) - 1  # inside the last frame's header
                    sock.sendall(out[:cut])
                    sock.sendall(out[cut:])
        except (OSError, ConnectionClosed, AttributeError):
            return
        finally:
            sock.close()

    def _serve_keys(self, sock, buf):
        """Frames of up to 125 bytes parsed here, to see their masking keys."""
        while True:
            while len(buf) < 6 or len(buf) < 6 + (buf[1] & 0x7F):
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
            op, n, key = buf[0] & 0x0F, buf[1] & 0x7F, buf[2:6]
            if not buf[1] & 0x80 or n > 125:
                return  # unmasked or long: the test sees too few keys and fails
            payload = bytes(b ^ key[i & 3] for i, b in enumerate(buf[6:6 + n]))
            buf = buf[6 + n:]
            if op == OP_CLOSE:
                sock.sendall(build_frame(OP_CLOSE, payload, mask=False))
                return
            if op in (OP_TEXT, OP_BINARY):
                with self.lock:
                    self.keys.append(bytes(key))
                sock.sendall(build_frame(op, payload, mask=False))

    def stop(self):
        self.stopping = True
        self.lsock.close()
        self.acceptor.join(5)
        for t in self.threads:
            t.join(5)


class BenchFramingTests(BenchTestCase):
    START_CLASS_SERVER = False

    def fake(self, mode):
        srv = FakeEchoServer(mode)
        self.addCleanup(srv.stop)
        return srv

    def test_fragmented_echo_with_pings(self):
        srv = self.fake("fragment")
        for extra in ((), ("--binary", "--size", "300")):
            with self.subTest(extra=extra):
                rc, out, err = self.run_bench("echo", "--url", "ws://%s:%d/echo" % (HOST, srv.port),
                                              "-c", 2, "-k", 3, "-d", 1, "-w", 0, "--quiet",
                                              *extra)
                self.assertEqual(rc, 0, out + err)
                doc = json.loads(out.strip().splitlines()[-1])
                self.assertGreater(doc["results"]["messages"], 0)
                self.assertEqual(doc["results"]["bad_echoes"], 0)
        self.assertGreater(srv.pongs, 0, "the bench answers pings")
        self.assertGreaterEqual(srv.closes, 4, "the bench closes with a close frame")

    def test_every_echoed_byte_is_checked(self):
        # the last byte of the payload is padding, after the send time
        srv = self.fake("tamper")
        for extra in ((), ("--binary", "--size", "300")):
            with self.subTest(extra=extra):
                rc, out, err = self.run_bench("echo", "--url", "ws://%s:%d/echo" % (HOST, srv.port),
                                              "-c", 1, "-d", 1, "-w", 0, "--quiet", *extra)
                self.assertEqual(rc, 1, out + err)
                doc = json.loads(out.strip().splitlines()[-1])
                self.assertIs(doc["ok"], False)
                self.assertGreater(doc["results"]["bad_echoes"], 0)
                self.assertEqual(doc["results"]["messages"], 0)
                self.assertIn("an echo that is not what was sent", doc["error"])

    def test_a_fresh_masking_key_per_frame(self):
        srv = self.fake("keys")
        rc, out, err = self.run_bench("echo", "--url", "ws://%s:%d/echo" % (HOST, srv.port),
                                      "-c", 2, "-k", 4, "-d", 1, "-w", 0, "--quiet")
        self.assertEqual(rc, 0, out + err)
        doc = json.loads(out.strip().splitlines()[-1])
        self.assertEqual(doc["results"]["bad_echoes"], 0)
        with srv.lock:
            keys = list(srv.keys)
        self.assertGreater(len(keys), 200)
        # 32-bit random keys: a repeat among a few thousand is rare; a pool of keys
        # reused in turn would give almost none distinct
        self.assertGreater(len(set(keys)), 0.99 * len(keys))

    def test_masked_server_frame_fails_the_run(self):
        srv = self.fake("masked")
        rc, out, err = self.run_bench("echo", "--url", "ws://%s:%d/echo" % (HOST, srv.port),
                                      "-c", 1, "-d", 1, "-w", 0, "--quiet")
        self.assertEqual(rc, 1, out + err)
        doc = json.loads(out.strip().splitlines()[-1])
        self.assertIs(doc["ok"], False)
        self.assertIn("invalid frame header", doc["error"])
        self.assertEqual(doc["results"]["protocol_errors"], 1)


if __name__ == "__main__":
    unittest.main()
