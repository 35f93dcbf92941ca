"""Reads metrics_readback_writer's output the way users do: the event file
with TensorBoard's EventAccumulator, the JSONL with Python's json module."""

import json
import math
import os
import re
import struct
import sys
import unittest

try:
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )
except ImportError as e:
    sys.exit(f"FAIL: cannot import tensorboard ({e}); run tools/setup.sh")

OUT = None  # Set from argv in main.
STEPS = [1, 2, 3, 4, 5]


def f32(x):
    """TensorBoard's simple_value is a float32."""
    return struct.unpack("f", struct.pack("f", x))[0]


def expected(step):
    """Mirrors metrics_readback_writer.cc."""
    e = {
        "loss": 4.0 - 0.5 * step,
        "lr": 1e-3 * step,
        "grad_norm": 1.0 / step,
        "loss_scale": 65536.0,
        "skipped": False,
        "tokens_per_s": 1000.0 * step,
        "mfu": 0.01 * step,
        "peak_memory_bytes": 1 << (20 + step),
        "comm_elements": 100.0 * step,
    }
    if step == 3:
        e.update(loss=math.nan, grad_norm=math.inf, loss_scale=32768.0,
                 skipped=True)
    return e


def reject_constant(name):
    raise ValueError(f"non-JSON constant {name}")


class TensorBoardReadback(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tb_dir = os.path.join(OUT, "tb")
        files = os.listdir(tb_dir)
        cls.files = files
        cls.acc = EventAccumulator(tb_dir, size_guidance={"scalars": 0})
        cls.acc.Reload()

    def test_one_event_file_named_like_tensorflow(self):
        self.assertEqual(len(self.files), 1, self.files)
        self.assertRegex(self.files[0], r"^events\.out\.tfevents\.\d{10}\.")

    def test_file_version_read(self):
        self.assertEqual(self.acc.file_version, 2.0)

    def test_all_tags_present(self):
        tags = set(self.acc.Tags()["scalars"])
        want = {"train/" + k for k in expected(1)} | {"eval/loss"}
        self.assertEqual(tags, want)

    def test_train_scalar_steps_and_values(self):
        for key in expected(1):
            events = self.acc.Scalars("train/" + key)
            self.assertEqual([e.step for e in events], STEPS, key)
            for e in events:
                want = expected(e.step)[key]
                got = e.value
                if isinstance(want, float) and math.isnan(want):
                    self.assertTrue(math.isnan(got), (key, e.step, got))
                else:
                    self.assertEqual(got, f32(float(want)), (key, e.step))

    def test_eval_loss(self):
        events = self.acc.Scalars("eval/loss")
        self.assertEqual([(e.step, e.value) for e in events], [(5, 2.25)])

    def test_wall_times_are_recent(self):
        for e in self.acc.Scalars("train/loss"):
            self.assertGreater(e.wall_time, 1.6e9)


class JsonlReadback(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(OUT, "metrics.jsonl")) as f:
            cls.text = f.read()

    def test_every_line_is_strict_json(self):
        self.assertTrue(self.text.endswith("\n"))
        lines = self.text.splitlines()
        self.assertEqual(len(lines), 6)
        for line in lines:
            json.loads(line, parse_constant=reject_constant)

    def test_keys_in_order_and_values(self):
        keys = ["step", "loss", "lr", "grad_norm", "loss_scale", "skipped",
                "tokens_per_s", "mfu", "peak_memory_bytes", "comm_elements"]
        rows = [json.loads(l) for l in self.text.splitlines()[:5]]
        for step, row in zip(STEPS, rows):
            self.assertEqual(list(row), keys)
            self.assertEqual(row["step"], step)
            self.assertIsInstance(row["peak_memory_bytes"], int)
            for key, want in expected(step).items():
                if isinstance(want, float) and not math.isfinite(want):
                    self.assertIsNone(row[key], (step, key))
                else:
                    self.assertEqual(row[key], want, (step, key))

    def test_eval_line(self):
        last = json.loads(self.text.splitlines()[-1])
        self.assertEqual(last, {"step": 5, "val_loss": 2.25})


if __name__ == "__main__":
    OUT = sys.argv.pop(1)
    unittest.main(verbosity=2)
