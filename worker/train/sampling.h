// The choice of the next token from one row of logits, as
// contract::GenerationSpec describes it (repetition penalty, greedy or
// temperature, top-k, top-p, a seeded draw). Plain C++ on the CPU: the
// draws come from a per-prompt generator, never from LibTorch's global one
// (which training's dropout and checkpoints own), so sampling during
// training changes nothing about the training itself.
//
// Thread-compatible.
#ifndef FTUNE_WORKER_TRAIN_SAMPLING_H_
#define FTUNE_WORKER_TRAIN_SAMPLING_H_

#include <cstdint>
#include <random>
#include <vector>

#include "absl/types/span.h"
#include "common/contract/generation.h"

namespace ftune::train {

class TokenSampler {
 public:
  // `prompt_index`: the prompt's index among all prompts of the request
  // (its generator is seeded from spec.seed and it).
  TokenSampler(const contract::GenerationSpec& spec, uint64_t prompt_index);
  // The next token after `history` (prompt and completion so far) from
  // `logits` (one row, the vocabulary; changed in place).
  int32_t Next(absl::Span<float> logits, absl::Span<const int32_t> history);

 private:
  double Uniform();  // [0, 1), 53 bits, the same on every platform

  contract::GenerationSpec spec_;
  std::mt19937_64 rng_;
  std::vector<int32_t> order_;  // scratch
  std::vector<uint8_t> seen_;   // scratch: tokens of the history
};

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_SAMPLING_H_
