#!/usr/bin/python3
"""Independent check of a Hugging Face Llama model directory.

Reads config.json and model.safetensors with its own parser (not the writer
in safetensors_write.py), runs a float64 PyTorch forward written from the
Llama definition (RMSNorm, rotary embedding on the half-split pairs
(i, i + head_dim/2), SwiGLU MLP, grouped-query attention by head index
h -> h // (heads / kv_heads)), and reports:

  1. tokenizer: tokenizer.model (libsentencepiece) and tokenizer.json
     (sp_tokenizer.JsonBpeTokenizer, pure Python) give identical ids on real
     text, and decode(encode(x)) == x;
  2. loss / perplexity on held-out real text (Debian descriptions of the
     finetune pool, which pretraining never saw), next to the uniform baseline
     ln(vocab);
  3. greedy continuations of a few prompts (printed);
  4. with --against-trainer: the held-out loss of 2. next to the one
     ftune-train reported for the published weights on the same texts
     (pretrain_log.json's done.best_eval_loss; the trainer pretrained the
     model, scripts/get-model.sh), and max |logit difference| between this
     float64 forward and pretrain_llama.forward (an eager float32 forward
     written apart from both) - proving that the names, shapes and RoPE
     layout ftune-train trained and published mean what the Llama
     definition means.

Exit status 1 if a check fails (tokenizer mismatch, non-finite logits, loss
not below the uniform baseline, trainer mismatch above tolerance).
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "data"))

_NP = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError(f"{path}: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", buf[:8])
    if 8 + n > len(buf):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = memoryview(buf)[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        shape = e["shape"]
        if e["dtype"] == "BF16":
            raw = np.frombuffer(data[b:end], dtype="<u2").astype(np.uint32) << 16
            arr = raw.view(np.float32)
        else:
            arr = np.frombuffer(data[b:end], dtype=np.dtype(_NP[e["dtype"]]).newbyteorder("<"))
        if arr.size != int(np.prod(shape)):
            raise ValueError(f"{path}: tensor {name}: {arr.size} elements for shape {shape}")
        out[name] = torch.from_numpy(arr.reshape(shape).astype(np.float64))
    return out


class Llama64:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = cfg = json.load(f)
        if cfg.get("model_type") != "llama":
            raise ValueError(f"model_type {cfg.get('model_type')!r} is not llama")
        self.w = read_safetensors(os.path.join(model_dir, "model.safetensors"))
        self.dim = cfg["hidden_size"]
        self.n_layers = cfg["num_hidden_layers"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg.get("num_key_value_heads", self.n_heads)
        self.hd = cfg.get("head_dim") or self.dim // self.n_heads
        self.eps = cfg["rms_norm_eps"]
        self.theta = cfg.get("rope_theta", 10000.0)
        self.vocab = cfg["vocab_size"]
        if "lm_head.weight" not in self.w:
            if not cfg.get("tie_word_embeddings", False):
                raise ValueError("lm_head.weight missing and tie_word_embeddings is false")
            self.w["lm_head.weight"] = self.w["model.embed_tokens.weight"]
        self._check_shapes()

    def _check_shapes(self):
        d, kv, hid = self.dim, self.n_kv * self.hd, self.cfg["intermediate_size"]
        want = {"model.embed_tokens.weight": (self.vocab, d), "model.norm.weight": (d,),
                "lm_head.weight": (self.vocab, d)}
        for i in range(self.n_layers):
            b = f"model.layers.{i}."
            want.update({b + "input_layernorm.weight": (d,), b + "post_attention_layernorm.weight": (d,),
                         b + "self_attn.q_proj.weight": (self.n_heads * self.hd, d),
                         b + "self_attn.k_proj.weight": (kv, d), b + "self_attn.v_proj.weight": (kv, d),
                         b + "self_attn.o_proj.weight": (d, self.n_heads * self.hd),
                         b + "mlp.gate_proj.weight": (hid, d), b + "mlp.up_proj.weight": (hid, d),
                         b + "mlp.down_proj.weight": (d, hid)})
        for name, shape in want.items():
            if name not in self.w:
                raise ValueError(f"tensor {name} missing")
            if tuple(self.w[name].shape) != shape:
                raise ValueError(f"tensor {name} has shape {tuple(self.w[name].shape)}, want {shape}")

    def _norm(self, x, w):
        return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + self.eps) * w

    def _rope(self, x, pos):
        # x: (T, H, hd). Pair i rotates with pair i + hd/2 by angle pos * theta^(-2i/hd).
        half = self.hd // 2
        i = torch.arange(half, dtype=torch.float64)
        ang = pos[:, None].double() * torch.pow(torch.tensor(self.theta, dtype=torch.float64), -2.0 * i / self.hd)
        c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
        a, b = x[..., :half], x[..., half:]
        return torch.cat([a * c - b * s, a * s + b * c], dim=-1)

    def logits(self, ids):
        """ids: list of ints (one sequence). Returns (T, vocab) float64."""
        T = len(ids)
        pos = torch.arange(T)
        x = self.w["model.embed_tokens.weight"][torch.tensor(ids)]
        group = self.n_heads // self.n_kv
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        for li in range(self.n_layers):
            b = f"model.layers.{li}."
            h = self._norm(x, self.w[b + "input_layernorm.weight"])
            q = self._rope((h @ self.w[b + "self_attn.q_proj.weight"].T).view(T, self.n_heads, self.hd), pos)
            k = self._rope((h @ self.w[b + "self_attn.k_proj.weight"].T).view(T, self.n_kv, self.hd), pos)
            v = (h @ self.w[b + "self_attn.v_proj.weight"].T).view(T, self.n_kv, self.hd)
            kv_index = torch.arange(self.n_heads) // group
            k, v = k[:, kv_index, :], v[:, kv_index, :]  # (T, H, hd)
            scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(self.hd)
            scores = scores.masked_fill(~causal, float("-inf"))
            att = torch.softmax(scores, dim=-1)
            o = torch.einsum("hts,shd->thd", att, v).reshape(T, self.n_heads * self.hd)
            x = x + o @ self.w[b + "self_attn.o_proj.weight"].T
            h = self._norm(x, self.w[b + "post_attention_layernorm.weight"])
            gate = h @ self.w[b + "mlp.gate_proj.weight"].T
            up = h @ self.w[b + "mlp.up_proj.weight"].T
            x = x + (gate * torch.sigmoid(gate) * up) @ self.w[b + "mlp.down_proj.weight"].T
        x = self._norm(x, self.w["model.norm.weight"])
        return x @ self.w["lm_head.weight"].T

    def nll(self, ids):
        lg = self.logits(ids)
        lp = torch.log_softmax(lg[:-1], dim=-1)
        return -lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum().item(), len(ids) - 1

    def greedy(self, ids, n, eos=None):
        ids = list(ids)
        for _ in range(n):
            nxt = int(torch.argmax(self.logits(ids)[-1]))
            if nxt == eos:
                break
            ids.append(nxt)
        return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--eval-texts", type=int, default=40, help="held-out descriptions for the loss")
    ap.add_argument("--max-tokens", type=int, default=512,
                    help="a text's ids (BOS, text, EOS) cut to this many, as the trainer's max_seq_length")
    ap.add_argument("--gen-tokens", type=int, default=40)
    ap.add_argument("--prompt", action="append", default=None)
    ap.add_argument("--against-trainer", action="store_true")
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("CHECK_THREADS", "2")))

    import debian_text
    import sentencepiece as spm
    import sp_tokenizer

    ok = True
    report = {"model_dir": a.model_dir}
    m = Llama64(a.model_dir)
    print(f"config: dim {m.dim}, layers {m.n_layers}, heads {m.n_heads}, kv heads {m.n_kv}, "
          f"hidden {m.cfg['intermediate_size']}, vocab {m.vocab}, max seq {m.cfg['max_position_embeddings']}")

    sp = spm.SentencePieceProcessor(model_file=os.path.join(a.model_dir, "tokenizer.model"))
    jt = sp_tokenizer.JsonBpeTokenizer(sp_tokenizer.load_tokenizer_json(os.path.join(a.model_dir, "tokenizer.json")))
    descs = debian_text.load_descriptions()
    texts = debian_text.heldout_texts(descs, a.eval_texts)
    tricky = ["Hello  world", " leading space", "tabs\tand\nnewlines", "Ünïcödé — 日本語 😀", "x = 3.14159; y=42", ""]
    mism = 0
    for t in texts + tricky:
        ids_sp, ids_js = sp.encode(t), jt.encode(t)
        if ids_sp != ids_js or sp.decode(ids_sp) != t or jt.decode(ids_js) != t:
            mism += 1
            print(f"TOKENIZER MISMATCH on {t[:60]!r}: sp {ids_sp[:12]} json {ids_js[:12]}")
    print(f"tokenizer: {len(texts) + len(tricky)} texts, {mism} mismatches between tokenizer.model and tokenizer.json")
    report["tokenizer_mismatches"] = mism
    ok &= mism == 0

    bos, eos = sp.bos_id(), sp.eos_id()
    tot, cnt = 0.0, 0
    for t in texts:
        ids = ([bos] + sp.encode(t) + [eos])[:a.max_tokens]
        s, n = m.nll(ids)
        tot, cnt = tot + s, cnt + n
    loss = tot / cnt
    uniform = math.log(m.vocab)
    print(f"held-out loss: {loss:.4f} nats/token over {cnt} tokens of {len(texts)} unseen descriptions "
          f"(perplexity {math.exp(loss):.1f}; uniform baseline {uniform:.4f})")
    report.update({"heldout_loss": loss, "heldout_tokens": cnt, "uniform_loss": uniform})
    ok &= math.isfinite(loss) and loss < uniform - 1.0

    prompts = a.prompt or ["This package contains", "A library for", "Python 3 module for"]
    report["generations"] = {}
    for p in prompts:
        out = m.greedy([bos] + sp.encode(p), a.gen_tokens, eos=eos)
        text = sp.decode(out[1:])
        report["generations"][p] = text
        print(f"greedy: {text!r}")

    if a.against_trainer:
        import pretrain_llama

        log_path = os.path.join(a.model_dir, "pretrain_log.json")
        if os.path.exists(log_path):
            with open(log_path) as f:
                trained = json.load(f)["done"]["best_eval_loss"]
            d = abs(trained - loss)
            print(f"ftune-train's held-out loss of the published weights {trained:.6f}, "
                  f"this float64 forward {loss:.6f}: |diff| {d:.2e}")
            report["trainer_heldout_loss"] = trained
            ok &= d < 1e-3
        else:
            print(f"no {log_path}: the trainer's held-out loss is not compared")

        class C:  # the trainer's config object, rebuilt from config.json
            pass

        c = C()
        c.vocab, c.dim, c.layers = m.vocab, m.dim, m.n_layers
        c.heads, c.kv_heads, c.hidden, c.head_dim = m.n_heads, m.n_kv, m.cfg["intermediate_size"], m.hd
        c.max_seq, c.eps, c.theta = m.cfg["max_position_embeddings"], m.eps, m.theta
        p32 = {k: v.float() for k, v in m.w.items()}
        ids = [bos] + sp.encode(texts[0])[:62]
        ref = pretrain_llama.forward(p32, c, torch.tensor([ids]))[0].double()
        mine = m.logits(ids)
        diff = (ref - mine).abs().max().item()
        scale = mine.abs().max().item()
        print(f"trainer float32 forward vs float64 check forward: max |diff| {diff:.3e} (max |logit| {scale:.2f})")
        report["trainer_max_abs_diff"] = diff
        ok &= diff < 1e-3 * max(1.0, scale)

    report["ok"] = bool(ok)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(report, f, indent=2)
    print("CHECK OK" if ok else "CHECK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
