#!/usr/bin/python3
"""wshub's WebSocket conformance suite: RFC 6455 cases run against /echo over raw sockets.

The case list follows the numbering of the public Autobahn|Testsuite case list
(sections 1-7, 9, 10, and compression in 12 and 13) and adds wshub cases where the RFC
asks for more than Autobahn checks; those are marked "(wshub)" in their description.
Every case is written here from RFC 6455 and RFC 7692.

Each case sends exact bytes (any opcode, RSV bit, mask, declared length, split at any
byte, with pauses where the case needs them) and asserts one exact outcome:

  * echo   - the listed messages / pongs come back, nothing else, and the connection
             stays open: our close 1000 is answered with close 1000 and the server then
             closes the TCP connection;
  * close  - the listed frames, then a close frame with the given code, then the server
             closes the TCP connection, and nothing after the close frame;
  * fail fast - a close that must arrive before the rest of the message is sent (the
             runner waits for it at the marked point and only then sends the rest);
  * dropped - the server closes the TCP connection (a close frame is allowed, not
             required: the RFC leaves it open).

Compression cases (12, 13) offer permessage-deflate, check the answer against RFC 7692
section 7.1, send messages compressed with zlib (with context takeover unless
client_no_context_takeover was agreed; fragmented after compression, as Autobahn does)
and inflate every echo with a fresh inflater of the agreed server window, so an echo
that relied on context or a larger window fails. Autobahn sends 1000 messages per case;
here the count is capped by a byte budget (PMD_BUDGET) to keep `make test` short.

Outcomes that RFC 6455 or Autobahn tolerate but that are less than the strict behaviour
are reported as NON-STRICT (for example a protocol error answered by dropping TCP
without a close frame, or a UTF-8 error reported only once the whole frame arrived).
NON-STRICT and FAIL both count as failures: exit status 0 only when every applicable
case passes.

Usage:
  WSHUB_BIN=build/wshub /usr/bin/python3 tests/conformance/conformance.py
      [--section N ...] [--case PREFIX ...] [--markdown FILE] [--verbose]

--markdown FILE writes the tables as Markdown: when FILE holds the two markers
<!-- conformance:begin --> and <!-- conformance:end -->, only the text between them is
replaced; otherwise FILE is written whole. WSHUB_VARIANT=asan (set by ctest for the
sanitizer build, or guessed from a binary name ending in -asan) doubles the timeouts;
the sizes stay the same (the ASan build handles 16 MiB in well under 10 s per case).

Standard library only, plus tests/integration/wshub_harness.py.
"""

import argparse
import datetime
import os
import platform
import socket
import struct
import subprocess
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from wshub_harness import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                           ConnectionClosed, RawClient, WshubServer, build_frame)

KiB = 1024
MiB = 1024 * 1024

PASS, FAIL, NONSTRICT, NA = "PASS", "FAIL", "NON-STRICT", "N/A"
_RANK = {PASS: 0, NA: 0, NONSTRICT: 1, FAIL: 2}


def variant_name():
    v = os.environ.get("WSHUB_VARIANT", "")
    if v:
        return v
    b = os.environ.get("WSHUB_BIN", "")
    return "asan" if b.endswith("-asan") else "plain"


ASAN = variant_name() == "asan"
SLOW = 2.0 if ASAN else 1.0
READ_TIMEOUT = 3.0 * SLOW    # waiting for an expected frame or for the TCP close
FF_WAIT = 1.0 * SLOW         # fail fast: how long the close may take after the bad byte
QUIET = 0.2 * SLOW           # Autobahn's "wait" between parts (it uses 1 s)
BYTE_PAUSE = 0.001           # pause between octet-wise chops
CASE_DEADLINE = 10.0 * SLOW  # no case runs longer (remaining variants are then skipped)


# --------------------------------------------------------------------------- frames

def frame(op, payload=b"", fin=True, rsv=0, mask=True, length=None, mask_key=None):
    return build_frame(op, payload, fin=fin, rsv=rsv, mask=mask, length=length, mask_key=mask_key)


def text(payload, **kw):
    return frame(OP_TEXT, payload, **kw)


def binary(payload, **kw):
    return frame(OP_BINARY, payload, **kw)


def cont(payload, **kw):
    return frame(OP_CONT, payload, **kw)


def ping(payload=b"", **kw):
    return frame(OP_PING, payload, **kw)


def pong(payload=b"", **kw):
    return frame(OP_PONG, payload, **kw)


def close(code=None, reason=b"", **kw):
    p = b"" if code is None else struct.pack("!H", code) + reason
    return frame(OP_CLOSE, p, **kw)


def header_len(n):
    """Length of a masked client frame header for an n-byte payload."""
    return 2 + (0 if n < 126 else 2 if n <= 0xFFFF else 8) + 4


def fragments(op, payload, size):
    """A message split into frames of `size` payload bytes (the last may be shorter)."""
    parts = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
    out = []
    for i, p in enumerate(parts):
        out.append(frame(op if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1)))
    return b"".join(out)


def split_frames(op, payload, cuts):
    """A message split into frames at the given byte offsets."""
    bounds = [0] + list(cuts) + [len(payload)]
    parts = [payload[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]
    return b"".join(frame(op if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1))
                    for i, p in enumerate(parts))


def utf8_first_invalid(data):
    """Index of the first byte at which `data` stops being a prefix of valid UTF-8
    (RFC 3629), or None when every byte so far can still be part of valid UTF-8."""
    need, lo, hi = 0, 0x80, 0xBF
    for i, b in enumerate(data):
        if need == 0:
            if b < 0x80:
                continue
            if 0xC2 <= b <= 0xDF:
                need, lo, hi = 1, 0x80, 0xBF
            elif b == 0xE0:
                need, lo, hi = 2, 0xA0, 0xBF
            elif 0xE1 <= b <= 0xEC or b in (0xEE, 0xEF):
                need, lo, hi = 2, 0x80, 0xBF
            elif b == 0xED:
                need, lo, hi = 2, 0x80, 0x9F
            elif b == 0xF0:
                need, lo, hi = 3, 0x90, 0xBF
            elif 0xF1 <= b <= 0xF3:
                need, lo, hi = 3, 0x80, 0xBF
            elif b == 0xF4:
                need, lo, hi = 3, 0x80, 0x8F
            else:
                return i
        else:
            if not lo <= b <= hi:
                return i
            need, lo, hi = need - 1, 0x80, 0xBF
    return None


def utf8_valid(data):
    try:
        data.decode("utf-8", "strict")
        return True
    except UnicodeDecodeError:
        return False


def make_text(n):
    """n bytes of valid UTF-8 mixing 1- to 4-byte sequences."""
    pat = HELLO_UTF8 + b" " + KOSME + " \U0001d11e *".encode()
    b = (pat * (n // len(pat) + 1))[:n]
    for k in range(n, max(-1, n - 4), -1):
        if utf8_valid(b[:k]):
            return b[:k] + b"*" * (n - k)
    raise AssertionError("unreachable")


def make_binary(n):
    """n bytes covering every byte value (not valid UTF-8)."""
    pat = bytes(range(256))[::-1]
    return (pat * (n // 256 + 1))[:n]


# --------------------------------------------------------------------------- expectations

# Events are (kind, payload): kind is "text", "binary", "pong", "ping", "close" (payload:
# the close frame's raw payload) or "eof" (the server closed the TCP connection).

def ev_text(p):
    return ("text", p.encode() if isinstance(p, str) else bytes(p))


def ev_binary(p):
    return ("binary", bytes(p))


def ev_pong(p=b""):
    return ("pong", p.encode() if isinstance(p, str) else bytes(p))


def close_code_of(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


ERROR_CODES = (1002, 1007, 1009)


class Expect:
    """end: "open" (echo cases), "close" (a close frame with `code`, None meaning an
    empty close payload), or "drop" (TCP closed, close frame optional).
    failfast: the close must arrive at the case's failfast mark, before the rest is
    sent (later: NON-STRICT). alt_codes: close codes Autobahn accepts instead of `code`
    (NON-STRICT). drop_nonstrict: a TCP close without any close frame is NON-STRICT
    rather than FAIL (the RFC lets an endpoint fail a connection without one)."""

    def __init__(self, end, events=(), code=None, failfast=False, alt_codes=(),
                 drop_nonstrict=None):
        self.end = end
        self.events = list(events)
        self.code = code
        self.failfast = failfast
        self.alt_codes = tuple(alt_codes)
        if drop_nonstrict is None:
            drop_nonstrict = end == "close" and code in ERROR_CODES
        self.drop_nonstrict = drop_nonstrict

    def describe(self):
        parts = [fmt_events(self.events)] if self.events else []
        if self.end == "open":
            if not parts:
                return "nothing back; stays open"
            return "echo " + parts[0]
        if self.end == "drop":
            return ", ".join(parts + ["TCP closed"])
        c = "close %s" % ("(empty)" if self.code is None else self.code)
        if self.failfast:
            c += " fail-fast"
        return ", ".join(parts + [c])


def E_echo(*events):
    return Expect("open", events)


def E_close(code, *events, **kw):
    return Expect("close", events, code=code, **kw)


def E_drop(*events):
    return Expect("drop", events)


# --------------------------------------------------------------------------- formatting

def fmt_payload(p, kind):
    if len(p) <= 24:
        if kind == "binary":
            return "0x" + p.hex() if p else "''"
        try:
            s = p.decode("utf-8")
            if s.isprintable():
                return repr(s)
        except UnicodeDecodeError:
            pass
        return "0x" + p.hex()
    return "(%s)" % fmt_size(len(p))


def fmt_event(ev):
    kind, p = ev
    if kind == "eof":
        return "TCP closed"
    if kind == "close":
        code = close_code_of(p)
        if code is None:
            return "close (empty)" if not p else "close 0x%s" % p.hex()
        reason = p[2:]
        r = ""
        if reason:
            try:
                r = " %r" % reason.decode("utf-8")[:30]
            except UnicodeDecodeError:
                r = " 0x%s" % reason[:30].hex()
        return "close %d%s" % (code, r)
    f = fmt_payload(p, kind)
    return "%s %s" % (kind, f) if not f.startswith("(") else "%s%s" % (kind, f)


def fmt_events(events):
    out = []
    i = 0
    while i < len(events):
        j = i
        while j + 1 < len(events) and events[j + 1] == events[i]:
            j += 1
        s = fmt_event(events[i])
        out.append(s if j == i else "%s x%d" % (s, j - i + 1))
        i = j + 1
    return ", ".join(out) if out else "nothing"


def fmt_size(n):
    if n >= MiB and n % MiB == 0:
        return "%d MiB" % (n // MiB)
    if n >= KiB and n % KiB == 0:
        return "%d KiB" % (n // KiB)
    return "%d B" % n


# --------------------------------------------------------------------------- one connection

class Session:
    """One WebSocket connection to /echo driven by a script of steps.

    Steps (tuples):
      ("send", data)                    one sendall
      ("chops", data, size, pause)      data in writes of `size` bytes, `pause` s between
      ("pause", seconds)                sleep (the server's frames are read later)
      ("quiet", seconds)                read for `seconds`; a close or TCP close here is
                                        premature (the data so far was valid)
      ("failfast",)                     wait up to FF_WAIT for the server's close; if it
                                        comes, the remaining steps are not sent
      ("await", event)                  wait for `event` before going on (late: NON-STRICT)
      ("shutdown",)                     half-close our side (TCP FIN)
      ("rtt", op, payload, count)       `count` round trips: send, wait for the echo
    """

    def __init__(self, port, deadline):
        self.deadline = deadline
        self.cl = RawClient(port, timeout=min(5.0, READ_TIMEOUT))
        self.events = []
        self.problems = []
        self.frag = None
        self.eof = False
        self.stopped = False      # no more sending (the server closed, or a send failed)
        self.ff = None            # True: closed at the failfast mark; False: only later
        self.premature = None     # event that arrived during a quiet step
        self.late = []
        self.send_error = None
        self.final_close_at = None
        self.elapsed = 0.0        # from the first step until the expected frames arrived
        self.t0 = time.monotonic()

    # -- receiving

    def _left(self, timeout):
        return max(0.0, min(timeout, self.deadline - time.monotonic()))

    def closed(self):
        return any(k in ("close", "eof") for k, _ in self.events)

    def _add(self, ev):
        self.events.append(ev)
        return ev

    def read_event(self, timeout):
        """Reads until one event arrives (returned) or timeout (None)."""
        end = time.monotonic() + self._left(timeout)
        while not self.eof:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                f = self.cl.recv_frame(timeout=left)
            except socket.timeout:
                return None
            except ConnectionClosed:
                self.eof = True
                return self._add(("eof", b""))
            except OSError as e:
                self.eof = True
                self.problems.append("read error %s" % e)
                return self._add(("eof", b""))
            ev = self._frame_event(f)
            if ev is not None:
                return self._add(ev)
        return None

    def _frame_event(self, f):
        if f.masked:
            self.problems.append("server frame is masked (RFC 6455 5.1)")
        if f.rsv:
            self.problems.append("server frame has RSV bits %d set" % f.rsv)
        op = f.opcode
        if op in (OP_TEXT, OP_BINARY):
            kind = "text" if op == OP_TEXT else "binary"
            if self.frag is not None:
                self.problems.append("server started a message inside a fragmented one")
            if f.fin:
                self.frag = None
                return (kind, f.payload)
            self.frag = (kind, [f.payload])
            return None
        if op == OP_CONT:
            if self.frag is None:
                self.problems.append("server sent a continuation frame with no message")
                return None
            self.frag[1].append(f.payload)
            if f.fin:
                kind, parts = self.frag
                self.frag = None
                return (kind, b"".join(parts))
            return None
        if op in (OP_PING, OP_PONG, OP_CLOSE):
            if not f.fin or len(f.payload) > 125:
                self.problems.append("server control frame fragmented or over 125 bytes")
            if op == OP_CLOSE:
                code = close_code_of(f.payload)
                if len(f.payload) == 1:
                    self.problems.append("server close frame with a 1-byte payload")
                elif code is not None and not (1000 <= code <= 1003 or 1007 <= code <= 1014
                                               or 3000 <= code <= 4999):
                    self.problems.append("server sent close code %d" % code)
                return ("close", f.payload)
            return ("ping" if op == OP_PING else "pong", f.payload)
        self.problems.append("server sent reserved opcode %#x" % op)
        return None

    def wait_until(self, pred, timeout):
        """Reads events until pred() holds, the connection ends, or timeout."""
        end = time.monotonic() + self._left(timeout)
        while not pred():
            if self.eof:
                return pred()
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.read_event(left)
        return True

    # -- sending

    def _send(self, data):
        try:
            self.cl.sock.sendall(data)
            return True
        except OSError as e:
            self.send_error = "send failed: %s" % (e.strerror or e)
            self.stopped = True
            return False

    def run(self, steps):
        t0 = time.monotonic()
        for st in steps:
            if self.stopped or time.monotonic() > self.deadline:
                break
            kind = st[0]
            if kind == "send":
                self._send(st[1])
            elif kind == "chops":
                data, size, pause = memoryview(st[1]), st[2], st[3]
                for i in range(0, len(data), size):
                    if not self._send(data[i:i + size]):
                        break
                    if pause:
                        time.sleep(pause)
            elif kind == "pause":
                time.sleep(st[1])
            elif kind == "quiet":
                end = time.monotonic() + st[1]
                while time.monotonic() < end and not self.closed():
                    self.read_event(end - time.monotonic())
                if self.closed() and self.premature is None:
                    self.premature = next(e for e in self.events if e[0] in ("close", "eof"))
            elif kind == "failfast":
                got = self.wait_until(self.closed, FF_WAIT)
                if self.ff is None:
                    self.ff = got
                if got:
                    self.stopped = True
            elif kind == "await":
                want = st[1]
                # If the server closed instead, the judgement shows it.
                if not self.wait_until(lambda: want in self.events or self.closed(), READ_TIMEOUT):
                    self.late.append(want)
            elif kind == "shutdown":
                try:
                    self.cl.sock.shutdown(socket.SHUT_WR)
                except OSError as e:
                    self.send_error = "shutdown failed: %s" % e
            elif kind == "rtt":
                _, op, payload, count = st
                want = ("text" if op == OP_TEXT else "binary", payload)
                f = frame(op, payload)
                for _ in range(count):
                    if not self._send(f):
                        break
                    ev = self.read_event(READ_TIMEOUT)
                    if ev != want:
                        break
            else:
                raise ValueError("unknown step %r" % (kind,))
        self.t0 = t0

    def finish(self, exp):
        """Collects what the server sends after the script, per the expectation."""
        if exp.end == "open":
            n = len(exp.events)
            self.wait_until(lambda: len([e for e in self.events if e[0] != "eof"]) >= n
                            or self.closed(), READ_TIMEOUT)
            self.elapsed = time.monotonic() - self.t0
            if not self.closed():
                # Our close 1000 must be answered with close 1000; anything the server
                # sends before that answer is recorded and fails the comparison.
                self.final_close_at = len(self.events)
                self._send(close(1000))
                self.wait_until(self.closed, READ_TIMEOUT)
        if any(k == "close" for k, _ in self.events) or exp.end != "open":
            self.wait_until(lambda: self.eof, READ_TIMEOUT)

    def close_socket(self):
        self.cl.close()


def run_session(port, steps, exp, deadline):
    s = Session(port, deadline)
    try:
        s.run(steps)
        s.finish(exp)
    finally:
        s.close_socket()
    return s


# --------------------------------------------------------------------------- judgement

def judge(exp, s):
    """(result, observed) for one session."""
    evs = s.events
    obs = fmt_events(evs)
    notes = []
    if s.send_error and not s.closed():
        notes.append(s.send_error)
    if s.problems:
        return FAIL, "%s [%s]" % (obs, "; ".join(sorted(set(s.problems))))
    if s.premature is not None:
        return FAIL, "%s [%s arrived before the invalid data was sent]" % (
            obs, fmt_event(s.premature))

    first_close = next((i for i, e in enumerate(evs) if e[0] in ("close", "eof")), len(evs))
    before = evs[:first_close]
    rest = evs[first_close:]
    result = PASS

    if exp.end == "open":
        if before != exp.events:
            return FAIL, obs
        if s.final_close_at is None or first_close < s.final_close_at:
            return FAIL, obs + " [server ended the connection on its own]"
        if not rest or rest[0][0] != "close":
            return FAIL, obs + " [our close 1000 got no close frame back]"
        if close_code_of(rest[0][1]) != 1000:
            return FAIL, obs + " [our close 1000 was answered with another code]"
        if rest[1:] != [("eof", b"")]:
            return FAIL, obs + (" [server did not close TCP within %.0f s]" % READ_TIMEOUT
                                if len(rest) == 1 else " [frames after the close]")
        return PASS, (fmt_events(before) + "; open" if before else "nothing; open")

    if before != exp.events:
        return FAIL, obs
    if exp.end == "drop":
        tail = [e for e in rest if e[0] != "close"]
        if tail != [("eof", b"")] or len(rest) > 2:
            return FAIL, obs + ("" if rest else " [still open after %.0f s]" % READ_TIMEOUT)
        return PASS, obs

    # exp.end == "close"
    if not rest:
        return FAIL, obs + " [no close within %.0f s]" % READ_TIMEOUT
    if rest[0][0] == "eof":
        if exp.drop_nonstrict:
            result, notes = NONSTRICT, notes + ["TCP dropped without a close frame"]
        else:
            return FAIL, obs + " [TCP closed without a close frame]"
    else:
        code = close_code_of(rest[0][1])
        if exp.code is None and rest[0][1] != b"":
            if code in exp.alt_codes:
                result, notes = NONSTRICT, notes + ["empty close answered with a code"]
            else:
                return FAIL, obs
        elif exp.code is not None and code != exp.code:
            if code in exp.alt_codes:
                result, notes = NONSTRICT, notes + ["code %s instead of %s" % (code, exp.code)]
            else:
                return FAIL, obs
        if rest[1:] != [("eof", b"")]:
            if len(rest) == 1:
                return FAIL, obs + " [server did not close TCP within %.0f s]" % READ_TIMEOUT
            return FAIL, obs + " [frames after the close frame]"
    if exp.failfast and not s.ff:
        result = NONSTRICT
        notes.append("closed only after the rest of the message was sent, not fail-fast")
    if s.late:
        result = NONSTRICT if result == PASS else result
        notes.append("%s had not arrived when the rest was sent" % fmt_events(s.late))
    if notes:
        obs += " [%s]" % "; ".join(notes)
    return result, obs


def judge_open_late(exp, s, result, obs):
    if exp.end == "open" and s.late and result == PASS:
        return NONSTRICT, obs + " [%s had not arrived when the rest was sent]" % fmt_events(s.late)
    return result, obs


# --------------------------------------------------------------------------- cases

class Variant:
    __slots__ = ("label", "steps", "expect")

    def __init__(self, label, steps, expect):
        self.label, self.steps, self.expect = label, steps, expect


class Case:
    """id, description, and either one script (steps + expect) or several variants,
    each on its own connection, which must all behave as expected."""

    def __init__(self, cid, desc, steps=None, expect=None, variants=None, expected=None,
                 na=None, timed=False, summary=None):
        self.id = cid
        self.desc = desc
        if variants is None and steps is not None:
            variants = [Variant("", steps, expect)]
        self.variants = variants or []
        self.expected = expected or (expect.describe() if expect else "")
        self.na = na
        self.timed = timed
        self.summary = summary  # observed text when every variant passes (multi-variant)

    def run(self, port):
        if self.na:
            return NA, self.na, 0.0
        t0 = time.monotonic()
        deadline = t0 + CASE_DEADLINE
        worst, first_bad, n_bad, first_obs, done = PASS, None, 0, None, 0
        for v in self.variants:
            if time.monotonic() > deadline:
                worst = FAIL
                first_bad = first_bad or ("case deadline (%.0f s) hit after %d of %d variants"
                                          % (CASE_DEADLINE, done, len(self.variants)))
                n_bad += len(self.variants) - done
                break
            try:
                s = run_session(port, v.steps, v.expect, deadline)
                res, obs = judge(v.expect, s)
                res, obs = judge_open_late(v.expect, s, res, obs)
                if self.timed:
                    obs += " in %.2f s" % s.elapsed
            except (OSError, ConnectionClosed, AssertionError) as e:
                res, obs = FAIL, "connection failed: %s" % e
            done += 1
            if first_obs is None:
                first_obs = obs
            if res != PASS:
                n_bad += 1
                if _RANK[res] > _RANK[worst]:
                    worst = res
                if first_bad is None:
                    first_bad = ("%s: %s" % (v.label, obs)) if v.label else obs
        dt = time.monotonic() - t0
        if len(self.variants) == 1:
            return worst, (first_bad or first_obs), dt
        if worst == PASS:
            obs = self.summary or "as expected"
            return PASS, "%s (all %d variants)" % (obs, len(self.variants)), dt
        return worst, "%d of %d variants not as expected; first: %s" % (
            n_bad, len(self.variants), first_bad), dt


# --------------------------------------------------------------------------- section 1

def section1():
    cases = []
    sizes = [0, 125, 126, 127, 128, 65535, 65536]
    for i, n in enumerate(sizes, 1):
        p = b"*" * n
        cases.append(Case("1.1.%d" % i, "Text message with a %d-byte payload" % n,
                          [("send", text(p))], E_echo(ev_text(p))))
    p = b"*" * 65536
    cases.append(Case("1.1.8", "Text message with a 65536-byte payload, written in chops of 997 bytes",
                      [("chops", text(p), 997, 0)], E_echo(ev_text(p))))
    for i, n in enumerate(sizes, 1):
        p = b"\xfe" * n
        cases.append(Case("1.2.%d" % i, "Binary message with a %d-byte payload" % n,
                          [("send", binary(p))], E_echo(ev_binary(p))))
    p = b"\xfe" * 65536
    cases.append(Case("1.2.8", "Binary message with a 65536-byte payload, written in chops of 997 bytes",
                      [("chops", binary(p), 997, 0)], E_echo(ev_binary(p))))
    # wshub: masking and length rules of RFC 6455 5.1-5.3 that Autobahn cannot test
    # against a server.
    cases += [
        Case("1.3.1", "(wshub) Unmasked text frame from the client (RFC 5.1: server must fail)",
             [("send", text(b"Hello, world!", mask=False))], E_close(1002)),
        Case("1.3.2", "(wshub) Unmasked empty binary frame",
             [("send", binary(b"", mask=False))], E_close(1002)),
        Case("1.3.3", "(wshub) Unmasked ping", [("send", ping(b"ping", mask=False))], E_close(1002)),
        Case("1.3.4", "(wshub) Unmasked close 1000", [("send", close(1000, mask=False))],
             E_close(1002)),
        Case("1.3.5", "(wshub) Echo, then an unmasked frame: the echo comes first, then 1002",
             [("send", text(b"first") + text(b"second", mask=False))],
             E_close(1002, ev_text(b"first"))),
        Case("1.3.6", "(wshub) 64-bit length with the most significant bit set (RFC 5.2), "
             "header only", [("send", binary(b"", length=(1 << 63) + 5)), ("failfast",),
                             ("send", b"x" * 64)], E_close(1002, failfast=True)),
        Case("1.3.7", "(wshub) All-zero masking key", [("send", text(b"zero key", mask_key=b"\0" * 4))],
             E_echo(ev_text(b"zero key"))),
        Case("1.3.8", "(wshub) 300-byte text message written one byte at a time (header split "
             "at every byte)", [("chops", text(make_text(300)), 1, 0)],
             E_echo(ev_text(make_text(300)))),
    ]
    return cases


# --------------------------------------------------------------------------- section 2

def section2():
    c = []
    c.append(Case("2.1", "Ping without payload", [("send", ping())], E_echo(ev_pong())))
    c.append(Case("2.2", "Ping with a small text payload", [("send", ping(b"Hello, world!"))],
                  E_echo(ev_pong(b"Hello, world!"))))
    bp = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"
    c.append(Case("2.3", "Ping with a small binary (non-UTF-8) payload", [("send", ping(bp))],
                  E_echo(ev_pong(bp))))
    p125 = b"\xfe" * 125
    c.append(Case("2.4", "Ping with a 125-byte binary payload", [("send", ping(p125))],
                  E_echo(ev_pong(p125))))
    c.append(Case("2.5", "Ping with a 126-byte payload (control frames are limited to 125)",
                  [("send", ping(b"\xfe" * 126))], E_close(1002)))
    c.append(Case("2.6", "Ping with a 125-byte payload, written octet by octet",
                  [("chops", ping(p125), 1, BYTE_PAUSE)], E_echo(ev_pong(p125))))
    c.append(Case("2.7", "Unsolicited pong without payload", [("send", pong())], E_echo()))
    c.append(Case("2.8", "Unsolicited pong with payload", [("send", pong(b"unsolicited pong payload"))],
                  E_echo()))
    c.append(Case("2.9", "Unsolicited pong, then a ping: only the ping is answered",
                  [("send", pong(b"unsolicited pong payload") + ping(b"ping payload"))],
                  E_echo(ev_pong(b"ping payload"))))
    pings = [("payload-%d" % i).encode() for i in range(10)]
    c.append(Case("2.10", "10 pings with payloads in one write: 10 pongs in order",
                  [("send", b"".join(ping(p) for p in pings))], E_echo(*[ev_pong(p) for p in pings])))
    c.append(Case("2.11", "10 pings with payloads, written octet by octet: 10 pongs in order",
                  [("chops", b"".join(ping(p) for p in pings), 1, BYTE_PAUSE)],
                  E_echo(*[ev_pong(p) for p in pings])))
    c.append(Case("2.12", "(wshub) Unsolicited pong with a 126-byte payload",
                  [("send", pong(b"\xfe" * 126))], E_close(1002)))
    c.append(Case("2.13", "(wshub) Ping declaring a 2^32-byte payload (64-bit length), header only",
                  [("send", ping(b"", length=1 << 32)), ("failfast",), ("send", b"x" * 128)],
                  E_close(1002, failfast=True)))
    return c


# --------------------------------------------------------------------------- section 3

def section3():
    hw = b"Hello, world!"
    c = []
    c.append(Case("3.1", "Small text message with RSV = 1", [("send", text(hw, rsv=1))],
                  E_close(1002)))
    c.append(Case("3.2", "Text message, then one with RSV = 2, then a ping (one write)",
                  [("send", text(hw) + text(hw, rsv=2) + ping(hw))], E_close(1002, ev_text(hw))))
    c.append(Case("3.3", "Text message, then one with RSV = 3, then a ping (frame by frame, "
                  "with pauses)", [("send", text(hw)), ("await", ev_text(hw)),
                                   ("send", text(hw, rsv=3)), ("pause", QUIET), ("send", ping(hw))],
                  E_close(1002, ev_text(hw))))
    c.append(Case("3.4", "Text message, then one with RSV = 4, then a ping (octet by octet)",
                  [("chops", text(hw) + text(hw, rsv=4) + ping(hw), 1, BYTE_PAUSE)],
                  E_close(1002, ev_text(hw))))
    c.append(Case("3.5", "Small binary message with RSV = 5",
                  [("send", binary(b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", rsv=5))], E_close(1002)))
    c.append(Case("3.6", "Ping with RSV = 6", [("send", ping(hw, rsv=6))], E_close(1002)))
    c.append(Case("3.7", "Close with RSV = 7", [("send", close(1000, rsv=7))], E_close(1002)))
    c.append(Case("3.8", "(wshub) RSV1 on the continuation frame of a fragmented text message",
                  [("send", text(b"frag", fin=False) + cont(b"ment", rsv=4))], E_close(1002)))
    return c


# --------------------------------------------------------------------------- section 4

def section4():
    c = []
    hw = b"Hello, world!"
    rp = b"reserved opcode payload"

    def simple(cid, op, payload, what):
        return Case(cid, "Frame with reserved %s opcode %d%s" % (
            what, op, " and a payload" if payload else ""),
            [("send", frame(op, payload))], E_close(1002))

    def after_text(cid, op, payload, what, octets=False):
        data = text(hw) + frame(op, payload) + ping(hw)
        step = ("chops", data, 1, BYTE_PAUSE) if octets else ("send", data)
        return Case(cid, "Text message, frame with reserved %s opcode %d%s, ping%s" % (
            what, op, " and a payload" if payload else "", " (octet by octet)" if octets else ""),
            [step], E_close(1002, ev_text(hw)))

    c += [simple("4.1.1", 3, b"", "non-control"), simple("4.1.2", 4, rp, "non-control"),
          after_text("4.1.3", 5, b"", "non-control"), after_text("4.1.4", 6, rp, "non-control"),
          after_text("4.1.5", 7, rp, "non-control", octets=True),
          simple("4.2.1", 11, b"", "control"), simple("4.2.2", 12, rp, "control"),
          after_text("4.2.3", 13, b"", "control"), after_text("4.2.4", 14, rp, "control"),
          after_text("4.2.5", 15, rp, "control", octets=True)]
    c.append(Case("4.3.1", "(wshub) Reserved opcode 3 with FIN = 0 inside a fragmented text message",
                  [("send", text(b"frag", fin=False) + frame(3, b"x", fin=False) + cont(b"ment"))],
                  E_close(1002)))
    return c


# --------------------------------------------------------------------------- section 5

def section5():
    c = []
    f1, f2 = b"fragment1", b"fragment2"
    c.append(Case("5.1", "Ping in 2 fragments", [("send", ping(f1, fin=False) + cont(f2))],
                  E_close(1002)))
    c.append(Case("5.2", "Pong in 2 fragments", [("send", pong(f1, fin=False) + cont(f2))],
                  E_close(1002)))
    two = [text(f1, fin=False), cont(f2)]
    c.append(Case("5.3", "Text message in 2 fragments", [("send", b"".join(two))],
                  E_echo(ev_text(f1 + f2))))
    c.append(Case("5.4", "Text message in 2 fragments, octet by octet",
                  [("chops", b"".join(two), 1, BYTE_PAUSE)], E_echo(ev_text(f1 + f2))))
    c.append(Case("5.5", "Text message in 2 fragments, one frame per write with a pause",
                  [("send", two[0]), ("pause", QUIET), ("send", two[1])], E_echo(ev_text(f1 + f2))))
    pp = b"ping payload"
    three = [text(f1, fin=False), ping(pp), cont(f2)]
    c.append(Case("5.6", "Text message in 2 fragments with a ping in between",
                  [("send", b"".join(three))], E_echo(ev_pong(pp), ev_text(f1 + f2))))
    c.append(Case("5.7", "Text message in 2 fragments with a ping in between, octet by octet",
                  [("chops", b"".join(three), 1, BYTE_PAUSE)], E_echo(ev_pong(pp), ev_text(f1 + f2))))
    c.append(Case("5.8", "Text message in 2 fragments with a ping in between, one frame per "
                  "write with pauses",
                  [("send", three[0]), ("pause", QUIET), ("send", three[1]), ("await", ev_pong(pp)),
                   ("send", three[2])], E_echo(ev_pong(pp), ev_text(f1 + f2))))

    hw = b"Hello, world!"
    orphan_fin = [cont(b"non-continuation payload"), text(hw)]
    orphan_nofin = [cont(b"non-continuation payload", fin=False), text(hw)]
    for base, frames_, fin in ((9, orphan_fin, 1), (12, orphan_nofin, 0)):
        what = "Continuation frame with FIN = %d and nothing to continue, then a text message" % fin
        c.append(Case("5.%d" % base, what + " (one write)", [("send", b"".join(frames_))],
                      E_close(1002)))
        c.append(Case("5.%d" % (base + 1), what + " (one frame per write)",
                      [("send", frames_[0]), ("pause", QUIET), ("send", frames_[1])], E_close(1002)))
        c.append(Case("5.%d" % (base + 2), what + " (octet by octet)",
                      [("chops", b"".join(frames_), 1, BYTE_PAUSE)], E_close(1002)))
    c.append(Case("5.15", "Text message in 2 fragments, then a continuation with FIN = 0 and "
                  "nothing to continue, then a text frame (one write)",
                  [("send", text(f1, fin=False) + cont(f2) + cont(b"fragment3", fin=False)
                    + text(b"fragment4"))], E_close(1002, ev_text(f1 + f2))))
    for cid, fin in (("5.16", False), ("5.17", True)):
        block = cont(f1, fin=fin) + text(f2, fin=False) + cont(b"fragment3")
        c.append(Case(cid, "Twice: continuation with FIN = %d and nothing to continue, then a "
                      "text message in 2 fragments" % int(fin), [("send", block + block)],
                      E_close(1002)))
    c.append(Case("5.18", "Text message in 2 fragments whose second frame is also a text frame",
                  [("send", text(f1, fin=False) + text(f2))], E_close(1002)))
    frs = [("fragment%d" % i).encode() for i in range(1, 6)]
    p1, p2 = b"pongme 1!", b"pongme 2!"
    seq1 = [text(frs[0], fin=False), cont(frs[1], fin=False), ping(p1)]
    seq2 = [cont(frs[2], fin=False), cont(frs[3], fin=False), ping(p2), cont(frs[4])]
    exp = E_echo(ev_pong(p1), ev_pong(p2), ev_text(b"".join(frs)))
    c.append(Case("5.19", "Text message in 5 fragments with 2 pings; the first pong must come "
                  "before the rest is sent",
                  [("send", b"".join(seq1)), ("await", ev_pong(p1)), ("pause", QUIET),
                   ("send", b"".join(seq2))], exp))
    steps = []
    for i, f in enumerate(seq1):
        steps += [("send", f), ("pause", 0.02)]
    steps += [("await", ev_pong(p1)), ("pause", QUIET)]
    for f in seq2:
        steps += [("send", f), ("pause", 0.02)]
    c.append(Case("5.20", "As 5.19, one frame per write with pauses", steps, exp))
    many = make_binary(10000)
    c.append(Case("5.21", "(wshub) Binary message in 100 fragments of 100 bytes",
                  [("send", fragments(OP_BINARY, many, 100))], E_echo(ev_binary(many))))
    c.append(Case("5.22", "(wshub) Fragmented ping inside a fragmented text message",
                  [("send", text(f1, fin=False) + ping(b"p", fin=False) + cont(b"q")
                    + cont(f2))], E_close(1002)))
    return c


# --------------------------------------------------------------------------- section 6

KOSME = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"  # "kosme" in Greek, 11 bytes
HELLO_UTF8 = "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!".encode()


def utf8_sequences():
    """(subsection title, [payload, ...]) for 6.5 - 6.23, after Markus Kuhn's UTF-8
    decoder stress test as used by Autobahn; validity is computed, not listed."""
    groups = []
    groups.append(("Valid UTF-8 text", [
        b"hello$world", b"hello\xc2\xa2world", b"hello\xe2\x82\xacworld",
        b"hello\xf0\xa4\xad\xa2world", KOSME]))
    groups.append(("Every prefix of a valid string with multi-byte code points",
                   [KOSME[:i] for i in range(1, len(KOSME) + 1)]))
    groups.append(("First possible sequence of each length",
                   [b"\x00", b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80"]))
    groups.append(("First possible 5- and 6-byte sequences (invalid in UTF-8)",
                   [b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80"]))
    groups.append(("Last possible sequence of each length",
                   [b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf"]))
    groups.append(("Last possible 4-, 5- and 6-byte sequences (beyond U+10FFFF)",
                   [b"\xf7\xbf\xbf\xbf", b"\xfb\xbf\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf\xbf"]))
    groups.append(("Other boundaries (U+D7FF, U+E000, U+FFFD, U+10FFFF, U+110000)",
                   [b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbd", b"\xf4\x8f\xbf\xbf",
                    b"\xf4\x90\x80\x80"]))
    groups.append(("Unexpected continuation bytes",
                   [b"\x80", b"\xbf", b"\x80\xbf", b"\x80\xbf\x80", b"\x80\xbf\x80\xbf",
                    b"\x80\xbf\x80\xbf\x80", b"\x80\xbf\x80\xbf\x80\xbf",
                    bytes(range(0x80, 0xc0))]))
    groups.append(("Lonely start bytes, each followed by a space",
                   [b"".join(bytes([b, 0x20]) for b in range(lo, hi + 1))
                    for lo, hi in ((0xc0, 0xdf), (0xe0, 0xef), (0xf0, 0xf7), (0xf8, 0xfb),
                                   (0xfc, 0xfd))]))
    missing = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80", b"\xfc\x80\x80\x80\x80",
               b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf", b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    groups.append(("Sequences with the last continuation byte missing", missing))
    groups.append(("All of 6.14 concatenated", [b"".join(missing)]))
    groups.append(("Impossible bytes", [b"\xfe", b"\xff", b"\xfe\xfe\xff\xff"]))
    groups.append(("Overlong encodings of '/'",
                   [b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xf8\x80\x80\x80\xaf",
                    b"\xfc\x80\x80\x80\x80\xaf"]))
    groups.append(("Largest overlong encodings of each length",
                   [b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf", b"\xf8\x87\xbf\xbf\xbf",
                    b"\xfc\x83\xbf\xbf\xbf\xbf"]))
    groups.append(("Overlong encodings of NUL",
                   [b"\xc0\x80", b"\xe0\x80\x80", b"\xf0\x80\x80\x80", b"\xf8\x80\x80\x80\x80",
                    b"\xfc\x80\x80\x80\x80\x80"]))
    groups.append(("Single UTF-16 surrogates",
                   [b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf",
                    b"\xed\xb0\x80", b"\xed\xbe\x80", b"\xed\xbf\xbf"]))
    hi_s = [b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf"]
    lo_s = [b"\xed\xb0\x80", b"\xed\xbf\xbf"]
    groups.append(("Paired UTF-16 surrogates", [h + l for h in hi_s for l in lo_s]))
    nonchars = [b"\xef\xbf\xbe", b"\xef\xbf\xbf"]
    for plane in range(1, 17):
        cp = plane << 16
        nonchars += [chr(cp | 0xFFFE).encode(), chr(cp | 0xFFFF).encode()]
    groups.append(("Noncharacters U+FFFE/U+FFFF of every plane (valid UTF-8)", nonchars))
    groups.append(("Specials U+FFF9 - U+FFFF (valid UTF-8)",
                   [chr(cp).encode() for cp in range(0xFFF9, 0x10000)]))
    return groups


def utf8_variants(payload):
    """Every way of sending one text message that section 6 uses: whole, written in
    1-byte chops, split into 2 fragments at every byte, 1-byte fragments, and for
    invalid payloads a fail-fast frame (declared longer, sent up to the bad byte)."""
    valid = utf8_valid(payload)
    exp = E_echo(ev_text(payload)) if valid else E_close(1007)
    vs = [Variant("one frame", [("send", text(payload))], exp),
          Variant("one frame in 1-byte writes", [("chops", text(payload), 1, 0)], exp)]
    for k in range(1, len(payload)):
        vs.append(Variant("2 fragments split at byte %d" % k,
                          [("send", split_frames(OP_TEXT, payload, [k]))], exp))
    if len(payload) > 1:
        vs.append(Variant("1-byte fragments",
                          [("send", split_frames(OP_TEXT, payload, range(1, len(payload))))], exp))
    if not valid:
        padded = payload + b" " * 16
        bad = utf8_first_invalid(padded)
        f = text(padded)
        cut = header_len(len(padded)) + bad + 1
        vs.append(Variant("fail fast at byte %d" % bad,
                          [("send", f[:cut]), ("failfast",), ("send", f[cut:])],
                          E_close(1007, failfast=True)))
    return vs, valid


def section6():
    c = []
    c.append(Case("6.1.1", "Empty text message", [("send", text(b""))], E_echo(ev_text(b""))))
    c.append(Case("6.1.2", "Text message in 3 empty fragments",
                  [("send", text(b"", fin=False) + cont(b"", fin=False) + cont(b""))],
                  E_echo(ev_text(b""))))
    mid = b"middle frame payload"
    c.append(Case("6.1.3", "Text message in 3 fragments, the first and last empty",
                  [("send", text(b"", fin=False) + cont(mid, fin=False) + cont(b""))],
                  E_echo(ev_text(mid))))
    c.append(Case("6.2.1", "Valid UTF-8 text with 2-byte characters in one frame",
                  [("send", text(HELLO_UTF8))], E_echo(ev_text(HELLO_UTF8))))
    c.append(Case("6.2.2", "The same in 2 fragments split at a code point boundary",
                  [("send", split_frames(OP_TEXT, HELLO_UTF8, [8]))], E_echo(ev_text(HELLO_UTF8))))
    c.append(Case("6.2.3", "The same in 1-byte fragments (frames end inside code points)",
                  [("send", split_frames(OP_TEXT, HELLO_UTF8, range(1, len(HELLO_UTF8))))],
                  E_echo(ev_text(HELLO_UTF8))))
    c.append(Case("6.2.4", "Greek 'kosme' (2- and 3-byte characters) in 1-byte fragments",
                  [("send", split_frames(OP_TEXT, KOSME, range(1, len(KOSME))))],
                  E_echo(ev_text(KOSME))))
    bad = KOSME + b"\xed\xa0\x80" + b"edited"
    c.append(Case("6.3.1", "Invalid UTF-8 (a surrogate inside valid text) in one frame",
                  [("send", text(bad))], E_close(1007)))
    c.append(Case("6.3.2", "The same in 1-byte fragments",
                  [("send", split_frames(OP_TEXT, bad, range(1, len(bad))))], E_close(1007)))

    # 6.4: fail fast. The server must fail the connection at the first byte that can
    # never be part of valid UTF-8, not when the frame or message ends.
    p1, p2, p3 = KOSME, b"\xf4\x90\x80\x80", b"edited"
    whole = p1 + p2 + p3
    c.append(Case("6.4.1", "Text in 3 frames: valid, then one holding U+110000 (F4 90 80 80), "
                  "then the rest; close due right after the 2nd frame",
                  [("send", text(p1, fin=False)), ("quiet", QUIET), ("send", cont(p2, fin=False)),
                   ("failfast",), ("send", cont(p3))], E_close(1007, failfast=True)))
    c.append(Case("6.4.2", "As 6.4.1, but the 2nd frame holds only the byte that makes it "
                  "invalid (0x90 after F4)",
                  [("send", text(whole[:12], fin=False)), ("quiet", QUIET),
                   ("send", cont(whole[12:13], fin=False)), ("failfast",),
                   ("send", cont(whole[13:]))], E_close(1007, failfast=True)))
    f = text(whole)
    h = header_len(len(whole))
    c.append(Case("6.4.3", "As 6.4.1, but one frame written in 3 chops; close due right after "
                  "the 2nd chop",
                  [("send", f[:h + 11]), ("quiet", QUIET), ("send", f[h + 11:h + 15]),
                   ("failfast",), ("send", f[h + 15:])], E_close(1007, failfast=True)))
    c.append(Case("6.4.4", "As 6.4.3, but the 2nd chop is only the byte that makes it invalid",
                  [("send", f[:h + 12]), ("quiet", QUIET), ("send", f[h + 12:h + 13]),
                   ("failfast",), ("send", f[h + 13:])], E_close(1007, failfast=True)))
    big = bytearray(b"a" * 65536)
    big[50] = 0xFF
    fb = text(bytes(big))
    hb = header_len(len(big))
    c.append(Case("6.4.5", "(wshub) 64 KiB text frame with 0xFF at byte 50: close due before "
                  "the other 65485 bytes are sent",
                  [("send", fb[:hb + 51]), ("failfast",), ("send", fb[hb + 51:])],
                  E_close(1007, failfast=True)))
    second = cont(b"(" + b"y" * 40000)
    c.append(Case("6.4.6", "(wshub) Fragment ending in E2 82, next fragment starting with '(': "
                  "close due at that byte, before the rest of the 40 KB fragment",
                  [("send", text(b"x" * 1000 + b"\xe2\x82", fin=False)), ("quiet", QUIET),
                   ("send", second[:header_len(40001) + 1]), ("failfast",),
                   ("send", second[header_len(40001) + 1:])], E_close(1007, failfast=True)))
    c.append(Case("6.4.7", "(wshub) Message whose final fragment ends inside a 4-byte sequence",
                  [("send", text(b"abc", fin=False) + cont(b"\xf0\x9f\x98"))], E_close(1007)))

    for i, (title, payloads) in enumerate(utf8_sequences(), 5):
        for j, p in enumerate(payloads, 1):
            vs, valid = utf8_variants(p)
            shown = "0x" + p.hex() if len(p) <= 16 else "%d bytes %s..." % (len(p), p[:8].hex())
            desc = "%s: %s (%s)" % (title, shown, "valid" if valid else "invalid")
            n = len(vs)
            if valid:
                expected = "echo in all %d variants" % n
                summary = "echoed"
            else:
                expected = "close 1007 in all %d variants, fail-fast" % n
                bad_at = utf8_first_invalid(p + b" " * 16)
                summary = "close 1007, fail-fast at byte %d" % bad_at
            c.append(Case("6.%d.%d" % (i, j), desc, variants=vs, expected=expected,
                          summary=summary))
    return c


# --------------------------------------------------------------------------- section 7

VALID_CLOSE = lambda code: (1000 <= code <= 1003 or 1007 <= code <= 1014  # noqa: E731
                            or 3000 <= code <= 4999)


def close_code_variant(code):
    payload = struct.pack("!H", code)
    exp = E_close(code, alt_codes=(1000,)) if VALID_CLOSE(code) else E_close(1002)
    return Variant("code %d" % code, [("send", frame(OP_CLOSE, payload))], exp)


def section7():
    c = []
    hw = b"Hello World!"
    c.append(Case("7.1.1", "Text message, then close 1000",
                  [("send", text(hw) + close(1000))], E_close(1000, ev_text(hw))))
    c.append(Case("7.1.2", "Two close frames", [("send", close(1000) + close(1000))],
                  E_close(1000)))
    c.append(Case("7.1.3", "Close, then a ping: no pong after the close",
                  [("send", close(1000) + ping(hw))], E_close(1000)))
    c.append(Case("7.1.4", "Close, then a text message: no echo after the close",
                  [("send", close(1000) + text(hw))], E_close(1000)))
    c.append(Case("7.1.5", "First fragment of a message, close, then the last fragment",
                  [("send", text(b"fragment1", fin=False) + close(1000) + cont(b"fragment2"))],
                  E_close(1000)))
    big = (b"BAsd7&jh23" * (256 * KiB // 10 + 1))[:256 * KiB]
    c.append(Case("7.1.6", "256 KiB text message, a small one, close, then a ping (one write): "
                  "both echoed, then close, no pong",
                  [("send", text(big) + text(hw) + close(1000) + ping())],
                  E_close(1000, ev_text(big), ev_text(hw))))
    c.append(Case("7.3.1", "Close with an empty payload: answered with an empty close",
                  [("send", close())], E_close(None, alt_codes=(1000,))))
    c.append(Case("7.3.2", "Close with a 1-byte payload", [("send", frame(OP_CLOSE, b"\x03"))],
                  E_close(1002)))
    c.append(Case("7.3.3", "Close 1000 without reason", [("send", close(1000))], E_close(1000)))
    c.append(Case("7.3.4", "Close 1000 with a reason", [("send", close(1000, hw))], E_close(1000)))
    c.append(Case("7.3.5", "Close 1000 with a 123-byte reason (payload 125 bytes)",
                  [("send", close(1000, b"*" * 123))], E_close(1000)))
    c.append(Case("7.3.6", "Close 1000 with a 124-byte reason (payload 126 bytes)",
                  [("send", close(1000, b"*" * 124))], E_close(1002)))
    c.append(Case("7.5.1", "Close 1000 whose reason is not UTF-8",
                  [("send", close(1000, KOSME + b"\xed\xa0\x80edited"))], E_close(1007)))
    valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
    for i, code in enumerate(valid, 1):
        c.append(Case("7.7.%d" % i, "Close with valid code %d: the code is echoed" % code,
                      [("send", close(code))], E_close(code, alt_codes=(1000,))))
    for i, code in enumerate((1012, 1013, 1014), len(valid) + 1):
        c.append(Case("7.7.%d" % i, "(wshub) Close with IANA-registered code %d: echoed" % code,
                      [("send", close(code))], E_close(code, alt_codes=(1000,))))
    invalid = [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999]
    for i, code in enumerate(invalid, 1):
        c.append(Case("7.9.%d" % i, "Close with invalid code %d" % code,
                      [("send", close(code))], E_close(1002)))
    c.append(Case("7.9.10", "(wshub) Close with reserved code 1015 (never sent on the wire)",
                  [("send", close(1015))], E_close(1002)))
    c.append(Case("7.13.1", "Close with code 5000 (Autobahn: informational; wshub: invalid)",
                  [("send", close(5000))], E_close(1002)))
    c.append(Case("7.13.2", "Close with code 65535 (Autobahn: informational; wshub: invalid)",
                  [("send", close(65535))], E_close(1002)))
    # Every close code, one connection each.
    sweeps = [
        ("7.14.1", "every code 0-999 (all invalid)", range(0, 1000)),
        ("7.14.2", "every code 1000-2999 (1000-1003 and 1007-1014 valid, the rest invalid)",
         range(1000, 3000)),
        ("7.14.3", "every code 3000-4999 (all valid)", range(3000, 5000)),
        ("7.14.4", "codes 5000-65535 (every 16th, plus 5001 and 65534; all invalid)",
         sorted(set(range(5000, 65536, 16)) | {5001, 65534, 65535})),
    ]
    for cid, what, codes in sweeps:
        vs = [close_code_variant(code) for code in codes]
        n_valid = sum(1 for code in codes if VALID_CLOSE(code))
        n_bad = len(vs) - n_valid
        c.append(Case(cid, "(wshub) Close with %s, one connection each" % what, variants=vs,
                      expected="valid: code echoed; invalid: close 1002",
                      summary="%d codes echoed, %d answered 1002" % (n_valid, n_bad)))
    reason = "d\u00e9j\u00e0 vu \u20ac \U0001f600".encode()
    c.append(Case("7.15.1", "(wshub) Close 1000 with a multi-byte UTF-8 reason, written octet "
                  "by octet", [("chops", close(1000, reason), 1, BYTE_PAUSE)], E_close(1000)))
    c.append(Case("7.15.2", "(wshub) Close 1000 whose reason ends inside a UTF-8 sequence",
                  [("send", close(1000, b"bye \xe2\x82"))], E_close(1007)))
    c.append(Case("7.15.3", "(wshub) Close frame with FIN = 0", [("send", close(1000, fin=False))],
                  E_close(1002)))
    c.append(Case("7.15.4", "(wshub) Close 1000 in the middle of a fragmented message, then data",
                  [("send", text(b"part", fin=False) + close(1000) + cont(b"late") + text(b"x"))],
                  E_close(1000)))
    c.append(Case("7.15.5", "(wshub) Client half-closes TCP (FIN) without a close frame",
                  [("send", text(hw)), ("await", ev_text(hw)), ("shutdown",)],
                  E_drop(ev_text(hw))))
    c.append(Case("7.15.6", "(wshub) Client half-closes TCP in the middle of a frame",
                  [("send", text(b"x" * 1000)[:500]), ("shutdown",)], E_drop()))
    return c


# --------------------------------------------------------------------------- section 9

def section9():
    """Large messages. The server runs with --max-message-size 16MiB. The sizes are the
    same for every build variant (the ASan build runs this section in about 20 s)."""
    c = []
    top = 16 * MiB
    sizes = [64 * KiB, 256 * KiB, MiB, 4 * MiB, 8 * MiB, 16 * MiB]
    T = {n: make_text(n) for n in set(sizes)}
    B = {n: make_binary(n) for n in set(sizes)}
    for sub, kind, data, op, ev in (("9.1", "text", T, OP_TEXT, ev_text),
                                    ("9.2", "binary", B, OP_BINARY, ev_binary)):
        for i, n in enumerate(sizes, 1):
            p = data[n]
            c.append(Case("%s.%d" % (sub, i), "%s message of %s in one frame" % (
                kind.capitalize(), fmt_size(n)), [("send", frame(op, p))], E_echo(ev(p)),
                timed=True))
    fsizes = [64, 256, KiB, 4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, MiB, 4 * MiB]
    for sub, kind, data, op, ev in (("9.3", "text", T, OP_TEXT, ev_text),
                                    ("9.4", "binary", B, OP_BINARY, ev_binary)):
        p = data[4 * MiB]
        for i, fs in enumerate(fsizes, 1):
            c.append(Case("%s.%d" % (sub, i), "%s message of 4 MiB in fragments of %s" % (
                kind.capitalize(), fmt_size(fs)), [("send", fragments(op, p, fs))], E_echo(ev(p)),
                timed=True))
    chops = [64, 128, 256, 512, KiB, 2 * KiB]
    for sub, kind, data, op, ev in (("9.5", "text", T, OP_TEXT, ev_text),
                                    ("9.6", "binary", B, OP_BINARY, ev_binary)):
        p = data[MiB]
        for i, ch in enumerate(chops, 1):
            c.append(Case("%s.%d" % (sub, i), "%s message of 1 MiB in one frame, written in "
                          "chops of %s" % (kind.capitalize(), fmt_size(ch)),
                          [("chops", frame(op, p), ch, 0)], E_echo(ev(p)), timed=True))
    rsizes = [0, 16, 64, 256, KiB, 4 * KiB]
    for sub, kind, op, ev in (("9.7", "text", OP_TEXT, ev_text),
                              ("9.8", "binary", OP_BINARY, ev_binary)):
        for i, n in enumerate(rsizes, 1):
            p = b"*" * n if op == OP_TEXT else b"\xfe" * n
            c.append(Case("%s.%d" % (sub, i), "1000 %s messages of %s, one round trip each" % (
                kind, fmt_size(n)), [("rtt", op, p, 1000)], E_echo(*[ev(p)] * 1000), timed=True))
    # wshub: the largest allowed message written in chunks of every size from 64 B to
    # 16 KiB, fragmented into frames of several sizes, and the limit itself.
    big_chops = [64, 256, KiB, 4 * KiB, 16 * KiB]
    big = top
    tb, bb = make_text(big), make_binary(big)
    for sub, kind, p, op, ev in (("9.9", "text", tb, OP_TEXT, ev_text),
                                 ("9.10", "binary", bb, OP_BINARY, ev_binary)):
        for i, ch in enumerate(big_chops, 1):
            c.append(Case("%s.%d" % (sub, i), "(wshub) %s message of %s (the limit) in one frame, "
                          "written in chunks of %s" % (kind.capitalize(), fmt_size(big), fmt_size(ch)),
                          [("chops", frame(op, p), ch, 0)], E_echo(ev(p)), timed=True))
    for i, fs in enumerate([256, 4 * KiB, 64 * KiB, MiB], 1):
        c.append(Case("9.11.%d" % i, "(wshub) Binary message of %s in fragments of %s" % (
            fmt_size(big), fmt_size(fs)), [("send", fragments(OP_BINARY, bb, fs))],
            E_echo(ev_binary(bb)), timed=True))
    q = top // 4
    c.append(Case("9.12.1", "(wshub) One frame declaring 16 MiB + 1 (limit 16 MiB): 1009 from "
                  "the header, before any payload", [("send", binary(b"", length=top + 1)),
                                                     ("failfast",), ("send", b"x" * 4096)],
                  E_close(1009, failfast=True)))
    c.append(Case("9.12.2", "(wshub) Text frame declaring 2^63 - 1 bytes: 1009 from the header",
                  [("send", text(b"", length=(1 << 63) - 1)), ("failfast",), ("send", b"x" * 4096)],
                  E_close(1009, failfast=True)))
    c.append(Case("9.12.3", "(wshub) Four 4 MiB fragments (exactly 16 MiB) then a fragment "
                  "header declaring 1 more byte: 1009 before its payload",
                  [("send", binary(b"\x01" * q, fin=False)
                    + b"".join(cont(b"\x01" * q, fin=False) for _ in range(3))),
                   ("send", cont(b"", length=1)), ("failfast",), ("send", b"z")],
                  E_close(1009, failfast=True), timed=True))
    c.append(Case("9.12.4", "(wshub) Fragments summing to exactly 16 MiB (4 x 4 MiB)",
                  [("send", binary(b"\x02" * q, fin=False) + cont(b"\x03" * q, fin=False)
                    + cont(b"\x04" * q, fin=False) + cont(b"\x05" * q))],
                  E_echo(ev_binary(b"\x02" * q + b"\x03" * q + b"\x04" * q + b"\x05" * q)),
                  timed=True))
    return c


# --------------------------------------------------------------------------- section 10

def section10():
    c = []
    star = b"*" * 65536
    c.append(Case("10.1.1", "Text message of 64 KiB auto-fragmented into 1300-byte frames",
                  [("send", fragments(OP_TEXT, star, 1300))], E_echo(ev_text(star))))
    b64 = make_binary(65536)
    c.append(Case("10.1.2", "(wshub) Binary message of 64 KiB in 1300-byte frames",
                  [("send", fragments(OP_BINARY, b64, 1300))], E_echo(ev_binary(b64))))
    t64 = make_text(65536)
    c.append(Case("10.1.3", "(wshub) Multi-byte UTF-8 text of 64 KiB in 1300-byte frames "
                  "(frames end inside code points)",
                  [("send", fragments(OP_TEXT, t64, 1300))], E_echo(ev_text(t64))))
    t1m = make_text(MiB)
    c.append(Case("10.1.4", "(wshub) Multi-byte UTF-8 text of 1 MiB in 4096-byte frames",
                  [("send", fragments(OP_TEXT, t1m, 4096))], E_echo(ev_text(t1m))))
    t4k = make_text(4096)
    c.append(Case("10.1.5", "(wshub) Multi-byte UTF-8 text of 4 KiB in 1-byte frames",
                  [("send", fragments(OP_TEXT, t4k, 1))], E_echo(ev_text(t4k))))
    parts = [t64[i:i + 1300] for i in range(0, len(t64), 1300)]
    data, pongs = [], []
    for i, p in enumerate(parts):
        data.append(frame(OP_TEXT if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1)))
        if i % 10 == 9:
            pp = ("ping %d" % i).encode()
            data.append(ping(pp))
            pongs.append(ev_pong(pp))
    c.append(Case("10.1.6", "(wshub) 64 KiB text in 1300-byte frames with a ping after every "
                  "10th frame", [("send", b"".join(data))], E_echo(*(pongs + [ev_text(t64)]))))
    c.append(Case("10.1.7", "(wshub) 64 KiB text in 1300-byte frames, written in 1000-byte "
                  "chops", [("chops", fragments(OP_TEXT, t64, 1300), 1000, 0)],
                  E_echo(ev_text(t64))))
    return c


# --------------------------------------------------------------------------- 12, 13

PMD = "permessage-deflate (RFC 7692)"
SIZES_12 = [(16, 0), (64, 0), (256, 0), (1024, 0), (4096, 0), (8192, 0), (16384, 0),
            (32768, 0), (65536, 0), (131072, 0), (8192, 256), (16384, 256), (32768, 256),
            (65536, 256), (131072, 256), (131072, 1024), (131072, 4096), (131072, 32768)]
PMD_THRESHOLD = 1024          # the server's default --compression-threshold
PMD_BUDGET = 2 * MiB          # payload bytes per 12.* case (Autobahn: 1000 messages)
PMD_BUDGET_13 = 512 * KiB     # per size in a 13.* case (18 sizes each)
PMD_MAX_MSGS = 1000
PMD_WINDOW = 256 * KiB        # bytes in flight before the echoes are read
PMD_EXT = "permessage-deflate; server_no_context_takeover"
ZTAIL = b"\x00\x00\xff\xff"
_corpora = {}


def _lcg(seed):
    x = seed
    while True:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        yield x >> 8


def pmd_corpus(kind, n=131072 + 1024):
    """Deterministic stand-ins for Autobahn's 12.1-12.5 files (which are not in the tree):
    JSON records, a bitmap, German prose (multi-byte UTF-8), HTML, and incompressible
    bytes in place of the PDF (whose streams are already compressed)."""
    if kind in _corpora:
        return _corpora[kind]
    r = _lcg(7)
    words = ["Habe", "nun,", "ach!", "Philosophie,", "Juristerei", "und", "Medizin,",
             "leider", "auch", "Theologie", "durchaus", "studiert,", "mit", "heißem",
             "Bemühn.", "Da", "steh", "ich", "nun,", "ich", "armer", "Tor!", "Und", "bin",
             "so", "klug", "als", "wie", "zuvor;", "Größe", "Übermut", "Äther"]
    if kind == "json":
        out = []
        i = 0
        while sum(len(x) for x in out) < n:
            out.append('{"id":%d,"user":"user%d","room":"room-%d","text":"%s","tags":["a","b"],'
                       '"score":%d.%02d}, ' % (i, next(r) % 500, next(r) % 20,
                                               " ".join(words[next(r) % len(words)] for _ in range(6)),
                                               next(r) % 1000, next(r) % 100))
            i += 1
        data = ("[" + "".join(out)).encode()
    elif kind == "bitmap":
        row = 512
        data = bytearray()
        y = 0
        while len(data) < n:
            data += bytes(((x // 16 + y // 16) % 2) * 255 if (x + y) % 97 else next(r) & 0xFF
                          for x in range(row))
            y += 1
        data = bytes(data)
    elif kind == "text":
        out = []
        while sum(len(x) for x in out) < n:
            out.append(" ".join(words[next(r) % len(words)] for _ in range(12)) + ".\n")
        data = "".join(out).encode()
    elif kind == "html":
        out = ['<!DOCTYPE html><html><head><title>wshub</title></head><body>']
        while sum(len(x) for x in out) < n:
            k = next(r)
            out.append('<div class="row r%d"><a href="/rooms/%d">Room %d</a><p>%s</p></div>\n' % (
                k % 7, k % 1000, k % 1000, " ".join(words[next(r) % len(words)] for _ in range(8))))
        data = "".join(out).encode()
    else:  # "random"
        data = bytes(next(r) & 0xFF for _ in range(n))
    _corpora[kind] = data
    return data


CORPORA_12 = [  # (section 12.x, kind, name, opcode, compressible)
    (1, "json", "JSON", OP_TEXT, True),
    (2, "bitmap", "bitmap (binary)", OP_BINARY, True),
    (3, "text", "German prose (multi-byte UTF-8)", OP_TEXT, True),
    (4, "html", "HTML", OP_TEXT, True),
    (5, "random", "incompressible binary (for Autobahn's PDF)", OP_BINARY, False),
]


def pmd_payload(kind, op, size):
    data = pmd_corpus(kind)[:size]
    if op == OP_TEXT:
        while not utf8_valid(data):  # a cut inside a character: end on a whole one
            data = data[:-1]
        data += b"*" * (size - len(data))
    return data


def parse_extension(answer):
    """{param: value or True} of a permessage-deflate answer (the answer names one)."""
    parts = [p.strip() for p in answer.split(";")]
    if parts[0] != "permessage-deflate":
        raise AssertionError("answer names %r" % parts[0])
    params = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        k = k.strip()
        if k in params:
            raise AssertionError("parameter %s repeated in the answer" % k)
        params[k] = v.strip().strip('"') if v else True
    return params


def check_answer(offer_params, params):
    """RFC 7692 7.1: what a client must verify in the server's answer."""
    problems = []
    for k, v in params.items():
        if k not in ("server_no_context_takeover", "client_no_context_takeover",
                     "server_max_window_bits", "client_max_window_bits"):
            problems.append("unknown parameter %s" % k)
        elif k.endswith("takeover") and v is not True:
            problems.append("%s with a value" % k)
        elif k.endswith("bits") and not (isinstance(v, str) and v.isdigit() and 8 <= int(v) <= 15):
            problems.append("%s=%r out of range" % (k, v))
    if "client_max_window_bits" in params and "client_max_window_bits" not in offer_params:
        problems.append("client_max_window_bits answered but not offered (7.1.2.2)")
    if "server_max_window_bits" in offer_params and offer_params["server_max_window_bits"] is not True:
        if "server_max_window_bits" not in params:
            problems.append("server_max_window_bits offered but not answered (7.1.2.1)")
        elif int(params["server_max_window_bits"]) > int(offer_params["server_max_window_bits"]):
            problems.append("server window larger than offered")
    cmwb = offer_params.get("client_max_window_bits")
    if isinstance(cmwb, str) and "client_max_window_bits" in params:
        if int(params["client_max_window_bits"]) > int(cmwb):
            problems.append("client window larger than offered")
    if "server_no_context_takeover" not in params:
        problems.append("no server_no_context_takeover (wshub always answers it)")
    return problems


class PmdRun:
    """One connection: offer, check the answer, send `count` compressed messages
    (fragmented into `frag`-byte frames when frag > 0) and check every echo."""

    def __init__(self, offer, want_answer, op, payload, frag, count, compressible):
        self.offer, self.want_answer = offer, want_answer
        self.op, self.payload, self.frag, self.count = op, payload, frag, count
        self.compressible = compressible

    def run(self, port, deadline):
        """(ok, observed)."""
        headers = [("Sec-WebSocket-Extensions", self.offer)] if self.offer else None
        cl = RawClient(port, headers=headers, timeout=min(5.0, READ_TIMEOUT))
        try:
            return self._run(cl, deadline)
        finally:
            cl.close()

    def _run(self, cl, deadline):
        answer = cl.response_headers.get("sec-websocket-extensions")
        if answer != self.want_answer:
            return False, "answer %r" % answer
        params = {}
        if answer:
            params = parse_extension(answer)
            offers = [parse_extension(o.strip()) for o in self.offer.split(",")]
            # The server takes the first offer it can honour: all but window 8.
            offered = next((o for o in offers if o.get("server_max_window_bits") != "8"), {})
            problems = check_answer(offered, params)
            if problems:
                return False, "answer %r: %s" % (answer, "; ".join(problems))
        swb = int(params.get("server_max_window_bits", 15))
        # zlib cannot write an 8-bit raw window: like Autobahn, use 9 when 8 is agreed
        # (the server reads with at least 9).
        cwb = max(9, int(params.get("client_max_window_bits", 15)))
        nct = "client_no_context_takeover" in params
        comp = None if (not answer or nct) else zlib.compressobj(6, zlib.DEFLATED, -cwb)
        window = max(1, min(64, PMD_WINDOW // max(1, len(self.payload))))
        sent = got = compressed = wire = 0
        while got < self.count:
            if time.monotonic() > deadline:
                return False, "deadline after %d of %d echoes" % (got, self.count)
            n = min(window, self.count - sent)
            out = []
            for _ in range(n):
                if answer:
                    c = comp or zlib.compressobj(6, zlib.DEFLATED, -cwb)
                    z = c.compress(self.payload) + c.flush(zlib.Z_SYNC_FLUSH)
                    z = z[:-4]
                    rsv = 4
                else:
                    z, rsv = self.payload, 0
                if self.frag and len(z) > self.frag:
                    parts = [z[i:i + self.frag] for i in range(0, len(z), self.frag)]
                else:
                    parts = [z]
                for i, part in enumerate(parts):
                    out.append(frame(self.op if i == 0 else OP_CONT, part, fin=i == len(parts) - 1,
                                     rsv=rsv if i == 0 else 0))
            cl.sock.sendall(b"".join(out))
            sent += n
            for _ in range(n):
                try:
                    f = cl.recv_frame(timeout=READ_TIMEOUT)
                except (socket.timeout, ConnectionClosed) as e:
                    return False, "echo %d: %s" % (got + 1, e)
                if f.opcode != self.op or not f.fin or f.masked:
                    return False, "echo %d: unexpected %r" % (got + 1, f)
                wire += len(f.payload)
                if f.rsv == 4:
                    if not answer:
                        return False, "echo %d: RSV1 without the extension" % (got + 1)
                    # A fresh inflater with the agreed window: the server must keep no
                    # context (server_no_context_takeover) and stay inside its window.
                    try:
                        d = zlib.decompressobj(-swb)
                        data = d.decompress(f.payload + ZTAIL) + d.flush()
                    except zlib.error as e:
                        return False, "echo %d does not inflate with a fresh %d-bit inflater: %s" % (
                            got + 1, swb, e)
                    compressed += 1
                elif f.rsv == 0:
                    data = f.payload
                    if answer and self.compressible and len(self.payload) >= PMD_THRESHOLD:
                        return False, "echo %d of %s not compressed" % (got + 1, fmt_size(len(data)))
                else:
                    return False, "echo %d: RSV bits %d" % (got + 1, f.rsv)
                if answer and compressed and len(self.payload) < PMD_THRESHOLD:
                    return False, "echo %d compressed under the threshold" % (got + 1)
                if data != self.payload:
                    return False, "echo %d differs from what was sent" % (got + 1)
                got += 1
        cl.send_close(1000)
        try:
            f = cl.expect_close(timeout=READ_TIMEOUT)
        except AssertionError as e:
            return False, str(e)[:200]
        if f.code != 1000:
            return False, "our close 1000 answered with %s" % f.code
        if not cl.wait_tcp_closed(timeout=READ_TIMEOUT):
            return False, "server did not close TCP"
        return True, "%d/%d echoed, %d compressed (%s on the wire for %s)" % (
            got, self.count, compressed, fmt_size_any(wire), fmt_size_any(got * len(self.payload)))


def fmt_size_any(n):
    if n >= 10 * MiB:
        return "%.0f MiB" % (n / MiB)
    if n >= 10 * KiB:
        return "%.0f KiB" % (n / KiB)
    return "%d B" % n


def pmd_count(size, budget):
    return max(8, min(PMD_MAX_MSGS, budget // size))


class PmdCase(Case):
    def __init__(self, cid, desc, runs, expected, deadline=60.0):
        super().__init__(cid, desc, expected=expected)
        self.runs = runs
        self.pmd_deadline = deadline * SLOW

    def run(self, port):
        t0 = time.monotonic()
        deadline = t0 + self.pmd_deadline
        obs = []
        for label, r in self.runs:
            try:
                ok, o = r.run(port, deadline)
            except (OSError, ConnectionClosed, AssertionError, zlib.error) as e:
                ok, o = False, "connection failed: %s" % e
            if not ok:
                return FAIL, ("%s: %s" % (label, o)) if label else o, time.monotonic() - t0
            obs.append(o)
        dt = time.monotonic() - t0
        if len(self.runs) == 1:
            return PASS, obs[0], dt
        return PASS, "all %d sizes as expected" % len(self.runs), dt


def section12():
    c = []
    for sec, kind, name, op, compressible in CORPORA_12:
        for i, (n, frag) in enumerate(SIZES_12, 1):
            count = pmd_count(n, PMD_BUDGET)
            run = PmdRun("permessage-deflate", PMD_EXT, op, pmd_payload(kind, op, n), frag, count,
                         compressible)
            c.append(PmdCase("12.%d.%d" % (sec, i), "%d compressed %s messages of %s%s, default "
                             "offer" % (count, name, fmt_size(n),
                                        ", auto-fragmented to %d B" % frag if frag else ""),
                             [("", run)],
                             "echo, each inflating to what was sent%s" % (
                                 "; compressed" if n >= PMD_THRESHOLD and compressible else "")))
    return c


# (offer, answer or None when declined, description). Autobahn's 13.2-13.7 offer
# server_no_context_takeover / server_max_window_bits (its "request" parameters).
OFFERS_13 = [
    ("permessage-deflate", PMD_EXT, "default offer, default answer"),
    ("permessage-deflate; server_no_context_takeover", PMD_EXT,
     "server_no_context_takeover offered and accepted"),
    ("permessage-deflate; server_max_window_bits=8", None,
     "server_max_window_bits=8 offered: declined (zlib has no raw 8-bit window), "
     "messages echo uncompressed"),
    ("permessage-deflate; server_max_window_bits=15", PMD_EXT + "; server_max_window_bits=15",
     "server_max_window_bits=15 offered and accepted"),
    ("permessage-deflate; server_no_context_takeover; server_max_window_bits=8", None,
     "server_no_context_takeover + server_max_window_bits=8: declined"),
    ("permessage-deflate; server_no_context_takeover; server_max_window_bits=15",
     PMD_EXT + "; server_max_window_bits=15",
     "server_no_context_takeover + server_max_window_bits=15 accepted"),
    ("permessage-deflate; server_no_context_takeover; server_max_window_bits=8, "
     "permessage-deflate; server_no_context_takeover, permessage-deflate", PMD_EXT,
     "three offers: the first (window 8) declined, the second accepted"),
    ("permessage-deflate; client_no_context_takeover", PMD_EXT + "; client_no_context_takeover",
     "(wshub) client_no_context_takeover offered and accepted"),
    ("permessage-deflate; client_max_window_bits", PMD_EXT + "; client_max_window_bits=12",
     "(wshub) client_max_window_bits without a value: the server asks for 12"),
    ("permessage-deflate; client_max_window_bits=8", PMD_EXT + "; client_max_window_bits=8",
     "(wshub) client_max_window_bits=8 accepted (the client writes with 9, as zlib must)"),
    ("permessage-deflate; client_max_window_bits=15", PMD_EXT + "; client_max_window_bits=12",
     "(wshub) client_max_window_bits=15: the server asks for 12"),
    ("permessage-deflate; server_max_window_bits=9", PMD_EXT + "; server_max_window_bits=9",
     "(wshub) server_max_window_bits=9: the echoes inflate with a 9-bit window"),
    ("permessage-deflate; client_no_context_takeover; client_max_window_bits=10; "
     "server_max_window_bits=12", PMD_EXT + "; client_no_context_takeover; server_max_window_bits=12",
     "(wshub) all four parameters"),
]


def section13():
    c = []
    for i, (offer, answer, desc) in enumerate(OFFERS_13, 1):
        runs = []
        for n, frag in SIZES_12:
            run = PmdRun(offer, answer, OP_TEXT, pmd_payload("json", OP_TEXT, n), frag,
                         pmd_count(n, PMD_BUDGET_13), True)
            runs.append(("%s%s" % (fmt_size(n), " in %d B frames" % frag if frag else ""), run))
        c.append(PmdCase("13.%d.*" % i, "JSON, the 18 sizes of 12.1.*, %s" % desc, runs,
                         "answer %s; echoes inflate to what was sent" % (
                             "none" if answer is None else repr(answer[len("permessage-deflate; "):])),
                         deadline=120.0))
    return c


# --------------------------------------------------------------------------- sections

SECTIONS = [
    (1, "Framing", section1, ()),
    (2, "Pings and pongs", section2, ()),
    (3, "Reserved bits", section3, ()),
    (4, "Opcodes", section4, ()),
    (5, "Fragmentation", section5, ()),
    (6, "UTF-8 handling", section6, ()),
    (7, "Close handling", section7, ()),
    (9, "Limits and large messages", section9, ("--max-message-size", "16MiB")),
    (10, "Automatic fragmentation", section10, ()),
    (12, "WebSocket compression (permessage-deflate, different payloads)", section12, ()),
    (13, "WebSocket compression (permessage-deflate, different parameters)", section13, ()),
]
SECTION_BY_NUM = {s[0]: s for s in SECTIONS}

class Row:
    __slots__ = ("id", "desc", "expected", "observed", "result", "seconds")

    def __init__(self, cid, desc, expected, observed, result, seconds):
        self.id, self.desc, self.expected = cid, desc, expected
        self.observed, self.result, self.seconds = observed, result, seconds


class SectionResult:
    def __init__(self, num, title, server_args):
        self.num, self.title, self.server_args = num, title, server_args
        self.rows = []
        self.notes = []
        self.seconds = 0.0

    def counts(self):
        n = {PASS: 0, FAIL: 0, NONSTRICT: 0, NA: 0}
        for r in self.rows:
            n[r.result] += 1
        return n


def _server_tail(srv):
    err = srv.stderr()
    return err[-1500:] if err else "(no output)"


def run_section(num, case_filter=None, progress=None):
    num, title, build, args = SECTION_BY_NUM[num]
    res = SectionResult(num, title, args)
    t0 = time.monotonic()
    cases = build()
    if case_filter:
        cases = [c for c in cases if any(c.id == p or c.id.startswith(p + ".") for p in case_filter)]
    srv = None
    if args is not None and any(not c.na for c in cases):
        srv = WshubServer(args, threads=2).start()
        res.notes.append("server: `wshub --listen 127.0.0.1:0 --threads 2%s`" % (
            "".join(" " + a for a in args)))
    try:
        for case in cases:
            if srv is not None and not srv.alive():
                srv = WshubServer(args, threads=2).start()
            result, observed, dt = case.run(srv.port if srv else 0)
            if srv is not None and not srv.alive():
                result = FAIL
                observed += " [server died: exit %s; %s]" % (srv.proc.returncode, _server_tail(srv))
            row = Row(case.id, case.desc, case.expected, observed, result, dt)
            res.rows.append(row)
            if progress:
                progress(row)
    finally:
        if srv is not None:
            rc, _, killed = srv.stop()
            try:
                srv.check_stopped_cleanly(rc, killed)
                res.notes.append("server exited 0 with no sanitizer report")
            except AssertionError as e:
                res.rows.append(Row("%d.server" % num, "Server stops cleanly after the section "
                                    "(exit 0, no sanitizer report)", "exit 0", str(e)[:3000],
                                    FAIL, 0.0))
            srv.close_files()
    res.seconds = time.monotonic() - t0
    return res


# --------------------------------------------------------------------------- output

def _cut(s, n):
    s = s.replace("\n", " ")
    return s if len(s) <= n else s[:n - 3] + "..."


def text_table(res):
    w = {"id": max([4] + [len(r.id) for r in res.rows]), "desc": 54, "exp": 34, "obs": 46}
    lines = ["== %d %s (%.1f s)" % (res.num, res.title, res.seconds)]
    lines += ["   " + n for n in res.notes]
    lines.append("%-*s  %-*s  %-*s  %-*s  %s" % (w["id"], "case", w["desc"], "description",
                                                 w["exp"], "expected", w["obs"], "observed",
                                                 "result"))
    for r in res.rows:
        lines.append("%-*s  %-*s  %-*s  %-*s  %s" % (
            w["id"], r.id, w["desc"], _cut(r.desc, w["desc"]), w["exp"], _cut(r.expected, w["exp"]),
            w["obs"], _cut(r.observed, w["obs"]), r.result))
    bad = [r for r in res.rows if r.result in (FAIL, NONSTRICT)]
    if bad:
        lines.append("-- not passing, in full:")
        for r in bad:
            lines.append("%s %s: %s\n     expected: %s\n     observed: %s" % (
                r.result, r.id, r.desc, r.expected, r.observed))
    n = res.counts()
    lines.append("-- section %d: %d passed, %d failed, %d non-strict, %d n/a" % (
        res.num, n[PASS], n[FAIL], n[NONSTRICT], n[NA]))
    return "\n".join(lines)


def _md(s):
    return s.replace("|", "\\|").replace("\n", " ")


def markdown_tables(results, header):
    out = [header, ""]
    total = {PASS: 0, FAIL: 0, NONSTRICT: 0, NA: 0}
    out.append("| section | cases | pass | fail | non-strict | n/a | time |")
    out.append("|---|---|---|---|---|---|---|")
    for res in results:
        n = res.counts()
        for k in total:
            total[k] += n[k]
        out.append("| %d %s | %d | %d | %d | %d | %d | %.1f s |" % (
            res.num, _md(res.title), len(res.rows), n[PASS], n[FAIL], n[NONSTRICT], n[NA],
            res.seconds))
    out.append("")
    for res in results:
        out.append("### %d %s" % (res.num, res.title))
        out.append("")
        for note in res.notes:
            out.append("- %s" % _md(note))
        if res.notes:
            out.append("")
        out.append("| case | description | expected | observed | result |")
        out.append("|---|---|---|---|---|")
        for r in res.rows:
            res_cell = r.result if r.result == PASS or r.result == NA else "**%s**" % r.result
            out.append("| %s | %s | %s | %s | %s |" % (_md(r.id), _md(r.desc), _md(r.expected),
                                                      _md(_cut(r.observed, 400)), res_cell))
        out.append("")
    out.append("%d passed, %d failed (%d FAIL, %d NON-STRICT), %d not applicable." % (
        total[PASS], total[FAIL] + total[NONSTRICT], total[FAIL], total[NONSTRICT], total[NA]))
    return "\n".join(out)


BEGIN, END = "<!-- conformance:begin -->", "<!-- conformance:end -->"


def machine_line():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    osname = ""
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "%s, Linux %s %s, %s, %d CPUs, Python %s" % (
        osname or platform.system(), platform.release(), platform.machine(), cpu or "unknown CPU",
        os.cpu_count() or 0, platform.python_version())


def source_line():
    """The git revision of the tree the runner lives in, and whether src/ differs."""
    root = os.path.normpath(os.path.join(HERE, "..", ".."))
    try:
        rev = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    if not rev:
        return "unknown (no git)"
    return "commit %s%s" % (rev, " with uncommitted changes in src/" if dirty else "")


def write_markdown(path, results, argv, seconds):
    binp = os.environ.get("WSHUB_BIN", "")
    cmd = ("WSHUB_BIN=%s /usr/bin/python3 tests/conformance/conformance.py %s" % (
        binp, " ".join(argv))).rstrip()
    header = "\n".join([
        "Generated by the runner on %s (UTC), in %.0f s." % (
            datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"), seconds),
        "",
        "- machine: %s" % machine_line(),
        "- build variant: %s (`%s`), built from %s" % (variant_name(), binp, source_line()),
        "- command: `%s`" % cmd,
    ])
    body = markdown_tables(results, header)
    old = None
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
    if old and BEGIN in old and END in old:
        pre, rest = old.split(BEGIN, 1)
        _, post = rest.split(END, 1)
        doc = pre + BEGIN + "\n" + body + "\n" + END + post
    else:
        doc = "# wshub WebSocket conformance results\n\n%s\n%s\n%s\n" % (BEGIN, body, END)
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description="wshub RFC 6455 conformance suite (/echo, raw sockets)")
    ap.add_argument("--section", type=int, action="append",
                    help="run only this section (repeatable); one of %s" % ", ".join(
                        str(s[0]) for s in SECTIONS))
    ap.add_argument("--case", action="append", help="run only cases with this id or id prefix")
    ap.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown")
    ap.add_argument("--verbose", action="store_true", help="print each case as it finishes")
    a = ap.parse_args(argv)
    nums = a.section or [s[0] for s in SECTIONS]
    for n in nums:
        if n not in SECTION_BY_NUM:
            ap.error("no section %d" % n)
    if a.case:
        nums = [n for n in nums if any(p.split(".")[0] == str(n) for p in a.case)]

    def progress(row):
        if a.verbose:
            print("  %-10s %-10s %6.2fs  %s" % (row.id, row.result, row.seconds,
                                                _cut(row.observed, 90)), flush=True)

    t0 = time.monotonic()
    results = []
    for n in nums:
        res = run_section(n, a.case, progress)
        results.append(res)
        print(text_table(res), flush=True)
        print(flush=True)
    seconds = time.monotonic() - t0
    total = {PASS: 0, FAIL: 0, NONSTRICT: 0, NA: 0}
    for res in results:
        for k, v in res.counts().items():
            total[k] += v
    if a.markdown:
        write_markdown(a.markdown, results, argv, seconds)
        print("wrote %s" % a.markdown)
    print("total %.1f s, variant %s; failed = %d FAIL + %d NON-STRICT; skipped = %d not "
          "applicable" % (seconds, variant_name(), total[FAIL], total[NONSTRICT],
                                        total[NA]))
    print("%d passed, %d failed, %d skipped" % (total[PASS], total[FAIL] + total[NONSTRICT],
                                                total[NA]))
    return 0 if total[FAIL] + total[NONSTRICT] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
