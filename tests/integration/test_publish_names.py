"""One validation for every entry point (issue 14, finding 5): POST /api/publish
applies the rules of /ws to room ids, user ids and types, and answers a fault with the
code a WebSocket client gets for it. Before, `"room_id":"a\\nb"` was published (202)
through the API while /ws refused it. Each refusal is counted in
wshub_api_publish_refused_total{code}.

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_publish_names
"""

import json
import unittest

from wshub_harness import RawClient, ServerTestCase, http_request, metrics

KEY = "test-key"
# Control characters (C0 and DEL) in every position, as JSON escapes.
BAD_NAMES = ["a\nb", "\tx", "x\r", "a\x1bb", "a\x7fb", "\x01", "x" * 129, ""]
BAD_TYPES = ["a\nb", "t\x7f", "\x1b[31m", "x" * 65, ""]


def publish(port, body):
    raw = json.dumps(body).encode()
    st, _, resp = http_request(port, b"POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: "
                               + KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(raw) + raw)
    return st, json.loads(resp)


class PublishNamesTest(ServerTestCase):
    SERVER_ARGS = ("--api-key", KEY)

    def ws_error(self, ws, msg):
        """The code /ws answers msg with."""
        ws.send_text(json.dumps(msg))
        while True:
            _, payload = ws.recv_message()
            reply = json.loads(payload)
            if reply["type"] == "error":
                return reply["payload"]["code"]
            self.fail("/ws accepted %r: %r" % (msg, reply))

    def refused_count(self, code):
        return metrics(self.port).get('wshub_api_publish_refused_total{code="%s"}' % code, 0.0)

    def assert_refused(self, body, code):
        before = self.refused_count(code)
        st, resp = publish(self.port, body)
        self.assertEqual(st, 400, "%r -> %d %r" % (body, st, resp))
        self.assertEqual(resp["error"]["code"], code, body)
        self.assertEqual(self.refused_count(code), before + 1, body)

    def test_ids_and_types_refused_as_on_ws(self):
        with RawClient(self.port, path="/ws?user_id=probe") as ws:
            for name in BAD_NAMES:
                room_code = self.ws_error(ws, {"type": "join_room", "payload": {"room_id": name}})
                user_code = self.ws_error(ws, {"type": "send_to_user",
                                               "payload": {"user_id": name, "text": "x"}})
                self.assertEqual((room_code, user_code), ("bad_field", "bad_field"), repr(name))
                ws.send_text(json.dumps({"type": "ping"}))  # strikes back to zero
                ws.recv_message()
                self.assert_refused({"type": "news", "room_id": name, "payload": {}}, room_code)
                self.assert_refused({"type": "news", "user_id": name, "payload": {}}, user_code)
                self.assert_refused({"type": "chat_message", "room_id": "lobby",
                                     "payload": {"user_id": name, "content": "hi"}}, "bad_field")
                if name:  # an empty payload room_id is filled in from the target
                    self.assert_refused({"type": "chat_message", "room_id": "lobby",
                                         "payload": {"room_id": name, "user_id": "bot",
                                                     "content": "hi"}}, "bad_field")
            for t in BAD_TYPES:
                self.assertEqual(self.ws_error(ws, {"type": t, "payload": {}}), "bad_envelope", repr(t))
                ws.send_text(json.dumps({"type": "ping"}))
                ws.recv_message()
                self.assert_refused({"type": t, "broadcast": True, "payload": {}}, "bad_envelope")

    def test_valid_names_still_published(self):
        for room in ["lobby", "é-ü 🙂", "a b", "x" * 128, '"quoted"\\']:
            st, resp = publish(self.port, {"type": "news", "room_id": room, "payload": {}})
            self.assertEqual((st, resp["status"]), (202, "no_members"), room)
        st, resp = publish(self.port, {"type": "y" * 64, "user_id": "u" * 128, "payload": {}})
        self.assertEqual(st, 202, resp)
        st, resp = publish(self.port, {"type": "chat_message", "room_id": "lobby",
                                       "payload": {"user_id": "bot", "content": "a\nb"}})
        self.assertEqual(st, 202, resp)  # content is text, not an id

    def test_every_code_listed(self):
        m = metrics(self.port)
        for code in ["bad_json", "bad_envelope", "bad_field", "unknown_type", "internal"]:
            self.assertIn('wshub_api_publish_refused_total{code="%s"}' % code, m)


if __name__ == "__main__":
    unittest.main()
