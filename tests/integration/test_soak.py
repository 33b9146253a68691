"""Churn soak: many connections opening, joining a room, chatting and closing, for a
while, against one server. Asserts that every session completed, that nothing is left
behind (open connections, online users, rooms all back to zero), that the server's RSS
is flat once warmed up, and (in the ASan build) that LeakSanitizer finds no leak when
the server exits.

Short form in `make test`: WSHUB_SOAK_SECONDS (default 12). The long form is
bench/soak, which runs this same test for minutes, optionally under valgrind.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_soak
"""

import asyncio
import json
import os
import time
import unittest

import websockets

from wshub_harness import rss_bytes, ServerTestCase, http_request

MiB = 1024 * 1024
SECONDS = float(os.environ.get("WSHUB_SOAK_SECONDS", "12"))
WORKERS = int(os.environ.get("WSHUB_SOAK_WORKERS", "24"))
ROOMS = 8
ASAN = os.environ.get("WSHUB_VARIANT", "") == "asan"
if ASAN:
    # Freed memory sits in ASan's quarantine (256 MiB by default) and would read as
    # growth; a small one lets the RSS check judge the server's own memory.
    os.environ["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=8"
# Growth allowed between the first and the last third of the run (allocator caches
# and the registry's tables settle in the first third).
FLAT_SLACK = (16 if ASAN else 4) * MiB




def get_json(port, path):
    status, _, body = http_request(port, ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                                          % path).encode())
    if status != 200:
        raise AssertionError("%s: %d" % (path, status))
    return json.loads(body)


def metric(port, name):
    status, _, body = http_request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError("no metric %s" % name)


async def session(port, n):
    """One client's life: connect, join a room, send a chat line, see it relayed
    (every member, the sender included, gets it), leave, close."""
    user = "soak%d" % n
    room = "soak-%d" % (n % ROOMS)
    async with websockets.connect("ws://127.0.0.1:%d/ws?user_id=%s" % (port, user),
                                  open_timeout=10, close_timeout=5) as ws:
        await ws.send(json.dumps({"type": "join_room", "id": "j", "payload": {"room_id": room}}))
        text = "hello from %s" % user
        sent = False
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if m.get("type") == "room_joined" and not sent:
                await ws.send(json.dumps({"type": "send_to_room", "id": "s",
                                          "payload": {"room_id": room, "text": text}}))
                sent = True
            elif m.get("type") == "error":
                raise AssertionError("%s: server error %r" % (user, m))
            elif (m.get("type") == "send_to_room" and m.get("from") == user
                  and m.get("payload", {}).get("text") == text):
                break
        await ws.send(json.dumps({"type": "leave_room", "payload": {"room_id": room}}))


async def churn(port, pid, seconds, workers, samples):
    counter = iter(range(10**9))
    done = 0
    deadline = time.monotonic() + seconds

    async def worker():
        nonlocal done
        while time.monotonic() < deadline:
            await session(port, next(counter))
            done += 1

    async def sampler():
        while time.monotonic() < deadline:
            samples.append(rss_bytes(pid))
            await asyncio.sleep(0.25)

    await asyncio.gather(sampler(), *(worker() for _ in range(workers)))
    return done


class ChurnSoakTest(ServerTestCase):
    START_CLASS_SERVER = False

    def test_churn_leaves_nothing_behind_and_memory_flat(self):
        srv = self.start_server(("--stream", "", "--max-connections-per-ip", "0"))
        samples = []
        done = asyncio.run(asyncio.wait_for(
            churn(srv.port, srv.proc.pid, SECONDS, WORKERS, samples), SECONDS + 60))
        self.assertGreater(done, WORKERS * 4, "too few sessions completed")
        # Nothing left behind once the clients are gone.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (metric(srv.port, "wshub_websocket_active_connections") == 0
                    and get_json(srv.port, "/api/online")["count"] == 0
                    and get_json(srv.port, "/api/rooms")["count"] == 0):
                break
            time.sleep(0.1)
        self.assertEqual(metric(srv.port, "wshub_websocket_active_connections"), 0)
        self.assertEqual(get_json(srv.port, "/api/online")["count"], 0)
        self.assertEqual(get_json(srv.port, "/api/rooms")["count"], 0)
        third = max(1, len(samples) // 3)
        first, last = max(samples[:third]), max(samples[-third:])
        if os.environ.get("WSHUB_SOAK_VERBOSE"):
            print("\n  soak: %d sessions in %.0f s; RSS max first third %.1f MiB, last third "
                  "%.1f MiB" % (done, SECONDS, first / MiB, last / MiB))
        self.assertLess(last - first, FLAT_SLACK,
                        "RSS grew from %.1f to %.1f MiB over %d sessions"
                        % (first / MiB, last / MiB, done))
        # The cleanup stops the server and fails on a sanitizer report (leaks included).


if __name__ == "__main__":
    unittest.main()
