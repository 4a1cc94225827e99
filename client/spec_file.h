// Protobuf messages from files people write: protobuf JSON, or YAML with
// the same field names (lowerCamelCase or the proto's snake_case), such as
// the JobSpec of `jobs create --spec-file`.
//
// Unknown fields are an error that names them (with the line, for YAML): a
// misspelt field would otherwise silently fall back to its default.
//
// Thread-safe: functions share nothing.
#ifndef FTUNE_CLIENT_SPEC_FILE_H_
#define FTUNE_CLIENT_SPEC_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace ftune::client {

enum class SpecSyntax { kJson, kYaml };

// Parses `text` into `message` (cleared first). `source` starts every error
// message, e.g. "--spec-file spec.yaml". INVALID_ARGUMENT naming the
// unknown field or the bad value, or saying why the text is not JSON/YAML.
absl::Status ParseMessageText(absl::string_view text, SpecSyntax syntax,
                              absl::string_view source,
                              google::protobuf::Message* message);

// JSON for a name ending in .json; YAML for .yaml or .yml; otherwise JSON
// when the first non-blank character is "{", else YAML.
SpecSyntax DetectSyntax(absl::string_view path, absl::string_view text);

// Reads the file at `path` and parses it as DetectSyntax says.
// INVALID_ARGUMENT "<what> <path>: ..." when it cannot be read or parsed.
absl::Status ReadMessageFile(const std::string& path, absl::string_view what,
                             google::protobuf::Message* message);

}  // namespace ftune::client

#endif  // FTUNE_CLIENT_SPEC_FILE_H_
