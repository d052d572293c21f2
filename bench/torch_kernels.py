#!/usr/bin/env python3
"""torch_kernels.py - the configurations of bench_kernels.c in PyTorch, for the ratio in the same run.

    python3 bench/torch_kernels.py [--json FILE] [--label NAME] [--quick]

Float32 always; bfloat16 with torch.autocast("cpu", dtype=torch.bfloat16) too when this CPU and this
build run bf16 (tried, not assumed). Two threads, like magna on this machine. Each figure is the median of
timed repetitions after two warm-up runs, with the same flop conventions as bench_kernels.c:
  matmul 2MNK; conv forward 2*N*OC*OH*OW*C*9, forward+backward adds dw and (layers 2, 3) dx;
  causal attention counts the unmasked half: forward 2BT^2C, forward+backward 6BT^2C.
Backward starts from a gradient of ones at the op's output, as in bench_kernels.c.
Keys match the "peer" names bench_kernels.c writes, so bench/join_kernels.py can join the two.

Debian's python3-torch links Debian's OpenBLAS, which on AMD Zen 4/5 needs OPENBLAS_CORETYPE=SkylakeX in
the environment before it loads (bench/run_kernels.sh sets it) to use its AVX-512 kernels.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time
import warnings

# pip's torch warns at import when NumPy is absent; nothing here uses NumPy.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

THREADS = int(os.environ.get("MAGNA_THREADS", "2"))
MIN_TIME, MIN_REPS, MAX_REPS = 0.8, 7, 200


def measure(fn):
    """Median seconds of fn() after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < MAX_REPS and (len(times) < MIN_REPS or time.perf_counter() - start < MIN_TIME):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def autocast_ctx(bf16):
    if bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def bf16_works():
    """True when autocast really computes a matmul in bf16 here (needs the CPU's bf16 support in oneDNN)."""
    try:
        if hasattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported") and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
        a = torch.randn(64, 64)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            c = a @ a
        return c.dtype == torch.bfloat16
    except Exception:  # an old build without CPU autocast
        return False


_ONES = {}


def ones_like(y):
    """The gradient backward starts from: ones at the op's output (what a sum loss gives), made once per
    shape and dtype, as bench_kernels.c seeds magna_graph_backward_seeded, so that only the op is timed."""
    key = (tuple(y.shape), y.dtype)
    if key not in _ONES:
        _ONES[key] = torch.ones(y.shape, dtype=y.dtype)
    return _ONES[key]


def bench_matmul(n, bf16):
    a, b = torch.rand(n, n) * 2 - 1, torch.rand(n, n) * 2 - 1

    def run():
        with torch.no_grad(), autocast_ctx(bf16):
            return a @ b

    return f"matmul {n}", 2.0 * n ** 3, run


def bench_conv(batch, cin, cout, hw, backward, bf16):
    needs_dx = cin > 1  # layer 1 reads the image; layers 2 and 3 an activation, whose gradient is needed
    x = (torch.rand(batch, cin, hw, hw) * 2 - 1).requires_grad_(backward and needs_dx)
    w = (torch.randn(cout, cin, 3, 3) * math.sqrt(2.0 / (cin * 9))).requires_grad_(backward)
    bias = (torch.rand(cout) * 0.2 - 0.1).requires_grad_(backward)
    fwd = 2.0 * batch * cout * hw * hw * cin * 9
    if backward:
        def run():
            with autocast_ctx(bf16):
                y = F.conv2d(x, w, bias, padding=1)
            y.backward(ones_like(y))
            # Zeroing gradients is part of every training step (magna zeroes its flat buffer).
            for t in (x, w, bias):
                t.grad = None
        return f"conv_fwdbwd {cin}x{cout}@{hw}", fwd * (3 if needs_dx else 2), run

    def run():
        with torch.no_grad(), autocast_ctx(bf16):
            return F.conv2d(x, w, bias, padding=1)
    return f"conv_fwd {cin}x{cout}@{hw}", fwd, run


def attention_fn():
    """PyTorch's fused causal attention when this build has it (2.0 and later), else the composed one a
    1.13 user writes: q k^T * scale, masked with -inf above the diagonal, softmax, @ v."""
    if hasattr(F, "scaled_dot_product_attention"):
        return "sdpa", lambda q, k, v, mask: F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def composed(q, k, v, mask):
        s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
        s = s.masked_fill(mask, float("-inf"))
        return torch.softmax(s, dim=-1) @ v
    return "composed", composed


def bench_attention(B, T, C, H, backward, bf16):
    _, attn = attention_fn()
    hd = C // H
    qkv = [(torch.rand(B, H, T, hd) * 2 - 1).requires_grad_(backward) for _ in range(3)]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    fwd = 2.0 * B * T * T * C
    name = f"B{B}T{T}C{C}H{H}"
    if backward:
        def run():
            with autocast_ctx(bf16):
                y = attn(*qkv, mask)
            y.backward(ones_like(y))
            for t in qkv:
                t.grad = None
        return f"attn_fwdbwd {name}", 3 * fwd, run

    def run():
        with torch.no_grad(), autocast_ctx(bf16):
            return attn(*qkv, mask)
    return f"attn_fwd {name}", fwd, run


def configs(bf16):
    for n in (1024, 2048):
        yield bench_matmul(n, bf16)
    for backward in (False, True):
        for cin, cout, hw in ((1, 32, 28), (32, 64, 14), (64, 128, 7)):
            yield bench_conv(64, cin, cout, hw, backward, bf16)
    for backward in (False, True):
        for B, T, C, H in ((8, 256, 384, 6), (16, 128, 256, 4)):
            yield bench_attention(B, T, C, H, backward, bf16)


def main():
    global MIN_TIME, MIN_REPS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--label", default="torch", help="name of this PyTorch in the joined table")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke test, not a measurement)")
    args = ap.parse_args()
    if args.quick:
        MIN_TIME, MIN_REPS = 0.2, 3

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    have_bf16 = bf16_works()
    attn_path, _ = attention_fn()
    blas = os.environ.get("OPENBLAS_CORETYPE", "")
    print(f"{args.label}: torch {torch.__version__} | threads {torch.get_num_threads()} | "
          f"attention {attn_path} | bf16 autocast {'yes' if have_bf16 else 'no'}"
          f"{' | OPENBLAS_CORETYPE=' + blas if blas else ''}", flush=True)

    out = {"label": args.label, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "attention": attn_path, "openblas_coretype": blas, "python": sys.executable, "results": {}}
    for prec in ("f32", "bf16") if have_bf16 else ("f32",):
        rows = []
        for key, flops, run in configs(prec == "bf16"):
            sec, reps = measure(run)
            rows.append({"key": key, "flops": flops, "ms": sec * 1e3, "gflops": flops / sec * 1e-9, "reps": reps})
            print(f"{args.label} {prec} {key:<24} | {flops / sec * 1e-9:8.1f} GFLOP/s | {sec * 1e3:9.3f} ms | "
                  f"{reps:3d} reps", flush=True)
        out["results"][prec] = rows
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
