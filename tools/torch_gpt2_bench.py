"""GPT-2 training-step throughput in PyTorch (eager and torch.compile), the
reference for tools:gpt2_bench, which embeds this file and runs it with the
GPU machine's python3 (PyTorch 2.x with CUDA; Debian's CPU-only torch 1.13
lacks scaled_dot_product_attention and torch.compile).

  python3 torch_gpt2_bench.py --B 8 --runs eager:bf16,compile:bf16 ...

The model is the one zerotrain trains: GPT-2 with learned position
embeddings, pre-LayerNorm blocks with biases, GELU (tanh), the token
embedding tied to the LM head and padded to a multiple of 128 rows, and the
loss taken over the real vocabulary only. Parameters and AdamW state are fp32
(torch.amp autocast does the 16-bit compute); fp16 adds a dynamic GradScaler.
Each step: forward, backward, unscale (fp16), clip to global norm 1.0, fused
AdamW. Prints one JSON object per run on stdout.
"""
import argparse
import gc
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.n_head = NH
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.attn_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.gelu = nn.GELU(approximate="tanh")
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(self.gelu(self.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, L, NH, C, V, T):
        super().__init__()
        self.vocab_size = V
        Vp = (V + 127) // 128 * 128
        self.wte = nn.Embedding(Vp, C)
        self.wpe = nn.Embedding(T, C)
        self.h = nn.ModuleList(Block(C, NH) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        self.lm_head = nn.Linear(C, Vp, bias=False)
        self.lm_head.weight = self.wte.weight  # Tied.
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for b in self.h:  # GPT-2's scaled init of the residual projections.
            nn.init.normal_(b.attn_proj.weight, std=0.02 / math.sqrt(2 * L))
            nn.init.normal_(b.mlp_proj.weight, std=0.02 / math.sqrt(2 * L))

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        V = self.vocab_size
        # The padded vocabulary rows are not tokens: the softmax excludes them.
        return F.cross_entropy(logits.view(-1, logits.shape[-1])[:, :V], targets.view(-1))


def run_one(a, mode, dtype_name):
    dev = torch.device("cuda")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    torch.manual_seed(0)
    torch.cuda.reset_peak_memory_stats()
    model = GPT(a.n_layer, a.n_head, a.n_embd, a.vocab_size, a.T).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    step_fn = torch.compile(model) if mode == "compile" else model
    idx = torch.randint(0, a.vocab_size, (a.B, a.T), device=dev)
    tgt = torch.randint(0, a.vocab_size, (a.B, a.T), device=dev)
    times, skipped, first_step_s, loss = [], 0, 0.0, None
    for s in range(a.warmup + a.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype):
            loss = step_fn(idx, tgt)
        if scaler is not None:
            scale_before = scaler.get_scale()
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if s == 0:
            first_step_s = dt
        if s >= a.warmup:
            times.append(dt)
            if scaler is not None and scaler.get_scale() < scale_before:
                skipped += 1
    times.sort()
    out = {"mode": mode, "dtype": dtype_name, "median_step_s": times[len(times) // 2],
           "min_step_s": times[0], "first_step_s": first_step_s,
           "peak_bytes": torch.cuda.max_memory_allocated(), "skipped": skipped,
           "loss": loss.detach().item(), "params": n_params}
    del model, step_fn, opt, scaler, decay, no_decay, loss, idx, tgt
    gc.collect()
    torch.cuda.empty_cache()
    if mode == "compile":
        torch._dynamo.reset()
    return out


def main():
    ap = argparse.ArgumentParser()
    for name, default in [("n_layer", 12), ("n_head", 12), ("n_embd", 768),
                          ("vocab_size", 50257), ("B", 8), ("T", 1024), ("steps", 10),
                          ("warmup", 5)]:
        ap.add_argument("--" + name, type=int, default=default)
    ap.add_argument("--runs", default="eager:bf16,compile:bf16,eager:fp16,compile:fp16",
                    help="comma-separated MODE:DTYPE, MODE in eager|compile, DTYPE in bf16|fp16")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("torch_gpt2_bench: PyTorch %s sees no CUDA device" % torch.__version__)
    print(json.dumps({"torch": torch.__version__, "device": torch.cuda.get_device_name()}),
          flush=True)
    for run in a.runs.split(","):
        mode, dtype_name = run.split(":")
        if mode not in ("eager", "compile") or dtype_name not in ("bf16", "fp16"):
            raise SystemExit("torch_gpt2_bench: bad run %r" % run)
        try:
            out = run_one(a, mode, dtype_name)
        except Exception as e:  # One failed run (e.g. OOM) must not hide the others.
            out = {"mode": mode, "dtype": dtype_name,
                   "error": ("%s: %s" % (type(e).__name__, e)).replace("\n", " ")[:300]}
            gc.collect()
            torch.cuda.empty_cache()
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
