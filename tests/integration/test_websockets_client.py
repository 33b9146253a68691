"""wshub's /echo against a real client: the Python `websockets` library (the asyncio
client of Debian 12's python3-websockets 10.4).

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_websockets_client
"""

import asyncio
import os
import time
import unittest

import websockets
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from wshub_harness import close_code, run, ServerTestCase

MiB = 1024 * 1024
STEP_TIMEOUT = 10.0  # bound on any single awaited step




class WebsocketsTestCase(ServerTestCase):
    def uri(self, port=None):
        return "ws://127.0.0.1:%d/echo" % (self.port if port is None else port)

    def connect(self, port=None, **kw):
        kw.setdefault("max_size", 4 * MiB)
        kw.setdefault("compression", "deflate")
        kw.setdefault("open_timeout", STEP_TIMEOUT)
        kw.setdefault("close_timeout", 5)
        kw.setdefault("ping_interval", None)
        return websockets.connect(self.uri(port), **kw)


class EchoTests(WebsocketsTestCase):
    def test_text_echo(self):
        async def main():
            async with self.connect() as ws:
                for msg in ("hello", "", "h\u00e9llo \u20ac \U0001F600", "x" * 10000):
                    await ws.send(msg)
                    got = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
                    self.assertIsInstance(got, str)
                    self.assertEqual(got, msg)
        run(main())

    def test_binary_echo(self):
        async def main():
            async with self.connect() as ws:
                for msg in (b"\x00\x01\x02\xff", b"", os.urandom(70000)):
                    await ws.send(msg)
                    got = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
                    self.assertIsInstance(got, bytes)
                    self.assertEqual(got, msg)
        run(main())

    def test_fragmented_send_echo(self):
        async def main():
            async with self.connect() as ws:
                parts = ["frag%d-" % i for i in range(50)]
                await ws.send(iter(parts))  # sent as one fragmented message
                got = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
                self.assertEqual(got, "".join(parts))
        run(main())

    def test_exactly_1mib_message_echo(self):
        async def main():
            async with self.connect() as ws:
                data = os.urandom(MiB)
                await ws.send(data)
                got = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
                self.assertEqual(len(got), MiB)
                self.assertEqual(got, data)
                text = "t" * MiB
                await ws.send(text)
                self.assertEqual(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT), text)
        run(main())

    def test_1mib_plus_1_gets_1009(self):
        async def main():
            async with self.connect() as ws:
                await ws.send(b"\x00" * (MiB + 1))
                with self.assertRaises(ConnectionClosedError) as cm:
                    await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
                self.assertEqual(close_code(cm.exception), 1009, repr(cm.exception))
                self.assertEqual(cm.exception.code, 1009)
        run(main())

    def test_100_pipelined_messages(self):
        async def main():
            async with self.connect() as ws:
                msgs = ["message %d %s" % (i, "z" * (i * 37 % 500)) for i in range(100)]
                for m in msgs:
                    await ws.send(m)
                for m in msgs:
                    self.assertEqual(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT), m)
        run(main())

    def test_ping_gets_pong(self):
        async def main():
            async with self.connect() as ws:
                waiter = await ws.ping(b"are you there")
                await asyncio.wait_for(waiter, STEP_TIMEOUT)
                waiter = await ws.ping()
                await asyncio.wait_for(waiter, STEP_TIMEOUT)
                await ws.send("after pings")
                self.assertEqual(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT), "after pings")
        run(main())

    def test_client_close_code_echoed(self):
        async def main():
            ws = await self.connect()
            await ws.close(code=4000, reason="done")
            self.assertEqual(ws.close_code, 4000)
        run(main())


class ConcurrencyTests(WebsocketsTestCase):
    THREADS = 4

    def test_50_connections_20_messages_each(self):
        async def one(i):
            async with self.connect() as ws:
                for j in range(20):
                    msg = "conn %d msg %d" % (i, j)
                    if j % 2:
                        await ws.send(msg.encode())
                        self.assertEqual(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT),
                                         msg.encode())
                    else:
                        await ws.send(msg)
                        self.assertEqual(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT), msg)
            return i

        async def main():
            done = await asyncio.gather(*(one(i) for i in range(50)))
            self.assertEqual(sorted(done), list(range(50)))
        run(main(), timeout=60)
        self.assertEqual(self.server.healthz(), 200)


class GracefulShutdownTests(WebsocketsTestCase):
    START_CLASS_SERVER = False

    def test_sigterm_closes_every_connection_with_1001(self):
        srv = self.start_server(("--shutdown-timeout", "3s"))

        async def main():
            conns = [await self.connect(port=srv.port) for _ in range(10)]
            try:
                for i, ws in enumerate(conns):
                    await ws.send("hello %d" % i)
                    self.assertEqual(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT),
                                     "hello %d" % i)
                t0 = time.monotonic()
                srv.terminate()
                codes = []
                for ws in conns:
                    try:
                        await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
                        codes.append("message instead of close")
                    except ConnectionClosed as e:
                        codes.append(close_code(e))
                    await asyncio.wait_for(ws.wait_closed(), STEP_TIMEOUT)
                self.assertEqual(codes, [1001] * 10)
                self.assertEqual([ws.close_code for ws in conns], [1001] * 10)
                return t0
            finally:
                for ws in conns:
                    await ws.close()

        t0 = run(main())
        rc = srv.wait(timeout=5)
        self.assertEqual(rc, 0, "exit code %s; stderr:\n%s" % (rc, srv.stderr()[-5000:]))
        self.assertLess(time.monotonic() - t0, 3.0,
                        "clients answered the close, yet the server waited for its deadline")


if __name__ == "__main__":
    unittest.main()
