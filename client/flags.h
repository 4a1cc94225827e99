// The command line of ftunectl: its grammar (every command, its arguments
// and flags), the parser, and the usage text generated from the grammar.
//
//   ftunectl [GLOBAL FLAGS] NOUN VERB [ARGS] [FLAGS]      e.g. jobs create
//   ftunectl [GLOBAL FLAGS] status
//   ftunectl help [NOUN [VERB]]     ftunectl [NOUN [VERB]] --help
//
// Global flags may appear anywhere; a command's own flags only after the
// command. Flags are "--name=value" or "--name value"; boolean flags take no
// value ("--all", or "--all=false"); "--" ends the flags.
//
// Nothing here talks to a server, so the parser is tested on its own.
// Thread-safe: functions share nothing but the constant grammar.
#ifndef FTUNE_CLIENT_FLAGS_H_
#define FTUNE_CLIENT_FLAGS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ftune::client {

// Process exit codes of ftunectl (docs/cli.md).
inline constexpr int kExitOk = 0;
// The server refused the call, or a local write failed after it.
inline constexpr int kExitError = 1;
// The command could not be sent: unknown command or flag, missing or bad
// argument, unreadable input file.
inline constexpr int kExitUsage = 2;
// The server could not be reached, or did not answer before the deadline.
inline constexpr int kExitUnavailable = 3;

inline constexpr char kDefaultAddress[] = "127.0.0.1:50051";

// --output. `table` is accepted as another name of kText, whose list
// commands already print aligned columns.
enum class OutputFormat { kText, kJson, kYaml };

// Options of every command. Each comes from its flag, else its environment
// variable, else the config file (client/config.h), else the default.
struct GlobalOptions {
  // --address / --endpoint, else $FTUNE_ADDRESS, else $FTUNE_ENDPOINT.
  std::string address = kDefaultAddress;
  // File whose first non-empty line is the API key: --api-key-file, else
  // $FTUNE_API_KEY_FILE when $FTUNE_API_KEY is not set, else the config's
  // api_key_file when neither variable is set. Empty: none.
  std::string api_key_file;
  // The key itself from $FTUNE_API_KEY (only when --api-key-file is not
  // given). Empty: none.
  std::string api_key;
  // --timeout ($FTUNE_TIMEOUT, config timeout): deadline of each unary
  // call. Streams that may last long (watch, logs --follow, uploads,
  // downloads) are bounded only by a --timeout on the command line, which
  // sets `timeout_set`.
  absl::Duration timeout = absl::Seconds(30);
  bool timeout_set = false;
  OutputFormat output = OutputFormat::kText;
  // TLS: on with --tls or any --tls-* flag. Files are PEM.
  bool tls = false;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  // The config file read ("" for none) and the profile applied from it.
  std::string config_path;
  std::string profile;
};

enum class FlagType { kString, kInt32, kInt64, kDouble, kBool };

struct FlagSpec {
  std::string name;  // without the leading "--", e.g. "training-file"
  FlagType type = FlagType::kString;
  bool repeated = false;   // may be given several times; all values are kept
  std::string value_name;  // for the usage text, e.g. "FILE_ID"
  std::string help;
  char short_name = 0;  // e.g. 'o' for "-o"; 0: none
};

struct CommandSpec {
  std::string noun;  // "jobs"; for a command without a verb its name
  std::string verb;  // "create"; empty for "status"
  std::vector<std::string> args;  // required positional arguments, in order
  std::string summary;
  std::vector<FlagSpec> flags;

  std::string FullName() const;  // "jobs create", "status"
};

// Every command ftunectl knows, in the order the usage text lists them.
const std::vector<CommandSpec>& Commands();
// Flags every command accepts.
const std::vector<FlagSpec>& GlobalFlags();

// A command's flags as given. Values were checked against their FlagType
// by the parser, so the typed getters cannot fail.
class FlagValues {
 public:
  void Add(const std::string& name, std::string value);

  bool Has(absl::string_view name) const;
  // The last value given, or `fallback`.
  std::string Get(absl::string_view name,
                  const std::string& fallback = "") const;
  // Every value given, in order; empty if none.
  std::vector<std::string> GetAll(absl::string_view name) const;
  std::optional<int64_t> GetInt(absl::string_view name) const;
  std::optional<double> GetDouble(absl::string_view name) const;
  // False when not given.
  bool GetBool(absl::string_view name) const;

 private:
  std::map<std::string, std::vector<std::string>, std::less<>> values_;
};

// What the command line asks for.
struct Invocation {
  GlobalOptions global;
  // Null only when `help` is set.
  const CommandSpec* command = nullptr;
  // The positional arguments, exactly as many as command->args.
  std::vector<std::string> args;
  FlagValues flags;
  // `help`, `--help` or `-h`: print the usage of `help_topic` ("" for all,
  // a noun such as "jobs", or a command such as "jobs create") and exit 0.
  bool help = false;
  std::string help_topic;
};

// The environment variables ftunectl reads, by name. An empty value counts
// as unset.
using Environment = std::map<std::string, std::string>;
// The FTUNE_* variables docs/cli.md lists, and XDG_CONFIG_HOME and HOME
// (where the default config file is), from the process environment.
Environment ProcessEnvironment();

// Parses `args` (argv without argv[0]) and settles the global options:
// flag, else environment, else the config file (--config, $FTUNE_CONFIG, or
// the default path if that file exists), else the default. INVALID_ARGUMENT
// with a message for the user (naming the unknown command or flag, the flag
// without a value, the missing argument, the bad environment variable or
// config key, and where to find usage) on any usage error. Help needs no
// config file and reads none.
absl::StatusOr<Invocation> ParseCommandLine(
    const std::vector<std::string>& args, const Environment& env);

// Usage text of `topic`: "" (every command), a noun ("jobs") or a command
// ("jobs create"). An unknown topic gives the full text.
std::string Usage(absl::string_view topic);

}  // namespace ftune::client

#endif  // FTUNE_CLIENT_FLAGS_H_
