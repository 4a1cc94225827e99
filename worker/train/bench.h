// `ftune-train bench`: training throughput on a random-initialised model.
//
// Not thread-safe: one RunBench per process (it sets LibTorch's global
// thread count and RNG). LibTorch errors become a Status (out of memory:
// RESOURCE_EXHAUSTED).
#ifndef FTUNE_WORKER_TRAIN_BENCH_H_
#define FTUNE_WORKER_TRAIN_BENCH_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/contract/memory_plan.h"
#include "common/contract/train_spec.h"
#include "worker/train/families/model_config.h"

namespace ftune::train {

// `ftune-train bench`: a random-initialised model of `config`, LoRA on
// `targets` (or every weight with `full`), synthetic uniform tokens (all
// positions are targets), full training steps (forward, backward, AdamW).
// `warmup` steps are not timed.
struct BenchOptions {
  ModelConfig config;
  int64_t seq = 256;
  int64_t batch = 8;
  int64_t rank = 8;
  std::vector<std::string> targets = {"all-linear"};
  int64_t steps = 5;
  int64_t warmup = 1;
  int threads = 0;
  int64_t loss_chunk_rows = 256;
  uint64_t seed = 0;
  // Compute dtype (the spec's spelling, contract::Dtype): "fp32", "bf16"
  // or (CUDA only) "fp16": frozen weights and
  // activations; LoRA weights and AdamW state stay fp32.
  std::string dtype = "fp32";
  std::string device = "cpu";  // or "cuda[:N]" in a CUDA build
  // Recompute each decoder layer in backward (ModelOptions).
  bool gradient_checkpointing = false;
  // QLoRA: every projection's base weight quantised.
  bool qlora = false;
  // Full fine-tuning (full_finetune.h): every weight trained, AdamW over all
  // of them (fp32 masters with half-precision compute); no LoRA, not with
  // qlora.
  bool full = false;
  // Attention (ModelOptions): blocked causal attention with this query
  // block, or (false) the dense mask over the full T x T scores.
  bool blocked_attention = true;
  // The bench's rows are one document each, which the trainer runs dense
  // on CPU unless this is set (--attention blocked; ModelOptions).
  bool blocked_attention_single_documents = false;
  int64_t attention_block = 128;
  contract::QuantizationSpec quantization;  // the compute dtype is `dtype`
};
struct BenchResult {
  // All ranks together (batch x seq x world size per step).
  double tokens_per_s = 0;
  int world_size = 1;
  // Seconds per timed step in the gradient all-reduce (0 with one rank),
  // and its share of the step.
  double allreduce_seconds_per_step = 0;
  double allreduce_share = 0;
  double seconds_per_step = 0;
  double last_loss = 0;
  // With quantization: the stored size of the quantised projections.
  int64_t quantized_parameters = 0;
  int64_t quantized_bytes = 0;
  double bits_per_parameter = 0;
  // Parameters the optimizer updates (LoRA's, or every weight with full).
  int64_t trainable_parameters = 0;
  // compat::PeakMemoryBytes: the process's peak RSS on CPU, the caching
  // allocator's peak on CUDA.
  int64_t peak_memory_bytes = 0;
  // compat::TensorPeakBytes over the training steps: live tensor bytes
  // (what common/contract/memory_plan.h predicts).
  int64_t tensor_peak_bytes = 0;
};
// The memory planner's input for a bench run (LoRA dropout 0, as the bench
// trains).
contract::MemoryPlanInput MemoryPlanInputOf(const BenchOptions& options);

// Per-step lines go to `log` (may be null). With `dist` (distributed.h)
// every rank trains its own `batch` rows and the LoRA gradients are
// all-reduced each step, as in training (UNAVAILABLE when a peer is lost).
class Distributed;
absl::StatusOr<BenchResult> RunBench(
    const BenchOptions& options,
    const std::function<void(const std::string&)>& log,
    Distributed* dist = nullptr);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_BENCH_H_
