// The memory planner: the peak device memory of a training step, predicted
// from the model's shape and the job's settings, before the job is placed.
//
// It counts what the trainer (worker/train) allocates, term by term:
//   weights      frozen base weights (dense in the compute dtype, or NF4
//                codes + block scales for QLoRA), embeddings, LM head, norms;
//   trainable    trainable parameters (fp32 master copies), their gradients
//                and AdamW's two fp32 moments;
//   activations  what autograd keeps for backward, per decoder layer (all
//                layers, or with gradient checkpointing one input per layer
//                plus one recomputed layer), attention excluded;
//   attention    the dense [batch, heads, seq, seq] scores and probabilities
//                of the current attention path (O(seq^2) per head) and the
//                additive masks; a separate term so a blocked attention can
//                replace it;
//   logits_loss  the fused chunked loss: one [chunk, vocab] logits buffer
//                (never the whole [tokens, vocab]) and the gradient w.r.t.
//                the last hidden state;
//   workspace    the largest transient of the step (backward's gradient of
//                one layer's activations, a dequantised NF4 weight).
// docs/memory.md gives the derivation and its measured accuracy.
//
// Plain C++ (no LibTorch, no protobuf): the scheduler and the trainer both
// link it. Thread-safe: pure functions.
#ifndef FTUNE_COMMON_CONTRACT_MEMORY_PLAN_H_
#define FTUNE_COMMON_CONTRACT_MEMORY_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftune::contract {

// A decoder's shape, as config.json gives it (Llama-style names).
struct ModelShape {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // 0: num_heads
  int64_t head_dim = 0;      // 0: hidden_size / num_heads
  bool tie_word_embeddings = false;
  // Family quirks: a gated MLP (gate, up, down) or a plain one (up, down);
  // fused [q|k|v] and [gate|up] projections (one LoRA pair each); learned
  // absolute positions (a [max_positions, hidden] table); soft-capped
  // attention scores (one more [seq, seq] tensor kept per head).
  bool gated_mlp = true;
  bool fused_qkv = false;
  bool fused_gate_up = false;
  int64_t learned_positions = 0;  // rows of the position table; 0: RoPE
  bool attn_softcap = false;
  int64_t sliding_window_kinds = 1;  // distinct attention masks (Gemma 2: 2)
};

// What the job asks for.
struct MemoryPlanInput {
  ModelShape model;
  // "lora", "qlora" or "full" (every weight trainable: fp32 master weights,
  // their gradients and two AdamW moments; LoRA settings ignored).
  std::string method = "lora";
  std::string dtype = "fp32";  // compute dtype: "fp32", "bf16", "fp16"
  // QLoRA storage (method "qlora").
  int64_t quant_block_size = 64;
  bool double_quant = true;
  int64_t double_quant_block_size = 256;
  // LoRA: rank, dropout and targets as PEFT names ("q_proj", ...; fused
  // families' "qkv_proj", "gate_up_proj"); "all-linear" or empty: all.
  int64_t lora_rank = 8;
  double lora_dropout = 0;
  std::vector<std::string> target_modules = {"all-linear"};
  // Rows per micro-batch and tokens per row (max_seq_length: packed rows
  // are full; unpacked rows are padded to the batch's longest, at most this).
  int64_t micro_batch = 1;
  int64_t seq_len = 512;
  bool gradient_checkpointing = false;
  bool packing = false;  // no effect on the peak: rows are seq_len either way
  // Rows of the fused loss's logits chunk (ModelOptions.loss_chunk_rows).
  int64_t loss_chunk_rows = 256;
  // Micro-batches per optimizer step: with more than one, the gradients of
  // the trainable weights live through the forward passes too.
  int64_t gradient_accumulation = 1;
  // A CUDA device: NF4 weights dequantise in one kernel (no CPU
  // unpacking temporaries).
  bool cuda = false;
};

// The prediction, in bytes. total = the sum of the terms.
struct MemoryPlan {
  int64_t weights = 0;
  int64_t trainable = 0;             // parameters + gradients + AdamW moments
  int64_t trainable_parameters = 0;  // a count, not bytes
  int64_t activations = 0;
  int64_t attention = 0;
  int64_t logits_loss = 0;
  int64_t workspace = 0;
  int64_t total = 0;

  // "weights 2.47 GB, trainable + optimizer 0.18 GB, ..." (GB = 1e9 bytes).
  std::string Breakdown() const;
};

// INVALID_ARGUMENT naming the field for a non-positive size, an unknown
// method or dtype.
absl::StatusOr<MemoryPlan> PlanMemory(const MemoryPlanInput& input);

// The longest seq_len (a multiple of `step`, at most `max_seq`) whose plan
// fits in `budget_bytes`; 0 when not even `step` fits.
int64_t LongestFittingSequence(MemoryPlanInput input, int64_t budget_bytes,
                               int64_t step, int64_t max_seq);

// A ModelShape as one string ("vocab_size=32000,hidden_size=288,...") for
// the model registry's metadata, and back. Decoding ignores unknown keys
// (a newer writer) and leaves missing ones at their defaults;
// INVALID_ARGUMENT for an entry that is not key=integer.
std::string EncodeModelShape(const ModelShape& shape);
absl::StatusOr<ModelShape> DecodeModelShape(absl::string_view text);

// The memory of well-known GPU models, as their drivers report it, for a
// job whose resources.gpu_type names one that no registered worker has:
// the largest of the models whose name contains `gpu_type`
// (case-insensitive), 0 when none does (or gpu_type is empty).
int64_t KnownGpuMemoryBytes(absl::string_view gpu_type);

// Bytes as "1.23 GB" (1e9), "45.6 MB" (1e6) or "789 B".
std::string FormatBytes(int64_t bytes);

}  // namespace ftune::contract

#endif  // FTUNE_COMMON_CONTRACT_MEMORY_PLAN_H_
