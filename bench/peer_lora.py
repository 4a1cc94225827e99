#!/usr/bin/python3
"""Peer for `ftune-train bench`: an eager PyTorch LoRA training loop of the
same shape, written the way a typical Python user would (nn.Module Llama,
PEFT-style LoRA wrappers on all linear projections, full-vocab logits +
F.cross_entropy, torch.optim.AdamW).

  /usr/bin/python3 bench/peer_lora.py [--dim 288 --layers 6 --heads 6
      --hidden 768 --vocab 32000 --seq 256 --batch 8 --rank 8 --steps 5
      --warmup 1 --threads 2 --bf16 0]

--bf16 1 runs forward and loss under torch.autocast("cpu", bfloat16), the
usual way to get bf16 matmuls in eager PyTorch (weights and AdamW in fp32).
--full 1 is an eager full fine-tune of the same shape instead: no LoRA
modules, every weight trainable (embedding, norms, projections, head), one
torch.optim.AdamW over all of them (the peer of `ftune-train bench --method
full`).

Last line: tokens_per_s=<number>.
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LoraLinear(nn.Module):
    def __init__(self, fin, fout, r, alpha):
        super().__init__()
        self.base = nn.Linear(fin, fout, bias=False)
        self.base.weight.requires_grad_(False)
        self.r = r
        if r == 0:  # full fine-tuning: the plain linear layer
            return
        self.lora_A = nn.Parameter(torch.empty(r, fin))
        self.lora_B = nn.Parameter(torch.zeros(fout, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / r

    def forward(self, x):
        if self.r == 0:
            return self.base(x)
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d), requires_grad=False)
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


class Block(nn.Module):
    def __init__(self, d, nh, ff, r, alpha):
        super().__init__()
        self.nh, self.hd = nh, d // nh
        self.q, self.k, self.v, self.o = (LoraLinear(d, d, r, alpha) for _ in range(4))
        self.gate, self.up = LoraLinear(d, ff, r, alpha), LoraLinear(d, ff, r, alpha)
        self.down = LoraLinear(ff, d, r, alpha)
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)

    def forward(self, x, cos, sin, mask):
        B, T, D = x.shape
        h = self.n1(x)
        q = self.q(h).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k(h).view(B, T, self.nh, self.hd).transpose(1, 2)
        v = self.v(h).view(B, T, self.nh, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd) + mask
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.o(y)
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.emb = nn.Embedding(a.vocab, a.dim)
        self.emb.weight.requires_grad_(False)
        self.blocks = nn.ModuleList(Block(a.dim, a.heads, a.hidden, a.rank, 2 * a.rank)
                                    for _ in range(a.layers))
        self.norm = RMSNorm(a.dim)
        self.head = nn.Linear(a.dim, a.vocab, bias=False)
        self.head.weight.requires_grad_(False)
        hd = a.dim // a.heads
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.arange(a.seq).float()[:, None] * inv[None]
        emb = torch.cat([ang, ang], -1)
        self.cos, self.sin = emb.cos(), emb.sin()
        self.mask = torch.full((a.seq, a.seq), float("-inf")).triu(1)

    def forward(self, ids, targets):
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x, self.cos, self.sin, self.mask)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def main():
    p = argparse.ArgumentParser()
    for n, d in [("dim", 288), ("layers", 6), ("heads", 6), ("hidden", 768),
                 ("vocab", 32000), ("seq", 256), ("batch", 8), ("rank", 8),
                 ("steps", 5), ("warmup", 1), ("threads", 2), ("bf16", 0),
                 ("full", 0)]:
        p.add_argument("--" + n, type=int, default=d)
    a = p.parse_args()
    if a.full:
        a.rank = 0
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = Model(a)
    with torch.no_grad():
        for prm in m.parameters():
            if not prm.requires_grad and prm.dim() == 2:
                prm.normal_(0, 0.02)
    if a.full:
        for prm in m.parameters():
            prm.requires_grad_(True)
    params = [q for q in m.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    data = torch.randint(0, a.vocab, (a.batch, a.seq + 1))
    ids, tgt = data[:, :-1], data[:, 1:]
    timed = 0.0
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(a.bf16)):
            loss = m(ids, tgt)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if s >= a.warmup:
            timed += dt
        print(f"step {s + 1} loss={loss.item():.4f} {dt:.3f}s", flush=True)
    print(f"tokens_per_s={a.batch * a.seq * a.steps / timed:.1f}")


if __name__ == "__main__":
    main()
