#!/usr/bin/python3
"""Independent float64 forward of a Llama / Mistral / Qwen2 HF model directory.

  reference_forward.py --model DIR --batch batch.json --out out.json

batch.json: {"rows": [{"input_ids","labels","position_ids","segment_ids"}]}
(PackedSequence rows). Each packed example is cut out of its row and run on
its own (so packing correctness is checked, not assumed), with a plain
causal mask. out.json: {"loss": mean CE over labels != -100,
"logits": [row][token][vocab]}.

Written from the architecture description (RMSNorm, rotate-half RoPE with
optional Llama-3 frequency scaling, GQA, SwiGLU), not from the C++ code.
"""
import argparse
import glob
import json
import math
import os

import torch

import st_io

D = torch.float64


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) \
        if os.path.exists(index) else \
        [os.path.basename(p) for p in glob.glob(os.path.join(model_dir, "*.safetensors"))]
    w = {}
    for f in files:
        w.update(st_io.load(os.path.join(model_dir, f)))
    return {k: v.to(D) for k, v in w.items()}


def inv_frequencies(cfg, hd):
    theta = cfg.get("rope_theta", 10000.0)
    freqs = [1.0 / theta ** (2 * i / hd) for i in range(hd // 2)]
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        scaled = []
        for f in freqs:
            wl = 2 * math.pi / f
            if wl < old / hi:
                scaled.append(f)
            elif wl > old / lo:
                scaled.append(f / factor)
            else:
                s = (old / wl - lo) / (hi - lo)
                scaled.append((1 - s) * f / factor + s * f)
        freqs = scaled
    return torch.tensor(freqs, dtype=D)


def rms(x, w, eps):
    return w * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def rope(x, pos, inv):
    # x: [heads, T, hd]; rotate pairs (i, i + hd/2).
    half = x.shape[-1] // 2
    ang = pos.to(D)[:, None] * inv[None, :]          # [T, hd/2]
    c, s = torch.cos(ang), torch.sin(ang)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def forward_example(cfg, w, ids, pos):
    d = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim", d // nh)
    eps = cfg.get("rms_norm_eps", 1e-6)
    inv = inv_frequencies(cfg, hd)
    T = len(ids)
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    pos = torch.tensor(pos)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."

        def proj(name, inp):
            y = inp @ w[p + name + ".weight"].T
            b = w.get(p + name + ".bias")
            return y + b if b is not None else y

        h = rms(x, w[p + "input_layernorm.weight"], eps)
        q = proj("self_attn.q_proj", h).reshape(T, nh, hd).transpose(0, 1)
        k = proj("self_attn.k_proj", h).reshape(T, nkv, hd).transpose(0, 1)
        v = proj("self_attn.v_proj", h).reshape(T, nkv, hd).transpose(0, 1)
        q, k = rope(q, pos, inv), rope(k, pos, inv)
        out = torch.zeros(nh, T, hd, dtype=D)
        for head in range(nh):
            g = head // (nh // nkv)
            sc = (q[head] @ k[g].T) / math.sqrt(hd)
            sc = sc.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), -math.inf)
            out[head] = torch.softmax(sc, -1) @ v[g]
        x = x + proj("self_attn.o_proj", out.transpose(0, 1).reshape(T, nh * hd))
        h = rms(x, w[p + "post_attention_layernorm.weight"], eps)
        gate, up = proj("mlp.gate_proj", h), proj("mlp.up_proj", h)
        x = x + proj("mlp.down_proj", gate * torch.sigmoid(gate) * up)
    x = rms(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") \
        else w["lm_head.weight"]
    return x @ head.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    w = load_weights(a.model)
    rows = json.load(open(a.batch))["rows"]
    all_logits, total, count = [], 0.0, 0
    for r in rows:
        n = len(r["input_ids"])
        logits = torch.zeros(n, cfg["vocab_size"], dtype=D)
        start = 0
        while start < n:
            end = start
            while end < n and r["segment_ids"][end] == r["segment_ids"][start]:
                end += 1
            logits[start:end] = forward_example(
                cfg, w, r["input_ids"][start:end], r["position_ids"][start:end])
            start = end
        for t, lab in enumerate(r["labels"]):
            if lab != -100:
                total += float(torch.logsumexp(logits[t], 0) - logits[t, lab])
                count += 1
        all_logits.append(logits.tolist())
    json.dump({"loss": total / max(count, 1), "logits": all_logits}, open(a.out, "w"))


if __name__ == "__main__":
    main()
