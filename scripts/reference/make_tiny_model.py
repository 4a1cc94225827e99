#!/usr/bin/python3
"""Writes a tiny random Hugging Face model directory for tests.

  make_tiny_model.py --out DIR --arch llama|qwen2|mistral [--seed N]
      [--dtype F32|F16|BF16] [--tied] [--gqa] [--llama3-rope] [--shards N]

Weights are N(0, 0.2) (large enough that every layer matters), norms
1 + N(0, 0.1), biases N(0, 0.1).
"""
import argparse
import json
import os

import torch

import st_io

ARCH = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
        "mistral": "MistralForCausalLM"}
DT = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--arch", default="llama", choices=ARCH)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="F32", choices=DT)
    p.add_argument("--tied", action="store_true")
    p.add_argument("--gqa", action="store_true")
    p.add_argument("--llama3-rope", action="store_true")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--vocab", type=int, default=64)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    a = p.parse_args()
    g = torch.Generator().manual_seed(a.seed)
    heads, kv = 4, (2 if a.gqa else 4)
    d, ff, v, hd = a.hidden, a.hidden * 2 + 8, a.vocab, a.hidden // 4
    cfg = {"architectures": [ARCH[a.arch]], "model_type": a.arch,
           "vocab_size": v, "hidden_size": d, "intermediate_size": ff,
           "num_hidden_layers": a.layers, "num_attention_heads": heads,
           "num_key_value_heads": kv, "max_position_embeddings": 128,
           "rms_norm_eps": 1e-5, "rope_theta": 500.0 if a.llama3_rope else 10000.0,
           "tie_word_embeddings": a.tied, "hidden_act": "silu",
           "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[a.dtype]}
    if a.arch == "mistral":
        cfg["sliding_window"] = None
    if a.llama3_rope:
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0,
                               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 16}

    def r(*shape, std=0.2):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * std)

    t = {"model.embed_tokens.weight": r(v, d, std=1.0),
         "model.norm.weight": 1 + r(d, std=0.1)}
    if not a.tied:
        t["lm_head.weight"] = r(v, d)
    for i in range(a.layers):
        p_ = f"model.layers.{i}."
        t[p_ + "input_layernorm.weight"] = 1 + r(d, std=0.1)
        t[p_ + "post_attention_layernorm.weight"] = 1 + r(d, std=0.1)
        for n, o, inn in [("q_proj", heads * hd, d), ("k_proj", kv * hd, d),
                          ("v_proj", kv * hd, d), ("o_proj", d, heads * hd)]:
            t[p_ + "self_attn." + n + ".weight"] = r(o, inn)
            if a.arch == "qwen2" and n != "o_proj":
                t[p_ + "self_attn." + n + ".bias"] = r(o, std=0.1)
        for n, o, inn in [("gate_proj", ff, d), ("up_proj", ff, d), ("down_proj", d, ff)]:
            t[p_ + "mlp." + n + ".weight"] = r(o, inn)
    t = {k: x.to(DT[a.dtype]) for k, x in t.items()}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    names = sorted(t)
    if a.shards <= 1:
        st_io.save(os.path.join(a.out, "model.safetensors"), t, {"format": "pt"})
        return
    weight_map = {}
    for s in range(a.shards):
        fname = f"model-{s + 1:05d}-of-{a.shards:05d}.safetensors"
        part = {n: t[n] for n in names[s::a.shards]}
        st_io.save(os.path.join(a.out, fname), part, {"format": "pt"})
        weight_map.update({n: fname for n in part})
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)


if __name__ == "__main__":
    main()
