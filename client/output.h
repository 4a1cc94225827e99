// How ftunectl prints: protobuf JSON (one object per line) or text for
// people (aligned "key: value" blocks and tables), plus the small
// formatting helpers the commands share.
//
// Not thread-safe: one Output per command run.
#ifndef FTUNE_CLIENT_OUTPUT_H_
#define FTUNE_CLIENT_OUTPUT_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "client/flags.h"

namespace google::protobuf {
class Duration;
class EnumDescriptor;
class Message;
class Timestamp;
}  // namespace google::protobuf

namespace ftune::client {

class Output {
 public:
  Output(OutputFormat format, std::ostream& out, std::ostream& err)
      : format_(format), out_(out), err_(err) {}

  bool json() const { return format_ == OutputFormat::kJson; }
  // Data goes to out(); notes and errors to err().
  std::ostream& out() { return out_; }
  std::ostream& err() { return err_; }

  // `message` as one line of protobuf JSON (lowerCamelCase names, enums by
  // name, default values omitted) on out(), flushed.
  void Json(const google::protobuf::Message& message);

  // Text: "key:   value" lines with the values aligned; pairs with an empty
  // value are left out.
  void Fields(const std::vector<std::pair<std::string, std::string>>& fields);

 private:
  OutputFormat format_;
  std::ostream& out_;
  std::ostream& err_;
};

// A text table: a header row and rows, columns separated by two spaces.
class Table {
 public:
  explicit Table(std::vector<std::string> header);
  void Add(std::vector<std::string> row);
  // Prints the header and the rows, or "(none)" when there are no rows.
  void Print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// "2026-01-02T03:04:05Z"; "" when unset.
std::string FormatTime(const google::protobuf::Timestamp& time);
// "1h2m3s"; "" when zero.
std::string FormatDuration(const google::protobuf::Duration& duration);
// "1.5 MiB".
std::string FormatBytes(int64_t bytes);
// Shortest round-trip-ish form of a double, e.g. "0.0002", "2.31".
std::string FormatNumber(double value);

// An enum value's name without `prefix` ("JOB_STATE_RUNNING" ->
// "RUNNING"); the number when the value is unknown.
std::string EnumName(const google::protobuf::EnumDescriptor* descriptor,
                     int value, absl::string_view prefix);
// The value named `text` (case-insensitive, "-" for "_", with or without
// `prefix`), or -1 when none is; UNSPECIFIED (0) is never accepted.
int ParseEnum(const google::protobuf::EnumDescriptor* descriptor,
              absl::string_view prefix, absl::string_view text);
// The names a user may give for `descriptor`'s values, lowercase, without
// `prefix` and UNSPECIFIED, comma-separated.
std::string EnumChoices(const google::protobuf::EnumDescriptor* descriptor,
                        absl::string_view prefix);

}  // namespace ftune::client

#endif  // FTUNE_CLIENT_OUTPUT_H_
