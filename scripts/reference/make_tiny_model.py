#!/usr/bin/python3
"""Writes a tiny random Hugging Face model directory for tests.

  make_tiny_model.py --out DIR --arch llama|qwen2|mistral|qwen3|phi3|gemma2|gpt2
      [--seed N] [--dtype F32|F16|BF16] [--tied] [--gqa] [--llama3-rope]
      [--shards N] [--window W] [--longrope] [--partial-rotary F]
      [--no-prefix] [--embed-std S]

Weights are N(0, 0.2) (large enough that every layer matters), embeddings
N(0, 1) (--embed-std S: N(0, S); Gemma 2 multiplies them by sqrt(hidden),
so that its sandwich-normed layers matter to greedy decoding only with a
small S), norms
1 + N(0, 0.1) (Gemma stores w of its (1 + w): N(0, 0.3)), biases N(0, 0.1).
Per family, the config sets the options the family's block depends on so
that each of them changes the logits of the tiny model:
  qwen3   head_dim 16 (not hidden / heads), q_norm and k_norm weights
  phi3    fused qkv_proj and gate_up_proj; --window W (sliding window),
          --longrope (short/long factors, original_max_position_embeddings 8
          so that sequences of more than 8 tokens take the long factors),
          --partial-rotary F (partial_rotary_factor)
  gemma2  head_dim 16, query_pre_attn_scalar 24, soft-caps 2.0 (attention)
          and 5.0 (logits), sliding_window W (default 3) on layer 0, tied
  gpt2    Conv1D weights [in, out], learned positions, LayerNorm with bias,
          tied; --no-prefix saves the names without "transformer." (as the
          bare GPT2Model does)
"""
import argparse
import json
import os

import torch

import st_io

ARCH = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
        "mistral": "MistralForCausalLM", "qwen3": "Qwen3ForCausalLM",
        "phi3": "Phi3ForCausalLM", "gemma2": "Gemma2ForCausalLM",
        "gpt2": "GPT2LMHeadModel"}
DT = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
TORCH_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def llama_like(a, r):
    """Llama, Mistral, Qwen2, Qwen3, Gemma 2 and Phi-3 (their shared names)."""
    heads, kv = 4, (2 if a.gqa else 4)
    d, ff, v = a.hidden, a.hidden * 2 + 8, a.vocab
    hd = 16 if a.arch in ("qwen3", "gemma2") else a.hidden // 4
    cfg = {"architectures": [ARCH[a.arch]], "model_type": a.arch,
           "vocab_size": v, "hidden_size": d, "intermediate_size": ff,
           "num_hidden_layers": a.layers, "num_attention_heads": heads,
           "num_key_value_heads": kv, "max_position_embeddings": 128,
           "rms_norm_eps": 1e-5, "rope_theta": 500.0 if a.llama3_rope else 10000.0,
           "tie_word_embeddings": a.tied, "hidden_act": "silu",
           "torch_dtype": TORCH_DTYPE[a.dtype]}
    if hd != d // heads:
        cfg["head_dim"] = hd
    if a.arch == "mistral":
        cfg["sliding_window"] = None
    if a.llama3_rope:
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0,
                               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 16}
    gemma = a.arch == "gemma2"
    if gemma:
        cfg.update({"hidden_act": "gelu_pytorch_tanh",
                    "hidden_activation": "gelu_pytorch_tanh",
                    "query_pre_attn_scalar": 24, "attn_logit_softcapping": 2.0,
                    "final_logit_softcapping": 5.0,
                    "sliding_window": a.window or 3, "tie_word_embeddings": True,
                    "attention_bias": False})
    if a.arch == "qwen3":
        cfg.update({"attention_bias": False, "use_sliding_window": False})
    rot = hd
    if a.arch == "phi3":
        cfg.update({"sliding_window": a.window or None, "resid_pdrop": 0.0,
                    "embd_pdrop": 0.0, "attention_dropout": 0.0})
        if a.partial_rotary:
            cfg["partial_rotary_factor"] = a.partial_rotary
            rot = int(hd * a.partial_rotary)
        if a.longrope:
            cfg["original_max_position_embeddings"] = 8
            cfg["rope_scaling"] = {
                "type": "longrope",
                "short_factor": [round(1 + float(x), 4) for x in torch.rand(rot // 2, generator=a.g)],
                "long_factor": [round(1 + 3 * float(x), 4) for x in torch.rand(rot // 2, generator=a.g)]}

    def norm(n):
        return r(n, std=0.3) if gemma else 1 + r(n, std=0.1)

    t = {"model.embed_tokens.weight": r(v, d, std=a.embed_std), "model.norm.weight": norm(d)}
    if not cfg["tie_word_embeddings"]:
        t["lm_head.weight"] = r(v, d)
    for i in range(a.layers):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = norm(d)
        t[p + "post_attention_layernorm.weight"] = norm(d)
        if gemma:
            t[p + "pre_feedforward_layernorm.weight"] = norm(d)
            t[p + "post_feedforward_layernorm.weight"] = norm(d)
        if a.arch == "qwen3":
            t[p + "self_attn.q_norm.weight"] = 1 + r(hd, std=0.3)
            t[p + "self_attn.k_norm.weight"] = 1 + r(hd, std=0.3)
        if a.arch == "phi3":
            t[p + "self_attn.qkv_proj.weight"] = r(heads * hd + 2 * kv * hd, d)
            t[p + "self_attn.o_proj.weight"] = r(d, heads * hd)
            t[p + "mlp.gate_up_proj.weight"] = r(2 * ff, d)
            t[p + "mlp.down_proj.weight"] = r(d, ff)
            continue
        for n, o, inn in [("q_proj", heads * hd, d), ("k_proj", kv * hd, d),
                          ("v_proj", kv * hd, d), ("o_proj", d, heads * hd)]:
            t[p + "self_attn." + n + ".weight"] = r(o, inn)
            if a.arch == "qwen2" and n != "o_proj":
                t[p + "self_attn." + n + ".bias"] = r(o, std=0.1)
        for n, o, inn in [("gate_proj", ff, d), ("up_proj", ff, d), ("down_proj", d, ff)]:
            t[p + "mlp." + n + ".weight"] = r(o, inn)
    return cfg, t


def gpt2(a, r):
    d, v, n_pos = a.hidden, a.vocab, 128
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
           "vocab_size": v, "n_embd": d, "n_layer": a.layers, "n_head": 4,
           "n_positions": n_pos, "n_ctx": n_pos, "n_inner": None,
           "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
           "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
           "scale_attn_weights": True, "tie_word_embeddings": True,
           "torch_dtype": TORCH_DTYPE[a.dtype]}
    pre = "" if a.no_prefix else "transformer."
    t = {pre + "wte.weight": r(v, d, std=a.embed_std), pre + "wpe.weight": r(n_pos, d),
         pre + "ln_f.weight": 1 + r(d, std=0.1), pre + "ln_f.bias": r(d, std=0.1)}
    for i in range(a.layers):
        p = f"{pre}h.{i}."
        for ln in ("ln_1", "ln_2"):
            t[p + ln + ".weight"] = 1 + r(d, std=0.1)
            t[p + ln + ".bias"] = r(d, std=0.1)
        # Conv1D: weight [in, out], y = x @ W + b.
        for n, inn, o in [("attn.c_attn", d, 3 * d), ("attn.c_proj", d, d),
                          ("mlp.c_fc", d, 4 * d), ("mlp.c_proj", 4 * d, d)]:
            t[p + n + ".weight"] = r(inn, o)
            t[p + n + ".bias"] = r(o, std=0.1)
    return cfg, t


def main(argv=None):
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
    p.add_argument("--window", type=int, default=0)
    p.add_argument("--longrope", action="store_true")
    p.add_argument("--partial-rotary", type=float, default=0.0)
    p.add_argument("--no-prefix", action="store_true")
    p.add_argument("--embed-std", type=float, default=1.0)
    a = p.parse_args(argv)
    g = torch.Generator().manual_seed(a.seed)
    a.g = g

    def r(*shape, std=0.2):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * std)

    cfg, t = gpt2(a, r) if a.arch == "gpt2" else llama_like(a, r)
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
