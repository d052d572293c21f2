#!/usr/bin/env python3
"""join_kernels.py - one table from bench_kernels.c's JSON and any torch_kernels.py JSONs.

    python3 bench/join_kernels.py MAGNA.json [LABEL=TORCH.json ...]

Prints a Markdown table: config | magna GFLOP/s | magna ms | each peer's GFLOP/s in float32 and bf16
(autocast) | magna / best | magna / best f32. A peer that is missing (not installed, no bf16 on this CPU)
shows "—". Ratios are of speeds, so above 1 means magna is faster; every figure is a median from the same
run on the same machine. Needs only the standard library.
"""
import json
import sys

DASH = "\u2014"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        magna = json.load(f)
    peers = []  # (label, {precision: {key: row}} or None when absent)
    for arg in sys.argv[2:]:
        label, _, path = arg.partition("=")
        try:
            with open(path) as f:
                data = json.load(f)
            peers.append((label, {p: {r["key"]: r for r in rows} for p, rows in data["results"].items()}))
        except (OSError, ValueError, KeyError):
            peers.append((label, None))

    cols = [(label, prec) for label, _ in peers for prec in ("f32", "bf16")]
    head = ["config", "magna GFLOP/s", "magna ms"] + [f"{label} {prec}" for label, prec in cols]
    head += ["magna / best", "magna / best f32"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for r in magna["results"]:
        gf = r["flops"] / r["ms"] * 1e-6
        cells = [r["key"], f"{gf:.1f}", f"{r['ms']:.3f}"]
        best = best_f32 = 0.0
        for label, prec in cols:
            res = dict(peers)[label]
            row = res.get(prec, {}).get(r["peer"]) if res else None
            if row is None:
                cells.append(DASH)
                continue
            # Speed from the peer's time and magna's flop count: both count the same work.
            pg = r["flops"] / row["ms"] * 1e-6
            cells.append(f"{pg:.1f}")
            best = max(best, pg)
            if prec == "f32":
                best_f32 = max(best_f32, pg)
        cells.append(f"{gf / best:.2f}" if best else DASH)
        cells.append(f"{gf / best_f32:.2f}" if best_f32 else DASH)
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
