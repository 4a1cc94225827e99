// Tiny Hugging Face model directories for tests that run the real trainer:
// a Llama-architecture decoder with random weights and a byte-level BPE
// tokenizer with a ChatML template. No LibTorch: plain safetensors/JSON
// writers, so service-level tests can use them too.
//
// Thread-safety: pure functions (they write only under `dir`).
#ifndef FTUNE_TESTS_WORKER_TRAIN_TINY_MODEL_H_
#define FTUNE_TESTS_WORKER_TRAIN_TINY_MODEL_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace ftune::testing {

// config.json + model.safetensors of a 2-layer Llama (hidden 32, 4 heads,
// 2 KV heads, MLP 64) with `vocab` tokens, weights drawn from `seed`.
absl::Status WriteTinyLlama(const std::string& dir, int64_t vocab,
                            uint64_t seed);

// tokenizer.json (ids 0..255 are bytes, 300.. specials such as
// <|im_start|>) and a tokenizer_config.json with a ChatML template.
absl::Status WriteChatTokenizer(const std::string& dir);

// `n` chat examples ({"messages": [user, assistant]} JSONL lines, each
// ending in a newline) whose assistant spells the user's word backwards
// ("cat" -> "tac"): learnable in a few steps. Words drawn from `seed`.
std::string ReversedWordChats(int n, uint64_t seed);

// `n` preference pairs ({"prompt","chosen","rejected"} JSONL) with a
// learnable rule: chosen answers are words of the letters a-e, rejected
// ones of v-z (3 to 6 letters), drawn from `seed`; both start with a space.
// The prompt is "say:", or with `varied_prompts` "say XY:" with X and Y
// letters of g-p drawn from `seed` too (100 prompts, so held-out pairs
// mostly have prompts that training never saw).
absl::Status WritePreferencePairs(const std::string& path, int n, uint64_t seed,
                                  bool varied_prompts = false);

}  // namespace ftune::testing

#endif  // FTUNE_TESTS_WORKER_TRAIN_TINY_MODEL_H_
