#!/usr/bin/env python3
"""zerotrain against llm.c on one GPU, GPT-2 124M, side by side.

Both train GPT-2 124M from a random init on the same llm.c token shards
(random tokens, written here), at the same micro-batch B and T = 1024, bf16,
no gradient accumulation, AdamW with fp32 master weights (lr 6e-4, betas
0.9/0.95, eps 1e-8, weight decay 0.1), global-norm clipping at 1.0, one rank
(zerotrain stage 0, llm.c -z 0). Runs are interleaved (round 1 of every
system and batch size, then round 2, ...) so that a drift in the machine
hits all alike; each (system, B) keeps its best round.

Systems:
  llm.c r1   train_gpt2cu as llm.c ships it: cuDNN flash attention,
             recompute GELU in backward (-r 1)
  llm.c r0   the same without recompute (-r 0): zerotrain keeps its
             activations too
  zerotrain  bin/train with the same settings
  zt base    another zerotrain build (--baseline_train), e.g. before a
             change, for an A/B in the same run

--batches lists micro-batch sizes; "max" probes the largest of --max_candidates
that both llm.c (-r 0) and zerotrain run, each for --probe_steps steps.

Per run: the median per-step time of the steps after --warmup (each system's
own per-step timer: llm.c's CUDA events, zerotrain's step clock), tokens/s =
B * T / that, MFU = tokens/s * (6N + 6LCT) / 989 TFLOP/s (dense bf16 peak of
the H100 SXM and H200, the same constant for both systems; N = 124,475,904
with the vocabulary padded to 50304, as both count it), the device memory the
process used at its peak (nvidia-smi sampled every 50 ms, minus the idle
reading before the run: the CUDA context included, for both), each system's
own memory figure, and the loss at the last step (random tokens: both should
sit near ln(50257) = 10.82).

--cpu_smoke: a CPU dry run of this script (a tiny zerotrain model on the CPU,
and --llmc pointing at a stand-in that prints llm.c's step lines), used by
tools:llmc_bench_test; no figure it prints means anything.

Ends with the table (also $OUT/llmc_bench.json when --out is given).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PEAK_FLOPS = 989e12
VOCAB = 50257
PADDED_VOCAB = 50304
L, C, NH, MAX_T = 12, 768, 12, 1024
N_PARAMS = (PADDED_VOCAB * C + MAX_T * C + L * (12 * C * C + 13 * C) + 2 * C)
SHARD_MAGIC, SHARD_VERSION = 20240520, 1

LLMC_STEP_RE = re.compile(
    r"^step\s+(\d+)/(\d+) \| loss ([-\d.naif]+) .*?\| ([\d.]+) ms \|", re.M)
LLMC_MEM_RE = re.compile(r"device memory usage: (\d+) MiB")


def write_shard(path, n_tokens, seed):
    """An llm.c token shard: 256 int32 header words, then uint16 tokens."""
    import array
    import random
    header = array.array("i", [0] * 256)
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, n_tokens
    try:
        import numpy as np
        rng = np.random.default_rng(seed)
        body = rng.integers(0, VOCAB, size=n_tokens, dtype=np.uint16).tobytes()
    except ImportError:
        rng = random.Random(seed)
        body = array.array("H", (rng.randrange(VOCAB) for _ in range(n_tokens))).tobytes()
    with open(path + ".tmp", "wb") as f:
        f.write(header.tobytes())
        f.write(body)
    os.replace(path + ".tmp", path)


class MemorySampler:
    """Peak of nvidia-smi's memory.used (MiB) while a run lasts."""

    def __init__(self):
        self.smi = shutil.which("nvidia-smi")
        self.peak = None
        self._stop = threading.Event()
        self._thread = None

    def read(self):
        if not self.smi:
            return None
        try:
            out = subprocess.run(
                [self.smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True, text=True, timeout=10).stdout
            return int(out.strip().splitlines()[0])
        except (subprocess.SubprocessError, ValueError, IndexError, OSError):
            return None

    def __enter__(self):
        self.base = self.read()
        if self.base is None:
            return self
        self.peak = self.base

        def loop():
            while not self._stop.wait(0.05):
                v = self.read()
                if v is not None and v > self.peak:
                    self.peak = v
        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join()

    def used_mib(self):
        if self.base is None or self.peak is None:
            return None
        return self.peak - self.base


def run(cmd, log_path, timeout, env=None):
    """Runs cmd; returns (status, output, peak device MiB or None)."""
    with MemorySampler() as mem:
        t0 = time.time()
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=timeout, env=env)
            status, out = p.returncode, p.stdout
        except subprocess.TimeoutExpired as e:
            status = "timeout"
            out = (e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes)
                   else (e.stdout or ""))
        wall = time.time() - t0
    with open(log_path, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n" + out + "\n[status %s, %.1f s]\n" % (status, wall))
    return status, out, mem.used_mib()


def llmc_cmd(args, data, B, steps, recompute):
    return [args.llmc, "-i", os.path.join(data, "synth_train_*.bin"),
            "-j", os.path.join(data, "synth_val_*.bin"), "-e", "d12", "-b", str(B),
            "-t", str(args.T), "-x", str(steps), "-r", str(recompute), "-z", "0",
            "-l", "6e-4", "-u", "0", "-q", "1.0", "-c", "0.1", "-v", "100000", "-m", "1",
            "-s", "0", "-h", "0", "-y", "0"]


def zerotrain_config(args, data, B, steps, metrics):
    if args.cpu_smoke:
        model = ("model { n_layer: 2 n_head: 2 n_embd: 64 vocab_size: %d max_seq_len: %d }"
                 % (VOCAB, args.T))
        device, dtype = "CPU", "BF16"
    else:
        model = ("model { n_layer: %d n_head: %d n_embd: %d vocab_size: %d max_seq_len: %d }"
                 % (L, NH, C, VOCAB, MAX_T))
        device, dtype = "CUDA", "BF16"
    return "\n".join([
        model,
        'data { shards { train_glob: "%s" val_glob: "" } }'
        % os.path.join(data, "synth_train_*.bin"),
        "batch { micro_batch_size: %d seq_len: %d grad_accum_steps: 1 }" % (B, args.T),
        "optimizer { lr: 6e-4 beta1: 0.9 beta2: 0.95 eps: 1e-8 weight_decay: 0.1 "
        "warmup_steps: 0 min_lr_ratio: 1.0 grad_clip: 1.0 }",
        "precision { dtype: %s }" % dtype,
        "zero { stage: STAGE_0 }",
        'logging { interval: 1 metrics_jsonl: "%s" progress_bar: NEVER }' % metrics,
        "eval { interval: 1000000 batches: 0 }",
        "device: %s" % device,
        "max_steps: %d" % steps,
        "seed: 1337",
    ]) + "\n"


def parse_llmc(out, warmup):
    # float() reads what printf's %f writes, "nan", "-nan" and "inf" included.
    steps = [(int(m.group(1)), float(m.group(3)), float(m.group(4)))
             for m in LLMC_STEP_RE.finditer(out)]
    times = [ms / 1e3 for (s, _, ms) in steps if s > warmup]
    mem = LLMC_MEM_RE.search(out)
    return {
        "step_times": times,
        "last_loss": steps[-1][1] if steps else float("nan"),
        "self_mib": int(mem.group(1)) if mem else None,
    }


def parse_zerotrain(metrics_path, B, T, warmup):
    times, last_loss, peak = [], float("nan"), None
    with open(metrics_path) as f:
        for line in f:
            r = json.loads(line)
            if "tokens_per_s" not in r:
                continue
            if r["step"] > warmup and r["tokens_per_s"]:
                times.append(B * T / r["tokens_per_s"])
            last_loss = r["loss"] if r["loss"] is not None else float("nan")
            if r.get("peak_memory_bytes"):
                peak = r["peak_memory_bytes"] / 2**20
    return {"step_times": times, "last_loss": last_loss,
            "self_mib": int(peak) if peak is not None else None}


def one_run(args, data, system, B, steps, tag):
    log = os.path.join(args.out, "%s_B%d_%s.log" % (system.replace(" ", "_").replace(".", ""),
                                                     B, tag))
    if system.startswith("llm.c"):
        cmd = llmc_cmd(args, data, B, steps, 1 if system.endswith("r1") else 0)
        status, out, mib = run(cmd, log, args.timeout)
        res = parse_llmc(out, args.warmup)
    else:
        train = args.baseline_train if system == "zt base" else args.train
        metrics = log[:-4] + ".jsonl"
        if os.path.exists(metrics):
            os.remove(metrics)
        cfg = log[:-4] + ".textproto"
        with open(cfg, "w") as f:
            f.write(zerotrain_config(args, data, B, steps, metrics))
        status, out, mib = run([train, "--config=" + cfg], log, args.timeout)
        res = {"step_times": [], "last_loss": float("nan"), "self_mib": None}
        if os.path.exists(metrics):
            res = parse_zerotrain(metrics, B, args.T, args.warmup)
    res.update({"status": status, "smi_mib": mib, "log": log})
    res["ok"] = status == 0 and len(res["step_times"]) > 0
    if res["ok"]:
        res["median_s"] = statistics.median(res["step_times"])
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", required=True, help="zerotrain's train binary")
    ap.add_argument("--llmc", required=True, help="llm.c's train_gpt2cu")
    ap.add_argument("--baseline_train", default="",
                    help="a second zerotrain train binary, run as system 'zt base'")
    ap.add_argument("--batches", default="8,max")
    ap.add_argument("--max_candidates", default="128,96,64,48,32,16")
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--probe_steps", type=int, default=2)
    ap.add_argument("--systems", default="llm.c r1,llm.c r0,zerotrain")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per run")
    ap.add_argument("--out", default="")
    ap.add_argument("--cpu_smoke", action="store_true")
    args = ap.parse_args()
    for p in (args.train, args.llmc) + ((args.baseline_train,) if args.baseline_train else ()):
        if not (os.path.isfile(p) and os.access(p, os.X_OK)):
            print("llmc_bench: not an executable: %s" % p, file=sys.stderr)
            return 2
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if args.baseline_train and "zt base" not in systems:
        systems.append("zt base")
    for s in systems:
        if s not in ("llm.c r1", "llm.c r0", "zerotrain", "zt base"):
            print("llmc_bench: unknown system %r" % s, file=sys.stderr)
            return 2
        if s == "zt base" and not args.baseline_train:
            print("llmc_bench: system 'zt base' needs --baseline_train", file=sys.stderr)
            return 2
    if not args.out:
        args.out = tempfile.mkdtemp(prefix="llmc_bench.")
    os.makedirs(args.out, exist_ok=True)
    data = tempfile.mkdtemp(prefix="llmc_bench_data.")
    steps = args.warmup + args.steps
    try:
        # Enough tokens that no run wraps around the shard (llm.c and
        # zerotrain both would, but then they read the same tokens twice).
        biggest = max([int(b) for b in args.batches.split(",") if b != "max"] +
                      ([int(c) for c in args.max_candidates.split(",")]
                       if "max" in args.batches else []))
        n_train = biggest * args.T * (steps + 2) + 1
        t0 = time.time()
        write_shard(os.path.join(data, "synth_train_000001.bin"), n_train, 1)
        write_shard(os.path.join(data, "synth_val_000000.bin"), biggest * args.T + 1, 2)
        print("llmc_bench: shards of %d + %d random tokens in %.1f s (%s)"
              % (n_train, biggest * args.T + 1, time.time() - t0, data), flush=True)

        batches, probe_failed = [], False
        for b in args.batches.split(","):
            if b != "max":
                batches.append(int(b))
                continue
            found = None
            for cand in [int(c) for c in args.max_candidates.split(",")]:
                fits = True
                for s in ("llm.c r0", "zerotrain"):
                    r = one_run(args, data, s, cand, args.probe_steps + 1, "probe")
                    ok = r["status"] == 0
                    print("llmc_bench: probe B=%d %s: %s" % (cand, s, "runs" if ok else
                          "fails (status %s, %s)" % (r["status"], r["log"])), flush=True)
                    if not ok:
                        fits = False
                        break
                if fits:
                    found = cand
                    break
            if found is None:
                print("llmc_bench: no candidate B ran on both", flush=True)
                probe_failed = True
            elif found not in batches:
                batches.append(found)

        best = {}
        for rnd in range(args.rounds):
            for B in batches:
                for s in systems:
                    r = one_run(args, data, s, B, steps, "r%d" % (rnd + 1))
                    msg = ("%.2f ms/step, loss %.4f" % (r["median_s"] * 1e3, r["last_loss"])
                           if r["ok"] else "FAILED (status %s; %s)" % (r["status"], r["log"]))
                    print("llmc_bench: round %d B=%d %-9s %s" % (rnd + 1, B, s, msg), flush=True)
                    key = (s, B)
                    if r["ok"] and (key not in best or not best[key]["ok"] or
                                    r["median_s"] < best[key]["median_s"]):
                        best[key] = r
                    elif key not in best:
                        best[key] = r
    finally:
        shutil.rmtree(data, ignore_errors=True)

    flops_per_token = 6.0 * N_PARAMS + 6.0 * L * C * args.T
    rows, failed = [], 0
    print()
    print("GPT-2 124M (N = %d), T = %d, bf16, AdamW + clip 1.0, 1 GPU; median of %d steps after "
          "%d warmup, best of %d interleaved rounds" % (N_PARAMS, args.T, args.steps, args.warmup,
                                                        args.rounds))
    hdr = "%-10s %4s %11s %9s %6s %12s %12s %8s %10s %10s" % (
        "system", "B", "tokens/s", "ms/step", "MFU", "dev mem GiB", "own mem GiB", "loss",
        "vs llm.c", "vs llm.c")
    print(hdr)
    print("%-10s %4s %11s %9s %6s %12s %12s %8s %10s %10s" % ("", "", "", "", "", "(smi)", "",
                                                               "", "r1", "r0"))
    for B in batches:
        ref = {s: best.get((s, B)) for s in ("llm.c r1", "llm.c r0")}
        for s in systems:
            r = best.get((s, B))
            if r is None or not r["ok"]:
                failed += 1
                print("%-10s %4d  FAILED (see %s)" % (s, B, r["log"] if r else "-"))
                rows.append({"system": s, "B": B, "ok": False})
                continue
            tps = B * args.T / r["median_s"]
            mfu = tps * flops_per_token / PEAK_FLOPS

            def ratio(k):
                x = ref.get(k)
                return "%.3fx" % (x["median_s"] / r["median_s"]) if x and x["ok"] else "-"

            gib = lambda m: "%.2f" % (m / 1024) if m is not None else "-"
            print("%-10s %4d %11.0f %9.2f %5.1f%% %12s %12s %8.4f %10s %10s" % (
                s, B, tps, r["median_s"] * 1e3, 100 * mfu, gib(r["smi_mib"]), gib(r["self_mib"]),
                r["last_loss"], ratio("llm.c r1"), ratio("llm.c r0")))
            rows.append({"system": s, "B": B, "ok": True, "tokens_per_s": tps,
                         "ms_per_step": r["median_s"] * 1e3, "mfu": mfu,
                         "device_mib_smi": r["smi_mib"], "own_mib": r["self_mib"],
                         "last_loss": r["last_loss"],
                         "step_times_s": r["step_times"]})
    print("\ndev mem: nvidia-smi's memory.used at the run's peak minus before it (CUDA context,"
          " cuBLAS/cuDNN workspaces included); own mem: llm.c's 'device memory usage' line after"
          " allocation, zerotrain's allocator peak. vs llm.c = tokens/s over llm.c's at the same"
          " B (r1: as shipped, r0: no recompute). MFU against 989 TFLOP/s for both.")
    with open(os.path.join(args.out, "llmc_bench.json"), "w") as f:
        json.dump({"flops_per_token": flops_per_token, "rows": rows}, f, indent=1)
    if probe_failed:
        print("FAILED: no --max_candidates B ran on both llm.c and zerotrain (probe logs in %s)"
              % args.out)
        failed += 1
        rows.append({"system": "probe", "B": "max", "ok": False})
    print("%d passed, %d failed" % (len(rows) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
