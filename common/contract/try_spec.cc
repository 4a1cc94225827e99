#include "common/contract/try_spec.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace ftune::contract {
namespace {

using nlohmann::json;

absl::Status Bad(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("spec field \"", field, "\": ", why));
}

absl::Status ReadGeneration(const json& g, GenerationSpec& out) {
  if (!g.is_object()) return Bad("generate.generation", "must be an object");
  for (auto it = g.begin(); it != g.end(); ++it) {
    const std::string field = absl::StrCat("generate.generation.", it.key());
    const json& v = it.value();
    const std::string& k = it.key();
    if (k == "max_new_tokens" || k == "top_k" || k == "seed") {
      if (!v.is_number_integer()) return Bad(field, "must be an integer");
      if (k == "seed" && !v.is_number_unsigned() && v.get<int64_t>() < 0) {
        return Bad(field, "must be >= 0");
      }
      if (k == "max_new_tokens") out.max_new_tokens = v.get<int64_t>();
      if (k == "top_k") out.top_k = v.get<int64_t>();
      if (k == "seed") out.seed = v.get<uint64_t>();
    } else if (k == "temperature" || k == "top_p" ||
               k == "repetition_penalty") {
      if (!v.is_number()) return Bad(field, "must be a number");
      (k == "temperature" ? out.temperature
       : k == "top_p"     ? out.top_p
                          : out.repetition_penalty) = v.get<double>();
    } else if (k == "stop") {
      if (!v.is_array()) return Bad(field, "must be a list of strings");
      for (const json& s : v) {
        if (!s.is_string()) return Bad(field, "entries must be strings");
        out.stop.push_back(s.get<std::string>());
      }
    } else {
      return Bad(field,
                 "unknown field (known: max_new_tokens, temperature, top_k, "
                 "top_p, repetition_penalty, seed, stop)");
    }
  }
  if (auto v = CheckGeneration(out)) {
    return Bad(absl::StrCat("generate.generation.", v->field), v->why);
  }
  return absl::OkStatus();
}

absl::Status ReadGenerate(const json& g, GenerateSpec& out) {
  if (!g.is_object()) return Bad("generate", "must be an object");
  for (auto it = g.begin(); it != g.end(); ++it) {
    const std::string& k = it.key();
    if (k != "weights" && k != "weights_dir" && k != "prompts" &&
        k != "generation") {
      return Bad(absl::StrCat("generate.", k),
                 "unknown field (known: generation, prompts, weights, "
                 "weights_dir)");
    }
  }
  const std::string weights = g.contains("weights") && g["weights"].is_string()
                                  ? g["weights"].get<std::string>()
                                  : (g.contains("weights") ? "?" : "base");
  if (weights == "adapter") {
    out.weights = GenerateSpec::Weights::kAdapter;
  } else if (weights == "checkpoint") {
    out.weights = GenerateSpec::Weights::kCheckpoint;
  } else if (weights == "base") {
    out.weights = GenerateSpec::Weights::kBase;
  } else {
    return Bad("generate.weights",
               "must be \"adapter\", \"checkpoint\" or \"base\"");
  }
  if (g.contains("weights_dir")) {
    if (!g["weights_dir"].is_string()) {
      return Bad("generate.weights_dir", "must be a string");
    }
    out.weights_dir = g["weights_dir"].get<std::string>();
  }
  if ((out.weights == GenerateSpec::Weights::kBase) !=
      out.weights_dir.empty()) {
    return Bad("generate.weights_dir",
               out.weights_dir.empty()
                   ? "is required with an adapter or a checkpoint"
                   : "must be empty with \"weights\": \"base\"");
  }
  if (!g.contains("prompts") || !g["prompts"].is_array()) {
    return Bad("generate.prompts", "must be a list of prompt objects");
  }
  const json& prompts = g["prompts"];
  if (prompts.empty() ||
      static_cast<double>(prompts.size()) > range::kEvalSamples.hi) {
    return Bad("generate.prompts",
               absl::StrCat("must hold 1 to ", range::kEvalSamples.hi,
                            " prompts, got ", prompts.size()));
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (!prompts[i].is_object()) {
      return Bad(absl::StrCat("generate.prompts[", i, "]"),
                 "must be an object");
    }
    out.prompts.push_back(prompts[i].dump());
  }
  if (g.contains("generation")) {
    FTUNE_RETURN_IF_ERROR(ReadGeneration(g["generation"], out.generation));
  }
  return absl::OkStatus();
}

}  // namespace

const char* Name(GenerateSpec::Weights v) {
  switch (v) {
    case GenerateSpec::Weights::kAdapter:
      return "adapter";
    case GenerateSpec::Weights::kCheckpoint:
      return "checkpoint";
    case GenerateSpec::Weights::kBase:
      break;
  }
  return "base";
}

bool IsTrySpec(absl::string_view json_text) {
  const json j = json::parse(json_text.begin(), json_text.end(), nullptr,
                             /*allow_exceptions=*/false);
  return j.is_object() && j.contains("generate");
}

std::string TrySpecToJson(const TrySpec& spec) {
  json j = json::parse(TrainSpecToJson(spec.train));
  const GenerateSpec& g = spec.generate;
  json prompts = json::array();
  for (const std::string& p : g.prompts) {
    prompts.push_back(json::parse(p, nullptr, /*allow_exceptions=*/false));
  }
  const GenerationSpec& s = g.generation;
  j["generate"] = {{"weights", Name(g.weights)},
                   {"weights_dir", g.weights_dir},
                   {"prompts", std::move(prompts)},
                   {"generation",
                    {{"max_new_tokens", s.max_new_tokens},
                     {"temperature", s.temperature},
                     {"top_k", s.top_k},
                     {"top_p", s.top_p},
                     {"repetition_penalty", s.repetition_penalty},
                     {"seed", s.seed},
                     {"stop", s.stop}}}};
  return j.dump(2);
}

absl::StatusOr<TrySpec> ParseTrySpec(absl::string_view json_text) {
  json j = json::parse(json_text.begin(), json_text.end(), nullptr,
                       /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("spec: not a JSON object");
  }
  if (!j.contains("generate")) return Bad("generate", "is required");
  TrySpec out;
  FTUNE_RETURN_IF_ERROR(ReadGenerate(j["generate"], out.generate));
  j.erase("generate");
  FTUNE_ASSIGN_OR_RETURN(out.train, ParseTrainSpec(j.dump()));
  out.train.source_json = std::string(json_text);
  return out;
}

}  // namespace ftune::contract
