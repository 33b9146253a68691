"""Helpers for the multi-node tests (issue 12): wshub nodes joined through Redis.

Builds on wshub_harness.py:

* RedisServer: Debian's `redis-server` on a free loopback port (`--save '' --appendonly
  no`, or an append-only file for the tests that restart it with its data), stopped by
  PID; restartable on the same port; a tiny RESP client for INFO, PUBSUB NUMSUB, SCAN.
* Haproxy: Debian's `haproxy` in front of the nodes with a generated configuration:
  WebSocket-friendly timeouts (`timeout tunnel`), round robin, a health check on
  /readyz every 200 ms, and one test-only rule: a `?node=nX` query parameter sends the
  connection to node X while X is up (so a test knows which node its client is on
  before killing that node); when X is down haproxy ignores the rule and balances.
* Cluster: R Redis instances, N wshub nodes started with `--redis` for each, the API
  key, `--presence-timeout`, and optionally haproxy; stop() stops everything by PID and
  checks that every node it did not kill on purpose exited 0 with no sanitizer report.
* Client: an asyncio /ws client (Python `websockets`) that keeps every message it
  receives, in order, and helpers for requests, acks and room/user frames.
* http_json, wait_until: HTTP API calls and bounded polling (registration in Redis is
  asynchronous: tests poll for the expected state with a deadline; they never sleep a
  fixed time and assert afterwards).

Every process started here is also recorded for an atexit hook, so an interrupted
test run leaves no redis-server, haproxy or wshub behind. Only those PIDs are ever
signalled.
"""

import asyncio
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import websockets

from wshub_harness import HOST, ServerError, WshubServer, _free_port, metrics

API_KEY = "cluster-key"
STEP = 20.0  # seconds any one expected message or state may take (ASan, loaded machine)
ASAN = os.environ.get("WSHUB_VARIANT") == "asan"

_LIVE = {}  # pid -> Popen of everything started here, for the atexit hook


def _track(proc):
    _LIVE[proc.pid] = proc
    return proc


def _untrack(proc):
    if proc is not None:
        _LIVE.pop(proc.pid, None)


@atexit.register
def _kill_leftovers():
    for pid, proc in list(_LIVE.items()):
        if proc.poll() is None:
            try:
                os.kill(pid, signal.SIGKILL)
                proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
    _LIVE.clear()


def find_program(name):
    """The path of a Debian program (haproxy lives in /usr/sbin, often not on PATH)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not path:
        raise RuntimeError("%s not found: run scripts/setup.sh test (make test does)" % name)
    return path


def wait_until(fn, timeout=STEP, what="condition", poll=0.05):
    """Polls fn() until it returns a true value (returned), or fails after `timeout`
    seconds with the last value seen. Bounds a wait; never a timing assertion."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("%s: not reached within %.0f s (last: %r)" % (what, timeout, last))
        time.sleep(poll)


async def async_wait_until(fn, timeout=STEP, what="condition", poll=0.05):
    """wait_until for asyncio code; fn may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        last = fn()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("%s: not reached within %.0f s (last: %r)" % (what, timeout, last))
        await asyncio.sleep(poll)


# --------------------------------------------------------------------------- HTTP


def http_json(port, method, path, body=None, key=None, timeout=STEP):
    """(status, decoded JSON body or None). Never raises on an HTTP error status."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request("http://%s:%d%s" % (HOST, port, path), data=data, method=method)
    if key:
        req.add_header("X-API-Key", key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw = e.read()
        status = e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def http_status(port, path, timeout=5.0):
    try:
        return http_json(port, "GET", path, timeout=timeout)[0]
    except OSError:
        return None


def publish(port, body, key=API_KEY):
    return http_json(port, "POST", "/api/publish", body, key=key)


def listing(port, what):
    """A cluster listing from one node, reduced to what must be the same on every
    node: 'online' -> sorted user ids; 'rooms' -> sorted (room, members) pairs;
    'members:<room>' -> sorted user ids (None when the room has no members: 404)."""
    if what == "online":
        st, b = http_json(port, "GET", "/api/online?limit=1000")
        assert st == 200, (st, b)
        return sorted(b["online_users"])
    if what == "rooms":
        st, b = http_json(port, "GET", "/api/rooms?limit=1000")
        assert st == 200, (st, b)
        return sorted((r["room_id"], r["members"]) for r in b["rooms"])
    if what.startswith("members:"):
        room = what.split(":", 1)[1]
        st, b = http_json(port, "GET", "/api/rooms/%s/members?limit=1000" % urllib.request.quote(room, safe=""))
        if st == 404:
            return None
        assert st == 200, (st, b)
        return sorted(b["members"])
    raise ValueError(what)


def node_metric(port, name):
    """The sum of a metric's samples (all label sets) on one node. A metric the node
    does not export at all fails the test (0 would hide it)."""
    total, found = 0.0, False
    for k, v in metrics(port).items():
        if k == name or k.startswith(name + "{"):
            total += v
            found = True
    if not found:
        raise AssertionError("the node on port %d exports no metric %s" % (port, name))
    return total


# --------------------------------------------------------------------------- Redis


class RedisError(Exception):
    pass


class Resp:
    """A blocking RESP2 client for test checks (INFO, PUBSUB, SCAN, FLUSHALL)."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def command(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError("bad RESP reply %r" % line)


class RedisServer:
    """One redis-server on 127.0.0.1, on a free port (kept across restart())."""

    def __init__(self, persist=False):
        self.persist = persist  # append-only file, fsync always: a restart keeps the data
        self.port = None
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="wshub-redis-")
        self._log = None

    @property
    def url(self):
        return "redis://%s:%d" % (HOST, self.port)

    def start(self, timeout=10.0):
        fixed = self.port is not None
        for _ in range(1 if fixed else 5):
            if not fixed:
                self.port = _free_port()
            self._spawn()
            try:
                self._wait_ready(timeout)
                return self
            except ServerError:
                self.kill()
                if fixed or "Address already in use" not in self.log():
                    raise
        raise ServerError("redis-server could not start:\n%s" % self.log())

    def _spawn(self):
        if self._log is not None:
            self._log.close()
        self._log = tempfile.TemporaryFile(prefix="wshub-redis-log-")
        cmd = [find_program("redis-server"), "--port", str(self.port), "--bind", HOST,
               "--save", "", "--dir", self.dir, "--loglevel", "warning"]
        if self.persist:
            cmd += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            cmd += ["--appendonly", "no"]
        self.proc = _track(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                            stderr=self._log))

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError("redis-server exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                c = Resp(self.port, timeout=1.0)
                try:
                    if c.command("PING") == "PONG":
                        return
                finally:
                    c.close()
            except (OSError, RedisError, ConnectionError):
                pass
            time.sleep(0.02)
        raise ServerError("redis-server on port %d did not answer PING:\n%s" % (self.port, self.log()))

    def log(self):
        if self._log is None:
            return ""
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL by PID (Redis "dies"); the port is free again once this returns."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        _untrack(self.proc)

    def restart(self):
        """Starts again on the same port (with the same data directory)."""
        self.kill()
        return self.start()

    def stop(self):
        self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- checks

    def cmd(self, *args):
        c = Resp(self.port)
        try:
            return c.command(*args)
        finally:
            c.close()

    def info(self, section):
        text = self.cmd("INFO", section).decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def command_calls(self, name):
        """`calls` of one command in INFO commandstats (0 when never called)."""
        v = self.info("commandstats").get("cmdstat_" + name.lower())
        if not v:
            return 0
        return int(re.search(r"calls=(\d+)", v).group(1))

    def monitor(self):
        """A MONITOR session (Monitor): every command Redis executes from now on."""
        return Monitor(self.port)

    def numsub(self, channel):
        r = self.cmd("PUBSUB", "NUMSUB", channel)
        return int(r[1])

    def keys(self, pattern):
        """Every key matching pattern, with SCAN (never KEYS on a shared server)."""
        out, cursor = set(), b"0"
        while True:
            cursor, batch = self.cmd("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
            out.update(k.decode() for k in batch)
            if cursor == b"0":
                return out


_MONITOR_RE = re.compile(r'^\+?[0-9.]+ \[(\d+) ([^\]]+)\] (.*)$')
_ARG_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')


class Monitor:
    """Redis MONITOR in a thread: `lines` gets (source, [args]) for every command,
    source being the client's address or "lua" for commands a script ran."""

    def __init__(self, port):
        self.conn = Resp(port)
        self.lines = []
        assert self.conn.command("MONITOR") == "OK"
        self.conn.sock.settimeout(None)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            while True:
                line = self.conn._line().decode("utf-8", "replace")
                m = _MONITOR_RE.match(line)
                if m:
                    self.lines.append((m.group(2), [a for a in _ARG_RE.findall(m.group(3))]))
        except (OSError, ConnectionError, ValueError):
            pass

    def sync(self, timeout=STEP):
        """Returns once every command Redis executed before this call is in `lines`
        (MONITOR reports in execution order: an ECHO of a fresh token closes it)."""
        token = "wshub-test-sync-%s" % os.urandom(6).hex()
        c = Resp(self.conn.sock.getpeername()[1])
        try:
            c.command("ECHO", token)
        finally:
            c.close()
        wait_until(lambda: any(token in a for _, args in list(self.lines) for a in args), timeout,
                   "MONITOR sees the sync token")

    def client_commands(self, containing):
        """Commands sent by clients (not run by scripts) with an argument that
        contains `containing`, as [NAME, args...] with NAME upper-cased."""
        out = []
        for src, args in list(self.lines):
            if src == "lua" or not args:
                continue
            if any(containing in a for a in args):
                out.append([args[0].upper()] + args[1:])
        return out

    def stop(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        self.thread.join(timeout=5)


def room_channel(room):
    return "wshub:{room:%s}" % room


def user_channel(user):
    return "wshub:{user:%s}" % user


# --------------------------------------------------------------------------- haproxy


class Haproxy:
    """haproxy in front of `backends` [(name, port)], listening on a free port."""

    def __init__(self, backends):
        self.backends = list(backends)
        self.port = None
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="wshub-haproxy-")
        self.cfg_path = os.path.join(self.dir, "haproxy.cfg")
        self._log = None

    def config(self):
        lines = [
            "global",
            "    maxconn 4096",
            "defaults",
            "    mode http",
            "    timeout connect 1s",
            "    timeout client 60s",
            "    timeout server 60s",
            # A WebSocket is a tunnel once upgraded: this, not client/server, applies.
            "    timeout tunnel 1h",
            "    timeout http-request 5s",
            "    option redispatch",
            "    retries 2",
            "frontend ws",
            "    bind %s:%d" % (HOST, self.port),
            "    default_backend nodes",
            "backend nodes",
            "    balance roundrobin",
            "    option httpchk",
            "    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost",
            "    http-check expect status 200",
            "    default-server check inter 200ms fall 2 rise 2",
        ]
        # Test-only: ?node=NAME picks that node while it is up (ignored when it is down).
        for name, _ in self.backends:
            lines.append("    use-server %s if { urlp(node) %s }" % (name, name))
        for name, port in self.backends:
            lines.append("    server %s %s:%d" % (name, HOST, port))
        return "\n".join(lines) + "\n"

    def start(self, timeout=10.0):
        for _ in range(5):
            self.port = _free_port()
            with open(self.cfg_path, "w") as f:
                f.write(self.config())
            if self._log is not None:
                self._log.close()
            self._log = tempfile.TemporaryFile(prefix="wshub-haproxy-log-")
            # -db: foreground, no daemon; -W is not used so the PID is haproxy itself.
            self.proc = _track(subprocess.Popen([find_program("haproxy"), "-db", "-f", self.cfg_path],
                                                stdin=subprocess.DEVNULL, stdout=self._log,
                                                stderr=self._log))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if http_status(self.port, "/healthz", timeout=1.0) == 200:
                    return self
                time.sleep(0.05)
            self.kill()
            if "cannot bind" not in self.log() and "Address already in use" not in self.log():
                break
        raise ServerError("haproxy did not start (exit %s); config:\n%s\nlog:\n%s"
                          % (self.proc.returncode, self.config(), self.log()))

    def log(self):
        if self._log is None:
            return ""
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")

    def url(self, path="/ws", node=None):
        q = ""
        if node is not None:
            q = ("&" if "?" in path else "?") + "node=" + node
        return "ws://%s:%d%s%s" % (HOST, self.port, path, q)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        _untrack(self.proc)

    def stop(self):
        self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- nodes


_NODE_RE = re.compile(r"msg=listening\b.*?\bnode=([0-9a-f]{16})\b")


class Node(WshubServer):
    """A wshub node: started like any server, then waits for /readyz (Redis up)."""

    name = None
    killed = False  # killed on purpose (kill -9): not checked at stop

    def start(self):
        super().start()
        _track(self.proc)
        try:
            wait_until(lambda: http_status(self.port, "/readyz", timeout=2.0) == 200, STEP,
                       "node %s /readyz 200 (connected to Redis)" % self.name)
        except AssertionError as e:
            raise ServerError("%s\nstderr:\n%s" % (e, self.stderr()[-20000:]))
        return self

    @property
    def node_id(self):
        m = _NODE_RE.search(self.stderr())
        return m.group(1) if m else None

    def kill9(self):
        self.killed = True
        self.kill()
        _untrack(self.proc)

    def http(self, method, path, body=None, key=None):
        return http_json(self.port, method, path, body, key)


class Cluster:
    """`redis` Redis instances, `nodes` wshub nodes, optional haproxy."""

    def __init__(self, nodes=3, redis=1, node_args=(), threads=2, presence_timeout="3s",
                 balancer=False, redis_persist=False, via_proxy=()):
        self.n_nodes = nodes
        self.node_args = [str(a) for a in node_args]
        self.threads = threads
        self.presence_timeout = presence_timeout
        self.redis = [RedisServer(persist=redis_persist) for _ in range(redis)]
        self.nodes = []
        self.balancer = balancer
        self.haproxy = None
        # Nodes whose Redis connections go through a TcpProxy (self.proxies[i]), so a
        # test can cut that node off. One instance only: with several, the node
        # would hash streams over the proxies' addresses, not the instances'.
        self.via_proxy = set(via_proxy)
        assert not self.via_proxy or redis == 1
        self.proxies = {}

    def args_for(self, i):
        args = ["--api-key", API_KEY, "--query-rate", "100000", "--query-burst", "100000"]
        if self.presence_timeout is not None:
            args += ["--presence-timeout", self.presence_timeout]
        if i in self.proxies:
            args += ["--redis", self.proxies[i].url]
        else:
            for r in self.redis:
                args += ["--redis", r.url]
        return args + self.node_args

    def start(self):
        try:
            for r in self.redis:
                r.start()
            for i in self.via_proxy:
                self.proxies[i] = TcpProxy(self.redis[0].port)
            for i in range(self.n_nodes):
                n = Node(self.args_for(i), threads=self.threads)
                n.name = "n%d" % i
                self.nodes.append(n)
                n.start()
            if self.balancer:
                self.haproxy = Haproxy([(n.name, n.port) for n in self.nodes]).start()
        except BaseException:
            self.stop(check=False)
            raise
        return self

    @property
    def ports(self):
        return [n.port for n in self.nodes if n.alive()]

    def stop(self, check=True):
        """Stops haproxy, the nodes (SIGTERM, checked unless killed on purpose), Redis.
        Everything is stopped even when a check fails; the first failure is raised."""
        problems = []
        if self.haproxy is not None:
            self.haproxy.stop()
        for n in self.nodes:
            try:
                if n.killed:
                    continue
                if n.proc is None:
                    continue
                if n.proc.poll() is None:
                    rc, _, killed = n.stop()
                else:
                    rc, killed = n.proc.returncode, False
                _untrack(n.proc)
                if check:
                    n.check_stopped_cleanly(rc, killed)
            except Exception as e:  # keep stopping the others
                problems.append(e)
            finally:
                n.close_files()
        for p in self.proxies.values():
            p.stop()
        for r in self.redis:
            r.stop()
        if problems:
            raise problems[0]


class ClusterTestCase(unittest.TestCase):
    """One cluster per test class (CLUSTER: keyword arguments of Cluster)."""

    CLUSTER = {}
    cluster = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cluster = Cluster(**cls.CLUSTER).start()

    @classmethod
    def tearDownClass(cls):
        c, cls.cluster = cls.cluster, None
        try:
            if c is not None:
                c.stop()
        finally:
            super().tearDownClass()

    def tearDown(self):
        c = self.cluster
        for n in c.nodes if c else ():
            if not n.killed and not n.alive():
                self.fail("node %s died during the test (exit %s); stderr:\n%s"
                          % (n.name, n.proc.returncode, n.stderr()[-20000:]))
        super().tearDown()

    @property
    def nodes(self):
        return self.cluster.nodes

    def assertListing(self, what, expect, ports=None, timeout=STEP):
        """Every node answers `expect` for listing `what`, once registration settles."""
        ports = ports or self.cluster.ports
        seen = {}

        def same():
            for p in ports:
                seen[p] = listing(p, what)
            return all(v == expect for v in seen.values())

        try:
            wait_until(same, timeout, what)
        except AssertionError:
            self.fail("%s: expected %r on every node, got %r" % (what, expect, seen))


# --------------------------------------------------------------------------- clients


def run(coro, timeout=240.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Client:
    """A /ws client: a reader task appends every message, in arrival order, to
    `self.log`, and to a queue that next()/until() consume."""

    def __init__(self, ws, name):
        self.ws = ws
        self.name = name
        self.log = []
        self.q = asyncio.Queue()
        self.closed = asyncio.Event()
        self.task = asyncio.ensure_future(self._read())
        self.n = 0

    @classmethod
    async def open(cls, port_or_url, user, query=""):
        if isinstance(port_or_url, int):
            url = "ws://%s:%d/ws?token=%s%s" % (HOST, port_or_url, user, query)
        else:
            url = port_or_url + ("&" if "?" in port_or_url else "?") + "token=" + user + query
        ws = await asyncio.wait_for(
            websockets.connect(url, max_queue=None, ping_interval=None, close_timeout=1), STEP)
        return cls(ws, user)

    async def _read(self):
        try:
            async for m in self.ws:
                m = json.loads(m)
                self.log.append(m)
                await self.q.put(m)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            await self.q.put(None)

    async def send(self, type_, payload=None, id=None):
        o = {"type": type_, "payload": payload or {}}
        if id is not None:
            o["id"] = id
        await self.ws.send(json.dumps(o))

    async def next(self, timeout=STEP):
        m = await asyncio.wait_for(self.q.get(), timeout)
        if m is None:
            await self.q.put(None)
            raise AssertionError("%s: connection closed (code %s)" % (self.name, self.ws.close_code))
        return m

    async def until(self, pred, timeout=STEP, what="message"):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                m = await self.next(max(0.01, left))
            except asyncio.TimeoutError:
                raise AssertionError("%s: no %s within %.0f s (last messages: %r)"
                                     % (self.name, what, timeout, self.log[-5:]))
            if pred(m):
                return m

    async def request(self, type_, payload, timeout=STEP):
        self.n += 1
        rid = "%s-r%d" % (self.name, self.n)
        await self.send(type_, payload, rid)
        return await self.until(
            lambda m: m.get("id") == rid or (m["type"] in ("ack", "error") and
                                             (m.get("payload") or {}).get("id") == rid),
            timeout, "reply to %s" % type_)

    async def join(self, room, since=None, presence=None):
        p = {"room_id": room}
        if since is not None:
            p["since"] = since
        if presence is not None:
            p["presence"] = presence
        m = await self.request("join_room", p)
        assert m["type"] == "room_joined", m
        return m["payload"]

    async def leave(self, room):
        m = await self.request("leave_room", {"room_id": room})
        assert m["type"] == "room_left", m
        return m["payload"]

    def room_frames(self, room, types=None):
        """Room messages received (not replies), in arrival order."""
        return [m for m in self.log if m.get("room_id") == room and "seq" in m and
                m["type"] not in ("room_joined", "ack", "error") and
                (types is None or m["type"] in types)]

    def user_frames(self):
        """Messages of this user's stream: seq and no room_id."""
        return [m for m in self.log if "seq" in m and "room_id" not in m]

    async def wait_room_seq(self, room, seq, timeout=STEP):
        """Waits until a frame of `room` with seq >= `seq` has arrived."""
        await async_wait_until(lambda: any(m["seq"] >= seq for m in self.room_frames(room)),
                               timeout, "%s: room %s seq %d" % (self.name, room, seq))

    def abort(self):
        """Drops the TCP connection without a closing handshake."""
        self.ws.transport.abort()

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except Exception:
            self.abort()
        self.task.cancel()


async def publish_window(client, make, n, window=32, start=0):
    """Sends n requests make(i) -> (type, payload) with ids, at most `window`
    unanswered; returns {i: reply} (an ack or an error)."""
    replies = {}
    ids = {}
    inflight = 0
    for i in range(start, start + n):
        type_, payload = make(i)
        rid = "%s-p%d" % (client.name, i)
        ids[rid] = i
        await client.send(type_, payload, rid)
        inflight += 1
        while inflight >= window:
            m = await client.until(lambda m: m["type"] in ("ack", "error") and
                                   (m.get("payload") or {}).get("id") in ids, what="ack")
            replies[ids.pop(m["payload"]["id"])] = m
            inflight -= 1
    while inflight:
        m = await client.until(lambda m: m["type"] in ("ack", "error") and
                               (m.get("payload") or {}).get("id") in ids, what="ack")
        replies[ids.pop(m["payload"]["id"])] = m
        inflight -= 1
    return replies


def contiguous(seqs):
    """True when seqs is exactly a, a+1, ..., b (no gap, no duplicate, in order)."""
    return all(b == a + 1 for a, b in zip(seqs, seqs[1:]))


# --------------------------------------------------------------------------- resilient subscribers


class ResilientSub:
    """A Python subscriber that behaves like the JavaScript client: it reconnects
    (after 0.1 s) when its connection drops, with `?since=&epoch=` for its user
    stream and `join_room` with `since` for each room, from the last positions it
    saw. `raw` keeps every frame of every connection in arrival order, so the test
    can count losses and duplicates itself; `events` records connects and the
    recovery answers."""

    def __init__(self, url, user, rooms):
        self.url = url
        self.user = user
        self.rooms = list(rooms)
        self.raw = []
        self.events = []
        self.room_pos = {r: None for r in self.rooms}  # room -> [seq, epoch]
        self.user_pos = None  # [seq, epoch]
        self.connects = 0
        self.stopping = False
        self.ready = asyncio.Event()
        self.ws = None
        self.task = asyncio.ensure_future(self._run())

    async def _run(self):
        while not self.stopping:
            try:
                await self._connection()
            except (OSError, websockets.WebSocketException, asyncio.TimeoutError) as e:
                self.events.append(("error", repr(e)))
            if not self.stopping:
                await asyncio.sleep(0.1)

    async def _connection(self):
        q = "token=%s&since=%d" % (self.user, self.user_pos[0] if self.user_pos else 0)
        if self.user_pos and self.user_pos[1]:
            q += "&epoch=" + self.user_pos[1]
        url = self.url + ("&" if "?" in self.url else "?") + q
        ws = await asyncio.wait_for(websockets.connect(url, max_queue=None, ping_interval=None,
                                                       close_timeout=1), 5)
        self.ws = ws
        self.connects += 1
        self.events.append(("connect", self.connects))
        for room in self.rooms:
            p = {"room_id": room}
            pos = self.room_pos[room]
            if pos is not None:
                p["since"] = {"seq": pos[0], "epoch": pos[1]}
            await ws.send(json.dumps({"type": "join_room", "payload": p, "id": "j-" + room}))
        joined = set()
        async for text in ws:
            m = json.loads(text)
            self.raw.append(m)
            t, p = m["type"], m.get("payload") or {}
            if t == "session":
                self.events.append(("session", p))
                if p.get("recovered") is True and self.user_pos:
                    self.user_pos[1] = p["epoch"]
                else:
                    self.user_pos = [p["seq"], p["epoch"]]
            elif t == "room_joined":
                self.events.append(("joined", p))
                room = p["room_id"]
                pos = self.room_pos.get(room)
                if p.get("recovered") is True and pos is not None:
                    pos[1] = p["epoch"]
                else:
                    self.room_pos[room] = [p["seq"], p["epoch"]]
                joined.add(room)
                if joined == set(self.rooms):
                    self.ready.set()
            elif "seq" in m and m.get("room_id") in self.room_pos:
                pos = self.room_pos[m["room_id"]]
                if pos is not None:
                    pos[0] = max(pos[0], m["seq"])
            elif "seq" in m and "room_id" not in m and self.user_pos is not None:
                self.user_pos[0] = max(self.user_pos[0], m["seq"])

    def room_frames(self, room):
        return [m for m in self.raw if m.get("room_id") == room and "seq" in m and
                m["type"] not in ("room_joined", "ack", "error")]

    def user_frames(self):
        return [m for m in self.raw if "seq" in m and "room_id" not in m and m["type"] != "session"]

    async def stop(self):
        self.stopping = True
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 5)
            except Exception:
                self.ws.transport.abort()
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, Exception):
            pass


class JsSub:
    """tests/integration/cluster_client.js (the JavaScript client of clients/js) in a
    node process: `lines` collects its JSON events as they are printed."""

    SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster_client.js")

    def __init__(self, url, user, rooms):
        node = shutil.which("node")
        if not node:
            raise RuntimeError("node not found: run scripts/setup.sh test (make test does)")
        self.lines = []
        self._stderr = tempfile.TemporaryFile(prefix="wshub-jssub-")
        self.proc = _track(subprocess.Popen([node, self.SCRIPT, url, user, ",".join(rooms)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=self._stderr))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.lines.append({"ev": "unparsed", "line": line.decode("utf-8", "replace")})

    def stderr(self):
        fd = self._stderr.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")

    def events(self, ev):
        return [x for x in list(self.lines) if x.get("ev") == ev]

    def raw(self):
        return [x["m"] for x in list(self.lines) if x.get("ev") == "raw"]

    def room_frames(self, room):
        return [m for m in self.raw() if m.get("room_id") == room and "seq" in m and
                m["type"] not in ("room_joined", "ack", "error")]

    def user_frames(self):
        return [m for m in self.raw() if "seq" in m and "room_id" not in m and m["type"] != "session"]

    def check_alive(self):
        if self.proc.poll() is not None:
            raise AssertionError("the JS client exited with %s; stderr:\n%s\nlast events: %r"
                                 % (self.proc.returncode, self.stderr(), self.lines[-5:]))
        fatal = self.events("fatal")
        if fatal:
            raise AssertionError("the JS client failed: %r" % fatal)

    def stop(self):
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write(b'{"cmd":"close"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        _untrack(self.proc)
        self._reader.join(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self._stderr.close()


# --------------------------------------------------------------------------- partition


class TcpProxy:
    """A TCP relay from a free loopback port to `target_port`, to cut one node off
    from Redis: blackhole() stops forwarding in both directions while keeping every
    connection open (packets lost, no RST: only the node's own watchdogs can tell),
    heal() resumes forwarding. One thread; only sockets it made are touched."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.peer = {}  # socket -> the other socket of its pair
        self.forwarding = True
        self.running = True
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "redis://%s:%d" % (HOST, self.port)

    def blackhole(self):
        with self.lock:
            self.forwarding = False

    def heal(self):
        with self.lock:
            self.forwarding = True

    def _close_pair(self, s):
        o = self.peer.pop(s, None)
        if o is not None:
            self.peer.pop(o, None)
            o.close()
        s.close()

    def _loop(self):
        import select
        while self.running:
            with self.lock:
                fwd = self.forwarding
            rlist = [self.lsock] + (list(self.peer) if fwd else [])
            try:
                ready, _, _ = select.select(rlist, [], [], 0.05)
            except (OSError, ValueError):
                continue
            for s in ready:
                if s is self.lsock:
                    try:
                        c, _ = self.lsock.accept()
                    except OSError:
                        continue
                    try:
                        u = socket.create_connection((HOST, self.target_port), timeout=2)
                    except OSError:
                        c.close()  # the target is down: refuse like it would
                        continue
                    self.peer[c], self.peer[u] = u, c
                    continue
                if s not in self.peer:
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._close_pair(s)
                    continue
                try:
                    self.peer[s].sendall(data)
                except OSError:
                    self._close_pair(s)

    def stop(self):
        self.running = False
        self.thread.join(timeout=5)
        for s in list(self.peer):
            s.close()
        self.peer.clear()
        self.lsock.close()
