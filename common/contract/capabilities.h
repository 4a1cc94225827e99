// The trainer contract, part 3: what a trainer binary can run.
//
// `ftune-train capabilities` prints TrainerCapabilities as one JSON object;
// the worker agent runs it at start-up and reports the result when it
// registers (RegisterWorkerRequest.trainer); the scheduler refuses at
// CreateJob what no registered worker's trainer could ever run, naming the
// field, and places a job only on a worker whose trainer can run it
// (server/core/placement.h). So a job never fails after dispatch for
// something the API already knew.
//
// Plain C++ (no gRPC, no LibTorch). Thread-compatible value types.
#ifndef FTUNE_COMMON_CONTRACT_CAPABILITIES_H_
#define FTUNE_COMMON_CONTRACT_CAPABILITIES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/contract/train_spec.h"

namespace ftune::contract {

struct TrainerCapabilities {
  std::string version;  // the trainer's version
  // Names as the spec spells them (Name(Method), Name(Dtype)).
  std::vector<std::string> methods;
  // Hugging Face architectures ("LlamaForCausalLM", ...).
  std::vector<std::string> architectures;
  // Compute dtypes it can run on the devices it has.
  std::vector<std::string> dtypes;
  bool cuda = false;  // built with CUDA: can run GPU jobs
  // GPUs one job may use on one host (one trainer process per GPU).
  int32_t max_gpus_per_job = 1;
  std::vector<std::string> chat_templates;
  // Name(Objective)s; empty: a trainer from before preference optimisation,
  // which runs "sft" only.
  std::vector<std::string> objectives;
  // Trainer processes (data-parallel ranks) one CPU job may run on one
  // host; 0 or 1 (a trainer from before data-parallel training): one.
  int32_t max_ranks_per_job = 1;
};

std::string CapabilitiesToJson(const TrainerCapabilities& caps);
// INVALID_ARGUMENT naming the member when a present member has the wrong
// JSON type; missing members stay empty.
absl::StatusOr<TrainerCapabilities> ParseCapabilities(absl::string_view json);

// What a job asks of a trainer, besides its GPU count (JobSpec.resources).
struct TrainerRequirement {
  Method method = Method::kLora;
  std::string architecture;    // "" = unknown (not checked)
  std::optional<Dtype> dtype;  // nullopt = the worker chooses
  Objective objective = Objective::kSft;
  // Trainer processes (data-parallel ranks): JobRanks(gpus, processes).
  int32_t ranks = 1;
};

// As stored with a queued job: {"method": "lora", "objective": "sft",
// "architecture": "...", "dtype": "bf16", "ranks": 2} (dtype absent when
// the worker chooses; objective absent in requirements stored before it
// existed: "sft"; ranks absent when 1).
std::string RequirementToJson(const TrainerRequirement& need);
// INVALID_ARGUMENT naming the member for a bad or unknown value.
absl::StatusOr<TrainerRequirement> ParseRequirement(absl::string_view json);

// One thing a trainer cannot do: the JobSpec field that asks for it (a path
// from CreateJobRequest, "spec.method") and why.
struct Unsupported {
  std::string field;
  std::string message;
};

// Everything in `need` (with `gpus` GPUs; 0 = a CPU job) that `caps`
// cannot run, in JobSpec field order; empty when it can run it.
std::vector<Unsupported> CheckCapabilities(const TrainerRequirement& need,
                                           int32_t gpus,
                                           const TrainerCapabilities& caps);

}  // namespace ftune::contract

#endif  // FTUNE_COMMON_CONTRACT_CAPABILITIES_H_
