"""Online users' records as connections come and go (issue 13, memory per connection).

Each user id has one record shared by the registry and every worker (the id stored
once, each worker's slot of the user's connections: the client itself or an array
when there are several, the registry's and the workers' open-addressing tables of
users, the listing order in sorted blocks). These tests open several connections for
each of many users on two workers (one user with 14, so that its arrays grow and
shrink as they close), close a random
subset in random order, open new ones (users whose every connection had gone come
back as new records) and check after each round that:

- online_users (paged, 7 at a time) lists exactly the users with an open connection,
  in byte order, and /api/online agrees;
- a send_to_user reaches each open connection of that user exactly once and no other
  connection (each connection reads until an end marker sent to its user after it);
- a broadcast reaches every open connection exactly once.

Run twice: with the defaults (no message buckets), and with --rate-limit and
--user-rate-limit on (the buckets are then stored after the client and in the
users' records), high enough not to refuse anything here.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_user_records
"""

import json
import random
import time
import unittest

from wshub_harness import HubClient, ServerTestCase, http_request

STEP_TIMEOUT = 10.0


class UserRecords(ServerTestCase):
    SERVER_ARGS = ("--stream", "", "--query-rate", "0", "--client-broadcast")
    SEED = 13

    def online(self, conn):
        """online_users walked in pages of 7."""
        out, cursor = [], None
        while True:
            payload = {"limit": 7}
            if cursor is not None:
                payload["cursor"] = cursor
            m = conn.call("online_users", payload)
            p = m["payload"]
            out.extend(p["online_users"])
            cursor = p["next_cursor"]
            if cursor is None:
                return out

    def wait_online(self, conn, want):
        """Closes complete on the server after the client's close: poll until the
        listing matches (it must within the step timeout)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            got = self.online(conn)
            if got == want or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def check_round(self, sender, conns, tag):
        open_users = sorted({c.user for c in conns} | {sender.user})
        got = self.wait_online(sender, open_users)
        self.assertEqual(got, open_users, "online_users after round %s" % tag)
        st, _, body = http_request(self.port,
                                   b"GET /api/online?limit=1000 HTTP/1.1\r\nHost: x\r\n"
                                   b"Connection: close\r\n\r\n")
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["online_users"], open_users)
        users = sorted({c.user for c in conns})
        for u in users:
            ack = sender.call("send_to_user", {"user_id": u, "k": "%s:%s" % (tag, u)})
            self.assertNotEqual(ack["type"], "error", ack)
        for u in users:
            ack = sender.call("send_to_user", {"user_id": u, "k": "%s:end" % tag})
            self.assertNotEqual(ack["type"], "error", ack)
        ack = sender.call("broadcast", {"k": "%s:all" % tag})
        self.assertNotEqual(ack["type"], "error", ack)
        for c in conns:
            got = []
            try:
                while True:
                    m = c.recv_json()
                    k = m.get("payload", {}).get("k")
                    if k == "%s:end" % tag:
                        break
                    got.append(k)
                # The broadcast may come before or after the end marker (another stream).
                if "%s:all" % tag in got:
                    got.remove("%s:all" % tag)
                else:
                    m = c.recv_json()
                    self.assertEqual(m.get("payload", {}).get("k"), "%s:all" % tag)
            except TimeoutError:
                self.fail("a connection of %s got %r, then nothing for %.0f s (round %s)" %
                          (c.user, got, STEP_TIMEOUT, tag))
            self.assertEqual(got, ["%s:%s" % (tag, c.user)],
                             "what connection of %s got in round %s" % (c.user, tag))

    def test_records_follow_connections(self):
        rnd = random.Random(self.SEED)
        sender = HubClient(self.port, "zz-sender")
        conns = []
        try:
            for i in range(14):
                for _ in range(1 + i % 4 + (12 if i == 13 else 0)):
                    conns.append(HubClient(self.port, "u%02d" % i))
            for c in conns:
                c.call("ping")
            self.check_round(sender, conns, "r0")
            for rnd_i in range(1, 4):
                rnd.shuffle(conns)
                closing, conns = conns[:len(conns) // 3], conns[len(conns) // 3:]
                for c in closing:
                    c.close()
                # New connections: some for users still online, some for users whose
                # connections all went (their record is new), some for new users.
                for _ in range(5):
                    u = "u%02d" % rnd.randrange(20)
                    c = HubClient(self.port, u)
                    c.call("ping")
                    conns.append(c)
                self.check_round(sender, conns, "r%d" % rnd_i)
            for c in conns:
                c.close()
            self.assertEqual(self.wait_online(sender, [sender.user]), [sender.user])
        finally:
            for c in conns:
                c.close()
            sender.close()


class UserRecordsWithBuckets(UserRecords):
    SERVER_ARGS = UserRecords.SERVER_ARGS + ("--rate-limit", "1000", "--user-rate-limit",
                                             "1000")
    SEED = 31


if __name__ == "__main__":
    unittest.main()
