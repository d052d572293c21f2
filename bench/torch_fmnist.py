#!/usr/bin/env python3
"""torch_fmnist.py - the training loops of examples/fmnist_mlp.c and examples/fmnist_cnn.c in PyTorch.

    python3 bench/torch_fmnist.py --model mlp|cnn [--epochs N] [--bf16] [--label NAME] [--seed S]
                                  [--data DIR] [--limit N]

Reads Fashion-MNIST from the IDX files (gzip) with Python's gzip module and torch.frombuffer (no numpy:
pip's torch in .venv has none), pixels / 255, and trains the seed's models with magna's settings:
  mlp  784 -> 128 (relu) -> 64 (relu) -> 10, Adam 1e-3, batch 64 (5 epochs for the accuracy figure)
  cnn  conv 32 (3x3, pad 1) relu, max pool 2, conv 64 relu, max pool 2, conv 128 relu, max pool 2 (7 -> 3),
       flatten 1152, dense 512 relu, dense 10; Adam 1e-3, batch 64 (3 epochs for the accuracy figure)
on 55000 training images (a seeded 5000 of the 60k held out, as magna does; torch's own generator, so not
the same 5000) and reports the test accuracy on the 10k test images.

Timed: the training loop only, per epoch (data already in tensors, no validation pass). The loop is what a
careful user writes without a DataLoader: a torch.randperm per epoch, index the batch, zero_grad(set_to_none=
True), forward, loss, backward, step, and the epoch's mean loss accumulated with loss.item() (magna's fit
keeps the same running loss). --bf16 runs forward and loss under torch.autocast("cpu", dtype=torch.bfloat16)
(inputs stay float32; the casts are part of the timed work, as for a user). Threads: MAGNA_THREADS (default
2), as magna. Weight init is PyTorch's default (magna uses He init for ReLU layers).

The last line is key=value results, as magna's examples print:
    label=... model=... test_acc=... samples_per_s=... seconds=... epochs=... threads=... torch=...
"""
import argparse
import gzip
import os
import struct
import sys
import time

THREADS = int(os.environ.get("MAGNA_THREADS", "2"))
DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(torch, path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        sys.exit(f"{path}: not a ubyte IDX file")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = torch.frombuffer(bytearray(raw[4 + 4 * ndim:]), dtype=torch.uint8)
    count = 1
    for d in dims:
        count *= d
    if data.numel() != count:
        sys.exit(f"{path}: {data.numel()} bytes of data, the header's dims {dims} need {count}")
    return data.reshape(dims)


def load(torch, data_dir, part):
    x = read_idx(torch, f"{data_dir}/{part}-images-idx3-ubyte.gz").float().div_(255).unsqueeze(1)
    y = read_idx(torch, f"{data_dir}/{part}-labels-idx1-ubyte.gz").long()
    return x.contiguous(), y.contiguous()


def build(torch, kind):
    nn = torch.nn
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                             nn.Linear(64, 10))
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(1152, 512), nn.ReLU(), nn.Linear(512, 10))


def accuracy(torch, model, x, y, bf16):
    model.eval()
    correct = 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, x.shape[0], 1000):
            correct += (model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum().item()
    model.train()
    return correct / x.shape[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["mlp", "cnn"], required=True)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--label", default="torch")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N training images only")
    a = ap.parse_args()

    import torch
    torch.set_num_threads(THREADS)
    torch.manual_seed(a.seed)
    print(f"{a.label}: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'bf16 autocast' if a.bf16 else 'float32'}, {a.model}", flush=True)
    x_all, y_all = load(torch, a.data, "train")
    x_test, y_test = load(torch, a.data, "t10k")
    perm = torch.randperm(x_all.shape[0], generator=torch.Generator().manual_seed(a.seed))
    train_idx, val_idx = perm[:-5000], perm[-5000:]
    x, y = x_all[train_idx].contiguous(), y_all[train_idx].contiguous()
    x_val, y_val = x_all[val_idx].contiguous(), y_all[val_idx].contiguous()
    if a.limit:
        x, y = x[:a.limit], y[:a.limit]

    model = build(torch, a.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(a.seed)
    n, batch, total = x.shape[0], 64, 0.0
    for epoch in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        loss_sum = 0.0
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            loss_sum += loss.item() * idx.shape[0]
        seconds = time.perf_counter() - t0
        total += seconds
        val_acc = accuracy(torch, model, x_val, y_val, a.bf16)
        print(f"epoch {epoch}/{a.epochs}  {seconds:.2f} s ({n / seconds:.0f} samples/s)  train loss "
              f"{loss_sum / n:.4f} | val accuracy {val_acc:.4f}", flush=True)
    test_acc = accuracy(torch, model, x_test, y_test, a.bf16)
    print(f"label={a.label} model={a.model} precision={'bf16' if a.bf16 else 'f32'} test_acc={test_acc:.4f} "
          f"samples_per_s={n * a.epochs / total:.0f} seconds={total:.3f} epochs={a.epochs} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")


if __name__ == "__main__":
    main()
