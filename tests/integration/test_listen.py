"""Listening: running out of file descriptors (EMFILE) must not spin the event loop,
and service must resume when descriptors free up; IPv6 and several --listen
addresses; an address already in use is refused at start-up with exit status 1;
--defer-accept: a connection is taken in with its first bytes, and a silent one about a
second later and then served (that it is then timed out and counted is
test_raw_protocol's and test_abuse's); a full backlog is served, 64 connections a turn."""

import os
import resource
import signal
import socket
import subprocess
import time
import unittest

from wshub_harness import (HOST, HttpConn, WshubServer, metrics, upgrade_request, wshub_bin)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / float(__import__("os").sysconf("SC_CLK_TCK"))


def try_upgrade(port, timeout):
    """Connects and sends an upgrade; returns (socket, got_101)."""
    s = socket.create_connection((HOST, port), timeout=2)
    s.sendall(upgrade_request(port))
    s.settimeout(timeout)
    try:
        data = s.recv(4096)
    except socket.timeout:
        return s, False
    return s, data.startswith(b"HTTP/1.1 101")


class EmfileTests(unittest.TestCase):
    def test_out_of_descriptors_backs_off_then_recovers(self):
        # The child inherits a low descriptor limit; ours is restored right after.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, hard))
        try:
            srv = WshubServer(threads=1)
            srv.start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        self.addCleanup(srv.close_files)
        socks = []
        try:
            accepted = 0
            for _ in range(45):  # more than the server can hold
                s, ok = try_upgrade(srv.port, 0.3)
                socks.append(s)
                accepted += ok
            self.assertGreater(accepted, 10)
            self.assertLess(accepted, 45, "the limit was never reached")
            # Descriptors exhausted, connections waiting in the backlog: the server
            # must sleep between retries, not spin on accept().
            before = cpu_seconds(srv.proc.pid)
            time.sleep(1.0)
            spent = cpu_seconds(srv.proc.pid) - before
            self.assertLess(spent, 0.3, "server burned %.2f s of CPU in 1 s at EMFILE" % spent)
            # Free descriptors: the waiting connections are taken in and served.
            for s in socks[:20]:
                s.close()
            waiting = socks[accepted:]
            deadline = time.monotonic() + 5
            served = 0
            for s in waiting:
                s.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    served += s.recv(4096).startswith(b"HTTP/1.1 101")
                except OSError:
                    pass
            self.assertGreater(served, 0, "no waiting connection was served after recovery")
            for s in socks[20:]:
                s.close()
            socks = []
            time.sleep(0.2)
            self.assertEqual(srv.healthz(), 200)
        finally:
            for s in socks:
                s.close()
            rc, _, killed = srv.stop()
            srv.check_stopped_cleanly(rc, killed)


class SignalTests(unittest.TestCase):
    def start_with_stuck_client(self):
        """A server plus a WebSocket client that will never answer the close, so that a
        graceful shutdown has to wait for its timeout."""
        srv = WshubServer(["--shutdown-timeout", "5s", "--close-timeout", "5s"], threads=1)
        srv.start()
        self.addCleanup(srv.close_files)
        s, ok = try_upgrade(srv.port, 2)
        self.assertTrue(ok)
        self.addCleanup(s.close)
        return srv

    def test_sigint_is_graceful(self):
        srv = WshubServer(threads=1).start()
        self.addCleanup(srv.close_files)
        srv.proc.send_signal(signal.SIGINT)
        self.assertEqual(srv.proc.wait(timeout=10), 0, srv.stderr())

    def test_second_signal_exits_at_once(self):
        srv = self.start_with_stuck_client()
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        self.assertIsNone(srv.proc.poll(), "exited before its shutdown timeout")
        srv.proc.send_signal(signal.SIGINT)
        rc = srv.proc.wait(timeout=3)
        self.assertLess(time.monotonic() - t0, 2.5, "second signal did not end it at once")
        self.assertEqual(rc, 1, srv.stderr())
        self.assertIn("second signal", srv.stderr())


class DeferAcceptTests(unittest.TestCase):
    """What the server holds is seen through wshub_connections_open, read on one
    kept-alive connection, which the count includes. (A connection per read would race
    the last one's close against the next read: the server may answer a request in
    the turn it accepts it, before it has read the previous connection's EOF.)"""

    def server(self, *args):
        srv = WshubServer(["--handshake-timeout", "5s"] + list(args), threads=1).start()
        self.addCleanup(srv.close_files)
        self.addCleanup(srv.stop)
        self.mconn = HttpConn(srv.port)
        self.addCleanup(self.mconn.close)
        return srv

    def open_now(self, srv):
        return metrics(srv.port, self.mconn)["wshub_connections_open"]

    def silent_and_speaking(self, srv):
        silent = socket.create_connection((HOST, srv.port), timeout=3)
        self.addCleanup(silent.close)
        speaking = socket.create_connection((HOST, srv.port), timeout=3)
        self.addCleanup(speaking.close)
        speaking.sendall(b"GET /echo HTTP/1.1\r\n")  # half a request: held, not answered
        return silent, speaking

    def test_a_silent_connection_waits_in_the_kernel(self):
        srv = self.server()
        silent, speaking = self.silent_and_speaking(srv)
        time.sleep(0.3)
        self.assertEqual(self.open_now(srv), 2, "the speaking one and /metrics only")
        # The kernel hands the silent one over at its next SYN-ACK (about 1 s): from
        # then on it is the server's, under the handshake timeout like any other.
        deadline = time.monotonic() + 5
        while self.open_now(srv) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.open_now(srv), 3, "the silent connection was never taken in")
        # ... and a request sent now is served as usual.
        silent.sendall(upgrade_request(srv.port))
        self.assertTrue(silent.recv(4096).startswith(b"HTTP/1.1 101"))

    def test_no_defer_accept_takes_every_connection_at_once(self):
        srv = self.server("--no-defer-accept")
        silent, _ = self.silent_and_speaking(srv)
        time.sleep(0.3)
        self.assertEqual(self.open_now(srv), 3)
        # Registered at accept and read at its first event: served as usual.
        silent.sendall(upgrade_request(srv.port))
        self.assertTrue(silent.recv(4096).startswith(b"HTTP/1.1 101"))


class AcceptBacklogTests(unittest.TestCase):
    """The listener takes at most 64 connections from the backlog per turn and comes
    back for the rest on the next one; edge-triggered, nothing else would wake it for
    them. A stopped server lets the backlog fill: on SIGCONT every connection in it
    must be served, with and without --defer-accept."""

    def backlog_served(self, *args):
        srv = WshubServer(list(args), threads=1).start()
        self.addCleanup(srv.stop)
        os.kill(srv.proc.pid, signal.SIGSTOP)
        socks = []
        try:
            for _ in range(300):  # a handshake each, completed by the kernel
                s = socket.create_connection((HOST, srv.port), timeout=10)
                self.addCleanup(s.close)
                s.sendall(upgrade_request(srv.port))
                socks.append(s)
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
        for i, s in enumerate(socks):
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                self.assertTrue(chunk, "connection %d closed unanswered" % i)
                head += chunk
            self.assertTrue(head.startswith(b"HTTP/1.1 101"), (i, head[:80]))

    def test_a_full_backlog_is_served(self):
        self.backlog_served()

    def test_a_full_backlog_is_served_without_defer_accept(self):
        self.backlog_served("--no-defer-accept")


class ListenTests(unittest.TestCase):
    def start(self, args, threads=2):
        proc = subprocess.Popen([wshub_bin(), "--threads", str(threads)] + args,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        return proc

    def read_ports(self, proc, n):
        ports, deadline = [], time.monotonic() + 10
        while len(ports) < n and time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if "msg=listening" in line:
                ports.append((line.split("addr=")[1].split()[0],
                              int(line.split("port=")[1].split()[0])))
        self.assertEqual(len(ports), n, "server did not log %d listen lines" % n)
        return ports

    def stop(self, proc):
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
        self.assertEqual(proc.returncode, 0, out)

    def get(self, family, addr, port):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect((addr, port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(4096)

    def test_ipv4_and_ipv6_together(self):
        proc = self.start(["--listen", "127.0.0.1:0", "--listen", "[::1]:0"])
        (a4, p4), (a6, p6) = self.read_ports(proc, 2)
        self.assertEqual((a4, a6), ("127.0.0.1", "::1"))
        self.assertTrue(self.get(socket.AF_INET, "127.0.0.1", p4).startswith(b"HTTP/1.1 200"))
        self.assertTrue(self.get(socket.AF_INET6, "::1", p6).startswith(b"HTTP/1.1 200"))
        self.stop(proc)

    def test_every_worker_accepts(self):
        # SO_REUSEPORT spreads connections over the workers; with 4 workers, 40
        # connections must all be served whichever worker gets them.
        proc = self.start(["--listen", "127.0.0.1:0"], threads=4)
        [(_, port)] = self.read_ports(proc, 1)
        for _ in range(40):
            self.assertTrue(self.get(socket.AF_INET, "127.0.0.1", port).startswith(b"HTTP/1.1 200"))
        self.stop(proc)

    def test_address_in_use_is_refused(self):
        with socket.socket() as held:
            held.bind((HOST, 0))
            held.listen()
            port = held.getsockname()[1]
            proc = self.start(["--listen", "%s:%d" % (HOST, port)])
            out = proc.communicate(timeout=10)[0].decode()
            self.assertEqual(proc.returncode, 1, out)
            self.assertIn("cannot listen", out)

    def test_address_in_use_by_reuseport_socket_is_refused(self):
        # Another SO_REUSEPORT listener (say, a second wshub) must not silently share
        # the port with us.
        with socket.socket() as held:
            held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            held.bind((HOST, 0))
            held.listen()
            port = held.getsockname()[1]
            proc = self.start(["--listen", "%s:%d" % (HOST, port)])
            out = proc.communicate(timeout=10)[0].decode()
            self.assertEqual(proc.returncode, 1, out)


if __name__ == "__main__":
    unittest.main()
