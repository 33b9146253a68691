"""unittest wrapper around the conformance runner: one test method per section, so the
ctest output names the section that failed. Each method starts its own server (with the
section's options), runs every case of the section, prints the section's table, and
fails with the cases that did not pass (FAIL and NON-STRICT alike). Sections 12 and 13
cover permessage-deflate.

Run: cd tests/conformance && WSHUB_BIN=/path/to/wshub /usr/bin/python3 -m unittest -v test_conformance
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import conformance  # noqa: E402


class ConformanceTests(unittest.TestCase):
    maxDiff = None

    def run_section(self, num):
        _, title, _, args = conformance.SECTION_BY_NUM[num]
        if args is None:
            self.skipTest("section %d (%s): %s" % (num, title, conformance.PMD))
        res = conformance.run_section(num)
        sys.stderr.write("\n" + conformance.text_table(res) + "\n")
        bad = [r for r in res.rows if r.result in (conformance.FAIL, conformance.NONSTRICT)]
        if bad:
            lines = ["section %d (%s): %d of %d cases not passing" % (
                num, title, len(bad), len(res.rows))]
            for r in bad:
                lines.append("%s %s - %s\n    expected: %s\n    observed: %s" % (
                    r.result, r.id, r.desc, r.expected, r.observed))
            self.fail("\n".join(lines))


def _make(num, title):
    def test(self):
        self.run_section(num)
    test.__doc__ = "section %d: %s" % (num, title)
    return test


for _num, _title, _, _ in conformance.SECTIONS:
    setattr(ConformanceTests, "test_section_%02d" % _num, _make(_num, _title))
del _num, _title


if __name__ == "__main__":
    unittest.main()
