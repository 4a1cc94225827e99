// LoadTokenizer: picks the tokenizer file of a model directory.
#include "worker/train/text/tokenizer.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/train/text/bpe_tokenizer.h"
#include "worker/train/text/sentencepiece_tokenizer.h"

namespace ftune::train {

using nlohmann::json;

void Tokenizer::SetConfig(TokenizerConfig config) {
  config_ = std::move(config);
  auto id_of = [this](const std::string& token) -> int32_t {
    if (token.empty()) return -1;
    std::optional<int32_t> id = TokenToId(token);
    return id.has_value() ? *id : -1;
  };
  bos_id_ = id_of(config_.bos_token);
  eos_id_ = id_of(config_.eos_token);
  pad_id_ = id_of(config_.pad_token);
}

absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(
    absl::string_view json_text) {
  TokenizerConfig out;
  FTUNE_RETURN_IF_ERROR(ApplyTokenizerConfig(json_text, &out));
  return out;
}

absl::Status ApplyTokenizerConfig(absl::string_view json_text,
                                  TokenizerConfig* config) {
  if (json_text.empty()) return absl::OkStatus();
  TokenizerConfig& out = *config;
  json cfg;
  try {
    cfg = json::parse(json_text.begin(), json_text.end());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer_config.json: invalid JSON: ", e.what()));
  }
  if (!cfg.is_object()) {
    return absl::InvalidArgumentError(
        "tokenizer_config.json: expected an object");
  }
  for (auto [key, field] : {std::pair{"bos_token", &out.bos_token},
                            std::pair{"eos_token", &out.eos_token},
                            std::pair{"pad_token", &out.pad_token},
                            std::pair{"unk_token", &out.unk_token}}) {
    auto it = cfg.find(key);
    if (it == cfg.end()) continue;
    if (it->is_null()) {  // explicitly none
      field->clear();
    } else if (it->is_string()) {
      *field = it->get<std::string>();
    } else if (it->is_object() && it->contains("content") &&
               (*it)["content"].is_string()) {
      *field = (*it)["content"].get<std::string>();
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer_config.json: ", key,
                       ": expected a string or {\"content\": ...}"));
    }
  }
  for (auto [key, field] : {std::pair{"add_bos_token", &out.add_bos_token},
                            std::pair{"add_eos_token", &out.add_eos_token}}) {
    auto it = cfg.find(key);
    if (it == cfg.end() || it->is_null()) continue;
    if (!it->is_boolean()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer_config.json: ", key, ": expected a boolean"));
    }
    *field = it->get<bool>();
  }
  auto tmpl = cfg.find("chat_template");
  if (tmpl != cfg.end() && !tmpl->is_null()) {
    if (tmpl->is_string()) {
      out.chat_template = tmpl->get<std::string>();
    } else if (tmpl->is_array()) {
      for (const json& t : *tmpl) {
        if (t.is_object() && t.value("name", "") == "default" &&
            t.contains("template") && t["template"].is_string()) {
          out.chat_template = t["template"].get<std::string>();
        }
      }
    } else {
      return absl::InvalidArgumentError(
          "tokenizer_config.json: chat_template: expected a string or a list");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(
    const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::string config_text;
  const std::string config_path = JoinPath(model_dir, "tokenizer_config.json");
  if (fs::exists(config_path)) {
    FTUNE_ASSIGN_OR_RETURN(config_text, ReadFile(config_path));
  }
  const std::string json_path = JoinPath(model_dir, "tokenizer.json");
  if (fs::exists(json_path)) {
    FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFile(json_path));
    absl::StatusOr<std::unique_ptr<BpeTokenizer>> t =
        BpeTokenizer::Create(text, config_text);
    if (!t.ok()) return Annotate(t.status(), model_dir);
    return std::unique_ptr<Tokenizer>(*std::move(t));
  }
  const std::string model_path = JoinPath(model_dir, "tokenizer.model");
  if (fs::exists(model_path)) {
    FTUNE_ASSIGN_OR_RETURN(std::string bytes, ReadFile(model_path));
    absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> t =
        SentencePieceTokenizer::Create(bytes, config_text);
    if (!t.ok()) return Annotate(t.status(), model_dir);
    return std::unique_ptr<Tokenizer>(*std::move(t));
  }
  return absl::NotFoundError(absl::StrCat(
      model_dir, ": has neither tokenizer.json nor tokenizer.model"));
}

}  // namespace ftune::train
