#!/usr/bin/python3
"""Independent float64 forward of a HF model directory of any supported family.

  reference_forward.py --model DIR --batch batch.json --out out.json
      [--adapter ADAPTER_DIR [--grads]]
  reference_forward.py --jobs jobs.json

The second form does several jobs in one process (one Python start-up for a
whole test): each job {"make": make_tiny_model.py arguments or null,
"model": DIR, "rows": [...], "adapter": {"dir", "rank", "alpha", "seed"} or
null, "out": PATH} makes the model (when "make" is set), writes a random
PEFT adapter for every linear module of its layers into adapter.dir (when
set; as PEFT names and shapes them, fan_in_fan_out for Conv1D), and writes
{"base": {"loss","logits"}, "adapter": {"loss","logits","grads"}} to out.
A job may also ask for greedy decoding, "generate": {"prompts": [[ids]],
"max_new_tokens": N}: each prompt is decoded on its own, one full forward
of the whole sequence per new token (no cache, no padding), the token
being the first of the largest logits; "base"/"adapter" then also hold
"generated": [[N new ids] per prompt]. LongRoPE picks its factors by the
longest sequence of the request (the longest prompt plus N), as the
trainer's cached decoding does.

batch.json: {"rows": [{"input_ids","labels","position_ids","segment_ids"}]}
(PackedSequence rows). Each packed example is cut out of its row and run on
its own (so packing correctness is checked, not assumed), with a plain
causal mask (and the layer's sliding window). out.json: {"loss": mean CE over
labels != -100, "logits": [row][token][vocab]} and, with --grads, "grads":
{adapter tensor name: gradient of the loss} (the tensor's shape, nested lists).

--adapter applies a PEFT LoRA adapter the way PEFT does, by name and nothing
else: each "base_model.model.<module>.lora_A.weight" / "lora_B.weight" pair of
adapter_model.safetensors adds (lora_alpha / r) * B @ A to the HF weight
"<module>.weight" (transposed when adapter_config.json says fan_in_fan_out,
for Conv1D weights stored [in, out]). It is applied to the weights before the
forward, so the forward code below never sees LoRA.

Written from the architectures' descriptions (HF's config fields and weight
names, the papers), not from the C++ trainer:
  llama / mistral / qwen2  RMSNorm, rotate-half RoPE (optional Llama-3
                           frequency scaling), GQA, SwiGLU
  qwen3                    + RMSNorm over each q and k head before RoPE
  phi3                     fused qkv_proj and gate_up_proj, partial rotary,
                           LongRoPE (short/long factors by the batch's longest
                           position, cos/sin times the attention factor),
                           sliding window on every layer
  gemma2                   RMSNorm times (1 + w), embeddings times
                           sqrt(hidden), sandwich norms, GeGLU, scale
                           query_pre_attn_scalar^-0.5, tanh soft-caps on
                           scores and logits, sliding window on even layers
  gpt2                     LayerNorm with bias, learned positions, Conv1D
                           (x @ W + b), fused c_attn, tanh GELU MLP, tied
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


def apply_adapter(w, adapter_dir, want_grads):
    """Adds the adapter's deltas to `w` in place; returns {name: leaf tensor}."""
    acfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    tensors = st_io.load(os.path.join(adapter_dir, "adapter_model.safetensors"))
    scaling = acfg["lora_alpha"] / acfg["r"]
    leaves = {k: t.to(D).requires_grad_(want_grads) for k, t in tensors.items()}
    prefix = "base_model.model."
    for key in sorted(leaves):
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[len(prefix):-len(".lora_A.weight")]
        a, b = leaves[key], leaves[prefix + module + ".lora_B.weight"]
        name = module + ".weight"
        if name not in w and name.startswith("transformer."):
            name = name[len("transformer."):]  # files of the bare GPT2Model
        delta = (b @ a) * scaling
        if acfg.get("fan_in_fan_out"):
            delta = delta.T
        assert delta.shape == w[name].shape, (key, delta.shape, w[name].shape)
        w[name] = w[name] + delta
    return leaves


def rms(x, w, eps):
    return w * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def rms_one_plus(x, w, eps):
    return (1.0 + w) * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


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


def rope(x, pos, inv, mscale=1.0):
    # x: [heads, T, n]; rotates pairs (i, i + r/2) of the first r = 2 * len(inv)
    # dims of each head, leaves the rest.
    r = 2 * inv.shape[0]
    half = r // 2
    ang = pos.to(D)[:, None] * inv[None, :]          # [T, r/2]
    c, s = torch.cos(ang) * mscale, torch.sin(ang) * mscale
    x1, x2, rest = x[..., :half], x[..., half:r], x[..., r:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s, rest], dim=-1)


def attend(q, k, v, scale, window=0, softcap=0.0):
    """q [nh, T, hd], k/v [nkv, T, hd]; causal, optional window and soft-cap."""
    nh, T, _ = q.shape
    nkv = k.shape[0]
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    blocked = j > i
    if window:
        blocked = blocked | (i - j >= window)
    out = torch.zeros(nh, T, v.shape[-1], dtype=D)
    for head in range(nh):
        g = head // (nh // nkv)
        sc = (q[head] @ k[g].T) * scale
        if softcap:
            sc = softcap * torch.tanh(sc / softcap)
        sc = sc.masked_fill(blocked, -math.inf)
        out[head] = torch.softmax(sc, -1) @ v[g]
    return out


def forward_llama_like(cfg, w, ids, pos, arch, ctx):
    d = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim", d // nh)
    eps = cfg.get("rms_norm_eps", 1e-6)
    ff = cfg["intermediate_size"]
    gemma, phi3, qwen3 = arch == "Gemma2ForCausalLM", arch == "Phi3ForCausalLM", \
        arch == "Qwen3ForCausalLM"
    norm = rms_one_plus if gemma else rms
    rot = int(hd * cfg.get("partial_rotary_factor", 1.0)) if phi3 else hd
    inv, mscale = inv_frequencies(cfg, rot), 1.0
    rs = cfg.get("rope_scaling")
    if phi3 and rs and rs.get("rope_type", rs.get("type")) == "longrope":
        orig = cfg["original_max_position_embeddings"]
        # HF picks the factors once per forward from the longest position.
        factors = rs["long_factor"] if ctx["max_pos"] + 1 > orig else rs["short_factor"]
        inv = torch.tensor([1.0 / (f * cfg.get("rope_theta", 10000.0) ** (2 * i / rot))
                            for i, f in enumerate(factors)], dtype=D)
        ext = cfg["max_position_embeddings"] / orig
        mscale = math.sqrt(1 + math.log(ext) / math.log(orig)) if ext > 1 else 1.0
    scale = cfg["query_pre_attn_scalar"] ** -0.5 if gemma else 1 / math.sqrt(hd)
    T = len(ids)
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    if gemma:
        x = x * math.sqrt(d)
    pos = torch.tensor(pos)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."

        def proj(name, inp):
            y = inp @ w[p + name + ".weight"].T
            b = w.get(p + name + ".bias")
            return y + b if b is not None else y

        window = 0
        if gemma and i % 2 == 0:
            window = cfg["sliding_window"]
        if phi3 and cfg.get("sliding_window"):
            window = cfg["sliding_window"]
        h = norm(x, w[p + "input_layernorm.weight"], eps)
        if phi3:
            qkv = proj("self_attn.qkv_proj", h)
            q, k, v = qkv[:, :nh * hd], qkv[:, nh * hd:(nh + nkv) * hd], qkv[:, (nh + nkv) * hd:]
        else:
            q, k, v = proj("self_attn.q_proj", h), proj("self_attn.k_proj", h), \
                proj("self_attn.v_proj", h)
        q = q.reshape(T, nh, hd)
        k = k.reshape(T, nkv, hd)
        if qwen3:
            q = rms(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rms(k, w[p + "self_attn.k_norm.weight"], eps)
        q, k = q.transpose(0, 1), k.transpose(0, 1)
        v = v.reshape(T, nkv, hd).transpose(0, 1)
        q, k = rope(q, pos, inv, mscale), rope(k, pos, inv, mscale)
        out = attend(q, k, v, scale, window,
                     (cfg.get("attn_logit_softcapping") or 0.0) if gemma else 0.0)
        a = proj("self_attn.o_proj", out.transpose(0, 1).reshape(T, nh * hd))
        if gemma:
            a = norm(a, w[p + "post_attention_layernorm.weight"], eps)
            x = x + a
            h = norm(x, w[p + "pre_feedforward_layernorm.weight"], eps)
        else:
            x = x + a
            h = norm(x, w[p + "post_attention_layernorm.weight"], eps)
        if phi3:
            gu = proj("mlp.gate_up_proj", h)
            gate, up = gu[:, :ff], gu[:, ff:]
        else:
            gate, up = proj("mlp.gate_proj", h), proj("mlp.up_proj", h)
        act = gelu_tanh(gate) if gemma else gate * torch.sigmoid(gate)
        m = proj("mlp.down_proj", act * up)
        if gemma:
            m = norm(m, w[p + "post_feedforward_layernorm.weight"], eps)
        x = x + m
    x = norm(x, w["model.norm.weight"], eps)
    tied = cfg.get("tie_word_embeddings", gemma)
    head = w["model.embed_tokens.weight"] if tied else w["lm_head.weight"]
    logits = x @ head.T
    if gemma and cfg.get("final_logit_softcapping"):
        c = cfg["final_logit_softcapping"]
        logits = c * torch.tanh(logits / c)
    return logits


def forward_gpt2(cfg, w, ids, pos, ctx):
    def W(name):
        return w[name] if name in w else w[name[len("transformer."):]]

    d, nh = cfg["n_embd"], cfg["n_head"]
    hd = d // nh
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    T = len(ids)
    x = W("transformer.wte.weight")[torch.tensor(ids)] + W("transformer.wpe.weight")[torch.tensor(pos)]
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."

        def conv1d(name, inp):  # Conv1D stores [in, out]
            return inp @ W(p + name + ".weight") + W(p + name + ".bias")

        h = layer_norm(x, W(p + "ln_1.weight"), W(p + "ln_1.bias"), eps)
        qkv = conv1d("attn.c_attn", h)
        q, k, v = (qkv[:, s * d:(s + 1) * d].reshape(T, nh, hd).transpose(0, 1)
                   for s in range(3))
        out = attend(q, k, v, 1 / math.sqrt(hd))
        x = x + conv1d("attn.c_proj", out.transpose(0, 1).reshape(T, d))
        h = layer_norm(x, W(p + "ln_2.weight"), W(p + "ln_2.bias"), eps)
        x = x + conv1d("mlp.c_proj", gelu_tanh(conv1d("mlp.c_fc", h)))
    x = layer_norm(x, W("transformer.ln_f.weight"), W("transformer.ln_f.bias"), eps)
    return x @ W("transformer.wte.weight").T


def forward_example(cfg, w, ids, pos, ctx):
    arch = cfg["architectures"][0]
    if arch == "GPT2LMHeadModel":
        return forward_gpt2(cfg, w, ids, pos, ctx)
    return forward_llama_like(cfg, w, ids, pos, arch, ctx)


def write_random_adapter(model_dir, out_dir, rank, alpha, seed):
    """A PEFT LoRA adapter on every linear module of the layers: each 2-D
    weight of a layer is one (norms are 1-D). Names as PEFT gives them on the
    *ForCausalLM / GPT2LMHeadModel module tree."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    gpt2 = cfg["architectures"][0] == "GPT2LMHeadModel"
    w = load_weights(model_dir)
    g = torch.Generator().manual_seed(seed)
    tensors, names = {}, set()
    for name in sorted(w):
        t = w[name]
        if t.dim() != 2 or not (".layers." in name or name.startswith(("h.", "transformer.h."))):
            continue
        module = name[:-len(".weight")]
        if gpt2 and not module.startswith("transformer."):
            module = "transformer." + module
        fan_in, fan_out = (t.shape[0], t.shape[1]) if gpt2 else (t.shape[1], t.shape[0])
        key = "base_model.model." + module
        tensors[key + ".lora_A.weight"] = torch.randn(rank, fan_in, generator=g, dtype=D) * 0.2
        tensors[key + ".lora_B.weight"] = torch.randn(fan_out, rank, generator=g, dtype=D) * 0.2
        names.add(module.split(".")[-1])
    os.makedirs(out_dir, exist_ok=True)
    st_io.save(os.path.join(out_dir, "adapter_model.safetensors"),
               {k: v.to(torch.float32) for k, v in tensors.items()})
    json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank,
               "lora_alpha": alpha, "target_modules": sorted(names),
               "fan_in_fan_out": gpt2, "bias": "none"},
              open(os.path.join(out_dir, "adapter_config.json"), "w"))


def run(model_dir, rows, adapter_dir=None, grads=False):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    w = load_weights(model_dir)
    leaves = apply_adapter(w, adapter_dir, grads) if adapter_dir else {}
    ctx = {"max_pos": max(max(r["position_ids"]) for r in rows)}
    all_logits, total, count = [], 0.0, 0
    for r in rows:
        n = len(r["input_ids"])
        pieces = []
        start = 0
        while start < n:
            end = start
            while end < n and r["segment_ids"][end] == r["segment_ids"][start]:
                end += 1
            pieces.append(forward_example(
                cfg, w, r["input_ids"][start:end], r["position_ids"][start:end], ctx))
            start = end
        logits = torch.cat(pieces)
        for t, lab in enumerate(r["labels"]):
            if lab != -100:
                total = total + (torch.logsumexp(logits[t], 0) - logits[t, lab])
                count += 1
        all_logits.append(logits.detach().tolist())
    loss = total / max(count, 1)
    out = {"loss": float(loss), "logits": all_logits}
    if grads:
        loss.backward()
        out["grads"] = {k: t.grad.tolist() for k, t in leaves.items()}
    return out


def greedy(model_dir, prompts, max_new, adapter_dir=None):
    """Greedy decode of each prompt by full forwards (see the docstring)."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    w = load_weights(model_dir)
    if adapter_dir:
        apply_adapter(w, adapter_dir, False)
    ctx = {"max_pos": max(len(p) for p in prompts) + max_new - 1}
    out = []
    with torch.no_grad():
        for p in prompts:
            ids = list(p)
            for _ in range(max_new):
                logits = forward_example(cfg, w, ids, list(range(len(ids))), ctx)
                ids.append(int(torch.argmax(logits[-1])))
            out.append(ids[len(p):])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--batch")
    ap.add_argument("--out")
    ap.add_argument("--adapter")
    ap.add_argument("--grads", action="store_true")
    ap.add_argument("--jobs")
    a = ap.parse_args()
    if a.jobs:
        import make_tiny_model
        for job in json.load(open(a.jobs)):
            if job.get("make"):
                make_tiny_model.main(["--out", job["model"]] + job["make"].split())
            out = {"base": run(job["model"], job["rows"])}
            gen = job.get("generate")
            if gen:
                out["base"]["generated"] = greedy(
                    job["model"], gen["prompts"], gen["max_new_tokens"])
            ad = job.get("adapter")
            if ad:
                write_random_adapter(job["model"], ad["dir"], ad["rank"], ad["alpha"], ad["seed"])
                out["adapter"] = run(job["model"], job["rows"], ad["dir"], grads=True)
                if gen:
                    out["adapter"]["generated"] = greedy(
                        job["model"], gen["prompts"], gen["max_new_tokens"], ad["dir"])
            json.dump(out, open(job["out"], "w"))
        return
    rows = json.load(open(a.batch))["rows"]
    json.dump(run(a.model, rows, a.adapter, a.grads), open(a.out, "w"))


if __name__ == "__main__":
    main()
