#include "worker/train/text_generation.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace ftune::train {

absl::StatusOr<std::unique_ptr<TextGenerator>> TextGenerator::Create(
    const std::string& tokenizer_dir, const std::string& model_dir,
    const std::string& chat_template) {
  std::unique_ptr<TextGenerator> g(new TextGenerator());
  FTUNE_ASSIGN_OR_RETURN(g->tokenizer_, LoadTokenizer(tokenizer_dir));
  g->chat_template_name_ = chat_template;
  const std::string gen_config = JoinPath(model_dir, "generation_config.json");
  if (access(gen_config.c_str(), F_OK) == 0) {
    FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFile(gen_config));
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_object() && j.contains("eos_token_id")) {
      const nlohmann::json& e = j["eos_token_id"];
      if (e.is_number_integer())
        g->config_end_tokens_.push_back(e.get<int32_t>());
      if (e.is_array()) {
        for (const auto& x : e)
          if (x.is_number_integer())
            g->config_end_tokens_.push_back(x.get<int32_t>());
      }
    }
  }
  return g;
}

absl::StatusOr<ChatTemplate> TextGenerator::Template() {
  if (!chat_template_) {
    FTUNE_ASSIGN_OR_RETURN(
        chat_template_,
        ResolveChatTemplate(chat_template_name_, tokenizer_->config()));
  }
  return *chat_template_;
}

absl::StatusOr<std::vector<int32_t>> TextGenerator::Render(
    const GenerationPrompt& prompt) {
  ChatTemplate t = ChatTemplate::kChatML;  // unused unless messages
  if (prompt.example.format == DatasetFormat::kMessages) {
    FTUNE_ASSIGN_OR_RETURN(t, Template());
  }
  return TokenizePrompt(prompt.example, t, *tokenizer_);
}

absl::StatusOr<std::vector<Completion>> TextGenerator::Run(
    Model& model, const std::vector<GenerationPrompt>& prompts,
    const contract::GenerationSpec& spec, int64_t batch_size,
    GenerationStats* stats) {
  std::vector<std::vector<int32_t>> ids;
  StopConditions stop;
  stop.end_tokens = config_end_tokens_;
  for (const GenerationPrompt& p : prompts) {
    FTUNE_ASSIGN_OR_RETURN(std::vector<int32_t> t, Render(p));
    ids.push_back(std::move(t));
    ChatTemplate tmpl = ChatTemplate::kChatML;
    if (p.example.format == DatasetFormat::kMessages) {
      FTUNE_ASSIGN_OR_RETURN(tmpl, Template());
    }
    for (int32_t id : CompletionEndTokens(p.example.format, tmpl, *tokenizer_))
      stop.end_tokens.push_back(id);
  }
  std::sort(stop.end_tokens.begin(), stop.end_tokens.end());
  stop.end_tokens.erase(
      std::unique(stop.end_tokens.begin(), stop.end_tokens.end()),
      stop.end_tokens.end());
  const Tokenizer* tok = tokenizer_.get();
  stop.decode = [tok](absl::Span<const int32_t> t) {
    return tok->Decode(t, /*skip_special=*/true);
  };
  return Generate(model, ids, spec, stop, batch_size, stats);
}

}  // namespace ftune::train
