"""Paginated listings and the limits around them (issue 14, finding 1).

- Pagination on /ws (list_rooms, online_users, room_members with payload limit and
  cursor) and on the HTTP API (/api/rooms, /api/online, /api/rooms/{id}/members with
  ?limit=&cursor=): walking every page gives the whole set in byte order, each id
  once; the default page is 100, the largest 1000; bad arguments get bad_field / 400;
  a walk stays ordered and complete for the ids that exist throughout while rooms
  come and go between pages.
- Listing has its own budget (--query-rate/--query-burst, tokens per started 100
  ids), per connection and per address (shared by /ws and HTTP), on although the
  message rate limit is off: a burst of listings gets rate_limited (/ws) and 429
  (HTTP), counted in wshub_hub_query_rate_limited_total; pings are unaffected.
- Room limits: --max-rooms refuses a new room with limit_reached (existing rooms can
  still be joined); --max-rooms-per-ip caps one address's memberships over all its
  connections, and a leave or a close gives them back.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_listing
"""

import json
import random
import unittest
import urllib.parse

from wshub_harness import HubClient, ServerTestCase, http_request, metrics

STEP_TIMEOUT = 10.0


class Hub(HubClient):
    """The harness's hub client, with pipelined joins."""

    def join_many(self, rooms):
        """Pipelined joins (no presence events); returns the replies by room."""
        for r in rooms:
            self.send_json("join_room", {"room_id": r, "presence": False}, id="j:" + r)
        out = {}
        while len(out) < len(rooms):
            m = self.recv_json()
            rid = m.get("id") or m.get("payload", {}).get("id")
            if isinstance(rid, str) and rid.startswith("j:"):
                out[rid[2:]] = m
        return out


def http_get(port, target):
    status, _, body = http_request(
        port, ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target).encode())
    return status, json.loads(body) if body else None


# Ids with bytes that matter in a query string or in ordering.
ODD_ROOMS = ["a b", "a+b", "a&b=c", "x/y", "%41", "\u00fcber", "\u65e5\u672c", "Z", "~tilde"]


class Pagination(ServerTestCase):
    SERVER_ARGS = ("--stream", "", "--query-rate", "0")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.clients = []
        port = cls.server.port
        rooms = ["room-%03d" % i for i in range(240)] + ODD_ROOMS
        random.Random(3).shuffle(rooms)
        owner = Hub(port, "owner")
        cls.clients.append(owner)
        replies = owner.join_many(rooms)
        assert all(m["type"] == "room_joined" for m in replies.values()), replies
        cls.users = ["owner"]
        for i in range(30):
            u = "user%02d" % ((i * 7) % 30)
            c = Hub(port, u)
            cls.clients.append(c)
            assert c.join_many(["big"])["big"]["type"] == "room_joined"
            cls.users.append(u)
        cls.rooms = sorted(rooms + ["big"], key=lambda s: s.encode())
        cls.users = sorted(set(cls.users), key=lambda s: s.encode())
        cls.members = sorted(set(cls.users) - {"owner"}, key=lambda s: s.encode())

    @classmethod
    def tearDownClass(cls):
        for c in cls.clients:
            c.close()
        super().tearDownClass()

    def ws_walk(self, type_, key, limit, extra=None):
        c = self.clients[0]
        got, cursor, pages = [], None, 0
        while True:
            p = dict(extra or {})
            p["limit"] = limit
            if cursor is not None:
                p["cursor"] = cursor
            m = c.call(type_, p)
            self.assertEqual(m["type"], type_, m)
            page = m["payload"]
            items = page[key]
            self.assertLessEqual(len(items), limit)
            self.assertEqual(page["count"], len(items))
            got += [x["room_id"] if isinstance(x, dict) else x for x in items]
            total = page["total"]
            pages += 1
            cursor = page.get("next_cursor")
            if cursor is None:
                break
            self.assertEqual(cursor, got[-1], "the cursor is the page's last id")
        return got, total, pages

    def http_walk(self, path, key, limit):
        got, cursor = [], None
        while True:
            q = "?limit=%d" % limit
            if cursor is not None:
                q += "&cursor=" + urllib.parse.quote(cursor, safe="")
            status, page = http_get(self.port, path + q)
            self.assertEqual(status, 200, page)
            items = page[key]
            self.assertLessEqual(len(items), limit)
            self.assertEqual(page["count"], len(items))
            got += [x["room_id"] if isinstance(x, dict) else x for x in items]
            cursor = page.get("next_cursor")
            if cursor is None:
                return got, page["total"]

    def test_ws_walk_gives_every_id_once_in_order(self):
        for type_, key, extra, want in (("list_rooms", "rooms", None, self.rooms),
                                        ("online_users", "online_users", None, self.users),
                                        ("room_members", "members", {"room_id": "big"},
                                         self.members)):
            for limit in (1, 7, 1000):
                got, total, pages = self.ws_walk(type_, key, limit, extra)
                self.assertEqual(got, want, "%s limit=%d" % (type_, limit))
                self.assertEqual(total, len(want))
                self.assertEqual(pages, max(1, -(-len(want) // limit)))

    def test_http_walk_gives_every_id_once_in_order(self):
        for path, key, want in (("/api/rooms", "rooms", self.rooms),
                                ("/api/online", "online_users", self.users),
                                ("/api/rooms/big/members", "members", self.members)):
            for limit in (3, 1000):
                got, total = self.http_walk(path, key, limit)
                self.assertEqual(got, want, "%s limit=%d" % (path, limit))
                self.assertEqual(total, len(want))

    def test_default_page_is_100_and_max_1000(self):
        m = self.clients[0].call("list_rooms")
        page = m["payload"]
        self.assertEqual(len(page["rooms"]), 100)
        self.assertEqual(page["total"], len(self.rooms))
        self.assertEqual(page["next_cursor"], self.rooms[99])
        status, body = http_get(self.port, "/api/rooms")
        self.assertEqual(status, 200)
        self.assertEqual([r["room_id"] for r in body["rooms"]], self.rooms[:100])
        status, body = http_get(self.port, "/api/rooms?limit=1000")
        self.assertEqual(len(body["rooms"]), len(self.rooms))
        self.assertIsNone(body["next_cursor"])
        # A cursor past the end: an empty last page.
        m = self.clients[0].call("list_rooms", {"cursor": "\U0010ffff"})
        self.assertEqual(m["payload"]["rooms"], [])
        self.assertIsNone(m["payload"]["next_cursor"])

    def test_bad_paging_arguments_are_refused(self):
        c = self.clients[0]
        for p in ({"limit": 0}, {"limit": 1001}, {"limit": "5"}, {"limit": 2.5}, {"limit": True},
                  {"cursor": 5}, {"cursor": ""}, {"cursor": "a\u0001"}, {"cursor": "x" * 129}):
            for t, extra in (("list_rooms", {}), ("online_users", {}),
                             ("room_members", {"room_id": "big"})):
                q = dict(extra)
                q.update(p)
                m = c.call(t, q)
                self.assertEqual(m["type"], "error", (t, p, m))
                self.assertEqual(m["payload"]["code"], "bad_field", (t, p, m))
            c.call("ping")  # a good message clears the strikes
        for q in ("limit=0", "limit=1001", "limit=abc", "limit=", "limit=5&limit=6", "limit=-1",
                  "cursor=", "cursor=%00", "cursor=a%0Ab", "cursor=%zz", "cursor=a&cursor=b",
                  "cursor=" + "x" * 129):
            for path in ("/api/rooms", "/api/online", "/api/rooms/big/members"):
                status, body = http_get(self.port, path + "?" + q)
                self.assertEqual(status, 400, (path, q, body))
                self.assertEqual(body["error"]["code"], "bad_field")
        # Unknown parameters are ignored.
        status, body = http_get(self.port, "/api/rooms?foo=bar&limit=2")
        self.assertEqual((status, len(body["rooms"])), (200, 2))

    def test_walk_is_stable_while_rooms_come_and_go(self):
        churn = Hub(self.port, "owner")  # a second connection of a listed user
        self.addCleanup(churn.close)
        # Rooms that will be left mid-walk, spread over the order.
        doomed = ["room-%03d" % i for i in range(5, 240, 40)]
        self.assertEqual({m["type"] for m in churn.join_many(doomed).values()}, {"room_joined"})
        c = self.clients[0]
        got, cursor, step = [], None, 0
        while True:
            p = {"limit": 10}
            if cursor is not None:
                p["cursor"] = cursor
            page = c.call("list_rooms", p)["payload"]
            got += [r["room_id"] for r in page["rooms"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            # Between pages: new rooms before and after the cursor, and the churner
            # leaves one room (still a room: the owner is in it too).
            step += 1
            churn.join_many(["aaa-new-%d" % step, "zzz-new-%d" % step])
            churn.call("leave_room", {"room_id": doomed[step % len(doomed)]})
        self.assertEqual(got, sorted(set(got), key=lambda s: s.encode()), "ordered, no duplicates")
        self.assertTrue(set(self.rooms) <= set(got), "every room that existed throughout is listed")
        self.assertFalse(any(r.startswith("aaa-new") for r in got),
                         "rooms created behind the cursor are not listed late")
        for i in range(1, step + 1):  # leave the listing as the other tests expect it
            for r in ("aaa-new-%d" % i, "zzz-new-%d" % i):
                self.assertEqual(churn.call("leave_room", {"room_id": r})["type"], "room_left")


class QueryRate(ServerTestCase):
    START_CLASS_SERVER = False
    ARGS = ("--stream", "", "--query-rate", "5", "--query-burst", "5")

    def lister(self, port, user="lister"):
        c = Hub(port, user)
        self.addCleanup(c.close)
        return c

    def burst(self, c, n, limit=None):
        """n pipelined listings; the replies' types (error code for errors)."""
        for i in range(n):
            p = {"limit": limit} if limit else None
            c.send_json("list_rooms" if i % 2 else "online_users", p, id="q%d" % i)
        codes = []
        for _ in range(n):
            m = c.recv_json()
            codes.append(m["payload"]["code"] if m["type"] == "error" else m["type"])
        return codes

    def test_ws_listing_burst_is_rate_limited_while_pings_pass(self):
        srv = self.start_server(self.ARGS)
        c = self.lister(srv.port)
        codes = self.burst(c, 12)
        self.assertGreaterEqual(codes.count("rate_limited"), 5, codes)
        self.assertGreaterEqual(len(codes) - codes.count("rate_limited"), 5, codes)
        self.assertEqual(c.call("ping")["type"], "pong", "pings are not listings")
        self.assertEqual(metrics(srv.port)["wshub_hub_query_rate_limited_total"],
                         codes.count("rate_limited"))

    def test_big_pages_cost_more(self):
        srv = self.start_server(self.ARGS)
        c = self.lister(srv.port)
        # A 500-id page costs 5 tokens: the burst of 5 pays for one.
        codes = self.burst(c, 3, limit=500)
        self.assertEqual(codes[0], "online_users")
        self.assertEqual(codes[1:], ["rate_limited"] * 2, codes)

    def test_a_page_bigger_than_the_bucket_costs_the_whole_bucket(self):
        srv = self.start_server(self.ARGS)
        c = self.lister(srv.port)
        # 1000 ids would cost 10 tokens; the bucket holds 5: allowed once, when full.
        self.assertEqual(self.burst(c, 2, limit=1000), ["online_users", "rate_limited"])

    def test_the_budget_is_per_address_too(self):
        srv = self.start_server(self.ARGS)
        a = self.lister(srv.port, "a")
        codes = self.burst(a, 6)
        self.assertIn("rate_limited", codes)
        # A new connection from the same address has a full bucket of its own, but the
        # address's is empty.
        b = self.lister(srv.port, "b")
        self.assertEqual(self.burst(b, 2), ["rate_limited"] * 2)

    def test_http_listing_burst_gets_429(self):
        srv = self.start_server(self.ARGS)
        statuses = []
        for i in range(12):
            status, body = http_get(srv.port, "/api/rooms" if i % 2 else "/api/online")
            statuses.append(status)
            if status == 429:
                self.assertEqual(body["error"]["code"], "rate_limited")
        self.assertIn(429, statuses)
        self.assertIn(200, statuses)
        self.assertEqual(metrics(srv.port)["wshub_hub_query_rate_limited_total"],
                         statuses.count(429))
        # The address's budget is shared with /ws.
        c = self.lister(srv.port)
        self.assertEqual(self.burst(c, 1), ["rate_limited"])


class RoomLimits(ServerTestCase):
    START_CLASS_SERVER = False

    def hub(self, port, user):
        c = Hub(port, user)
        self.addCleanup(c.close)
        return c

    def test_max_rooms_refuses_new_rooms_only(self):
        srv = self.start_server(("--stream", "", "--max-rooms", "5"))
        a = self.hub(srv.port, "a")
        r = a.join_many(["r%d" % i for i in range(6)])
        kinds = sorted(m["type"] if m["type"] != "error" else m["payload"]["code"]
                       for m in r.values())
        self.assertEqual(kinds, ["limit_reached"] + ["room_joined"] * 5)
        full = [k for k, m in r.items() if m["type"] == "error"][0]
        b = self.hub(srv.port, "b")
        joined = [k for k, m in r.items() if m["type"] == "room_joined"]
        self.assertEqual(b.join_many([joined[0]])[joined[0]]["type"], "room_joined",
                         "an existing room can still be joined")
        self.assertEqual(b.join_many([full])[full]["payload"]["code"], "limit_reached")
        a.call("leave_room", {"room_id": joined[1]})  # the room empties and goes away
        self.assertEqual(b.join_many([full])[full]["type"], "room_joined")
        self.assertGreaterEqual(metrics(srv.port)['wshub_hub_errors_total{code="limit_reached"}'], 2)

    def test_max_rooms_per_ip_counts_every_connection_of_the_address(self):
        srv = self.start_server(("--stream", "", "--max-rooms-per-ip", "3"))
        a = self.hub(srv.port, "a")
        b = self.hub(srv.port, "b")
        self.assertEqual({m["type"] for m in a.join_many(["x", "y"]).values()}, {"room_joined"})
        r = b.join_many(["x", "z"])
        self.assertEqual(sorted(m["type"] for m in r.values()), ["error", "room_joined"])
        self.assertEqual([m["payload"]["code"] for m in r.values() if m["type"] == "error"],
                         ["limit_reached"])
        a.call("leave_room", {"room_id": "x"})
        self.assertEqual(b.join_many(["q"])["q"]["type"], "room_joined", "a leave gives one back")
        a.close()
        b.call("ping")  # a's close is processed by now (same address, same order)
        c = self.hub(srv.port, "c")
        for _ in range(50):  # a's close may be on another worker: wait for it
            r = c.join_many(["w"])["w"]
            if r["type"] == "room_joined":
                break
            c.call("ping")
        self.assertEqual(r["type"], "room_joined", "a close gives its memberships back")


if __name__ == "__main__":
    unittest.main()
