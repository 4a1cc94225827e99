#include "worker/train/text/prompts.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

namespace ftune::train {
namespace {

using nlohmann::json;

absl::Status Bad(int64_t line, absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("line ", line, ": ", field, ": ", why));
}

std::string Display(const Example& ex) {
  switch (ex.format) {
    case DatasetFormat::kMessages:
    case DatasetFormat::kChatPreference: {
      std::vector<const Message*> turns;
      for (const Message& m : ex.messages)
        if (m.role != Role::kSystem) turns.push_back(&m);
      if (turns.size() == 1) return turns[0]->content;
      std::string out;
      for (const Message* m : turns)
        absl::StrAppend(&out, out.empty() ? "" : "\n", RoleName(m->role), ": ",
                        m->content);
      return out;
    }
    case DatasetFormat::kPromptCompletion:
    case DatasetFormat::kPreference:
      return ex.prompt;
    case DatasetFormat::kText:
      return ex.text;
    case DatasetFormat::kUnknown:
      break;
  }
  return "";
}

}  // namespace

GenerationPrompt PromptFromExample(const Example& example) {
  GenerationPrompt p;
  p.example = example;
  if (example.format == DatasetFormat::kPromptCompletion) {
    if (!example.completion.empty()) p.expected = example.completion;
    p.example.completion.clear();
  } else if (example.format == DatasetFormat::kMessages &&
             !p.example.messages.empty() &&
             p.example.messages.back().role == Role::kAssistant) {
    p.expected = p.example.messages.back().content;
    p.example.messages.pop_back();
  }
  p.display = Display(p.example);
  return p;
}

absl::StatusOr<GenerationPrompt> ParsePromptLine(absl::string_view line,
                                                 int64_t n) {
  line = absl::StripAsciiWhitespace(line);
  if (line.empty()) return absl::NotFoundError("blank line");
  const json j = json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError(
        absl::StrCat("line ", n, ": not a JSON object"));
  Example ex;
  ex.line_number = n;
  const int formats = static_cast<int>(j.contains("messages")) +
                      static_cast<int>(j.contains("prompt")) +
                      static_cast<int>(j.contains("text"));
  if (formats != 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "line ", n,
        ": needs exactly one of \"prompt\", \"messages\" or \"text\""));
  if (j.contains("prompt")) {
    ex.format = DatasetFormat::kPromptCompletion;
    if (!j["prompt"].is_string()) return Bad(n, "prompt", "must be a string");
    ex.prompt = j["prompt"].get<std::string>();
    if (j.contains("completion")) {
      if (!j["completion"].is_string())
        return Bad(n, "completion", "must be a string");
      ex.completion = j["completion"].get<std::string>();
    }
  } else if (j.contains("text")) {
    ex.format = DatasetFormat::kText;
    if (!j["text"].is_string()) return Bad(n, "text", "must be a string");
    ex.text = j["text"].get<std::string>();
  } else {
    ex.format = DatasetFormat::kMessages;
    const json& ms = j["messages"];
    if (!ms.is_array() || ms.empty())
      return Bad(n, "messages", "must be a non-empty array");
    for (size_t i = 0; i < ms.size(); ++i) {
      const std::string field = absl::StrCat("messages[", i, "]");
      const json& m = ms[i];
      if (!m.is_object()) return Bad(n, field, "must be an object");
      if (!m.contains("role") || !m["role"].is_string())
        return Bad(n, field + ".role", "must be a string");
      if (!m.contains("content") || !m["content"].is_string())
        return Bad(n, field + ".content", "must be a string");
      Message msg;
      const std::string role = m["role"].get<std::string>();
      if (role == "system") {
        msg.role = Role::kSystem;
      } else if (role == "user") {
        msg.role = Role::kUser;
      } else if (role == "assistant") {
        msg.role = Role::kAssistant;
      } else {
        return Bad(n, field + ".role",
                   absl::StrCat("unknown role \"", role,
                                "\" (expected system, user, assistant)"));
      }
      msg.content = m["content"].get<std::string>();
      ex.messages.push_back(std::move(msg));
    }
    if (ex.messages.size() == 1 && ex.messages[0].role == Role::kAssistant)
      return Bad(n, "messages", "has only an assistant message: no prompt");
  }
  return PromptFromExample(ex);
}

absl::StatusOr<std::vector<GenerationPrompt>> ParsePrompts(
    absl::string_view contents) {
  std::vector<GenerationPrompt> out;
  int64_t n = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++n;
    absl::StatusOr<GenerationPrompt> p = ParsePromptLine(line, n);
    if (absl::IsNotFound(p.status())) continue;
    if (!p.ok()) return p.status();
    out.push_back(*std::move(p));
  }
  if (out.empty()) return absl::InvalidArgumentError("no prompts");
  return out;
}

}  // namespace ftune::train
