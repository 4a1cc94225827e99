#include "common/contract/capabilities.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace ftune::contract {
namespace {

using nlohmann::json;

bool Has(const std::vector<std::string>& list, absl::string_view name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

std::string Listed(const std::vector<std::string>& list) {
  return list.empty() ? "none" : absl::StrJoin(list, ", ");
}

}  // namespace

std::string CapabilitiesToJson(const TrainerCapabilities& c) {
  return json{{"version", c.version},
              {"methods", c.methods},
              {"architectures", c.architectures},
              {"dtypes", c.dtypes},
              {"cuda", c.cuda},
              {"max_gpus_per_job", c.max_gpus_per_job},
              {"chat_templates", c.chat_templates},
              {"objectives", c.objectives},
              {"max_ranks_per_job", c.max_ranks_per_job}}
      .dump();
}

absl::StatusOr<TrainerCapabilities> ParseCapabilities(absl::string_view text) {
  const json j = json::parse(text.begin(), text.end(), nullptr,
                             /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("capabilities: not a JSON object");
  }
  TrainerCapabilities c;
  auto bad = [](const char* key, const char* want) {
    return absl::InvalidArgumentError(
        absl::StrCat("capabilities: \"", key, "\" must be ", want));
  };
  for (auto [key, out] : {std::pair<const char*, std::vector<std::string>*>{
                              "methods", &c.methods},
                          {"architectures", &c.architectures},
                          {"dtypes", &c.dtypes},
                          {"chat_templates", &c.chat_templates},
                          {"objectives", &c.objectives}}) {
    auto it = j.find(key);
    if (it == j.end()) continue;
    if (!it->is_array()) return bad(key, "a list of strings");
    for (const json& v : *it) {
      if (!v.is_string()) return bad(key, "a list of strings");
      out->push_back(v.get<std::string>());
    }
  }
  if (auto it = j.find("version"); it != j.end()) {
    if (!it->is_string()) return bad("version", "a string");
    c.version = it->get<std::string>();
  }
  if (auto it = j.find("cuda"); it != j.end()) {
    if (!it->is_boolean()) return bad("cuda", "true or false");
    c.cuda = it->get<bool>();
  }
  if (auto it = j.find("max_gpus_per_job"); it != j.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0) {
      return bad("max_gpus_per_job", "an integer >= 0");
    }
    c.max_gpus_per_job = it->get<int32_t>();
  }
  if (auto it = j.find("max_ranks_per_job"); it != j.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0) {
      return bad("max_ranks_per_job", "an integer >= 0");
    }
    c.max_ranks_per_job = std::max<int32_t>(1, it->get<int32_t>());
  }
  return c;
}

std::string RequirementToJson(const TrainerRequirement& need) {
  json j = {{"method", Name(need.method)},
            {"objective", Name(need.objective)},
            {"architecture", need.architecture}};
  if (need.dtype) j["dtype"] = Name(*need.dtype);
  if (need.ranks > 1) j["ranks"] = need.ranks;
  return j.dump();
}

absl::StatusOr<TrainerRequirement> ParseRequirement(absl::string_view text) {
  const json j = json::parse(text.begin(), text.end(), nullptr,
                             /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("requirement: not a JSON object");
  }
  TrainerRequirement need;
  auto str = [&](const char* key) -> absl::StatusOr<std::string> {
    auto it = j.find(key);
    if (it == j.end()) return std::string();
    if (!it->is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("requirement: \"", key, "\" must be a string"));
    }
    return it->get<std::string>();
  };
  FTUNE_ASSIGN_OR_RETURN(std::string method, str("method"));
  std::optional<Method> m = FromName<Method>(method);
  if (!m) {
    return absl::InvalidArgumentError(
        absl::StrCat("requirement: unknown method \"", method, "\""));
  }
  need.method = *m;
  FTUNE_ASSIGN_OR_RETURN(std::string objective, str("objective"));
  if (!objective.empty()) {
    std::optional<Objective> o = FromName<Objective>(objective);
    if (!o) {
      return absl::InvalidArgumentError(
          absl::StrCat("requirement: unknown objective \"", objective, "\""));
    }
    need.objective = *o;
  }
  if (auto it = j.find("ranks"); it != j.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 1 ||
        it->get<int64_t>() > static_cast<int64_t>(range::kProcesses.hi)) {
      return absl::InvalidArgumentError(
          absl::StrCat("requirement: \"ranks\" must be an integer in ",
                       RangeText(Range{1, range::kProcesses.hi})));
    }
    need.ranks = it->get<int32_t>();
  }
  FTUNE_ASSIGN_OR_RETURN(need.architecture, str("architecture"));
  FTUNE_ASSIGN_OR_RETURN(std::string dtype, str("dtype"));
  if (!dtype.empty()) {
    need.dtype = FromName<Dtype>(dtype);
    if (!need.dtype) {
      return absl::InvalidArgumentError(
          absl::StrCat("requirement: unknown dtype \"", dtype, "\""));
    }
  }
  return need;
}

std::vector<Unsupported> CheckCapabilities(const TrainerRequirement& need,
                                           int32_t gpus,
                                           const TrainerCapabilities& caps) {
  std::vector<Unsupported> out;
  if (!Has(caps.methods, Name(need.method))) {
    out.push_back({"spec.method", absl::StrCat("the trainer runs methods ",
                                               Listed(caps.methods), ", not ",
                                               Name(need.method))});
  }
  if (!need.architecture.empty() &&
      !Has(caps.architectures, need.architecture)) {
    out.push_back(
        {"spec.model",
         absl::StrCat("the trainer does not load ", need.architecture,
                      " models (it loads ", Listed(caps.architectures), ")")});
  }
  if (gpus > 0 && !caps.cuda) {
    out.push_back({"spec.resources.gpus",
                   "the trainer was built without CUDA (CPU jobs only: "
                   "resources.gpus = 0)"});
  } else if (gpus > caps.max_gpus_per_job) {
    out.push_back(
        {"spec.resources.gpus",
         absl::StrCat("the trainer runs at most ", caps.max_gpus_per_job,
                      " GPU(s) per job, ", gpus, " asked")});
  }
  if (gpus == 0 && need.ranks > std::max(1, caps.max_ranks_per_job)) {
    out.push_back(
        {"spec.resources.processes",
         absl::StrCat("the trainer runs at most ",
                      std::max(1, caps.max_ranks_per_job),
                      " process(es) per job, ", need.ranks, " asked")});
  }
  if (need.dtype && !Has(caps.dtypes, Name(*need.dtype))) {
    out.push_back({"spec.quantization.compute_dtype",
                   absl::StrCat("the trainer computes in ", Listed(caps.dtypes),
                                ", not ", Name(*need.dtype))});
  }
  const std::vector<std::string> objectives =
      caps.objectives.empty() ? std::vector<std::string>{Name(Objective::kSft)}
                              : caps.objectives;
  if (!Has(objectives, Name(need.objective))) {
    out.push_back(
        {"spec.objective",
         absl::StrCat("the trainer runs objectives ", Listed(objectives),
                      ", not ", Name(need.objective))});
  }
  return out;
}

}  // namespace ftune::contract
