#!/usr/bin/python3
"""Plots the trainer's JSONL metrics (logging.metrics_jsonl) to one image.

  bazel run //tools:plot_metrics -- --out=run.png run.jsonl [other.jsonl ...]
  bazel run //tools:plot_metrics -- --out=run.png --floor=1.082 run.jsonl

Panels: train and validation loss (with --floor: the loss floor, e.g. the
synthetic corpus's entropy the trainer prints), learning rate, gradient norm,
loss scale (log axis; skipped steps marked), tokens/s. Several files are
overlaid, one colour each, named by their file names, to compare runs (ZeRO
stages, dtypes, resumed against uninterrupted). The format follows --out's
extension (.png, .svg, .pdf).

Bad input (a missing file, a line that is not JSON or lacks "step", a file
with no records) is an error naming the file and line; exit status 2.
"""

import argparse
import json
import os
import sys


class InputError(Exception):
    pass


def read_metrics(path):
    """Returns (train records, validation records) of one JSONL file."""
    train, val = [], []
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: cannot open: {e.strerror}")
    with f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not a JSON object: {e.msg}")
            if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
                raise InputError(f'{path}:{n}: a metrics record needs an integer "step"')
            if "val_loss" in rec:
                val.append(rec)
            elif "loss" in rec:
                train.append(rec)
            else:
                raise InputError(f'{path}:{n}: neither "loss" nor "val_loss"')
    if not train and not val:
        raise InputError(f"{path}: no metrics records")
    return train, val


def series(records, key):
    """(steps, values) of the records that have a number under `key`."""
    pts = [(r["step"], r[key]) for r in records
           if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
    return [p[0] for p in pts], [p[1] for p in pts]


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="metrics JSONL files")
    ap.add_argument("--out", required=True, help="image to write (.png, .svg or .pdf)")
    ap.add_argument("--floor", type=float, help="loss floor to draw (nats)")
    ap.add_argument("--title", default="", help="figure title")
    args = ap.parse_args(argv)
    if os.environ.get("BUILD_WORKING_DIRECTORY"):
        os.chdir(os.environ["BUILD_WORKING_DIRECTORY"])
    ext = os.path.splitext(args.out)[1].lower()
    if ext not in (".png", ".svg", ".pdf"):
        raise InputError(f"--out={args.out}: the extension must be .png, .svg or .pdf")
    runs = [(os.path.basename(p), *read_metrics(p)) for p in args.files]

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 2, figsize=(12, 10), sharex=True)
    panels = {
        "loss": axes[0][0], "lr": axes[0][1], "grad_norm": axes[1][0],
        "loss_scale": axes[1][1], "tokens_per_s": axes[2][0], "val": axes[2][1],
    }
    for i, (name, train, val) in enumerate(runs):
        colour = f"C{i}"
        s, v = series(train, "loss")
        panels["loss"].plot(s, v, color=colour, label=f"{name} train")
        vs, vv = series(val, "val_loss")
        if vs:
            panels["loss"].plot(vs, vv, "o--", color=colour, label=f"{name} val")
            panels["val"].plot(vs, vv, "o-", color=colour, label=name)
        for key in ("lr", "grad_norm", "loss_scale", "tokens_per_s"):
            ks, kv = series(train, key)
            panels[key].plot(ks, kv, color=colour, label=name)
        skipped = [r["step"] for r in train if r.get("skipped") is True]
        if skipped:
            ls, lv = series([r for r in train if r.get("skipped") is True], "loss_scale")
            panels["loss_scale"].plot(ls, lv, "x", color=colour, label=f"{name} skipped")
    if args.floor is not None:
        for key in ("loss", "val"):
            panels[key].axhline(args.floor, color="k", linestyle=":",
                                label=f"floor {args.floor:g}")
    titles = {"loss": "loss (nats)", "lr": "learning rate", "grad_norm": "gradient norm",
              "loss_scale": "loss scale", "tokens_per_s": "tokens/s",
              "val": "validation loss (nats)"}
    for key, ax in panels.items():
        ax.set_title(titles[key])
        ax.grid(True, alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize="small")
    panels["loss_scale"].set_yscale("log")
    for ax in axes[-1]:
        ax.set_xlabel("step")
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    out_dir = os.path.dirname(os.path.abspath(args.out))
    # Written beside the target and renamed, so a failed run leaves no
    # half-written image (and never replaces a good one with one).
    tmp = os.path.join(out_dir, f".{os.path.basename(args.out)}.tmp{ext}")
    try:
        fig.savefig(tmp)
        os.replace(tmp, args.out)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise InputError(f"--out={args.out}: cannot write: {e.strerror}")
    points = sum(len(t) + len(v) for _, t, v in runs)
    print(f"plot_metrics: {len(runs)} run(s), {points} records -> {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except InputError as e:
        print(f"plot_metrics: error: {e}", file=sys.stderr)
        sys.exit(2)
