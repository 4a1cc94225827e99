#!/usr/bin/python3
"""Sanity check that the demo base model is fine-tunable: a small LoRA run in
plain PyTorch on the Debian "describe package" data set, reporting the mean
completion loss on the held-out file before and after.

This is a reference point for the C++ trainer (same data, same loss
definition: cross-entropy on completion tokens + </s> only), not part of ftune.
Tokenization: ids(prompt + completion) with the prompt's ids as prefix
(BOS first); the completion's tokens and EOS carry the loss.
"""

import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import check_model  # noqa: E402
import pretrain_llama  # noqa: E402

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def load_examples(path, sp, max_len, limit):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            ex = json.loads(line)
            p_ids = [sp.bos_id()] + sp.encode(ex["prompt"])
            full = [sp.bos_id()] + sp.encode(ex["prompt"] + ex["completion"]) + [sp.eos_id()]
            if full[:len(p_ids)] != p_ids:
                raise ValueError(f"{path}: prompt ids are not a prefix for {ex['prompt']!r}")
            full = full[:max_len]
            if len(full) <= len(p_ids):
                continue
            out.append((full, len(p_ids)))
            if len(out) == limit:
                break
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dir")
    ap.add_argument("data_dir")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--eval-examples", type=int, default=40)
    ap.add_argument("--max-len", type=int, default=192)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(2)
    import sentencepiece as spm

    m = check_model.Llama64(a.model_dir)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(a.model_dir, "tokenizer.model"))
    base = {k: v.float() for k, v in m.w.items()}

    class C:
        pass

    c = C()
    c.vocab, c.dim, c.layers, c.heads, c.kv_heads = m.vocab, m.dim, m.n_layers, m.n_heads, m.n_kv
    c.hidden, c.head_dim, c.max_seq, c.eps, c.theta = m.cfg["intermediate_size"], m.hd, 0, m.eps, m.theta

    lora = {}
    for name, w in base.items():
        if name.endswith(".weight") and name.split(".")[-2] in TARGETS:
            A = torch.empty(a.rank, w.shape[1])
            torch.nn.init.kaiming_uniform_(A, a=math.sqrt(5))
            lora[name] = (A.requires_grad_(), torch.zeros(w.shape[0], a.rank, requires_grad=True))
    scale = a.alpha / a.rank

    def params():
        p = dict(base)
        for name, (A, B) in lora.items():
            p[name] = base[name] + scale * (B @ A)
        return p

    def ex_loss(p, ids, n_prompt):
        lg = pretrain_llama.forward(p, c, torch.tensor([ids]))[0]
        return F.cross_entropy(lg[n_prompt - 1:-1], torch.tensor(ids[n_prompt:]), reduction="sum"), len(ids) - n_prompt

    def evaluate(exs):
        with torch.no_grad():
            p = params()
            tot = cnt = 0
            for ids, n in exs:
                s, k = ex_loss(p, ids, n)
                tot, cnt = tot + s.item(), cnt + k
        return tot / cnt

    train = load_examples(os.path.join(a.data_dir, "train.jsonl"), sp, a.max_len, a.steps * a.batch)
    held = load_examples(os.path.join(a.data_dir, "eval.jsonl"), sp, a.max_len, a.eval_examples)
    before = evaluate(held)
    print(f"held-out completion loss before LoRA: {before:.4f} ({len(held)} examples)", flush=True)
    opt = torch.optim.AdamW([t for AB in lora.values() for t in AB], lr=a.lr, weight_decay=0.0)
    for step in range(a.steps):
        batch = train[step * a.batch:(step + 1) * a.batch]
        if not batch:
            break
        p = params()
        tot = cnt = 0
        for ids, n in batch:
            s, k = ex_loss(p, ids, n)
            tot, cnt = tot + s, cnt + k
        loss = tot / cnt
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 5 == 0:
            print(f"step {step} train loss {loss.item():.4f}", flush=True)
    after = evaluate(held)
    print(f"held-out completion loss after {a.steps} LoRA steps: {after:.4f} (before {before:.4f})")
    return 0 if after < before else 1


if __name__ == "__main__":
    sys.exit(main())
