"""Interoperability of what `magna train` writes, read by the Python packages other people use.

  interop.py safetensors MAGNA ROOT TMP   a full-state checkpoint loads with `safetensors` (names, shapes, dtypes,
                                          metadata), and its weights, run in NumPy on the rows `magna predict` was
                                          given, reproduce magna's predictions for the housing MLP
  interop.py tensorboard MAGNA ROOT TMP   the TensorBoard event file reads back with tensorboard's
                                          EventAccumulator holding the same scalars, per epoch, as log.csv

Run by ctest (CMakeLists.txt) with .venv-interop's Python (scripts/interop-venv.sh)."""
import csv
import glob
import os
import shutil
import subprocess
import sys

import numpy as np

HOUSING = "/usr/lib/python3/dist-packages/sklearn/datasets/data/boston_house_prices.csv"
EPOCHS = 5


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print("ok: " + msg)


def train(magna, root, out):
    shutil.rmtree(out, ignore_errors=True)  # a fresh run: one event file, no older checkpoints
    r = subprocess.run([magna, "train", os.path.join(root, "models", "housing-mlp.ini"), "--epochs", str(EPOCHS),
                        "--threads", "1", "--out", out], capture_output=True, text=True)
    if r.returncode != 0:
        fail("magna train exited %d: %s" % (r.returncode, r.stderr))
    last = r.stdout.strip().splitlines()[-1]
    return dict(kv.split("=", 1) for kv in last.split() if "=" in kv)


def test_safetensors(magna, root, tmp):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    out = os.path.join(tmp, "st")
    kv = train(magna, root, out)
    step = int(kv["step"])
    ckpt = os.path.join(out, "checkpoints", "step-%09d.safetensors" % step)
    check(os.path.exists(ckpt), "the last checkpoint is %s" % ckpt)
    t = load_file(ckpt)
    with safe_open(ckpt, "np") as f:
        meta = f.metadata()
    weights = {"dense1.weight": (13, 64), "dense1.bias": (64,), "dense2.weight": (64, 1), "dense2.bias": (1,)}
    for name, shape in weights.items():
        check(name in t and t[name].shape == shape and t[name].dtype == np.float32,
              "%s is float32 %s (got %s)" % (name, shape, t[name].shape if name in t else "nothing"))
    n = sum(int(np.prod(s)) for s in weights.values())
    for name in ("optimizer.m", "optimizer.v"):  # Adam's moments over the flat (aligned) parameter buffer
        check(name in t and t[name].ndim == 1 and t[name].shape[0] >= n and t[name].dtype == np.float32,
              "%s: float32 [%d] over %d parameters" % (name, t[name].shape[0] if name in t else -1, n))
    check(np.all(t["optimizer.v"] >= 0) and np.any(t["optimizer.v"] > 0), "Adam's second moment is >= 0, not all 0")
    check(meta.get("magna_checkpoint") == "1" and meta.get("optimizer") == "adam" and meta.get("step") == str(step)
          and meta.get("epoch") == str(EPOCHS), "metadata: a checkpoint of adam at step %d, epoch %d" % (step, EPOCHS))
    with open(os.path.join(root, "models", "housing-mlp.ini")) as f:
        check(meta.get("model_file") == f.read(), "the model file's text is in the metadata")
    # the weights file (best epoch) holds the same names and shapes, nothing else
    w = load_file(os.path.join(out, "model.safetensors"))
    check(sorted(w) == sorted(weights) and all(w[k].shape == weights[k] for k in weights),
          "model.safetensors holds the four weights")

    # NumPy forward pass on the rows magna predict reads: standardised with the checkpoint's own statistics
    rows = os.path.join(tmp, "boston.csv")
    with open(HOUSING) as src, open(rows, "w") as dst:
        dst.writelines(src.readlines()[1:])  # scikit-learn's first line holds counts
    pred = os.path.join(tmp, "pred.csv")
    r = subprocess.run([magna, "predict", os.path.join(root, "models", "housing-mlp.ini"), "--weights", ckpt,
                        "--input", rows, "--output", pred], capture_output=True, text=True)
    if r.returncode != 0:
        fail("magna predict exited %d: %s" % (r.returncode, r.stderr))
    with open(rows) as f:
        table = list(csv.DictReader(f))
    cols = meta["standardise_columns"].split(",")
    mean = np.array([float(v) for v in meta["standardise_mean"].split()])
    sd = np.array([float(v) for v in meta["standardise_std"].split()])
    x = np.array([[float(row[c]) for c in cols] for row in table])
    x = ((x - mean) / np.where(sd > 0, sd, 1)).astype(np.float32)
    h = np.maximum(x @ t["dense1.weight"] + t["dense1.bias"], 0)
    y = (h @ t["dense2.weight"] + t["dense2.bias"])[:, 0]
    with open(pred) as f:
        got = np.array([float(row["MEDV"]) for row in csv.DictReader(f)])
    err = np.max(np.abs(got - y) / np.maximum(1, np.abs(y)))
    check(len(got) == len(y) == 506 and err < 1e-5, "NumPy reproduces magna's 506 predictions (worst %.2g)" % err)
    check(np.std(y) > 0.1, "the predictions are not constant (std %.3f)" % np.std(y))


def test_tensorboard(magna, root, tmp):
    from tensorboard.backend.event_processing import event_accumulator as ea

    out = os.path.join(tmp, "tb")
    train(magna, root, out)
    logs = os.path.join(out, "logs")
    check(len(glob.glob(os.path.join(logs, "events.out.tfevents.*"))) == 1, "one event file in %s" % logs)
    acc = ea.EventAccumulator(logs, size_guidance={ea.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    with open(os.path.join(logs, "log.csv")) as f:
        table = list(csv.DictReader(f))
    check(len(table) == EPOCHS, "log.csv has %d epochs" % EPOCHS)
    columns = [c for c in table[0] if c not in ("epoch", "step")]
    tag_of = {c: ("val/" + c[4:] if c.startswith("val_") else c if c == "lr" else "train/" + c) for c in columns}
    check(sorted(tags) == sorted(tag_of.values()), "the same scalars: %s" % ", ".join(sorted(tags)))
    for c, tag in tag_of.items():
        events = acc.Scalars(tag)
        check([e.step for e in events] == [int(r["epoch"]) for r in table], "%s: one value per epoch" % tag)
        want = np.array([float(r[c]) for r in table], dtype=np.float32)
        got = np.array([e.value for e in events], dtype=np.float32)
        check(np.allclose(got, want, rtol=1e-6, atol=0), "%s: the same values as log.csv %s" % (tag, got[:3]))


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("safetensors", "tensorboard"):
        sys.exit(__doc__)
    mode, magna, root, tmp = sys.argv[1:]
    os.makedirs(tmp, exist_ok=True)
    (test_safetensors if mode == "safetensors" else test_tensorboard)(magna, root, tmp)
    print("interop %s: passed" % mode)


if __name__ == "__main__":
    main()
