// A compiled PCRE2 pattern for the tokenizers' pre-tokenizer regexes
// (UTF + UCP, so \p{L} and \s are Unicode-aware; invalid UTF-8 in the
// subject is tolerated). JIT-compiled when available.
//
// Thread-safety: immutable after Compile(); FindAll allocates its own match
// data, so one Regex serves concurrent callers.
#ifndef FTUNE_WORKER_TRAIN_TEXT_REGEX_H_
#define FTUNE_WORKER_TRAIN_TEXT_REGEX_H_

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftune::train::internal {

class Regex {
 public:
  // INVALID_ARGUMENT with the pattern, offset and PCRE2's message.
  static absl::StatusOr<std::shared_ptr<Regex>> Compile(
      const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the [begin, end) byte ranges of all non-empty, non-overlapping
  // matches, left to right.
  void FindAll(absl::string_view text,
               std::vector<std::pair<size_t, size_t>>* out) const;

 private:
  explicit Regex(void* code) : code_(code) {}
  void* code_;  // pcre2_code*
};

}  // namespace ftune::train::internal

#endif  // FTUNE_WORKER_TRAIN_TEXT_REGEX_H_
