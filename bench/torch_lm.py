#!/usr/bin/env python3
"""torch_lm.py - the character language models of examples/char_lstm.c and examples/char_gpt.c in PyTorch.

    python3 bench/torch_lm.py --model lstm|gpt [--steps N] [--bf16] [--label NAME] [--seed S]
                              [--corpus PATH] [--eval-windows N]

The corpus is read as magna reads it: a file, or a folder's plain regular files sorted by name (no .dat
files, no symbolic links, no sub-folders), concatenated as bytes; /usr/share/games/fortunes by default.
Characters are Unicode code points from UTF-8, a byte that is not valid UTF-8 being a character of its own
(Python's surrogateescape), as magna's character tokenizer reads them; the vocabulary is the characters of
the training part plus <unk> for characters only the validation part has. Split 90/10 by position (the cut
moved past UTF-8 continuation bytes, as magna does). Training: random windows of 128 + 1
tokens, batch 32, the issue's settings:
  lstm  embedding 64 -> LSTM 256 -> linear to the vocabulary; Adam 2e-3
  gpt   GPT-2 style: 4 pre-LN blocks, 4 heads, d 128, MLP 512 (exact GELU), learned positions, tied
        embeddings, init N(0, 0.02) with residual projections / sqrt(2 * layers); AdamW 1e-3, wd 0.1 (on
        every parameter, as AdamW(model.parameters()) does and magna does)
Validation loss: mean cross-entropy in nats per character over consecutive non-overlapping windows of
the validation part (all of them, or the first --eval-windows), each starting from a zero state.

Timed: the training steps only (the data is already a tensor). Threads: MAGNA_THREADS (default 2).
The last line is key=value results, as magna's examples print:
    label=... model=... val_loss=... tokens_per_s=... seconds=... steps=... threads=... torch=...
"""
import argparse
import math
import os
import sys
import time

THREADS = int(os.environ.get("MAGNA_THREADS", "2"))
CORPUS = "/usr/share/games/fortunes"
T, B = 128, 32


def read_corpus(path):
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read()
    parts = []
    for name in sorted(os.listdir(path)):
        p = os.path.join(path, name)
        if name.endswith(".dat") or os.path.islink(p) or not os.path.isfile(p):
            continue
        with open(p, "rb") as f:
            parts.append(f.read())
    return b"".join(parts)


def build(torch, kind, vocab):
    nn = torch.nn
    F = torch.nn.functional
    if kind == "lstm":
        class CharLSTM(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(vocab, 64)
                self.lstm = nn.LSTM(64, 256, batch_first=True)
                self.head = nn.Linear(256, vocab)

            def forward(self, x):
                h, _ = self.lstm(self.emb(x))
                return self.head(h)
        return CharLSTM()

    D, H, L = 128, 4, 4

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
            self.q, self.k, self.v, self.out = (nn.Linear(D, D) for _ in range(4))
            self.fc, self.proj = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)
            self.register_buffer("mask", torch.ones(T, T, dtype=torch.bool).tril(), persistent=False)

        def attend(self, x):
            b, t, _ = x.shape
            q, k, v = (m(x).view(b, t, H, D // H).transpose(1, 2) for m in (self.q, self.k, self.v))
            if hasattr(F, "scaled_dot_product_attention"):
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:  # torch 1.13
                s = (q @ k.transpose(-2, -1)) / math.sqrt(D // H)
                y = s.masked_fill(~self.mask[:t, :t], float("-inf")).softmax(-1) @ v
            return self.out(y.transpose(1, 2).reshape(b, t, D))

        def forward(self, x):
            x = x + self.attend(self.ln1(x))
            return x + self.proj(F.gelu(self.fc(self.ln2(x))))

    class CharGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(vocab, D)
            self.wpe = nn.Embedding(T, D)
            self.blocks = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(D)
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    nn.init.zeros_(p)
                elif p.dim() == 2:
                    std = 0.02 / math.sqrt(2 * L) if name.endswith(("out.weight", "proj.weight")) else 0.02
                    nn.init.normal_(p, 0.0, std)

        def forward(self, x):
            pos = torch.arange(x.shape[1], device=x.device)
            h = self.wte(x) + self.wpe(pos)
            for blk in self.blocks:
                h = blk(h)
            return self.ln_f(h) @ self.wte.weight.t()
    return CharGPT()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("lstm", "gpt"), required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--label", default="torch")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--corpus", default=CORPUS)
    ap.add_argument("--eval-windows", type=int, default=0)
    a = ap.parse_args()
    import torch
    torch.set_num_threads(THREADS)
    torch.manual_seed(a.seed)
    data = read_corpus(a.corpus)
    if not data:
        sys.exit(f"{a.corpus}: empty corpus")
    cut = len(data) - round(len(data) * 0.1)
    while cut < len(data) and (data[cut] & 0xC0) == 0x80:
        cut += 1
    train_text = data[:cut].decode("utf-8", "surrogateescape")
    val_text = data[cut:].decode("utf-8", "surrogateescape")
    chars = sorted(set(train_text))
    index = {c: i for i, c in enumerate(chars)}
    vocab = len(chars) + 1  # the last id is <unk>: characters the training part lacks
    train = torch.tensor([index[c] for c in train_text], dtype=torch.long)
    val = torch.tensor([index.get(c, vocab - 1) for c in val_text], dtype=torch.long)
    model = build(torch, a.model, vocab)
    if a.model == "lstm":
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    loss_fn = torch.nn.functional.cross_entropy
    offsets = torch.arange(T + 1)
    model.train()
    t0 = time.perf_counter()
    for step in range(a.steps):
        starts = torch.randint(0, len(train) - T - 1, (B,))
        w = train[starts.unsqueeze(1) + offsets]
        x, y = w[:, :-1], w[:, 1:]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            logits = model(x)
            loss = loss_fn(logits.float().reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == a.steps - 1:
            print(f"step {step:5d} loss {loss.item():.4f}", flush=True)
    seconds = time.perf_counter() - t0
    model.eval()
    n = (len(val) - 1) // T
    if a.eval_windows:
        n = min(n, a.eval_windows)
    total, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, n, B):
            rows = torch.arange(s, min(n, s + B))
            w = val[(rows * T).unsqueeze(1) + offsets]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                logits = model(w[:, :-1]).float()
            total += loss_fn(logits.reshape(-1, vocab), w[:, 1:].reshape(-1), reduction="sum").item()
            count += w[:, 1:].numel()
    print(f"label={a.label} model=char-{a.model} val_loss={total / count:.4f} "
          f"tokens_per_s={a.steps * B * T / seconds:.0f} seconds={seconds:.2f} steps={a.steps} "
          f"threads={THREADS} torch={torch.__version__}")


if __name__ == "__main__":
    main()
