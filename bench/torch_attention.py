#!/usr/bin/env python3
"""torch_attention.py - PyTorch's causal attention at GPT-2 124M's shape on a GPU, timed as magna's op profiler
(MAGNA_PROFILE=1) counts attention, so its table's attention row reads against this one.

    python3 bench/torch_attention.py [--batch 64] [--context 1024] [--heads 12] [--head-dim 64] [--reps 20]
                                     [--device cuda|cpu]

F.scaled_dot_product_attention(q, k, v, is_causal=True) in bf16 (q, k, v [B, H, T, hd], as a model under autocast
hands them over; flash attention on an H100), forward alone and forward + backward (the gradients of q, k and
v from a fixed dO). Useful work, magna's convention (src/graph/run.c): 4 C a (query, key) pair the causal mask
keeps forward, 8 backward, C = H hd; T (T + 1) / 2 pairs a sequence. Medians of --reps after 3 untimed runs,
each between two CUDA events.

Without a GPU (and without --device cpu, which only checks this script on tiny sizes) it says so and exits 1.
The last line is key=value results:
    torch_attention fwd_ms=... fwd_tflops=... bwd_ms=... bwd_tflops=... batch=... context=... heads=... head_dim=...
"""
import argparse
import statistics
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"torch_attention.py: no PyTorch here ({e})")
        return 1
    if a.device == "cuda" and not torch.cuda.is_available():
        print("torch_attention.py: no GPU here (torch.cuda.is_available() is false): nothing measured")
        return 1
    dev = torch.device(a.device)
    B, T, H, hd = a.batch, a.context, a.heads, a.head_dim
    gen = torch.Generator(device="cpu").manual_seed(7)

    def rand(*shape):
        return (torch.rand(*shape, generator=gen) * 2 - 1).to(dev, torch.bfloat16)

    q, k, v = (rand(B, H, T, hd).requires_grad_(True) for _ in range(3))
    dout = rand(B, H, T, hd)
    pairs = T * (T + 1) / 2
    flops_fwd = 4.0 * B * pairs * H * hd
    flops_bwd = 8.0 * B * pairs * H * hd

    def forward():
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def forward_backward():
        out = forward()
        q.grad = k.grad = v.grad = None
        out.backward(dout)

    def timed(fn):
        for _ in range(3):
            fn()
        ms = []
        for _ in range(a.reps):
            if dev.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                ms.append(start.elapsed_time(end))
            else:
                import time
                t0 = time.perf_counter()
                fn()
                ms.append(1e3 * (time.perf_counter() - t0))
        return statistics.median(ms)

    with torch.no_grad():
        fwd_ms = timed(forward)
    both_ms = timed(forward_backward)
    bwd_ms = max(both_ms - fwd_ms, 1e-9)
    print(f"torch_attention fwd_ms={fwd_ms:.3f} fwd_tflops={flops_fwd / fwd_ms * 1e-9:.1f} bwd_ms={bwd_ms:.3f} "
          f"bwd_tflops={flops_bwd / bwd_ms * 1e-9:.1f} batch={B} context={T} heads={H} head_dim={hd} "
          f"device={torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'} torch={torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
