"""GPT-2 in PyTorch, as zerotrain computes it. Run under Debian's
/usr/bin/python3 (python3-torch).

  torch_gpt.py parity DIR   the parity test's reference (tests/torch_parity_test)
  torch_gpt.py bench ARGS   times training steps for tools:cpu_bench

parity reads <dir>/spec.json, <dir>/params.bin (fp32, zerotrain's flat layout),
<dir>/inputs.bin and <dir>/targets.bin (int32 [steps, B, T]). Writes
<dir>/torch_losses.bin (fp64 per step, before that step's update),
<dir>/torch_grads0.bin (fp32 flat gradient of step 0) and
<dir>/torch_params_final.bin (fp32 flat after all steps).
"""
import json
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F


def gpt_loss(P, idx, tgt, L, NH, C, V):
    """Mean cross-entropy of GPT-2 with parameters P (zerotrain's names)."""
    B, T = idx.shape
    x = P["wte.weight"][idx] + P["wpe.weight"][:T]
    hs = C // NH
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        h = f"h.{l}."
        a = F.layer_norm(x, (C,), P[h + "ln_1.weight"], P[h + "ln_1.bias"], 1e-5)
        qkv = a @ P[h + "attn.c_attn.weight"].t() + P[h + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=2)
        q = q.view(B, T, NH, hs).transpose(1, 2)
        k = k.view(B, T, NH, hs).transpose(1, 2)
        v = v.view(B, T, NH, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + y @ P[h + "attn.c_proj.weight"].t() + P[h + "attn.c_proj.bias"]
        m = F.layer_norm(x, (C,), P[h + "ln_2.weight"], P[h + "ln_2.bias"], 1e-5)
        m = F.gelu(m @ P[h + "mlp.c_fc.weight"].t() + P[h + "mlp.c_fc.bias"], approximate="tanh")
        x = x + m @ P[h + "mlp.c_proj.weight"].t() + P[h + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], 1e-5)
    logits = (x @ P["wte.weight"].t())[:, :, :V]  # Padded vocab columns are not real.
    return F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1).long())


def parity(d):
    spec = json.load(open(f"{d}/spec.json"))
    torch.manual_seed(0)
    torch.set_num_threads(1)
    L, NH, C = spec["n_layer"], spec["n_head"], spec["n_embd"]
    V, B, T, steps = spec["vocab_size"], spec["B"], spec["T"], spec["steps"]
    flat = np.fromfile(f"{d}/params.bin", dtype=np.float32)
    params = {}
    for p in spec["params"]:
        t = torch.tensor(flat[p["offset"]:p["offset"] + p["numel"]].reshape(p["shape"]),
                         dtype=torch.float32, requires_grad=True)
        params[p["name"]] = t
    inputs = np.fromfile(f"{d}/inputs.bin", dtype=np.int32).reshape(steps, B, T)
    targets = np.fromfile(f"{d}/targets.bin", dtype=np.int32).reshape(steps, B, T)

    def forward(idx, tgt):
        return gpt_loss(params, idx, tgt, L, NH, C, V)

    decay = [params[p["name"]] for p in spec["params"] if p["decay"]]
    no_decay = [params[p["name"]] for p in spec["params"] if not p["decay"]]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=spec["lr"], betas=(spec["beta1"], spec["beta2"]), eps=spec["eps"])

    def flatten(get):
        out = np.zeros(flat.shape, dtype=np.float32)
        for p in spec["params"]:
            out[p["offset"]:p["offset"] + p["numel"]] = get(params[p["name"]]).reshape(-1)
        return out

    losses = []
    for s in range(steps):
        opt.zero_grad()
        loss = forward(torch.from_numpy(inputs[s]).long(), torch.from_numpy(targets[s]))
        loss.backward()
        losses.append(loss.item())
        if s == 0:
            flatten(lambda t: t.grad.detach().numpy()).tofile(f"{d}/torch_grads0.bin")
        opt.step()
    np.array(losses, dtype=np.float64).tofile(f"{d}/torch_losses.bin")
    flatten(lambda t: t.detach().numpy()).tofile(f"{d}/torch_params_final.bin")


def bench(argv):
    import argparse
    import time
    ap = argparse.ArgumentParser()
    for name, default in [("n_layer", 4), ("n_head", 4), ("n_embd", 128), ("vocab_size", 64),
                          ("B", 16), ("T", 64), ("steps", 20), ("warmup", 3), ("threads", 0)]:
        ap.add_argument("--" + name, type=int, default=default)
    a = ap.parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    C, Vp = a.n_embd, (a.vocab_size + 127) // 128 * 128
    shapes = {"wte.weight": (Vp, C), "wpe.weight": (a.T, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    for l in range(a.n_layer):
        h = f"h.{l}."
        shapes.update({h + "ln_1.weight": (C,), h + "ln_1.bias": (C,),
                       h + "attn.c_attn.weight": (3 * C, C), h + "attn.c_attn.bias": (3 * C,),
                       h + "attn.c_proj.weight": (C, C), h + "attn.c_proj.bias": (C,),
                       h + "ln_2.weight": (C,), h + "ln_2.bias": (C,),
                       h + "mlp.c_fc.weight": (4 * C, C), h + "mlp.c_fc.bias": (4 * C,),
                       h + "mlp.c_proj.weight": (C, 4 * C), h + "mlp.c_proj.bias": (C,)})
    params = {n: (torch.randn(s) * 0.02).requires_grad_() for n, s in shapes.items()}
    opt = torch.optim.AdamW(params.values(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.0)
    idx = torch.randint(0, a.vocab_size, (a.B, a.T))
    tgt = torch.randint(0, a.vocab_size, (a.B, a.T))
    times = []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = gpt_loss(params, idx, tgt, a.n_layer, a.n_head, C, a.vocab_size)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()
        if s >= a.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"median_step_s": times[len(times) // 2], "threads": torch.get_num_threads(),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    if sys.argv[1] == "parity":
        parity(sys.argv[2])
    elif sys.argv[1] == "bench":
        bench(sys.argv[2:])
    else:
        sys.exit("usage: torch_gpt.py parity DIR | bench [--n_layer N ...]")
