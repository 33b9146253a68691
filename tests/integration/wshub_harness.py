"""Shared helpers for wshub's Python integration tests.

* WshubServer: starts the binary named by $WSHUB_BIN on 127.0.0.1 with an ephemeral
  port (parsed from the `msg=listening ... port=N` log line), waits for /healthz, and
  stops it by PID (SIGTERM, bounded wait, SIGKILL fallback), reporting the exit code
  and the captured stderr (sanitizer reports included).
* ServerTestCase: a unittest.TestCase whose class owns one server (setUpClass /
  tearDownClass), checks after every test that the server is still alive, and can
  start extra per-test servers with their own options (start_server).
* RawClient: a WebSocket client over a plain socket. The handshake is done by hand and
  frames are built byte by byte, so tests can send anything (unmasked frames, reserved
  bits and opcodes, lying lengths, fragments, byte-by-byte writes) and observe exactly
  what the server sends back and when it closes the TCP connection.
* HTTP helpers: raw requests and a keep-alive connection that reads responses by
  Content-Length.

Every blocking operation has a timeout (sockets: at most 5 s), so no test can hang.
Only processes started here are ever signalled, and only by their PID.
"""

import asyncio
import base64
import errno
import hashlib
import json
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import tempfile
import time
import unittest

HOST = "127.0.0.1"
SOCK_TIMEOUT = 5.0  # upper bound for any single socket operation
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

_LISTEN_RE = re.compile(r"msg=listening\b.*?\bport=(\d+)")
_SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:|ThreadSanitizer")


def wshub_bin():
    path = os.environ.get("WSHUB_BIN")
    if not path:
        raise RuntimeError("WSHUB_BIN is not set: it must name the wshub binary to test")
    if not os.access(path, os.X_OK):
        raise RuntimeError("WSHUB_BIN=%r is not an executable file" % path)
    return path


# --------------------------------------------------------------------------- server


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class ServerError(AssertionError):
    pass


class WshubServer:
    """One wshub process. start() returns once /healthz answers 200."""

    def __init__(self, args=(), threads=2, start_timeout=15.0):
        self.args = [str(a) for a in args]
        self.threads = threads
        self.start_timeout = start_timeout
        self.proc = None
        self.host = HOST
        self.port = None
        self.returncode = None
        self._stderr_file = None

    # -- lifecycle

    def start(self):
        env = dict(os.environ)
        # ctest sets these; give manual runs the same exit codes (99 leak, 98 UB).
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=99")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=98")
        self.port_zero_refused = False
        self.port_zero_error = ""
        for attempt in range(5):
            port = 0 if attempt == 0 else _free_port()
            self._spawn(env, port)
            try:
                self.port = self._wait_port()
                self._wait_healthy()
                return self
            except ServerError:
                self.kill()
                err = self.stderr()
                if port == 0 and self.proc.returncode == 2 and ('"%s:0"' % HOST) in err:
                    # Port 0 refused by option parsing (a server bug, see
                    # test_raw_protocol.StartupTests): fall back to a free port so the
                    # other tests still run.
                    self.port_zero_refused = True
                    self.port_zero_error = err
                    continue
                if port != 0 and "cannot listen" in err:
                    continue  # lost the race for the free port
                raise
            except BaseException:
                self.kill()
                raise
        raise ServerError("wshub could not start; stderr:\n%s" % self.stderr())

    def _spawn(self, env, port):
        self.close_files()
        self._stderr_file = tempfile.TemporaryFile(prefix="wshub-stderr-")
        # WSHUB_WRAPPER runs the server under a tool (bench/soak: valgrind).
        wrapper = shlex.split(os.environ.get("WSHUB_WRAPPER", ""))
        cmd = wrapper + [wshub_bin(), "--listen", "%s:%d" % (HOST, port), "--threads", str(self.threads)]
        cmd += self.args
        self.cmd = cmd
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._stderr_file, stderr=self._stderr_file,
            env=env)

    def _wait_port(self):
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            m = _LISTEN_RE.search(self.stderr())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise ServerError("wshub exited with %s before listening; cmd=%s\nstderr:\n%s"
                                  % (self.proc.returncode, self.cmd, self.stderr()))
            time.sleep(0.02)
        raise ServerError("wshub did not log its port within %.0f s; stderr:\n%s"
                          % (self.start_timeout, self.stderr()))

    def _wait_healthy(self):
        deadline = time.monotonic() + self.start_timeout
        last = None
        while time.monotonic() < deadline:
            try:
                if self.healthz(timeout=1.0) == 200:
                    return
            except OSError as e:
                last = e
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise ServerError("wshub /healthz never answered 200 (last error %r); stderr:\n%s"
                          % (last, self.stderr()))

    def stderr(self):
        if self._stderr_file is None:
            return ""
        # pread, not seek+read: the server writes through the same open file
        # description, so moving its offset here (even to put it back) raced with the
        # server's writes and overwrote its log lines now and then.
        fd = self._stderr_file.fileno()
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        return data.decode("utf-8", "replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def healthz(self, timeout=2.0):
        status, _, _ = http_request(self.port, b"GET /healthz HTTP/1.1\r\nHost: %s:%d\r\n"
                                    b"Connection: close\r\n\r\n" % (HOST.encode(), self.port),
                                    timeout=timeout)
        return status

    def terminate(self):
        """Sends SIGTERM (graceful shutdown) to our own process, by PID."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout):
        """Waits for exit; returns the exit code or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.returncode = self.proc.returncode

    def stop(self, timeout=10.0):
        """SIGTERM, wait up to timeout, SIGKILL fallback. Returns (exit code, seconds,
        killed). The stderr file stays readable."""
        if self.proc is None:
            return None, 0.0, False
        t0 = time.monotonic()
        killed = False
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            if self.wait(timeout) is None:
                killed = True
                self.kill()
        self.returncode = self.proc.returncode
        return self.returncode, time.monotonic() - t0, killed

    def check_stopped_cleanly(self, rc=None, killed=False):
        """Raises ServerError unless the process exited 0 with no sanitizer report."""
        if rc is None:
            rc = self.proc.returncode
        err = self.stderr()
        problems = []
        if killed:
            problems.append("did not exit after SIGTERM: killed with SIGKILL")
        elif rc != 0:
            hint = {99: " (AddressSanitizer/LeakSanitizer report)", 98: " (UBSan report)",
                    1: " (startup failure or second signal)"}.get(rc, "")
            if rc is not None and rc < 0:
                hint = " (signal %d)" % -rc
            problems.append("exit code %s%s" % (rc, hint))
        if _SANITIZER_RE.search(err):
            problems.append("sanitizer report on stderr")
        if problems:
            raise ServerError("wshub %s: %s\ncmd=%s\nstderr:\n%s"
                              % (self.proc.pid, "; ".join(problems), self.cmd, err[-20000:]))

    def close_files(self):
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None


class ServerTestCase(unittest.TestCase):
    """One server per test class, started with SERVER_ARGS and THREADS."""

    SERVER_ARGS = ()
    THREADS = 2
    START_CLASS_SERVER = True
    server = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = None
        if cls.START_CLASS_SERVER:
            cls.server = WshubServer(cls.SERVER_ARGS, threads=cls.THREADS).start()

    @classmethod
    def tearDownClass(cls):
        srv, cls.server = cls.server, None
        try:
            if srv is not None:
                rc, _, killed = srv.stop()
                srv.check_stopped_cleanly(rc, killed)
        finally:
            if srv is not None:
                srv.close_files()
            super().tearDownClass()

    def setUp(self):
        super().setUp()
        if self.server is not None and not self.server.alive():
            self.fail("class server is not running (exit %s); stderr:\n%s"
                      % (self.server.proc.returncode, self.server.stderr()[-20000:]))

    def tearDown(self):
        srv = self.server
        if srv is not None and not srv.alive():
            self.fail("wshub died during the test (exit %s); stderr:\n%s"
                      % (srv.proc.returncode, srv.stderr()[-20000:]))
        super().tearDown()

    @property
    def port(self):
        return self.server.port

    def start_server(self, args=(), threads=2):
        """A per-test server, stopped (and checked to exit 0) at cleanup."""
        srv = WshubServer(args, threads=threads).start()
        self.addCleanup(self._stop_test_server, srv)
        return srv

    def _stop_test_server(self, srv):
        try:
            if srv.proc.returncode is None and srv.proc.poll() is None:
                rc, _, killed = srv.stop()
            else:
                rc, killed = srv.proc.returncode, False
            srv.check_stopped_cleanly(rc, killed)
        finally:
            srv.close_files()

    # -- assertions shared by the WebSocket test files

    def assertServerClose(self, client, code, timeout=3.0, msg=None):
        """The next close frame from the server carries `code` (None: empty payload),
        and the server then closes the TCP connection."""
        got = client.expect_close(timeout=timeout)
        self.assertEqual(got.code, code, msg or "close frame %r (frames before it: %r)"
                         % (got, client.skipped))
        self.assertTrue(client.wait_tcp_closed(timeout=timeout),
                        msg or "server sent close %s but did not close the TCP connection"
                        " within %.1f s" % (code, timeout))
        return got


# --------------------------------------------------------------------------- frames


def mask_bytes(data, key):
    if not data or key == b"\0\0\0\0":
        return bytes(data)
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, mask_key=None, length=None,
                length_form=None):
    """One frame's bytes. rsv: 3-bit value (4 = RSV1, 2 = RSV2, 1 = RSV3); length: the
    declared payload length (defaults to len(payload)), which may lie; length_form:
    force 7, 16 or 64-bit length encoding."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    m = 0x80 if mask else 0
    if length_form is None:
        length_form = 7 if n < 126 else 16 if n <= 0xFFFF else 64
    if length_form == 7:
        head = struct.pack("!BB", b0, m | n)
    elif length_form == 16:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if mask:
        key = os.urandom(4) if mask_key is None else mask_key
        return head + key + mask_bytes(payload, key)
    return head + bytes(payload)


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload")

    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode, self.masked, self.payload = fin, rsv, opcode, masked, payload

    @property
    def code(self):
        """Close code of a close frame (None when its payload is empty)."""
        if len(self.payload) >= 2:
            return struct.unpack("!H", self.payload[:2])[0]
        return None

    @property
    def reason(self):
        return self.payload[2:]

    def __repr__(self):
        p = self.payload if len(self.payload) <= 40 else self.payload[:40] + b"..."
        extra = " code=%s" % self.code if self.opcode == OP_CLOSE else ""
        return "Frame(op=%#x fin=%d rsv=%d masked=%s len=%d%s %r)" % (
            self.opcode, self.fin, self.rsv, self.masked, len(self.payload), extra, p)


class ConnectionClosed(Exception):
    """The TCP connection ended (EOF or reset) while a frame was expected."""


def make_key():
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def upgrade_request(port, path="/echo", key=None, version="13", method="GET",
                    http_version="HTTP/1.1", headers=None, omit=(), host=None):
    """An opening-handshake request; omit: lower-case names of default headers to leave
    out; headers: extra (name, value) pairs."""
    key = make_key() if key is None else key
    defaults = [
        ("Host", host if host is not None else "%s:%d" % (HOST, port)),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", version),
    ]
    lines = ["%s %s %s" % (method, path, http_version)]
    for name, value in defaults:
        if name.lower() not in omit:
            lines.append("%s: %s" % (name, value))
    for name, value in headers or ():
        lines.append("%s: %s" % (name, value))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --------------------------------------------------------------------------- HTTP


def _parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    hdrs = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs.setdefault(k.strip().lower(), v.strip())
    return status, hdrs


class HttpConn:
    """A raw HTTP/1.1 connection: send bytes, read responses framed by Content-Length."""

    def __init__(self, port, timeout=SOCK_TIMEOUT, host=HOST):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise ConnectionClosed("connection closed; have %r" % self.buf[:200])
        self.buf += chunk

    def read_response(self, head_only=False):
        """(status, headers dict with lower-case names, body)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status, hdrs = _parse_head(head)
        if head_only or status == 101:
            return status, hdrs, b""
        n = int(hdrs.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, hdrs, body

    def wait_closed(self, timeout=3.0):
        return wait_socket_closed(self.sock, timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def http_request(port, raw, timeout=SOCK_TIMEOUT):
    """Sends raw request bytes on a new connection and reads one response."""
    with HttpConn(port, timeout=timeout) as c:
        c.send(raw)
        return c.read_response()


def envelope(type_, payload=None, **extra):
    """A hub message as compact JSON text: {"type", "payload"?, ...extra}."""
    o = {"type": type_}
    if payload is not None:
        o["payload"] = payload
    o.update(extra)
    return json.dumps(o, separators=(",", ":"))


def metrics(port, conn=None):
    """The server's /metrics as {sample name with labels: value}: on a connection of its
    own, or on conn (an HttpConn kept alive between reads)."""
    req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
    if conn is None:
        status, _, body = http_request(port, req + b"Connection: close\r\n\r\n")
    else:
        conn.send(req + b"\r\n")
        status, _, body = conn.read_response()
    if status != 200:
        raise AssertionError("/metrics: %d" % status)
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def rss_bytes(pid):
    """Resident memory (VmRSS) of a process, in bytes."""
    with open("/proc/%d/status" % pid) as f:
        m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) * 1024


def wait_socket_closed(sock, timeout):
    """Reads (and discards) until the peer closes (EOF or reset). True if it did within
    timeout, False otherwise. Leaves the socket's timeout as it was."""
    old = sock.gettimeout()
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sock.settimeout(min(left, SOCK_TIMEOUT))
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
                return True
            except OSError as e:
                if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
                    return True
                raise
            if not chunk:
                return True
    finally:
        try:
            sock.settimeout(old)
        except OSError:
            pass


TCP_ESTABLISHED = 1
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8


def tcp_state(sock):
    """Linux tcpi_state of a socket, read without consuming any data."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return info[0]


def wait_peer_closed_noread(sock, timeout, poll=0.02):
    """Waits, without reading a byte (so the peer's output stays blocked), until the
    peer has sent FIN or RST. Returns the seconds waited, or None on timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if tcp_state(sock) != TCP_ESTABLISHED:
            return time.monotonic() - t0
        time.sleep(poll)
    return None


# --------------------------------------------------------------------------- WebSocket


class RawClient:
    """A WebSocket client over a plain socket, for protocol tests."""

    def __init__(self, port, path="/echo", headers=None, timeout=SOCK_TIMEOUT, rcvbuf=None,
                 handshake=True, extra=b"", host=HOST):
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self.skipped = []  # frames expect_close() went past
        self.response_headers = None
        if handshake:
            self.handshake(path, headers, extra)

    @classmethod
    def from_socket(cls, sock, buf=b"", port=None, timeout=SOCK_TIMEOUT):
        """Wraps a socket whose upgrade has already been answered with 101."""
        self = cls.__new__(cls)
        self.port = port
        self.sock = sock
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = buf
        self.eof = False
        self.skipped = []
        self.response_headers = None
        return self

    # -- opening handshake

    def handshake(self, path="/echo", headers=None, extra=b""):
        """Sends the upgrade request (followed by `extra` bytes in the same send) and
        checks the 101 answer."""
        key = make_key()
        self.sock.sendall(upgrade_request(self.port, path, key=key, headers=headers) + extra)
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(self.timeout):
                raise ConnectionClosed("closed during handshake: %r" % self.buf)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status, hdrs = _parse_head(head)
        self.response_headers = hdrs
        if status != 101:
            raise AssertionError("upgrade refused: %r" % head)
        if hdrs.get("sec-websocket-accept") != accept_for(key):
            raise AssertionError("bad Sec-WebSocket-Accept in %r" % head)
        if hdrs.get("upgrade", "").lower() != "websocket":
            raise AssertionError("no Upgrade: websocket in %r" % head)

    # -- sending

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(build_frame(opcode, payload, **kw))

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text.encode("utf-8") if isinstance(text, str) else text, **kw)

    def send_binary(self, data, **kw):
        self.send_frame(OP_BINARY, data, **kw)

    def send_close(self, code=None, reason=b"", **kw):
        self.send_frame(OP_CLOSE, close_payload(code, reason), **kw)

    # -- receiving

    def _fill(self, timeout):
        """Reads more bytes into buf. False on EOF/reset; socket.timeout on timeout."""
        if self.eof:
            return False
        self.sock.settimeout(max(0.001, min(timeout, SOCK_TIMEOUT)))
        try:
            chunk = self.sock.recv(262144)
        except (ConnectionResetError, ConnectionAbortedError):
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _need(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out waiting for %d bytes (have %d)" % (n, len(self.buf)))
            if not self._fill(left):
                raise ConnectionClosed("connection closed with %d of %d bytes" % (len(self.buf), n))

    def recv_frame(self, timeout=SOCK_TIMEOUT):
        """The next frame. Raises socket.timeout or ConnectionClosed."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._need(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
        elif n == 127:
            self._need(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
        masked = bool(b1 & 0x80)
        key = b""
        if masked:
            self._need(pos + 4, deadline)
            key = self.buf[pos:pos + 4]
            pos += 4
        self._need(pos + n, deadline)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        if masked:
            payload = mask_bytes(payload, key)
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, masked, payload)

    def recv_message(self, timeout=SOCK_TIMEOUT, skip_control=True):
        """(opcode, payload) of the next data message, joining fragments. Pings and
        pongs are skipped when skip_control; a close frame raises AssertionError."""
        deadline = time.monotonic() + timeout
        op, parts = None, []
        while True:
            f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            if f.opcode in (OP_PING, OP_PONG) and skip_control:
                continue
            if f.opcode == OP_CLOSE:
                raise AssertionError("expected a message, got %r" % f)
            if f.opcode & 8:
                raise AssertionError("expected a message, got %r" % f)
            if op is None:
                op = f.opcode
            parts.append(f.payload)
            if f.fin:
                return op, b"".join(parts)

    def expect_close(self, timeout=3.0):
        """Reads frames until a close frame and returns it; the frames before it are
        kept in self.skipped. Raises AssertionError on timeout or EOF."""
        deadline = time.monotonic() + timeout
        self.skipped = []
        while True:
            left = deadline - time.monotonic()
            try:
                f = self.recv_frame(max(0.001, left))
            except socket.timeout:
                raise AssertionError("no close frame within %.1f s (frames: %r)"
                                     % (timeout, self.skipped))
            except ConnectionClosed:
                raise AssertionError("TCP connection closed without a close frame (frames: %r)"
                                     % (self.skipped,))
            if f.opcode == OP_CLOSE:
                return f
            self.skipped.append(f)

    def wait_tcp_closed(self, timeout=3.0):
        """True once the server has closed the connection (EOF or reset); any bytes
        still arriving are discarded."""
        if self.eof:
            return True
        self.buf = b""
        closed = wait_socket_closed(self.sock, timeout)
        if closed:
            self.eof = True
        return closed

    def echo(self, opcode, payload, timeout=SOCK_TIMEOUT):
        self.send_frame(opcode, payload)
        return self.recv_message(timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- asyncio



class HubClient(RawClient):
    """A raw /ws client speaking the hub's JSON: `call` sends one request with an id
    and returns its reply."""

    def __init__(self, port, user, **kw):
        super().__init__(port, path="/ws?token=%s" % user, **kw)
        self.user = user
        self.n = 0

    def send_json(self, type_, payload=None, **extra):
        self.send_text(envelope(type_, payload, **extra))

    def recv_json(self, timeout=10.0):
        op, data = self.recv_message(timeout)
        assert op == OP_TEXT, "expected a text message, got opcode %d" % op
        return json.loads(data)

    def call(self, type_, payload=None):
        """The reply to one request (other messages skipped)."""
        self.n += 1
        rid = "r%d" % self.n
        self.send_json(type_, payload, id=rid)
        while True:
            m = self.recv_json()
            if m.get("id") == rid or m.get("payload", {}).get("id") == rid:  # acks: payload
                return m

def run(coro, timeout=30.0):
    """Runs a coroutine (websockets client code) on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def close_code(exc):
    """The close code the server sent, from a websockets ConnectionClosed exception."""
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is not None:
        return rcvd.code
    return exc.code
