"""torch_char_lstm.py — PyTorch's training step of the character LSTM bench_rnn's `char` mode times:
vocabulary 65, embedding 64, nn.LSTM 256 (batch_first), Linear head, cross-entropy, Adam, float32.

    python3 bench/torch_char_lstm.py [--threads 2] [--reps 5]

Prints tokens/s of the median step after two warm-up steps, like build/bench_rnn char."""
import argparse
import time

import torch

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--reps", type=int, default=5)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--context", type=int, default=128)
p.add_argument("--embed", type=int, default=64)
p.add_argument("--hidden", type=int, default=256)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1)
V = 65


class CharLSTM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(V, a.embed)
        self.lstm = torch.nn.LSTM(a.embed, a.hidden, batch_first=True)
        self.head = torch.nn.Linear(a.hidden, V)

    def forward(self, x):
        h, _ = self.lstm(self.emb(x))
        return self.head(h)


m = CharLSTM()
opt = torch.optim.Adam(m.parameters(), lr=1e-3)
x = torch.randint(0, V, (a.batch, a.context))
y = torch.randint(0, V, (a.batch, a.context))


def step():
    opt.zero_grad(set_to_none=False)
    loss = torch.nn.functional.cross_entropy(m(x).reshape(-1, V), y.reshape(-1))
    loss.backward()
    opt.step()
    return loss.item()


for _ in range(2):
    step()
times = []
for _ in range(a.reps):
    t0 = time.perf_counter()
    loss = step()
    times.append(time.perf_counter() - t0)
times.sort()
ms = 1e3 * times[len(times) // 2]
print(f"torch {torch.__version__} char lstm V={V} B={a.batch} T={a.context} E={a.embed} H={a.hidden} "
      f"threads={a.threads}: training step {ms:.2f} ms, {a.batch * a.context / (ms * 1e-3):.0f} tokens/s; "
      f"median of {a.reps} (loss {loss:.4f})")
