// From a JSONL dataset to PackedSequence rows (sequence.h) for the trainer.
//
// BuildDataset:
//  1. parses and validates every line (common/dataset.h; any bad line fails
//     the build with the validator's errors);
//  2. splits off validation examples: from a separate file when given, else
//     a `validation_split` fraction of the training file chosen by a
//     seeded shuffle (at least one example when the fraction is > 0 and
//     the file has two or more);
//  3. shuffles the training examples with the seed (Fisher-Yates over
//     SplitMix64: the same seed gives the same order on every platform);
//     validation keeps file order;
//  4. tokenizes each example through the chat template (chat_template.h);
//  5. applies the over-length policy to examples longer than
//     max_seq_length tokens: kTruncate keeps the first max_seq_length
//     tokens, kDrop drops the example; both are counted in DatasetStats.
//     An example left with no training target (e.g. truncation cut off the
//     whole answer) is dropped and counted as dropped_no_target;
//  6. packs: with packing, examples are appended in order to the current row
//     while they fit (next-fit greedy), never split across rows; without,
//     one example per row.
// Preference pairs (DatasetFormat kPreference, kChatPreference) take steps
// 1-3 the same way, then become two rows each, never packed: row 2i is the
// prompt with the chosen answer, row 2i+1 the same prompt with the rejected
// one, targets only on the answer (and the token that ends it). Over-length
// policy per pair: kTruncate cuts each side to max_seq_length tokens (the
// end of the answer is lost; both sides keep the whole prompt), kDrop drops
// the pair. A prompt of max_seq_length tokens or more leaves no room for an
// answer: INVALID_ARGUMENT naming the line and the lengths.
// Within a row: position_ids restart at 0 for every example, segment_ids
// number the examples 0, 1, ..., and labels[i] = input_ids[i+1] when token
// i+1 is a target of the same example, else kIgnoreLabel (the last token of
// every example is kIgnoreLabel), so labels never cross an example.
//
// Thread-safety: pure functions.
#ifndef FTUNE_WORKER_TRAIN_TEXT_DATASET_BUILDER_H_
#define FTUNE_WORKER_TRAIN_TEXT_DATASET_BUILDER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/dataset.h"
#include "worker/train/text/chat_template.h"
#include "worker/train/text/sequence.h"
#include "worker/train/text/tokenizer.h"

namespace ftune::train {

enum class OverlengthPolicy { kTruncate, kDrop };

struct DatasetOptions {
  std::string chat_template = "auto";  // see ResolveChatTemplate
  int32_t max_seq_length = 2048;       // >= 2
  bool packing = true;
  OverlengthPolicy overlength = OverlengthPolicy::kTruncate;
  uint64_t seed = 0;
  // Fraction in [0, 1) of the training file held out for validation; must
  // be 0 when a separate validation file is given.
  double validation_split = 0;
  DatasetLimits limits;
};

struct DatasetStats {
  int64_t examples = 0;            // examples read for this split
  int64_t truncated = 0;           // over-length, cut to max_seq_length
  int64_t dropped_overlength = 0;  // over-length, dropped (kDrop)
  int64_t dropped_no_target = 0;   // nothing left to train on
  int64_t rows = 0;                // PackedSequences produced
  int64_t total_tokens = 0;        // tokens in the rows
  int64_t trained_tokens = 0;      // labels != kIgnoreLabel
};

// Validation examples Dataset::validation_examples keeps at most (the
// contract's largest eval_task_examples, which is above its largest
// eval_samples: common/contract/limits.h).
inline constexpr size_t kMaxValidationExamplesKept = 1024;

struct Dataset {
  DatasetFormat format = DatasetFormat::kUnknown;
  // IsPreferenceFormat(format): rows come in (chosen, rejected) pairs and
  // stats count pairs as examples.
  bool pairs = false;
  ChatTemplate chat_template = ChatTemplate::kChatML;  // used for messages
  std::vector<PackedSequence> train;
  std::vector<PackedSequence> validation;  // empty without validation data
  // The first kMaxValidationExamplesKept validation examples as parsed, in
  // file order (not for preference formats): the prompts of a run's sample
  // completions and task metrics.
  std::vector<Example> validation_examples;
  DatasetStats train_stats;
  DatasetStats validation_stats;
};

// `validation_jsonl` may be "" (none). INVALID_ARGUMENT for bad options, bad
// lines (with the line numbers), a validation file in another format than
// the training file, or a training split left with no rows;
// FAILED_PRECONDITION when the tokenizer lacks a token the template needs.
absl::StatusOr<Dataset> BuildDatasetFromText(absl::string_view train_jsonl,
                                             absl::string_view validation_jsonl,
                                             const Tokenizer& tokenizer,
                                             const DatasetOptions& options);

// Reads the files (validation_path "" for none) and calls
// BuildDatasetFromText. File errors name the path.
absl::StatusOr<Dataset> BuildDataset(const std::string& train_path,
                                     const std::string& validation_path,
                                     const Tokenizer& tokenizer,
                                     const DatasetOptions& options);

// Applies the over-length policy and packing to tokenized examples (steps 5
// and 6 above), in the given order. Exposed for tests and for callers that
// tokenize themselves.
std::vector<PackedSequence> PackExamples(
    const std::vector<TokenizedExample>& examples, int32_t max_seq_length,
    bool packing, OverlengthPolicy overlength, DatasetStats* stats);

// Deterministic permutation of 0..n-1 from `seed` (Fisher-Yates, SplitMix64).
std::vector<size_t> SeededPermutation(size_t n, uint64_t seed);

// A batch of rows padded to the longest row, row-major [batch, seq_len].
// Padding: input_ids = pad id, labels = kIgnoreLabel, position_ids = 0,
// segment_ids = kPadSegment. Pad tokens thus form their own segment: with
// "attend only within the same segment" they attend each other, never real
// tokens, and no attention row is empty (no NaN from an all-masked softmax).
inline constexpr int32_t kPadSegment = -1;
struct TokenBatch {
  int32_t batch_size = 0;
  int32_t seq_len = 0;
  std::vector<int32_t> input_ids;
  std::vector<int32_t> labels;
  std::vector<int32_t> position_ids;
  std::vector<int32_t> segment_ids;
};

// Pads `rows` (at least one) into a TokenBatch. `pad_id` is used for input_ids
// of padding; pass PadIdFor(tokenizer).
TokenBatch MakeTokenBatch(absl::Span<const PackedSequence> rows,
                          int32_t pad_id);

// The tokenizer's pad id, else its eos id, else 0. (The value is never a
// target and never attended by real tokens, so any valid id works.)
int32_t PadIdFor(const Tokenizer& tokenizer);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_TEXT_DATASET_BUILDER_H_
