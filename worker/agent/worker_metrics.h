// WorkerMetrics: what ftune-worker exposes on its /metrics endpoint
// (docs/metrics.md lists every family):
//
//   ftune_worker_running_attempts              trainers running now
//   ftune_worker_slots{resource}               offered CPU slots and GPUs
//   ftune_worker_connected                     1 while heartbeats succeed
//   ftune_worker_trainers_started_total        trainer processes started
//   ftune_worker_trainer_exits_total{result}   how they ended
//   ftune_worker_gpu_memory_used_bytes{gpu}    per offered GPU (nvidia-smi)
//   ftune_worker_gpu_utilization_ratio{gpu}    per offered GPU, 0..1
//   process_*                                  the agent process
//
// The GPU families exist only on a worker that offers GPUs. Their values
// come from one nvidia-smi run per scrape at most every 2 s (cached).
//
// Thread-safe. The registry must outlive the object.
#ifndef FTUNE_WORKER_AGENT_WORKER_METRICS_H_
#define FTUNE_WORKER_AGENT_WORKER_METRICS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/metrics/registry.h"
#include "ftune/v1/worker.pb.h"
#include "worker/agent/trainer_process.h"

namespace ftune::agent {

// One line of `nvidia-smi --query-gpu=index,memory.used,utilization.gpu
// --format=csv,noheader,nounits` ("0, 1234, 56": MiB and percent). A
// field nvidia-smi cannot read ("[N/A]", "[Not Supported]") is negative.
struct GpuUsage {
  int index = 0;
  double memory_used_bytes = -1;
  double utilization_ratio = -1;
};

// Parses that output. INVALID_ARGUMENT naming the line for one that does
// not have 3 fields or whose index does not parse.
absl::StatusOr<std::vector<GpuUsage>> ParseNvidiaSmiUsage(
    absl::string_view text);

// The `result` label of a trainer exit: "success", "bad_input",
// "out_of_memory", "diverged", "stopped", "crashed", or "killed" (the agent
// SIGKILLed it: fenced or hard shutdown).
std::string TrainerExitResult(ExitClass exit_class, bool killed);

class WorkerMetrics {
 public:
  // Registers the families for a worker offering `capabilities`.
  // `nvidia_smi` is the command run for the GPU families. INTERNAL if a
  // name is taken (a wiring bug).
  static absl::StatusOr<std::unique_ptr<WorkerMetrics>> Create(
      metrics::Registry* registry, const v1::WorkerCapabilities& capabilities,
      std::string nvidia_smi = "nvidia-smi");
  ~WorkerMetrics();

  void TrainerStarted();
  void TrainerExited(ExitClass exit_class, bool killed);
  void SetConnected(bool connected);

 private:
  WorkerMetrics() = default;

  std::shared_ptr<metrics::Gauge> running_;
  std::shared_ptr<metrics::Gauge> connected_;
  std::shared_ptr<metrics::Counter> started_;
  metrics::CounterFamily* exits_ = nullptr;
  std::vector<metrics::CollectorHandle> collectors_;
};

}  // namespace ftune::agent

#endif  // FTUNE_WORKER_AGENT_WORKER_METRICS_H_
