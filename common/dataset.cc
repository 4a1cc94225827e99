// JSONL training-data parsing and validation (see dataset.h for the rules).
#include "common/dataset.h"

#include <fstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/quote.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace ftune {
namespace {

using nlohmann::json;

constexpr absl::string_view kBom = "\xEF\xBB\xBF";

absl::Status LineError(int64_t line_number, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("line ", line_number, ": ", what));
}

bool IsBlank(absl::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '\f' &&
        c != '\v') {
      return false;
    }
  }
  return true;
}

absl::string_view JsonTypeName(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return "a number";
    default:
      return "an unsupported value";
  }
}

// Reads `obj[key]` as a string; `field` names it in errors.
absl::Status GetString(const json& obj, const char* key,
                       absl::string_view field, int64_t line_number,
                       std::string* out) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    return LineError(line_number, absl::StrCat(field, ": missing"));
  }
  if (!it->is_string()) {
    return LineError(
        line_number,
        absl::StrCat(field, ": expected a string, got ", JsonTypeName(*it)));
  }
  *out = it->get<std::string>();
  return absl::OkStatus();
}

// A list of messages at `path` ("messages", "input.messages"): a non-empty
// array of {"role", "content"[, "weight"]} objects, a system message only
// first. Appended to `out`.
absl::Status ParseMessageList(const json& msgs, const std::string& path,
                              int64_t n, std::vector<Message>* out) {
  if (!msgs.is_array()) {
    return LineError(
        n, absl::StrCat(path, ": expected an array, got ", JsonTypeName(msgs)));
  }
  if (msgs.empty()) return LineError(n, absl::StrCat(path, ": empty array"));
  for (size_t i = 0; i < msgs.size(); ++i) {
    const std::string field = absl::StrCat(path, "[", i, "]");
    const json& m = msgs[i];
    if (!m.is_object()) {
      return LineError(n, absl::StrCat(field, ": expected an object, got ",
                                       JsonTypeName(m)));
    }
    std::string role;
    FTUNE_RETURN_IF_ERROR(
        GetString(m, "role", absl::StrCat(field, ".role"), n, &role));
    Message msg;
    if (role == "system") {
      msg.role = Role::kSystem;
      if (i != 0) {
        return LineError(n, absl::StrCat(field,
                                         ".role: a system message may only be "
                                         "the first message"));
      }
    } else if (role == "user") {
      msg.role = Role::kUser;
    } else if (role == "assistant") {
      msg.role = Role::kAssistant;
    } else {
      return LineError(
          n, absl::StrCat(field, ".role: unknown role ", QuoteValue(role),
                          " (expected system, user, assistant)"));
    }
    FTUNE_RETURN_IF_ERROR(GetString(
        m, "content", absl::StrCat(field, ".content"), n, &msg.content));
    auto w = m.find("weight");
    if (w != m.end()) {
      if (msg.role != Role::kAssistant) {
        return LineError(n, absl::StrCat(field,
                                         ".weight: only assistant messages "
                                         "may have a weight"));
      }
      if (!w->is_number() || (*w != 0 && *w != 1)) {
        return LineError(
            n, absl::StrCat(field, ".weight: expected 0 or 1, got ",
                            TruncateMessage(w->dump(), kMaxQuotedBytes)));
      }
      msg.trainable = (*w == 1);
    }
    if (msg.role == Role::kAssistant && msg.content.empty()) {
      return LineError(
          n, absl::StrCat(field, ".content: empty assistant message"));
    }
    out->push_back(std::move(msg));
  }
  return absl::OkStatus();
}

absl::Status ParseMessages(const json& obj, int64_t n, Example* ex) {
  FTUNE_RETURN_IF_ERROR(
      ParseMessageList(obj.at("messages"), "messages", n, &ex->messages));
  bool has_trainable_assistant = false;
  bool has_assistant = false;
  for (const Message& m : ex->messages) {
    if (m.role != Role::kAssistant) continue;
    has_assistant = true;
    if (m.trainable) has_trainable_assistant = true;
  }
  if (!has_assistant) {
    return LineError(n, "messages: no assistant message (nothing to train on)");
  }
  if (!has_trainable_assistant) {
    return LineError(n,
                     "messages: every assistant message has weight 0 "
                     "(nothing to train on)");
  }
  return absl::OkStatus();
}

// {"prompt", "chosen", "rejected"}: strings; chosen and rejected non-empty
// and different; the prompt may be empty.
absl::Status ParsePreference(const json& obj, int64_t n, Example* ex) {
  FTUNE_RETURN_IF_ERROR(GetString(obj, "prompt", "prompt", n, &ex->prompt));
  FTUNE_RETURN_IF_ERROR(GetString(obj, "chosen", "chosen", n, &ex->chosen));
  FTUNE_RETURN_IF_ERROR(
      GetString(obj, "rejected", "rejected", n, &ex->rejected));
  if (ex->chosen.empty()) return LineError(n, "chosen: empty");
  if (ex->rejected.empty()) return LineError(n, "rejected: empty");
  if (ex->chosen == ex->rejected) {
    return LineError(n,
                     "rejected: the same text as chosen (the pair teaches "
                     "nothing)");
  }
  return absl::OkStatus();
}

// OpenAI's DPO lines: {"input": {"messages": [...]}, "preferred_output":
// [assistant messages], "non_preferred_output": [assistant messages]}. The
// input ends with a user message; the outputs are non-empty, assistant only,
// and differ.
absl::Status ParseChatPreference(const json& obj, int64_t n, Example* ex) {
  auto input = obj.find("input");
  if (input == obj.end()) return LineError(n, "input: missing");
  if (!input->is_object()) {
    return LineError(n, absl::StrCat("input: expected an object, got ",
                                     JsonTypeName(*input)));
  }
  auto msgs = input->find("messages");
  if (msgs == input->end()) return LineError(n, "input.messages: missing");
  FTUNE_RETURN_IF_ERROR(
      ParseMessageList(*msgs, "input.messages", n, &ex->messages));
  if (ex->messages.back().role != Role::kUser) {
    return LineError(n, absl::StrCat("input.messages[", ex->messages.size() - 1,
                                     "].role: the input must end with a user "
                                     "message (the outputs answer it)"));
  }
  for (auto [key, out] : {std::pair<const char*, std::vector<Message>*>{
                              "preferred_output", &ex->chosen_messages},
                          {"non_preferred_output", &ex->rejected_messages}}) {
    auto it = obj.find(key);
    if (it == obj.end()) return LineError(n, absl::StrCat(key, ": missing"));
    FTUNE_RETURN_IF_ERROR(ParseMessageList(*it, key, n, out));
    for (size_t i = 0; i < out->size(); ++i) {
      if ((*out)[i].role != Role::kAssistant) {
        return LineError(n, absl::StrCat(key, "[", i,
                                         "].role: outputs are assistant "
                                         "messages"));
      }
    }
  }
  auto same = [](const std::vector<Message>& a, const std::vector<Message>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i].content != b[i].content) return false;
    }
    return true;
  };
  if (same(ex->chosen_messages, ex->rejected_messages)) {
    return LineError(n,
                     "non_preferred_output: the same as preferred_output "
                     "(the pair teaches nothing)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view DatasetFormatName(DatasetFormat format) {
  switch (format) {
    case DatasetFormat::kMessages:
      return "messages";
    case DatasetFormat::kPromptCompletion:
      return "prompt_completion";
    case DatasetFormat::kText:
      return "text";
    case DatasetFormat::kPreference:
      return "preference";
    case DatasetFormat::kChatPreference:
      return "chat_preference";
    case DatasetFormat::kUnknown:
      break;
  }
  return "unknown";
}

bool IsPreferenceFormat(DatasetFormat format) {
  return format == DatasetFormat::kPreference ||
         format == DatasetFormat::kChatPreference;
}

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kSystem:
      return "system";
    case Role::kUser:
      return "user";
    case Role::kAssistant:
      return "assistant";
  }
  return "?";
}

int64_t FindInvalidUtf8(absl::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return static_cast<int64_t>(i);  // continuation byte, C0/C1, F5..FF
    }
    if (i + len > n) return static_cast<int64_t>(i);
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return static_cast<int64_t>(i);
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return static_cast<int64_t>(i);
    }
    i += len;
  }
  return -1;
}

absl::StatusOr<Example> ParseExampleLine(absl::string_view line,
                                         int64_t line_number,
                                         const DatasetLimits& limits) {
  const int64_t n = line_number;
  if (line.size() > limits.max_line_bytes) {
    return LineError(n, absl::StrCat("line is ", line.size(),
                                     " bytes, longer than the limit of ",
                                     limits.max_line_bytes));
  }
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (absl::StartsWith(line, kBom)) {
    if (line_number != 1) {
      return LineError(n,
                       "byte order mark (U+FEFF) is only allowed at the "
                       "start of the file");
    }
    line.remove_prefix(kBom.size());
  }
  if (IsBlank(line)) return absl::NotFoundError("blank line");
  const int64_t bad = FindInvalidUtf8(line);
  if (bad >= 0) {
    return LineError(n, absl::StrCat("invalid UTF-8 at byte ", bad + 1));
  }
  json obj;
  try {
    obj = json::parse(line.begin(), line.end());
  } catch (const json::exception& e) {
    // nlohmann's text: "[json.exception.parse_error.101] parse error at line
    // 1, column 5: syntax error ..."; keep what follows the bracket.
    std::string what = e.what();
    const size_t pos = what.find("] ");
    return LineError(
        n,
        absl::StrCat(
            "invalid JSON: ",
            // The parser quotes the token it stopped at, whole.
            TruncateMessage(
                pos == std::string::npos ? what : what.substr(pos + 2), 200)));
  }
  if (!obj.is_object()) {
    return LineError(
        n, absl::StrCat("expected a JSON object, got ", JsonTypeName(obj)));
  }
  // Which format's keys the line has; exactly one format's.
  const bool has_pref = obj.contains("chosen") || obj.contains("rejected");
  const bool has_chat_pref = obj.contains("input") ||
                             obj.contains("preferred_output") ||
                             obj.contains("non_preferred_output");
  const bool has_messages = obj.contains("messages");
  const bool has_pc =
      !has_pref && (obj.contains("prompt") || obj.contains("completion"));
  const bool has_text = obj.contains("text");
  const int kinds = int{has_messages} + int{has_pc} + int{has_text} +
                    int{has_pref} + int{has_chat_pref};
  if (kinds == 0) {
    return LineError(n,
                     "no \"messages\", \"prompt\"/\"completion\", \"text\", "
                     "\"prompt\"/\"chosen\"/\"rejected\" or "
                     "\"input\"/\"preferred_output\"/\"non_preferred_output\" "
                     "key");
  }
  if (kinds > 1 || (has_pref && obj.contains("completion"))) {
    return LineError(n,
                     "mixes the keys of several formats (use exactly one "
                     "of \"messages\", \"prompt\"+\"completion\", \"text\", "
                     "\"prompt\"+\"chosen\"+\"rejected\", \"input\"+"
                     "\"preferred_output\"+\"non_preferred_output\")");
  }
  Example ex;
  ex.line_number = line_number;
  if (has_messages) {
    ex.format = DatasetFormat::kMessages;
    FTUNE_RETURN_IF_ERROR(ParseMessages(obj, n, &ex));
  } else if (has_pc) {
    ex.format = DatasetFormat::kPromptCompletion;
    FTUNE_RETURN_IF_ERROR(GetString(obj, "prompt", "prompt", n, &ex.prompt));
    FTUNE_RETURN_IF_ERROR(
        GetString(obj, "completion", "completion", n, &ex.completion));
    if (ex.completion.empty()) return LineError(n, "completion: empty");
  } else if (has_pref) {
    ex.format = DatasetFormat::kPreference;
    FTUNE_RETURN_IF_ERROR(ParsePreference(obj, n, &ex));
  } else if (has_chat_pref) {
    ex.format = DatasetFormat::kChatPreference;
    FTUNE_RETURN_IF_ERROR(ParseChatPreference(obj, n, &ex));
  } else {
    ex.format = DatasetFormat::kText;
    FTUNE_RETURN_IF_ERROR(GetString(obj, "text", "text", n, &ex.text));
    if (ex.text.empty()) return LineError(n, "text: empty");
  }
  return ex;
}

absl::Status ValidationReport::ToStatus() const {
  if (error_count == 0 && examples > 0) return absl::OkStatus();
  if (error_count == 0) {
    return absl::InvalidArgumentError("dataset has no examples");
  }
  std::string msg = absl::StrJoin(errors, "; ");
  if (error_count > static_cast<int64_t>(errors.size())) {
    absl::StrAppend(&msg, "; (",
                    error_count - static_cast<int64_t>(errors.size()),
                    " more errors)");
  }
  return absl::InvalidArgumentError(msg);
}

DatasetValidator::DatasetValidator(DatasetLimits limits) : limits_(limits) {}

void DatasetValidator::Error(std::string message) {
  ++report_.error_count;
  if (report_.errors.size() < limits_.max_errors) {
    report_.errors.push_back(std::move(message));
  }
}

void DatasetValidator::Line(absl::string_view line) {
  const int64_t n = ++report_.lines;
  absl::StatusOr<Example> ex = ParseExampleLine(line, n, limits_);
  if (absl::IsNotFound(ex.status())) return;  // blank
  if (!ex.ok()) {
    Error(std::string(ex.status().message()));
    return;
  }
  if (report_.format == DatasetFormat::kUnknown) {
    report_.format = ex->format;
    first_format_line_ = n;
  } else if (ex->format != report_.format) {
    Error(absl::StrCat("line ", n, ": format \"", DatasetFormatName(ex->format),
                       "\" differs from \"", DatasetFormatName(report_.format),
                       "\" of line ", first_format_line_,
                       " (one format per file)"));
    return;
  }
  ++report_.examples;
}

void DatasetValidator::Add(absl::string_view chunk) {
  while (!chunk.empty()) {
    const size_t nl = chunk.find('\n');
    const absl::string_view part =
        chunk.substr(0, nl == absl::string_view::npos ? chunk.size() : nl);
    if (!overlong_) {
      if (pending_.size() + part.size() > limits_.max_line_bytes + 1) {
        // +1 leaves room for a CR that ParseExampleLine strips; the line is
        // too long either way once it exceeds that.
        overlong_ = true;
        const int64_t n = report_.lines + 1;
        Error(absl::StrCat("line ", n, ": line is longer than the limit of ",
                           limits_.max_line_bytes, " bytes"));
        pending_.clear();
      } else {
        pending_.append(part.data(), part.size());
      }
    }
    if (nl == absl::string_view::npos) return;
    if (overlong_) {
      ++report_.lines;
      overlong_ = false;
    } else {
      absl::string_view line = pending_;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      Line(line);
    }
    pending_.clear();
    chunk.remove_prefix(nl + 1);
  }
}

ValidationReport DatasetValidator::Finish() {
  if (overlong_) {
    ++report_.lines;
  } else if (!pending_.empty()) {
    Line(pending_);
  }
  pending_.clear();
  overlong_ = false;
  if (report_.examples == 0 && report_.error_count == 0) {
    Error("dataset has no examples");
  }
  return report_;
}

absl::StatusOr<ValidationReport> ValidateDatasetFile(
    const std::string& path, const DatasetLimits& limits) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  DatasetValidator v(limits);
  std::string buf(1 << 16, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    v.Add(absl::string_view(buf.data(), static_cast<size_t>(in.gcount())));
  }
  if (in.bad())
    return absl::InternalError(absl::StrCat("error reading ", path));
  return v.Finish();
}

absl::StatusOr<ParsedDataset> ParseDataset(absl::string_view contents,
                                           const DatasetLimits& limits) {
  // Same rules as DatasetValidator, but keeps the examples.
  ParsedDataset out;
  DatasetValidator v(limits);
  v.Add(contents);
  ValidationReport report = v.Finish();
  FTUNE_RETURN_IF_ERROR(report.ToStatus());
  int64_t n = 0;
  while (!contents.empty()) {
    const size_t nl = contents.find('\n');
    absl::string_view line = contents.substr(0, nl);
    contents.remove_prefix(nl == absl::string_view::npos ? contents.size()
                                                         : nl + 1);
    absl::StatusOr<Example> ex = ParseExampleLine(line, ++n, limits);
    if (absl::IsNotFound(ex.status())) continue;
    FTUNE_RETURN_IF_ERROR(ex.status());  // cannot happen after validation
    out.examples.push_back(*std::move(ex));
  }
  out.format = report.format;
  return out;
}

}  // namespace ftune
