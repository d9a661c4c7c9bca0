# The GPT of section 11.3 in PyTorch, nanoGPT-style, for `dlbook bench --name gpt_speed`
# to time side by side with the from-scratch model: the same sizes, pre-LN without
# biases, GELU MLP x4, tied embeddings, causal scaled dot-product attention, AdamW
# (0.9, 0.99), weight decay 0.1 on matrices, clip 1.0, no dropout.
# Arguments: threads steps text_file n_layers n_heads d_model seq_len batch.
# Prints one line: tokens_per_s <x> cpu_ms_per_1k <y> params <n>.
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

threads, steps, path, L, H, D, T, B = sys.argv[1:9]
threads, steps, L, H, D, T, B = map(int, (threads, steps, L, H, D, T, B))
torch.set_num_threads(threads)
torch.manual_seed(0)
text = open(path, encoding="utf-8").read()
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
train = data[: int(0.9 * len(data))]
V = len(chars)


class Block(nn.Module):
    def __init__(s):
        super().__init__()
        s.ln1 = nn.LayerNorm(D, bias=False)
        s.ln2 = nn.LayerNorm(D, bias=False)
        s.qkv = nn.Linear(D, 3 * D, bias=False)
        s.proj = nn.Linear(D, D, bias=False)
        s.fc = nn.Linear(D, 4 * D, bias=False)
        s.fc2 = nn.Linear(4 * D, D, bias=False)

    def forward(s, x):
        b, t, d = x.shape
        q, k, v = s.qkv(s.ln1(x)).split(D, dim=2)
        q, k, v = [z.view(b, t, H, D // H).transpose(1, 2) for z in (q, k, v)]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + s.proj(y.transpose(1, 2).contiguous().view(b, t, d))
        return x + s.fc2(F.gelu(s.fc(s.ln2(x))))


class GPT(nn.Module):
    def __init__(s):
        super().__init__()
        s.wte = nn.Embedding(V, D)
        s.wpe = nn.Embedding(T, D)
        s.blocks = nn.ModuleList([Block() for _ in range(L)])
        s.lnf = nn.LayerNorm(D, bias=False)
        s.head = nn.Linear(D, V, bias=False)
        s.head.weight = s.wte.weight

    def forward(s, idx, y):
        x = s.wte(idx) + s.wpe(torch.arange(idx.shape[1]))
        for blk in s.blocks:
            x = blk(x)
        return F.cross_entropy(s.head(s.lnf(x)).view(-1, V), y.view(-1))


m = GPT()
decay = [p for p in m.parameters() if p.dim() >= 2]
rest = [p for p in m.parameters() if p.dim() < 2]
opt = torch.optim.AdamW(
    [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
    lr=1e-3,
    betas=(0.9, 0.99),
)


def step():
    ix = torch.randint(len(train) - T - 1, (B,))
    x = torch.stack([train[i : i + T] for i in ix])
    y = torch.stack([train[i + 1 : i + T + 1] for i in ix])
    loss = m(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()


step()
t, c = time.perf_counter(), time.process_time()
for _ in range(steps):
    step()
wall, cpu = time.perf_counter() - t, time.process_time() - c
tokens = steps * B * T
params = sum(p.numel() for p in m.parameters())
print(f"tokens_per_s {tokens / wall} cpu_ms_per_1k {1e6 * cpu / tokens} params {params}")
