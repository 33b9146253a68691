"""bench/compare's table, from saved bench results (no server, no measuring): the
figures of each row, the wshub ÷ seed-go ratios (per server CPU-second for throughput
and set-up, server cores and p99 at the fixed rate), the goal verdicts, the marking of
rows where the load generator is saturated, `--from-json` end to end and `--help`.

The runs below are wshub-bench JSON lines cut down to the fields bench/compare reads,
with figures chosen so that every ratio is known exactly.

Run: /usr/bin/python3 -m unittest -v test_bench_compare
"""

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPARE = os.path.join(ROOT, "bench", "compare")


def load_compare():
    loader = importlib.machinery.SourceFileLoader("bench_compare", COMPARE)
    spec = importlib.util.spec_from_loader("bench_compare", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


C = load_compare()


def echo_run(rate, cpu_us, client_pct, ok=True):
    return {"mode": "echo", "ok": ok, "error": None if ok else "boom",
            "results": {"window_s": 5.0, "messages": rate * 5, "messages_per_s": rate},
            "server_cpu_s": rate * 5 * cpu_us / 1e6, "server_cpu_per_msg_us": cpu_us,
            "client_cpu_pct": client_pct}


def fanout_run(rate, cpu_us, client_pct, lost=0):
    return {"mode": "fanout", "ok": True, "error": None,
            "results": {"window_s": 5.0, "deliveries_per_s": rate, "lost": lost,
                        "latency_us": {"p50": 1000.0, "p99": 5000.0}},
            "server_cpu_per_msg_us": cpu_us, "server_cpu_s": rate * 5 * cpu_us / 1e6,
            "client_cpu_pct": client_pct}


def rate_run(cores, p50_us, p99_us, client_pct=20.0):
    return {"mode": "fanout", "ok": True, "error": None,
            "results": {"window_s": 4.0, "deliveries_per_s": 100000.0, "lost": 0,
                        "latency_us": {"p50": p50_us, "p99": p99_us}},
            "server_cpu_s": cores * 4.0, "server_cpu_per_msg_us": 1.0,
            "client_cpu_pct": client_pct}


def idle_run(bytes_per_conn, cpu_per_conn_us, client_pct=50.0):
    return {"mode": "idle", "ok": True, "error": None,
            "results": {"opened": 10000, "bytes_per_connection": bytes_per_conn},
            "server_cpu_per_conn_us": cpu_per_conn_us, "client_cpu_pct": client_pct}


def saved():
    """Three runs per row; the medians are the middle values given first below."""
    runs = {
        "wshub": {
            # median 0.40 µs per message -> 2.5 M per CPU-s; generator at 95% (median)
            "echo16": [echo_run(2.0e6, 0.40, 95.0), echo_run(1.9e6, 0.50, 96.0),
                       echo_run(2.1e6, 0.30, 94.0)],
            "fanout": [fanout_run(4.0e6, 0.25, 70.0), fanout_run(3.9e6, 0.26, 71.0),
                       fanout_run(4.1e6, 0.24, 69.0)],
            # median 0.30 core, p99 4 ms
            "fanout_rate": [rate_run(0.30, 2000.0, 4000.0), rate_run(0.40, 2100.0, 5000.0),
                            rate_run(0.20, 1900.0, 3000.0)],
            "hub10k": [idle_run(240.0, 10.0), idle_run(260.0, 10.0), idle_run(230.0, 10.0)],
            "setup": [idle_run(230.0, 12.5, 92.0), idle_run(230.0, 12.0, 91.0),
                      idle_run(230.0, 13.0, 93.0)],
        },
        "seed-go": {
            # 8.0 µs per message: 8.0 / 0.40 = 20x
            "echo16": [echo_run(1.2e5, 8.0, 80.0), echo_run(1.1e5, 9.0, 80.0),
                       echo_run(1.3e5, 7.0, 80.0)],
            # 6.0 µs per delivery: 6.0 / 0.25 = 24x (goal 25x: not met)
            "fanout": [fanout_run(1.4e5, 6.0, 60.0), fanout_run(1.3e5, 7.0, 60.0),
                       fanout_run(1.5e5, 5.0, 60.0)],
            # 0.75 core -> 0.30 / 0.75 = 0.4; p99 10 ms -> 0.4
            "fanout_rate": [rate_run(0.75, 5000.0, 10000.0), rate_run(0.80, 5000.0, 11000.0),
                            rate_run(0.70, 5000.0, 9000.0)],
            "hub10k": [idle_run(18000.0, 50.0), idle_run(18000.0, 50.0),
                       idle_run(18000.0, 50.0)],
            # 100 µs per connection: 100 / 12.5 = 8x (goal met exactly)
            "setup": [idle_run(16000.0, 100.0), idle_run(16000.0, 110.0),
                      idle_run(16000.0, 90.0)],
        },
    }
    meta = {"when": "2026-12-07 12:00 UTC", "cores": 2, "kernel": "Linux test", "repeat": 3,
            "duration": 5, "servers": "wshub,seed-go",
            "scenarios": ["echo16", "fanout", "fanout_rate", "hub10k", "setup"]}
    return {"meta": meta, "runs": runs}


class FiguresAndRatios(unittest.TestCase):
    def setUp(self):
        s = saved()
        self.results, self.table, self.block = C.table_from(s["meta"], s["runs"])
        self.rows = {line.split(" | ")[0][2:]: line for line in self.table.splitlines()
                     if line.startswith("| ") and not line.startswith("| |")}

    def row(self, key):
        label = next(label for k, label, _, _ in C.SCENARIOS if k == key)
        return [c.strip() for c in self.rows[label].strip("|").split(" | ")]

    def test_medians(self):
        w, g = self.results["wshub"], self.results["seed-go"]
        self.assertAlmostEqual(w["echo16"]["cpu_us"], 0.40)
        self.assertAlmostEqual(w["echo16"]["per_cpu_s"], 2.5e6)
        self.assertAlmostEqual(w["fanout_rate"]["cores"], 0.30)
        self.assertAlmostEqual(g["fanout_rate"]["cores"], 0.75)
        self.assertEqual(w["fanout_rate"]["p99"], 4000.0)
        self.assertEqual(w["hub10k"]["value"], 240.0)
        self.assertAlmostEqual(w["setup"]["value"], 80000.0)
        self.assertEqual(w["fanout"]["lost"], 0)

    def test_ratios(self):
        w, g = self.results["wshub"], self.results["seed-go"]
        self.assertAlmostEqual(C.ratios("throughput", w["echo16"], g["echo16"])["ratio"], 20.0)
        self.assertAlmostEqual(C.ratios("throughput", w["fanout"], g["fanout"])["ratio"], 24.0)
        self.assertAlmostEqual(C.ratios("setup", w["setup"], g["setup"])["ratio"], 8.0)
        r = C.ratios("latency", w["fanout_rate"], g["fanout_rate"])
        self.assertAlmostEqual(r["cpu_ratio"], 0.4)
        self.assertAlmostEqual(r["p99_ratio"], 0.4)
        self.assertAlmostEqual(C.ratios("memory", w["hub10k"], g["hub10k"])["mem_ratio"],
                               240.0 / 18000.0)
        # a missing figure gives no ratio rather than a wrong one
        self.assertIsNone(C.ratios("throughput", {"text": "failed"}, g["echo16"])["ratio"])

    def test_table_cells(self):
        echo = self.row("echo16")
        self.assertEqual(len(echo), 5)  # label, wshub, seed-go, ratio, goal
        self.assertIn("2.50 M per CPU-s", echo[1])
        self.assertIn("load gen 95% — saturated", echo[1])
        self.assertNotIn("saturated", echo[2])
        self.assertEqual(echo[3], "**20.0×** per CPU-s")
        self.assertEqual(echo[4], "≥ 17×: met")
        fan = self.row("fanout")
        self.assertIn("0 lost", fan[1])
        self.assertEqual(fan[4], "≥ 25×: **not met**")
        rate = self.row("fanout_rate")
        self.assertIn("0.30 core; 2.00 / 4.00 ms", rate[1])
        self.assertIn("0.75 core; 5.00 / 10.00 ms", rate[2])
        self.assertEqual(rate[3], "CPU **0.40×**, p99 **0.40×**")
        self.assertEqual(rate[4], "CPU ≤ 0.5×, p99 ≤ 0.5×: met")
        self.assertEqual(self.row("hub10k")[3], "0.013×")
        self.assertEqual(self.row("hub10k")[4], "≤ 250 B: met")
        setup = self.row("setup")
        self.assertEqual(setup[3], "**8.00×** per CPU-s")
        self.assertIn("load gen 92% — saturated", setup[1])

    def test_a_row_with_two_goals_says_which_is_met(self):
        s = saved()
        # wshub at 0.60 core against 0.75 (0.8x: CPU not met), p99 still 0.4x (met)
        s["runs"]["wshub"]["fanout_rate"] = [rate_run(0.60, 2000.0, 4000.0)] * 3
        results, table, _ = C.table_from(s["meta"], s["runs"])
        self.assertIn("CPU ≤ 0.5×: **not met**; p99 ≤ 0.5×: met", table)

    def test_a_saturated_peer_at_a_fixed_rate_voids_the_verdict(self):
        s = saved()
        s["meta"]["scenarios"].append("fanout_rate50")
        # the Go peer at 0.95 core at 100 msg/s (saturated), 0.60 at 50 msg/s (not)
        s["runs"]["seed-go"]["fanout_rate"] = [rate_run(0.95, 9000.0, 60000.0)] * 3
        s["runs"]["seed-go"]["fanout_rate50"] = [rate_run(0.60, 5000.0, 10000.0)] * 3
        s["runs"]["wshub"]["fanout_rate50"] = [rate_run(0.33, 2000.0, 4000.0)] * 3
        results, table, _ = C.table_from(s["meta"], s["runs"])
        self.assertTrue(results["seed-go"]["fanout_rate"]["server_saturated"])
        self.assertFalse(results["wshub"]["fanout_rate"]["server_saturated"])
        self.assertFalse(results["seed-go"]["fanout_rate50"]["server_saturated"])
        rows = {line.split(" | ")[0][2:]: [c.strip() for c in line.strip("|").split(" | ")]
                for line in table.splitlines() if line.startswith("| ") and
                not line.startswith("| |")}
        label = {k: lab for k, lab, _, _ in C.SCENARIOS}
        hundred, fifty = rows[label["fanout_rate"]], rows[label["fanout_rate50"]]
        self.assertIn("0.95 core — server saturated", hundred[2])
        self.assertNotIn("saturated", hundred[1])
        # 0.30 / 0.95 meets the goal, but against a saturated peer that means nothing
        self.assertEqual(hundred[4], "CPU ≤ 0.5×, p99 ≤ 0.5×: met (seed-go saturated: not a "
                                     "measure of the rate's cost)")
        self.assertEqual(fifty[3], "CPU **0.55×**, p99 **0.40×**")
        self.assertEqual(fifty[4], "CPU ≤ 0.5×: **not met**; p99 ≤ 0.5×: met")
        self.assertIn("a server marked saturated used at least 0.9 of its core(s)",
                      table.splitlines()[-1])
        # a server on two CPUs (wshub-2t) is saturated at 1.8 cores, not 0.9
        two = [dict(rate_run(1.2, 2000.0, 4000.0), server_cpus=2)] * 3
        self.assertFalse(C.figures("latency", two)["server_saturated"])
        two = [dict(rate_run(1.9, 2000.0, 4000.0), server_cpus=2)] * 3
        self.assertTrue(C.figures("latency", two)["server_saturated"])

    def test_saturated_rows_listed(self):
        note = self.table.splitlines()[-1]
        self.assertIn("echo16 (wshub)", note)
        self.assertIn("setup (wshub)", note)
        self.assertNotIn("fanout (", note)

    def test_goal_not_met_under_a_saturated_generator_says_so(self):
        s = saved()
        s["runs"]["wshub"]["echo16"] = [echo_run(2.0e6, 0.50, 97.0)] * 3  # 16x
        results, table, _ = C.table_from(s["meta"], s["runs"])
        self.assertIn("≥ 17×: **not met** (load gen saturated)", table)

    def test_failed_runs(self):
        s = saved()
        s["runs"]["seed-go"]["echo16"] = [echo_run(1, 1, 1, ok=False)] * 3
        results, table, _ = C.table_from(s["meta"], s["runs"])
        self.assertTrue(results["seed-go"]["echo16"]["text"].startswith("failed (boom"))
        self.assertIn("| **?** per CPU-s | ≥ 17×: ? (load gen saturated) |", table)

    def test_without_the_peer_no_ratio_columns(self):
        s = saved()
        del s["runs"]["seed-go"]
        _, table, _ = C.table_from(s["meta"], s["runs"])
        self.assertEqual(table.splitlines()[0], "| | wshub |")

    def test_a_peer_built_by_hand_gets_its_own_ratio_column(self):
        s = saved()
        s["meta"]["peers"] = ["uws"]
        s["runs"]["uws"] = {
            # 0.50 µs per message: wshub (0.40) is 1.25x per CPU-s
            "echo16": [echo_run(1.8e6, 0.50, 90.0)] * 3,
            "fanout": [fanout_run(1.0e6, 1.00, 60.0)] * 3,
            # 0.60 core and 8 ms: wshub 0.5x of both
            "fanout_rate": [rate_run(0.60, 3000.0, 8000.0)] * 3,
            "hub10k": [idle_run(300.0, 10.0)] * 3,
            "setup": [idle_run(300.0, 15.0)] * 3,
        }
        _, table, block = C.table_from(s["meta"], s["runs"])
        lines = table.splitlines()
        self.assertEqual(lines[0], "| | wshub | seed-go | uws | wshub ÷ seed-go | "
                                   "goal (issue 13) | wshub ÷ uws |")
        self.assertEqual(lines[1], "|---|" + "---|" * 6)
        cells = {line.split(" | ")[0][2:]: [c.strip() for c in line.strip("|").split(" | ")]
                 for line in lines[2:] if line.startswith("| ")}
        label = {k: lab for k, lab, _, _ in C.SCENARIOS}
        self.assertEqual(cells[label["echo16"]][6], "**1.25×** per CPU-s")
        self.assertEqual(cells[label["echo16"]][4], "**20.0×** per CPU-s")  # still vs Go
        self.assertEqual(cells[label["fanout_rate"]][6], "CPU **0.50×**, p99 **0.50×**")
        self.assertEqual(cells[label["hub10k"]][6], "0.80×")
        self.assertEqual(cells[label["setup"]][6], "**1.20×** per CPU-s")
        self.assertIn("--peer uws=…", block)
        self.assertIn("uws built by hand outside the repository", block)

    def test_caption_says_whether_the_machine_was_quiet(self):
        s = saved()
        for per in s["runs"].values():
            for rs in per.values():
                for r in rs:
                    r["machine_idle_before"] = 0.95
        self.assertIn("Machine idle before the runs: 95%–95%.", C.caption(s["meta"], s["runs"]))
        s["runs"]["seed-go"]["setup"][1]["machine_idle_before"] = 0.4
        text = C.caption(s["meta"], s["runs"])
        self.assertIn("Machine idle before the runs: 40%–95% — **not quiet**", text)
        self.assertNotIn("Machine idle", C.caption(s["meta"], saved()["runs"]))

    def test_block_has_markers_and_caption(self):
        self.assertTrue(self.block.startswith("<!-- AUTO:compare -->\nMeasured 2026-12-07"))
        self.assertIn("median of 3", self.block)
        self.assertTrue(self.block.endswith("<!-- /AUTO:compare -->"))


class CommandLine(unittest.TestCase):
    def test_from_json_no_write(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "compare.json")
            with open(path, "w") as f:
                json.dump(saved(), f)
            doc = os.path.join(ROOT, "docs", "benchmarks.md")
            with open(doc) as f:
                before = f.read()
            p = subprocess.run([sys.executable, COMPARE, "--from-json", path, "--no-write"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("**20.0×** per CPU-s", p.stdout)
            with open(doc) as f:
                self.assertEqual(f.read(), before, "--no-write left the doc alone")

    def test_help_lists_options_and_scenarios(self):
        p = subprocess.run([sys.executable, COMPARE, "--help"], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0)
        text = " ".join(p.stdout.split())
        for opt in ("--repeat", "--duration", "--servers", "--scenarios", "--build",
                    "--quiet-wait", "--no-write", "--from-json", "--peer"):
            self.assertIn(opt, text)
        for key, _, _, _ in C.SCENARIOS:
            self.assertIn(key, text)

    def test_a_peer_without_a_command_is_a_usage_error(self):
        for spec in ("uws", "uws=", "=cmd {port}", "seed-go=cmd {port}"):
            p = subprocess.run([sys.executable, COMPARE, "--servers", "wshub,seed-go",
                                "--peer", spec], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 2, spec)
            self.assertIn("--peer wants NAME=COMMAND", p.stderr)

    def test_unknown_scenario_is_a_usage_error(self):
        p = subprocess.run([sys.executable, COMPARE, "--scenarios", "echo16,nope"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown scenario(s) nope", p.stderr)


if __name__ == "__main__":
    unittest.main()
