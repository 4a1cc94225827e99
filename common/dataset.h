// The training-data line format (DESIGN.md "Datasets"): JSONL, one example a
// line, in one of five formats. Supervised (SFT):
//
//   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."},
//   ...]}
//   {"prompt": "...", "completion": "..."}
//   {"text": "..."}
//
// and preference pairs (DPO, ORPO: a prompt, a preferred and a rejected
// answer):
//
//   {"prompt": "...", "chosen": "...", "rejected": "..."}
//   {"input": {"messages": [...]}, "preferred_output": [{"role":
//   "assistant", "content": "..."}], "non_preferred_output": [...]}
//   (OpenAI's DPO format)
//
// Shared by the scheduler's upload validation and the trainer's data
// pipeline, so it knows nothing about tokenizers.
//
// Rules (every violation is an INVALID_ARGUMENT error that starts with
// "line N: " and names the field, e.g.
//   line 17: messages[2].role: unknown role "bot" (expected system, user,
//   assistant)):
//  - A line is UTF-8 (validated; the error gives the byte column), at most
//    DatasetLimits::max_line_bytes bytes. A UTF-8 byte order mark is allowed
//    (and removed) only at the start of line 1. A trailing "\r" (CRLF files)
//    is removed.
//  - Lines that are empty or only whitespace are skipped; they still count
//    for line numbers.
//  - Each other line is one JSON object. Its format is decided by which of
//    the keys "messages", "prompt"/"completion", "text" it has; exactly one
//    format's keys must be present. Other top-level keys (ids, metadata) are
//    ignored.
//  - messages: a non-empty array of objects with a "role" (system, user,
//    assistant) and a string "content". A system message may only come first.
//    At least one assistant message with "weight" != 0. An optional "weight"
//    (0 or 1, assistant messages only) turns the loss on that message off (0)
//    or on (1, the default) as in OpenAI's format. Other keys in a message
//    (e.g. "name") are ignored. Assistant content must be non-empty.
//  - prompt/completion: both strings; completion non-empty, prompt may be "".
//  - text: a non-empty string.
//  - prompt/chosen/rejected: strings; chosen and rejected non-empty and not
//    the same text; prompt may be "".
//  - input/preferred_output/non_preferred_output: input.messages a messages
//    list (as above, without the assistant requirement) ending with a user
//    message; each output a non-empty list of assistant messages with
//    non-empty content; the two outputs not the same.
//  - All lines of one file use the same format.
//
// Thread-safety: free functions are thread-safe; a DatasetValidator is not.
#ifndef FTUNE_COMMON_DATASET_H_
#define FTUNE_COMMON_DATASET_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftune {

enum class DatasetFormat {
  kUnknown = 0,
  kMessages,
  kPromptCompletion,
  kText,
  kPreference,      // prompt/chosen/rejected
  kChatPreference,  // input/preferred_output/non_preferred_output
};
// "messages", "prompt_completion", "text", "preference", "chat_preference"
// ("unknown" for kUnknown).
absl::string_view DatasetFormatName(DatasetFormat format);
// Preference pairs (DPO, ORPO) rather than supervised examples.
bool IsPreferenceFormat(DatasetFormat format);

enum class Role { kSystem, kUser, kAssistant };
absl::string_view RoleName(Role role);

struct Message {
  Role role = Role::kUser;
  std::string content;
  // Assistant messages only: whether the loss covers this message ("weight").
  bool trainable = true;
};

struct Example {
  DatasetFormat format = DatasetFormat::kUnknown;
  int64_t line_number = 0;        // 1-based line in its file.
  std::vector<Message> messages;  // kMessages; kChatPreference: the input
  std::string prompt;             // kPromptCompletion, kPreference
  std::string completion;         // kPromptCompletion
  std::string text;               // kText
  std::string chosen, rejected;   // kPreference
  // kChatPreference: preferred_output / non_preferred_output.
  std::vector<Message> chosen_messages, rejected_messages;
};

struct DatasetLimits {
  // Longest accepted line, in bytes, excluding the newline.
  size_t max_line_bytes = 8 << 20;
  // Validation stops collecting errors after this many (it keeps counting).
  size_t max_errors = 20;
};

// Parses one line (without its "\n"). `line_number` is 1-based and is used in
// error messages and to decide whether a BOM is allowed. Returns NOT_FOUND
// for a line that is to be skipped (empty or whitespace only), and
// INVALID_ARGUMENT (message "line N: field: why") for a bad line.
absl::StatusOr<Example> ParseExampleLine(absl::string_view line,
                                         int64_t line_number,
                                         const DatasetLimits& limits = {});

// Returns the byte offset of the first invalid UTF-8 sequence in `text`
// (overlong forms, surrogates and code points above U+10FFFF are invalid),
// or -1 when `text` is valid UTF-8.
int64_t FindInvalidUtf8(absl::string_view text);

struct ValidationReport {
  DatasetFormat format = DatasetFormat::kUnknown;
  int64_t lines = 0;                // lines seen, including skipped blank ones.
  int64_t examples = 0;             // valid example lines.
  int64_t error_count = 0;          // all bad lines (and file-level errors)
  std::vector<std::string> errors;  // the first limits.max_errors of them
  bool ok() const { return error_count == 0 && examples > 0; }
  // OK, or INVALID_ARGUMENT with the errors joined by "; " (and "(N more)").
  absl::Status ToStatus() const;
};

// Validates a dataset fed in arbitrary chunks (an upload stream) without
// holding more than one line in memory. Not thread-safe.
//
//   DatasetValidator v;
//   for (chunk : stream) v.Add(chunk);
//   ValidationReport r = v.Finish();
class DatasetValidator {
 public:
  explicit DatasetValidator(DatasetLimits limits = {});
  void Add(absl::string_view chunk);
  // Handles a last line without "\n". Call once; Add() must not follow.
  ValidationReport Finish();

 private:
  void Line(absl::string_view line);
  void Error(std::string message);

  DatasetLimits limits_;
  std::string pending_;
  bool overlong_ = false;  // skipping the rest of an overlong line
  int64_t first_format_line_ = 0;
  ValidationReport report_;
};

// Validates a whole file from disk (NOT_FOUND/INTERNAL if it cannot be read).
absl::StatusOr<ValidationReport> ValidateDatasetFile(
    const std::string& path, const DatasetLimits& limits = {});

struct ParsedDataset {
  DatasetFormat format = DatasetFormat::kUnknown;
  std::vector<Example> examples;  // in file order
};

// Parses a whole dataset held in memory. Any bad line fails the whole
// dataset with ValidationReport::ToStatus()'s INVALID_ARGUMENT; so does a
// dataset with no examples.
absl::StatusOr<ParsedDataset> ParseDataset(absl::string_view contents,
                                           const DatasetLimits& limits = {});

}  // namespace ftune

#endif  // FTUNE_COMMON_DATASET_H_
