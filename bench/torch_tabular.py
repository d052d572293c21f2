#!/usr/bin/env python3
"""torch_tabular.py - the training loops of examples/housing.c and examples/digits.c in PyTorch.

    python3 bench/torch_tabular.py run --label NAME --json FILE \
        --housing-split build/housing_split.json --digits-split build/digits_split.json [--repeats 3]
    python3 bench/torch_tabular.py join --magna-housing F1 [F2 ...] --magna-digits F1 [F2 ...] \
        --peer torch-debian=FILE.json --peer torch-pip=FILE.json

`run` trains, on the very rows magna used (the split files written by `build/housing --dump-split FILE` and
`build/digits --dump-split FILE`, read from the same CSV files with Python's csv and gzip modules):
  housing  13 -> 64 (relu) -> 1, MSE, Adam 1e-3, batch 32, 200 epochs, features standardised with the
           training rows' mean and population std, as magna's standardizer;
  digits   64 -> 128 (relu) -> 64 (relu) -> 10, cross-entropy, Adam 1e-3, batch 32, 30 epochs, pixels / 16.
Timed: the training loop only, per epoch (data already in tensors). The loop is what a careful user writes
without a DataLoader: a torch.randperm per epoch, index the batch, zero_grad(set_to_none=True), forward,
loss, backward, step, and the epoch's mean loss accumulated with loss.item() (magna's fit keeps the same
running loss). Each configuration is run --repeats times from fresh weights; the figure kept is the median
run's total training time over its epochs. The same loop with torch.utils.data.DataLoader (TensorDataset,
shuffle=True, batch_size=32) is timed once as well, for reference. Threads: MAGNA_THREADS (default 2), as
magna. Weight init is PyTorch's default (it differs from magna's He/Glorot uniform; the result is reported
for each).

`join` reads magna's example outputs (their last line of key=value results) and the peers' JSON and prints
the table in Markdown.
"""
import argparse
import csv
import gzip
import json
import os
import statistics
import sys
import time
import warnings

THREADS = int(os.environ.get("MAGNA_THREADS", "2"))


def read_rows(path, skip_lines, header):
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with opener(path, "rt", newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    rows = rows[skip_lines + (1 if header else 0):]
    return [[float(c) for c in r] for r in rows]


def load_split(path):
    with open(path) as f:
        s = json.load(f)
    return s["file"], s["train"], s["test"]


def housing_data(torch, split):
    path, tr, te = load_split(split)
    rows = read_rows(path, 1, True)
    x = torch.tensor([r[:13] for r in rows], dtype=torch.float64)
    y = torch.tensor([[r[13]] for r in rows], dtype=torch.float64)
    tr, te = torch.tensor(tr), torch.tensor(te)
    mean = x[tr].mean(0)
    std = x[tr].std(0, unbiased=False)
    std[std == 0] = 1
    x = ((x - mean) / std).float()
    y = y.float()
    return x[tr].contiguous(), y[tr].contiguous(), x[te].contiguous(), y[te].contiguous()


def digits_data(torch, split):
    path, tr, te = load_split(split)
    rows = read_rows(path, 0, False)
    x = torch.tensor([r[:64] for r in rows], dtype=torch.float32) / 16
    y = torch.tensor([int(r[64]) for r in rows], dtype=torch.int64)
    tr, te = torch.tensor(tr), torch.tensor(te)
    return x[tr].contiguous(), y[tr].contiguous(), x[te].contiguous(), y[te].contiguous()


def train(torch, model, loss_fn, x, y, epochs, batch, seed, dataloader=False):
    """Returns the per-epoch seconds of the training loop."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = x.shape[0]
    gen = torch.Generator().manual_seed(seed)
    times = []
    if dataloader:
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch, shuffle=True,
                                             generator=gen)
    for _ in range(epochs):
        t0 = time.perf_counter()
        total = 0.0
        if dataloader:
            for xb, yb in loader:
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                total += loss.item() * xb.shape[0]
        else:
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, batch):
                idx = perm[i:i + batch]
                xb, yb = x[idx], y[idx]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                total += loss.item() * idx.shape[0]
        times.append(time.perf_counter() - t0)
    return times


def run_task(torch, task, data, epochs, repeats, seed, dataloader):
    nn = torch.nn
    x, y, xt, yt = data

    def make():
        if task == "housing":
            return nn.Sequential(nn.Linear(13, 64), nn.ReLU(), nn.Linear(64, 1)), nn.MSELoss()
        return (nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)),
                nn.CrossEntropyLoss())

    def score(model):
        with torch.no_grad():
            out = model(xt)
        if task == "housing":
            return {"test_rmse": float(((out - yt) ** 2).mean().sqrt())}
        return {"test_acc": float((out.argmax(1) == yt).float().mean())}

    torch.manual_seed(seed) # warm-up: a few epochs first, so one-time costs (lazy init, allocator) are not timed
    model, loss_fn = make()
    train(torch, model, loss_fn, x, y, 3, 32, seed)
    runs = []
    for r in range(repeats):
        torch.manual_seed(seed + r)
        model, loss_fn = make()
        times = train(torch, model, loss_fn, x, y, epochs, 32, seed + r)
        runs.append({"seconds": sum(times), "median_epoch_ms": 1e3 * statistics.median(times), **score(model)})
    mid = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    result = {
        "epochs": epochs,
        "ms_per_epoch": 1e3 * mid["seconds"] / epochs,
        "median_epoch_ms": mid["median_epoch_ms"],
        "runs": runs,
        **{k: v for k, v in mid.items() if k.startswith("test_")},
        "test_all": [v for r in runs for k, v in r.items() if k.startswith("test_")],
    }
    if dataloader:
        torch.manual_seed(seed)
        model, loss_fn = make()
        dl_times = train(torch, model, loss_fn, x, y, epochs, 32, seed, dataloader=True)
        result["dataloader_ms_per_epoch"] = 1e3 * sum(dl_times) / epochs
        result["dataloader"] = score(model)
    return result


def cmd_run(a):
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    import torch
    torch.set_num_threads(THREADS)
    out = {"label": a.label, "torch": torch.__version__, "threads": THREADS,
           "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "")}
    if a.housing_split:
        out["housing"] = run_task(torch, "housing", housing_data(torch, a.housing_split), a.housing_epochs,
                                  a.repeats, a.seed, not a.no_dataloader)
    if a.digits_split:
        out["digits"] = run_task(torch, "digits", digits_data(torch, a.digits_split), a.digits_epochs, a.repeats,
                                 a.seed, not a.no_dataloader)
    for task in ("housing", "digits"):
        if task in out:
            r = out[task]
            metric = "test_rmse" if task == "housing" else "test_acc"
            dl = f"; DataLoader {r['dataloader_ms_per_epoch']:.3f}" if "dataloader_ms_per_epoch" in r else ""
            print(f"{a.label} {task}: {r['ms_per_epoch']:.3f} ms/epoch (median run of {a.repeats}{dl}), {metric} "
                  + " ".join(f"{v:.4f}" for v in r["test_all"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


def last_line(path):
    with open(path) as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    return dict(kv.split("=", 1) for kv in lines[-1].split() if "=" in kv)


def cmd_join(a):
    peers = []
    for p in a.peers:
        label, _, path = p.partition("=")
        try:
            with open(path) as f:
                peers.append((label, json.load(f)))
        except (OSError, ValueError):
            peers.append((label, None))
    magna = {"housing": [last_line(p) for p in a.magna_housing], "digits": [last_line(p) for p in a.magna_digits]}
    head = ["task", "magna ms/epoch"] + [f"{lb} ms/epoch" for lb, _ in peers] + ["magna speed / best peer"]
    head += ["magna test"] + [f"{lb} test" for lb, _ in peers]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for task, metric, key in (("housing", "RMSE", "test_rmse"), ("digits", "acc", "test_acc")):
        runs = magna[task]
        if not runs:
            continue
        ms = statistics.median(float(r["ms_per_epoch"]) for r in runs)
        epochs = runs[0]["epochs"]
        row = [f"{task} ({epochs} epochs)", f"{ms:.3f}"]
        best = None
        tests = [f"{metric} {float(runs[0][key]):.3f}"]
        for _, js in peers:
            r = js.get(task) if js else None
            if r:
                row.append(f"{r['ms_per_epoch']:.3f}")
                best = r["ms_per_epoch"] if best is None else min(best, r["ms_per_epoch"])
                tests.append(f"{metric} " + "/".join(f"{v:.3f}" for v in r["test_all"]))
            else:
                row.append("—")
                tests.append("—")
        row.append(f"{best / ms:.2f}×" if best else "—")
        print("| " + " | ".join(row + tests) + " |")
    print()
    print("With torch.utils.data.DataLoader instead of manual batching (one run each), ms/epoch: " + "; ".join(
        f"{lb} " + ", ".join(f"{t} {js[t]['dataloader_ms_per_epoch']:.3f}" for t in ("housing", "digits")
                             if "dataloader_ms_per_epoch" in js.get(t, {}))
        for lb, js in peers if js))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--label", default="torch")
    r.add_argument("--json")
    r.add_argument("--housing-split")
    r.add_argument("--digits-split")
    r.add_argument("--housing-epochs", type=int, default=200)
    r.add_argument("--digits-epochs", type=int, default=30)
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--seed", type=int, default=42, help="torch's seed for the first run (then +1, +2, ...)")
    r.add_argument("--no-dataloader", action="store_true", help="skip the DataLoader run")
    j = sub.add_parser("join")
    j.add_argument("--magna-housing", nargs="*", default=[])
    j.add_argument("--magna-digits", nargs="*", default=[])
    j.add_argument("--peer", dest="peers", action="append", default=[], help="LABEL=FILE.json (repeatable)")
    a = ap.parse_args()
    return cmd_run(a) if a.cmd == "run" else cmd_join(a)


if __name__ == "__main__":
    sys.exit(main())
