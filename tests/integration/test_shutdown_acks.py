"""An ack is a promise: graceful shutdown (SIGTERM) under load delivers every message
that was acked before the close frames go out, and refuses what comes after with
error `shutting_down` and no ack (issue 14, finding 6).

Three senders (not members of the room) publish to one room as fast as their acks come
back (a window of messages in flight each); several receivers in the room read
everything. Mid-traffic the server gets SIGTERM. Then:
  - every receiver is closed with 1001, and has received, before that close frame,
    every seq that any sender saw acked;
  - a message answered with `shutting_down` got no ack (and no message got both), nor
    did any message the same sender sent after it;
  - the server exits 0.
The race this guards against was timing-dependent (2 runs in 5 lost acked messages),
so the scenario runs several times, on 1 and on 2 worker threads. And POST
/api/publish answers 503 shutting_down once the shutdown has begun.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_shutdown_acks
"""

import asyncio
import json
import time
import unittest

import websockets
from websockets.exceptions import ConnectionClosed

from wshub_harness import envelope, HttpConn, ServerTestCase, close_code, run

ROOM = "acked"
SENDERS = 3
RECEIVERS = 4
WINDOW = 8         # messages in flight per sender
TRAFFIC_S = 0.6    # traffic before SIGTERM
RUNS = 3           # per thread count
STEP_TIMEOUT = 10.0


async def connect(port, user):
    return await websockets.connect("ws://127.0.0.1:%d/ws?token=%s" % (port, user),
                                    compression=None, open_timeout=STEP_TIMEOUT, close_timeout=3,
                                    ping_interval=None, max_queue=None)


async def receiver(ws, out):
    """Reads until the close; out gets the room's seqs in arrival order and the close code."""
    seqs = []
    try:
        while True:
            m = json.loads(await ws.recv())
            if m.get("type") == "send_to_room":
                seqs.append(m["seq"])
    except ConnectionClosed as e:
        out["code"] = close_code(e)
    out["seqs"] = seqs


async def sender(ws, name, stop_sending, out):
    """Keeps WINDOW messages in flight; records acked seqs and shutting_down refusals."""
    acked, refused, other = {}, set(), []
    sent = 0
    inflight = 0
    try:
        while True:
            while inflight < WINDOW and not stop_sending.is_set():
                await ws.send(envelope("send_to_room", {"room_id": ROOM, "n": sent},
                                       id="%s-%d" % (name, sent)))
                sent += 1
                inflight += 1
            m = json.loads(await ws.recv())
            t = m.get("type")
            if t == "ack":
                acked[m["payload"]["id"]] = m["payload"]["seq"]
                inflight -= 1
            elif t == "error":
                if m["payload"].get("code") == "shutting_down":
                    refused.add(m["payload"].get("id"))
                else:
                    other.append(m)
                inflight -= 1
    except ConnectionClosed as e:
        out["code"] = close_code(e)
    out.update(acked=acked, refused=refused, other=other, sent=sent)


class ShutdownDeliversAcked(ServerTestCase):
    START_CLASS_SERVER = False

    def scenario(self, threads):
        srv = self.start_server(("--stream", "", "--presence=false", "--shutdown-timeout", "8s"),
                                threads=threads)

        async def main():
            recv_ws = [await connect(srv.port, "recv%d" % i) for i in range(RECEIVERS)]
            send_ws = [await connect(srv.port, "send%d" % i) for i in range(SENDERS)]
            for ws in recv_ws:
                await ws.send(envelope("join_room", {"room_id": ROOM}, id="j"))
                while json.loads(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)).get("id") != "j":
                    pass
            stop_sending = asyncio.Event()
            routs = [{} for _ in recv_ws]
            souts = [{} for _ in send_ws]
            tasks = [asyncio.create_task(receiver(ws, o)) for ws, o in zip(recv_ws, routs)]
            tasks += [asyncio.create_task(sender(ws, "s%d" % i, stop_sending, o))
                      for i, (ws, o) in enumerate(zip(send_ws, souts))]
            await asyncio.sleep(TRAFFIC_S)
            srv.terminate()
            # Senders keep sending a little after the signal: those messages must be
            # refused (or not answered at all once the connection closes), never acked
            # without being delivered.
            await asyncio.sleep(0.3)
            stop_sending.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            return routs, souts

        routs, souts = run(main(), timeout=60)
        rc = srv.wait(timeout=15)
        self.assertEqual(rc, 0, "exit code %s; stderr:\n%s" % (rc, srv.stderr()[-5000:]))

        acked = {}
        refused = 0
        for i, o in enumerate(souts):
            self.assertEqual(o["other"], [], "sender %d got unexpected errors" % i)
            both = set(o["acked"]) & o["refused"]
            self.assertEqual(both, set(), "messages both acked and refused")
            # A connection's messages are handled in order and the refusal is for good:
            # nothing sent after the first refused message is acked.
            if o["refused"]:
                first_refused = min(int(r.rsplit("-", 1)[1]) for r in o["refused"])
                late = [k for k in o["acked"] if int(k.rsplit("-", 1)[1]) > first_refused]
                self.assertEqual(late, [], "acked after shutdown began")
            refused += len(o["refused"])
            acked.update(o["acked"])
        acked_seqs = set(acked.values())
        self.assertGreater(len(acked_seqs), 50, "too little traffic to test anything")
        lost_total = 0
        for i, o in enumerate(routs):
            self.assertEqual(o.get("code"), 1001, "receiver %d closed with %r" % (i, o.get("code")))
            got = o["seqs"]
            self.assertEqual(got, sorted(got), "receiver %d: out of order" % i)
            missing = acked_seqs - set(got)
            lost_total += len(missing)
            self.assertEqual(missing, set(),
                             "receiver %d (threads=%d): %d acked messages never delivered "
                             "before its 1001 (e.g. seqs %s)"
                             % (i, threads, len(missing), sorted(missing)[:10]))
        print("threads=%d: %d acked, %d refused with shutting_down, %d sent"
              % (threads, len(acked_seqs), refused, sum(o["sent"] for o in souts)))

    def test_every_acked_message_is_delivered_before_1001_one_thread(self):
        for _ in range(RUNS):
            self.scenario(1)

    def test_every_acked_message_is_delivered_before_1001_two_threads(self):
        for _ in range(RUNS):
            self.scenario(2)


class PublishApiDuringShutdown(ServerTestCase):
    START_CLASS_SERVER = False

    def test_post_api_publish_gets_503_shutting_down_once_shutdown_began(self):
        srv = self.start_server(("--stream", "", "--api-key", "k3y", "--shutdown-timeout", "5s"))
        body = json.dumps({"type": "news", "room_id": "r", "payload": {"n": 1}}).encode()
        head = (b"POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: k3y\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body))
        with HttpConn(srv.port) as before:  # the API publishes normally before the signal
            before.send(head + b"Connection: close\r\n\r\n" + body)
            self.assertEqual(before.read_response()[0], 202)
        # A request already under way when the signal comes is still answered.
        with HttpConn(srv.port) as pending:
            pending.send(head)
            time.sleep(0.1)
            srv.terminate()
            time.sleep(0.3)
            pending.send(b"\r\n" + body)
            status, hdrs, resp = pending.read_response()
        self.assertEqual(status, 503, resp)
        self.assertEqual(json.loads(resp)["error"]["code"], "shutting_down")
        self.assertEqual(hdrs.get("retry-after"), "1")
        self.assertEqual(srv.wait(timeout=10), 0, srv.stderr()[-3000:])


if __name__ == "__main__":
    unittest.main()
