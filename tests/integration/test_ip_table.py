"""The per-address table with many addresses (issue 13, memory per connection).

Each address that has /ws connections has one entry (its connection count and its
connections' room memberships) in an open-addressing table, created at its first
connection and removed at its last. These tests connect from 40 loopback addresses
(127.0.0.2 .. 127.0.0.41, so the table grows through several sizes) with
--max-connections-per-ip 2 and --max-rooms-per-ip 3 and check, for every address:

- two upgrades are accepted and a third is refused with 429;
- three joins (over its two connections) succeed and a fourth is refused with
  limit_reached;
- once every connection of half of the addresses is closed, those addresses start
  afresh (two connections, three rooms: their entries went and came back new), while
  the other half stays at its limits.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_ip_table
"""

import json
import socket
import time
import unittest

from wshub_harness import HOST, OP_TEXT, RawClient, ServerTestCase, envelope, upgrade_request

ADDRS = ["127.0.0.%d" % k for k in range(2, 42)]
STEP_TIMEOUT = 10.0


def upgrade(port, addr, user):
    """(status, client or None): a /ws upgrade from source address addr."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(STEP_TIMEOUT)
    s.bind((addr, 0))
    s.connect((HOST, port))
    s.sendall(upgrade_request(port, "/ws?token=%s" % user))
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status != 101:
        s.close()
        return status, None
    return status, RawClient.from_socket(s, buf=rest, port=port)


def join(c, room):
    """The reply's type, or the error's code."""
    c.send_text(envelope("join_room", {"room_id": room, "presence": False}, id="j:" + room))
    while True:
        op, data = c.recv_message(STEP_TIMEOUT)
        assert op == OP_TEXT
        m = json.loads(data)
        if "j:" + room in (m.get("id"), m.get("payload", {}).get("id")):
            return m["payload"]["code"] if m["type"] == "error" else m["type"]


class IpTable(ServerTestCase):
    SERVER_ARGS = ("--stream", "", "--max-connections-per-ip", "2", "--max-rooms-per-ip", "3")

    def fill(self, addr, tag, wait=False):
        """Two connections from addr, three rooms, then the refusals; returns them.
        wait: the address's earlier connections were just closed, and the server may
        not have counted them out yet (it does before the close completes there):
        a 429 for one of the two is tried again until the step timeout."""
        conns = []
        deadline = time.monotonic() + STEP_TIMEOUT
        for j in range(2):
            while True:
                st, c = upgrade(self.port, addr, "%s-%s-%d" % (addr, tag, j))
                if st != 429 or not wait or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            self.assertEqual(st, 101, "connection %d from %s (%s)" % (j, addr, tag))
            conns.append(c)
        st, _ = upgrade(self.port, addr, "%s-%s-x" % (addr, tag))
        self.assertEqual(st, 429, "third connection from %s (%s)" % (addr, tag))
        # (The rooms of a closed connection are given back before it is counted out.)
        got = [join(conns[r % 2], "room-%s-%s-%d" % (addr, tag, r)) for r in range(4)]
        self.assertEqual(got, ["room_joined"] * 3 + ["limit_reached"],
                         "joins from %s (%s)" % (addr, tag))
        return conns

    def test_many_addresses(self):
        held = {}
        try:
            for a in ADDRS:
                held[a] = self.fill(a, "first")
            gone = ADDRS[::2]
            for a in gone:
                for c in held.pop(a):
                    c.close()
            for a in gone:
                held[a] = self.fill(a, "second", wait=True)
            for a in ADDRS[1::2]:
                st, _ = upgrade(self.port, a, "%s-again" % a)
                self.assertEqual(st, 429, "an address still at its limit: %s" % a)
                c = held[a][0]
                self.assertEqual(join(c, "room-%s-more" % a), "limit_reached")
        finally:
            for cs in held.values():
                for c in cs:
                    c.close()


if __name__ == "__main__":
    unittest.main()
