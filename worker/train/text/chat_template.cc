// Rendering of examples through the chat templates (see chat_template.h).
#include "worker/train/text/chat_template.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace ftune::train {
namespace {

constexpr absl::string_view kAlpacaPreamble =
    "Below is an instruction that describes a task. Write a response that "
    "appropriately completes the request.";

// Accumulates token ids and their mask.
class Builder {
 public:
  Builder(const Tokenizer& tok, int64_t line) : tok_(tok) {
    out_.line_number = line;
  }

  absl::Status Special(absl::string_view token, bool train) {
    std::optional<int32_t> id = tok_.TokenToId(token);
    if (!id.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the tokenizer has no token \"", token,
                       "\" that the chat template needs"));
    }
    Push(*id, train);
    return absl::OkStatus();
  }
  absl::Status Eos(bool train) {
    if (tok_.eos_id() < 0) {
      return absl::FailedPreconditionError(
          "the tokenizer has no eos token (set eos_token in "
          "tokenizer_config.json)");
    }
    Push(tok_.eos_id(), train);
    return absl::OkStatus();
  }
  void BosIfConfigured() {
    if (tok_.config().add_bos_token && tok_.bos_id() >= 0)
      Push(tok_.bos_id(), false);
  }
  // Text never parses special tokens. `continues`: the text directly follows
  // earlier text (no SentencePiece dummy prefix).
  void Text(absl::string_view text, bool train, bool continues) {
    if (text.empty()) return;
    EncodeOptions opts;
    opts.parse_special = false;
    opts.add_prefix_space = !continues;
    for (int32_t id : tok_.Encode(text, opts)) Push(id, train);
  }
  TokenizedExample Take() { return std::move(out_); }

 private:
  void Push(int32_t id, bool train) {
    out_.ids.push_back(id);
    out_.loss_mask.push_back(train ? 1 : 0);
  }
  const Tokenizer& tok_;
  TokenizedExample out_;
};

absl::Status LineError(const Example& ex, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("line ", ex.line_number, ": ", what));
}

absl::Status RenderChatML(const Example& ex, Builder* b) {
  b->BosIfConfigured();
  for (const Message& m : ex.messages) {
    const bool train = m.role == Role::kAssistant && m.trainable;
    FTUNE_RETURN_IF_ERROR(b->Special("<|im_start|>", false));
    b->Text(absl::StrCat(RoleName(m.role), "\n"), false, /*continues=*/false);
    b->Text(m.content, train, /*continues=*/true);
    FTUNE_RETURN_IF_ERROR(b->Special("<|im_end|>", train));
    b->Text("\n", false, /*continues=*/false);
  }
  return absl::OkStatus();
}

absl::Status RenderLlama3(const Example& ex, Builder* b) {
  FTUNE_RETURN_IF_ERROR(b->Special("<|begin_of_text|>", false));
  for (const Message& m : ex.messages) {
    const bool train = m.role == Role::kAssistant && m.trainable;
    FTUNE_RETURN_IF_ERROR(b->Special("<|start_header_id|>", false));
    b->Text(RoleName(m.role), false, false);
    FTUNE_RETURN_IF_ERROR(b->Special("<|end_header_id|>", false));
    b->Text("\n\n", false, false);
    b->Text(absl::StripAsciiWhitespace(m.content), train, /*continues=*/true);
    FTUNE_RETURN_IF_ERROR(b->Special("<|eot_id|>", train));
  }
  return absl::OkStatus();
}

absl::Status RenderLlama2(const Example& ex, const Tokenizer& tok, Builder* b) {
  if (tok.bos_id() < 0) {
    return absl::FailedPreconditionError(
        "llama2 template: the tokenizer has no bos token");
  }
  size_t i = 0;
  std::string system;
  if (!ex.messages.empty() && ex.messages[0].role == Role::kSystem) {
    system = std::string(absl::StripAsciiWhitespace(ex.messages[0].content));
    i = 1;
  }
  bool first_turn = true;
  for (; i < ex.messages.size(); i += 2) {
    const Message& user = ex.messages[i];
    if (user.role != Role::kUser) {
      return LineError(
          ex, absl::StrCat("messages[", i,
                           "]: llama2 template needs a user message "
                           "here (user and assistant must alternate)"));
    }
    std::string prompt = "[INST] ";
    if (first_turn && !system.empty()) {
      absl::StrAppend(&prompt, "<<SYS>>\n", system, "\n<</SYS>>\n\n");
    }
    absl::StrAppend(&prompt, absl::StripAsciiWhitespace(user.content),
                    " [/INST]");
    FTUNE_RETURN_IF_ERROR(b->Special(tok.IdToToken(tok.bos_id()), false));
    b->Text(prompt, false, /*continues=*/false);
    first_turn = false;
    if (i + 1 >= ex.messages.size()) break;  // trailing user turn: no answer
    const Message& reply = ex.messages[i + 1];
    if (reply.role != Role::kAssistant) {
      return LineError(ex, absl::StrCat("messages[", i + 1,
                                        "]: llama2 template needs an assistant "
                                        "message here (user and assistant must "
                                        "alternate)"));
    }
    const bool train = reply.trainable;
    b->Text(absl::StrCat(" ", absl::StripAsciiWhitespace(reply.content), " "),
            train,
            /*continues=*/true);
    FTUNE_RETURN_IF_ERROR(b->Eos(train));
  }
  return absl::OkStatus();
}

absl::Status RenderAlpaca(const Example& ex, Builder* b) {
  b->BosIfConfigured();
  size_t i = 0;
  std::string preamble(kAlpacaPreamble);
  if (!ex.messages.empty() && ex.messages[0].role == Role::kSystem) {
    preamble = ex.messages[0].content;
    i = 1;
  }
  b->Text(absl::StrCat(preamble, "\n\n"), false, /*continues=*/false);
  for (; i < ex.messages.size(); ++i) {
    const Message& m = ex.messages[i];
    if (m.role == Role::kUser) {
      b->Text(absl::StrCat("### Instruction:\n", m.content, "\n\n"), false,
              true);
    } else {
      b->Text("### Response:\n", false, true);
      b->Text(m.content, m.trainable, true);
      FTUNE_RETURN_IF_ERROR(b->Eos(m.trainable));
      if (i + 1 < ex.messages.size()) b->Text("\n\n", false, false);
    }
  }
  return absl::OkStatus();
}

// Phi-3 / Phi-3.5: <|role|>\n{content}<|end|>\n per message, then the
// tokenizer's eos (the template appends it when no generation prompt
// follows).
absl::Status RenderPhi3(const Example& ex, Builder* b,
                        bool generation_prompt = false) {
  b->BosIfConfigured();
  for (const Message& m : ex.messages) {
    const bool train = m.role == Role::kAssistant && m.trainable;
    FTUNE_RETURN_IF_ERROR(
        b->Special(absl::StrCat("<|", RoleName(m.role), "|>"), false));
    b->Text("\n", false, /*continues=*/false);
    b->Text(m.content, train, /*continues=*/true);
    FTUNE_RETURN_IF_ERROR(b->Special("<|end|>", train));
    b->Text("\n", false, /*continues=*/false);
  }
  if (generation_prompt) {
    FTUNE_RETURN_IF_ERROR(b->Special("<|assistant|>", false));
    b->Text("\n", false, /*continues=*/false);
    return absl::OkStatus();
  }
  return b->Eos(false);
}

// Gemma (2): [bos]<start_of_turn>{user|model}\n{content|trim}<end_of_turn>\n
// per message; no system role, and user and model turns alternate,
// starting with the user (the template refuses anything else).
absl::Status RenderGemma(const Example& ex, const Tokenizer& tok, Builder* b) {
  if (tok.bos_id() < 0) {
    return absl::FailedPreconditionError(
        "gemma template: the tokenizer has no bos token");
  }
  FTUNE_RETURN_IF_ERROR(b->Special(tok.IdToToken(tok.bos_id()), false));
  for (size_t i = 0; i < ex.messages.size(); ++i) {
    const Message& m = ex.messages[i];
    if (m.role == Role::kSystem) {
      return LineError(ex, absl::StrCat("messages[", i,
                                        "]: the gemma template has no system "
                                        "role (put it in the first user "
                                        "message)"));
    }
    if ((m.role == Role::kUser) != (i % 2 == 0)) {
      return LineError(ex, absl::StrCat("messages[", i,
                                        "]: gemma template needs user and "
                                        "assistant to alternate, starting "
                                        "with user"));
    }
    const bool train = m.role == Role::kAssistant && m.trainable;
    FTUNE_RETURN_IF_ERROR(b->Special("<start_of_turn>", false));
    b->Text(m.role == Role::kAssistant ? "model\n" : "user\n", false,
            /*continues=*/false);
    b->Text(absl::StripAsciiWhitespace(m.content), train, /*continues=*/true);
    FTUNE_RETURN_IF_ERROR(b->Special("<end_of_turn>", train));
    b->Text("\n", false, /*continues=*/false);
  }
  return absl::OkStatus();
}

// Renders messages through `t`; with `generation_prompt`, opens the
// assistant turn that a completion continues (see TokenizePrompt).
absl::Status RenderMessages(const Example& ex, ChatTemplate t,
                            const Tokenizer& tok, bool generation_prompt,
                            Builder* b) {
  switch (t) {
    case ChatTemplate::kChatML:
      FTUNE_RETURN_IF_ERROR(RenderChatML(ex, b));
      if (generation_prompt) {
        FTUNE_RETURN_IF_ERROR(b->Special("<|im_start|>", false));
        b->Text("assistant\n", false, /*continues=*/false);
      }
      return absl::OkStatus();
    case ChatTemplate::kLlama3:
      FTUNE_RETURN_IF_ERROR(RenderLlama3(ex, b));
      if (generation_prompt) {
        FTUNE_RETURN_IF_ERROR(b->Special("<|start_header_id|>", false));
        b->Text("assistant", false, false);
        FTUNE_RETURN_IF_ERROR(b->Special("<|end_header_id|>", false));
        b->Text("\n\n", false, false);
      }
      return absl::OkStatus();
    case ChatTemplate::kLlama2:
      // A trailing user turn already ends with "[/INST]".
      return RenderLlama2(ex, tok, b);
    case ChatTemplate::kAlpaca:
      FTUNE_RETURN_IF_ERROR(RenderAlpaca(ex, b));
      if (generation_prompt) b->Text("### Response:\n", false, true);
      return absl::OkStatus();
    case ChatTemplate::kPhi3:
      return RenderPhi3(ex, b, generation_prompt);
    case ChatTemplate::kGemma:
      FTUNE_RETURN_IF_ERROR(RenderGemma(ex, tok, b));
      if (generation_prompt) {
        FTUNE_RETURN_IF_ERROR(b->Special("<start_of_turn>", false));
        b->Text("model\n", false, /*continues=*/false);
      }
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError("unknown chat template");
}

}  // namespace

absl::string_view ChatTemplateName(ChatTemplate t) {
  switch (t) {
    case ChatTemplate::kChatML:
      return "chatml";
    case ChatTemplate::kLlama3:
      return "llama3";
    case ChatTemplate::kLlama2:
      return "llama2";
    case ChatTemplate::kAlpaca:
      return "alpaca";
    case ChatTemplate::kPhi3:
      return "phi3";
    case ChatTemplate::kGemma:
      return "gemma";
  }
  return "?";
}

absl::StatusOr<ChatTemplate> ResolveChatTemplate(
    absl::string_view name, const TokenizerConfig& config) {
  if (name == "chatml") return ChatTemplate::kChatML;
  if (name == "llama3") return ChatTemplate::kLlama3;
  if (name == "llama2") return ChatTemplate::kLlama2;
  if (name == "alpaca") return ChatTemplate::kAlpaca;
  if (name == "phi3") return ChatTemplate::kPhi3;
  if (name == "gemma") return ChatTemplate::kGemma;
  if (name != "auto") {
    return absl::InvalidArgumentError(absl::StrCat(
        "chat_template: unknown \"", name,
        "\" (expected chatml, llama3, llama2, alpaca, phi3, gemma, auto)"));
  }
  const std::string& t = config.chat_template;
  if (t.empty()) {
    return absl::InvalidArgumentError(
        "chat_template: \"auto\" but tokenizer_config.json has no "
        "chat_template; "
        "name one of chatml, llama3, llama2, alpaca, phi3, gemma");
  }
  if (absl::StrContains(t, "<|im_start|>")) return ChatTemplate::kChatML;
  if (absl::StrContains(t, "<|start_header_id|>")) return ChatTemplate::kLlama3;
  if (absl::StrContains(t, "<start_of_turn>")) return ChatTemplate::kGemma;
  if (absl::StrContains(t, "<|assistant|>") && absl::StrContains(t, "<|end|>"))
    return ChatTemplate::kPhi3;
  if (absl::StrContains(t, "[INST]")) return ChatTemplate::kLlama2;
  if (absl::StrContains(t, "### Instruction")) return ChatTemplate::kAlpaca;
  return absl::InvalidArgumentError(
      "chat_template: \"auto\" but the chat_template in tokenizer_config.json "
      "is "
      "none of chatml, llama3, llama2, alpaca, phi3, gemma; name one "
      "explicitly");
}

absl::StatusOr<TokenizedExample> TokenizeExample(const Example& example,
                                                 ChatTemplate chat_template,
                                                 const Tokenizer& tokenizer) {
  Builder b(tokenizer, example.line_number);
  switch (example.format) {
    case DatasetFormat::kMessages:
      FTUNE_RETURN_IF_ERROR(RenderMessages(example, chat_template, tokenizer,
                                           /*generation_prompt=*/false, &b));
      break;
    case DatasetFormat::kPromptCompletion:
      b.BosIfConfigured();
      b.Text(example.prompt, false, false);
      b.Text(example.completion, true, /*continues=*/!example.prompt.empty());
      FTUNE_RETURN_IF_ERROR(b.Eos(true));
      break;
    case DatasetFormat::kText:
      b.BosIfConfigured();
      b.Text(example.text, true, false);
      FTUNE_RETURN_IF_ERROR(b.Eos(true));
      break;
    case DatasetFormat::kPreference:
    case DatasetFormat::kChatPreference:
      // dataset_builder.cc tokenizes a pair one side at a time (PairSide).
      return LineError(example,
                       "a preference pair is tokenized one side at a time");
    case DatasetFormat::kUnknown:
      return LineError(example, "example has no format");
  }
  return b.Take();
}

absl::StatusOr<std::vector<int32_t>> TokenizePrompt(
    const Example& example, ChatTemplate chat_template,
    const Tokenizer& tokenizer) {
  Builder b(tokenizer, example.line_number);
  switch (example.format) {
    case DatasetFormat::kMessages:
    case DatasetFormat::kChatPreference:  // `messages` holds its input turns
      if (example.messages.empty() ||
          example.messages.back().role == Role::kAssistant) {
        return LineError(example,
                         "messages: a prompt must end with a user (or "
                         "system) message, not an assistant's");
      }
      FTUNE_RETURN_IF_ERROR(RenderMessages(example, chat_template, tokenizer,
                                           /*generation_prompt=*/true, &b));
      break;
    case DatasetFormat::kPromptCompletion:
    case DatasetFormat::kPreference:
      b.BosIfConfigured();
      b.Text(example.prompt, false, false);
      break;
    case DatasetFormat::kText:
      b.BosIfConfigured();
      b.Text(example.text, false, false);
      break;
    case DatasetFormat::kUnknown:
      return LineError(example, "example has no format");
  }
  return b.Take().ids;
}

std::vector<int32_t> CompletionEndTokens(DatasetFormat format,
                                         ChatTemplate chat_template,
                                         const Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  if (tokenizer.eos_id() >= 0) ids.push_back(tokenizer.eos_id());
  if (format == DatasetFormat::kMessages) {
    const char* end = nullptr;
    switch (chat_template) {
      case ChatTemplate::kChatML:
        end = "<|im_end|>";
        break;
      case ChatTemplate::kLlama3:
        end = "<|eot_id|>";
        break;
      case ChatTemplate::kPhi3:
        end = "<|end|>";
        break;
      case ChatTemplate::kGemma:
        end = "<end_of_turn>";
        break;
      case ChatTemplate::kLlama2:
      case ChatTemplate::kAlpaca:
        break;  // eos ends the turn
    }
    if (end != nullptr) {
      if (std::optional<int32_t> id = tokenizer.TokenToId(end)) {
        ids.push_back(*id);
      }
    }
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

}  // namespace ftune::train
