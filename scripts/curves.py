#!/usr/bin/env python3
"""curves.py - two loss curves of the same run (`magna train --log-steps`: step,loss,ms), one on the CPU and one
on the GPU, from the same seed, the same initial weights and the same batches, compared (make gpu-check):

    scripts/curves.py CPU.csv GPU.csv [--early N] [--early-tol X] [--window W] [--late-tol Y]

- the first N steps (default 5), step by step: |gpu - cpu| / cpu at most X (default 2e-3). Until the
  trajectories drift apart, the curves differ only by each op's rounding in another summation order;
- the mean loss of the last W steps (default 50): within a relative Y (default 0.02). Later, a difference of
  rounding grows as any perturbation of training does, so only the curves' level can be compared; both
  runs see the same batches, so the batches' own noise is common to both and the window mean is stable.
Prints one line of figures; exit 0 when both hold, 1 when one does not, 2 when a file is unusable.
"""
import argparse
import math
import sys


def read(path):
    losses = {}
    try:
        with open(path) as f:
            head = f.readline().strip()
            if head != "step,loss,ms":
                raise ValueError(f"header '{head}', expected 'step,loss,ms'")
            for line in f:
                step, loss, _ = line.strip().split(",")
                losses[int(step)] = float(loss)
    except (OSError, ValueError) as e:
        print(f"curves.py: {path}: {e}")
        sys.exit(2)
    if not losses:
        print(f"curves.py: {path}: no steps")
        sys.exit(2)
    return losses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cpu")
    ap.add_argument("gpu")
    ap.add_argument("--early", type=int, default=5)
    ap.add_argument("--early-tol", type=float, default=2e-3)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--late-tol", type=float, default=0.02)
    a = ap.parse_args()
    cpu, gpu = read(a.cpu), read(a.gpu)
    steps = sorted(set(cpu) & set(gpu))
    if len(steps) != len(cpu) or len(steps) != len(gpu):
        print(f"curves.py: the runs have different steps ({len(cpu)} on the CPU, {len(gpu)} on the GPU, "
              f"{len(steps)} in common)")
        return 1
    bad = [s for s in steps if not math.isfinite(gpu[s])]
    if bad:
        print(f"curves.py: the GPU's loss is not finite at step {bad[0]}")
        return 1
    early = steps[: a.early]
    worst, at = max((abs(gpu[s] - cpu[s]) / abs(cpu[s]), s) for s in early)
    late = steps[-min(a.window, len(steps)):]
    mc = sum(cpu[s] for s in late) / len(late)
    mg = sum(gpu[s] for s in late) / len(late)
    rel = abs(mg - mc) / abs(mc)
    ok = worst <= a.early_tol and rel <= a.late_tol
    print(f"steps 1-{len(early)}: worst relative difference {worst:.2e} at step {at} (<= {a.early_tol:g}); "
          f"last {len(late)} steps' mean loss CPU {mc:.4f} GPU {mg:.4f}, relative {rel:.2e} (<= {a.late_tol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
