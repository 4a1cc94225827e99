// How ftunectl prints: protobuf JSON (one object per line), the same
// content as YAML (one document per message), or text for people (aligned
// "key: value" blocks and tables), plus the small formatting helpers the
// commands share and what ftunectl knows of its terminal.
//
// Not thread-safe: one Output per command run.
#ifndef FTUNE_CLIENT_OUTPUT_H_
#define FTUNE_CLIENT_OUTPUT_H_

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/flags.h"

namespace google::protobuf {
class Duration;
class EnumDescriptor;
class Message;
class Timestamp;
}  // namespace google::protobuf

namespace ftune::client {

// Whether stdout and stderr are terminals, and how wide. Live progress
// lines are drawn only on a terminal; tests pass their own.
struct TerminalInfo {
  bool stdout_is_tty = false;
  bool stderr_is_tty = false;
  // Columns of the terminal, asked at every redraw so that a resize takes
  // effect; null: 80.
  std::function<int()> columns;

  int Columns() const;
};

// The process's: isatty(1), isatty(2), and the width from TIOCGWINSZ, else
// $COLUMNS, else 80.
TerminalInfo ProcessTerminal();

class Output {
 public:
  Output(OutputFormat format, std::ostream& out, std::ostream& err,
         TerminalInfo terminal = {})
      : format_(format), out_(out), err_(err), terminal_(std::move(terminal)) {}

  OutputFormat format() const { return format_; }
  // JSON or YAML: print messages with Message(), not text.
  bool structured() const { return format_ != OutputFormat::kText; }
  const TerminalInfo& terminal() const { return terminal_; }
  // Data goes to out(); notes and errors to err().
  std::ostream& out() { return out_; }
  std::ostream& err() { return err_; }

  // `message` on out(), flushed: JSON: one line of protobuf JSON
  // (lowerCamelCase names, enums by name, default values omitted); YAML:
  // the same content as one YAML document starting with "---".
  void Message(const google::protobuf::Message& message);
  // The same for a JSON object built by hand (for replies without a proto).
  void JsonText(const std::string& json);

  // Text: "key:   value" lines with the values aligned; pairs with an empty
  // value are left out.
  void Fields(const std::vector<std::pair<std::string, std::string>>& fields);

 private:
  OutputFormat format_;
  std::ostream& out_;
  std::ostream& err_;
  TerminalInfo terminal_;
};

// A JSON text as a YAML document: "---\n" then block style, keys in the
// JSON's order. Strings that YAML would read as another type ("true",
// "500", "") are quoted, so the document reads back as the same JSON.
// INVALID_ARGUMENT if `json` is not JSON.
absl::StatusOr<std::string> JsonToYaml(absl::string_view json);

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
