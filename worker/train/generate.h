// Text generation with the trainer's model: incremental decoding over a
// key/value cache (nn/attention.h KvCache) for every family, fp32 / bf16 /
// fp16, CPU and CUDA, with or without LoRA (unmerged: the adapters run in
// every step as in training, QLoRA's 4-bit weights dequantised on the fly).
//
// Prompts (token ids) are decoded in batches of different lengths:
// left-padded, each row's positions start at its first real token, padding
// is masked out; a prefill step runs every prompt token at once, then one
// token per step. Rows that finish leave the batch (and the cache). Tokens
// are chosen on the CPU by TokenSampler (sampling.h): a prompt's completion
// is the same whatever it is batched with (up to float rounding of the
// padded batch, well below what changes a greedy choice in practice).
//
// Not thread-safe with respect to the model. Runs under NoGradGuard; may
// throw c10::Error (callers turn it into a Status).
#ifndef FTUNE_WORKER_TRAIN_GENERATE_H_
#define FTUNE_WORKER_TRAIN_GENERATE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/contract/generation.h"
#include "worker/train/model.h"

namespace ftune::train {

// What ends a completion besides its length.
struct StopConditions {
  // Tokens that end it (not part of it): eos, end of turn.
  std::vector<int32_t> end_tokens;
  // Text of completion ids, for stop sequences (GenerationSpec::stop) and
  // Completion::text; special tokens produce no text. Required.
  std::function<std::string(absl::Span<const int32_t>)> decode;
};

struct Completion {
  std::vector<int32_t> ids;  // generated, without the end token
  std::string text;          // decode(ids), cut before a stop sequence
  // "end" (an end token), "stop" (a stop sequence), "length"
  // (max_new_tokens, or the model's context is full).
  std::string finish_reason;
  int64_t prompt_tokens = 0;
};

struct GenerationStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // every step after the prefill, sampling in
  double decode_tokens_per_s() const {
    return decode_seconds > 0 ? generated_tokens / decode_seconds : 0;
  }
};

// The model's context: the most tokens a sequence may have.
int64_t ContextLength(const Model& model);

// Completions of `prompts`, in order, `batch_size` prompts at a time.
// `first_index`: the index of prompts[0] among a larger request (seeds).
// INVALID_ARGUMENT for an empty prompt or one longer than the context
// (naming the prompt and both lengths), a token id outside the vocabulary,
// or settings outside their ranges (CheckGeneration). `stats` may be null.
absl::StatusOr<std::vector<Completion>> Generate(
    Model& model, const std::vector<std::vector<int32_t>>& prompts,
    const contract::GenerationSpec& spec, const StopConditions& stop,
    int64_t batch_size, GenerationStats* stats, uint64_t first_index = 0);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_GENERATE_H_
