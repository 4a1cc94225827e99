#!/usr/bin/python3
"""Pretrain a small Llama-architecture model on real English text and write it
as a Hugging Face model directory.

Why this exists: no Debian or npm package we could find ships pretrained
Llama-family weights (docs/models.md lists what was searched). The strongest
honest substitute is a base model that really was pretrained - here, on this
machine, on the Debian package descriptions of the "pretrain" pool
(scripts/data/debian_text.py) - with a real Llama-family SentencePiece BPE
vocabulary (32000 pieces, byte fallback) shipped by an npm package.

Output DIR/: config.json (LlamaForCausalLM), model.safetensors (F32, HF Llama
names, untied lm_head), tokenizer.json (as shipped), tokenizer.model
(SentencePiece proto made by sp_tokenizer.py), tokenizer_config.json,
pretrain_log.json (losses, data and settings). RoPE is applied in the
half-split ("rotate_half") layout that HF's LlamaForCausalLM uses, so the
weights need no permutation. Deterministic for a given --threads on CPU.
The directory is rewritten every --save-every steps, so an interrupted run
still leaves a usable (less trained) model.
"""

import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "data"))

import debian_text  # noqa: E402
import safetensors_write  # noqa: E402
import sp_tokenizer  # noqa: E402


class Cfg:
    def __init__(self, a, vocab):
        self.vocab, self.dim, self.layers = vocab, a.dim, a.layers
        self.heads, self.kv_heads, self.hidden = a.heads, a.kv_heads, a.hidden
        self.head_dim = a.dim // a.heads
        self.max_seq, self.eps, self.theta = a.max_seq, 1e-5, 10000.0


def init_params(c, gen):
    """GPT-2/llama2.c style init: N(0, 0.02), residual projections scaled by
    1/sqrt(2*layers), norms at 1."""
    def normal(*shape, std=0.02):
        return (torch.randn(*shape, generator=gen) * std).requires_grad_()

    p = {"model.embed_tokens.weight": normal(c.vocab, c.dim),
         "model.norm.weight": torch.ones(c.dim, requires_grad=True),
         "lm_head.weight": normal(c.vocab, c.dim)}
    res_std = 0.02 / math.sqrt(2 * c.layers)
    kv = c.kv_heads * c.head_dim
    for i in range(c.layers):
        b = f"model.layers.{i}."
        p[b + "input_layernorm.weight"] = torch.ones(c.dim, requires_grad=True)
        p[b + "post_attention_layernorm.weight"] = torch.ones(c.dim, requires_grad=True)
        p[b + "self_attn.q_proj.weight"] = normal(c.dim, c.dim)
        p[b + "self_attn.k_proj.weight"] = normal(kv, c.dim)
        p[b + "self_attn.v_proj.weight"] = normal(kv, c.dim)
        p[b + "self_attn.o_proj.weight"] = normal(c.dim, c.dim, std=res_std)
        p[b + "mlp.gate_proj.weight"] = normal(c.hidden, c.dim)
        p[b + "mlp.up_proj.weight"] = normal(c.hidden, c.dim)
        p[b + "mlp.down_proj.weight"] = normal(c.dim, c.hidden, std=res_std)
    return p


def rope_tables(c, T):
    inv = 1.0 / (c.theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.float32) / c.head_dim))
    ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)  # T, hd/2
    ang = torch.cat([ang, ang], dim=-1)  # half-split layout
    return ang.cos(), ang.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def forward(p, c, ids):
    B, T = ids.shape
    cos, sin = rope_tables(c, T)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    x = p["model.embed_tokens.weight"][ids]
    for i in range(c.layers):
        b = f"model.layers.{i}."
        h = rms(x, p[b + "input_layernorm.weight"], c.eps)
        q = (h @ p[b + "self_attn.q_proj.weight"].T).view(B, T, c.heads, c.head_dim).transpose(1, 2)
        k = (h @ p[b + "self_attn.k_proj.weight"].T).view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)
        v = (h @ p[b + "self_attn.v_proj.weight"].T).view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = c.heads // c.kv_heads
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(c.head_dim))
        att = att.masked_fill(mask[:T, :T], float("-inf")).softmax(-1)
        a = att @ v
        x = x + a.transpose(1, 2).reshape(B, T, c.dim) @ p[b + "self_attn.o_proj.weight"].T
        h = rms(x, p[b + "post_attention_layernorm.weight"], c.eps)
        g = F.silu(h @ p[b + "mlp.gate_proj.weight"].T) * (h @ p[b + "mlp.up_proj.weight"].T)
        x = x + g @ p[b + "mlp.down_proj.weight"].T
    x = rms(x, p["model.norm.weight"], c.eps)
    return x @ p["lm_head.weight"].T


def hf_config(c, tok_vocab):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab,
        "hidden_size": c.dim,
        "intermediate_size": c.hidden,
        "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads,
        "num_key_value_heads": c.kv_heads,
        "head_dim": c.head_dim,
        "max_position_embeddings": c.max_seq,
        "rms_norm_eps": c.eps,
        "rope_theta": c.theta,
        "rope_scaling": None,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": tok_vocab["<s>"],
        "eos_token_id": tok_vocab["</s>"],
        "torch_dtype": "float32",
        "initializer_range": 0.02,
    }


def write_model_dir(out, p, c, tok_json_path, tok_model_bytes, tok_vocab, log):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(hf_config(c, tok_vocab), f, indent=2)
        f.write("\n")
    safetensors_write.save_file({k: v.detach().float() for k, v in p.items()},
                                os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(tok_json_path, os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer.model"), "wb") as f:
        f.write(tok_model_bytes)
    tcfg = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
        "legacy": True,
        "clean_up_tokenization_spaces": False,
        "model_max_length": c.max_seq,
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tcfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "pretrain_log.json"), "w") as f:
        json.dump(log, f, indent=1)
        f.write("\n")


def build_corpus(sp, bos, eos, max_docs):
    descs = debian_text.load_descriptions()
    names = sorted(n for n in descs if debian_text.bucket(n) in debian_text.PRETRAIN_BUCKETS)
    seen, docs = set(), []
    for n in names:
        text = debian_text.full_description(*descs[n])
        if text in seen or len(text) < 40:
            continue
        seen.add(text)
        docs.append(text)
    if max_docs:
        docs = docs[:max_docs]
    ids = sp.encode(docs)
    stream = []
    for d in ids:
        stream.append(bos)
        stream.extend(d)
        stream.append(eos)
    return np.asarray(stream, dtype=np.int64), len(docs)


_NOT_RECIPE = ("out", "tokenizer_json", "save_every", "eval_every", "print_recipe", "check_done")


def is_done(a):
    """True when a.out holds a finished run of exactly this recipe."""
    try:
        with open(os.path.join(a.out, "pretrain_log.json")) as f:
            log = json.load(f)
    except (OSError, ValueError):
        return False
    want = recipe(a)
    have = {k: v for k, v in log.get("settings", {}).items() if k not in _NOT_RECIPE}
    have["tokenizer_json_sha256"] = want["tokenizer_json_sha256"] if os.path.exists(
        os.path.join(a.out, "tokenizer.json")) and _sha256(os.path.join(a.out, "tokenizer.json")) == want[
        "tokenizer_json_sha256"] else None
    files = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer.model", "tokenizer_config.json")
    return (have == want and log.get("completed_steps") == a.steps
            and all(os.path.exists(os.path.join(a.out, f)) for f in files))


def _sha256(path):
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def recipe(a):
    """The settings that determine the weights (not where they are written)."""
    tok_sha = _sha256(a.tokenizer_json)
    r = {k: v for k, v in vars(a).items() if k not in _NOT_RECIPE}
    r["tokenizer_json_sha256"] = tok_sha
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer-json", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--max-seq", type=int, default=1024, help="max_position_embeddings written")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=352)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-docs", type=int, default=0, help="0 = all pretrain-pool descriptions")
    ap.add_argument("--save-every", type=int, default=25)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--print-recipe", action="store_true", help="print the recipe JSON and exit")
    ap.add_argument("--check-done", action="store_true",
                    help="exit 0 if --out already holds a finished run of this recipe, 3 otherwise")
    a = ap.parse_args()
    if a.print_recipe:
        print(json.dumps(recipe(a), sort_keys=True))
        return 0
    if a.check_done:
        return 0 if is_done(a) else 3

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    import sentencepiece as spm

    tok = sp_tokenizer.load_tokenizer_json(a.tokenizer_json)
    tok_vocab = tok["model"]["vocab"]
    tok_model = sp_tokenizer.build_sentencepiece_model(tok)
    sp = spm.SentencePieceProcessor(model_proto=tok_model)
    t0 = time.time()
    stream, ndocs = build_corpus(sp, tok_vocab["<s>"], tok_vocab["</s>"], a.max_docs)
    n_eval = max(len(stream) // 50, a.seq * 8)
    train, held = stream[:-n_eval], stream[-n_eval:]
    print(f"corpus: {ndocs} descriptions, {len(stream)} tokens "
          f"(train {len(train)}, held-out {len(held)}), {time.time() - t0:.1f}s", flush=True)

    c = Cfg(a, len(tok_vocab))
    gen = torch.Generator().manual_seed(a.seed)
    p = init_params(c, gen)
    decay = [v for k, v in p.items() if v.dim() == 2]
    no_decay = [v for k, v in p.items() if v.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    nparams = sum(v.numel() for v in p.values())
    print(f"model: {nparams / 1e6:.2f}M params, dim {c.dim}, layers {c.layers}, heads {c.heads}/"
          f"{c.kv_heads}, hidden {c.hidden}, vocab {c.vocab}", flush=True)

    train_t = torch.from_numpy(train)
    held_t = torch.from_numpy(held)
    rng = np.random.default_rng(a.seed)
    # Fixed held-out windows, non-overlapping.
    n_hw = min(16, (len(held) - 1) // a.seq)
    held_x = torch.stack([held_t[i * a.seq:(i + 1) * a.seq] for i in range(n_hw)])
    held_y = torch.stack([held_t[i * a.seq + 1:(i + 1) * a.seq + 1] for i in range(n_hw)])

    def lr_at(step):
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        prog = (step - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * prog)))

    def held_loss():
        with torch.no_grad():
            return F.cross_entropy(forward(p, c, held_x).reshape(-1, c.vocab), held_y.reshape(-1)).item()

    log = {"source": "pretrained from scratch by scripts/models/pretrain_llama.py",
           "data": "Debian bookworm Translation-en long descriptions, pretrain pool (sha256(name)[0]%10 in 0..6)",
           "settings": vars(a), "recipe": recipe(a), "params": nparams, "corpus_tokens": int(len(stream)),
           "train_tokens": int(len(train)), "held_out_tokens": int(len(held)), "steps": [], "eval": []}
    t_start = time.time()
    for step in range(a.steps):
        starts = rng.integers(0, len(train) - a.seq - 1, size=a.batch)
        x = torch.stack([train_t[s:s + a.seq] for s in starts])
        y = torch.stack([train_t[s + 1:s + a.seq + 1] for s in starts])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = F.cross_entropy(forward(p, c, x).reshape(-1, c.vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(list(p.values()), 1.0).item()
        opt.step()
        log["steps"].append([step, round(loss.item(), 4)])
        if step % 10 == 0:
            el = time.time() - t_start
            tps = (step + 1) * a.batch * a.seq / el
            print(f"step {step} loss {loss.item():.4f} lr {lr_at(step):.2e} gnorm {gn:.2f} "
                  f"tok/s {tps:.0f} elapsed {el:.0f}s", flush=True)
        last = step == a.steps - 1
        if (step + 1) % a.eval_every == 0 or last:
            hl = held_loss()
            log["eval"].append([step + 1, round(hl, 4)])
            print(f"eval step {step + 1} held-out loss {hl:.4f} ppl {math.exp(hl):.1f}", flush=True)
        if (step + 1) % a.save_every == 0 or last:
            log["completed_steps"] = step + 1
            write_model_dir(a.out, p, c, a.tokenizer_json, tok_model, tok_vocab, log)
            print(f"saved {a.out} at step {step + 1}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
