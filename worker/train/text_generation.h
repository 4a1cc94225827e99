// Generation from text prompts (text/prompts.h) to text completions: the
// model directory's tokenizer, the chat template training uses (for
// messages prompts), the end tokens of each prompt format (eos, the
// template's end of turn, and generation_config.json's eos_token_id), then
// Generate (generate.h). Used by `ftune-train generate` and by the sample
// completions of a training run.
//
// Thread-compatible; Run may throw c10::Error as Generate does.
#ifndef FTUNE_WORKER_TRAIN_TEXT_GENERATION_H_
#define FTUNE_WORKER_TRAIN_TEXT_GENERATION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/contract/generation.h"
#include "worker/train/generate.h"
#include "worker/train/text/chat_template.h"
#include "worker/train/text/prompts.h"
#include "worker/train/text/tokenizer.h"

namespace ftune::train {

class TextGenerator {
 public:
  // The tokenizer of `tokenizer_dir`; generation_config.json of `model_dir`
  // if it has one. `chat_template`: a name or "auto" (resolved when a
  // messages prompt needs it).
  static absl::StatusOr<std::unique_ptr<TextGenerator>> Create(
      const std::string& tokenizer_dir, const std::string& model_dir,
      const std::string& chat_template);

  // The prompt's tokens (TokenizePrompt); errors name the prompt's line.
  absl::StatusOr<std::vector<int32_t>> Render(const GenerationPrompt& prompt);

  // Completions of `prompts` in order (Generate's errors, and Render's).
  absl::StatusOr<std::vector<Completion>> Run(
      Model& model, const std::vector<GenerationPrompt>& prompts,
      const contract::GenerationSpec& spec, int64_t batch_size,
      GenerationStats* stats);

  const Tokenizer& tokenizer() const { return *tokenizer_; }

 private:
  TextGenerator() = default;
  absl::StatusOr<ChatTemplate> Template();

  std::unique_ptr<Tokenizer> tokenizer_;
  std::string chat_template_name_;
  std::optional<ChatTemplate> chat_template_;
  std::vector<int32_t> config_end_tokens_;  // generation_config.json
};

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_TEXT_GENERATION_H_
