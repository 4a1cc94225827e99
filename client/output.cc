#include "client/output.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/duration.pb.h>
#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/json_util.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace ftune::client {
namespace {

using OrderedJson = nlohmann::ordered_json;

// Whether YAML would read `s`, written plain, as something other than this
// string: null, a boolean (YAML 1.1 spellings too), or a number.
bool NeedsQuotes(const std::string& s) {
  if (s.empty()) return true;
  const std::string lower = absl::AsciiStrToLower(s);
  for (const char* word : {"null", "~", "true", "false", "yes", "no", "on",
                           "off", "y", "n", ".inf", "-.inf", "+.inf", ".nan"}) {
    if (lower == word) return true;
  }
  double number;
  if (absl::SimpleAtod(s, &number)) return true;
  return lower.rfind("0x", 0) == 0 || lower.rfind("0o", 0) == 0;
}

void EmitString(const std::string& s, YAML::Emitter& out) {
  if (NeedsQuotes(s)) out << YAML::DoubleQuoted;
  out << s;
}

void EmitYaml(const OrderedJson& j, YAML::Emitter& out) {
  switch (j.type()) {
    case OrderedJson::value_t::object:
      out << YAML::BeginMap;
      for (const auto& [key, value] : j.items()) {
        out << YAML::Key;
        EmitString(key, out);
        out << YAML::Value;
        EmitYaml(value, out);
      }
      out << YAML::EndMap;
      break;
    case OrderedJson::value_t::array:
      out << YAML::BeginSeq;
      for (const OrderedJson& item : j) EmitYaml(item, out);
      out << YAML::EndSeq;
      break;
    case OrderedJson::value_t::string:
      EmitString(j.get<std::string>(), out);
      break;
    case OrderedJson::value_t::boolean:
      out << j.get<bool>();
      break;
    case OrderedJson::value_t::null:
      out << YAML::Null;
      break;
    default:
      // Numbers: JSON's own shortest text, which YAML reads as the same
      // number (yaml-cpp would print doubles with 17 digits).
      out << j.dump();
      break;
  }
}

}  // namespace

int TerminalInfo::Columns() const {
  int n = columns ? columns() : 0;
  return n > 0 ? n : 80;
}

TerminalInfo ProcessTerminal() {
  TerminalInfo t;
  t.stdout_is_tty = ::isatty(STDOUT_FILENO) == 1;
  t.stderr_is_tty = ::isatty(STDERR_FILENO) == 1;
  t.columns = [] {
    struct winsize size {};
    for (int fd : {STDOUT_FILENO, STDERR_FILENO}) {
      if (::ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) {
        return static_cast<int>(size.ws_col);
      }
    }
    int n = 0;
    const char* env = std::getenv("COLUMNS");
    if (env != nullptr && absl::SimpleAtoi(env, &n) && n > 0) return n;
    return 80;
  };
  return t;
}

absl::StatusOr<std::string> JsonToYaml(absl::string_view json) {
  OrderedJson j = OrderedJson::parse(json.begin(), json.end(), nullptr,
                                     /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("not JSON");
  YAML::Emitter out;
  out << YAML::BeginDoc;
  EmitYaml(j, out);
  std::string text = out.c_str();
  if (text.empty() || text.back() != '\n') text.push_back('\n');
  return text;
}

void Output::JsonText(const std::string& json) {
  if (format_ == OutputFormat::kYaml) {
    absl::StatusOr<std::string> yaml = JsonToYaml(json);
    if (!yaml.ok()) {
      err_ << "ftunectl: cannot print as YAML: " << yaml.status().message()
           << "\n";
      return;
    }
    out_ << *yaml;
  } else {
    out_ << json << "\n";
  }
  out_.flush();
}

void Output::Message(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  auto status =
      google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    // Only possible for messages with unresolvable Any fields; ours have none.
    err_ << "ftunectl: cannot print as JSON: " << status.ToString() << "\n";
    return;
  }
  JsonText(json);
}

void Output::Fields(
    const std::vector<std::pair<std::string, std::string>>& fields) {
  size_t width = 0;
  for (const auto& [key, value] : fields) {
    if (!value.empty()) width = std::max(width, key.size());
  }
  for (const auto& [key, value] : fields) {
    if (value.empty()) continue;
    out_ << key << ":" << std::string(width + 2 - key.size(), ' ') << value
         << "\n";
  }
}

Table::Table(std::vector<std::string> header) {
  rows_.push_back(std::move(header));
}

void Table::Add(std::vector<std::string> row) {
  rows_.push_back(std::move(row));
}

void Table::Print(std::ostream& out) const {
  if (rows_.size() == 1) {
    out << "(none)\n";
    return;
  }
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      absl::StrAppend(&line, row[i]);
      if (i + 1 < row.size()) {
        line.append(widths[i] + 2 - row[i].size(), ' ');
      }
    }
    out << line << "\n";
  }
}

std::string FormatTime(const google::protobuf::Timestamp& time) {
  if (time.seconds() == 0 && time.nanos() == 0) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                          absl::FromUnixSeconds(time.seconds()),
                          absl::UTCTimeZone());
}

std::string FormatDuration(const google::protobuf::Duration& duration) {
  if (duration.seconds() == 0 && duration.nanos() == 0) return "";
  return absl::FormatDuration(absl::Seconds(duration.seconds()));
}

std::string FormatBytes(int64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " B");
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string FormatNumber(double value) {
  return absl::StrFormat("%.6g", value);
}

std::string EnumName(const google::protobuf::EnumDescriptor* descriptor,
                     int value, absl::string_view prefix) {
  const google::protobuf::EnumValueDescriptor* v =
      descriptor->FindValueByNumber(value);
  if (v == nullptr) return absl::StrCat(value);
  absl::string_view name = v->name();
  absl::ConsumePrefix(&name, prefix);
  return std::string(name);
}

int ParseEnum(const google::protobuf::EnumDescriptor* descriptor,
              absl::string_view prefix, absl::string_view text) {
  std::string name =
      absl::AsciiStrToUpper(absl::StrReplaceAll(text, {{"-", "_"}}));
  const google::protobuf::EnumValueDescriptor* v =
      descriptor->FindValueByName(name);
  if (v == nullptr) v = descriptor->FindValueByName(absl::StrCat(prefix, name));
  if (v == nullptr || v->number() == 0) return -1;
  return v->number();
}

std::string EnumChoices(const google::protobuf::EnumDescriptor* descriptor,
                        absl::string_view prefix) {
  std::string out;
  for (int i = 0; i < descriptor->value_count(); ++i) {
    const auto* v = descriptor->value(i);
    if (v->number() == 0) continue;
    absl::string_view name = v->name();
    absl::ConsumePrefix(&name, prefix);
    absl::StrAppend(&out, out.empty() ? "" : ", ", absl::AsciiStrToLower(name));
  }
  return out;
}

}  // namespace ftune::client
