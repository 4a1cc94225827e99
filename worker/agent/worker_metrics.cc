#include "worker/agent/worker_metrics.h"

#include <optional>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/metrics/process_collector.h"
#include "worker/agent/capabilities.h"

namespace ftune::agent {
namespace {

// Runs nvidia-smi at most every 2 s and keeps the last good answer
// for the offered GPUs; an empty list when it fails.
class GpuSampler {
 public:
  GpuSampler(std::string nvidia_smi, std::set<int> offered)
      : nvidia_smi_(std::move(nvidia_smi)), offered_(std::move(offered)) {}

  std::vector<GpuUsage> Sample() {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    if (now - sampled_ < absl::Seconds(2)) return last_;
    sampled_ = now;
    last_.clear();
    std::optional<std::string> out =
        QueryNvidiaSmi(nvidia_smi_, "index,memory.used,utilization.gpu");
    if (!out) return last_;
    absl::StatusOr<std::vector<GpuUsage>> usage = ParseNvidiaSmiUsage(*out);
    if (!usage.ok()) return last_;
    for (const GpuUsage& u : *usage) {
      if (offered_.count(u.index)) last_.push_back(u);
    }
    return last_;
  }

 private:
  const std::string nvidia_smi_;
  const std::set<int> offered_;
  absl::Mutex mu_;
  absl::Time sampled_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::vector<GpuUsage> last_ ABSL_GUARDED_BY(mu_);
};

absl::Status Internal(const absl::Status& s) {
  return absl::InternalError(
      absl::StrCat("registering a metric: ", s.message()));
}

// A field of nvidia-smi's CSV: the number, or -1 for "[N/A]" and the like.
double Field(absl::string_view f) {
  double v;
  return absl::SimpleAtod(f, &v) && v >= 0 ? v : -1;
}

}  // namespace

absl::StatusOr<std::vector<GpuUsage>> ParseNvidiaSmiUsage(
    absl::string_view text) {
  absl::StatusOr<std::vector<NvidiaSmiRow>> rows =
      SplitNvidiaSmiCsv(text, 3, "index, memory.used, utilization.gpu");
  if (!rows.ok()) return rows.status();
  std::vector<GpuUsage> out;
  for (const NvidiaSmiRow& row : *rows) {
    GpuUsage u;
    (void)absl::SimpleAtoi(row.fields[0], &u.index);  // Checked above.
    const double mib = Field(row.fields[1]);
    u.memory_used_bytes = mib < 0 ? -1 : mib * 1024 * 1024;
    const double pct = Field(row.fields[2]);
    u.utilization_ratio = pct < 0 ? -1 : pct / 100.0;
    out.push_back(u);
  }
  return out;
}

std::string TrainerExitResult(ExitClass exit_class, bool killed) {
  if (killed) return "killed";
  switch (exit_class) {
    case ExitClass::kSuccess:
      return "success";
    case ExitClass::kBadInput:
      return "bad_input";
    case ExitClass::kOutOfMemory:
      return "out_of_memory";
    case ExitClass::kDiverged:
      return "diverged";
    case ExitClass::kStopped:
      return "stopped";
    case ExitClass::kRetryable:
      break;
  }
  return "crashed";
}

WorkerMetrics::~WorkerMetrics() = default;

absl::StatusOr<std::unique_ptr<WorkerMetrics>> WorkerMetrics::Create(
    metrics::Registry* registry, const v1::WorkerCapabilities& capabilities,
    std::string nvidia_smi) {
  std::unique_ptr<WorkerMetrics> m(new WorkerMetrics());
  auto running = registry->AddGauge(
      "ftune_worker_running_attempts",
      "Trainer processes this worker runs now (one per attempt).", {});
  if (!running.ok()) return Internal(running.status());
  m->running_ = (*running)->WithLabels({});
  auto slots = registry->AddGauge(
      "ftune_worker_slots",
      "What this worker offers: resource=\"cpu\" slots, resource=\"gpu\" "
      "devices.",
      {"resource"});
  if (!slots.ok()) return Internal(slots.status());
  (*slots)->WithLabels({"cpu"})->Set(capabilities.cpu_slots());
  (*slots)->WithLabels({"gpu"})->Set(capabilities.gpus_size());
  auto connected = registry->AddGauge(
      "ftune_worker_connected",
      "1 while the last heartbeat to the scheduler succeeded, else 0.", {});
  if (!connected.ok()) return Internal(connected.status());
  m->connected_ = (*connected)->WithLabels({});
  auto started = registry->AddCounter("ftune_worker_trainers_started_total",
                                      "Trainer processes started.", {});
  if (!started.ok()) return Internal(started.status());
  m->started_ = (*started)->WithLabels({});
  auto exits = registry->AddCounter(
      "ftune_worker_trainer_exits_total",
      "Trainer processes that ended, by result (success, bad_input, "
      "out_of_memory, diverged, stopped, crashed, killed).",
      {"result"});
  if (!exits.ok()) return Internal(exits.status());
  m->exits_ = *exits;

  auto process =
      registry->AddCollector(std::make_unique<metrics::ProcessCollector>());
  if (!process.ok()) return Internal(process.status());
  m->collectors_.push_back(*std::move(process));

  if (capabilities.gpus_size() > 0) {
    std::set<int> offered;
    for (const v1::GpuDevice& g : capabilities.gpus())
      offered.insert(g.index());
    auto sampler =
        std::make_shared<GpuSampler>(std::move(nvidia_smi), std::move(offered));
    auto memory = registry->AddGaugeCallback(
        "ftune_worker_gpu_memory_used_bytes",
        "GPU memory in use on an offered GPU (all processes), from "
        "nvidia-smi.",
        {"gpu"}, [sampler](metrics::CallbackWriter& w) {
          for (const GpuUsage& u : sampler->Sample()) {
            if (u.memory_used_bytes >= 0) {
              w.Set({absl::StrCat(u.index)}, u.memory_used_bytes);
            }
          }
        });
    if (!memory.ok()) return Internal(memory.status());
    m->collectors_.push_back(*std::move(memory));
    auto utilization = registry->AddGaugeCallback(
        "ftune_worker_gpu_utilization_ratio",
        "Fraction of the last sample period an offered GPU was busy (0..1), "
        "from nvidia-smi.",
        {"gpu"}, [sampler](metrics::CallbackWriter& w) {
          for (const GpuUsage& u : sampler->Sample()) {
            if (u.utilization_ratio >= 0) {
              w.Set({absl::StrCat(u.index)}, u.utilization_ratio);
            }
          }
        });
    if (!utilization.ok()) return Internal(utilization.status());
    m->collectors_.push_back(*std::move(utilization));
  }
  return m;
}

void WorkerMetrics::TrainerStarted() {
  started_->Inc();
  running_->Inc();
}

void WorkerMetrics::TrainerExited(ExitClass exit_class, bool killed) {
  running_->Dec();
  exits_->WithLabels({TrainerExitResult(exit_class, killed)})->Inc();
}

void WorkerMetrics::SetConnected(bool connected) {
  connected_->Set(connected ? 1 : 0);
}

}  // namespace ftune::agent
