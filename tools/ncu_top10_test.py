#!/usr/bin/env python3
"""Tests of ncu_top10.py on hand-made exports in ncu's CSV formats.

  ncu_top10_test.py NCU_TOP10_PY TESTDATA_DIR

testdata/ncu_details.csv is `ncu --csv --page details --print-units base`
of one GPT-2 step, cut to 19 launches of 12 kernels, with ncu's progress
lines and the program's output in front, thousands separators, and an "n/a"
metric; ncu_raw.csv is `--page raw` (a units row, times in usecond).
"""

import importlib.util
import io
import os
import sys
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout

MODULE, DATA = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("ncu_top10", MODULE)
top10 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(top10)


def read(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()


# Per launch in the details fixture: kernel -> [(ns, sm %, memory %, tensor %)].
DETAILS = {
    "nvjet_hsh_256x128_64x4_2x1_v_bz_coopB_TNT": [(1912448, 71.2, 48.3, 88.4),
                                                  (1905216, 70.8, 48.1, 88.0)],
    "AdamWKernel": [(1227776, 23.4, 93.1, 0)],
    "SoftmaxCrossEntropyKernel": [(614208, 45.2, 88.4, 0)],
    "TcBackwardKVKernel": [(201344, 62.5, 35.0, 41.3), (199872, 62.1, 34.8, 41.1)],
    "nvjet_hsh_128x256_64x4_1x2_h_bz_coopA_NNT": [(119008, 66.1, 40.2, 74.9),
                                                  (118976, 65.9, 40.0, 75.3),
                                                  (119104, 66.0, 40.1, 74.8)],
    "CastKernel": [(250304, 12.0, 98.4, 0)],
    "ScaleAndCheckFiniteKernel": [(171712, 18.0, 95.0, 0)],
    "TcForwardKernel": [(85504, 55.0, 20.2, 35.6), (85440, 55.2, 20.4, 35.2)],
    "SquaredNormPartialsKernel": [(100608, 20.0, 81.2, 0)],
    "GeluForwardKernel": [(33792, 28.0, 97.9, 0), (33824, 28.2, 97.8, 0)],
    "LayerNormBackwardRegKernel": [(23296, 30.1, 71.5, 0), (23328, 30.3, 71.6, 0)],
    "EmbeddingForwardKernel": [(12800, 10.5, 69.0, 0)],
}


def weighted(launches, k):
    return sum(l[0] * l[k] for l in launches) / sum(l[0] for l in launches)


class DetailsPageTest(unittest.TestCase):
    def setUp(self):
        self.launches = top10.parse(read("ncu_details.csv"))
        self.summary = top10.summarize(self.launches, 10)

    def test_reads_every_launch_and_skips_non_csv_lines(self):
        self.assertEqual(len(self.launches), 19)
        self.assertEqual(self.summary["launches"], 19)
        self.assertEqual(self.summary["kernels"], 12)

    def test_ranks_kernels_by_summed_duration(self):
        totals = {k: sum(l[0] for l in v) for k, v in DETAILS.items()}
        want = sorted(totals, key=lambda k: -totals[k])[:10]
        self.assertEqual([k["name"] for k in self.summary["top"]], want)
        self.assertNotIn("EmbeddingForwardKernel", want)
        all_ns = sum(totals.values())
        self.assertAlmostEqual(self.summary["total_ms"], all_ns / 1e6, places=9)
        for k in self.summary["top"]:
            self.assertAlmostEqual(k["total_ms"], totals[k["name"]] / 1e6, places=9)
            self.assertAlmostEqual(k["share"], totals[k["name"]] / all_ns, places=12)
            self.assertEqual(k["count"], len(DETAILS[k["name"]]))
            self.assertAlmostEqual(k["mean_us"], totals[k["name"]] / 1e3 / k["count"], places=6)

    def test_duration_weighted_percentages_and_pipe_choice(self):
        for k in self.summary["top"]:
            d = DETAILS[k["name"]]
            self.assertAlmostEqual(k["sm_pct"], weighted(d, 1), places=6)
            self.assertAlmostEqual(k["memory_pct"], weighted(d, 2), places=6)
            uses_tensor = weighted(d, 3) >= top10.TENSOR_MIN_PCT
            self.assertEqual(k["compute_unit"], "tensor" if uses_tensor else "SM", k["name"])
            self.assertAlmostEqual(k["compute_pct"], weighted(d, 3 if uses_tensor else 1),
                                   places=6)

    def test_thousands_separators_and_na(self):
        first = self.launches[0]  # EmbeddingForwardKernel, hmma "n/a"
        self.assertEqual(first.name, "EmbeddingForwardKernel")
        self.assertEqual(first.duration_ns(), 12800.0)
        self.assertIsNone(first.pct(
            "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"))
        self.assertEqual(first.tensor_pct(), 0.0)
        self.assertEqual(top10.number("1,912,448"), 1912448.0)
        self.assertEqual(top10.number("1,227.78"), 1227.78)
        self.assertIsNone(top10.number("n/a"))

    def test_main_prints_the_table(self):
        out = io.StringIO()
        with tempfile.TemporaryDirectory() as tmp:
            js = os.path.join(tmp, "top.json")
            with redirect_stdout(out):
                rc = top10.main([os.path.join(DATA, "ncu_details.csv"), "--json=" + js])
            self.assertEqual(rc, 0)
            self.assertTrue(os.path.getsize(js) > 0)
        text = out.getvalue()
        self.assertIn("19 launches of 12 kernels", text)
        self.assertIn("top 10: 99.2% of kernel time", text)
        row = [l for l in text.splitlines() if "nvjet_hsh_256x128" in l][0].split()
        # rank, name, total ms, share, count, mean us, compute %, pipe, memory %
        self.assertEqual(row[0], "1")
        self.assertEqual(row[2:5], ["3.818", "52.7%", "2"])
        self.assertEqual(row[6:9], ["88.2", "tensor", "48.2"])


class RawPageTest(unittest.TestCase):
    def test_units_row_and_microseconds(self):
        summary = top10.summarize(top10.parse(read("ncu_raw.csv")), 10)
        self.assertEqual([k["name"] for k in summary["top"]], ["AdamWKernel", "TcBackwardQKernel"])
        adam, tc = summary["top"]
        self.assertAlmostEqual(adam["total_ms"], (1227.78 + 1226.22) / 1e3, places=9)
        self.assertEqual(adam["count"], 2)
        self.assertEqual(adam["compute_unit"], "SM")
        self.assertAlmostEqual(adam["memory_pct"], (93.1 * 1227.78 + 92.9 * 1226.22) / 2454.0,
                               places=6)
        self.assertEqual(tc["compute_unit"], "tensor")
        self.assertAlmostEqual(tc["compute_pct"], 44.0)


class ErrorTest(unittest.TestCase):
    def test_unknown_time_unit_is_an_error(self):
        text = read("ncu_raw.csv").replace('"usecond"', '"cycle"')
        with self.assertRaisesRegex(ValueError, "cycle"):
            top10.summarize(top10.parse(text), 10)

    def test_no_launches_fails_and_says_so(self):
        with tempfile.NamedTemporaryFile("w", suffix=".csv") as f:
            f.write("==PROF== Connected to process 1\n==PROF== Disconnected from process 1\n")
            f.flush()
            err = io.StringIO()
            with redirect_stderr(err):
                self.assertEqual(top10.main([f.name]), 1)
        self.assertIn("no kernel launches", err.getvalue())


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])
