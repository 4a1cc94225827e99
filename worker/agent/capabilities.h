// What this host offers (WorkerCapabilities): hostname, GPUs found with
// nvidia-smi, CPU slots, memory, labels, software version.
//
// GPU discovery runs
//   nvidia-smi --query-gpu=index,name,memory.total,compute_cap
//              --format=csv,noheader,nounits
// and parses its lines ("0, NVIDIA H100 80GB HBM3, 81559, 9.0"; memory in
// MiB). No nvidia-smi (or a failing one) means no GPUs for --gpus=auto.
// What the trainer runs comes from `ftune-train capabilities`.
//
// Thread-safety: pure functions, except DiscoverGpus and QueryTrainer (run a
// process).
#ifndef FTUNE_WORKER_AGENT_CAPABILITIES_H_
#define FTUNE_WORKER_AGENT_CAPABILITIES_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ftune/v1/worker.pb.h"

namespace ftune::agent {

// One non-empty line of nvidia-smi's `--format=csv,noheader,nounits`
// output, its fields trimmed (views into the text).
struct NvidiaSmiRow {
  int line = 0;  // 1-based.
  std::vector<absl::string_view> fields;
};
// Splits that output into rows of exactly `num_fields` fields and parses
// each row's first field as a GPU index (>= 0). INVALID_ARGUMENT naming the
// line otherwise; `field_names` ("index, name, ...") goes in the message.
absl::StatusOr<std::vector<NvidiaSmiRow>> SplitNvidiaSmiCsv(
    absl::string_view text, size_t num_fields, absl::string_view field_names);

// Runs `nvidia_smi --query-gpu=FIELDS --format=csv,noheader,nounits` and
// returns its stdout; nullopt when it is not installed or fails (no driver).
std::optional<std::string> QueryNvidiaSmi(const std::string& nvidia_smi,
                                          absl::string_view fields);

// Parses nvidia-smi's CSV output (see above). INVALID_ARGUMENT naming the
// line for a line that does not have 4 fields or whose numbers do not parse.
absl::StatusOr<std::vector<v1::GpuDevice>> ParseNvidiaSmiCsv(
    absl::string_view text);

// "k=v,k2=v2" -> map. INVALID_ARGUMENT for an entry without '=', an empty
// key, or a duplicate key. "" -> empty map.
absl::StatusOr<std::map<std::string, std::string>> ParseLabels(
    absl::string_view text);

// Which GPUs to offer (--gpus): "auto" = every GPU nvidia-smi lists, "none"
// = no GPU, "0,2" = exactly those indices, each of which must be among
// `found` (INVALID_ARGUMENT naming the index otherwise).
absl::StatusOr<std::vector<v1::GpuDevice>> SelectGpus(
    absl::string_view mode, const std::vector<v1::GpuDevice>& found);

// Runs nvidia-smi (see above). An empty list when it is not installed or
// fails; INVALID_ARGUMENT when its output does not parse.
absl::StatusOr<std::vector<v1::GpuDevice>> DiscoverGpus(
    const std::string& nvidia_smi = "nvidia-smi");

// Runs `trainer_path capabilities` (ftune-train's report of what it runs,
// common/contract/capabilities.h) and returns it for RegisterWorker.
// FAILED_PRECONDITION naming the trainer when it cannot run, exits non-zero
// or prints something that is not a capabilities object: a worker whose
// trainer cannot say what it runs must not take jobs.
absl::StatusOr<v1::TrainerCapabilities> QueryTrainer(
    const std::string& trainer_path);

std::string Hostname();
int32_t OnlineCpus();
int64_t PhysicalMemoryBytes();
// The ftune-worker version, e.g. "0.1.0".
std::string SoftwareVersion();

}  // namespace ftune::agent

#endif  // FTUNE_WORKER_AGENT_CAPABILITIES_H_
