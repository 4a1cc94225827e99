#!/usr/bin/python3
"""Prepare and install the demo base model, which ftune-train pretrains.

Why this exists: no Debian or npm package we could find ships pretrained
Llama-family weights (docs/models.md lists what was searched). The strongest
honest substitute is a base model that really was pretrained - here, on this
machine, by ftune's own trainer (`"method": "full"`), on the Debian package
descriptions of the "pretrain" pool (scripts/data/debian_text.py) - with a
real Llama-family SentencePiece BPE vocabulary (32000 pieces, byte fallback)
shipped by an npm package. scripts/get-model.sh runs the three steps:

  prepare  WORK/init/: config.json (LlamaForCausalLM), model.safetensors
           (the seeded initial weights, F32, HF names), tokenizer.json (as
           shipped), tokenizer.model (SentencePiece proto made by
           sp_tokenizer.py), tokenizer_config.json;
           WORK/corpus.jsonl: {"text"} per distinct description of the
           pretrain pool; WORK/heldout.jsonl: the unseen finetune-pool
           descriptions check_model.py measures (debian_text.heldout_texts);
           WORK/spec.json: the ftune-train spec (method full, text, packed);
  (get-model.sh runs build/bin/ftune-train --spec WORK/spec.json)
  finish   installs the published model directory at DEST with
           pretrain_recipe.json (the recipe + tokenizer sha256) and
           pretrain_log.json (the trainer's loss curve and evaluations);
  is-done  exit 0 when DEST holds a finished run of exactly this recipe.

The recipe (architecture, init seed, corpus, trainer hyperparameters) is
one JSON file, scripts/models/debian-llama.recipe.json by default. RoPE is
HF's half-split ("rotate_half") layout, the one the trainer and
LlamaForCausalLM use, so the weights need no permutation. forward() below is
an eager float32 forward of the same architecture, written apart from the
trainer; check_model.py --against-trainer compares it with a float64 one.
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "data"))

import debian_text  # noqa: E402
import safetensors_write  # noqa: E402
import sp_tokenizer  # noqa: E402

DEFAULT_RECIPE = os.path.join(HERE, "debian-llama.recipe.json")
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer.model", "tokenizer_config.json")


class Cfg:
    def __init__(self, arch, vocab):
        self.vocab, self.dim, self.layers = vocab, arch["dim"], arch["layers"]
        self.heads, self.kv_heads, self.hidden = arch["heads"], arch["kv_heads"], arch["hidden"]
        self.head_dim = self.dim // self.heads
        self.max_seq, self.eps, self.theta = arch["max_position_embeddings"], 1e-5, 10000.0
        self.tied = bool(arch.get("tie_word_embeddings", False))


def init_params(c, gen):
    """GPT-2/llama2.c style init: N(0, 0.02), residual projections scaled by
    1/sqrt(2*layers), norms at 1."""
    def normal(*shape, std=0.02):
        return (torch.randn(*shape, generator=gen) * std).requires_grad_()

    p = {"model.embed_tokens.weight": normal(c.vocab, c.dim),
         "model.norm.weight": torch.ones(c.dim, requires_grad=True)}
    if not c.tied:
        p["lm_head.weight"] = normal(c.vocab, c.dim)
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
    return x @ p.get("lm_head.weight", p["model.embed_tokens.weight"]).T


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
        "tie_word_embeddings": c.tied,
        "bos_token_id": tok_vocab["<s>"],
        "eos_token_id": tok_vocab["</s>"],
        "torch_dtype": "float32",
        "initializer_range": 0.02,
    }


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_recipe(path, tokenizer_json):
    with open(path) as f:
        r = json.load(f)
    for key in ("arch", "init_seed", "corpus", "trainer"):
        if key not in r:
            raise SystemExit(f"{path}: recipe field {key!r} missing")
    r["tokenizer_json_sha256"] = sha256_file(tokenizer_json)
    return r


def write_tokenizer_files(out, tok_json_path, tok_model_bytes, max_seq):
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
        "model_max_length": max_seq,
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tcfg, f, indent=2)
        f.write("\n")


def write_jsonl(path, texts):
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    return sha256_file(path)


def pretrain_texts(descs, min_chars):
    """Distinct descriptions of the pretrain pool, in package-name order."""
    seen, docs = set(), []
    for n in sorted(n for n in descs if debian_text.bucket(n) in debian_text.PRETRAIN_BUCKETS):
        text = debian_text.full_description(*descs[n])
        if text in seen or len(text) < min_chars:
            continue
        seen.add(text)
        docs.append(text)
    return docs


def prepare(a):
    r = load_recipe(a.recipe, a.tokenizer_json)
    os.makedirs(a.work, exist_ok=True)
    init = os.path.join(a.work, "init")
    os.makedirs(init, exist_ok=True)
    tok = sp_tokenizer.load_tokenizer_json(a.tokenizer_json)
    tok_vocab = tok["model"]["vocab"]
    c = Cfg(r["arch"], len(tok_vocab))
    with open(os.path.join(init, "config.json"), "w") as f:
        json.dump(hf_config(c, tok_vocab), f, indent=2)
        f.write("\n")
    p = init_params(c, torch.Generator().manual_seed(r["init_seed"]))
    safetensors_write.save_file({k: v.detach().float() for k, v in p.items()},
                                os.path.join(init, "model.safetensors"), metadata={"format": "pt"})
    write_tokenizer_files(init, a.tokenizer_json, sp_tokenizer.build_sentencepiece_model(tok), c.max_seq)

    descs = debian_text.load_descriptions()
    docs = pretrain_texts(descs, r["corpus"].get("min_chars", 40))
    held = debian_text.heldout_texts(descs)
    info = {"params": sum(v.numel() for v in p.values()),
            "corpus": {"documents": len(docs), "chars": sum(len(d) for d in docs),
                       "sha256": write_jsonl(os.path.join(a.work, "corpus.jsonl"), docs)},
            "heldout": {"documents": len(held),
                        "sha256": write_jsonl(os.path.join(a.work, "heldout.jsonl"), held)}}
    spec = {"model_dir": init, "base_model_name": "random-init",
            "train_data": os.path.join(a.work, "corpus.jsonl"),
            "validation_data": os.path.join(a.work, "heldout.jsonl"),
            "data": {"format": "text", "overlength": "truncate"},
            "method": "full",
            "hyperparameters": r["trainer"]["hyperparameters"],
            "samples": {"eval_samples": 0}, "task_metrics": {"eval_task_examples": 0},
            "output_dir": os.path.join(a.work, "out"), "checkpoint_dir": os.path.join(a.work, "checkpoints"),
            "resume_from": "auto", "threads": r["trainer"]["threads"]}
    with open(os.path.join(a.work, "spec.json"), "w") as f:
        json.dump(spec, f, indent=2)
        f.write("\n")
    with open(os.path.join(a.work, "prepare.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(f"prepared {a.work}: {info['params'] / 1e6:.2f}M parameters, {len(docs)} pretraining "
          f"descriptions, {len(held)} held-out", file=sys.stderr)
    return 0


def read_progress(path):
    """The trainer's JSON progress lines: the loss curve and the evaluations."""
    steps, evals, done, data = [], [], None, {}
    with open(path) as f:
        for line in f:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            t = j.get("type")
            if t == "metrics":
                steps.append([j["step"], round(j["loss"], 4), j.get("lr"), round(j.get("tokens_per_s", 0), 1)])
            elif t == "eval":
                evals.append([j["step"], round(j["eval_loss"], 5)])
            elif t == "data":
                data[j.get("split", "?")] = {k: j.get(k) for k in ("examples", "rows", "tokens", "truncated")}
            elif t == "done":
                done = j
    return steps, evals, done, data


def finish(a):
    r = load_recipe(a.recipe, a.tokenizer_json)
    out = os.path.join(a.work, "out")
    with open(os.path.join(a.work, "prepare.json")) as f:
        info = json.load(f)
    steps, evals, done, data = read_progress(os.path.join(a.work, "progress.jsonl"))
    if done is None:
        raise SystemExit(f"finish: {a.work}/progress.jsonl has no done line; the run did not finish")
    log = {"source": "pretrained from scratch by build/bin/ftune-train (method full), scripts/get-model.sh",
           "data": "Debian bookworm Translation-en long descriptions, pretrain pool (sha256(name)[0]%10 in 0..6); "
                   "held out: finetune-pool descriptions (7..9) never trained on",
           "params": info["params"], "corpus": info["corpus"], "heldout": info["heldout"], "data_lines": data,
           "train_seconds": a.seconds, "load_average": a.load, "steps": steps, "eval": evals, "done": done}
    tmp = a.dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(out, tmp)
    with open(os.path.join(tmp, "pretrain_recipe.json"), "w") as f:
        json.dump(r, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(tmp, "pretrain_log.json"), "w") as f:
        json.dump(log, f, indent=1)
        f.write("\n")
    shutil.rmtree(a.dest, ignore_errors=True)
    os.replace(tmp, a.dest)
    print(f"installed {a.dest}", file=sys.stderr)
    return 0


def is_done(a):
    """Exit 0 when a.dest holds a finished run of exactly this recipe."""
    want = load_recipe(a.recipe, a.tokenizer_json)
    try:
        with open(os.path.join(a.dest, "pretrain_recipe.json")) as f:
            have = json.load(f)
    except (OSError, ValueError):
        return 3
    ok = have == want and all(os.path.exists(os.path.join(a.dest, f)) for f in MODEL_FILES)
    ok = ok and sha256_file(os.path.join(a.dest, "tokenizer.json")) == want["tokenizer_json_sha256"]
    return 0 if ok else 3


def progress(a):
    """One line on the run so far, for get-model.sh to print while it waits."""
    if not os.path.exists(os.path.join(a.work, "progress.jsonl")):
        return 0
    steps, evals, _, _ = read_progress(os.path.join(a.work, "progress.jsonl"))
    if steps:
        step, loss, _, tps = steps[-1]
        held = f", held-out {evals[-1][1]:.3f} at step {evals[-1][0]}" if evals else ""
        with open(os.path.join(a.work, "spec.json")) as f:
            total = json.load(f)["hyperparameters"]["max_steps"]
        print(f"get-model: step {step}/{total} loss {loss:.3f} ({tps:.0f} tokens/s){held}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["prepare", "finish", "is-done", "print-recipe", "progress"])
    ap.add_argument("--tokenizer-json", help="the tokenizer.json get-model.sh fetched (all but progress)")
    ap.add_argument("--recipe", default=DEFAULT_RECIPE)
    ap.add_argument("--work", help="prepare/finish: the working directory")
    ap.add_argument("--dest", help="finish/is-done: the model directory")
    ap.add_argument("--seconds", type=float, default=None, help="finish: training wall time, recorded")
    ap.add_argument("--load", default=None, help="finish: load average during training, recorded")
    a = ap.parse_args()
    if a.command == "progress":
        return progress(a)
    if not a.tokenizer_json:
        ap.error("--tokenizer-json is required")
    if a.command == "print-recipe":
        print(json.dumps(load_recipe(a.recipe, a.tokenizer_json), sort_keys=True))
        return 0
    if a.command in ("prepare", "finish") and not a.work:
        ap.error("--work is required")
    if a.command in ("finish", "is-done") and not a.dest:
        ap.error("--dest is required")
    return {"prepare": prepare, "finish": finish, "is-done": is_done}[a.command](a)


if __name__ == "__main__":
    sys.exit(main())
