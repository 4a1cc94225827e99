// SchedulerMetrics: what ftune-scheduler exposes on /metrics (docs/metrics.md
// lists every family). Counters, the queue-wait histogram and the live
// per-job gauges follow the store's committed changes (OnCommit, chained on
// SqliteStoreOptions::on_commit); job and worker counts are read from the
// store at scrape time.
//
// Thread-safe. The registry and the store must outlive the object.
#ifndef FTUNE_SERVER_RPC_SCHEDULER_METRICS_H_
#define FTUNE_SERVER_RPC_SCHEDULER_METRICS_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/metrics/registry.h"
#include "server/store/store.h"

namespace ftune::server::rpc {

class SchedulerMetrics {
 public:
  // Registers the families. INTERNAL if a name is taken (a wiring bug).
  static absl::StatusOr<std::unique_ptr<SchedulerMetrics>> Create(
      metrics::Registry* registry);

  // Adds the scrape-time families that read `store` (jobs and workers by
  // state, commits). Call once, after the store is open.
  absl::Status AttachStore(store::Store* store,
                           std::function<int64_t()> commit_count);

  // From the store's commit hook: quick, never calls the store.
  void OnCommit(const std::vector<store::JobChange>& changes);

  // From the store's commit timing hook (SqliteStoreOptions).
  void OnCommitTiming(absl::Duration transaction, int writes);

  // A call of `tenant` refused by a per-tenant limit (TenantLimitOptions::
  // on_refused; `limit` is the ErrorInfo quota name).
  void OnLimitRefused(const std::string& tenant, absl::string_view limit);

 private:
  explicit SchedulerMetrics(metrics::Registry* registry)
      : registry_(registry) {}

  metrics::Registry* const registry_;
  metrics::CounterFamily* submitted_ = nullptr;
  metrics::CounterFamily* finished_ = nullptr;
  metrics::CounterFamily* requeued_ = nullptr;
  metrics::CounterFamily* limit_refusals_ = nullptr;
  metrics::HistogramFamily* queue_wait_ = nullptr;
  metrics::HistogramFamily* first_step_ = nullptr;
  metrics::CounterFamily* lease_expiries_ = nullptr;
  metrics::HistogramFamily* commit_seconds_ = nullptr;
  metrics::HistogramFamily* commit_writes_ = nullptr;
  metrics::GaugeFamily* train_loss_ = nullptr;
  metrics::GaugeFamily* eval_loss_ = nullptr;
  // Preference objectives: {tenant, job_id, split (train|eval)}.
  metrics::GaugeFamily* reward_accuracy_ = nullptr;
  metrics::GaugeFamily* reward_margin_ = nullptr;
  // Task metrics of the latest evaluation: {tenant, job_id}.
  metrics::GaugeFamily* eval_exact_match_ = nullptr;
  metrics::GaugeFamily* eval_normalized_match_ = nullptr;
  metrics::GaugeFamily* eval_token_f1_ = nullptr;
  metrics::GaugeFamily* eval_pattern_match_ = nullptr;
  metrics::GaugeFamily* tokens_per_second_ = nullptr;
  metrics::GaugeFamily* progress_ = nullptr;
  std::vector<metrics::CollectorHandle> collectors_;
  // Attempts started (RUNNING) that have not reported a step yet: job id ->
  // (attempt, start time). Touched only by OnCommit (the writer thread).
  std::map<std::string, std::pair<int64_t, absl::Time>> awaiting_first_step_;
};

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_SCHEDULER_METRICS_H_
