#include "server/engine/dispatcher.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "ftune/v1/job_spec.pb.h"
#include "server/core/placement.h"
#include "server/core/storage_layout.h"
#include "server/engine/convert.h"

namespace ftune::server::engine {
namespace {

v1::WorkerCommand CancelCommand(const core::Job& job, absl::Duration grace) {
  v1::WorkerCommand command;
  v1::CancelJobCommand* c = command.mutable_cancel_job();
  c->set_job_id(job.id);
  c->set_attempt(static_cast<int32_t>(job.attempt));
  SetDuration(grace, c->mutable_grace_period());
  return command;
}

v1::WorkerCommand PauseCommand(const core::Job& job) {
  v1::WorkerCommand command;
  v1::PauseJobCommand* p = command.mutable_pause_job();
  p->set_job_id(job.id);
  p->set_attempt(static_cast<int32_t>(job.attempt));
  return command;
}

bool ChangesPlacement(const store::JobChange& change) {
  for (const core::JobEvent& e : change.events) {
    if (e.type == core::JobEventType::kCreated ||
        e.type == core::JobEventType::kStateChanged) {
      return true;
    }
  }
  return false;
}

}  // namespace

Dispatcher::Dispatcher(store::Store* store, Clock* clock,
                       DispatcherOptions options)
    : store_(store), clock_(clock), options_(options) {}

Dispatcher::~Dispatcher() { Shutdown(); }

void Dispatcher::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stop_) return;
  started_ = true;
  wake_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void Dispatcher::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    stop_ = true;
    // Closing under the lock: Detach (which waits for it) cannot race with
    // a stream being deleted while we call it.
    for (auto& [id, attached] : streams_) {
      (void)id;
      attached.stream->Close(absl::UnavailableError("scheduler shutting down"));
    }
  }
  if (thread_.joinable()) thread_.join();
}

void Dispatcher::Notify() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

int64_t Dispatcher::rounds() const {
  absl::MutexLock lock(&mu_);
  return rounds_;
}

void Dispatcher::Loop() {
  // Workers could not heartbeat while no scheduler ran: give every lease
  // one full duration from now before the first expiry check.
  absl::StatusOr<int64_t> extended =
      store_->ExtendLeases(clock_->Now() + options_.lease_duration);
  if (!extended.ok()) {
    FTUNE_LOG(ERROR) << "extending leases at start: "
                     << extended.status().message();
  }
  // A burst of notifications (thousands of creates a second) runs one round
  // per kMinRoundInterval, not one per notification: a round reads every
  // queued job.
  constexpr absl::Duration kMinRoundInterval = absl::Milliseconds(5);
  absl::Time last_round = absl::InfinitePast();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return wake_ || stop_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&ready), options_.tick);
      if (stop_) return;
      const absl::Duration since = absl::Now() - last_round;
      if (since < kMinRoundInterval) {
        auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stop_;
        };
        mu_.AwaitWithTimeout(absl::Condition(&stopping),
                             kMinRoundInterval - since);
        if (stop_) return;
      }
      wake_ = false;
    }
    last_round = absl::Now();
    RunRound();
  }
}

void Dispatcher::OnCommit(const std::vector<store::JobChange>& changes) {
  bool notify = false;
  for (const store::JobChange& change : changes) {
    if (!ChangesPlacement(change)) continue;
    notify = true;
    const core::Job& job = change.job;
    if (job.worker_id.empty()) continue;
    for (const core::JobEvent& e : change.events) {
      if (e.type != core::JobEventType::kStateChanged || !e.to_state) continue;
      if (*e.to_state == core::JobState::kCancelling) {
        SendTo(job.worker_id, CancelCommand(job, options_.cancel_grace));
      } else if (*e.to_state == core::JobState::kPaused) {
        SendTo(job.worker_id, PauseCommand(job));
      }
    }
  }
  if (notify) Notify();
}

void Dispatcher::SendTo(const std::string& worker_id,
                        const v1::WorkerCommand& command) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(worker_id);
  // No stream: the worker gets it on (re)connect (CommandsFor), or learns
  // of it from ReportProgress (cancel_requested / pause_requested).
  if (it != streams_.end()) it->second.stream->Send(command);
}

uint64_t Dispatcher::NextStreamGeneration() {
  absl::MutexLock lock(&mu_);
  return next_generation_++;
}

void Dispatcher::Attach(const std::string& worker_id, CommandStream* stream,
                        uint64_t generation) {
  absl::MutexLock lock(&mu_);
  if (stop_) {
    stream->Close(absl::UnavailableError("scheduler shutting down"));
    return;
  }
  auto [it, inserted] =
      streams_.emplace(worker_id, AttachedStream{stream, generation});
  if (inserted) return;
  const absl::Status replaced = absl::AbortedError(
      "replaced by a newer StreamCommands call of the same worker");
  if (it->second.generation > generation) {
    // A newer call got here first (its set-up task was quicker).
    stream->Close(replaced);
    return;
  }
  it->second.stream->Close(replaced);
  it->second = AttachedStream{stream, generation};
}

void Dispatcher::Detach(const std::string& worker_id, CommandStream* stream) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(worker_id);
  if (it != streams_.end() && it->second.stream == stream) streams_.erase(it);
}

void Dispatcher::CloseStream(const std::string& worker_id,
                             const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(worker_id);
  if (it != streams_.end()) it->second.stream->Close(status);
}

absl::StatusOr<v1::AssignJobCommand> Dispatcher::BuildAssignment(
    const store::HeldAttempt& held) const {
  const core::Job& job = held.job;
  v1::AssignJobCommand a;
  a.set_job_id(job.id);
  a.set_attempt(static_cast<int32_t>(job.attempt));
  a.set_tenant_id(job.tenant_id);
  if (!a.mutable_spec()->ParseFromString(job.spec)) {
    return absl::InternalError(
        absl::StrCat("job ", job.id, ": stored spec cannot be parsed"));
  }
  absl::StatusOr<core::Model> model = store_->GetModel(job.model);
  if (!model.ok()) {
    return absl::InternalError(absl::StrCat(
        "job ", job.id, ": model ", job.model, ": ", model.status().message()));
  }
  a.set_model_path(model->directory);
  auto file_path = [&](const std::string& id,
                       const char* what) -> absl::StatusOr<std::string> {
    absl::StatusOr<core::FileRecord> f = store_->GetFile(store::kAnyTenant, id);
    if (!f.ok()) {
      return absl::InternalError(absl::StrCat("job ", job.id, ": ", what, " ",
                                              id, ": ", f.status().message()));
    }
    return f->storage_path;
  };
  FTUNE_ASSIGN_OR_RETURN(std::string training,
                         file_path(job.training_file_id, "training file"));
  a.set_training_file_path(training);
  if (!job.validation_file_id.empty()) {
    FTUNE_ASSIGN_OR_RETURN(
        std::string validation,
        file_path(job.validation_file_id, "validation file"));
    a.set_validation_file_path(validation);
  }
  if (job.last_checkpoint) {
    a.set_resume_checkpoint_path(job.last_checkpoint->path);
  }
  a.set_checkpoint_dir(core::CheckpointDir(job.tenant_id, job.id));
  a.set_adapter_dir(core::AdapterDir(job.tenant_id, job.id));
  a.set_log_path(core::AttemptLogPath(job.tenant_id, job.id, job.attempt));
  a.set_adapter_name(AdapterName(job.model, a.spec().suffix(), job.id));
  for (int32_t g : held.resources.gpu_indices) a.add_gpu_indices(g);
  a.set_cpu_threads(std::max(held.resources.cpu_threads, 0));
  SetTimestamp(job.lease_expiry, a.mutable_lease_expire_time());
  return a;
}

std::vector<v1::WorkerCommand> Dispatcher::CommandsFor(
    const std::vector<store::HeldAttempt>& held) const {
  std::vector<v1::WorkerCommand> out;
  for (const store::HeldAttempt& h : held) {
    absl::StatusOr<v1::AssignJobCommand> a = BuildAssignment(h);
    if (!a.ok()) {
      FTUNE_LOG(ERROR) << a.status().message();
      continue;
    }
    v1::WorkerCommand assign;
    *assign.mutable_assign_job() = *std::move(a);
    out.push_back(std::move(assign));
    if (h.job.state == core::JobState::kCancelling) {
      out.push_back(CancelCommand(h.job, options_.cancel_grace));
    } else if (h.job.state == core::JobState::kPaused) {
      out.push_back(PauseCommand(h.job));
    }
  }
  return out;
}

absl::StatusOr<std::vector<int32_t>> Dispatcher::FreeGpus(
    const core::Worker& worker) {
  std::vector<int32_t> all = worker.capabilities.gpu_indices;
  if (all.empty()) {
    for (int32_t i = 0; i < worker.capabilities.gpus; ++i) all.push_back(i);
  }
  FTUNE_ASSIGN_OR_RETURN(std::vector<store::HeldAttempt> held,
                         store_->ListHeldAttempts(worker.id));
  std::set<int32_t> used;
  for (const store::HeldAttempt& h : held) {
    used.insert(h.resources.gpu_indices.begin(), h.resources.gpu_indices.end());
  }
  std::vector<int32_t> free;
  for (int32_t g : all) {
    if (used.count(g) == 0) free.push_back(g);
  }
  return free;
}

void Dispatcher::RunRound() {
  {
    absl::MutexLock lock(&mu_);
    ++rounds_;
  }
  const absl::Time now = clock_->Now();
  // Expiry is a write (through the group commit): at most every 200 ms.
  absl::StatusOr<store::LeaseExpiryResult> expired = store::LeaseExpiryResult{};
  if (now - last_expiry_ >= absl::Milliseconds(200) || now < last_expiry_) {
    last_expiry_ = now;
    expired = store_->ExpireLeases(now);
  }
  if (!expired.ok()) {
    FTUNE_LOG(ERROR) << "lease expiry: " << expired.status().message();
  } else {
    for (const core::Job& j : expired->requeued) {
      FTUNE_LOG(WARNING) << "job " << j.id << ": lease lost, re-queued as "
                         << "attempt " << j.attempt;
    }
    for (const core::Job& j : expired->failed) {
      FTUNE_LOG(WARNING) << "job " << j.id << ": lease lost, no restarts left: "
                         << "FAILED";
    }
    for (const std::string& w : expired->lost_workers) {
      FTUNE_LOG(WARNING) << "worker " << w << ": lease expired, LOST";
      CloseStream(w, absl::FailedPreconditionError(
                         "worker is LOST (its lease expired); register again"));
    }
  }

  // Nothing can be placed while no worker takes work: skip the snapshot
  // (it reads every queued job).
  absl::StatusOr<std::vector<core::Worker>> registered = store_->ListWorkers();
  if (registered.ok() && std::none_of(registered->begin(), registered->end(),
                                      [now](const core::Worker& w) {
                                        return w.state ==
                                                   core::WorkerState::kActive &&
                                               w.lease_expiry > now;
                                      })) {
    return;
  }
  absl::StatusOr<core::SchedulingSnapshot> snapshot =
      store_->GetSchedulingSnapshot();
  if (!snapshot.ok()) {
    FTUNE_LOG(ERROR) << "scheduling snapshot: " << snapshot.status().message();
    return;
  }
  const std::vector<core::Assignment> plan =
      core::PlanAssignments(*snapshot, now);
  std::map<std::string, const core::Job*> queued;
  for (const core::Job& j : snapshot->queued) queued[j.id] = &j;
  std::map<std::string, const core::Worker*> workers;
  for (const core::Worker& w : snapshot->workers) workers[w.id] = &w;
  // GPU indices handed out in this round, per worker.
  std::map<std::string, std::set<int32_t>> taken;

  for (const core::Assignment& a : plan) {
    const core::Job& job = *queued.at(a.job_id);
    const core::Worker& worker = *workers.at(a.worker_id);
    store::LeaseResources resources;
    resources.cpu_threads = job.resources.cpu_threads;
    if (job.resources.gpus > 0) {
      absl::StatusOr<std::vector<int32_t>> free = FreeGpus(worker);
      if (!free.ok()) {
        FTUNE_LOG(ERROR) << "worker " << worker.id
                         << " GPUs: " << free.status().message();
        continue;
      }
      std::set<int32_t>& mine = taken[worker.id];
      for (int32_t g : *free) {
        if (static_cast<int32_t>(resources.gpu_indices.size()) ==
            job.resources.gpus) {
          break;
        }
        if (mine.insert(g).second) resources.gpu_indices.push_back(g);
      }
      if (static_cast<int32_t>(resources.gpu_indices.size()) <
          job.resources.gpus) {
        continue;  // The snapshot was stale; the next round re-plans.
      }
    }
    absl::StatusOr<core::Job> granted =
        store_->GrantLease(job.id, job.attempt, worker.id,
                           now + options_.lease_duration, resources);
    if (!granted.ok()) {
      // Lost a race (cancelled meanwhile, worker drained, quota): re-plan.
      FTUNE_LOG(INFO) << "job " << job.id << " not granted to " << worker.id
                      << ": " << granted.status().message();
      continue;
    }
    store::HeldAttempt held;
    held.job = *granted;
    held.resources = resources;
    held.grant_time = now;
    absl::StatusOr<v1::AssignJobCommand> command = BuildAssignment(held);
    if (!command.ok()) {
      // The worker cannot run it; it sees the attempt in its next
      // reconnect replay too, so fail the attempt now instead.
      FTUNE_LOG(ERROR) << command.status().message();
      core::AttemptEnd end;
      end.outcome = core::AttemptOutcome::kFailed;
      end.error.reason = core::JobErrorReason::kInternal;
      end.error.message = std::string(command.status().message());
      (void)store_->EndAttempt(job.id, granted->attempt, worker.id, end);
      continue;
    }
    FTUNE_LOG(INFO) << "job " << job.id << " attempt " << granted->attempt
                    << " -> worker " << worker.id;
    v1::WorkerCommand wc;
    *wc.mutable_assign_job() = *std::move(command);
    SendTo(worker.id, wc);
  }
}

}  // namespace ftune::server::engine
