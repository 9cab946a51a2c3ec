#!/usr/bin/env python3
"""PyTorch eager float32 on the shapes of `npm run bench:peer`, for the ratio to PyTorch on a real GPU.

Reads the model folders and token streams that `bench:peer --keep-models DIR` wrote
(DIR/<shape>/config.json, model.safetensors, tokens.bin: uint16 ids), so PyTorch trains the same
weights on the same batches, and reports what bench:peer reports for the engine: training
tokens/s (torch.optim.Adam, lr 1e-4, eps 1e-8: the update bench:peer gives both of its sides),
forward-only tokens/s, greedy generation tokens/s with a key/value cache after an 8-token prompt
(decode steps after the first token), peak memory, the step-1 loss, and matmul GFLOP/s at GPT-2
124M's training shapes. With --engine FILE (bench:peer's --json) it prints the engine's numbers
beside its own with the ratio. The model is GPT-2 as Hugging Face's GPT2LMHeadModel computes it
(Conv1D weights (in, out), pre-LayerNorm, causal attention, gelu_new, tied LM head), written
with torch.nn.functional; no `transformers` needed.

    python3 bench/torch_peer.py --models DIR [--engine webgpu.json] [--json torch.json] [--device cuda|cpu] [--steps N] [--only a,b] [--no-matmul]
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

PROMPT = 8
LR = 1e-4
GENERATE = {"tiny": 48, "gpt2-vocab": 32, "gpt2-124M": 8}
MATMUL_SHAPES = [
    ("c_attn forward x·W", 128, 2304, 768, False, False),
    ("c_fc forward x·W", 128, 3072, 768, False, False),
    ("mlp c_proj forward x·W", 128, 768, 3072, False, False),
    ("c_fc dx = dy·Wᵀ", 128, 768, 3072, False, True),
    ("c_fc dW = xᵀ·dy", 768, 3072, 128, True, False),
    ("LM head logits x·wteᵀ", 128, 32768, 768, False, True),
    ("LM head dwte = dlogitsᵀ·x", 32768, 768, 128, True, False),
]


def read_safetensors(path):
    """name -> float32 tensor; the format is an 8-byte little-endian header length, a JSON header, then the data."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = memoryview(data)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {info['dtype']}; bench:peer writes F32")
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[b:e]), dtype=torch.float32).reshape(info["shape"])
        out[name[len("transformer."):] if name.startswith("transformer.") else name] = t
    return out


def attention(q, k, v, causal):
    """softmax(q·kᵀ/√hs [causal mask])·v; PyTorch's fused kernel where this version has it (2.0 and later)."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if causal:
        T = q.shape[-2]
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return torch.softmax(att, -1) @ v


class Gpt2:
    def __init__(self, cfg, params, device):
        self.c = cfg
        self.p = {k: v.to(device).requires_grad_(True) for k, v in params.items()}
        self.L, self.C, self.NH = cfg["n_layer"], cfg["n_embd"], cfg["n_head"]
        self.eps = cfg.get("layer_norm_epsilon", 1e-5)
        self.act = cfg.get("activation_function", "gelu_new")

    def ln(self, x, name):
        return F.layer_norm(x, (self.C,), self.p[name + ".weight"], self.p[name + ".bias"], self.eps)

    def lin(self, x, name):
        return torch.addmm(self.p[name + ".bias"], x.reshape(-1, x.shape[-1]), self.p[name + ".weight"]).reshape(*x.shape[:-1], -1)

    def gelu(self, x):
        return F.gelu(x, approximate="tanh" if self.act == "gelu_new" else "none")

    def block(self, x, i, cache=None):
        h = f"h.{i}"
        B, T, C = x.shape
        hs = C // self.NH
        q, k, v = self.lin(self.ln(x, h + ".ln_1"), h + ".attn.c_attn").split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, hs).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            if cache[i] is not None:
                k = torch.cat([cache[i][0], k], 2)
                v = torch.cat([cache[i][1], v], 2)
            cache[i] = (k, v)
        y = attention(q, k, v, causal=T > 1)
        x = x + self.lin(y.transpose(1, 2).reshape(B, T, C), h + ".attn.c_proj")
        return x + self.lin(self.gelu(self.lin(self.ln(x, h + ".ln_2"), h + ".mlp.c_fc")), h + ".mlp.c_proj")

    def logits(self, idx, pos0=0, cache=None):
        T = idx.shape[1]
        x = self.p["wte.weight"][idx] + self.p["wpe.weight"][pos0:pos0 + T]
        for i in range(self.L):
            x = self.block(x, i, cache)
        return self.ln(x, "ln_f") @ self.p["wte.weight"].t()

    def loss(self, idx, targets):
        lg = self.logits(idx)
        return F.cross_entropy(lg.reshape(-1, lg.shape[-1]), targets.reshape(-1))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_shape(name, folder, B, T, steps, device, trained=None):
    """`trained`: the batch indices the engine trained on, in order (bench:peer's JSON); the same
    updates are made here before generating, so both generate from the same weights."""
    cfg = json.load(open(os.path.join(folder, "config.json")))
    model = Gpt2(cfg, read_safetensors(os.path.join(folder, "model.safetensors")), device)
    stream = torch.frombuffer(bytearray(open(os.path.join(folder, "tokens.bin"), "rb").read()), dtype=torch.int16).to(torch.int64) & 0xFFFF
    N = B * T

    def batch(k):
        o = k * N
        return stream[o:o + N].view(B, T).to(device), stream[o + 1:o + 1 + N].view(B, T).to(device)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    opt = torch.optim.Adam(model.p.values(), lr=LR, betas=(0.9, 0.999), eps=1e-8)

    def step(k):
        x, y = batch(k)
        opt.zero_grad(set_to_none=True)
        loss = model.loss(x, y)
        loss.backward()
        opt.step()
        return loss.detach()

    step1 = step(0).item()
    step2 = step(1).item()
    sync(device)
    t0 = time.perf_counter()
    losses = [step(2 + k) for k in range(steps)]
    _ = [l.item() for l in losses]
    sync(device)
    train = steps * N / (time.perf_counter() - t0)
    for k in (trained or [])[2 + steps:]:
        step(k)
    with torch.no_grad():
        model.loss(*batch(0)).item()
        t0 = time.perf_counter()
        fl = [model.loss(*batch(k)) for k in range(steps)]
        _ = [l.item() for l in fl]
        sync(device)
        forward = steps * N / (time.perf_counter() - t0)
        prompt = stream[:PROMPT].view(1, -1).to(device)
        n = GENERATE.get(name, 16)

        def generate(n):
            cache = [None] * model.L
            tok = int(model.logits(prompt, 0, cache)[0, -1].argmax())
            out = [tok]
            t0 = time.perf_counter()
            for i in range(1, n):
                lg = model.logits(torch.tensor([[out[-1]]], device=device), PROMPT + i - 1, cache)
                out.append(int(lg[0, -1].argmax()))
            return out, time.perf_counter() - t0

        generate(2)
        tokens, seconds = generate(n)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    return {
        "shape": name, "B": B, "T": T, "step1Loss": step1, "step2Loss": step2,
        "trainTokensPerSecond": train, "forwardTokensPerSecond": forward,
        "generateTokensPerSecond": (n - 1) / seconds, "generatedTokens": tokens, "peakGpuBytes": peak,
    }


def bench_matmul(device, reps):
    rows = []
    for what, M, N, K, ta, tb in MATMUL_SHAPES:
        a = torch.rand((K, M) if ta else (M, K), device=device) - 0.5
        b = torch.rand((N, K) if tb else (K, N), device=device) - 0.5
        f = lambda: (a.t() if ta else a) @ (b.t() if tb else b)  # noqa: E731
        f()
        sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        sync(device)
        rows.append({"what": what, "M": M, "N": N, "K": K, "gflops": 2 * M * N * K * reps / (time.perf_counter() - t0) / 1e9})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", required=True, help="the folder bench:peer --keep-models wrote")
    ap.add_argument("--engine", help="bench:peer's --json output, to print the engine beside PyTorch")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps (with --engine: the engine's count per shape)")
    ap.add_argument("--only", help="comma-separated shape names")
    ap.add_argument("--no-matmul", action="store_true", help="skip the matmul table")
    args = ap.parse_args()
    device = torch.device(args.device)
    engine = json.load(open(args.engine)) if args.engine else None
    shapes = [s for s in (engine["shapes"] if engine else []) if not args.only or s["shape"] in args.only.split(",")]
    if not shapes:  # without the engine's JSON: every folder, with the shapes bench:peer uses
        known = {"tiny": (2, 37), "gpt2-vocab": (4, 64), "gpt2-124M": (1, 128)}
        shapes = [{"shape": n, "B": known[n][0], "T": known[n][1]} for n in sorted(os.listdir(args.models)) if n in known and (not args.only or n in args.only.split(","))]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"PyTorch {torch.__version__} eager float32 on {name}")
    results = []
    for s in shapes:
        steps = s.get("steps", args.steps) if engine else args.steps
        r = bench_shape(s["shape"], os.path.join(args.models, s["shape"]), s["B"], s["T"], steps, device, s.get("ours", {}).get("trainedBatches"))
        results.append(r)
        print(f"{r['shape']}: step-1 loss {r['step1Loss']:.6f}, {r['trainTokensPerSecond']:.1f} training tokens/s")
    mm = [] if args.no_matmul else bench_matmul(device, 20 if device.type == "cuda" else 3)
    if engine:
        def ratio(a, b):
            return f"{a / b:.2f}×" if a and b else "—"
        print("\n| shape | training tok/s engine | PyTorch | engine/PyTorch | forward engine | PyTorch | ratio | generation engine | PyTorch | ratio | step-1 loss Δ | step-2 loss Δ | same tokens |")
        print("|" + "---|" * 13)
        by = {r["shape"]: r for r in results}
        for s in shapes:
            r, o = by[s["shape"]], s["ours"]
            same = "—" if not o.get("generatedTokens") else ("yes" if o["generatedTokens"] == r["generatedTokens"] else "no")
            d = abs(r["step1Loss"] - o["step1Loss"]) if o.get("step1Loss") is not None else None
            d2 = abs(r["step2Loss"] - o["step2Loss"]) if o.get("step2Loss") is not None else None
            print(f"| {s['shape']} | {o['trainTokensPerSecond'] or 0:.1f} | {r['trainTokensPerSecond']:.1f} | {ratio(o['trainTokensPerSecond'], r['trainTokensPerSecond'])} "
                  f"| {o['forwardTokensPerSecond'] or 0:.1f} | {r['forwardTokensPerSecond']:.1f} | {ratio(o['forwardTokensPerSecond'], r['forwardTokensPerSecond'])} "
                  f"| {o['generateTokensPerSecond'] or 0:.1f} | {r['generateTokensPerSecond']:.1f} | {ratio(o['generateTokensPerSecond'], r['generateTokensPerSecond'])} "
                  f"| {'—' if d is None else f'{d:.1e}'} | {'—' if d2 is None else f'{d2:.1e}'} | {same} |")
        em = {m["what"]: m for m in engine.get("matmul", [])}
        if mm:
            print("\n| matmul (M, N, K) | engine GFLOP/s | PyTorch GFLOP/s | engine/PyTorch |")
            print("|---|---|---|---|")
        for m in mm:
            e = em.get(m["what"])
            print(f"| {m['what']} ({m['M']}, {m['N']}, {m['K']}) | {e['oursGflops']:.1f} | {m['gflops']:.1f} | {e['oursGflops'] / m['gflops']:.2f}× |" if e else
                  f"| {m['what']} ({m['M']}, {m['N']}, {m['K']}) | — | {m['gflops']:.1f} | — |")
    else:
        for m in mm:
            print(f"matmul {m['what']} ({m['M']}, {m['N']}, {m['K']}): {m['gflops']:.2f} GFLOP/s")
    out = {"torch": torch.__version__, "device": name, "steps": args.steps, "shapes": results, "matmul": mm}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
