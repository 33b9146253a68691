"""HTTP as strict as docs/security.md says (issue 14, finding 3), over raw sockets:
only HTTP/1.0 and HTTP/1.1 are served (any other version, HTTP/1.2 and HTTP/1.9
included, gets 505), and an HTTP/1.1 request without a Host header, with two, or with a
malformed one gets 400 `bad_host` (RFC 9112 section 3.2) on every endpoint, not only
on the WebSocket upgrade. Each refusal closes the connection and is counted in
wshub_http_bad_requests_total.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_http_strict
"""

import json
import unittest

from wshub_harness import HttpConn, ServerTestCase, metrics, upgrade_request

ENDPOINTS = ["/healthz", "/readyz", "/api/rooms", "/api/online", "/metrics", "/"]
BAD = "wshub_http_bad_requests_total"


class HttpStrictTest(ServerTestCase):
    SERVER_ARGS = ("--api-key", "k")

    def exchange(self, raw):
        """(status, headers, body, closed after the answer)."""
        with HttpConn(self.port) as c:
            c.send(raw)
            status, hdrs, body = c.read_response()
            return status, hdrs, body, c.wait_closed(3.0)

    def refused(self, raw, status, code):
        before = metrics(self.port)[BAD]
        st, hdrs, body, closed = self.exchange(raw)
        self.assertEqual(st, status, raw)
        self.assertEqual(json.loads(body)["error"]["code"], code, raw)
        self.assertEqual(hdrs.get("connection"), "close", raw)
        self.assertTrue(closed, "connection left open after %r" % raw)
        self.assertEqual(metrics(self.port)[BAD], before + 1, raw)

    def test_versions_other_than_1_0_and_1_1_get_505(self):
        for version in ["HTTP/1.2", "HTTP/1.9", "HTTP/2.0", "HTTP/3.0", "HTTP/0.9", "HTTP/0.0"]:
            for path in ["/healthz", "/api/rooms"]:
                raw = ("GET %s %s\r\nHost: x\r\n\r\n" % (path, version)).encode()
                self.refused(raw, 505, "http_version")

    def test_1_0_and_1_1_are_served(self):
        st, _, body, _ = self.exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual((st, json.loads(body)["status"]), (200, "ok"))
        st, _, _, _ = self.exchange(b"GET /healthz HTTP/1.0\r\n\r\n")  # 1.0 needs no Host
        self.assertEqual(st, 200)
        st, _, _, _ = self.exchange(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        self.assertEqual(st, 200)

    def test_http_1_1_without_host_gets_400_everywhere(self):
        for path in ENDPOINTS + ["/no-such-path"]:
            self.refused(("GET %s HTTP/1.1\r\n\r\n" % path).encode(), 400, "bad_host")
        self.refused(b"POST /api/publish HTTP/1.1\r\nX-API-Key: k\r\nContent-Length: 2\r\n\r\n{}",
                     400, "bad_host")
        self.refused(upgrade_request(self.port, path="/ws?token=a", omit={"host"}), 400, "bad_host")

    def test_two_host_headers_get_400_everywhere(self):
        for path in ENDPOINTS:
            for hosts in ["Host: x\r\nHost: x\r\n", "Host: a\r\nHost: b\r\n",
                          "Host: a\r\nAccept: */*\r\nhost: a\r\n"]:
                self.refused(("GET %s HTTP/1.1\r\n%s\r\n" % (path, hosts)).encode(), 400, "bad_host")
        # RFC 9112: more than one Host is refused whatever the version.
        self.refused(b"GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad_host")
        self.refused(upgrade_request(self.port, path="/ws?token=a", headers=[("Host", "y")]),
                     400, "bad_host")

    def test_malformed_host_gets_400(self):
        for host in ["a b", "a,b", "a/b", "u@a", "a:80x", "a:1:2", "[::1", "[::1]z"]:
            self.refused(("GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode(), 400, "bad_host")
        for host in ["localhost", "127.0.0.1:8080", "[::1]:80", "xn--bcher-kva.example", ""]:
            st, _, _, _ = self.exchange(("GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode())
            self.assertEqual(st, 200, host)


if __name__ == "__main__":
    unittest.main()
