"""wshub-cli, the command-line WebSocket client, against the real server: -x with the
hub's rooms, interactive echo through stdin, subprotocols, tokens, a refused upgrade
(HTTP 401 and the server's explanation), a server-initiated close, and usage errors.

The client binary: $WSHUB_CLI_BIN, else derived from $WSHUB_BIN (".../wshub" gives
".../wshub-cli", ".../wshub-asan" gives ".../wshub-cli-asan").

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_cli
"""

import base64
import hashlib
import hmac
import json
import os
import re
import select
import subprocess
import time
import unittest

from wshub_harness import HOST, ServerTestCase, wshub_bin

RUN_TIMEOUT = 20.0  # upper bound for any one client run
JWT_SECRET = "test-secret-of-at-least-32-bytes-0123456789"  # HS256 wants >= 32 bytes
_SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:")


def cli_bin():
    path = os.environ.get("WSHUB_CLI_BIN")
    if not path:
        d, base = os.path.split(wshub_bin())
        if base.startswith("wshub"):
            base = "wshub-cli" + base[len("wshub"):]  # wshub -> wshub-cli, wshub-asan -> wshub-cli-asan
        path = os.path.join(d, base)
    if not os.access(path, os.X_OK):
        raise RuntimeError("wshub-cli binary %r is not executable (set WSHUB_CLI_BIN)" % path)
    return path


def cli_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=99")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=98")
    env.pop("NO_COLOR", None)
    return env


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(sub, secret=JWT_SECRET, ttl=300):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": sub, "exp": int(time.time()) + ttl}).encode())
    signing = ("%s.%s" % (header, payload)).encode()
    sig = b64url(hmac.new(secret.encode(), signing, hashlib.sha256).digest())
    return "%s.%s.%s" % (header, payload, sig)


class CliTestCase(ServerTestCase):
    def url(self, path, port=None):
        return "ws://%s:%d%s" % (HOST, self.port if port is None else port, path)

    def run_cli(self, *args, input=None, timeout=RUN_TIMEOUT):
        """Runs the client to completion: (exit code, stdout, stderr)."""
        proc = subprocess.Popen([cli_bin()] + list(args), env=cli_env(),
                                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            self.fail("wshub-cli %r did not finish within %.0f s; stdout:\n%s\nstderr:\n%s"
                      % (args, timeout, out.decode(errors="replace"),
                         err.decode(errors="replace")))
        out, err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        self.assertNotRegex(err, _SANITIZER_RE, "sanitizer report from wshub-cli")
        return proc.returncode, out, err

    def start_cli(self, *args):
        proc = subprocess.Popen([cli_bin()] + list(args), env=cli_env(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(self._reap, proc)
        return proc

    @staticmethod
    def _reap(proc):
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f and not f.closed:
                f.close()

    def read_until(self, proc, text, buf, timeout=5.0):
        """Reads proc's stdout into buf (a bytearray) until `text` appears."""
        deadline = time.monotonic() + timeout
        needle = text.encode()
        while needle not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail("no %r from wshub-cli within %.1f s; stdout so far:\n%s"
                          % (text, timeout, buf.decode(errors="replace")))
            r, _, _ = select.select([proc.stdout], [], [], left)
            if r:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    self.fail("wshub-cli closed stdout before %r; stdout:\n%s\nstderr:\n%s"
                              % (text, buf.decode(errors="replace"),
                                 proc.stderr.read().decode(errors="replace")))
                buf += chunk
        return buf


class ExecuteTests(CliTestCase):
    def test_join_room_and_chat(self):
        rc, out, err = self.run_cli(
            "-x", '{"type":"join_room","payload":{"room_id":"lobby"}}',
            "-x", '{"type":"chat_message","payload":{"room_id":"lobby","content":"hi"}}',
            "-w", "1", self.url("/ws?token=alice"))
        self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        lines = out.splitlines()
        self.assertEqual(lines[0], "# connected")
        received = [json.loads(l[2:]) for l in lines if l.startswith("< ")]
        types = [m.get("type") for m in received]
        self.assertIn("room_joined", types, out)
        chats = [m for m in received if m.get("type") == "chat_message"]
        self.assertEqual(len(chats), 1, out)
        self.assertEqual(chats[0]["payload"]["content"], "hi")
        self.assertEqual(chats[0]["payload"]["room_id"], "lobby")
        self.assertLess(types.index("room_joined"), types.index("chat_message"))
        self.assertEqual(lines[-1], "# closed 1000", out)
        self.assertNotIn("> ", out)  # stdout is not a terminal: sent messages not echoed
        self.assertEqual(err, "")

    def test_subprotocol_and_quiet(self):
        rc, out, err = self.run_cli("-s", "nope", "-s", "wshub", "-x",
                                    '{"type":"join_room","payload":{"room_id":"r"}}', "-w",
                                    "0.5", self.url("/ws?token=bob"))
        self.assertEqual(rc, 0, err)
        self.assertIn("# connected (subprotocol wshub)\n", out)
        rc, out, err = self.run_cli("-q", "-x", '{"type":"join_room","payload":{"room_id":"r"}}',
                                    "-w", "0.5", self.url("/ws?token=bob"))
        self.assertEqual(rc, 0, err)
        self.assertNotIn("#", out)
        self.assertIn("room_joined", out)

    def test_header_option_reaches_server(self):
        # /ws takes the token from an Authorization header too (here through -H).
        rc, out, err = self.run_cli("-H", "Authorization: Bearer carol", "-x",
                                    '{"type":"join_room","payload":{"room_id":"h"}}', "-w",
                                    "0.5", self.url("/ws"))
        self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        self.assertIn("room_joined", out)

    def test_binary_execute_echo(self):
        rc, out, err = self.run_cli("-b", "-x", "AB", "-w", "0.5", self.url("/echo"))
        self.assertEqual(rc, 0, err)
        self.assertIn("< [binary 2 bytes] 41 42\n", out)


class InteractiveTests(CliTestCase):
    def test_echo_lines_then_eof_closes_1000(self):
        proc = self.start_cli(self.url("/echo"))
        buf = bytearray()
        self.read_until(proc, "# connected\n", buf)
        proc.stdin.write(b"hello echo\n")
        proc.stdin.flush()
        self.read_until(proc, "< hello echo\n", buf)
        proc.stdin.write("line two \u00e9\r\nno newline at the end".encode())
        proc.stdin.flush()
        self.read_until(proc, "< line two \u00e9\n", buf)
        proc.stdin.close()  # Ctrl-D: the partial line is sent, then close 1000
        rc = proc.wait(timeout=RUN_TIMEOUT)
        buf += proc.stdout.read()
        out = buf.decode()
        err = proc.stderr.read().decode(errors="replace")
        self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        self.assertEqual(out.splitlines(), [
            "# connected", "< hello echo", "< line two \u00e9", "< no newline at the end",
            "# closed 1000"])
        self.assertNotRegex(err, _SANITIZER_RE)

    def test_piped_stdin(self):
        rc, out, err = self.run_cli(self.url("/echo"), input=b"one\ntwo\n\nthree\n")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.splitlines(),
                         ["# connected", "< one", "< two", "< ", "< three", "# closed 1000"])

    def test_invalid_utf8_line_gets_1007_and_exit_1(self):
        # The client sends lines as they are; the server refuses non-UTF-8 text.
        rc, out, err = self.run_cli(self.url("/echo"), input=b"ok\n\xff\xfe\n")
        self.assertEqual(rc, 1, "stdout:\n%s\nstderr:\n%s" % (out, err))
        self.assertIn("< ok\n", out)
        self.assertIn("# closed 1007", out)
        self.assertIn("1007", err)

    def test_server_shutdown_closes_1001(self):
        srv = self.start_server(("--close-timeout", "2s"))
        proc = self.start_cli(self.url("/echo", port=srv.port))
        buf = bytearray()
        self.read_until(proc, "# connected\n", buf)
        srv.terminate()
        self.read_until(proc, "# closed 1001", buf)
        rc = proc.wait(timeout=RUN_TIMEOUT)
        self.assertEqual(rc, 0, proc.stderr.read().decode(errors="replace"))
        code = srv.wait(10.0)  # a second SIGTERM would make it exit at once, with 1
        srv.check_stopped_cleanly(code, killed=code is None)


class RefusalTests(CliTestCase):
    SERVER_ARGS = ("--auth", "hs256", "--jwt-secret", JWT_SECRET)

    def test_401_without_token(self):
        rc, out, err = self.run_cli("-x", "{}", self.url("/ws"))
        self.assertEqual(rc, 1, "stdout:\n%s\nstderr:\n%s" % (out, err))
        self.assertIn("401", err)
        self.assertIn("missing", err)  # the body: {"error":{"code":"missing_token",...}}
        self.assertEqual(out, "")

    def test_401_bad_token(self):
        rc, out, err = self.run_cli("-t", make_jwt("alice", secret="x" * 40), self.url("/ws"))
        self.assertEqual(rc, 1, err)
        self.assertIn("HTTP 401", err)
        self.assertIn("bad_signature", err)

    def test_token_option(self):
        rc, out, err = self.run_cli("-t", make_jwt("alice"), "-x",
                                    '{"type":"join_room","payload":{"room_id":"t"}}', "-w",
                                    "0.5", self.url("/ws"))
        self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        self.assertIn("room_joined", out)

    def test_not_a_websocket_endpoint(self):
        rc, out, err = self.run_cli(self.url("/healthz"), input=b"")
        self.assertEqual(rc, 1, err)
        self.assertIn("HTTP", err)

    def test_connection_refused(self):
        import socket
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        rc, out, err = self.run_cli(self.url("/ws", port=port), input=b"")
        self.assertEqual(rc, 1)
        self.assertIn("cannot connect", err)


class UsageTests(CliTestCase):
    START_CLASS_SERVER = False

    def test_bad_url(self):
        for url in ("http://127.0.0.1/ws", "wss:/127.0.0.1/", "ws://", "ws://h:99999/",
                    "ws://h/#frag", "not a url"):
            rc, out, err = self.run_cli(url)
            self.assertEqual(rc, 2, "%s: %s" % (url, err))
            self.assertIn("bad URL", err)

    def test_usage_errors(self):
        for args in ((), ("--bogus", "ws://h/"), ("-x",), ("-w", "-1", "-x", "m", "ws://h/"),
                     ("-w", "1", "ws://h/"), ("-H", "no colon", "ws://h/"),
                     ("-s", "two words", "ws://h/"), ("ws://h/", "extra")):
            rc, out, err = self.run_cli(*args)
            self.assertEqual(rc, 2, "%r: %s" % (args, err))
            self.assertIn("--help", err)

    def test_help_and_version(self):
        rc, out, err = self.run_cli("--help")
        self.assertEqual(rc, 0)
        for opt in ("--header", "--token", "--subprotocol", "--execute", "--wait", "--binary",
                    "--no-color", "--quiet", "--help", "--version"):
            self.assertIn(opt, out)
        rc, out, err = self.run_cli("--version")
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"^wshub-cli \S+\n$")


if __name__ == "__main__":
    unittest.main()
