#include "server/rpc/scheduler_metrics.h"

#include <algorithm>
#include <map>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/metrics/process_collector.h"
#include "common/status.h"

namespace ftune::server::rpc {
namespace {

// "running", "succeeded": label values are lower case.
std::string StateLabel(core::JobState s) {
  return absl::AsciiStrToLower(core::JobStateName(s));
}

std::string WorkerStateLabel(core::WorkerState s) {
  return absl::AsciiStrToLower(core::WorkerStateName(s));
}

template <typename T>
absl::StatusOr<T*> Registered(absl::StatusOr<T*> family) {
  if (!family.ok()) {
    return absl::InternalError(
        absl::StrCat("registering a metric: ", family.status().message()));
  }
  return family;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SchedulerMetrics>> SchedulerMetrics::Create(
    metrics::Registry* registry) {
  std::unique_ptr<SchedulerMetrics> m(new SchedulerMetrics(registry));
  FTUNE_ASSIGN_OR_RETURN(
      m->submitted_,
      Registered(registry->AddCounter("ftune_jobs_submitted_total",
                                      "Jobs created, by tenant.", {"tenant"})));
  FTUNE_ASSIGN_OR_RETURN(
      m->finished_,
      Registered(registry->AddCounter(
          "ftune_jobs_finished_total",
          "Jobs that reached a terminal state (succeeded, failed, "
          "cancelled), by tenant.",
          {"tenant", "state"})));
  FTUNE_ASSIGN_OR_RETURN(
      m->requeued_,
      Registered(registry->AddCounter(
          "ftune_job_requeues_total",
          "Attempts that ended without finishing the job and were queued "
          "again (lost lease, retryable failure), by tenant.",
          {"tenant"})));
  FTUNE_ASSIGN_OR_RETURN(
      m->queue_wait_,
      Registered(registry->AddHistogram(
          "ftune_job_queue_wait_seconds",
          "From creation to the first lease of a job's first attempt.", {},
          {0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400})));
  FTUNE_ASSIGN_OR_RETURN(
      m->first_step_,
      Registered(registry->AddHistogram(
          "ftune_job_time_to_first_step_seconds",
          "From an attempt's start (lease granted, RUNNING) to its first "
          "reported training step: model loading, tokenization, warm-up.",
          {}, {0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600})));
  FTUNE_ASSIGN_OR_RETURN(
      m->limit_refusals_,
      Registered(registry->AddCounter(
          "ftune_tenant_limit_refusals_total",
          "Calls refused because the tenant was over a per-tenant limit: "
          "limit max_streams_per_tenant (streams held at once) or "
          "tenant_requests_per_second (call rate).",
          {"tenant", "limit"})));
  FTUNE_ASSIGN_OR_RETURN(
      m->lease_expiries_,
      Registered(registry->AddCounter(
          "ftune_lease_expiries_total",
          "Attempts taken back because their worker lost its lease (no "
          "heartbeat in time, or it re-registered as a new worker).",
          {})));
  FTUNE_ASSIGN_OR_RETURN(
      m->commit_seconds_,
      Registered(registry->AddHistogram(
          "ftune_store_commit_seconds",
          "Duration of a SQLite group-commit write transaction, BEGIN to "
          "COMMIT (fsync included).",
          {},
          {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1,
           2.5})));
  FTUNE_ASSIGN_OR_RETURN(
      m->commit_writes_,
      Registered(registry->AddHistogram(
          "ftune_store_commit_writes",
          "Writes (API calls, worker reports) batched in one SQLite group "
          "commit.",
          {}, {1, 2, 4, 8, 16, 32, 64, 128, 256})));
  FTUNE_ASSIGN_OR_RETURN(
      m->train_loss_,
      Registered(registry->AddGauge("ftune_job_train_loss",
                                    "Latest training loss of a running job.",
                                    {"tenant", "job_id"})));
  FTUNE_ASSIGN_OR_RETURN(
      m->eval_loss_,
      Registered(registry->AddGauge("ftune_job_eval_loss",
                                    "Latest validation loss of a running job.",
                                    {"tenant", "job_id"})));
  FTUNE_ASSIGN_OR_RETURN(
      m->reward_accuracy_,
      Registered(registry->AddGauge(
          "ftune_job_reward_accuracy",
          "Preference (DPO/ORPO) jobs: share of pairs whose chosen answer "
          "has the higher reward, latest training point or evaluation.",
          {"tenant", "job_id", "split"})));
  FTUNE_ASSIGN_OR_RETURN(
      m->reward_margin_,
      Registered(registry->AddGauge(
          "ftune_job_reward_margin",
          "Preference (DPO/ORPO) jobs: mean reward of the chosen answers "
          "minus the rejected ones', latest training point or evaluation.",
          {"tenant", "job_id", "split"})));
  for (auto [family, name, help] :
       {std::tuple<metrics::GaugeFamily**, const char*, const char*>{
            &m->eval_exact_match_, "ftune_job_eval_exact_match",
            "Task metrics: share of the validation examples whose greedy "
            "completion equals the reference, latest evaluation."},
        {&m->eval_normalized_match_, "ftune_job_eval_normalized_match",
         "Task metrics: share equal to the reference after trimming, "
         "collapsing whitespace and folding case, latest evaluation."},
        {&m->eval_token_f1_, "ftune_job_eval_token_f1",
         "Task metrics: mean token-level F1 of the completions against the "
         "references, latest evaluation."},
        {&m->eval_pattern_match_, "ftune_job_eval_pattern_match",
         "Task metrics: share of the completions matching the job's "
         "eval_pattern, latest evaluation."}}) {
    FTUNE_ASSIGN_OR_RETURN(*family, Registered(registry->AddGauge(
                                        name, help, {"tenant", "job_id"})));
  }
  FTUNE_ASSIGN_OR_RETURN(
      m->tokens_per_second_,
      Registered(registry->AddGauge(
          "ftune_job_tokens_per_second",
          "Training throughput of a running job at its latest step.",
          {"tenant", "job_id"})));
  FTUNE_ASSIGN_OR_RETURN(
      m->progress_,
      Registered(registry->AddGauge(
          "ftune_job_progress_ratio",
          "Fraction of a running job's optimizer steps done (0..1).",
          {"tenant", "job_id"})));
  // Families without labels show their zero from the first scrape, so
  // rate() and alerts see the first increment.
  m->queue_wait_->WithLabels({});
  m->first_step_->WithLabels({});
  m->lease_expiries_->WithLabels({});
  m->commit_seconds_->WithLabels({});
  m->commit_writes_->WithLabels({});
  absl::StatusOr<metrics::CollectorHandle> process =
      registry->AddCollector(std::make_unique<metrics::ProcessCollector>());
  if (!process.ok()) {
    return absl::InternalError(
        absl::StrCat("process metrics: ", process.status().message()));
  }
  m->collectors_.push_back(*std::move(process));
  return m;
}

absl::Status SchedulerMetrics::AttachStore(
    store::Store* store, std::function<int64_t()> commit_count) {
  auto add = [&](absl::StatusOr<metrics::CollectorHandle> h) -> absl::Status {
    if (!h.ok()) {
      return absl::InternalError(
          absl::StrCat("registering a metric: ", h.status().message()));
    }
    collectors_.push_back(*std::move(h));
    return absl::OkStatus();
  };
  FTUNE_RETURN_IF_ERROR(add(registry_->AddGaugeCallback(
      "ftune_jobs", "Jobs by tenant and state (from the database).",
      {"tenant", "state"}, [store](metrics::CallbackWriter& w) {
        auto counts = store->CountJobsByTenantAndState();
        if (!counts.ok()) {
          FTUNE_LOG(WARNING) << "ftune_jobs: " << counts.status();
          return;
        }
        for (const auto& [key, n] : *counts) {
          w.Set({key.first, StateLabel(key.second)}, static_cast<double>(n));
        }
      })));
  auto workers = [store](bool gpus) {
    return [store, gpus](metrics::CallbackWriter& w) {
      auto list = store->ListWorkers();
      if (!list.ok()) return;
      std::map<std::string, double> by_state;
      for (core::WorkerState s :
           {core::WorkerState::kActive, core::WorkerState::kDraining,
            core::WorkerState::kLost}) {
        by_state[WorkerStateLabel(s)] = 0;
      }
      for (const core::Worker& wk : *list) {
        by_state[WorkerStateLabel(wk.state)] += gpus ? wk.capabilities.gpus : 1;
      }
      for (const auto& [state, n] : by_state) w.Set({state}, n);
    };
  };
  FTUNE_RETURN_IF_ERROR(add(registry_->AddGaugeCallback(
      "ftune_workers", "Registered workers by state.", {"state"},
      workers(false))));
  FTUNE_RETURN_IF_ERROR(add(registry_->AddGaugeCallback(
      "ftune_worker_gpus", "GPUs of registered workers, by worker state.",
      {"state"}, workers(true))));
  FTUNE_RETURN_IF_ERROR(add(registry_->AddCounterCallback(
      "ftune_store_commits_total",
      "SQLite write transactions committed (each batches many writes).", {},
      [commit_count](metrics::CallbackWriter& w) {
        w.Set({}, static_cast<double>(commit_count()));
      })));
  return absl::OkStatus();
}

void SchedulerMetrics::OnCommit(const std::vector<store::JobChange>& changes) {
  for (const store::JobChange& change : changes) {
    const core::Job& job = change.job;
    const std::vector<std::string> per_job = {job.tenant_id, job.id};
    for (const core::JobEvent& e : change.events) {
      if (e.type == core::JobEventType::kCreated) {
        submitted_->WithLabels({job.tenant_id})->Inc();
      }
      if (e.type != core::JobEventType::kStateChanged || !e.to_state) continue;
      const core::JobState to = *e.to_state;
      if (to == core::JobState::kRunning && e.from_state &&
          *e.from_state == core::JobState::kQueued && e.attempt == 1) {
        queue_wait_->WithLabels({})->Observe(
            absl::ToDoubleSeconds(e.time - job.create_time));
      }
      if (to == core::JobState::kRunning && e.from_state &&
          *e.from_state == core::JobState::kQueued) {
        awaiting_first_step_[job.id] = {e.attempt, e.time};
      }
      // A lost lease re-queues (or, restarts exhausted, fails) a RUNNING job
      // and sets its error in that same change; the error stays on the job
      // afterwards, so other transitions (a later cancel or pause) must not
      // count it again.
      if (e.from_state && *e.from_state == core::JobState::kRunning &&
          (to == core::JobState::kQueued || to == core::JobState::kFailed) &&
          job.error.reason == core::JobErrorReason::kWorkerLost) {
        lease_expiries_->WithLabels({})->Inc();
      }
      if (to == core::JobState::kQueued && e.from_state &&
          *e.from_state == core::JobState::kRunning) {
        requeued_->WithLabels({job.tenant_id})->Inc();
      }
      if (core::IsTerminal(to)) {
        finished_->WithLabels({job.tenant_id, StateLabel(to)})->Inc();
      }
    }
    if (!change.metrics.empty()) {
      auto waiting = awaiting_first_step_.find(job.id);
      if (waiting != awaiting_first_step_.end()) {
        for (const core::MetricPoint& p : change.metrics) {
          if (p.attempt != waiting->second.first) continue;
          first_step_->WithLabels({})->Observe(std::max(
              0.0, absl::ToDoubleSeconds(p.time - waiting->second.second)));
          awaiting_first_step_.erase(waiting);
          break;
        }
      }
    }
    if (job.state != core::JobState::kRunning) {
      awaiting_first_step_.erase(job.id);
    }
    if (core::IsTerminal(job.state) || job.state == core::JobState::kQueued) {
      // The series live while the job runs.
      train_loss_->Remove(per_job);
      eval_loss_->Remove(per_job);
      for (metrics::GaugeFamily* g : {eval_exact_match_, eval_normalized_match_,
                                      eval_token_f1_, eval_pattern_match_}) {
        g->Remove(per_job);
      }
      for (const char* split : {"train", "eval"}) {
        const std::vector<std::string> labels = {job.tenant_id, job.id, split};
        reward_accuracy_->Remove(labels);
        reward_margin_->Remove(labels);
      }
      tokens_per_second_->Remove(per_job);
      progress_->Remove(per_job);
      continue;
    }
    if (!change.metrics.empty()) {
      // The newest training point and the newest evaluation (an
      // evaluation-only point has no train loss or throughput).
      for (auto it = change.metrics.rbegin(); it != change.metrics.rend();
           ++it) {
        if (it->train_loss) {
          train_loss_->WithLabels(per_job)->Set(*it->train_loss);
          tokens_per_second_->WithLabels(per_job)->Set(it->tokens_per_s);
          if (it->preference) {
            const std::vector<std::string> labels = {job.tenant_id, job.id,
                                                     "train"};
            reward_accuracy_->WithLabels(labels)->Set(
                it->preference->reward_accuracy);
            reward_margin_->WithLabels(labels)->Set(
                it->preference->reward_margin);
          }
          break;
        }
      }
      for (auto it = change.metrics.rbegin(); it != change.metrics.rend();
           ++it) {
        if (it->eval_loss) {
          eval_loss_->WithLabels(per_job)->Set(*it->eval_loss);
          if (it->eval_preference) {
            const std::vector<std::string> labels = {job.tenant_id, job.id,
                                                     "eval"};
            reward_accuracy_->WithLabels(labels)->Set(
                it->eval_preference->reward_accuracy);
            reward_margin_->WithLabels(labels)->Set(
                it->eval_preference->reward_margin);
          }
          if (it->eval_task) {
            eval_exact_match_->WithLabels(per_job)->Set(
                it->eval_task->exact_match);
            eval_normalized_match_->WithLabels(per_job)->Set(
                it->eval_task->normalized_match);
            eval_token_f1_->WithLabels(per_job)->Set(it->eval_task->token_f1);
            if (it->eval_task->pattern_match) {
              eval_pattern_match_->WithLabels(per_job)->Set(
                  *it->eval_task->pattern_match);
            }
          }
          break;
        }
      }
    }
    if (job.progress.total_steps > 0) {
      progress_->WithLabels(per_job)->Set(
          static_cast<double>(job.progress.step) /
          static_cast<double>(job.progress.total_steps));
    }
  }
}

void SchedulerMetrics::OnCommitTiming(absl::Duration transaction, int writes) {
  commit_seconds_->WithLabels({})->Observe(absl::ToDoubleSeconds(transaction));
  commit_writes_->WithLabels({})->Observe(writes);
}

void SchedulerMetrics::OnLimitRefused(const std::string& tenant,
                                      absl::string_view limit) {
  limit_refusals_->WithLabels({tenant, std::string(limit)})->Inc();
}

}  // namespace ftune::server::rpc
