"""permessage-deflate (RFC 7692) seen on the wire: raw sockets offer exact extension
headers, send frames compressed with zlib, and look at the RSV1 bit and the payload of
what comes back; plus the Python `websockets` client with compression on.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_deflate
"""

import asyncio
import unittest
import zlib

import websockets

from wshub_harness import (metrics, OP_BINARY, OP_CONT, OP_TEXT, RawClient, ServerTestCase, build_frame,
                           run)

MiB = 1024 * 1024
TAIL = b"\x00\x00\xff\xff"
EXT = "permessage-deflate; server_no_context_takeover"


def compress(data, wbits=15, obj=None):
    """Raw deflate with a sync flush and the tail removed (RFC 7692 7.2.1); obj keeps
    context between messages when given."""
    c = obj or zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def inflate(payload, wbits=15):
    d = zlib.decompressobj(-wbits)
    return d.decompress(payload + TAIL) + d.flush()




def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def json_like(n):
    s = b'{"type":"send_to_room","room_id":"lobby","payload":{"text":"hello there"}} '
    return (s * (n // len(s) + 1))[:n]


class RawDeflateTests(ServerTestCase):
    SERVER_ARGS = ("--max-message-size", "1MiB")

    def client(self, offer=EXT.split(";")[0], path="/echo"):
        headers = [("Sec-WebSocket-Extensions", offer)] if offer is not None else None
        cl = RawClient(self.port, path=path, headers=headers)
        self.addCleanup(cl.close)
        return cl

    def recv_data(self, cl):
        f = cl.recv_frame()
        self.assertIn(f.opcode, (OP_TEXT, OP_BINARY), f)
        self.assertTrue(f.fin, f)
        self.assertFalse(f.masked)
        return f

    def test_answer_lines(self):
        cases = [
            ("permessage-deflate", EXT),
            ("permessage-deflate; client_no_context_takeover", EXT + "; client_no_context_takeover"),
            ("permessage-deflate; client_max_window_bits", EXT + "; client_max_window_bits=12"),
            ("permessage-deflate; server_max_window_bits=10", EXT + "; server_max_window_bits=10"),
            ("permessage-deflate; server_max_window_bits=8", None),
            ("permessage-deflate; server_max_window_bits=8, permessage-deflate", EXT),
            ("x-webkit-deflate-frame", None),
            ("permessage-deflate; unknown_param", None),
        ]
        for offer, want in cases:
            with self.subTest(offer=offer):
                cl = self.client(offer)
                self.assertEqual(cl.response_headers.get("sec-websocket-extensions"), want)
                cl.close()

    def test_rsv1_on_the_wire(self):
        cl = self.client("permessage-deflate; client_no_context_takeover")
        msg = json_like(10000)
        cl.send_frame(OP_TEXT, compress(msg), rsv=4)
        f = self.recv_data(cl)
        self.assertEqual(f.rsv, 4, "the 10 KB echo is compressed (RSV1)")
        self.assertLess(len(f.payload), 1000)
        self.assertEqual(inflate(f.payload), msg)
        # Each message stands alone (server_no_context_takeover): a fresh inflater
        # reads the second one as well.
        cl.send_frame(OP_TEXT, compress(msg), rsv=4)
        self.assertEqual(inflate(self.recv_data(cl).payload), msg)
        # Below the 1 KiB threshold the echo goes uncompressed, even if the message came
        # compressed; an uncompressed message is fine on a compressing connection.
        small = json_like(500)
        cl.send_frame(OP_TEXT, compress(small), rsv=4)
        f = self.recv_data(cl)
        self.assertEqual((f.rsv, f.payload), (0, small))
        cl.send_frame(OP_BINARY, small)
        f = self.recv_data(cl)
        self.assertEqual((f.rsv, f.payload), (0, small))

    def test_fragmented_compressed_message(self):
        cl = self.client("permessage-deflate")
        msg = json_like(50000)
        z = compress(msg)
        parts = [z[i:i + 100] for i in range(0, len(z), 100)]
        data = b"".join(build_frame(OP_TEXT if i == 0 else OP_CONT, p, fin=i == len(parts) - 1,
                                    rsv=4 if i == 0 else 0) for i, p in enumerate(parts))
        cl.send_raw(data)
        f = self.recv_data(cl)
        self.assertEqual(f.rsv, 4)
        self.assertEqual(inflate(f.payload), msg)

    def test_context_takeover_from_the_client(self):
        cl = self.client("permessage-deflate; client_max_window_bits")
        self.assertIn("client_max_window_bits=12", cl.response_headers["sec-websocket-extensions"])
        c = zlib.compressobj(6, zlib.DEFLATED, -12)
        msg = json_like(2000)
        for i in range(10):
            z = compress(msg + b"%d" % i, obj=c)
            if i:
                self.assertLess(len(z), 30, "refers back to the previous message")
            cl.send_frame(OP_TEXT, z, rsv=4)
            self.assertEqual(inflate(self.recv_data(cl).payload), msg + b"%d" % i)

    def test_server_window_honoured(self):
        cl = self.client("permessage-deflate; server_max_window_bits=9")
        self.assertIn("server_max_window_bits=9", cl.response_headers["sec-websocket-extensions"])
        # Repeats 2 KB apart: a 15-bit window would reach them, a 9-bit one cannot.
        unit = bytes((i * 37) & 0xFF for i in range(2048))
        msg = unit * 8 + json_like(4000)
        cl.send_frame(OP_BINARY, msg)
        f = self.recv_data(cl)
        self.assertEqual(f.rsv, 4)
        self.assertEqual(inflate(f.payload, wbits=9), msg)

    def test_bomb_closes_1009_with_bounded_memory(self):
        cl = self.client("permessage-deflate; client_no_context_takeover")
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        z = b"".join(c.compress(bytes(MiB)) for _ in range(256)) + c.flush(zlib.Z_SYNC_FLUSH)
        z = z[:-4]  # 256 MiB of zeros in about 256 KiB
        self.assertLess(len(z), MiB)
        before = metrics(self.port)
        rss0 = rss_kib(self.server.proc.pid)
        cl.send_frame(OP_BINARY, z, rsv=4)
        self.assertServerClose(cl, 1009, timeout=10)
        grew = rss_kib(self.server.proc.pid) - rss0
        self.assertLess(grew, 32 * 1024, "server RSS grew %d KiB for a 256 MiB bomb" % grew)
        after = metrics(self.port)
        self.assertEqual(after["wshub_deflate_bombs_total"], before["wshub_deflate_bombs_total"] + 1)

    def test_exactly_the_limit_inflates(self):
        cl = self.client("permessage-deflate; client_no_context_takeover")
        msg = json_like(MiB)
        cl.send_frame(OP_BINARY, compress(msg), rsv=4)
        self.assertEqual(inflate(self.recv_data(cl).payload), msg)
        cl.send_frame(OP_BINARY, compress(msg + b"x"), rsv=4)
        self.assertServerClose(cl, 1009)

    def test_corrupt_data_closes_1002(self):
        before = metrics(self.port)
        cl = self.client()
        cl.send_frame(OP_BINARY, b"\x07\x00garbage", rsv=4)  # reserved block type
        got = self.assertServerClose(cl, 1002)
        self.assertEqual(got.reason, b"invalid compressed data")
        self.assertEqual(metrics(self.port)["wshub_deflate_errors_total"],
                         before["wshub_deflate_errors_total"] + 1)

    def test_invalid_utf8_inside_compressed_text_closes_1007(self):
        cl = self.client()
        cl.send_frame(OP_TEXT, compress(b"valid then \xff invalid"), rsv=4)
        self.assertServerClose(cl, 1007)

    def test_rsv1_on_continuation_or_control_closes_1002(self):
        cl = self.client()
        cl.send_raw(build_frame(OP_TEXT, compress(b"abc"), fin=False, rsv=4) +
                    build_frame(OP_CONT, b"", rsv=4))
        self.assertServerClose(cl, 1002)
        cl = self.client()
        cl.send_raw(build_frame(0x9, b"", rsv=4))
        self.assertServerClose(cl, 1002)

    def test_rsv1_without_negotiation_closes_1002(self):
        cl = self.client("permessage-deflate; server_max_window_bits=8")  # declined
        self.assertIsNone(cl.response_headers.get("sec-websocket-extensions"))
        cl.send_frame(OP_TEXT, compress(b"hello"), rsv=4)
        self.assertServerClose(cl, 1002)

    def test_hub_endpoint_negotiates(self):
        cl = self.client("permessage-deflate", path="/ws?token=alice")
        self.assertEqual(cl.response_headers.get("sec-websocket-extensions"), EXT)


class NoCompressionTests(ServerTestCase):
    SERVER_ARGS = ("--no-compression",)

    def test_offer_ignored(self):
        cl = RawClient(self.port, headers=[("Sec-WebSocket-Extensions", "permessage-deflate")])
        self.addCleanup(cl.close)
        self.assertIsNone(cl.response_headers.get("sec-websocket-extensions"))
        msg = json_like(10000)
        cl.send_frame(OP_TEXT, msg)
        f = cl.recv_frame()
        self.assertEqual((f.rsv, f.payload), (0, msg))
        cl.send_frame(OP_TEXT, compress(msg), rsv=4)
        self.assertServerClose(cl, 1002)


class WebsocketsClientTests(ServerTestCase):
    def test_compressed_echo(self):
        async def main():
            uri = "ws://127.0.0.1:%d/echo" % self.port
            async with websockets.connect(uri, compression="deflate", max_size=4 * MiB,
                                          open_timeout=10) as ws:
                ext = ws.response_headers.get("Sec-WebSocket-Extensions")
                self.assertTrue(ext.startswith(EXT), ext)
                for n in (10, 5000, 300000):
                    text = json_like(n).decode()
                    await ws.send(text)
                    self.assertEqual(await asyncio.wait_for(ws.recv(), 10), text)
        before = metrics(self.port)
        run(main())
        after = metrics(self.port)
        self.assertGreaterEqual(after["wshub_deflate_compressed_messages_total"] -
                                before["wshub_deflate_compressed_messages_total"], 2)
        self.assertGreaterEqual(after["wshub_deflate_inflated_messages_total"] -
                                before["wshub_deflate_inflated_messages_total"], 2)


if __name__ == "__main__":
    unittest.main()
