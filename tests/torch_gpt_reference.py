"""PyTorch reference for the parity test: the same GPT-2, weights, batch and
AdamW as zerotrain's CPU fp32 path. Run under Debian's /usr/bin/python3
(python3-torch).

Reads <dir>/spec.json, <dir>/params.bin (fp32, zerotrain's flat layout),
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


def main(d):
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
        P = params
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
            m = F.gelu(m @ P[h + "mlp.c_fc.weight"].t() + P[h + "mlp.c_fc.bias"],
                       approximate="tanh")
            x = x + m @ P[h + "mlp.c_proj.weight"].t() + P[h + "mlp.c_proj.bias"]
        x = F.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], 1e-5)
        logits = (x @ P["wte.weight"].t())[:, :, :V]  # Padded vocab columns are not real.
        return F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1).long())

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


if __name__ == "__main__":
    main(sys.argv[1])
