#!/usr/bin/env python3
"""torch_gpt2.py - GPT-2 124M (models/gpt2-124m.ini) trained on random tokens in PyTorch, on a GPU: the peer of
`magna train models/gpt2-124m.ini --device cuda` in bench/gpt2.sh.

    python3 bench/torch_gpt2.py [--compile] [--precision bf16|f32] [--batch 64] [--steps 30] [--warmup 5]
                                [--layers 12 --heads 12 --d-model 768 --context 1024 --vocab 50257 --pad 128]
                                [--device cuda|cpu] [--label NAME]
    python3 bench/torch_gpt2.py --peak "NVIDIA H100 80GB HBM3"     # the bf16 dense peak it uses, in TFLOP/s

The model is nanoGPT's GPT-2 small, as fast as PyTorch makes it: pre-LN blocks with a fused q/k/v projection
(the same parameter count as magna's three), F.scaled_dot_product_attention(is_causal=True) (flash attention
on an H100), GELU (tanh approximation, GPT-2's), tied embeddings, the vocabulary padded to a multiple of
--pad (50304), no dropout. bf16: torch.autocast(dtype=torch.bfloat16) around forward and loss, float32 weights
and optimizer state; f32 keeps PyTorch's default (no TF32 matmuls). AdamW(fused=True), lr 6e-4, betas 0.9/0.95,
weight decay 0.1 on every parameter (as magna's), gradients clipped to norm 1. --compile wraps the model in
torch.compile (its compilation happens in the warm-up steps, which are not timed).

Timed: each step from the batch's start to torch.cuda.synchronize() after the optimizer; the median over
the --steps steps after --warmup untimed ones. Memory: torch.cuda.max_memory_allocated (and _reserved) over
the whole run. FLOPs per token: 6 N + 12 L T d (N every parameter, the padded embedding and the positions
included; attention's 12 L T d counts the causal half as if it were computed, as PaLM's and nanoGPT's MFU do).
MFU: tokens/s x FLOPs per token / the device's bf16 dense peak, from the table below by device name ("unknown"
for a device it does not list).

Without a GPU (and without --device cpu, which only checks this script on tiny sizes) it says so and exits 1.
The last line is key=value results:
    label=... tokens_per_s=... step_ms=... mfu=... max_allocated_gib=... max_reserved_gib=... loss=...
    params=... flops_per_token=... batch=... context=... device=... torch=...
"""
import argparse
import math
import statistics
import sys
import time

# bf16 dense tensor-core peaks (no sparsity), TFLOP/s, by a substring of torch.cuda.get_device_name(); the
# first match wins, so the more specific names come first.
PEAKS = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),   # SXM5 (the "80GB HBM3" part)
    ("H200", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
]


def peak_tflops(name):
    for key, tflops in PEAKS:
        if key in name:
            return tflops
    return None


def build(torch, L, H, D, T, V):
    nn = torch.nn
    F = torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(D), nn.LayerNorm(D)
            self.c_attn, self.c_proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
            self.c_fc, self.mlp_proj = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(D, dim=2)
            q, k, v = (z.view(b, t, H, D // H).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.c_proj(y.transpose(1, 2).contiguous().view(b, t, D))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, D), nn.Embedding(T, D)
            self.h = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(D)
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    nn.init.zeros_(p)
                elif p.dim() == 2:
                    proj = name.endswith(("c_proj.weight", "mlp_proj.weight"))
                    nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * L) if proj else 0.02)

        def forward(self, idx, targets):
            pos = torch.arange(idx.shape[1], device=idx.device)
            x = self.wte(idx) + self.wpe(pos)
            for blk in self.h:
                x = blk(x)
            logits = self.ln_f(x) @ self.wte.weight.t()  # tied
            # under autocast cross_entropy runs in float32 itself (as nanoGPT leaves it)
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))

    return GPT()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peak", metavar="DEVICE_NAME")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--precision", choices=("bf16", "f32"), default="bf16")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--pad", type=int, default=128)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--label", default="torch")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    if a.peak is not None:
        p = peak_tflops(a.peak)
        print("unknown" if p is None else f"{p:g}")
        return 0
    if a.steps < 1 or a.warmup < 0 or a.batch < 1 or a.d_model % a.heads:
        sys.exit("torch_gpt2.py: --steps and --batch >= 1, --warmup >= 0, --heads dividing --d-model")
    try:
        import torch
    except ImportError as e:
        print(f"torch_gpt2.py: no PyTorch here ({e})", file=sys.stderr)
        return 1
    cuda = a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print(f"torch_gpt2.py: no GPU here (torch {torch.__version__}: torch.cuda.is_available() is False)",
              file=sys.stderr)
        return 1
    dev = torch.device(a.device)
    torch.manual_seed(a.seed)
    L, H, D, T = a.layers, a.heads, a.d_model, a.context
    V = (a.vocab + a.pad - 1) // a.pad * a.pad if a.pad > 1 else a.vocab
    model = build(torch, L, H, D, T, V).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    flops_per_token = 6 * n_params + 12 * L * T * D
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=cuda)
    step_fn = torch.compile(model) if a.compile else model
    # random tokens in [0, vocab): the padded ids are never targets; one pool of batches made up front
    g = torch.Generator(device=dev).manual_seed(a.seed)
    pool = torch.randint(0, a.vocab, (a.warmup + a.steps, a.batch, T + 1), device=dev, generator=g)
    autocast = torch.autocast(device_type=a.device, dtype=torch.bfloat16, enabled=a.precision == "bf16")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, loss = [], float("nan")
    try:
        for i in range(a.warmup + a.steps):
            x, y = pool[i, :, :-1], pool[i, :, 1:]
            sync()
            t0 = time.perf_counter()
            with autocast:
                out = step_fn(x, y)
            opt.zero_grad(set_to_none=True)
            out.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sync()
            if i >= a.warmup:
                times.append(time.perf_counter() - t0)
            loss = out.item()
            if i == 0 or i + 1 == a.warmup + a.steps:
                print(f"step {i + 1} loss {loss:.4f} ({time.perf_counter() - t0:.3f} s)", flush=True)
    except torch.cuda.OutOfMemoryError as e:
        print(f"torch_gpt2.py: out of GPU memory at batch {a.batch}: {str(e).splitlines()[0]}", file=sys.stderr)
        print(f"label={a.label} status=oom batch={a.batch}")
        return 3
    step = statistics.median(times)
    tokens_per_s = a.batch * T / step
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = peak_tflops(name) if cuda else None
    mfu = "unknown" if peak is None else f"{tokens_per_s * flops_per_token / (peak * 1e12):.4f}"
    gib = 1024.0 ** 3
    alloc = torch.cuda.max_memory_allocated() / gib if cuda else float("nan")
    reserved = torch.cuda.max_memory_reserved() / gib if cuda else float("nan")
    print(f"label={a.label} tokens_per_s={tokens_per_s:.0f} step_ms={1e3 * step:.2f} mfu={mfu} "
          f"max_allocated_gib={alloc:.2f} max_reserved_gib={reserved:.2f} loss={loss:.4f} params={n_params} "
          f"flops_per_token={flops_per_token} batch={a.batch} context={T} precision={a.precision} "
          f"compile={int(a.compile)} device={name.replace(' ', '_')} torch={torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
