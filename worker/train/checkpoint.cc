#include "worker/train/checkpoint.h"

#include <dirent.h>
#include <unistd.h>

#include <cmath>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/train/torch_compat.h"

namespace ftune::train {
namespace {

using torch::Tensor;
constexpr int kCheckpointVersion = 1;
constexpr char kCheckpointFormat[] = "ftune-checkpoint";

const char* WeightsFile(bool full) {
  return full ? "model.safetensors" : "adapter_model.safetensors";
}
const char* BestFile(bool full) {
  return full ? "best_model.safetensors" : "best_adapter.safetensors";
}

std::string StepDirName(int64_t step) {
  return absl::StrFormat("step-%08d", step);
}

}  // namespace

NamedTensors Snapshot(const NamedTensors& params) {
  NamedTensors out;
  for (const auto& [n, p] : params) out.emplace_back(n, p.detach().clone());
  return out;
}

absl::Status CopyInto(NamedTensors& params, const NamedTensors& values,
                      const std::string& what) {
  std::map<std::string, Tensor> by_name(values.begin(), values.end());
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : params) {
    auto it = by_name.find(name);
    if (it == by_name.end() || !it->second.sizes().equals(p.sizes()))
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": tensor \"", name, "\" is missing or has the wrong shape"));
    p.copy_(it->second);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SaveCheckpoint(
    const std::string& checkpoint_dir, const LoopState& st,
    const NamedTensors& params, const AdamW& opt, const NamedTensors* best,
    const std::string& spec_sha, bool full) {
  FTUNE_RETURN_IF_ERROR(MakeDirs(checkpoint_dir));
  // Staging directories of a crashed earlier attempt (never resumed from:
  // ResolveResume skips them) would only fill the disk.
  FTUNE_RETURN_IF_ERROR(RemoveStagingLeftovers(checkpoint_dir, "step-"));
  const std::string final_dir = JoinPath(checkpoint_dir, StepDirName(st.step));
  const std::string staging = absl::StrCat(final_dir, ".tmp-", NewId("stage"));
  FTUNE_RETURN_IF_ERROR(MakeDirs(staging));
  absl::Status s = [&]() -> absl::Status {
    FTUNE_RETURN_IF_ERROR(
        WriteTensors(JoinPath(staging, WeightsFile(full)), params));
    NamedTensors opt_state = opt.State();
    opt_state.emplace_back("rng.cpu_state", compat::GetCpuRngState());
    FTUNE_RETURN_IF_ERROR(
        WriteTensors(JoinPath(staging, "optimizer.safetensors"), opt_state));
    if (best != nullptr) {
      FTUNE_RETURN_IF_ERROR(
          WriteTensors(JoinPath(staging, BestFile(full)), *best));
    }
    nlohmann::json state = {
        {"format", kCheckpointFormat},
        {"version", kCheckpointVersion},
        {"step", st.step},
        {"consumed_rows", st.consumed_rows},
        {"train_sha256", st.train_sha256},
        {"train_rows", st.train_rows},
        {"best_eval_loss", std::isfinite(st.best_eval_loss)
                               ? nlohmann::json(st.best_eval_loss)
                               : nlohmann::json(nullptr)},
        {"best_step", st.best_step},
        {"best_score", std::isfinite(st.best_score)
                           ? nlohmann::json(st.best_score)
                           : nlohmann::json(nullptr)},
        {"evals_without_improvement", st.evals_without_improvement},
        {"world_size", st.world_size},
        {"method", full ? "full" : "lora"},
        {"spec_sha256", spec_sha}};
    FTUNE_RETURN_IF_ERROR(WriteFileAtomically(
        JoinPath(staging, "trainer_state.json"), state.dump(2)));
    // A previous attempt may have published this step already; replace it.
    FTUNE_RETURN_IF_ERROR(RemoveAll(final_dir));
    return PublishDirectory(staging, final_dir);
  }();
  if (!s.ok()) {
    (void)RemoveAll(staging);
    return s;
  }
  return final_dir;
}

absl::StatusOr<std::string> ResolveResume(const contract::TrainSpec& spec) {
  if (spec.resume_from.empty()) return std::string();
  std::string dir =
      spec.resume_from == "auto" ? spec.checkpoint_dir : spec.resume_from;
  if (access(JoinPath(dir, "trainer_state.json").c_str(), F_OK) == 0)
    return dir;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    if (spec.resume_from == "auto") return std::string();
    return absl::NotFoundError(
        absl::StrCat("resume_from ", dir, " does not exist"));
  }
  std::string best;
  int64_t best_step = -1;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    int64_t step;
    if (absl::StartsWith(n, "step-") && n.find(".tmp") == std::string::npos &&
        absl::SimpleAtoi(n.substr(5), &step) && step > best_step &&
        access(JoinPath(JoinPath(dir, n), "trainer_state.json").c_str(),
               F_OK) == 0) {
      best_step = step;
      best = JoinPath(dir, n);
    }
  }
  closedir(d);
  if (best.empty() && spec.resume_from != "auto")
    return absl::NotFoundError(
        absl::StrCat("resume_from ", dir, ": no checkpoint found"));
  return best;
}

absl::Status LoadCheckpoint(const std::string& dir, LoopState& st,
                            NamedTensors& params, AdamW& opt,
                            NamedTensors* best, bool* has_best, bool full) {
  FTUNE_ASSIGN_OR_RETURN(std::string text,
                         ReadFile(JoinPath(dir, "trainer_state.json")));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() ||
      j.value("format", "") != kCheckpointFormat)
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": trainer_state.json is not an ftune checkpoint"));
  if (j.value("version", 0) != kCheckpointVersion)
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": checkpoint version ", j.value("version", 0),
        " is not supported (this build reads ", kCheckpointVersion, ")"));
  st.step = j.at("step").get<int64_t>();
  st.consumed_rows = j.at("consumed_rows").get<int64_t>();
  st.train_sha256 = j.value("train_sha256", "");
  st.train_rows = j.value("train_rows", int64_t{0});
  st.best_eval_loss = j.at("best_eval_loss").is_null()
                          ? std::numeric_limits<double>::infinity()
                          : j.at("best_eval_loss").get<double>();
  st.best_step = j.at("best_step").get<int64_t>();
  // Absent in checkpoints from before select_best_by.
  st.best_score = j.contains("best_score") && j.at("best_score").is_number()
                      ? j.at("best_score").get<double>()
                      : -std::numeric_limits<double>::infinity();
  st.evals_without_improvement =
      j.at("evals_without_improvement").get<int64_t>();
  st.world_size = j.value("world_size", int64_t{1});
  // Absent (LoRA) in checkpoints from before full fine-tuning.
  const std::string method = j.value("method", "lora");
  if ((method == "full") != full)
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": a checkpoint of a ", method == "full" ? "full" : "LoRA",
        " fine-tune cannot resume a ", full ? "full" : "LoRA", " one"));
  FTUNE_ASSIGN_OR_RETURN(NamedTensors weights,
                         ReadTensors(JoinPath(dir, WeightsFile(full))));
  FTUNE_RETURN_IF_ERROR(CopyInto(params, weights, dir));
  FTUNE_ASSIGN_OR_RETURN(NamedTensors opt_state,
                         ReadTensors(JoinPath(dir, "optimizer.safetensors")));
  FTUNE_RETURN_IF_ERROR(opt.LoadState(opt_state, st.step));
  bool rng_found = false;
  for (auto& [name, t] : opt_state) {
    if (name == "rng.cpu_state") {
      compat::SetCpuRngState(t);
      rng_found = true;
    }
  }
  if (!rng_found)
    return absl::InvalidArgumentError(absl::StrCat(dir, ": no RNG state"));
  const std::string best_path = JoinPath(dir, BestFile(full));
  if (access(best_path.c_str(), F_OK) == 0) {
    FTUNE_ASSIGN_OR_RETURN(NamedTensors b, ReadTensors(best_path));
    *best = Snapshot(params);
    FTUNE_RETURN_IF_ERROR(CopyInto(*best, b, best_path));
    *has_best = true;
  }
  return absl::OkStatus();
}

}  // namespace ftune::train
