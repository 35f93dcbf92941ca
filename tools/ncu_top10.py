#!/usr/bin/env python3
"""The most expensive kernels of an Nsight Compute CSV export.

  ncu_top10.py NCU.csv [--top=10] [--json=OUT.json]

NCU.csv is what `ncu --csv --page details --metrics ...` prints (one row per
kernel launch and metric: "ID", ..., "Kernel Name", ..., "Metric Name",
"Metric Unit", "Metric Value"); `--page raw` (one row per launch, one column
per metric, a units row under the header) works too. Lines that are not CSV
rows (==PROF== progress, the program's own output) are skipped. Run ncu with
LC_ALL=C: values are read with "," as the thousands separator.

Groups the launches by kernel name and prints, for the `--top` kernels with
the largest summed gpu__time_duration: total time, share of all profiled
kernel time, launch count, mean time, achieved % of peak compute (the tensor
pipe for kernels that use it, GEMMs and attention; SM throughput otherwise)
and % of peak memory throughput (gpu__compute_memory_throughput: the busiest
of DRAM, L2 and L1), both averaged over the launches weighted by duration.
Plain python3, no packages.
"""

import argparse
import csv
import json
import sys

DURATION = "gpu__time_duration.sum"
SM = "sm__throughput.avg.pct_of_peak_sustained_elapsed"
MEMORY = "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed"
# Tensor pipe utilisation; the first one present and non-zero wins per
# launch. sm__pipe_tensor_cycles_active counts every tensor instruction
# (Hopper's wgmma, which cuBLAS uses, and mma.sync); the hmma one counts
# mma.sync-style HMMA.
TENSOR = [
    "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active",
]
# A kernel whose tensor pipe is busier than this is judged by it.
TENSOR_MIN_PCT = 1.0

TIME_UNITS_NS = {
    "ns": 1.0, "nsecond": 1.0, "nanosecond": 1.0,
    "us": 1e3, "usecond": 1e3, "microsecond": 1e3,
    "ms": 1e6, "msecond": 1e6, "millisecond": 1e6,
    "s": 1e9, "second": 1e9,
}


def number(text):
    """A metric value as ncu prints it ("1,205.00", "42.5", "n/a") or None."""
    t = text.strip().replace(",", "")
    try:
        return float(t)
    except ValueError:
        return None


class Launch:
    def __init__(self, name):
        self.name = name
        self.metrics = {}  # metric name -> (unit, value)

    def duration_ns(self):
        unit, value = self.metrics.get(DURATION, ("", None))
        if value is None:
            return None
        if unit not in TIME_UNITS_NS:
            raise ValueError("unknown time unit %r for %s" % (unit, DURATION))
        return value * TIME_UNITS_NS[unit]

    def pct(self, metric):
        return self.metrics.get(metric, ("", None))[1]

    def tensor_pct(self):
        values = [self.pct(m) for m in TENSOR if self.pct(m) is not None]
        return max(values) if values else None


def parse(text):
    """Launches in file order from ncu's CSV (details or raw page)."""
    rows = csv.reader(line for line in text.splitlines() if line.startswith('"'))
    launches = {}
    order = []
    col = None  # column index by name, from the latest header
    long_form = False
    units = {}
    for r in rows:
        if "Kernel Name" in r and "ID" in r:
            col = {name: k for k, name in enumerate(r)}
            long_form = "Metric Name" in col and "Metric Value" in col
            units = {}
            continue
        if col is None or len(r) < len(col):
            continue
        if r[col["ID"]] == "":
            # --page raw: the units row under the header.
            units = {name: r[k] for name, k in col.items()}
            continue
        key = (r[col["Process ID"]] if "Process ID" in col else "", r[col["ID"]])
        if key not in launches:
            launches[key] = Launch(r[col["Kernel Name"]])
            order.append(key)
        launch = launches[key]
        if long_form:
            unit = r[col["Metric Unit"]] if "Metric Unit" in col else ""
            launch.metrics[r[col["Metric Name"]]] = (unit, number(r[col["Metric Value"]]))
        else:
            for name, k in col.items():
                if "__" in name:
                    launch.metrics[name] = (units.get(name, ""), number(r[k]))
    return [launches[k] for k in order]


def summarize(launches, top):
    kernels = {}
    for launch in launches:
        d = launch.duration_ns()
        if d is None:
            continue
        k = kernels.setdefault(launch.name, {
            "name": launch.name, "count": 0, "total_ns": 0.0,
            "w": {"sm": [0.0, 0.0], "mem": [0.0, 0.0], "tensor": [0.0, 0.0]}})
        k["count"] += 1
        k["total_ns"] += d
        for key, value in (("sm", launch.pct(SM)), ("mem", launch.pct(MEMORY)),
                           ("tensor", launch.tensor_pct())):
            if value is not None:
                k["w"][key][0] += value * d
                k["w"][key][1] += d
    total = sum(k["total_ns"] for k in kernels.values())
    ranked = sorted(kernels.values(), key=lambda k: -k["total_ns"])
    out = []
    for k in ranked[:top]:
        avg = {key: (s / w if w > 0 else None) for key, (s, w) in k["w"].items()}
        tensor = avg["tensor"] is not None and avg["tensor"] >= TENSOR_MIN_PCT
        out.append({
            "name": k["name"], "count": k["count"], "total_ms": k["total_ns"] / 1e6,
            "share": k["total_ns"] / total if total > 0 else 0.0,
            "mean_us": k["total_ns"] / k["count"] / 1e3,
            "compute_pct": avg["tensor"] if tensor else avg["sm"],
            "compute_unit": "tensor" if tensor else "SM",
            "sm_pct": avg["sm"], "tensor_pct": avg["tensor"], "memory_pct": avg["mem"],
        })
    return {"kernels": len(kernels), "launches": sum(k["count"] for k in kernels.values()),
            "total_ms": total / 1e6, "top": out}


def short(name, width):
    return name if len(name) <= width else name[:width - 3] + "..."


def fmt_pct(v):
    return "-" if v is None else "%.1f" % v


def render(summary, width=64):
    lines = ["%d launches of %d kernels, %.3f ms of kernel time in total (ncu: serialized,"
             " caches flushed)" % (summary["launches"], summary["kernels"],
                                                  summary["total_ms"]), ""]
    lines.append("%3s %-*s %9s %6s %5s %9s %9s %7s %8s" %
                 ("#", width, "kernel", "total ms", "share", "count", "mean us", "compute%",
                  "(pipe)", "memory%"))
    for n, k in enumerate(summary["top"], 1):
        lines.append("%3d %-*s %9.3f %5.1f%% %5d %9.1f %9s %7s %8s" %
                     (n, width, short(k["name"], width), k["total_ms"], 100 * k["share"],
                      k["count"], k["mean_us"], fmt_pct(k["compute_pct"]), k["compute_unit"],
                      fmt_pct(k["memory_pct"])))
    shown = sum(k["share"] for k in summary["top"])
    lines.append("")
    lines.append("top %d: %.1f%% of kernel time. compute%% = tensor pipe active (of peak"
                 " sustained, while active) for kernels that use it, else SM throughput;"
                 " memory%% = compute-memory throughput; both of peak, duration-weighted." %
                 (len(summary["top"]), 100 * shown))
    return "\n".join(lines)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--json", default="")
    ap.add_argument("--width", type=int, default=64, help="kernel name column width")
    args = ap.parse_args(argv)
    with open(args.csv, errors="replace") as f:
        launches = parse(f.read())
    if not launches:
        print("ncu_top10: no kernel launches in %s" % args.csv, file=sys.stderr)
        return 1
    summary = summarize(launches, args.top)
    if not summary["top"]:
        print("ncu_top10: no %s values in %s" % (DURATION, args.csv), file=sys.stderr)
        return 1
    print(render(summary, args.width))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
