#include "server/model_registry.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/confined_path.h"
#include "common/quote.h"
#include "common/status.h"
#include "worker/train/families/memory_shape.h"
#include "worker/train/families/model_config.h"

namespace ftune::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool IsValidModelName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  if (!absl::ascii_islower(name[0]) && !absl::ascii_isdigit(name[0])) {
    return false;
  }
  for (char c : name) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '.' &&
        c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string DetectChatTemplate(const std::string& jinja) {
  if (absl::StrContains(jinja, "<|start_header_id|>")) return "llama3";
  if (absl::StrContains(jinja, "<|im_start|>")) return "chatml";
  if (absl::StrContains(jinja, "<start_of_turn>")) return "gemma";
  if (absl::StrContains(jinja, "<|assistant|>") &&
      absl::StrContains(jinja, "<|end|>"))
    return "phi3";
  if (absl::StrContains(jinja, "[INST]")) return "llama2";
  if (absl::StrContains(jinja, "### Instruction")) return "alpaca";
  return "";
}

absl::Status ReadModelConfigJson(absl::string_view text, core::Model& model,
                                 absl::string_view label) {
  json config = json::parse(text.begin(), text.end(), nullptr,
                            /*allow_exceptions=*/false);
  if (!config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, " is not a JSON object"));
  }
  // The trainer's own family code decides whether it can run the model:
  // an unsupported architecture or option is refused here, naming the
  // field and the supported values, not at a job's first step.
  absl::StatusOr<train::ModelConfig> parsed =
      train::ParseModelConfig(text, label);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(parsed.status().message());
  }
  auto& md = model.metadata;
  md["architecture"] = parsed->architecture;
  md["family"] = parsed->family;
  md["lora_modules"] = absl::StrJoin(parsed->LoraModuleNames(), ",");
  // What the memory planner needs beyond the sizes below (head_dim, tied
  // embeddings, fused projections, ...): core::CheckMemory at job creation.
  md["memory_shape"] =
      contract::EncodeModelShape(train::MemoryShapeOf(*parsed));
  // The sizes as the family reads them (GPT-2 spells them n_embd, ...).
  for (const auto& [key, value] :
       {std::pair<const char*, int64_t>{"hidden_size", parsed->hidden_size},
        {"intermediate_size", parsed->intermediate_size},
        {"num_hidden_layers", parsed->num_hidden_layers},
        {"num_attention_heads", parsed->num_attention_heads},
        {"num_key_value_heads", parsed->num_key_value_heads},
        {"vocab_size", parsed->vocab_size},
        {"max_position_embeddings", parsed->max_position_embeddings}}) {
    md[key] = absl::StrCat(value);
  }
  if (config.contains("torch_dtype") && config["torch_dtype"].is_string()) {
    md["torch_dtype"] = config["torch_dtype"].get<std::string>();
  }
  return absl::OkStatus();
}

std::string ChatTemplateOfTokenizerConfig(absl::string_view text) {
  json t = json::parse(text.begin(), text.end(), nullptr,
                       /*allow_exceptions=*/false);
  std::string tmpl;
  if (t.is_object() && t.contains("chat_template")) {
    const json& c = t["chat_template"];
    if (c.is_string()) {
      tmpl = c.get<std::string>();
    } else if (c.is_array()) {
      for (const json& e : c) {
        // Typed look-ups: json::value() throws on a "name" that is not a
        // string.
        if (!e.is_object()) continue;
        auto name = e.find("name");
        auto body = e.find("template");
        if (name != e.end() && name->is_string() && *name == "default" &&
            body != e.end() && body->is_string()) {
          tmpl = body->get<std::string>();
        }
      }
    }
  }
  return DetectChatTemplate(tmpl);
}

int64_t SafetensorsHeaderParameters(absl::string_view header) {
  json j = json::parse(header.begin(), header.end(), nullptr,
                       /*allow_exceptions=*/false);
  if (!j.is_object()) return -1;
  int64_t total = 0;
  for (auto& [name, tensor] : j.items()) {
    if (name == "__metadata__") continue;
    if (!tensor.is_object()) return -1;
    auto shape = tensor.find("shape");
    if (shape == tensor.end()) continue;
    if (!shape->is_array()) return -1;
    // Dimensions must be non-negative integers and the counts must fit: a
    // hostile header must neither throw nor overflow.
    int64_t n = 1;
    for (const json& d : *shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) return -1;
      const int64_t dim = d.get<int64_t>();
      if (dim != 0 && n > std::numeric_limits<int64_t>::max() / dim) return -1;
      n *= dim;
    }
    if (total > std::numeric_limits<int64_t>::max() - n) return -1;
    total += n;
  }
  return total;
}

namespace {

// Sum over tensors of the product of their shapes, from a safetensors
// file's header (8-byte little-endian length, then JSON). -1 if unreadable.
int64_t CountSafetensorsParameters(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char len_bytes[8];
  if (!in.read(reinterpret_cast<char*>(len_bytes), 8)) return -1;
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | len_bytes[i];
  if (len == 0 || len > (uint64_t{100} << 20)) return -1;
  std::string header(len, '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(len))) return -1;
  return SafetensorsHeaderParameters(header);
}

}  // namespace

absl::Status InspectModelDirectory(const std::string& path,
                                   core::Model& model) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model ", model.name, ": directory ", path, " does not exist"));
  }
  const std::string config_path = path + "/config.json";
  absl::StatusOr<std::string> text = ReadFile(config_path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model ", model.name, ": ", config_path,
        " is missing (a model directory is a Hugging Face checkpoint)"));
  }
  if (absl::Status s = ReadModelConfigJson(*text, model, config_path);
      !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", model.name, ": ", s.message()));
  }
  // Chat template from tokenizer_config.json (string or list of named ones).
  if (absl::StatusOr<std::string> tc =
          ReadFile(path + "/tokenizer_config.json");
      tc.ok()) {
    model.metadata["default_chat_template"] =
        ChatTemplateOfTokenizerConfig(*tc);
  }
  auto& md = model.metadata;
  int64_t weight_bytes = 0;
  int64_t params = 0;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    if (entry.path().extension() != ".safetensors") continue;
    weight_bytes += static_cast<int64_t>(entry.file_size(ec));
    const int64_t n = CountSafetensorsParameters(entry.path().string());
    if (n > 0) params += n;
  }
  md["weights_size_bytes"] = absl::StrCat(weight_bytes);
  md["parameter_count"] = absl::StrCat(params);
  return absl::OkStatus();
}

absl::StatusOr<SchedulerConfig> ParseSchedulerConfig(
    absl::string_view text, const std::string& config_path) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", config_path, ": ", what));
  };
  json root = json::parse(text.begin(), text.end(), nullptr,
                          /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return bad("not a JSON object");
  }
  for (auto& [key, value] : root.items()) {
    // "server" holds flag values; ftune-scheduler's main applies them.
    if (key != "models" && key != "server") {
      return bad(absl::StrCat("unknown key ", QuoteValue(key)));
    }
  }
  SchedulerConfig out;
  if (!root.contains("models")) return out;
  if (!root["models"].is_array()) return bad("\"models\" must be a list");
  std::set<std::string> names;
  int index = 0;
  for (const json& m : root["models"]) {
    const std::string where = absl::StrCat("models[", index++, "]");
    if (!m.is_object()) return bad(absl::StrCat(where, " is not an object"));
    for (auto& [key, value] : m.items()) {
      if (key != "name" && key != "directory" && key != "supported_methods") {
        return bad(absl::StrCat(where, ": unknown key ", QuoteValue(key)));
      }
    }
    // Typed look-ups: json::value() throws when the key holds another type
    // (a number for "name" would stop the scheduler with an uncaught
    // exception).
    for (const char* key : {"name", "directory"}) {
      if (m.contains(key) && !m[key].is_string()) {
        return bad(absl::StrCat(where, ".", key, " must be a string"));
      }
    }
    core::Model model;
    model.name = m.contains("name") ? m["name"].get<std::string>() : "";
    if (!IsValidModelName(model.name)) {
      return bad(absl::StrCat(where, ".name ", QuoteValue(model.name),
                              ": must be 1-64 characters of [a-z0-9._-] "
                              "starting with a letter or digit"));
    }
    if (!names.insert(model.name).second) {
      return bad(absl::StrCat(where, ": duplicate model name ", model.name));
    }
    model.directory = m.contains("directory")
                          ? m["directory"].get<std::string>()
                          : "models/" + model.name;
    if (!CheckConfinedPath(model.directory).ok()) {
      return bad(absl::StrCat(where,
                              ".directory must be a normalised path relative "
                              "to the storage root, without \"..\""));
    }
    std::vector<std::string> methods = {"lora", "qlora", "full"};
    if (m.contains("supported_methods")) {
      if (!m["supported_methods"].is_array()) {
        return bad(absl::StrCat(where, ".supported_methods must be a list"));
      }
      methods.clear();
      for (const json& x : m["supported_methods"]) {
        const std::string s = x.is_string() ? x.get<std::string>() : "";
        if (s != "lora" && s != "qlora" && s != "full") {
          return bad(absl::StrCat(where,
                                  ".supported_methods: expected \"lora\", "
                                  "\"qlora\" or \"full\", got ",
                                  QuoteValue(x.dump())));
        }
        methods.push_back(s);
      }
    }
    model.metadata["supported_methods"] = absl::StrJoin(methods, ",");
    out.models.push_back(std::move(model));
  }
  return out;
}

absl::StatusOr<SchedulerConfig> LoadSchedulerConfig(
    const std::string& config_path, const std::string& storage_root) {
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFile(config_path));
  FTUNE_ASSIGN_OR_RETURN(SchedulerConfig out,
                         ParseSchedulerConfig(text, config_path));
  for (core::Model& model : out.models) {
    if (storage_root.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config ", config_path,
          ": models need --storage_root (model directories live under it)"));
    }
    absl::Status st =
        InspectModelDirectory(storage_root + "/" + model.directory, model);
    if (!st.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config ", config_path, ": ", st.message()));
    }
  }
  return out;
}

}  // namespace ftune::server
