#!/usr/bin/python3
"""Tests of plot_metrics.py on the trainer's own metrics files.

  plot_metrics_test.py PLOT_METRICS_PY TRAIN
"""

import os
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

plot, train = sys.argv[1], sys.argv[2]
tmp = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run_plot(*args):
    return subprocess.run(["/usr/bin/python3", plot, *args], capture_output=True, text=True)


# Two real runs (fp32 and bf16) with evaluation, so train and val records.
runs = []
for dtype in ("FP32", "BF16"):
    path = os.path.join(tmp, f"{dtype.lower()}.jsonl")
    subprocess.run([train, "--set=model.n_layer=1", "--set=model.n_embd=32", "--set=model.n_head=2",
                    "--set=batch.micro_batch_size=2", "--set=max_steps=6", "--set=logging.interval=1",
                    "--set=eval.interval=3", "--set=eval.batches=1", f"--set=precision.dtype={dtype}",
                    "--set=logging.progress_bar=NEVER", f"--set=logging.metrics_jsonl={path}"],
                   check=True, capture_output=True)
    runs.append(path)

png = os.path.join(tmp, "runs.png")
r = run_plot(f"--out={png}", "--floor=1.082", *runs)
check(r.returncode == 0, f"two runs to PNG (exit {r.returncode}: {r.stderr.strip()})")
check("2 run(s), 16 records" in r.stdout, f"reports what it read: {r.stdout.strip()}")
with open(png, "rb") as f:
    head = f.read(24)
check(head[:8] == b"\x89PNG\r\n\x1a\n", "a PNG file")
width, height = struct.unpack(">II", head[16:24])
check((width, height) == (1200, 1000), f"1200 x 1000 pixels (got {width} x {height})")

svg = os.path.join(tmp, "runs.svg")
r = run_plot(f"--out={svg}", "--title=fp32 vs bf16", *runs)
check(r.returncode == 0, "two runs to SVG")
root = ET.parse(svg).getroot()
texts = " ".join("".join(t.itertext()) for t in root.iter() if t.tag.endswith("}text"))
svg_src = open(svg, encoding="utf-8").read()
# matplotlib writes text as glyph paths with the string in a comment.
for label in ("loss (nats)", "learning rate", "gradient norm", "loss scale", "tokens/s",
              "validation loss (nats)", "fp32.jsonl", "bf16.jsonl", "fp32 vs bf16"):
    check(label in svg_src or label in texts, f"the SVG shows \"{label}\"")

# Bad input: exit status 2, the culprit named, the previous image kept.
before = open(png, "rb").read()
bad = os.path.join(tmp, "bad.jsonl")
with open(bad, "w") as f:
    f.write('{"step":1,"loss":2.0}\n{"step":2,"loss":\n')
nostep = os.path.join(tmp, "nostep.jsonl")
with open(nostep, "w") as f:
    f.write('{"loss":2.0}\n')
empty = os.path.join(tmp, "empty.jsonl")
open(empty, "w").close()
cases = [
    ([f"--out={png}", os.path.join(tmp, "missing.jsonl")], "missing.jsonl: cannot open"),
    ([f"--out={png}", bad], "bad.jsonl:2: not a JSON object"),
    ([f"--out={png}", nostep], 'nostep.jsonl:1: a metrics record needs an integer "step"'),
    ([f"--out={png}", empty], "empty.jsonl: no metrics records"),
    ([os.path.join("--out=" + tmp, "x.jpg"), runs[0]], "the extension must be .png, .svg or .pdf"),
    ([f"--out={tmp}/no/such/dir/x.png", runs[0]], "cannot write"),
]
for args, want in cases:
    r = run_plot(*args)
    check(r.returncode == 2 and want in r.stderr,
          f"{want!r}: exit {r.returncode}, stderr {r.stderr.strip()!r}")
    check(open(png, "rb").read() == before, f"{want!r}: the existing image is untouched")
check(not [n for n in os.listdir(tmp) if ".tmp" in n], "no temporary files left behind")

print(f"{len(failures)} failed" if failures else "PASS")
sys.exit(1 if failures else 0)
