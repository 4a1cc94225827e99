#include "client/output.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/duration.pb.h>
#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

namespace ftune::client {

void Output::Json(const google::protobuf::Message& message) {
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
  out_ << json << "\n";
  out_.flush();
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
