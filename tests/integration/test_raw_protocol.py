"""RFC 6455 conformance of wshub's /echo endpoint, driven over raw sockets.

Every protocol-error case asserts the exact close code the server sends and that the
server then closes the TCP connection. Handshake cases check the HTTP status of the
refused upgrades. Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v
test_raw_protocol
"""

import os
import socket
import time
import unittest

from wshub_harness import (HOST, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                           HttpConn, RawClient, ServerTestCase, accept_for, build_frame,
                           close_payload, http_request, make_key, upgrade_request)

KiB = 1024


class RawTestCase(ServerTestCase):
    def client(self, **kw):
        c = RawClient(self.port, **kw)
        self.addCleanup(c.close)
        return c

    def assertEchoWorks(self, c, payload="still alive"):
        c.send_text(payload)
        self.assertEqual(c.recv_message(timeout=3), (OP_TEXT, payload.encode()))


# ---------------------------------------------------------------- protocol errors


class ProtocolErrorTests(RawTestCase):
    """Frames a server must refuse with 1002 (or 1007 for bad UTF-8)."""

    def test_unmasked_client_frame_1002(self):
        c = self.client()
        c.send_text("hello", mask=False)
        self.assertServerClose(c, 1002)

    def test_rsv1_set_1002(self):
        c = self.client()
        c.send_text("hello", rsv=4)
        self.assertServerClose(c, 1002)

    def test_rsv2_set_1002(self):
        c = self.client()
        c.send_text("hello", rsv=2)
        self.assertServerClose(c, 1002)

    def test_rsv3_set_1002(self):
        c = self.client()
        c.send_text("hello", rsv=1)
        self.assertServerClose(c, 1002)

    def test_rsv1_on_ping_1002(self):
        c = self.client()
        c.send_frame(OP_PING, b"x", rsv=4)
        self.assertServerClose(c, 1002)

    def test_ping_126_byte_payload_1002(self):
        c = self.client()
        c.send_frame(OP_PING, b"p" * 126)
        self.assertServerClose(c, 1002)

    def test_ping_125_byte_payload_ok(self):
        c = self.client()
        c.send_frame(OP_PING, b"p" * 125)
        f = c.recv_frame(timeout=3)
        self.assertEqual((f.opcode, f.payload), (OP_PONG, b"p" * 125))

    def test_fragmented_ping_1002(self):
        c = self.client()
        c.send_frame(OP_PING, b"frag", fin=False)
        self.assertServerClose(c, 1002)

    def test_continuation_without_start_1002(self):
        c = self.client()
        c.send_frame(OP_CONT, b"orphan", fin=True)
        self.assertServerClose(c, 1002)

    def test_text_inside_fragmented_message_1002(self):
        c = self.client()
        c.send_frame(OP_TEXT, b"first half", fin=False)
        c.send_frame(OP_TEXT, b"new message", fin=True)
        self.assertServerClose(c, 1002)

    def test_binary_inside_fragmented_message_1002(self):
        c = self.client()
        c.send_frame(OP_BINARY, b"\x01", fin=False)
        c.send_frame(OP_BINARY, b"\x02", fin=True)
        self.assertServerClose(c, 1002)

    def test_invalid_utf8_text_1007(self):
        c = self.client()
        c.send_text(b"hello \xff world")
        self.assertServerClose(c, 1007)

    def test_overlong_utf8_text_1007(self):
        c = self.client()
        c.send_text(b"\xc0\xaf")  # overlong '/'
        self.assertServerClose(c, 1007)

    def test_surrogate_utf8_text_1007(self):
        c = self.client()
        c.send_text(b"\xed\xa0\x80")  # U+D800
        self.assertServerClose(c, 1007)

    def test_text_ending_mid_sequence_1007(self):
        c = self.client()
        c.send_text(b"euro \xe2\x82")
        self.assertServerClose(c, 1007)

    def test_invalid_utf8_split_across_fragments_1007(self):
        c = self.client()
        # E2 82 is a valid prefix of U+20AC; '(' cannot continue it.
        c.send_frame(OP_TEXT, b"abc\xe2\x82", fin=False)
        c.send_frame(OP_CONT, b"(def", fin=True)
        self.assertServerClose(c, 1007)

    def test_incomplete_utf8_at_end_of_fragmented_message_1007(self):
        c = self.client()
        c.send_frame(OP_TEXT, b"abc", fin=False)
        c.send_frame(OP_CONT, b"\xf0\x9f\x98", fin=True)
        self.assertServerClose(c, 1007)

    def test_valid_utf8_split_across_fragments_echoes(self):
        c = self.client()
        euro = "\u20ac".encode()
        c.send_frame(OP_TEXT, b"a" + euro[:1], fin=False)
        c.send_frame(OP_CONT, euro[1:2], fin=False)
        c.send_frame(OP_CONT, euro[2:] + b"z", fin=True)
        self.assertEqual(c.recv_message(timeout=3), (OP_TEXT, b"a" + euro + b"z"))

    def test_invalid_utf8_fails_fast_before_frame_end(self):
        c = self.client()
        size = 64 * KiB
        payload = bytearray(b"a" * 100)
        payload[50] = 0xFF
        frame = build_frame(OP_TEXT, bytes(payload) + b"a" * (size - 100))
        header_len = 2 + 8 + 4  # 64-bit length + mask key
        self.assertEqual(len(frame), header_len + size)
        c.send_raw(frame[:header_len + 100])  # the remaining 65436 bytes are never sent
        self.assertServerClose(c, 1007, timeout=2.0,
                               msg="no 1007 before the rest of a 64 KiB frame was sent")

    def test_invalid_utf8_in_later_fragment_fails_fast(self):
        c = self.client()
        c.send_frame(OP_TEXT, b"x" * 1000, fin=False)
        frame = build_frame(OP_CONT, b"y" * 10 + b"\xfe" + b"y" * 40000, fin=True)
        c.send_raw(frame[:2 + 2 + 4 + 20])
        self.assertServerClose(c, 1007, timeout=2.0)


def _reserved_opcode_test(op):
    def test(self):
        c = self.client()
        c.send_frame(op, b"reserved")
        self.assertServerClose(c, 1002)
    test.__doc__ = "reserved opcode %#x -> 1002" % op
    return test


for _op in (0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF):
    setattr(ProtocolErrorTests, "test_reserved_opcode_%#x_1002" % _op, _reserved_opcode_test(_op))
del _op


# ---------------------------------------------------------------- closing handshake


class CloseFrameTests(RawTestCase):
    INVALID_CODES = (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000)
    VALID_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                   3000, 3999, 4000, 4999)

    def test_close_one_byte_payload_1002(self):
        c = self.client()
        c.send_frame(OP_CLOSE, b"\x03")
        self.assertServerClose(c, 1002)

    def test_invalid_close_codes_1002(self):
        for code in self.INVALID_CODES:
            with self.subTest(code=code):
                with RawClient(self.port) as c:
                    c.send_close(code)
                    self.assertServerClose(c, 1002)

    def test_valid_close_codes_echoed(self):
        for code in self.VALID_CODES:
            with self.subTest(code=code):
                with RawClient(self.port) as c:
                    c.send_close(code, b"bye")
                    self.assertServerClose(c, code)

    def test_close_invalid_utf8_reason_1007(self):
        c = self.client()
        c.send_close(1000, b"bad \xff reason")
        self.assertServerClose(c, 1007)

    def test_close_valid_utf8_reason_echoes_code(self):
        c = self.client()
        c.send_close(1000, "d\u00e9j\u00e0 vu".encode())
        self.assertServerClose(c, 1000)

    def test_empty_close_gets_empty_close(self):
        c = self.client()
        c.send_close()
        f = self.assertServerClose(c, None)
        self.assertEqual(f.payload, b"")

    def test_close_frame_is_unmasked_and_final(self):
        c = self.client()
        c.send_close(1000)
        f = c.expect_close(timeout=3)
        self.assertTrue(f.fin)
        self.assertFalse(f.masked)
        self.assertEqual(f.rsv, 0)

    def test_data_after_client_close_ignored(self):
        c = self.client()
        c.send_raw(build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_TEXT, b"late"))
        self.assertServerClose(c, 1000)
        self.assertEqual(c.skipped, [], "server answered frames sent after the close")

    def test_data_after_client_close_separate_send_ignored(self):
        c = self.client()
        c.send_close(1000)
        time.sleep(0.05)
        try:
            c.send_text("late")
        except OSError:
            pass  # the server may already have gone
        self.assertServerClose(c, 1000)
        self.assertEqual(c.skipped, [], "server answered frames sent after the close")

    def test_close_in_middle_of_fragmented_message(self):
        c = self.client()
        c.send_frame(OP_TEXT, b"part", fin=False)
        c.send_close(1000)
        self.assertServerClose(c, 1000)
        self.assertEqual(c.skipped, [])


# ---------------------------------------------------------------- message size


class MessageSizeTests(RawTestCase):
    SERVER_ARGS = ("--max-message-size", "64KiB")
    LIMIT = 64 * KiB

    def test_message_at_limit_echoes(self):
        c = self.client()
        data = os.urandom(self.LIMIT)
        c.send_binary(data)
        self.assertEqual(c.recv_message(timeout=5), (OP_BINARY, data))

    def test_over_limit_refused_from_header(self):
        c = self.client()
        # Only the header (64-bit length + mask key): no payload at all.
        c.send_raw(build_frame(OP_BINARY, b"", length=self.LIMIT + 1))
        self.assertServerClose(c, 1009, timeout=2.0)

    def test_over_limit_text_refused_from_header(self):
        c = self.client()
        c.send_raw(build_frame(OP_TEXT, b"", length=self.LIMIT + 1))
        self.assertServerClose(c, 1009, timeout=2.0)

    def test_declared_2_63_minus_1_refused(self):
        c = self.client()
        c.send_raw(build_frame(OP_BINARY, b"", length=(1 << 63) - 1))
        self.assertServerClose(c, 1009, timeout=2.0)
        self.assertEqual(self.server.healthz(), 200)
        with RawClient(self.port) as c2:
            self.assertEchoWorks(c2)

    def test_declared_length_top_bit_set_1002(self):
        c = self.client()
        c.send_raw(build_frame(OP_BINARY, b"", length=(1 << 64) - 1))
        self.assertServerClose(c, 1002, timeout=2.0)
        self.assertEqual(self.server.healthz(), 200)

    def test_fragments_summing_over_limit_1009(self):
        c = self.client()
        half = self.LIMIT // 2
        c.send_frame(OP_BINARY, b"a" * half, fin=False)
        c.send_frame(OP_CONT, b"b" * half, fin=False)  # exactly at the limit so far
        c.send_raw(build_frame(OP_CONT, b"", fin=True, length=1))  # header only: one more
        self.assertServerClose(c, 1009, timeout=2.0)

    def test_fragments_summing_to_limit_echo(self):
        c = self.client()
        parts = [os.urandom(self.LIMIT // 4) for _ in range(4)]
        c.send_frame(OP_BINARY, parts[0], fin=False)
        c.send_frame(OP_CONT, parts[1], fin=False)
        c.send_frame(OP_CONT, parts[2], fin=False)
        c.send_frame(OP_CONT, parts[3], fin=True)
        self.assertEqual(c.recv_message(timeout=5), (OP_BINARY, b"".join(parts)))

    def test_many_huge_declared_lengths_do_not_exhaust_server(self):
        for i in range(20):
            with RawClient(self.port) as c:
                c.send_raw(build_frame(OP_TEXT, b"", length=(1 << 62) + i))
                self.assertServerClose(c, 1009, timeout=2.0)
        self.assertEqual(self.server.healthz(), 200)


# ---------------------------------------------------------------- data and control


class EchoTests(RawTestCase):
    def test_text_echo(self):
        c = self.client()
        self.assertEqual(c.echo(OP_TEXT, "h\u00e9llo \U0001F600".encode()),
                         (OP_TEXT, "h\u00e9llo \U0001F600".encode()))

    def test_binary_echo(self):
        c = self.client()
        data = bytes(range(256)) * 4
        self.assertEqual(c.echo(OP_BINARY, data), (OP_BINARY, data))

    def test_echo_frames_are_unmasked(self):
        c = self.client()
        c.send_text("x")
        f = c.recv_frame(timeout=3)
        self.assertFalse(f.masked)
        self.assertTrue(f.fin)
        self.assertEqual(f.rsv, 0)

    def test_medium_and_large_lengths_echo(self):
        c = self.client()
        for n in (125, 126, 127, 65535, 65536, 300000):
            with self.subTest(n=n):
                data = os.urandom(n)
                self.assertEqual(c.echo(OP_BINARY, data, timeout=5), (OP_BINARY, data))

    def test_ping_with_payload_gets_pong(self):
        c = self.client()
        c.send_frame(OP_PING, b"ping-payload-\x00\xff")
        f = c.recv_frame(timeout=3)
        self.assertEqual(f.opcode, OP_PONG)
        self.assertEqual(f.payload, b"ping-payload-\x00\xff")

    def test_empty_ping_gets_empty_pong(self):
        c = self.client()
        c.send_frame(OP_PING, b"")
        f = c.recv_frame(timeout=3)
        self.assertEqual((f.opcode, f.payload), (OP_PONG, b""))

    def test_ping_inside_fragmented_message(self):
        c = self.client()
        c.send_frame(OP_TEXT, b"Hello, ", fin=False)
        c.send_frame(OP_PING, b"mid")
        time.sleep(0.05)
        c.send_frame(OP_CONT, b"wor", fin=False)
        c.send_frame(OP_PING, b"mid2")
        c.send_frame(OP_CONT, b"ld", fin=True)
        f = c.recv_frame(timeout=3)
        self.assertEqual((f.opcode, f.payload), (OP_PONG, b"mid"))
        f = c.recv_frame(timeout=3)
        self.assertEqual((f.opcode, f.payload), (OP_PONG, b"mid2"))
        self.assertEqual(c.recv_message(timeout=3, skip_control=False),
                         (OP_TEXT, b"Hello, world"))

    def test_unsolicited_pong_ignored(self):
        c = self.client()
        c.send_frame(OP_PONG, b"unsolicited")
        c.send_frame(OP_PONG, b"")
        self.assertEchoWorks(c)

    def test_one_byte_fragments_reassembled(self):
        c = self.client()
        n = 2000
        data = bytes((i * 7) & 0xFF for i in range(n))
        frames = [build_frame(OP_BINARY if i == 0 else OP_CONT, data[i:i + 1], fin=(i == n - 1))
                  for i in range(n)]
        c.send_raw(b"".join(frames))
        self.assertEqual(c.recv_message(timeout=5, skip_control=False), (OP_BINARY, data))

    def test_one_byte_text_fragments_reassembled(self):
        c = self.client()
        data = ("\u00e9\u20ac\U0001F600" * 50).encode()  # multi-byte chars split everywhere
        frames = [build_frame(OP_TEXT if i == 0 else OP_CONT, data[i:i + 1],
                              fin=(i == len(data) - 1)) for i in range(len(data))]
        c.send_raw(b"".join(frames))
        self.assertEqual(c.recv_message(timeout=5, skip_control=False), (OP_TEXT, data))

    def test_empty_fragments_reassembled(self):
        c = self.client()
        c.send_frame(OP_TEXT, b"", fin=False)
        c.send_frame(OP_CONT, b"", fin=False)
        c.send_frame(OP_CONT, b"", fin=True)
        self.assertEqual(c.recv_message(timeout=3, skip_control=False), (OP_TEXT, b""))

    def test_zero_length_text_echo(self):
        c = self.client()
        self.assertEqual(c.echo(OP_TEXT, b""), (OP_TEXT, b""))

    def test_zero_length_binary_echo(self):
        c = self.client()
        self.assertEqual(c.echo(OP_BINARY, b""), (OP_BINARY, b""))

    def test_frames_sent_byte_by_byte(self):
        c = self.client()
        text = ("byte by byte \u00e9 " * 12).encode()  # > 125 bytes: 16-bit length
        stream = (build_frame(OP_TEXT, text) + build_frame(OP_PING, b"abc") +
                  build_frame(OP_BINARY, b"\x00\x01\x02") + build_frame(OP_TEXT, b"z" * 70000))
        head = len(stream) - 70000 - 14
        for i in range(head + 30):
            c.send_raw(stream[i:i + 1])
            if i % 4 == 0:
                time.sleep(0.0005)
        c.send_raw(stream[head + 30:])
        self.assertEqual(c.recv_message(timeout=3, skip_control=False), (OP_TEXT, text))
        f = c.recv_frame(timeout=3)
        self.assertEqual((f.opcode, f.payload), (OP_PONG, b"abc"))
        self.assertEqual(c.recv_message(timeout=3, skip_control=False), (OP_BINARY, b"\x00\x01\x02"))
        self.assertEqual(c.recv_message(timeout=5, skip_control=False), (OP_TEXT, b"z" * 70000))

    def test_fragmented_message_with_pings_byte_by_byte(self):
        c = self.client()
        stream = (build_frame(OP_TEXT, b"frag-one ", fin=False) +
                  build_frame(OP_PING, b"p1") +
                  build_frame(OP_CONT, "\u00e9\u20ac ".encode(), fin=False) +
                  build_frame(OP_PONG, b"unsolicited") +
                  build_frame(OP_CONT, b"end", fin=True) +
                  build_frame(OP_CLOSE, close_payload(1000, "bye \u00e9")))
        for i in range(len(stream)):
            c.send_raw(stream[i:i + 1])
            if i % 4 == 0:
                time.sleep(0.0005)
        f = c.recv_frame(timeout=3)
        self.assertEqual((f.opcode, f.payload), (OP_PONG, b"p1"))
        self.assertEqual(c.recv_message(timeout=3, skip_control=False),
                         (OP_TEXT, "frag-one \u00e9\u20ac end".encode()))
        self.assertServerClose(c, 1000)

    def test_large_frame_in_uneven_chunks(self):
        c = self.client()
        data = os.urandom(200003)
        frame = build_frame(OP_BINARY, data)
        pos, sizes, k = 0, (1, 3, 7, 1000, 4093, 13, 65536, 2), 0
        while pos < len(frame):
            n = sizes[k % len(sizes)]
            c.send_raw(frame[pos:pos + n])
            pos += n
            k += 1
            if k % 50 == 0:
                time.sleep(0.001)
        self.assertEqual(c.recv_message(timeout=5, skip_control=False), (OP_BINARY, data))

    def test_several_frames_in_one_send(self):
        c = self.client()
        msgs = [(OP_TEXT, ("msg %d" % i).encode()) for i in range(20)]
        msgs.insert(7, (OP_BINARY, b"\x00bin\xff"))
        msgs.append((OP_TEXT, b""))
        c.send_raw(b"".join(build_frame(op, p) for op, p in msgs))
        for op, p in msgs:
            self.assertEqual(c.recv_message(timeout=3, skip_control=False), (op, p))

    def test_frames_in_same_segment_as_upgrade(self):
        extra = (build_frame(OP_TEXT, b"early bird") + build_frame(OP_BINARY, b"\x01\x02") +
                 build_frame(OP_PING, b"early ping"))
        c = self.client(extra=extra)
        self.assertEqual(c.recv_message(timeout=3, skip_control=False), (OP_TEXT, b"early bird"))
        self.assertEqual(c.recv_message(timeout=3, skip_control=False), (OP_BINARY, b"\x01\x02"))
        f = c.recv_frame(timeout=3)
        self.assertEqual((f.opcode, f.payload), (OP_PONG, b"early ping"))

    def test_partial_frame_in_same_segment_as_upgrade(self):
        frame = build_frame(OP_TEXT, b"split across the upgrade")
        c = self.client(extra=frame[:5])
        time.sleep(0.05)
        c.send_raw(frame[5:])
        self.assertEqual(c.recv_message(timeout=3, skip_control=False),
                         (OP_TEXT, b"split across the upgrade"))

    def test_protocol_error_in_same_segment_as_upgrade(self):
        c = self.client(extra=build_frame(OP_TEXT, b"unmasked", mask=False))
        self.assertServerClose(c, 1002)

    def test_zero_mask_key(self):
        c = self.client()
        c.send_text("plain", mask_key=b"\0\0\0\0")
        self.assertEqual(c.recv_message(timeout=3), (OP_TEXT, b"plain"))

    def test_non_minimal_length_encoding_accepted(self):
        # The reader documents that non-minimal lengths are accepted.
        c = self.client()
        c.send_frame(OP_TEXT, b"short", length_form=64)
        c.send_frame(OP_TEXT, b"short16", length_form=16)
        self.assertEqual(c.recv_message(timeout=3), (OP_TEXT, b"short"))
        self.assertEqual(c.recv_message(timeout=3), (OP_TEXT, b"short16"))

    def test_normal_close_after_messages(self):
        c = self.client()
        self.assertEchoWorks(c)
        c.send_close(1000, b"done")
        self.assertServerClose(c, 1000)


# ---------------------------------------------------------------- opening handshake


class CutReadTests(RawTestCase):
    """Frames and messages cut across the server's reads. Between messages a
    connection parses with its thread's shared reader; a read that ends inside a frame
    or message moves the state into the connection's own (ws/conn.c). These cut
    frames at every kind of place, with another connection's whole messages parsed by
    the shared reader in between, and check that nothing is mixed up or lost. The
    pauses only make separate reads likely; the outcome must be the same either way."""

    PAUSE = 0.05

    def pieces(self, c, data, cuts, other):
        """Sends data cut at the given offsets; between pieces `other` echoes a whole
        message."""
        last = 0
        for i, cut in enumerate(cuts + [len(data)]):
            c.send_raw(data[last:cut])
            last = cut
            time.sleep(self.PAUSE)
            if other is not None and cut != len(data):
                payload = "other %d" % i
                other.send_text(payload)
                self.assertEqual(other.recv_message(timeout=3), (OP_TEXT, payload.encode()))

    def test_frames_cut_in_header_payload_and_utf8(self):
        a, b = self.client(), self.client()
        text = ("\u00e9\u20ac\U0001F600 " * 40).encode()
        frame = build_frame(OP_TEXT, text, length_form=16)  # 4-byte header + 4-byte mask
        # inside the header, inside the mask, inside a 4-byte UTF-8 sequence, near the end
        self.pieces(a, frame, [1, 3, 6, 8 + 5, len(frame) - 1], b)
        self.assertEqual(a.recv_message(timeout=3), (OP_TEXT, text))
        self.assertEchoWorks(a)  # back between messages
        self.assertEchoWorks(b)

    def test_fragmented_message_across_reads(self):
        a, b = self.client(), self.client()
        first = build_frame(OP_BINARY, b"0123456789", fin=False)
        ping = build_frame(OP_PING, b"in between")
        last = build_frame(OP_CONT, b"abcdefghij", fin=True)
        data = first + ping + last
        self.pieces(a, data, [len(first), len(first) + 3, len(first) + len(ping) + 2], b)
        self.assertEqual(a.recv_message(timeout=3, skip_control=True), (OP_BINARY,
                                                                          b"0123456789abcdefghij"))
        self.assertEchoWorks(a)

    def test_whole_message_and_start_of_next_in_one_read(self):
        a, b = self.client(), self.client()
        one = build_frame(OP_TEXT, b"first")
        two = build_frame(OP_TEXT, b"second message")
        data = one + two
        self.pieces(a, data, [len(one) + 3], b)
        self.assertEqual(a.recv_message(timeout=3), (OP_TEXT, b"first"))
        self.assertEqual(a.recv_message(timeout=3), (OP_TEXT, b"second message"))

    def test_error_after_a_cut_is_1007(self):
        a, b = self.client(), self.client()
        frame = build_frame(OP_TEXT, b"valid start \xff then invalid")
        self.pieces(a, frame, [2, 8], b)
        self.assertServerClose(a, 1007)
        self.assertEchoWorks(b)


class HandshakeTests(RawTestCase):
    def request(self, raw, timeout=3):
        return http_request(self.port, raw, timeout=timeout)

    def test_valid_upgrade_101(self):
        key = make_key()
        with HttpConn(self.port) as h:
            h.send(upgrade_request(self.port, key=key))
            status, hdrs, _ = h.read_response()
        self.assertEqual(status, 101)
        self.assertEqual(hdrs.get("sec-websocket-accept"), accept_for(key))
        self.assertEqual(hdrs.get("upgrade", "").lower(), "websocket")
        self.assertIn("upgrade", hdrs.get("connection", "").lower())

    def test_missing_key_400(self):
        status, _, _ = self.request(upgrade_request(self.port, omit={"sec-websocket-key"}))
        self.assertEqual(status, 400)

    def test_bad_key_400(self):
        for key in ("not-base64!", "dGhlIHNhbXBsZSBub25jZQ", "c2hvcnQ=",
                    "dGhlIHNhbXBsZSBub25jZQ==AA", ""):
            with self.subTest(key=key):
                status, _, _ = self.request(upgrade_request(self.port, key=key))
                self.assertEqual(status, 400)

    def test_version_8_426(self):
        status, hdrs, _ = self.request(upgrade_request(self.port, version="8"))
        self.assertEqual(status, 426)
        self.assertEqual(hdrs.get("sec-websocket-version"), "13")

    def test_missing_version_426(self):
        status, hdrs, _ = self.request(upgrade_request(self.port, omit={"sec-websocket-version"}))
        self.assertEqual(status, 426)
        self.assertEqual(hdrs.get("sec-websocket-version"), "13")

    def test_no_upgrade_header_426(self):
        status, _, _ = self.request(upgrade_request(self.port, omit={"upgrade"}))
        self.assertEqual(status, 426)

    def test_post_405(self):
        status, _, _ = self.request(upgrade_request(self.port, method="POST",
                                                    headers=[("Content-Length", "0")]))
        self.assertEqual(status, 405)

    def test_http_1_0_400(self):
        status, _, _ = self.request(upgrade_request(self.port, http_version="HTTP/1.0"))
        self.assertEqual(status, 400)

    def test_origin_other_host_403(self):
        status, _, _ = self.request(upgrade_request(
            self.port, headers=[("Origin", "http://evil.example.com")]))
        self.assertEqual(status, 403)

    def test_origin_other_port_403(self):
        status, _, _ = self.request(upgrade_request(
            self.port, headers=[("Origin", "http://%s:%d" % (HOST, self.port + 1))]))
        self.assertEqual(status, 403)

    def test_origin_same_as_host_101(self):
        c = self.client(headers=[("Origin", "http://%s:%d" % (HOST, self.port))])
        self.assertEchoWorks(c)

    def test_no_origin_101(self):
        c = self.client()
        self.assertEchoWorks(c)

    def test_connection_header_token_list_101(self):
        # Firefox sends "Connection: keep-alive, Upgrade"; tokens are case-insensitive.
        key = make_key()
        raw = upgrade_request(self.port, key=key, omit={"connection", "upgrade"},
                              headers=[("Connection", "keep-alive, Upgrade"),
                                       ("Upgrade", "WebSocket")])
        with HttpConn(self.port) as h:
            h.send(raw)
            status, hdrs, _ = h.read_response()
        self.assertEqual(status, 101)
        self.assertEqual(hdrs.get("sec-websocket-accept"), accept_for(key))

    def test_missing_connection_upgrade_400(self):
        status, _, _ = self.request(upgrade_request(self.port, omit={"connection"}))
        self.assertEqual(status, 400)

    def test_missing_host_400(self):
        status, _, _ = self.request(upgrade_request(self.port, omit={"host"}))
        self.assertEqual(status, 400)

    def test_duplicate_key_400(self):
        status, _, _ = self.request(upgrade_request(
            self.port, headers=[("Sec-WebSocket-Key", make_key())]))
        self.assertEqual(status, 400)

    def test_http_2_0_request_line_505(self):
        status, _, _ = self.request(upgrade_request(self.port, http_version="HTTP/2.0"))
        self.assertEqual(status, 505)

    def test_refused_upgrade_keeps_server_healthy(self):
        for _ in range(20):
            self.request(upgrade_request(self.port, version="7"))
        self.assertEqual(self.server.healthz(), 200)

    def test_request_line_over_8k_414(self):
        path = "/echo?" + "a" * (9 * KiB)
        raw = upgrade_request(self.port, path=path)
        line_len = raw.index(b"\r\n")
        status, _, body = self.request(raw)
        self.assertEqual(status, 414, "a %d-byte request line (limit 8 KiB) got %d %r"
                         % (line_len, status, body))

    def test_100_headers_431(self):
        hdrs = [("X-Filler-%d" % i, "v") for i in range(100)]
        status, _, _ = self.request(upgrade_request(self.port, headers=hdrs))
        self.assertEqual(status, 431)

    def test_unknown_path_404(self):
        status, _, _ = self.request(upgrade_request(self.port, path="/nope"))
        self.assertEqual(status, 404)

    def test_keepalive_then_upgrade_same_connection(self):
        h = HttpConn(self.port)
        self.addCleanup(h.close)
        for _ in range(2):
            h.send(b"GET /healthz HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (HOST.encode(), self.port))
            status, _, body = h.read_response()
            self.assertEqual(status, 200)
            self.assertIn(b"ok", body)
        key = make_key()
        h.send(upgrade_request(self.port, key=key))
        status, hdrs, _ = h.read_response()
        self.assertEqual(status, 101)
        self.assertEqual(hdrs.get("sec-websocket-accept"), accept_for(key))
        c = RawClient.from_socket(h.sock, h.buf, port=self.port)
        self.assertEchoWorks(c, "after keep-alive")
        c.send_close(1000)
        self.assertServerClose(c, 1000)

    def test_pipelined_healthz_and_upgrade_in_one_send(self):
        h = HttpConn(self.port)
        self.addCleanup(h.close)
        get = b"GET /healthz HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (HOST.encode(), self.port)
        h.send(get + get + upgrade_request(self.port) + build_frame(OP_TEXT, b"piped"))
        self.assertEqual(h.read_response()[0], 200)
        self.assertEqual(h.read_response()[0], 200)
        self.assertEqual(h.read_response()[0], 101)
        c = RawClient.from_socket(h.sock, h.buf, port=self.port)
        self.assertEqual(c.recv_message(timeout=3), (OP_TEXT, b"piped"))


class HandshakeTimeoutTests(RawTestCase):
    SERVER_ARGS = ("--handshake-timeout", "300ms")

    def _expect_timeout_close(self, sock, t0):
        sock.settimeout(3)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except socket.timeout:
                self.fail("server kept a silent connection open for 3 s (got %r)" % data)
            if not chunk:
                break
            data += chunk
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 2.0, "closed only after %.2f s" % elapsed)
        self.assertGreater(elapsed, 0.2, "closed before the 300 ms timeout (%.2f s)" % elapsed)
        if data:
            self.assertTrue(data.startswith(b"HTTP/1.1 408"), data[:200])
        return data

    def test_silent_client_dropped(self):
        t0 = time.monotonic()
        s = socket.create_connection((HOST, self.port), timeout=3)
        self.addCleanup(s.close)
        self._expect_timeout_close(s, t0)

    def test_partial_request_dropped(self):
        t0 = time.monotonic()
        s = socket.create_connection((HOST, self.port), timeout=3)
        self.addCleanup(s.close)
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        data = self._expect_timeout_close(s, t0)
        self.assertTrue(data.startswith(b"HTTP/1.1 408"), data[:200])

    def test_upgraded_connection_not_subject_to_handshake_timeout(self):
        c = self.client()
        time.sleep(0.6)
        self.assertEchoWorks(c)


# ---------------------------------------------------------------- startup


class StartupTests(ServerTestCase):
    START_CLASS_SERVER = False

    def test_listen_port_zero_logs_port(self):
        """--listen 127.0.0.1:0 must bind an ephemeral port and log it."""
        srv = self.start_server()
        self.assertFalse(srv.port_zero_refused,
                         "wshub refused --listen 127.0.0.1:0: %s" % srv.port_zero_error[:500])
        self.assertEqual(srv.healthz(), 200)


if __name__ == "__main__":
    unittest.main()
