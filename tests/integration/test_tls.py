"""wshub over TLS against real clients: Python `websockets` with an ssl.SSLContext that
trusts a throwaway CA made here with the openssl CLI; refusals (TLS 1.1, plain HTTP
on the TLS port, handshakes that stall or never start, garbage); certificate reload
on SIGHUP (a new certificate for new connections while open ones go on, a broken one
refused and the old one kept); start-up errors; idle memory per TLS connection.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_tls
"""

import asyncio
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import unittest

import websockets

from wshub_harness import (HOST, OP_BINARY, SOCK_TIMEOUT, ServerTestCase, WshubServer, build_frame,
                           close_code, run, upgrade_request, wait_socket_closed)

ASAN = os.environ.get("WSHUB_VARIANT") == "asan"


# --------------------------------------------------------------------------- certificates


def openssl(args, cwd):
    subprocess.run(["openssl"] + args, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=30)


class TestPKI:
    """A CA and server certificates signed by it (for 127.0.0.1 and localhost), each a
    full chain (leaf, then CA) with its own key."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="wshub-tls-py-")
        openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=wshub test CA"],
                self.dir)
        self.ca = os.path.join(self.dir, "ca.pem")
        with open(os.path.join(self.dir, "ext.cnf"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n")

    def leaf(self, name, serial, san=None):
        """Returns (chain file, key file) for a certificate with CN=name (for
        127.0.0.1 and localhost unless san names others)."""
        ext = "ext.cnf"
        if san:
            ext = name + ".cnf"
            with open(os.path.join(self.dir, ext), "w") as f:
                f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n" % san)
        openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name], self.dir)
        openssl(["x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-set_serial", str(serial), "-days", "2", "-extfile", ext,
                 "-out", name + ".leaf"], self.dir)
        chain = os.path.join(self.dir, name + ".pem")
        with open(chain, "wb") as out:
            for part in (name + ".leaf", "ca.pem"):
                with open(os.path.join(self.dir, part), "rb") as f:
                    out.write(f.read())
        return chain, os.path.join(self.dir, name + ".key")

    def client_context(self):
        ctx = ssl.create_default_context(cafile=self.ca)
        return ctx

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class TlsServer(WshubServer):
    """WshubServer whose health check speaks HTTPS, trusting the test CA."""

    def __init__(self, args, ca, **kw):
        super().__init__(args, **kw)
        self.ca = ca

    def healthz(self, timeout=2.0):
        return https_get(self.port, "/healthz", self.ca, timeout)[0]


def https_get(port, path, ca, timeout=SOCK_TIMEOUT):
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection(HOST, port, context=ctx, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def tls_metrics(port, ca):
    status, body = https_get(port, "/metrics", ca)
    if status != 200:
        raise AssertionError("/metrics: %d" % status)
    out = {}
    for line in body.splitlines():
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\d+)$", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def client_hello(version, ciphers=(0xC02F, 0xC013, 0x002F)):
    """A minimal ClientHello record announcing `version` (e.g. 0x0302 = TLS 1.1) as
    its highest, with no extensions: what an old client sends."""
    body = struct.pack(">H", version) + os.urandom(32) + b"\x00"
    body += struct.pack(">H", 2 * len(ciphers)) + b"".join(struct.pack(">H", c) for c in ciphers)
    body += b"\x01\x00"  # compression: null only
    hs = b"\x01" + struct.pack(">I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def recv_until_closed(sock, timeout):
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return data


def peer_cn(ws):
    cert = ws.transport.get_extra_info("peercert")
    return dict(x[0] for x in cert["subject"])["commonName"], cert["serialNumber"]


# --------------------------------------------------------------------------- tests


class TlsTestCase(ServerTestCase):
    SERVER_ARGS = ()
    START_CLASS_SERVER = False

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = TestPKI()
        cls.cert, cls.key = cls.pki.leaf("wshub-test-1", 1001)
        cls.server = TlsServer(["--tls-cert", cls.cert, "--tls-key", cls.key, "--stream", ""]
                               + list(cls.SERVER_ARGS), cls.pki.ca).start()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.pki.cleanup()

    def uri(self, path="/echo", port=None):
        return "wss://%s:%d%s" % (HOST, self.port if port is None else port, path)

    def connect(self, path="/echo", port=None, ssl_ctx=None, **kw):
        kw.setdefault("compression", None)
        kw.setdefault("open_timeout", 10)
        kw.setdefault("ping_interval", None)
        kw.setdefault("max_size", 4 << 20)
        return websockets.connect(self.uri(path, port), ssl=ssl_ctx or self.pki.client_context(),
                                  **kw)

    def metrics(self, srv=None):
        return tls_metrics((srv or self.server).port, self.pki.ca)


class WebsocketsOverTls(TlsTestCase):
    SERVER_ARGS = ("--handshake-timeout", "1s")

    def test_echo(self):
        async def main():
            async with self.connect() as ws:
                for msg in ("hello", "h\u00e9llo \u20ac", b"\x00\x01binary", "x" * 100000):
                    await ws.send(msg)
                    self.assertEqual(await asyncio.wait_for(ws.recv(), 10), msg)
                sslobj = ws.transport.get_extra_info("ssl_object")
                self.assertIn(sslobj.version(), ("TLSv1.2", "TLSv1.3"))
                self.assertEqual(peer_cn(ws)[0], "wshub-test-1")
        run(main())

    def test_large_message_both_ways(self):
        payload = os.urandom(1 << 20)

        async def main():
            async with self.connect() as ws:
                await ws.send(payload)
                self.assertEqual(await asyncio.wait_for(ws.recv(), 20), payload)
        run(main())

    def test_hub_join_and_send(self):
        import json

        async def main():
            async with self.connect("/ws?token=py-alice") as a, \
                    self.connect("/ws?token=py-bob") as b:
                for ws, rid in ((a, "ja"), (b, "jb")):
                    await ws.send(json.dumps({"type": "join_room", "id": rid,
                                              "payload": {"room_id": "py-tls"}}))
                await self._take(b, lambda m: m.get("type") == "room_joined")
                await self._take(a, lambda m: m.get("type") == "room_joined")
                await a.send(json.dumps({"type": "send_to_room",
                                         "payload": {"room_id": "py-tls", "text": "hi bob"}}))
                m = await self._take(b, lambda m: m.get("type") == "send_to_room")
                self.assertEqual(m["payload"]["text"], "hi bob")
                self.assertEqual(m["room_id"], "py-tls")
        run(main())

    async def _take(self, ws, pred):
        import json
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if pred(m):
                return m

    def test_tls12_only_client(self):
        ctx = self.pki.client_context()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2

        async def main():
            async with self.connect(ssl_ctx=ctx) as ws:
                self.assertEqual(ws.transport.get_extra_info("ssl_object").version(), "TLSv1.2")
                await ws.send("v1.2")
                self.assertEqual(await ws.recv(), "v1.2")
        run(main())

    def test_tls11_client_hello_gets_protocol_version_alert(self):
        """An old client's ClientHello (highest version TLS 1.1) is answered with a fatal
        protocol_version alert (RFC 8446 appendix D / RFC 5246 E.1), then closed."""
        before = self.metrics()
        with socket.create_connection((HOST, self.port), timeout=SOCK_TIMEOUT) as s:
            s.sendall(client_hello(0x0302))
            data = recv_until_closed(s, 5)
        self.assertGreaterEqual(len(data), 7, "no alert: %r" % data)
        self.assertEqual(data[0], 0x15, "not an alert record: %r" % data[:8])
        self.assertEqual((data[5], data[6]), (2, 70), "expected fatal protocol_version: %r"
                         % data[:8])
        after = self.metrics()
        self.assertGreater(after["wshub_tls_handshake_failures_total"],
                           before["wshub_tls_handshake_failures_total"])

    def test_tls10_and_11_clients_fail(self):
        """A Python client limited to TLS 1.0/1.1 (at security level 0, so that the
        client side would allow it) cannot connect."""
        for v in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(self.pki.ca)
            try:
                ctx.set_ciphers("ALL:@SECLEVEL=0")
                ctx.minimum_version = v
                ctx.maximum_version = v
            except (ssl.SSLError, ValueError):
                continue
            with socket.create_connection((HOST, self.port), timeout=SOCK_TIMEOUT) as raw:
                with self.assertRaises(ssl.SSLError, msg=str(v)):
                    ctx.wrap_socket(raw, server_hostname=HOST).close()

    def test_untrusted_client_sees_verify_error(self):
        async def main():
            with self.assertRaises(ssl.SSLCertVerificationError) as cm:
                async with self.connect(ssl_ctx=ssl.create_default_context()):
                    pass
            self.assertIn("certificate verify failed", str(cm.exception))
        run(main())

    def test_plain_http_is_answered_400_and_closed(self):
        before = self.metrics()
        with socket.create_connection((HOST, self.port), timeout=SOCK_TIMEOUT) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = recv_until_closed(s, 5)
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data[:80])
        self.assertIn(b'"code":"tls_required"', data)
        # a plain ws:// upgrade is refused the same way
        async def main():
            with self.assertRaises(websockets.exceptions.InvalidStatusCode) as cm:
                async with websockets.connect("ws://%s:%d/echo" % (HOST, self.port),
                                              open_timeout=5):
                    pass
            self.assertEqual(cm.exception.status_code, 400)
        run(main())
        after = self.metrics()
        self.assertEqual(after["wshub_tls_plaintext_refused_total"],
                         before["wshub_tls_plaintext_refused_total"] + 2)

    def test_garbage_instead_of_client_hello_is_closed(self):
        before = self.metrics()
        with socket.create_connection((HOST, self.port), timeout=SOCK_TIMEOUT) as s:
            s.sendall(os.urandom(64) + b"\x00" * 64)
            self.assertTrue(wait_socket_closed(s, 5), "server kept a garbage connection")
        after = self.metrics()
        self.assertGreater(after["wshub_tls_handshake_failures_total"],
                           before["wshub_tls_handshake_failures_total"])

    def test_stalled_and_silent_handshakes_are_dropped_after_the_timeout(self):
        before = self.metrics()
        hello = client_hello(0x0303)
        t0 = time.monotonic()
        with socket.create_connection((HOST, self.port), timeout=SOCK_TIMEOUT) as silent, \
                socket.create_connection((HOST, self.port), timeout=SOCK_TIMEOUT) as stalled:
            stalled.sendall(hello[:20])  # half a ClientHello, then nothing
            self.assertTrue(wait_socket_closed(silent, 5), "silent connection not dropped")
            self.assertTrue(wait_socket_closed(stalled, 5), "stalled handshake not dropped")
        took = time.monotonic() - t0
        self.assertGreater(took, 0.8, "dropped before the 1 s handshake timeout")
        self.assertLess(took, 4.0)
        after = self.metrics()
        self.assertEqual(after['wshub_websocket_timeouts_total{kind="handshake"}'],
                         before['wshub_websocket_timeouts_total{kind="handshake"}'] + 2)
        self.assertGreaterEqual(after["wshub_tls_handshake_failures_total"],
                                before["wshub_tls_handshake_failures_total"] + 2)

    def test_close_notify_after_websocket_close(self):
        """The server ends TLS with close_notify after the closing handshake: a client
        that insists on it (ssl's default) sees a clean TLS shutdown."""
        ctx = self.pki.client_context()
        with socket.create_connection((HOST, self.port), timeout=SOCK_TIMEOUT) as raw:
            with ctx.wrap_socket(raw, server_hostname=HOST) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)  # ssl raises SSLEOFError on EOF without close_notify
                    if not chunk:
                        break
                    data += chunk
                self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:60])


class TlsBackpressureAndShutdown(TlsTestCase):
    SERVER_ARGS = ("--write-timeout", "1s", "--send-queue-bytes", "256KiB")

    def test_client_that_never_reads_is_closed_by_the_write_timeout(self):
        """A TLS client that sends to /echo and never reads: the server's TLS writes
        block (records staged for the retry), echo stops reading from it, and the
        write deadline (measured on the socket under TLS) closes it."""
        before = self.metrics()
        ctx = self.pki.client_context()
        raw = socket.create_connection((HOST, self.port), timeout=SOCK_TIMEOUT)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s = ctx.wrap_socket(raw, server_hostname=HOST)
        try:
            s.sendall(upgrade_request(self.port, "/echo"))
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1)
            self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
            frame = build_frame(OP_BINARY, os.urandom(65536))
            s.settimeout(0.5)
            sent = 0
            try:
                while sent < (64 << 20):
                    s.sendall(frame)
                    sent += len(frame)
            except (socket.timeout, ssl.SSLError, OSError):
                pass  # our writes block too: the server stopped reading (backpressure)
            self.assertGreater(sent, 256 << 10)
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                m = self.metrics()
                if (m['wshub_websocket_timeouts_total{kind="write"}'] >
                        before['wshub_websocket_timeouts_total{kind="write"}']):
                    break
                time.sleep(0.2)
            else:
                self.fail("no write timeout within 8 s (sent %d bytes)" % sent)
        finally:
            s.close()
        # the server goes on serving
        async def main():
            async with self.connect() as ws:
                await ws.send("after")
                self.assertEqual(await ws.recv(), "after")
        run(main())

    def test_graceful_shutdown_sends_1001_over_tls(self):
        srv = TlsServer(["--tls-cert", self.cert, "--tls-key", self.key, "--stream", ""],
                        self.pki.ca).start()
        try:
            async def main():
                async with self.connect(port=srv.port) as ws:
                    await ws.send("before")
                    self.assertEqual(await ws.recv(), "before")
                    srv.terminate()
                    with self.assertRaises(websockets.exceptions.ConnectionClosed) as cm:
                        await asyncio.wait_for(ws.recv(), 5)
                    self.assertEqual(close_code(cm.exception), 1001)
            run(main())
            self.assertEqual(srv.wait(10), 0)
        finally:
            rc, _, killed = srv.stop()
            srv.check_stopped_cleanly(rc, killed)
            srv.close_files()


class CliOverTls(TlsTestCase):
    """wshub-cli (the C client library's socket layer) speaking wss://."""

    def run_cli(self, *args, timeout=20):
        from test_cli import cli_bin, cli_env
        p = subprocess.run([cli_bin()] + list(args), env=cli_env(), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        self.assertNotRegex(p.stderr, r"AddressSanitizer|LeakSanitizer|runtime error:")
        return p.returncode, p.stdout, p.stderr

    def test_echo_over_wss_trusting_the_test_ca(self):
        before = self.metrics()["wshub_tls_handshakes_total"]
        for host in ("127.0.0.1", "localhost"):
            rc, out, err = self.run_cli("--ca", self.pki.ca, "-q", "-w", "1", "-x", "hello tls",
                                        "wss://%s:%d/echo" % (host, self.port))
            self.assertEqual(rc, 0, err)
            self.assertIn("hello tls", out)
        self.assertGreaterEqual(self.metrics()["wshub_tls_handshakes_total"], before + 2)

    def test_hub_over_wss(self):
        rc, out, err = self.run_cli("--ca", self.pki.ca, "-q", "-w", "1", "-x",
                                    '{"type":"join_room","payload":{"room_id":"cli-tls"}}',
                                    "wss://127.0.0.1:%d/ws?token=cli-user" % self.port)
        self.assertEqual(rc, 0, err)
        self.assertIn('"room_joined"', out)

    def test_untrusted_server_is_refused(self):
        rc, out, err = self.run_cli("-x", "x", "wss://127.0.0.1:%d/echo" % self.port)
        self.assertEqual(rc, 1)
        self.assertIn("certificate verify failed", err)

    def test_name_mismatch_is_refused(self):
        """A certificate of the trusted CA for another name: the address is checked."""
        cert, key = self.pki.leaf("other-name", 3003, san="DNS:other.example")
        srv = TlsServer(["--tls-cert", cert, "--tls-key", key, "--stream", ""], self.pki.ca)
        srv.healthz = lambda timeout=2.0: 200  # our own https check would refuse it too
        srv.start()
        try:
            rc, out, err = self.run_cli("--ca", self.pki.ca, "-x", "x",
                                        "wss://127.0.0.1:%d/echo" % srv.port)
            self.assertEqual(rc, 1)
            self.assertIn("certificate verify failed", err)
            self.assertIn("IP address mismatch", err)
        finally:
            rc2, _, killed = srv.stop()
            srv.check_stopped_cleanly(rc2, killed)
            srv.close_files()

    def test_wss_to_a_plaintext_server_fails_cleanly(self):
        plain = WshubServer(["--stream", ""]).start()
        try:
            rc, out, err = self.run_cli("--ca", self.pki.ca, "-x", "x",
                                        "wss://127.0.0.1:%d/echo" % plain.port)
            self.assertEqual(rc, 1)
            self.assertIn("TLS with 127.0.0.1", err)
        finally:
            rc2, _, killed = plain.stop()
            plain.check_stopped_cleanly(rc2, killed)
            plain.close_files()


class BenchOverTls(TlsTestCase):
    """wshub-bench speaks wss:// too (echo and fanout through TLS, verified)."""

    def run_bench(self, *args):
        from test_bench import bench_bin, bench_env
        p = subprocess.run([bench_bin()] + [str(a) for a in args], env=bench_env(),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90)
        self.assertNotRegex(p.stderr, r"AddressSanitizer|LeakSanitizer|runtime error:")
        import json
        return p.returncode, json.loads(p.stdout.strip().splitlines()[-1]), p.stderr

    def test_echo_and_fanout(self):
        rc, res, err = self.run_bench("echo", "--url", "wss://127.0.0.1:%d/echo" % self.port,
                                      "--ca", self.pki.ca, "-c", 4, "-k", 4, "-s", 2000, "-d", 1,
                                      "-w", 0.3, "--json-only")
        self.assertEqual(rc, 0, err)
        self.assertTrue(res["ok"], res)
        self.assertGreater(res["results"]["messages"], 100)
        self.assertEqual(res["results"]["bad_echoes"], 0)
        rc, res, err = self.run_bench("fanout", "--url", "wss://127.0.0.1:%d/ws" % self.port,
                                      "--ca", self.pki.ca, "--subscribers", 20, "--rate", 200,
                                      "-d", 1, "-w", 0.3, "--json-only")
        self.assertEqual(rc, 0, err)
        self.assertTrue(res["ok"], res)

    def test_untrusted_is_a_failed_run(self):
        rc, res, err = self.run_bench("echo", "--url", "wss://127.0.0.1:%d/echo" % self.port,
                                      "-c", 1, "-d", 0.5, "-w", 0, "--json-only")
        self.assertEqual(rc, 1)
        self.assertIn("certificate verify failed", res["error"])


class TlsReload(unittest.TestCase):
    """SIGHUP reloads the certificate files; one server per test."""

    @classmethod
    def setUpClass(cls):
        cls.pki = TestPKI()
        cls.c1 = cls.pki.leaf("wshub-test-1", 1001)
        cls.c2 = cls.pki.leaf("wshub-test-2", 2002)

    @classmethod
    def tearDownClass(cls):
        cls.pki.cleanup()

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="wshub-tls-reload-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        self.install(*self.c1)
        self.srv = TlsServer(["--tls-cert", self.cert, "--tls-key", self.key, "--stream", ""],
                             self.pki.ca).start()
        self.addCleanup(self.stop_server)

    def stop_server(self):
        try:
            rc, _, killed = self.srv.stop()
            self.srv.check_stopped_cleanly(rc, killed)
        finally:
            self.srv.close_files()

    def install(self, cert, key):
        # Write-then-rename, as deployment tools do, so a reload never reads half a file.
        for src, dst in ((cert, self.cert), (key, self.key)):
            shutil.copyfile(src, dst + ".tmp")
            os.replace(dst + ".tmp", dst)

    def sighup_and_wait(self, pattern):
        n = len(re.findall(pattern, self.srv.stderr()))
        os.kill(self.srv.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.srv.stderr())) > n:
                return
            self.assertTrue(self.srv.alive(), "wshub died on SIGHUP:\n" + self.srv.stderr())
            time.sleep(0.02)
        self.fail("no %r in the log after SIGHUP:\n%s" % (pattern, self.srv.stderr()))

    def connect(self):
        return websockets.connect("wss://%s:%d/echo" % (HOST, self.srv.port),
                                  ssl=self.pki.client_context(), compression=None,
                                  open_timeout=10, ping_interval=None)

    def test_new_certificate_for_new_connections_open_ones_go_on(self):
        async def main():
            async with self.connect() as old:
                self.assertEqual(peer_cn(old), ("wshub-test-1", "03E9"))
                self.install(*self.c2)
                self.sighup_and_wait(r"msg=\"tls certificate reloaded\".*wshub-test-2")
                await old.send("still here")
                self.assertEqual(await asyncio.wait_for(old.recv(), 5), "still here")
                async with self.connect() as new:
                    self.assertEqual(peer_cn(new), ("wshub-test-2", "07D2"))
                    await new.send("new")
                    self.assertEqual(await asyncio.wait_for(new.recv(), 5), "new")
                await old.send("and still")
                self.assertEqual(await asyncio.wait_for(old.recv(), 5), "and still")
        run(main())
        m = tls_metrics(self.srv.port, self.pki.ca)
        self.assertEqual(m["wshub_tls_reloads_total"], 1)
        self.assertEqual(m["wshub_tls_reload_failures_total"], 0)

    def test_broken_files_keep_the_old_certificate(self):
        with open(self.cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        self.sighup_and_wait(r"msg=\"tls reload failed: keeping the previous certificate\""
                             r".*--tls-cert")
        # a certificate whose key is not the one in --tls-key
        shutil.copyfile(self.c2[0], self.cert)
        self.sighup_and_wait(r"msg=\"tls reload failed.*does not match")
        os.remove(self.key)
        self.sighup_and_wait(r"msg=\"tls reload failed.*--tls-key .*No such file")

        async def main():
            async with self.connect() as ws:
                self.assertEqual(peer_cn(ws)[0], "wshub-test-1")
                await ws.send("old cert")
                self.assertEqual(await asyncio.wait_for(ws.recv(), 5), "old cert")
        run(main())
        m = tls_metrics(self.srv.port, self.pki.ca)
        self.assertEqual(m["wshub_tls_reload_failures_total"], 3)
        self.assertEqual(m["wshub_tls_reloads_total"], 0)


class SighupWithoutTls(ServerTestCase):
    def test_sighup_does_not_stop_a_plain_server(self):
        os.kill(self.server.proc.pid, signal.SIGHUP)
        time.sleep(0.3)
        self.assertTrue(self.server.alive())
        self.assertIn("no TLS certificate to reload", self.server.stderr())
        self.assertEqual(self.server.healthz(), 200)


class TlsStartupErrors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = TestPKI()
        cls.c1 = cls.pki.leaf("wshub-test-1", 1001)
        cls.c2 = cls.pki.leaf("wshub-test-2", 2002)

    @classmethod
    def tearDownClass(cls):
        cls.pki.cleanup()

    def start_fails(self, args, pattern):
        from wshub_harness import wshub_bin
        p = subprocess.run([wshub_bin(), "--listen", "127.0.0.1:0", "--threads", "1"] + args,
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertRegex(p.stderr, pattern)
        self.assertNotIn("listening", p.stderr)

    def test_cert_without_key(self):
        self.start_fails(["--tls-cert", self.c1[0]], r"--tls-cert \S+ given without --tls-key")

    def test_key_without_cert(self):
        self.start_fails(["--tls-key", self.c1[1]], r"--tls-key \S+ given without --tls-cert")

    def test_unreadable_files(self):
        missing = os.path.join(self.pki.dir, "nope.pem")
        self.start_fails(["--tls-cert", missing, "--tls-key", self.c1[1]],
                         r"--tls-cert \S*nope\.pem: No such file")
        self.start_fails(["--tls-cert", self.c1[0], "--tls-key", missing],
                         r"--tls-key \S*nope\.pem: No such file")

    def test_key_of_another_certificate(self):
        self.start_fails(["--tls-cert", self.c1[0], "--tls-key", self.c2[1]],
                         r"--tls-key \S+wshub-test-2\.key does not match the certificate")

    def test_encrypted_key_is_refused_without_a_prompt(self):
        enc = os.path.join(self.pki.dir, "encrypted.key")
        openssl(["pkey", "-in", self.c1[1], "-out", enc, "-aes256", "-passout", "pass:secret"],
                self.pki.dir)
        # stdin is a pipe that stays open: a passphrase prompt would hang until the
        # timeout instead of failing at once.
        from wshub_harness import wshub_bin
        p = subprocess.run([wshub_bin(), "--listen", "127.0.0.1:0", "--threads", "1",
                            "--tls-cert", self.c1[0], "--tls-key", enc],
                           input="", capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertRegex(p.stderr, r"--tls-key \S+encrypted\.key is encrypted")

    def test_not_a_certificate(self):
        self.start_fails(["--tls-cert", self.c1[1], "--tls-key", self.c1[1]],
                         r"--tls-cert \S+: not a usable PEM certificate chain")

    def test_environment_and_config_file(self):
        """The options come from WSHUB_TLS_CERT/KEY and the config file like any other."""
        cfg = os.path.join(self.pki.dir, "wshub.conf")
        with open(cfg, "w") as f:
            f.write("tls-cert = %s\ntls-key = %s\n" % self.c1)
        for args, env in ((["--config", cfg], {}),
                          ([], {"WSHUB_TLS_CERT": self.c1[0], "WSHUB_TLS_KEY": self.c1[1]})):
            srv = TlsServer(args, self.pki.ca)
            old = dict(os.environ)
            os.environ.update(env)
            try:
                srv.start()
            finally:
                os.environ.clear()
                os.environ.update(old)
            try:
                self.assertRegex(srv.stderr(), r"msg=listening .*tls=on")
            finally:
                rc, _, killed = srv.stop()
                srv.check_stopped_cleanly(rc, killed)
                srv.close_files()


class TlsIdleMemory(TlsTestCase):
    """Idle TLS connections give their record buffers back (SSL_MODE_RELEASE_BUFFERS):
    the server's RSS per idle upgraded connection stays well under the 2 x ~17 KiB
    that OpenSSL's read and write buffers alone would hold."""

    N = 400

    def rss_kib(self):
        with open("/proc/%d/status" % self.server.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def test_idle_rss_per_connection(self):
        async def main():
            # warm up: allocator arenas, per-thread caches
            async with self.connect():
                pass
            base = self.rss_kib()
            conns = []
            try:
                for _ in range(self.N):
                    ws = await self.connect()
                    await ws.send("x")  # one message each way, then idle
                    await asyncio.wait_for(ws.recv(), 5)
                    conns.append(ws)
                await asyncio.sleep(0.3)
                return (self.rss_kib() - base) / self.N
            finally:
                await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

        per_conn = run(main(), timeout=120)
        print("\nidle TLS WebSocket connection: %.1f KiB of server RSS each (%d connections%s)"
              % (per_conn, self.N, ", ASan build" if ASAN else ""))
        if not ASAN:  # ASan's redzones and quarantine make RSS meaningless
            # measured: ~15 KiB with the buffers released, ~24 KiB without
            self.assertLess(per_conn, 19, "idle TLS connections hold their record buffers?")


if __name__ == "__main__":
    unittest.main()
