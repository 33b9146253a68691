"""Abuse, bounded: every attack in issue 5's list, many connections at once. Each test
checks three things: the attacker gets the documented answer (an HTTP status, a close
code, TCP backpressure), the matching /metrics counter moves by the right amount, and
the server's resident memory stays under a stated bound while the attack is live. A
normal echo round-trip must work afterwards.

Memory bounds are growth over the RSS measured after start-up. The ASan build pads
every allocation and keeps freed memory in a quarantine, so its bound is looser; the
plain build's bound is the one that documents the design.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_abuse
"""

import os
import selectors
import socket
import struct
import time
import unittest

from wshub_harness import (metrics, rss_bytes, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, OP_CONT, HOST,
                           RawClient, ServerTestCase, build_frame,
                           http_request, make_key, upgrade_request)

KiB = 1024
MiB = 1024 * KiB
ASAN = os.environ.get("WSHUB_VARIANT", "") == "asan"
# Growth of the server's RSS allowed while an attack is live.
RSS_BOUND = (64 if ASAN else 16) * MiB
if ASAN:
    # ASan keeps up to 256 MiB of freed memory in quarantine by default: that is
    # ASan's memory, not the server's. A small quarantine keeps the bound meaningful.
    os.environ["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=16"






def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))


def connect_many(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection((HOST, port), timeout=5)
        socks.append(s)
    return socks


def upgraded_many(port, n, path="/echo"):
    """n sockets past a 101 answer (blocking, 5 s timeout each)."""
    out = []
    for _ in range(n):
        s = socket.create_connection((HOST, port), timeout=5)
        s.sendall(upgrade_request(port, path, key=make_key()))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise AssertionError("closed during the upgrade")
            buf += chunk
        if not buf.startswith(b"HTTP/1.1 101"):
            raise AssertionError("upgrade refused: %r" % buf[:200])
        out.append(s)
    return out


def read_until_closed(socks, timeout):
    """Reads every socket until EOF/reset. Returns {sock: bytes read}; raises if some
    socket is still open at the deadline."""
    sel = selectors.DefaultSelector()
    got = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        got[s] = b""
    deadline = time.monotonic() + timeout
    open_ = set(socks)
    while open_ and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if chunk:
                got[s] += chunk
                continue
            sel.unregister(s)
            open_.discard(s)
    sel.close()
    if open_:
        raise AssertionError("%d of %d connections still open after %.1f s"
                             % (len(open_), len(socks), timeout))
    return got


def first_close_code(data):
    """The close code in the first close frame of a server byte stream (unmasked
    frames), or None when there is none."""
    pos = 0
    while pos + 2 <= len(data):
        b0, b1 = data[pos], data[pos + 1]
        n, p = b1 & 0x7F, pos + 2
        if n == 126:
            n, p = struct.unpack("!H", data[p:p + 2])[0], p + 2
        elif n == 127:
            n, p = struct.unpack("!Q", data[p:p + 8])[0], p + 8
        if p + n > len(data):
            return None
        if b0 & 0x0F == OP_CLOSE:
            return struct.unpack("!H", data[p:p + 2])[0] if n >= 2 else 1005
        pos = p + n
    return None


class Pusher:
    """Writes a repeating unit to a non-blocking socket without ever splitting the
    stream: a partial send keeps its remainder for the next call."""

    def __init__(self, sock, unit):
        self.sock, self.unit, self.pending, self.sent = sock, unit, b"", 0
        sock.setblocking(False)

    def push(self):
        """True if bytes went out, False if the socket is full. Raises OSError once
        the server has closed the connection."""
        if not self.pending:
            self.pending = self.unit
        try:
            n = self.sock.send(self.pending)
        except BlockingIOError:
            return False
        self.pending = self.pending[n:]
        self.sent += n
        return True


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


class AbuseTestCase(ServerTestCase):
    START_CLASS_SERVER = False

    def attack_server(self, *args):
        srv = self.start_server(("--stream", "") + args)
        self.base_rss = rss_bytes(srv.proc.pid)
        self.peak = 0
        return srv

    def sample_rss(self, srv):
        self.peak = max(self.peak, rss_bytes(srv.proc.pid) - self.base_rss)

    def assertBounded(self):
        if os.environ.get("WSHUB_ABUSE_VERBOSE"):
            print("\n  %s: peak RSS growth %.1f MiB" % (self.id().rsplit(".", 1)[-1], self.peak / MiB))
        self.assertLess(self.peak, RSS_BOUND, "server RSS grew by %.1f MiB (bound %.0f MiB)"
                        % (self.peak / MiB, RSS_BOUND / MiB))

    def assertHealthy(self, srv):
        c = RawClient(srv.port)
        try:
            c.send_text("still here")
            self.assertEqual(c.recv_message(), (OP_TEXT, b"still here"))
        finally:
            c.close()

    def wait_conns_open(self, srv, n, timeout=10.0):
        wait_for(lambda: metrics(srv.port)["wshub_connections_open"] <= n, timeout,
                 "open connections to fall to %d" % n)


class HandshakeAbuseTests(AbuseTestCase):
    N = 300

    def test_slowloris_handshakes_get_408_and_are_counted(self):
        srv = self.attack_server("--handshake-timeout", "1s")
        socks = connect_many(srv.port, self.N)
        self.addCleanup(close_all, socks)
        head = b"GET /echo HTTP/1.1\r\nHost: x\r\n"
        t0 = time.monotonic()
        for s in socks:
            s.sendall(head)
        # Dribble one header byte per connection every 200 ms: the request never ends.
        while time.monotonic() - t0 < 0.6:
            for s in socks:
                try:
                    s.sendall(b"X")
                except OSError:
                    pass
            self.sample_rss(srv)
            time.sleep(0.2)
        got = read_until_closed(socks, 10.0)
        self.assertLess(time.monotonic() - t0, 8.0)
        for s, data in got.items():
            self.assertTrue(data.startswith(b"HTTP/1.1 408"), "got %r" % data[:80])
        m = metrics(srv.port)
        self.assertEqual(m['wshub_websocket_timeouts_total{kind="handshake"}'], self.N)
        self.assertBounded()
        self.assertHealthy(srv)

    def test_silent_connections_are_dropped_after_the_handshake_timeout(self):
        srv = self.attack_server("--handshake-timeout", "1s")
        socks = connect_many(srv.port, self.N)
        self.addCleanup(close_all, socks)
        self.sample_rss(srv)
        got = read_until_closed(socks, 10.0)
        self.assertEqual(len(got), self.N)
        self.assertEqual(metrics(srv.port)['wshub_websocket_timeouts_total{kind="handshake"}'],
                         self.N)
        self.wait_conns_open(srv, 1)  # the /metrics request itself
        self.assertBounded()
        self.assertHealthy(srv)

    def test_header_floods_get_431_and_are_counted(self):
        srv = self.attack_server("--max-header-size", "8KiB")
        n = 100
        socks = connect_many(srv.port, n)
        self.addCleanup(close_all, socks)
        line = b"X-Flood: " + b"a" * 1000 + b"\r\n"
        for s in socks:
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
            try:
                for _ in range(64):  # 64 KiB of headers, eight times the limit
                    s.sendall(line)
            except OSError:
                pass  # the server answered and closed before we finished: expected
            self.sample_rss(srv)
        got = read_until_closed(socks, 10.0)
        for data in got.values():
            self.assertTrue(data.startswith(b"HTTP/1.1 431"), "got %r" % data[:80])
        self.assertGreaterEqual(metrics(srv.port)["wshub_http_bad_requests_total"], n)
        self.assertBounded()
        self.assertHealthy(srv)

    def test_connection_flood_from_one_address_gets_429(self):
        limit, n = 50, 400
        srv = self.attack_server("--max-connections-per-ip", str(limit))
        ok = upgraded_many(srv.port, limit, "/ws?user_id=ok")
        self.addCleanup(close_all, ok)
        refused = 0
        for _ in range(n - limit):
            status, _, _ = http_request(srv.port, upgrade_request(srv.port, "/ws?user_id=flood"))
            self.assertEqual(status, 429)
            refused += 1
        self.sample_rss(srv)
        self.assertEqual(
            metrics(srv.port)['wshub_websocket_handshake_failures_total{reason="too_many_connections"}'],
            refused)
        close_all(ok)
        # Once the flood's connections are gone, the address may connect again.
        wait_for(lambda: metrics(srv.port)["wshub_websocket_active_connections"] == 0, 10,
                 "the flood's connections to close")
        self.assertBounded()
        self.assertHealthy(srv)


class FrameAbuseTests(AbuseTestCase):
    def test_slowly_dribbled_frames_are_failed_1008_and_counted(self):
        n = 200
        srv = self.attack_server("--message-timeout", "1s")
        socks = upgraded_many(srv.port, n)
        self.addCleanup(close_all, socks)
        # Each declares a 1000-byte masked frame and sends its payload a byte at a time,
        # which renews the read deadline on every byte.
        hdr = build_frame(OP_TEXT, b"a" * 1000, mask_key=b"\0\0\0\0")[:8]
        t0 = time.monotonic()
        for s in socks:
            s.sendall(hdr)
        closed = set()
        while time.monotonic() - t0 < 4.0 and len(closed) < n:
            for s in socks:
                if s in closed:
                    continue
                try:
                    s.sendall(b"a")
                except OSError:
                    closed.add(s)
            self.sample_rss(srv)
            time.sleep(0.1)
        got = read_until_closed(socks, 10.0)
        for data in got.values():
            self.assertEqual(first_close_code(data), 1008)
        self.assertEqual(metrics(srv.port)['wshub_websocket_timeouts_total{kind="message"}'], n)
        self.assertBounded()
        self.assertHealthy(srv)

    def test_fragmented_message_never_finished_is_failed_1008(self):
        srv = self.attack_server("--message-timeout", "1s")
        c = RawClient(srv.port)
        self.addCleanup(c.close)
        c.send_frame(OP_TEXT, b"part one", fin=False)
        for _ in range(12):  # complete frames, but the message never ends
            c.send_frame(OP_PING, b"keepalive")
            time.sleep(0.1)
        self.assertEqual(c.expect_close(timeout=5.0).code, 1008)
        self.assertEqual(metrics(srv.port)['wshub_websocket_timeouts_total{kind="message"}'], 1)

    def test_slow_message_within_the_timeout_is_echoed(self):
        srv = self.attack_server("--message-timeout", "3s")
        c = RawClient(srv.port)
        self.addCleanup(c.close)
        frame = build_frame(OP_TEXT, b"slow but in time")
        for i in range(len(frame)):
            c.send_raw(frame[i:i + 1])
            time.sleep(0.02)
        self.assertEqual(c.recv_message(), (OP_TEXT, b"slow but in time"))
        self.assertEqual(metrics(srv.port)['wshub_websocket_timeouts_total{kind="message"}'], 0)

    def test_frames_declaring_2_63_bytes_get_1009_and_allocate_nothing(self):
        n = 200
        srv = self.attack_server()
        socks = upgraded_many(srv.port, n)
        self.addCleanup(close_all, socks)
        hdr = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", (1 << 63) - 1) + b"\1\2\3\4"
        for s in socks:
            s.sendall(hdr + b"x" * 1000)
        self.sample_rss(srv)
        got = read_until_closed(socks, 10.0)
        self.sample_rss(srv)
        for data in got.values():
            self.assertEqual(first_close_code(data), 1009)
        self.assertEqual(metrics(srv.port)['wshub_websocket_closes_sent_total{code="1009"}'], n)
        self.assertBounded()
        self.assertHealthy(srv)

    def test_thousands_of_one_byte_fragments_are_reassembled(self):
        srv = self.attack_server()
        n, size = 8, 20000
        clients = [RawClient(srv.port) for _ in range(n)]
        for c in clients:
            self.addCleanup(c.close)
        payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        frames = [build_frame(OP_BINARY if i == 0 else OP_CONT, payload[i:i + 1],
                              fin=(i == size - 1)) for i in range(size)]
        wire = b"".join(frames)
        for c in clients:
            c.send_raw(wire)
            self.sample_rss(srv)
        for c in clients:
            self.assertEqual(c.recv_message(timeout=10), (OP_BINARY, payload))
        self.assertGreaterEqual(metrics(srv.port)["wshub_websocket_messages_received_total"], n)
        self.assertBounded()

    def test_one_byte_fragments_over_the_limit_get_1009(self):
        srv = self.attack_server("--max-message-size", "4KiB")
        c = RawClient(srv.port)
        self.addCleanup(c.close)
        wire = b"".join(build_frame(OP_BINARY if i == 0 else OP_CONT, b"x", fin=False)
                        for i in range(4097))
        try:
            c.send_raw(wire)
        except OSError:
            pass
        self.assertEqual(c.expect_close(timeout=5.0).code, 1009)
        self.assertEqual(metrics(srv.port)['wshub_websocket_closes_sent_total{code="1009"}'], 1)


class FloodTests(AbuseTestCase):
    def test_ping_flood_from_a_reader_gets_every_pong(self):
        srv = self.attack_server()
        c = RawClient(srv.port)
        self.addCleanup(c.close)
        n, batch = 20000, 500
        ping = build_frame(OP_PING, b"p" * 125)
        pongs = 0
        for _ in range(n // batch):
            c.send_raw(ping * batch)
            while pongs < (_ + 1) * batch:
                f = c.recv_frame(timeout=5)
                self.assertEqual(f.opcode, OP_PONG)
                self.assertEqual(f.payload, b"p" * 125)
                pongs += 1
            self.sample_rss(srv)
        self.assertEqual(metrics(srv.port)["wshub_websocket_pings_received_total"], n)
        self.assertBounded()

    def test_ping_flood_from_a_non_reader_is_throttled_then_closed(self):
        srv = self.attack_server("--write-timeout", "1s", "--send-queue-bytes", "64KiB")
        c = RawClient(srv.port, rcvbuf=4 * KiB)
        self.addCleanup(c.close)
        p = Pusher(c.sock, build_frame(OP_PING, b"p" * 125) * 64)
        t0 = time.monotonic()
        stalled_at = None
        while time.monotonic() - t0 < 8.0:
            try:
                if p.push():
                    stalled_at = None
                else:
                    # The server stopped reading us: backpressure, as intended.
                    stalled_at = stalled_at or time.monotonic()
                    time.sleep(0.05)
            except OSError:
                break  # closed by the write deadline
            self.sample_rss(srv)
        sent = p.sent
        self.assertIsNotNone(stalled_at, "the server never stopped reading the flood")
        wait_for(lambda: metrics(srv.port)['wshub_websocket_timeouts_total{kind="write"}'] == 1,
                 10, "the write deadline to close the non-reader")
        m = metrics(srv.port)
        self.assertEqual(m["wshub_websocket_protocol_errors_total"], 0)
        self.assertGreater(m["wshub_websocket_pings_received_total"], 0)
        self.assertGreater(m["wshub_websocket_ping_flood_pauses_total"], 0)
        self.assertLess(m["wshub_websocket_pings_received_total"], sent // 131 + 1)
        self.assertBounded()
        self.assertHealthy(srv)

    def test_never_reading_echo_clients_are_paused_and_closed(self):
        n = 50
        srv = self.attack_server("--write-timeout", "1s", "--send-queue-bytes", "64KiB")
        clients = [RawClient(srv.port, rcvbuf=4 * KiB) for _ in range(n)]
        frame = build_frame(OP_BINARY, b"b" * 16 * KiB)
        live = set()
        for c in clients:
            self.addCleanup(c.close)
            live.add(Pusher(c.sock, frame))
        t0 = time.monotonic()
        while live and time.monotonic() - t0 < 10.0:
            for p in list(live):
                try:
                    p.push()
                except OSError:
                    live.discard(p)
            self.sample_rss(srv)
            if metrics(srv.port)['wshub_websocket_timeouts_total{kind="write"}'] == n:
                break
            time.sleep(0.02)
        wait_for(lambda: metrics(srv.port)['wshub_websocket_timeouts_total{kind="write"}'] == n,
                 10, "every non-reader to be closed by the write deadline")
        self.assertEqual(metrics(srv.port)["wshub_websocket_protocol_errors_total"], 0)
        self.assertBounded()
        self.assertHealthy(srv)


if __name__ == "__main__":
    unittest.main()
