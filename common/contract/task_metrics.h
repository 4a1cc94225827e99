// Task metrics on the validation set (docs/metrics.md "Task metrics"): how
// a greedy completion of a validation prompt compares with the example's
// reference completion, and whether it follows a required format
// (`eval_pattern`). Declared once: the trainer scores with these functions,
// the scheduler checks a job's eval_pattern with the same engine (RE2) and
// rules before the job runs.
//
//   exact match       completion == reference, byte for byte
//   normalised match  NormalizeAnswer(completion) == NormalizeAnswer(ref)
//   token F1          SQuAD's F1 over the whitespace tokens of the two
//                     normalised texts (TokenF1)
//   pattern match     eval_pattern found in the completion (RE2 syntax,
//                     searched anywhere: anchor it with ^ and $ to require
//                     the whole completion)
//
// Plain C++ (no gRPC, no LibTorch). Thread-safety: the functions are pure;
// a CompletionPattern is immutable and safe to share between threads.
#ifndef FTUNE_COMMON_CONTRACT_TASK_METRICS_H_
#define FTUNE_COMMON_CONTRACT_TASK_METRICS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace re2 {
class RE2;
}

namespace ftune::contract {

// `text` trimmed, every run of whitespace (ASCII space, \t, \n, \v, \f, \r)
// one space, ASCII letters lower case (other bytes, UTF-8 included, stay as
// they are).
std::string NormalizeAnswer(absl::string_view text);

// SQuAD-style token F1 of `completion` against `reference`: both
// normalised (NormalizeAnswer) and split on spaces; the tokens they share
// counted as a multiset; precision = shared / completion tokens, recall =
// shared / reference tokens, F1 their harmonic mean. Two empty texts score
// 1, one empty text 0.
double TokenF1(absl::string_view completion, absl::string_view reference);

// One completion's scores against its reference.
struct TaskScore {
  bool exact_match = false;
  bool normalized_match = false;
  double token_f1 = 0;
};
TaskScore ScoreCompletion(absl::string_view completion,
                          absl::string_view reference);

// The longest eval_pattern accepted, in bytes.
inline constexpr size_t kEvalPatternMaxBytes = 1024;

// A compiled eval_pattern (RE2 syntax, UTF-8).
class CompletionPattern {
 public:
  // INVALID_ARGUMENT with RE2's reason for a pattern that does not compile,
  // is empty or longer than kEvalPatternMaxBytes.
  static absl::StatusOr<CompletionPattern> Compile(absl::string_view pattern);
  // Whether the pattern occurs anywhere in `completion`.
  bool Matches(absl::string_view completion) const;

 private:
  CompletionPattern() = default;
  std::shared_ptr<const re2::RE2> re_;
};

// Why `pattern` is not a valid eval_pattern ("" = valid): Compile's reason.
std::string EvalPatternProblem(absl::string_view pattern);

// The checkpoint a run publishes: the one with the lowest eval_loss (the
// default), or the highest exact-match or pattern-match share.
enum class SelectBestBy { kEvalLoss, kExactMatch, kPatternMatch };
const char* Name(SelectBestBy by);
std::optional<SelectBestBy> ParseSelectBestBy(absl::string_view name);

// The counts of one evaluation's task metrics (over the examples a rank
// scored; sums over ranks add up), and their shares.
struct TaskCounts {
  int64_t examples = 0;
  int64_t exact = 0;
  int64_t normalized = 0;
  double token_f1_sum = 0;
  int64_t pattern = 0;  // with an eval_pattern
  void Add(const TaskScore& s) {
    ++examples;
    exact += s.exact_match ? 1 : 0;
    normalized += s.normalized_match ? 1 : 0;
    token_f1_sum += s.token_f1;
  }
};

}  // namespace ftune::contract

#endif  // FTUNE_COMMON_CONTRACT_TASK_METRICS_H_
