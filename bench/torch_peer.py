#!/usr/bin/env python3
"""PyTorch CPU peer for ChromaTune's training-speed benchmark.

A small GPT-2 (pre-LayerNorm, learned positions, gelu_new, tied output embedding,
Conv1D-style [in, out] weights) with LoRA on its linear layers, trained with AdamW on
random tokens under a masked cross-entropy. It measures training and sampling tokens/s so
the TensorFlow.js implementation can be compared against a native CPU baseline.

Needs only Debian's python3-torch (1.13) and the standard library:
    /usr/bin/python3 bench/torch_peer.py --threads 1 --json
Debian's torch calls whatever libblas.so.3 is installed: install libopenblas0-openmp too, or
matmuls run on the reference BLAS at ~1.5 GFLOP/s (the "blas" field of the output says which).
"""
import argparse
import json
import math
import os
import statistics
import time


# Debian's default libblas is OpenBLAS's pthread build: it ignores torch.set_num_threads and starts
# a thread per core unless told through the environment before it loads, so --threads is read first.
_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--threads", type=int, default=1)
os.environ["OPENBLAS_NUM_THREADS"] = str(_pre.parse_known_args()[0].threads)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LORA_TARGETS = ("c_attn", "attn_c_proj", "c_fc", "mlp_c_proj")


# ----------------------------------------------------------------------------- model

class Conv1D(nn.Module):
    """GPT-2's linear layer: y = x W + b with W stored [in, out] (HF `Conv1D`), plus an
    optional LoRA branch y += (alpha/r) * dropout(x) A B with W frozen, A random, B zero,
    so the adapted model starts out identical to the base model."""

    def __init__(self, n_in, n_out, std=0.02):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * std)
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.lora_A = self.lora_B = None

    def add_lora(self, r, alpha, dropout):
        n_in, n_out = self.weight.shape
        # kaiming_uniform_(a=sqrt(5)) over fan_in = n_in, as PEFT/loralib do: bound 1/sqrt(n_in).
        # (torch's own helper would take fan_in from dim 1, i.e. r, for an [in, r] tensor.)
        bound = 1.0 / math.sqrt(n_in)
        self.lora_A = nn.Parameter(torch.empty(n_in, r).uniform_(-bound, bound))
        self.lora_B = nn.Parameter(torch.zeros(r, n_out))
        self.scaling = alpha / r
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x):
        y = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
        y = y.view(*x.shape[:-1], -1)
        if self.lora_A is not None:
            # Rank-r path: two thin matmuls, never materialising the [in, out] delta.
            y = y + (self.lora_dropout(x) @ self.lora_A @ self.lora_B) * self.scaling
        return y


def gelu_new(x):
    # GPT-2's tanh approximation (HF "gelu_new"): 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))).
    # torch >= 1.12 has it as one fused kernel; written out it costs ~10 elementwise passes
    # forward and backward, about a third of a d=128 training step.
    return F.gelu(x, approximate="tanh")


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head, self.n_embd = cfg["n_head"], cfg["n_embd"]
        self.c_attn = Conv1D(self.n_embd, 3 * self.n_embd)
        # GPT-2 scales residual projections by 1/sqrt(2 * n_layer) at init.
        self.c_proj = Conv1D(self.n_embd, self.n_embd, 0.02 / math.sqrt(2 * cfg["n_layer"]))
        n = cfg["n_positions"]
        self.register_buffer("causal", torch.tril(torch.ones(n, n, dtype=torch.bool)), persistent=False)

    def forward(self, x, past=None):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, hs).transpose(1, 2) for t in (q, k, v))  # B,h,T,hs
        if past is not None:  # KV cache: keys/values of earlier positions are reused, not recomputed
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        S = k.shape[2]
        # torch 1.13 has no scaled_dot_product_attention; write it out (as nanoGPT's fallback does).
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(~self.causal[S - T:S, :S], float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y), (k, v)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["n_embd"]
        self.c_fc = Conv1D(d, 4 * d)
        self.c_proj = Conv1D(4 * d, d, 0.02 / math.sqrt(2 * cfg["n_layer"]))

    def forward(self, x):
        return self.c_proj(gelu_new(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg["n_embd"], eps=1e-5)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg["n_embd"], eps=1e-5)
        self.mlp = MLP(cfg)

    def forward(self, x, past=None):  # pre-LN residual blocks
        a, present = self.attn(self.ln_1(x), past)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, present


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg["vocab"], cfg["n_embd"])
        self.wpe = nn.Embedding(cfg["n_positions"], cfg["n_embd"])
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg["n_layer"]))
        self.ln_f = nn.LayerNorm(cfg["n_embd"], eps=1e-5)

    def forward(self, idx, past=None, last_only=False):
        T = idx.shape[1]
        start = 0 if past is None else past[0][0].shape[2]
        pos = torch.arange(start, start + T)
        x = self.wte(idx) + self.wpe(pos)
        presents = []
        for i, block in enumerate(self.h):
            x, p = block(x, None if past is None else past[i])
            presents.append(p)
        x = self.ln_f(x)
        W = self.wte.weight  # tied output embedding
        if not last_only:
            return x @ W.t(), presents
        # Sampling needs only the last position's logits (as nanoGPT does at inference).
        x = x[:, -1]
        if x.shape[0] == 1:
            # One row: OpenBLAS 0.3.21 runs a 1-row sgemm through the full gemm path, packing
            # the whole [vocab, n_embd] matrix per call (~5x slower than gemv at vocab 8192).
            return torch.mv(W, x[0])[None, None], presents
        return (x @ W.t())[:, None], presents

    def apply_lora(self, r, alpha, dropout, targets=LORA_TARGETS):
        """Freeze every base weight, then add trainable A/B pairs on the targeted layers."""
        for p in self.parameters():
            p.requires_grad_(False)
        for b in self.h:
            layers = {"c_attn": b.attn.c_attn, "attn_c_proj": b.attn.c_proj,
                      "c_fc": b.mlp.c_fc, "mlp_c_proj": b.mlp.c_proj}
            for name in targets:
                layers[name].add_lora(r, alpha, dropout)


def masked_ce(logits, targets, mask):
    """Cross-entropy weighted 0/1 per target token, averaged over the weighted tokens."""
    loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    m = mask.reshape(-1)
    return (loss * m).sum() / m.sum().clamp(min=1.0)


@torch.no_grad()
def generate(model, prompt, n_new, use_cache):
    """Greedy decoding. Without a cache every step re-runs the whole (cropped) sequence."""
    idx, past = prompt, None
    n_pos = model.cfg["n_positions"]
    for _ in range(n_new):
        if use_cache:
            if past is not None and past[0][0].shape[2] >= n_pos:  # window full: restart the cache
                past = None
            inp = idx[:, -n_pos:] if past is None else idx[:, -1:]
            logits, past = model(inp, past, last_only=True)
        else:
            logits, _ = model(idx[:, -n_pos:], last_only=True)
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


# ----------------------------------------------------------------------------- timing

def measure(fn, units_per_call, seconds, windows, warmup):
    """Run `fn` `warmup` times untimed (allocator, first-touch and thread-pool start-up), then
    `windows` windows of about seconds/windows each; return the median units/s across windows,
    which is robust to an occasional noisy window on a shared machine."""
    for _ in range(warmup):
        fn()
    rates, per_window = [], seconds / windows
    for _ in range(windows):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= per_window:
                break
        rates.append(n * units_per_call / dt)
    return statistics.median(rates)


def bench_config(cfg, args):
    B, T, V = cfg["batch"], cfg["context"], cfg["vocab"]
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randint(0, V, (B, T), generator=gen)
    y = torch.randint(0, V, (B, T), generator=gen)
    mask = torch.zeros(B, T)
    mask[:, T // 2:] = 1.0  # loss on the second half: a "completion" after a "prompt"

    def train_rate(lora):
        torch.manual_seed(args.seed)
        model = GPT(cfg)
        if lora:
            model.apply_lora(args.lora_rank, args.lora_alpha, args.lora_dropout)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)

        def step():
            logits, _ = model(x)
            loss = masked_ce(logits, y, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        rate = measure(step, B * T, args.seconds, args.windows, args.warmup)
        return rate, sum(p.numel() for p in params), model

    lora_rate, lora_params, lora_model = train_rate(True)
    full_rate, full_params, _ = train_rate(False)

    # Sampling uses the LoRA model with its adapters unmerged, as during fine-tuning.
    lora_model.eval()
    prompt = torch.randint(0, V, (1, args.prompt_len), generator=gen)
    sample = {}
    for cache in (True, False):
        sample[cache] = measure(lambda: generate(lora_model, prompt, args.gen_len, cache),
                                args.gen_len, args.seconds, args.windows, 1)

    return {
        "lora_train_tokens_per_s": round(lora_rate, 1),
        "full_train_tokens_per_s": round(full_rate, 1),
        "sample_tokens_per_s_cache": round(sample[True], 1),
        "sample_tokens_per_s_nocache": round(sample[False], 1),
        "config": dict(cfg, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
                       lora_dropout=args.lora_dropout, lora_targets=list(LORA_TARGETS),
                       lora_trainable_params=lora_params, full_trainable_params=full_params,
                       loss_mask="second half of each sequence", optimizer="AdamW lr=1e-3 wd=0.01",
                       sample_batch=1, prompt_len=args.prompt_len, gen_len=args.gen_len),
    }


def matmul_gflops(args):
    # The shape of config (a)'s c_attn forward: (batch*context) x n_embd @ n_embd x 3*n_embd.
    a, b = torch.randn(1024, 128), torch.randn(128, 384)
    out = torch.empty(1024, 384)
    rate = measure(lambda: torch.mm(a, b, out=out), 2 * 1024 * 128 * 384, args.seconds, args.windows, 10)
    return round(rate / 1e9, 2)


def blas_library():
    """Which libblas the process loaded. Debian's torch is built against the generic
    libblas.so.3, so its speed depends on the alternative installed: the reference BLAS
    (libblas3) is roughly 50x slower than OpenBLAS (libopenblas0-openmp)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
        return sorted(libs)
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for matrix products (OpenBLAS); PyTorch's own ops run on one, as ChromaTune's do")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--windows", type=int, default=5, help="timed windows per measurement (median)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed training steps")
    ap.add_argument("--configs", default="a,b")
    ap.add_argument("--seed", type=int, default=0)
    # the configurable "base" configuration (b)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--context", type=int, default=128, help="also n_positions")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=16.0)
    ap.add_argument("--lora-dropout", type=float, default=0.0)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--gen-len", type=int, default=48)
    args = ap.parse_args()

    # Interop threads can only be set before any parallel work starts, so do it first. OpenMP
    # threads beside OpenBLAS's own (pthread) threads oversubscribe the cores: on 2 cores, 2 of each
    # trained 3x slower than 1 and 2.
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    configs = {
        "a": dict(n_layer=2, n_embd=128, n_head=4, n_positions=64, context=64, vocab=256, batch=16),
        "b": dict(n_layer=args.n_layer, n_embd=args.n_embd, n_head=args.n_head,
                  n_positions=args.context, context=args.context, vocab=args.vocab, batch=args.batch),
    }
    result = {"peer": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
              "blas_threads": int(os.environ["OPENBLAS_NUM_THREADS"]),
              "interop_threads": torch.get_num_interop_threads(), "blas": blas_library(),
              "loadavg_at_start": round(os.getloadavg()[0], 2), "configs": {}}
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        if not args.json:
            print(f"config {name}: {configs[name]} ...", flush=True)
        result["configs"][name] = r = bench_config(configs[name], args)
        if not args.json:
            for k, v in r.items():
                if k != "config":
                    print(f"  {k:30s} {v:12.1f}")
    result["matmul_gflops"] = matmul_gflops(args)
    # Process CPU time over wall time for the whole run: about `threads` on an idle machine,
    # lower when other processes took the cores (then every figure above is pessimistic).
    result["cpu_over_wall"] = round((time.process_time() - cpu0) / (time.perf_counter() - wall0), 2)

    if args.json:
        print(json.dumps(result))
    else:
        print(f"matmul 1024x128 @ 128x384 GFLOP/s: {result['matmul_gflops']}")
        print(f"torch {result['torch']}, threads {result['threads']}")


if __name__ == "__main__":
    main()
