"""End-to-end test of `ckpt` on a checkpoint the trainer wrote.

Checks inspect and verify, that `consolidate` holds exactly the bytes of the
shard file, that the Hugging Face export (read with the `safetensors`
package from PyPI) has GPT-2's names, shapes and Conv1D [in, out] layout and
matches the consolidated fp32 weights tensor by tensor, and that damaged
checkpoints are clear errors naming the file.

usage: ckpt_test.py TRAIN_BINARY CKPT_BINARY
"""
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

TRAIN, CKPT = sys.argv[1], sys.argv[2]
TMP = os.environ.get("TEST_TMPDIR", "/tmp")
L, H, C, V, T = 2, 2, 16, 100, 16  # vocab 100 pads to 128 rows
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def run(args, expect_rc=0):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if p.returncode != expect_rc:
        raise SystemExit(f"{' '.join(args)} exited {p.returncode}, expected "
                         f"{expect_rc}:\n{p.stdout}")
    return p.stdout


root = os.path.join(TMP, "ckpt_root")
shutil.rmtree(root, ignore_errors=True)
sets = [f"model.n_layer={L}", f"model.n_head={H}", f"model.n_embd={C}",
        f"model.vocab_size={V}", f"data.synthetic.vocab_size={V}",
        f"model.max_seq_len={T}", "batch.micro_batch_size=2",
        f"batch.seq_len={T}", "device=CPU", "eval.batches=0", "max_steps=3",
        "logging.progress_bar=NEVER", f"checkpoint.dir={root}"]
run([TRAIN] + [f"--set={s}" for s in sets])
step_dir = os.path.join(root, "step_3")

out = run([CKPT, "inspect", root, "--tensors"])
check("step         3 (3 AdamW updates)" in out, "inspect shows the step")
check("h.1.mlp.c_proj.weight" in out, "inspect lists tensors")
out = run([CKPT, "verify", root])
check(out.startswith("OK:") and "84 checksums verified" in out,
      f"verify: {out}")

cons_path = os.path.join(TMP, "consolidated.safetensors")
hf_dir = os.path.join(TMP, "hf")
run([CKPT, "consolidate", step_dir, cons_path])
run([CKPT, "export", root, hf_dir])

# The consolidated file against the shard's raw bytes: one rank saved
# [master | exp_avg | exp_avg_sq] of all numel elements in flat order.
cons = load_file(cons_path)
with safe_open(cons_path, "np") as f:
    meta = f.metadata()
offsets = json.loads(meta["zerotrain.offsets"])
check(meta["zerotrain.step"] == "3", "consolidated metadata step")
numel = sum(cons[name].size for name in offsets)
raw = np.fromfile(os.path.join(step_dir, "shard_00000.bin"), dtype="<f4")
check(raw.size == 3 * numel, f"shard holds {raw.size} floats, want {3 * numel}")
for section, prefix in enumerate(["", "exp_avg.", "exp_avg_sq."]):
    for name, off in offsets.items():
        t = cons[prefix + name]
        check(t.dtype == np.float32, f"{prefix}{name} dtype {t.dtype}")
        want = raw[section * numel + off: section * numel + off + t.size]
        check(np.array_equal(t.reshape(-1).view(np.uint32), want.view(np.uint32)),
              f"consolidated {prefix}{name} differs from the shard bytes")

# The Hugging Face export, every tensor against the consolidated weights.
hf = load_file(os.path.join(hf_dir, "model.safetensors"))
expected = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (T, C),
            "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
for i in range(L):
    p = f"transformer.h.{i}."
    expected.update({
        p + "ln_1.weight": (C,), p + "ln_1.bias": (C,),
        p + "attn.c_attn.weight": (C, 3 * C), p + "attn.c_attn.bias": (3 * C,),
        p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
        p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
        p + "mlp.c_fc.weight": (C, 4 * C), p + "mlp.c_fc.bias": (4 * C,),
        p + "mlp.c_proj.weight": (4 * C, C), p + "mlp.c_proj.bias": (C,)})
check(set(hf) == set(expected),
      f"export names: extra {set(hf) - set(expected)}, "
      f"missing {set(expected) - set(hf)}")
conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
          "mlp.c_proj.weight")
for name, shape in expected.items():
    if name not in hf:
        continue
    t = hf[name]
    check(t.dtype == np.float32, f"{name} dtype {t.dtype}")
    check(t.shape == shape, f"{name} shape {t.shape}, want {shape}")
    ours = cons[name[len("transformer."):]]
    if name.endswith(conv1d):
        ours = ours.T  # ours [out, in], Hugging Face Conv1D [in, out]
    if name == "transformer.wte.weight":
        ours = ours[:V]  # without the padding rows
    check(np.array_equal(t, ours), f"{name} differs from the consolidated weights")
config = json.load(open(os.path.join(hf_dir, "config.json")))
check((config["model_type"], config["n_layer"], config["n_head"],
       config["n_embd"], config["vocab_size"], config["n_positions"]) ==
      ("gpt2", L, H, C, V, T), f"config.json {config}")

# Damaged copies: each a clear error naming the file, exit status 1.
def damaged(name, change):
    d = os.path.join(TMP, "damaged_" + name)
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(step_dir, d)
    change(d)
    return d


def flip(d):
    path = os.path.join(d, "shard_00000.bin")
    b = bytearray(open(path, "rb").read())
    b[100] ^= 1  # in the master weights, which export reads too
    open(path, "wb").write(bytes(b))


def truncate(d):
    path = os.path.join(d, "shard_00000.bin")
    os.truncate(path, os.path.getsize(path) - 8)


for name, change, code, words in [
        ("flip", flip, "DATA_LOSS", ["checksum mismatch"]),
        ("truncate", truncate, "DATA_LOSS", ["truncated"]),
        ("missing", lambda d: os.remove(os.path.join(d, "shard_00000.bin")),
         "NOT_FOUND", [])]:
    d = damaged(name, change)
    out = run([CKPT, "verify", d], expect_rc=1)
    check(code in out and os.path.join(d, "shard_00000.bin") in out and
          all(w in out for w in words), f"verify of a {name} shard: {out}")
    run([CKPT, "export", d, os.path.join(TMP, "hf_" + name)], expect_rc=1)
out = run([CKPT, "frobnicate", root], expect_rc=2)
check("usage:" in out, "bad command prints usage")

if failures:
    sys.exit(f"{len(failures)} check(s) failed")
print("all checks passed")
