// The ftunectl config file: connection settings kept in YAML so they need
// not be repeated on every command line (docs/cli.md, "Config file").
//
//   address: scheduler.internal:50051
//   api_key_file: ~/.config/ftune/key      # relative: to this file's dir
//   timeout: 30s
//   output: table
//   tls: true
//   tls_ca: ca.pem
//   profile: prod                          # the default profile
//   profiles:
//     prod: {address: prod.internal:50051, api_key_file: prod.key}
//
// A profile's keys override the top-level ones. Settings from the file are
// the weakest source: flags, then environment variables, then the file,
// then built-in defaults. The API key itself never goes in the file (there
// is no `api_key` key): only the name of a file holding it.
//
// Thread-safe: functions share nothing.
#ifndef FTUNE_CLIENT_CONFIG_H_
#define FTUNE_CLIENT_CONFIG_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/flags.h"

namespace ftune::client {

// The settings a config file gives; unset: the file does not say.
struct ConfigSettings {
  std::optional<std::string> address;
  std::optional<std::string> api_key_file;  // absolute, or as written
  std::optional<absl::Duration> timeout;
  std::optional<OutputFormat> output;
  std::optional<bool> tls;
  std::optional<std::string> tls_ca;
  std::optional<std::string> tls_cert;
  std::optional<std::string> tls_key;
  std::optional<std::string> tls_server_name;
  // The profile applied ("" for none).
  std::string profile;
};

// Parses config file text. `path` names the file in messages and anchors
// relative paths; `home` expands a leading "~/". `profile` selects one of
// `profiles` (empty: the file's `profile` key, else none). INVALID_ARGUMENT
// naming the file, the key and its line for invalid YAML, an unknown key, a
// value of the wrong kind, or an unknown profile.
absl::StatusOr<ConfigSettings> ParseConfig(absl::string_view text,
                                           const std::string& path,
                                           const std::string& profile,
                                           const std::string& home);

// Reads and parses the file at `path`; INVALID_ARGUMENT if it cannot be read.
absl::StatusOr<ConfigSettings> LoadConfigFile(const std::string& path,
                                              const std::string& profile,
                                              const std::string& home);

// The global options before the flags: onto `options` (the defaults on
// entry) the config file's settings, then the environment's. The file is
// `config_flag`, else $FTUNE_CONFIG, else DefaultConfigPath() if that file
// exists, else none; its profile `profile_flag`, else $FTUNE_PROFILE, else
// the file's own `profile`. INVALID_ARGUMENT (without usage hints) for a
// config file that cannot be read or is invalid, a profile without a
// file, or a bad FTUNE_* value.
absl::Status ApplyConfigAndEnvironment(const std::string& config_flag,
                                       const std::string& profile_flag,
                                       const Environment& env,
                                       GlobalOptions* options);

// $XDG_CONFIG_HOME/ftune/config.yaml, else $HOME/.config/ftune/config.yaml;
// "" when neither variable is set.
std::string DefaultConfigPath(const Environment& env);

// "text", "table" (the same as text), "json" or "yaml"; INVALID_ARGUMENT
// otherwise.
absl::StatusOr<OutputFormat> ParseOutputFormat(absl::string_view text);

// A positive number of seconds ("1.5") or a duration ("2m", "500ms");
// INVALID_ARGUMENT otherwise.
absl::StatusOr<absl::Duration> ParseTimeout(absl::string_view text);

}  // namespace ftune::client

#endif  // FTUNE_CLIENT_CONFIG_H_
