// Prompts for generation (generate.h): the lines of a prompts file
// (`ftune-train generate --prompts FILE.jsonl`, a spec's samples
// prompts_file) and the validation examples a run samples from, each as
// the Example whose prompt TokenizePrompt (chat_template.h) renders, plus
// the reference completion when there is one.
//
// A prompts line is a JSON object with one of
//   {"prompt": "...", "completion": "..." (optional: the expected one)}
//   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."},
//                 ...]}   a trailing assistant message is the expected
//                         completion, not part of the prompt
//   {"text": "..."}       continued as it is
// Other keys are ignored. Blank lines are skipped.
//
// Plain C++ (no LibTorch). Thread-safety: pure functions.
#ifndef FTUNE_WORKER_TRAIN_TEXT_PROMPTS_H_
#define FTUNE_WORKER_TRAIN_TEXT_PROMPTS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dataset.h"

namespace ftune::train {

struct GenerationPrompt {
  // Format messages (never ending with an assistant message),
  // prompt_completion (completion unused) or text.
  Example example;
  // The reference completion: a prompt/completion example's completion, a
  // conversation's final assistant message; nullopt when there is none.
  std::optional<std::string> expected;
  // One string to show for the prompt: the prompt or text; for messages,
  // the last user message, or "role: content" lines when the conversation
  // has more than one non-system message.
  std::string display;
};

// A dataset example (common/dataset.h) as a prompt and its expectation.
GenerationPrompt PromptFromExample(const Example& example);

// One prompts-file line (1-based `line_number`). NOT_FOUND for a blank
// line; INVALID_ARGUMENT "line N: field: why".
absl::StatusOr<GenerationPrompt> ParsePromptLine(absl::string_view line,
                                                 int64_t line_number);
// Every prompt of a file's contents, in order. INVALID_ARGUMENT (the first
// bad line) or for a file with none.
absl::StatusOr<std::vector<GenerationPrompt>> ParsePrompts(
    absl::string_view contents);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_TEXT_PROMPTS_H_
