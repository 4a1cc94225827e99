#!/usr/bin/env python3
"""GPU peer for `ftune-train bench --device cuda`: the same Llama shape under
Hugging Face transformers (LlamaForCausalLM, random init, bf16) with PEFT
LoRA on every linear projection of the decoder, trained with AdamW on random
tokens, the way a typical user would write it.

  python3 bench/gpu/peft_peer.py --config config.json [--seq 1024 --batch 8
      --rank 8 --steps 10 --warmup 3 --peak-tflops 989]

Uses only APIs that are stable from transformers 4.40 and peft 0.10 on
(LlamaConfig, LlamaForCausalLM, LoraConfig, get_peft_model). Prints one
key=value line per figure:

  tokens_per_s           trained tokens per second (batch * seq / step time)
  flops_per_token        4 N + 12 L d T (see below)
  mfu                    tokens_per_s * flops_per_token / peak
  max_memory_allocated_bytes  torch.cuda.max_memory_allocated()

FLOPs: N is the number of base parameters that take part in matrix
products (every parameter except the input embedding; the LM head counts).
LoRA training does a forward (2N per token) and a backward for the
activations only (2N; frozen weights get no gradient), so 4N, not the 6N of
full fine-tuning; the adapters' own FLOPs (< 1%) are left out. Attention
adds 12 L d T per token (QK^T and AV, forward and two backward products,
counted without the causal half, as PaLM's MFU does), with L layers, d the
hidden size and T the sequence length.
"""
import argparse
import json
import math
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="HF config.json of the shape")
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--attn", default="sdpa", help="attn_implementation")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument(
        "--peak-tflops",
        type=float,
        default=989.0,
        help="dense bf16 peak for MFU (H100/H200 SXM: 989)",
    )
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("peft_peer: no CUDA device", file=sys.stderr)
        return 77
    import peft
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    print(f"torch={torch.__version__}")
    print(f"transformers={transformers.__version__}")
    print(f"peft={peft.__version__}")
    print(f"gpu={torch.cuda.get_device_name(0).replace(' ', '_')}")

    with open(args.config) as f:
        cfg = json.load(f)
    for key in ("architectures", "model_type", "torch_dtype", "dtype"):
        cfg.pop(key, None)
    cfg["max_position_embeddings"] = max(
        int(cfg.get("max_position_embeddings", 0)), args.seq
    )
    cfg["use_cache"] = False
    try:
        config = LlamaConfig(**cfg)
    except (TypeError, ValueError) as e:
        # A release that moved a field (e.g. rope_theta into
        # rope_parameters): keep its default, which is the same (10000).
        print(f"# LlamaConfig refused the config ({e}); retrying without "
              "rope_theta", file=sys.stderr)
        cfg.pop("rope_theta", None)
        config = LlamaConfig(**cfg)
    try:  # the attribute behind attn_implementation= (4.36+ and 5.x)
        config._attn_implementation = args.attn
    except Exception as e:  # noqa: BLE001 - keep the library's default
        print(f"# attn_implementation not set: {e}", file=sys.stderr)

    torch.manual_seed(0)
    # Built directly on the GPU in bf16, as from_pretrained(torch_dtype=
    # torch.bfloat16) builds it (buffers computed in fp32, e.g. RoPE's
    # inv_freq, stay fp32; no fp32 copy of the weights).
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(prev)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()

    emb = model.get_input_embeddings().weight.numel()
    n_total = sum(p.numel() for p in model.parameters())
    n_matmul = n_total - emb
    if getattr(config, "tie_word_embeddings", False):
        n_matmul += emb  # the tied LM head is a matrix product too

    lora = LoraConfig(
        r=args.rank,
        lora_alpha=args.alpha,
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
    )
    model = get_peft_model(model, lora)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    opt = torch.optim.AdamW(trainable, lr=args.lr)

    gen = torch.Generator(device="cuda").manual_seed(1)
    ids = torch.randint(
        0, config.vocab_size, (args.batch, args.seq), device="cuda", generator=gen
    )

    def step():
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    loss = None
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize()
    secs = (time.perf_counter() - t0) / args.steps

    tokens = args.batch * args.seq
    layers = config.num_hidden_layers
    d = config.hidden_size
    flops_per_token = 4 * n_matmul + 12 * layers * d * args.seq
    tps = tokens / secs
    mfu = tps * flops_per_token / (args.peak_tflops * 1e12)
    attn = getattr(model.config, "_attn_implementation", "unknown")
    print(f"attn_implementation={attn}")
    print(f"parameters={n_total}")
    print(f"matmul_parameters={n_matmul}")
    print(f"trainable_parameters={n_trainable}")
    print(f"seq={args.seq}")
    print(f"batch={args.batch}")
    print(f"rank={args.rank}")
    print(f"steps={args.steps}")
    print(f"final_loss={float(loss):.4f}")
    print(f"seconds_per_step={secs:.4f}")
    print(f"tokens_per_s={tps:.1f}")
    print(f"flops_per_token={flops_per_token}")
    print(f"peak_tflops={args.peak_tflops}")
    print(f"mfu={mfu:.4f}")
    print(f"max_memory_allocated_bytes={torch.cuda.max_memory_allocated()}")
    if not math.isfinite(float(loss)):
        print("peft_peer: non-finite loss", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
