"""OTEL_* environment the server must survive or refuse cleanly: an absurdly long
header name in OTEL_EXPORTER_OTLP_HEADERS (once a stack overflow), and a span queue
size past the limit (refused at start-up, exit 2).

Run: WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_otel_env
"""

import os
import subprocess
import unittest

from wshub_harness import ServerTestCase, wshub_bin


class OtelEnvTests(ServerTestCase):
    START_CLASS_SERVER = False

    def with_env(self, **env):
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)

        def restore():
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.addCleanup(restore)

    def test_long_header_name_is_ignored_not_overflowed(self):
        # Nothing listens on port 9 of 127.0.0.1: exports fail and are counted.
        self.with_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
                      OTEL_EXPORTER_OTLP_HEADERS="k" * 3000 + "=v,x-ok=1")
        srv = self.start_server()
        self.assertIn("header name too long", srv.stderr())
        # The cleanup stops it and fails on any sanitizer report or a non-zero exit.

    def test_queue_size_over_the_limit_is_refused(self):
        env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
                   OTEL_BSP_MAX_QUEUE_SIZE="100000")
        p = subprocess.run([wshub_bin(), "--listen", "127.0.0.1:0"], env=env,
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("OTEL_BSP_MAX_QUEUE_SIZE", p.stderr)


if __name__ == "__main__":
    unittest.main()
