"""The Origin check through the real server (issue 14, finding 4): origins are parsed
(RFC 6454) and compared by scheme, host and port, so the string tricks of the issue
are refused, and same-origin on a plaintext listener means http:// with the Host's
host and port (an https:// page of the same host is another origin). Refusals are 403
`origin_not_allowed`, counted in
wshub_websocket_handshake_failures_total{reason="origin_not_allowed"}. An allow-list
entry that is not an origin stops the server at start-up (exit 2).

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_origin
"""

import json
import subprocess
import unittest

from wshub_harness import HOST, ServerTestCase, http_request, metrics, upgrade_request, wshub_bin

REFUSED = 'wshub_websocket_handshake_failures_total{reason="origin_not_allowed"}'


class OriginTest(ServerTestCase):
    SERVER_ARGS = ("--stream", "", "--allowed-origins",
                   "https://*.example.com, https://app.example.org, http://localhost:3000")

    def upgrade(self, origin, path="/ws?token=o"):
        headers = [] if origin is None else [("Origin", o) for o in origin.split("\n")]
        status, _, body = http_request(self.port, upgrade_request(self.port, path=path,
                                                                  headers=headers))
        return status, body

    def assert_refused(self, origin):
        before = metrics(self.port)[REFUSED]
        for path in ["/ws?token=o", "/echo"]:
            status, body = self.upgrade(origin, path)
            self.assertEqual(status, 403, "%r on %s" % (origin, path))
            self.assertEqual(json.loads(body)["error"]["code"], "origin_not_allowed")
        self.assertEqual(metrics(self.port)[REFUSED], before + 2, repr(origin))

    def assert_allowed(self, origin):
        for path in ["/ws?token=o", "/echo"]:
            self.assertEqual(self.upgrade(origin, path)[0], 101, "%r on %s" % (origin, path))

    def test_the_tricks_of_the_issue_are_refused(self):
        for origin in ["https://evil.com/.example.com", "https://evil.com?.example.com",
                       "https://evil.com#.example.com", "https://evil.com@a.example.com",
                       "https://a.example.com/", "https://a.example.com.evil.net",
                       "https://evilexample.com", "https://example.com",
                       "http://a.example.com", "https://a.example.com:8443",
                       "https://b\xc3\xbccher.example.com",  # UTF-8 bytes of bücher
                       "https://b\xfccher.example.com", "null",
                       "https://a.example.com\nhttps://a.example.com"]:
            self.assert_refused(origin)

    def test_parsed_origins_match(self):
        for origin in ["https://a.example.com", "https://A.B.EXAMPLE.COM", "https://a.example.com.",
                       "https://a.example.com:443", "https://xn--bcher-kva.example.com",
                       "HTTPS://APP.example.org", "http://localhost:3000", None]:
            self.assert_allowed(origin)
        self.assert_refused("http://localhost")
        self.assert_refused("https://app.example.org:444")

    def test_same_origin_compares_the_scheme(self):
        own = "%s:%d" % (HOST, self.port)
        self.assert_allowed("http://" + own)
        self.assert_allowed("HTTP://" + own)
        self.assert_refused("https://" + own)  # was taken as same-origin before
        self.assert_refused("ws://" + own)
        self.assert_refused("http://%s:%d" % (HOST, self.port + 1))
        self.assert_refused("http://%s:%d/" % (HOST, self.port))

    def test_bad_allow_list_entries_stop_the_server(self):
        for entry in ["https://evil.com/.example.com", "https://*example.com", "app.example.com",
                      "https://b\u00fccher.example"]:
            p = subprocess.run([wshub_bin(), "--listen", "127.0.0.1:0", "--allowed-origins",
                                "https://ok.example, " + entry],
                               capture_output=True, text=True, timeout=10)
            self.assertEqual(p.returncode, 2, entry)
            self.assertIn("--allowed-origins", p.stderr)
            self.assertIn(entry, p.stderr)


if __name__ == "__main__":
    unittest.main()
