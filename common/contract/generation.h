// The settings of a generation, declared once: `ftune-train generate`'s
// flags, the sample completions of a job (TrainSpec::samples, JobSpec's
// SampleConfig) and the scheduler's validation all use GenerationSpec and
// its one checker, with the ranges and defaults of limits.h.
//
// Plain C++ (no gRPC, no LibTorch). Thread-compatible value types; the
// functions are pure.
#ifndef FTUNE_COMMON_CONTRACT_GENERATION_H_
#define FTUNE_COMMON_CONTRACT_GENERATION_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/contract/limits.h"

namespace ftune::contract {

// How tokens are chosen (in this order, as Hugging Face's generate does):
// the repetition penalty divides the logit of every token already in the
// prompt or the completion (multiplies a negative one); temperature 0 is
// greedy (the first most likely token); otherwise the logits are divided by
// the temperature, only the top_k most likely tokens are kept (0: all),
// then the smallest set whose probability reaches top_p, and a token is
// drawn with a generator seeded from `seed` and the prompt's index, so a
// prompt's completion does not depend on how prompts are batched. A
// completion ends at an end token (eos, the chat template's end of turn),
// at a stop sequence (which is cut off, with everything after it), after
// max_new_tokens tokens, or where the model's context ends.
struct GenerationSpec {
  int64_t max_new_tokens = defaults::kMaxNewTokens;
  double temperature = defaults::kTemperature;
  int64_t top_k = defaults::kTopK;
  double top_p = defaults::kTopP;
  double repetition_penalty = defaults::kRepetitionPenalty;
  uint64_t seed = 0;
  std::vector<std::string> stop;
};

// A setting out of its range: the field's name as GenerationSpec spells it
// ("temperature", "stop") and why ("must be in [0, 100], got -1").
struct FieldViolation {
  std::string field;
  std::string why;
};
// The first setting of `spec` outside limits.h's ranges; nullopt if none.
std::optional<FieldViolation> CheckGeneration(const GenerationSpec& spec);

// `text` when it has at most `max_bytes` bytes; otherwise its longest
// prefix that ends on a UTF-8 character boundary and leaves room for
// defaults::kTruncationMarker, followed by the marker (at most `max_bytes`
// bytes in all, or the marker alone when `max_bytes` is smaller than it).
std::string TruncateText(const std::string& text, size_t max_bytes);

}  // namespace ftune::contract

#endif  // FTUNE_COMMON_CONTRACT_GENERATION_H_
