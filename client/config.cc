#include "client/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ftune::client {
namespace {

constexpr const char* kKeys[] = {
    "address", "api_key_file", "timeout", "output",          "tls",
    "tls_ca",  "tls_cert",     "tls_key", "tls_server_name",
};

// "config /x/config.yaml: line 3: " (no line when yaml-cpp has none).
std::string Where(const std::string& path, const YAML::Mark& mark) {
  if (mark.is_null()) return absl::StrCat("config ", path, ": ");
  return absl::StrCat("config ", path, ": line ", mark.line + 1, ": ");
}

absl::Status Invalid(const std::string& path, const YAML::Node& node,
                     absl::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat(Where(path, node.Mark()), message));
}

// A path from the file: "~/" is the home directory, a relative path is
// relative to the config file's directory (so a config and the key file
// next to it can move together).
std::string ResolvePath(const std::string& value, const std::string& path,
                        const std::string& home) {
  if (value.rfind("~/", 0) == 0 && !home.empty()) {
    return absl::StrCat(home, value.substr(1));
  }
  std::filesystem::path p(value);
  if (p.is_absolute()) return value;
  return (std::filesystem::path(path).parent_path() / p).string();
}

// Applies the settings of one map (the top level or a profile) onto
// `settings`. `profiles` and `profile` are only allowed at the top level.
absl::Status ApplyMap(const YAML::Node& map, const std::string& path,
                      const std::string& home, bool top_level,
                      absl::string_view context, ConfigSettings* settings) {
  for (const auto& entry : map) {
    const YAML::Node& key_node = entry.first;
    const YAML::Node& value = entry.second;
    if (!key_node.IsScalar()) {
      return Invalid(path, key_node, "keys must be plain names");
    }
    const std::string key = key_node.Scalar();
    const std::string name = absl::StrCat(context, key);
    if (top_level && (key == "profiles" || key == "profile")) continue;
    if (std::find(std::begin(kKeys), std::end(kKeys), key) == std::end(kKeys)) {
      std::string hint;
      if (key == "api_key") {
        hint =
            " (the key itself does not go in the config file; put it in a "
            "file readable only by you and name that file with api_key_file)";
      } else {
        hint = absl::StrCat(" (known keys: ", absl::StrJoin(kKeys, ", "),
                            top_level ? ", profile, profiles)" : ")");
      }
      return Invalid(path, key_node,
                     absl::StrCat("unknown key \"", name, "\"", hint));
    }
    if (value.IsNull()) {
      return Invalid(path, key_node,
                     absl::StrCat("\"", name, "\" has no value"));
    }
    if (!value.IsScalar()) {
      return Invalid(path, value,
                     absl::StrCat("\"", name, "\" needs a single value"));
    }
    const std::string text = value.Scalar();
    if (key == "tls") {
      bool on = false;
      if (!YAML::convert<bool>::decode(value, on)) {
        return Invalid(path, value,
                       absl::StrCat("\"", name, "\": \"", text,
                                    "\" is not true or false"));
      }
      settings->tls = on;
      continue;
    }
    if (text.empty()) {
      return Invalid(path, value, absl::StrCat("\"", name, "\" is empty"));
    }
    if (key == "address") {
      settings->address = text;
    } else if (key == "timeout") {
      absl::StatusOr<absl::Duration> timeout = ParseTimeout(text);
      if (!timeout.ok()) {
        return Invalid(
            path, value,
            absl::StrCat("\"", name, "\": ", timeout.status().message()));
      }
      settings->timeout = *timeout;
    } else if (key == "output") {
      absl::StatusOr<OutputFormat> output = ParseOutputFormat(text);
      if (!output.ok()) {
        return Invalid(
            path, value,
            absl::StrCat("\"", name, "\": ", output.status().message()));
      }
      settings->output = *output;
    } else if (key == "api_key_file") {
      settings->api_key_file = ResolvePath(text, path, home);
    } else if (key == "tls_ca") {
      settings->tls_ca = ResolvePath(text, path, home);
    } else if (key == "tls_cert") {
      settings->tls_cert = ResolvePath(text, path, home);
    } else if (key == "tls_key") {
      settings->tls_key = ResolvePath(text, path, home);
    } else if (key == "tls_server_name") {
      settings->tls_server_name = text;
    }
  }
  return absl::OkStatus();
}

std::string Get(const Environment& env, const std::string& name) {
  auto it = env.find(name);
  return it == env.end() ? "" : it->second;
}

// The config file's settings, the weakest source: they land on `options`
// (still the defaults) before the environment and the flags.
void ApplyConfig(const ConfigSettings& config, GlobalOptions* options) {
  if (config.address) options->address = *config.address;
  if (config.api_key_file) options->api_key_file = *config.api_key_file;
  if (config.timeout) options->timeout = *config.timeout;
  if (config.output) options->output = *config.output;
  if (config.tls) options->tls = *config.tls;
  if (config.tls_ca) options->tls_ca = *config.tls_ca;
  if (config.tls_cert) options->tls_cert = *config.tls_cert;
  if (config.tls_key) options->tls_key = *config.tls_key;
  if (config.tls_server_name) {
    options->tls_server_name = *config.tls_server_name;
  }
  // Any TLS file or name means TLS, as the flags do; `tls: false` next to
  // them is a contradiction the user resolves by removing one.
  if (config.tls_ca || config.tls_cert || config.tls_key ||
      config.tls_server_name) {
    options->tls = true;
  }
  options->profile = config.profile;
}

// The FTUNE_* variables, over the config file's settings.
absl::Status ApplyEnvironment(const Environment& env, GlobalOptions* options) {
  if (std::string a = Get(env, "FTUNE_ADDRESS"); !a.empty()) {
    options->address = a;
  } else if (std::string e = Get(env, "FTUNE_ENDPOINT"); !e.empty()) {
    options->address = e;
  }
  if (std::string key = Get(env, "FTUNE_API_KEY"); !key.empty()) {
    options->api_key = key;
    options->api_key_file.clear();
  } else if (std::string file = Get(env, "FTUNE_API_KEY_FILE"); !file.empty()) {
    options->api_key_file = file;
  }
  if (std::string t = Get(env, "FTUNE_TIMEOUT"); !t.empty()) {
    auto timeout = ParseTimeout(t);
    if (!timeout.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("$FTUNE_TIMEOUT: ", timeout.status().message()));
    }
    options->timeout = *timeout;
  }
  if (std::string o = Get(env, "FTUNE_OUTPUT"); !o.empty()) {
    auto output = ParseOutputFormat(o);
    if (!output.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("$FTUNE_OUTPUT: ", output.status().message()));
    }
    options->output = *output;
  }
  if (std::string tls = Get(env, "FTUNE_TLS"); !tls.empty()) {
    if (tls == "1" || tls == "true") {
      options->tls = true;
    } else if (tls == "0" || tls == "false") {
      options->tls = false;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("$FTUNE_TLS: \"", tls, "\" is not true or false"));
    }
  }
  const std::pair<const char*, std::string GlobalOptions::*> files[] = {
      {"FTUNE_TLS_CA", &GlobalOptions::tls_ca},
      {"FTUNE_TLS_CERT", &GlobalOptions::tls_cert},
      {"FTUNE_TLS_KEY", &GlobalOptions::tls_key},
      {"FTUNE_TLS_SERVER_NAME", &GlobalOptions::tls_server_name}};
  for (const auto& [name, member] : files) {
    if (std::string v = Get(env, name); !v.empty()) {
      options->*member = v;
      options->tls = true;
    }
  }
  return absl::OkStatus();
}

// Reads the config file that --config, $FTUNE_CONFIG or the default path
// names, if any, onto `options`.
absl::Status LoadConfig(const std::string& flag_path,
                        const std::string& flag_profile, const Environment& env,
                        GlobalOptions* options) {
  std::string path = flag_path;
  if (path.empty()) path = Get(env, "FTUNE_CONFIG");
  const std::string profile =
      !flag_profile.empty() ? flag_profile : Get(env, "FTUNE_PROFILE");
  if (path.empty()) {
    // The default file is optional: only used when it exists.
    std::string fallback = DefaultConfigPath(env);
    std::error_code ec;
    if (!fallback.empty() && std::filesystem::exists(fallback, ec)) {
      path = fallback;
    }
  }
  if (path.empty()) {
    if (profile.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("profile \"", profile,
                     "\" given but there is no config file "
                     "(--config, $FTUNE_CONFIG or ",
                     DefaultConfigPath(env), ")"));
  }
  auto config = LoadConfigFile(path, profile, Get(env, "HOME"));
  if (!config.ok()) return config.status();
  ApplyConfig(*config, options);
  options->config_path = path;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<OutputFormat> ParseOutputFormat(absl::string_view text) {
  if (text == "text" || text == "table") return OutputFormat::kText;
  if (text == "json") return OutputFormat::kJson;
  if (text == "yaml") return OutputFormat::kYaml;
  return absl::InvalidArgumentError(
      absl::StrCat("\"", text, "\" is not text, table, json or yaml"));
}

absl::StatusOr<absl::Duration> ParseTimeout(absl::string_view text) {
  double seconds;
  absl::Duration d;
  if (absl::SimpleAtod(text, &seconds)) {
    d = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(text, &d)) {
    d = absl::ZeroDuration();
  }
  if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\" is not a positive number of seconds"));
  }
  return d;
}

absl::StatusOr<ConfigSettings> ParseConfig(absl::string_view text,
                                           const std::string& path,
                                           const std::string& profile,
                                           const std::string& home) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(path, e.mark), "not valid YAML: ", e.msg));
  }
  ConfigSettings settings;
  if (root.IsNull()) {
    if (!profile.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("config ", path,
                                                     ": no profile \"", profile,
                                                     "\" (the file is empty)"));
    }
    return settings;
  }
  if (!root.IsMap()) {
    return Invalid(path, root, "expected \"key: value\" lines");
  }
  if (absl::Status s =
          ApplyMap(root, path, home, /*top_level=*/true, "", &settings);
      !s.ok()) {
    return s;
  }

  // Lookups on a const node: on a mutable one operator[] may add the key.
  const YAML::Node& top = root;
  std::string chosen = profile;
  if (const YAML::Node default_profile = top["profile"]; default_profile) {
    if (!default_profile.IsScalar() || default_profile.Scalar().empty()) {
      return Invalid(path, default_profile,
                     "\"profile\" needs the name of one of \"profiles\"");
    }
    if (chosen.empty()) chosen = default_profile.Scalar();
  }
  const YAML::Node profiles = top["profiles"];
  if (profiles && !profiles.IsMap()) {
    return Invalid(path, profiles,
                   "\"profiles\" needs a map of name: {settings}");
  }
  if (chosen.empty()) return settings;
  std::vector<std::string> names;
  if (profiles) {
    for (const auto& entry : profiles) {
      const std::string name = entry.first.Scalar();
      names.push_back(name);
      if (name != chosen) continue;
      if (entry.second.IsNull()) break;  // an empty profile is allowed
      if (!entry.second.IsMap()) {
        return Invalid(path, entry.second,
                       absl::StrCat("profile \"", name,
                                    "\" needs \"key: value\" settings"));
      }
      if (absl::Status s =
              ApplyMap(entry.second, path, home, /*top_level=*/false,
                       absl::StrCat("profiles.", name, "."), &settings);
          !s.ok()) {
        return s;
      }
      break;
    }
  }
  if (std::find(names.begin(), names.end(), chosen) == names.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config ", path, ": no profile \"", chosen, "\" (profiles: ",
        names.empty() ? "none" : absl::StrJoin(names, ", "), ")"));
  }
  settings.profile = chosen;
  return settings;
}

absl::StatusOr<ConfigSettings> LoadConfigFile(const std::string& path,
                                              const std::string& profile,
                                              const std::string& home) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", path, ": cannot be read"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return ParseConfig(text.str(), path, profile, home);
}

std::string DefaultConfigPath(const Environment& env) {
  if (std::string xdg = Get(env, "XDG_CONFIG_HOME"); !xdg.empty()) {
    return xdg + "/ftune/config.yaml";
  }
  if (std::string home = Get(env, "HOME"); !home.empty()) {
    return home + "/.config/ftune/config.yaml";
  }
  return "";
}

absl::Status ApplyConfigAndEnvironment(const std::string& config_flag,
                                       const std::string& profile_flag,
                                       const Environment& env,
                                       GlobalOptions* options) {
  if (absl::Status s = LoadConfig(config_flag, profile_flag, env, options);
      !s.ok()) {
    return s;
  }
  return ApplyEnvironment(env, options);
}

}  // namespace ftune::client
