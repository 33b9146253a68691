"""Liveness and deadlines of wshub WebSocket connections: pings and the read timeout,
the write deadline under backpressure, and the close timeout during a graceful
shutdown. Settings are shortened so each case takes a second or two.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_heartbeat
"""

import select
import socket
import struct
import threading
import time
import unittest

from wshub_harness import (HOST, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
                           ConnectionClosed, HttpConn, RawClient, ServerTestCase, build_frame,
                           metrics, tcp_state, wait_peer_closed_noread, wait_socket_closed,
                           TCP_ESTABLISHED)

KiB = 1024
MiB = 1024 * KiB


class HeartbeatTestCase(ServerTestCase):
    def client(self, port=None, **kw):
        c = RawClient(self.port if port is None else port, **kw)
        self.addCleanup(c.close)
        return c


class PingAndReadTimeoutTests(HeartbeatTestCase):
    SERVER_ARGS = ("--ping-interval", "200ms", "--read-timeout", "600ms")

    def test_silent_client_gets_pings_then_1001(self):
        c = self.client()
        t0 = time.monotonic()
        pings = []
        close = None
        while close is None:
            try:
                f = c.recv_frame(timeout=max(0.01, t0 + 3.0 - time.monotonic()))
            except socket.timeout:
                self.fail("no close within 3 s of silence; pings at %r" % pings)
            except ConnectionClosed:
                self.fail("TCP closed without a close frame; pings at %r" % pings)
            t = time.monotonic() - t0
            if f.opcode == OP_PING:
                pings.append(round(t, 3))
            elif f.opcode == OP_CLOSE:
                close = (t, f)
            else:
                self.fail("unexpected frame %r" % f)
        t_close, f = close
        self.assertEqual(f.code, 1001, f)
        self.assertGreaterEqual(len(pings), 2, "pings at %r, close at %.3f" % (pings, t_close))
        self.assertTrue(0.1 <= pings[0] <= 0.5, "first ping at %.3f s" % pings[0])
        for a, b in zip(pings, pings[1:]):
            # 200 ms apart; up to 500 ms allowed for a scheduler stall on a loaded
            # machine (the timer wheel itself is 8 ms coarse).
            self.assertTrue(0.1 <= b - a <= 0.5, "pings at %r" % pings)
        self.assertTrue(0.45 <= t_close <= 1.5,
                        "closed after %.3f s of silence (read timeout 600 ms)" % t_close)
        self.assertTrue(c.wait_tcp_closed(timeout=1.5), "TCP not closed after the 1001")

    def test_client_answering_pings_stays_connected(self):
        c = self.client()
        t0 = time.monotonic()
        pings = 0
        while time.monotonic() - t0 < 2.0:
            try:
                f = c.recv_frame(timeout=max(0.01, t0 + 2.0 - time.monotonic()))
            except socket.timeout:
                break
            except ConnectionClosed:
                self.fail("dropped after %.2f s although every ping was answered"
                          % (time.monotonic() - t0))
            self.assertNotEqual(f.opcode, OP_CLOSE,
                                "closed (%r) after %.2f s although every ping was answered"
                                % (f, time.monotonic() - t0))
            if f.opcode == OP_PING:
                pings += 1
                c.send_frame(OP_PONG, f.payload)
        self.assertGreaterEqual(pings, 5, "only %d pings in 2 s at a 200 ms interval" % pings)
        c.send_text("still here")
        self.assertEqual(c.recv_message(timeout=2), (OP_TEXT, b"still here"))

    def test_client_sending_messages_stays_connected(self):
        c = self.client()
        t0 = time.monotonic()
        # A fixed count, not a rate: on a loaded machine (the ASan build, tests in
        # parallel) fewer rounds fit in 2 s, and what matters is that 14 gaps of
        # 150 ms, over three read timeouts in all, never end the connection.
        for n in range(14):
            msg = ("tick %d" % n).encode()
            c.send_text(msg)  # never answers pings: any frame renews the read deadline
            try:
                self.assertEqual(c.recv_message(timeout=2), (OP_TEXT, msg))
            except ConnectionClosed:
                self.fail("dropped after %.2f s although a message went every 150 ms"
                          % (time.monotonic() - t0))
            time.sleep(0.15)
        self.assertGreater(time.monotonic() - t0, 3 * 0.6)

    def test_pings_are_server_frames(self):
        c = self.client()
        f = c.recv_frame(timeout=2)
        self.assertEqual(f.opcode, OP_PING)
        self.assertTrue(f.fin)
        self.assertFalse(f.masked)
        self.assertLessEqual(len(f.payload), 125)


class NoHeartbeatTests(HeartbeatTestCase):
    SERVER_ARGS = ("--ping-interval", "0", "--read-timeout", "0")

    def test_no_pings_and_no_timeout(self):
        c = self.client()
        with self.assertRaises(socket.timeout, msg="server sent a frame with pings disabled"):
            f = c.recv_frame(timeout=1.2)
            self.fail("unexpected frame %r with --ping-interval 0" % f)
        c.send_text("after a quiet second")
        self.assertEqual(c.recv_message(timeout=2), (OP_TEXT, b"after a quiet second"))


def flood(sock, frame, max_bytes, stall_s):
    """Sends frame after frame on a non-blocking socket until the peer stops taking
    data for stall_s (returns "stalled"), the connection fails ("closed"), or max_bytes
    went out ("limit"). Returns (outcome, bytes sent, offset into the current frame,
    monotonic time of the last progress)."""
    sock.setblocking(False)
    sent = off = 0
    t_last = time.monotonic()
    outcome = "limit"
    while sent < max_bytes:
        _, w, _ = select.select([], [sock], [], stall_s)
        if not w:
            outcome = "stalled"
            break
        try:
            n = sock.send(frame[off:])
        except BlockingIOError:
            if time.monotonic() - t_last > stall_s:
                outcome = "stalled"
                break
            continue
        except (BrokenPipeError, ConnectionResetError):
            outcome = "closed"
            break
        sent += n
        off = (off + n) % len(frame)
        t_last = time.monotonic()
    return outcome, sent, off, t_last


class BackpressureTests(HeartbeatTestCase):
    """A client that sends to /echo without reading is paused, not buffered without
    bound, and resumed once it reads (write timeout left long)."""
    SERVER_ARGS = ("--write-timeout", "10s")
    MSG = 256 * KiB

    def test_non_reading_client_is_paused_then_resumed(self):
        c = self.client(rcvbuf=32 * KiB)
        # Send numbered messages until the server stops taking them for a whole second.
        s = c.sock
        s.setblocking(False)
        count, off, sent = 0, 0, 0
        stalled = False
        data = b""
        while sent < 256 * MiB:
            if off == 0:
                data = build_frame(OP_BINARY, struct.pack("!Q", count) + bytes(self.MSG - 8),
                                   mask_key=b"\0\0\0\0")
            _, w, _ = select.select([], [s], [], 1.0)
            if not w:
                stalled = True
                break
            try:
                n = s.send(data[off:])
            except BlockingIOError:
                continue
            sent += n
            off += n
            if off == len(data):
                count += 1
                off = 0
        self.assertTrue(stalled, "server kept reading: %.0f MiB taken from a client that"
                        " reads nothing" % (sent / MiB))
        self.assertEqual(self.server.healthz(), 200, "server unhealthy while a client is paused")
        # Finish the partly sent message in the background, then read every echo.
        rest = data[off:] if off else b""
        total = count + (1 if off else 0)
        errors = []

        def finish():
            try:
                s.sendall(rest)
            except OSError as e:
                errors.append(e)

        s.settimeout(5)
        t = threading.Thread(target=finish, daemon=True)
        t.start()
        self.addCleanup(t.join, 5)
        for i in range(total):
            op, p = c.recv_message(timeout=5)
            self.assertEqual((op, len(p)), (OP_BINARY, self.MSG))
            self.assertEqual(struct.unpack("!Q", p[:8])[0], i, "echoes out of order")
        t.join(5)
        self.assertEqual(errors, [])
        c.send_text("resumed")
        self.assertEqual(c.recv_message(timeout=3), (OP_TEXT, b"resumed"))


class WriteTimeoutTests(HeartbeatTestCase):
    SERVER_ARGS = ("--write-timeout", "500ms")

    MSG = 256 * KiB
    MAX_FLOOD = 256 * MiB  # the server must push back long before this

    def test_client_that_never_reads_is_dropped(self):
        c = self.client(rcvbuf=32 * KiB)
        s = c.sock
        frame = build_frame(OP_BINARY, b"\x00" * self.MSG, mask_key=b"\0\0\0\0")
        t_first = time.monotonic()
        outcome, sent, _, t_last = flood(s, frame, self.MAX_FLOOD, 0.3)
        self.assertNotEqual(outcome, "limit", "server kept reading: %.0f MiB accepted from a"
                            " client that reads nothing" % (sent / MiB))
        if outcome == "stalled":
            # The server stopped reading this client but still serves others.
            self.assertEqual(self.server.healthz(), 200)
            # It must drop the connection once nothing could be written for 500 ms;
            # check without reading, so that its output stays blocked.
            waited = wait_peer_closed_noread(s, timeout=4.0)
            self.assertIsNotNone(waited, "connection still open %.1f s after the server"
                                 " stopped taking data (tcp state %d)"
                                 % (time.monotonic() - t_last, tcp_state(s)))
        t_closed = time.monotonic()
        self.assertGreaterEqual(t_closed - t_first, 0.45,
                                "dropped after %.3f s, before the 500 ms write timeout"
                                % (t_closed - t_first))
        self.assertLess(t_closed - t_last, 3.0)
        self.assertEqual(self.server.healthz(), 200)
        with RawClient(self.port) as c2:
            c2.send_text("next client")
            self.assertEqual(c2.recv_message(timeout=3), (OP_TEXT, b"next client"))

    def test_slow_reader_that_keeps_reading_is_not_dropped(self):
        # The server's output is blocked most of the time, but the client takes up to
        # 64 KiB every 100 ms (~640 KB/s): it accepts pending data far more often than
        # every 500 ms, so the write deadline must never fire.
        c = self.client(rcvbuf=32 * KiB)
        data = b"\x00" * (64 * KiB)
        frame = build_frame(OP_BINARY, data, mask_key=b"\0\0\0\0")
        count = 160  # 10 MiB: more than the socket buffers and the send queue hold
        errors = []

        def sender():
            try:
                for _ in range(count):
                    c.sock.sendall(frame)
            except OSError as e:
                errors.append(e)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        self.addCleanup(t.join, 5)
        expected = count * (len(data) + 10)  # each echo: 10-byte header + payload
        got = 0
        t0 = time.monotonic()
        while got < expected:
            try:
                chunk = c.sock.recv(64 * KiB)
            except socket.timeout:
                self.fail("echo stalled after %d of %d bytes" % (got, expected))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.fail("a client reading 64 KiB every 100 ms was dropped by the 500 ms"
                          " write timeout after %.2f s (%d of %d bytes received)"
                          % (time.monotonic() - t0, got, expected))
            got += len(chunk)
            if time.monotonic() - t0 < 2.0:
                time.sleep(0.1)
        t.join(5)
        self.assertEqual(errors, [])
        self.assertEqual(tcp_state(c.sock), TCP_ESTABLISHED)


class CloseTimeoutTests(HeartbeatTestCase):
    START_CLASS_SERVER = False
    ARGS = ("--close-timeout", "300ms", "--shutdown-timeout", "2s")

    def test_client_ignoring_close_is_dropped_and_server_exits(self):
        srv = self.start_server(self.ARGS)
        clients = [self.client(port=srv.port) for _ in range(3)]
        for c in clients:  # make sure each is fully set up
            c.send_text("hi")
            self.assertEqual(c.recv_message(timeout=2), (OP_TEXT, b"hi"))
        t0 = time.monotonic()
        srv.terminate()
        for c in clients:
            f = c.expect_close(timeout=2.0)
            self.assertEqual(f.code, 1001, f)
        # Never answer the close: the server must drop us after its close timeout.
        for i, c in enumerate(clients):
            self.assertTrue(c.wait_tcp_closed(timeout=2.0),
                            "client %d not dropped within 2 s of SIGTERM" % i)
        t_dropped = time.monotonic() - t0
        self.assertGreaterEqual(t_dropped, 0.25, "dropped after %.3f s, before the 300 ms"
                                " close timeout" % t_dropped)
        self.assertLess(t_dropped, 1.2, "dropped after %.3f s (close timeout 300 ms)" % t_dropped)
        rc = srv.wait(timeout=3.0)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, "exit code %s; stderr:\n%s" % (rc, srv.stderr()[-5000:]))
        self.assertLess(elapsed, 1.5, "server took %.2f s to exit (close timeout 300 ms,"
                        " shutdown timeout 2 s)" % elapsed)

    def test_client_answering_close_lets_server_exit_quickly(self):
        srv = self.start_server(self.ARGS)
        c = self.client(port=srv.port)
        t0 = time.monotonic()
        srv.terminate()
        f = c.expect_close(timeout=2.0)
        self.assertEqual(f.code, 1001)
        c.send_close(1001)
        self.assertTrue(c.wait_tcp_closed(timeout=1.0))
        rc = srv.wait(timeout=3.0)
        self.assertEqual(rc, 0, srv.stderr()[-5000:])
        self.assertLess(time.monotonic() - t0, 1.5)

    def test_shutdown_with_idle_keepalive_http_and_mid_message_client(self):
        srv = self.start_server(self.ARGS)
        h = HttpConn(srv.port)
        self.addCleanup(h.close)
        h.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % srv.port)
        self.assertEqual(h.read_response()[0], 200)  # now idle, kept alive
        c = self.client(port=srv.port)
        c.send_frame(OP_TEXT, b"half a message", fin=False)
        time.sleep(0.05)
        t0 = time.monotonic()
        srv.terminate()
        self.assertTrue(h.wait_closed(timeout=2.0), "idle keep-alive connection left open")
        f = c.expect_close(timeout=2.0)
        self.assertEqual(f.code, 1001, f)
        c.send_close(1001)
        self.assertTrue(c.wait_tcp_closed(timeout=1.0))
        rc = srv.wait(timeout=3.0)
        self.assertEqual(rc, 0, srv.stderr()[-5000:])
        self.assertLess(time.monotonic() - t0, 1.5)

    def held(self, srv, mconn, n):
        """Waits until the server holds n connections (mconn, kept alive, included)."""
        deadline = time.monotonic() + 3.0
        while metrics(srv.port, mconn)["wshub_connections_open"] < n:
            self.assertLess(time.monotonic(), deadline, "the server never took the connection")
            time.sleep(0.02)

    def test_shutdown_closes_a_connection_that_has_asked_nothing(self):
        # A browser's preconnect: accepted (--no-defer-accept hands it over at once) and
        # silent. It has asked nothing, so the shutdown must not wait for it.
        srv = self.start_server(("--no-defer-accept", "--shutdown-timeout", "10s"), threads=1)
        m = HttpConn(srv.port)
        self.addCleanup(m.close)
        silent = socket.create_connection((HOST, srv.port), timeout=3)
        self.addCleanup(silent.close)
        self.held(srv, m, 2)
        t0 = time.monotonic()
        srv.terminate()
        self.assertTrue(wait_socket_closed(silent, 2.0), "the silent connection was kept")
        self.assertTrue(m.wait_closed(timeout=2.0), "the idle keep-alive connection was kept")
        rc = srv.wait(timeout=5.0)
        self.assertEqual(rc, 0, srv.stderr()[-5000:])
        self.assertLess(time.monotonic() - t0, 2.0, "the server waited for a connection that "
                        "asked nothing (shutdown timeout 10 s)")

    def test_shutdown_answers_a_request_under_way(self):
        # Half a request when the shutdown begins: the rest is waited for and answered
        # (Connection: close), then the connection closes. Under --defer-accept (the
        # default) the half is read in the turn that accepts the connection, the turn
        # that counts it, so once it is counted the server has it.
        srv = self.start_server(("--shutdown-timeout", "10s"), threads=1)
        m = HttpConn(srv.port)
        self.addCleanup(m.close)
        h = HttpConn(srv.port)
        self.addCleanup(h.close)
        h.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        self.held(srv, m, 2)
        srv.terminate()
        # m is closed by the same step that decides h's fate (one worker): from here on
        # the shutdown is under way, and h's request is still not complete.
        self.assertTrue(m.wait_closed(timeout=2.0), "the idle keep-alive connection was kept")
        h.send(b"\r\n")
        status, hdrs, _ = h.read_response()
        self.assertIn(status, (200, 503))
        self.assertEqual(hdrs.get("connection", "").lower(), "close", hdrs)
        self.assertTrue(h.wait_closed(timeout=2.0))
        rc = srv.wait(timeout=5.0)
        self.assertEqual(rc, 0, srv.stderr()[-5000:])


if __name__ == "__main__":
    unittest.main()
