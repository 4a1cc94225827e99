// A randomized simulation of the scheduler core (FoundationDB's habit, at
// small scale): the real SQLite store, the dispatcher (rounds run
// synchronously) and the placement policy, a fake clock, and simulated
// workers that register, take attempts, report progress, finish, fail,
// stall, die and come back, while tenants create, cancel, pause and resume
// jobs. Each seed is a different world; after every event the invariants
// are checked against the store:
//   - a job is held by at most one worker, and only by the worker and
//     attempt its row names;
//   - no worker runs more than it has: GPU indices held by one worker are
//     disjoint and its own, CPU jobs fit its slots;
//   - tenant quotas (running jobs, GPUs) hold;
//   - attempts never go back; a terminal state never changes;
//   - a report from a stale attempt is refused (FAILED_PRECONDITION) and
//     changes nothing;
// and at the end, with every worker healthy and paused jobs resumed, every
// job reaches exactly one terminal state.
//
// CI runs kCiSeeds seeds. By hand: FTUNE_SIM_SEEDS=5000 runs seeds 1..5000;
// FTUNE_SIM_SEED=1234 replays one (each failure names its seed and event).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "ftune/v1/job_spec.pb.h"
#include "ftune/v1/worker.pb.h"
#include "gtest/gtest.h"
#include "server/engine/dispatcher.h"
#include "server/store/sqlite_store.h"
#include "tests/testing/temp_dir.h"

namespace ftune::server::engine {
namespace {

constexpr int kCiSeeds = 20;
constexpr int kEvents = 160;
constexpr absl::Duration kLease = absl::Seconds(30);

// A worker's command stream. The dispatcher may send from the store's
// writer thread (its commit hook), so the queue is locked.
class Stream : public CommandStream {
 public:
  void Send(const v1::WorkerCommand& command) override {
    absl::MutexLock lock(&mu_);
    pending_.push_back(command);
  }
  void Close(const absl::Status&) override {}
  std::vector<v1::WorkerCommand> Take() {
    absl::MutexLock lock(&mu_);
    return std::exchange(pending_, {});
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::WorkerCommand> pending_ ABSL_GUARDED_BY(mu_);
};

struct SimWorker {
  core::Worker record;  // As registered (id after the first registration).
  std::unique_ptr<Stream> stream;
  bool alive = true;     // A dead worker does nothing until it comes back.
  bool stalled = false;  // Alive but silent (no heartbeats, no reports).
  // What the worker believes it runs: job -> attempt, and its next batch.
  std::map<std::string, int64_t> running;
  std::map<std::string, int64_t> next_batch;
  std::set<std::string> stop_requested;  // Cancel or pause received.
  // Every (job, attempt) it was ever assigned, for late duplicates.
  std::vector<std::pair<std::string, int64_t>> history;
};

class Simulation {
 public:
  Simulation(uint64_t seed, const std::string& dir) : rng_(seed) {
    store::SqliteStoreOptions options;
    options.path = dir + "/sched.db";
    options.synchronous_full = false;
    options.clock = &clock_;
    options.on_commit = [this](const std::vector<store::JobChange>& changes) {
      if (dispatcher_ != nullptr) dispatcher_->OnCommit(changes);
    };
    auto opened = store::SqliteStore::Open(options);
    if (!opened.ok()) {
      Fail(absl::StrCat("store: ", opened.status().ToString()));
      return;
    }
    store_ = *std::move(opened);
    DispatcherOptions d;
    d.lease_duration = kLease;
    dispatcher_ = std::make_unique<Dispatcher>(store_.get(), &clock_, d);

    core::Model model;
    model.name = "tiny";
    model.directory = "models/tiny";
    Check(store_->UpsertModel(model).status(), "model");
    // Two tenants, one with tight quotas.
    for (int i = 0; i < 2; ++i) {
      core::Tenant t;
      t.name = absl::StrCat("tenant", i);
      t.weight = 1.0 + i;
      if (i == 1)
        t.quota = {/*max_queued_jobs=*/0, /*max_running_jobs=*/2,
                   /*max_gpus=*/2};
      auto created = store_->CreateTenant(t);
      if (!created.ok()) {
        Fail(created.status().ToString());
        return;
      }
      tenants_.push_back(*created);
      core::FileRecord f;
      f.tenant_id = created->id;
      f.filename = "train.jsonl";
      f.purpose = "fine-tune";
      f.status = core::FileStatus::kReady;
      f.storage_path = "files/" + created->id + "/x";
      auto file = store_->CreateFile(f);
      if (!file.ok()) {
        Fail(file.status().ToString());
        return;
      }
      files_.push_back(file->id);
    }
    // A CPU worker with 2 slots and two GPU workers (2 and 4 GPUs).
    AddWorker("cpu", 0, 2);
    AddWorker("gpu2", 2, 0);
    AddWorker("gpu4", 4, 0);
  }

  ~Simulation() {
    if (dispatcher_ != nullptr) dispatcher_->Shutdown();
    dispatcher_.reset();
  }

  // Runs `events` random events, then drains; returns the first failure.
  std::optional<std::string> Run(int events) {
    for (event_ = 1; event_ <= events && !failure_; ++event_) {
      RandomEvent();
      CheckInvariants();
    }
    if (!failure_) Drain();
    return failure_;
  }

 private:
  // ---- events --------------------------------------------------------------
  void RandomEvent() {
    const int roll = Uniform(100);
    if (roll < 14) return CreateJob();
    if (roll < 18) return UserAction(0);
    if (roll < 21) return UserAction(1);
    if (roll < 24) return UserAction(2);
    if (roll < 36) return clock_.Advance(absl::Seconds(1 + Uniform(20)));
    if (roll < 48) {
      Trace("round");
      return dispatcher_->RunRound();
    }
    SimWorker& w = workers_[Uniform(workers_.size())];
    if (roll < 60) return Heartbeat(w);
    if (roll < 72) return ReadCommands(w);
    if (roll < 80) return Report(w);
    if (roll < 86) return Finish(w);
    if (roll < 90) return Zombie(w);
    if (roll < 94) {
      w.stalled = !w.stalled;
      return;
    }
    if (roll < 97) return Die(w);
    return ComeBack(w);
  }

  void CreateJob() {
    const size_t t = Uniform(tenants_.size());
    core::Job j;
    j.tenant_id = tenants_[t].id;
    j.model = "tiny";
    j.training_file_id = files_[t];
    j.max_restarts = Uniform(3);
    j.priority = Uniform(3);
    j.resources.gpus = std::vector<int>{0, 1, 1, 2, 3}[Uniform(5)];
    j.resources.memory_bytes = int64_t{1} << 30;
    v1::JobSpec spec;
    spec.set_model("tiny");
    spec.set_training_file(files_[t]);
    j.spec = spec.SerializeAsString();
    auto created = store_->CreateJob(j);
    // A job over the tenant's quota is refused (it could never run).
    if (created.status().code() == absl::StatusCode::kResourceExhausted) return;
    if (!created.ok()) {
      return Fail(absl::StrCat("CreateJob: ", created.status().ToString()));
    }
    index_of_[created->job.id] = jobs_.size();
    jobs_.push_back(created->job.id);
    tenant_of_[created->job.id] = j.tenant_id;
    // Distinct creation times: FIFO ties would fall to the random ids.
    clock_.Advance(absl::Milliseconds(1));
  }

  // 0 cancel, 1 pause, 2 resume, on a random job. Refusals
  // (FAILED_PRECONDITION for a state that cannot take it) are fine; any
  // other error is not.
  void UserAction(int kind) {
    if (jobs_.empty()) return;
    const std::string& id = jobs_[Uniform(jobs_.size())];
    const std::string& tenant = tenant_of_[id];
    absl::Status s;
    if (kind == 0) s = store_->CancelJob(tenant, id, "simulated user").status();
    if (kind == 1) s = store_->PauseJob(tenant, id).status();
    if (kind == 2) s = store_->ResumeJob(tenant, id).status();
    if (!s.ok() && s.code() != absl::StatusCode::kFailedPrecondition) {
      Fail(absl::StrCat("user action ", kind, " on ", id, ": ", s.ToString()));
    }
  }

  void Heartbeat(SimWorker& w) {
    if (!w.alive || w.stalled) return;
    auto held = store_->HeartbeatWorker(w.record.id, clock_.Now() + kLease);
    if (held.status().code() == absl::StatusCode::kFailedPrecondition) {
      // LOST: the agent registers again with a fresh stream and forgets
      // what it ran (the store already took it away).
      w.running.clear();
      w.stop_requested.clear();
      return Register(w);
    }
    if (!held.ok()) return Fail(held.status().ToString());
    // The worker stops whatever the scheduler no longer says it holds.
    std::map<std::string, int64_t> still;
    for (const store::JobAttemptRef& ref : *held) {
      auto it = w.running.find(ref.job_id);
      if (it != w.running.end() && it->second == ref.attempt) {
        still.insert(*it);
      }
    }
    for (const auto& [job, attempt] : w.running) {
      if (!still.count(job)) {
        Trace(
            absl::StrCat(w.record.id, " heartbeat drops ", job, "#", attempt));
      }
    }
    w.running = std::move(still);
  }

  void ReadCommands(SimWorker& w) {
    if (!w.alive || w.stalled) return;
    for (const v1::WorkerCommand& c : w.stream->Take()) {
      if (c.has_assign_job()) {
        const auto& a = c.assign_job();
        if (w.running.count(a.job_id()) &&
            w.running[a.job_id()] == a.attempt()) {
          continue;  // Already runs it (a replay).
        }
        w.running[a.job_id()] = a.attempt();
        w.history.emplace_back(a.job_id(), a.attempt());
        Trace(
            absl::StrCat(w.record.id, " runs ", a.job_id(), "#", a.attempt()));
        w.next_batch[a.job_id()] = 1;
        w.stop_requested.erase(a.job_id());
      } else if (c.has_cancel_job()) {
        w.stop_requested.insert(c.cancel_job().job_id());
      } else if (c.has_pause_job()) {
        w.stop_requested.insert(c.pause_job().job_id());
      }
    }
  }

  // A progress batch for one attempt the worker runs. A stale attempt must
  // be refused and change nothing.
  void Report(SimWorker& w) {
    if (!w.alive || w.stalled || w.running.empty()) return;
    const std::string job_id = PickRunning(w);
    const int64_t attempt = w.running[job_id];
    const std::optional<core::Job> before = Load(job_id);
    if (!before) return;
    store::ProgressReport r;
    r.worker_id = w.record.id;
    r.job_id = job_id;
    r.attempt = attempt;
    r.batch_number = w.next_batch[job_id];
    core::MetricPoint p;
    p.attempt = attempt;
    p.step = r.batch_number;
    p.train_loss = 1.0 / static_cast<double>(r.batch_number);
    r.metrics.push_back(p);
    core::JobProgress progress;
    progress.step = r.batch_number;
    progress.total_steps = 100;
    r.progress = progress;
    r.lease_expiry = clock_.Now() + kLease;
    const bool current = before->attempt == attempt &&
                         before->worker_id == w.record.id &&
                         !core::IsTerminal(before->state);
    auto applied = store_->ApplyProgress(r);
    if (applied.ok()) {
      if (!current) {
        return Fail(
            absl::StrCat("a stale report of ", job_id, " attempt ", attempt,
                         " on ", w.record.id, " was applied (job at attempt ",
                         before->attempt, " on '", before->worker_id, "', ",
                         core::JobStateName(before->state), ")"));
      }
      ++w.next_batch[job_id];
      return;
    }
    if (applied.status().code() != absl::StatusCode::kFailedPrecondition) {
      return Fail(absl::StrCat("ApplyProgress: ", applied.status().ToString()));
    }
    if (current && before->state == core::JobState::kRunning) {
      return Fail(absl::StrCat("the current attempt ", attempt, " of ", job_id,
                               " was refused: ", applied.status().ToString()));
    }
    ExpectUnchanged(*before, "a refused progress report");
    w.running.erase(job_id);
  }

  // The worker ends one attempt: stopped when asked to, else succeeded,
  // failed or failed retryably.
  void Finish(SimWorker& w) {
    if (!w.alive || w.stalled || w.running.empty()) return;
    const std::string job_id = PickRunning(w);
    const int64_t attempt = w.running[job_id];
    const std::optional<core::Job> before = Load(job_id);
    if (!before) return;
    core::AttemptEnd end;
    if (w.stop_requested.count(job_id)) {
      end.outcome = core::AttemptOutcome::kStopped;
    } else {
      const int r = Uniform(10);
      end.outcome = r < 6   ? core::AttemptOutcome::kSucceeded
                    : r < 9 ? core::AttemptOutcome::kRetryableFailure
                            : core::AttemptOutcome::kFailed;
      if (end.outcome != core::AttemptOutcome::kSucceeded) {
        end.error.reason = core::JobErrorReason::kTrainerError;
        end.error.message = "simulated";
        end.error.retryable =
            end.outcome == core::AttemptOutcome::kRetryableFailure;
      } else {
        end.adapter.path =
            absl::StrCat("jobs/", before->tenant_id, "/", job_id, "/adapter");
        end.adapter.step = w.next_batch[job_id];
      }
    }
    const bool current =
        before->attempt == attempt && before->worker_id == w.record.id;
    Trace(absl::StrCat(w.record.id, " ends ", job_id, "#", attempt, " outcome ",
                       static_cast<int>(end.outcome)));
    auto ended = store_->EndAttempt(job_id, attempt, w.record.id, end);
    w.running.erase(job_id);
    w.stop_requested.erase(job_id);
    if (ended.ok()) {
      if (!current) {
        Fail(absl::StrCat("a stale end of ", job_id, " attempt ", attempt,
                          " was applied"));
      }
      return;
    }
    if (ended.status().code() != absl::StatusCode::kFailedPrecondition) {
      return Fail(absl::StrCat("EndAttempt: ", ended.status().ToString()));
    }
    if (!current) ExpectUnchanged(*before, "a refused stale end");
  }

  // A late or duplicated message: a report or an end of an attempt the
  // worker once ran and no longer does (retried, lost, ended). It must be
  // refused and change nothing.
  void Zombie(SimWorker& w) {
    if (!w.alive || w.history.empty()) return;
    // Half the time, the most dangerous kind: an older attempt of a job this
    // same worker holds again now (only the attempt number tells them apart).
    std::vector<std::pair<std::string, int64_t>> sharp;
    if (Uniform(2) == 0) {
      for (const auto& [job, attempt] : w.history) {
        const std::optional<core::Job> j = Load(job);
        if (j && j->worker_id == w.record.id && j->attempt > attempt) {
          sharp.emplace_back(job, attempt);
        }
      }
    }
    const auto& pool = sharp.empty() ? w.history : sharp;
    const auto [job_id, attempt] = pool[Uniform(pool.size())];
    auto running = w.running.find(job_id);
    if (running != w.running.end() && running->second == attempt) return;
    const std::optional<core::Job> before = Load(job_id);
    if (!before) return;
    if (before->attempt == attempt && before->worker_id == w.record.id &&
        core::OccupiesWorker(before->state)) {
      return;  // Still its attempt (the worker forgot it): not stale.
    }
    absl::Status s;
    if (Uniform(2) == 0) {
      store::ProgressReport r;
      r.worker_id = w.record.id;
      r.job_id = job_id;
      r.attempt = attempt;
      r.batch_number = 1 + Uniform(5);
      core::MetricPoint p;
      p.attempt = attempt;
      p.step = r.batch_number;
      p.train_loss = 9.0;
      r.metrics.push_back(p);
      r.lease_expiry = clock_.Now() + kLease;
      s = store_->ApplyProgress(r).status();
    } else {
      core::AttemptEnd end;
      end.outcome = core::AttemptOutcome::kSucceeded;
      end.adapter.path = "jobs/zombie/adapter";
      s = store_->EndAttempt(job_id, attempt, w.record.id, end).status();
    }
    Trace(absl::StrCat(w.record.id, " zombie ", job_id, "#", attempt, ": ",
                       s.ToString()));
    if (s.ok()) {
      return Fail(absl::StrCat("a late message of ", job_id, " attempt ",
                               attempt, " from ", w.record.id,
                               " was applied (job at attempt ", before->attempt,
                               ", ", core::JobStateName(before->state), ")"));
    }
    if (s.code() != absl::StatusCode::kFailedPrecondition) {
      return Fail(absl::StrCat("a late message: ", s.ToString()));
    }
    ExpectUnchanged(*before, "a refused late message");
  }

  void Die(SimWorker& w) {
    if (!w.alive) return;
    Trace(absl::StrCat(w.record.id, " dies"));
    w.alive = false;
    w.running.clear();
    w.stop_requested.clear();
    dispatcher_->Detach(w.record.id, w.stream.get());
  }

  void ComeBack(SimWorker& w) {
    if (w.alive) return;
    w.alive = true;
    w.stalled = false;
    // A restarted agent names its previous id: what it held is lost now.
    auto lost = store_->MarkWorkerLost(w.record.id);
    if (!lost.ok()) return Fail(lost.status().ToString());
    Register(w);
  }

  void AddWorker(const std::string& host, int32_t gpus, int32_t slots) {
    SimWorker w;
    // Fixed ids: placement ties between equally free workers fall to them.
    w.record.id = "worker-sim-" + host;
    w.record.hostname = host;
    w.record.capabilities.gpus = gpus;
    w.record.capabilities.gpu_type = gpus > 0 ? "H100" : "";
    w.record.capabilities.gpu_memory_bytes = gpus > 0 ? int64_t{80} << 30 : 0;
    w.record.capabilities.cpu_slots = slots;
    w.record.capabilities.memory_bytes = int64_t{256} << 30;
    workers_.push_back(std::move(w));
    Register(workers_.back());
  }

  void Register(SimWorker& w) {
    Trace(absl::StrCat(w.record.hostname, " ", w.record.id, " registers"));
    auto r = store_->RegisterWorker(w.record, clock_.Now() + kLease);
    if (!r.ok())
      return Fail(absl::StrCat("RegisterWorker: ", r.status().ToString()));
    w.record.id = r->id;
    if (w.stream != nullptr) dispatcher_->Detach(w.record.id, w.stream.get());
    w.stream = std::make_unique<Stream>();
    // As WorkerService.StreamCommands: a (re)connected stream first gets an
    // assignment for every attempt the worker still holds (a worker that
    // was LOST may keep a job whose own lease had not run out yet).
    auto held = store_->ListHeldAttempts(w.record.id);
    if (!held.ok()) return Fail(held.status().ToString());
    for (const v1::WorkerCommand& c : dispatcher_->CommandsFor(*held)) {
      w.stream->Send(c);
    }
    dispatcher_->Attach(w.record.id, w.stream.get(),
                        dispatcher_->NextStreamGeneration());
  }

  // ---- the end: every job reaches exactly one terminal state --------------
  void Drain() {
    for (SimWorker& w : workers_) {
      w.stalled = false;
      if (!w.alive) ComeBack(w);
    }
    for (int round = 0; round < 400 && !failure_; ++round) {
      bool open = false;
      for (const std::string& id : jobs_) {
        const std::optional<core::Job> j = Load(id);
        if (!j) return;
        if (j->state == core::JobState::kPaused && j->worker_id.empty()) {
          Check(store_->ResumeJob(tenant_of_[id], id).status(), "resume");
        }
        open = open || !core::IsTerminal(j->state);
      }
      if (!open) return;
      clock_.Advance(absl::Seconds(2));
      dispatcher_->RunRound();
      for (SimWorker& w : workers_) {
        Heartbeat(w);
        ReadCommands(w);
        while (!w.running.empty() && !failure_) Finish(w);
      }
      CheckInvariants();
    }
    if (failure_) return;
    for (const std::string& id : jobs_) {
      const std::optional<core::Job> j = Load(id);
      if (j && !core::IsTerminal(j->state)) {
        std::string beliefs;
        for (const SimWorker& w : workers_) {
          absl::StrAppend(&beliefs, " ", w.record.id, w.alive ? "" : " (dead)",
                          w.stalled ? " (stalled)" : "", ":");
          for (const auto& [job, attempt] : w.running) {
            absl::StrAppend(&beliefs, " ", job, "#", attempt);
          }
        }
        return Fail(absl::StrCat(id,
                                 " never ended: ", core::JobStateName(j->state),
                                 " attempt ", j->attempt, " worker '",
                                 j->worker_id, "'; the workers run:", beliefs));
      }
    }
  }

  // ---- invariants ----------------------------------------------------------
  void CheckInvariants() {
    if (failure_) return;
    std::map<std::string, std::string> holder;               // job -> worker
    std::map<std::string, int64_t> running_jobs, gpus_used;  // per tenant
    for (const SimWorker& w : workers_) {
      auto held = store_->ListHeldAttempts(w.record.id);
      if (!held.ok()) return Fail(held.status().ToString());
      std::set<int32_t> gpus;
      int32_t cpu_jobs = 0;
      for (const store::HeldAttempt& h : *held) {
        const core::Job& j = h.job;
        if (!holder.emplace(j.id, w.record.id).second) {
          return Fail(absl::StrCat(j.id, " is held by ", holder[j.id],
                                   " and by ", w.record.id));
        }
        if (j.worker_id != w.record.id) {
          return Fail(absl::StrCat(j.id, " is held by ", w.record.id,
                                   " but its row names '", j.worker_id, "'"));
        }
        if (j.resources.gpus == 0) ++cpu_jobs;
        if (static_cast<int32_t>(h.resources.gpu_indices.size()) !=
            j.resources.gpus) {
          return Fail(absl::StrCat(j.id, " asked for ", j.resources.gpus,
                                   " GPUs and holds ",
                                   h.resources.gpu_indices.size()));
        }
        for (int32_t g : h.resources.gpu_indices) {
          if (g < 0 || g >= w.record.capabilities.gpus) {
            return Fail(absl::StrCat(j.id, " holds GPU ", g, " of ",
                                     w.record.id, ", which has ",
                                     w.record.capabilities.gpus));
          }
          if (!gpus.insert(g).second) {
            return Fail(absl::StrCat("GPU ", g, " of ", w.record.id,
                                     " is granted twice"));
          }
        }
        if (j.state == core::JobState::kRunning ||
            j.state == core::JobState::kCancelling) {
          ++running_jobs[j.tenant_id];
          gpus_used[j.tenant_id] += j.resources.gpus;
        }
      }
      if (w.record.capabilities.gpus == 0 &&
          cpu_jobs > w.record.capabilities.cpu_slots) {
        return Fail(absl::StrCat(w.record.id, " runs ", cpu_jobs,
                                 " CPU jobs in ",
                                 w.record.capabilities.cpu_slots, " slots"));
      }
    }
    for (const core::Tenant& t : tenants_) {
      if (t.quota.max_running_jobs > 0 &&
          running_jobs[t.id] > t.quota.max_running_jobs) {
        return Fail(absl::StrCat(t.name, " runs ", running_jobs[t.id],
                                 " jobs; quota ", t.quota.max_running_jobs));
      }
      if (t.quota.max_gpus > 0 && gpus_used[t.id] > t.quota.max_gpus) {
        return Fail(absl::StrCat(t.name, " uses ", gpus_used[t.id],
                                 " GPUs; quota ", t.quota.max_gpus));
      }
    }
    for (const std::string& id : jobs_) {
      const std::optional<core::Job> j = Load(id);
      if (!j) return;
      const bool held = holder.count(id) > 0;
      if ((j->state == core::JobState::kRunning ||
           j->state == core::JobState::kCancelling) &&
          !held) {
        return Fail(absl::StrCat(id, " is ", core::JobStateName(j->state),
                                 " but no worker holds it"));
      }
      if ((j->state == core::JobState::kQueued || core::IsTerminal(j->state)) &&
          (held || !j->worker_id.empty())) {
        return Fail(absl::StrCat(id, " is ", core::JobStateName(j->state),
                                 " and still held by '", j->worker_id, "'"));
      }
      int64_t& last_attempt = attempt_[id];
      if (j->attempt < last_attempt) {
        return Fail(absl::StrCat(id, " went back from attempt ", last_attempt,
                                 " to ", j->attempt));
      }
      last_attempt = j->attempt;
      auto [it, first] = terminal_.emplace(id, j->state);
      if (!core::IsTerminal(j->state)) {
        if (!first && core::IsTerminal(it->second)) {
          return Fail(absl::StrCat(id, " left its terminal state ",
                                   core::JobStateName(it->second), " for ",
                                   core::JobStateName(j->state)));
        }
        it->second = j->state;
      } else if (!first && core::IsTerminal(it->second) &&
                 it->second != j->state) {
        return Fail(
            absl::StrCat(id, " ended twice: ", core::JobStateName(it->second),
                         " then ", core::JobStateName(j->state)));
      } else {
        it->second = j->state;
      }
    }
  }

  void ExpectUnchanged(const core::Job& before, const std::string& what) {
    const std::optional<core::Job> after = Load(before.id);
    if (!after) return;
    if (after->state != before.state || after->attempt != before.attempt ||
        after->worker_id != before.worker_id ||
        after->last_sequence != before.last_sequence ||
        after->progress.step != before.progress.step) {
      Fail(absl::StrCat(what, " changed ", before.id, ": ",
                        core::JobStateName(before.state), " attempt ",
                        before.attempt, " seq ", before.last_sequence, " -> ",
                        core::JobStateName(after->state), " attempt ",
                        after->attempt, " seq ", after->last_sequence));
    }
  }

  // ---- helpers -------------------------------------------------------------
  // One of the jobs `w` runs, chosen in creation order (job ids are random:
  // choosing in id order would make a seed's run differ between runs).
  std::string PickRunning(const SimWorker& w) {
    std::vector<std::pair<size_t, std::string>> ordered;
    for (const auto& [job, attempt] : w.running) {
      ordered.emplace_back(index_of_[job], job);
    }
    std::sort(ordered.begin(), ordered.end());
    return ordered[Uniform(ordered.size())].second;
  }
  std::optional<core::Job> Load(const std::string& id) {
    auto j = store_->GetJob(tenant_of_[id], id);
    if (!j.ok()) {
      Fail(absl::StrCat("GetJob ", id, ": ", j.status().ToString()));
      return std::nullopt;
    }
    return *j;
  }
  size_t Uniform(size_t n) {
    return std::uniform_int_distribution<size_t>(0, n - 1)(rng_);
  }
  void Check(const absl::Status& s, const std::string& what) {
    if (!s.ok()) Fail(absl::StrCat(what, ": ", s.ToString()));
  }
  void Fail(const std::string& why) {
    if (failure_) return;
    failure_ = absl::StrCat("event ", event_, ": ", why);
    if (std::getenv("FTUNE_SIM_TRACE") != nullptr) {
      for (const std::string& line : trace_)
        absl::StrAppend(&*failure_, "\n  ", line);
    }
  }
  void Trace(const std::string& line) {
    trace_.push_back(absl::StrCat(event_, " ", line));
    if (std::getenv("FTUNE_SIM_TRACE") != nullptr) {
      std::fprintf(stderr, "sim: %s\n", trace_.back().c_str());
    }
  }

  std::mt19937_64 rng_;
  FakeClock clock_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::vector<core::Tenant> tenants_;
  std::vector<std::string> files_;
  std::vector<SimWorker> workers_;
  std::vector<std::string> jobs_;
  std::map<std::string, std::string> tenant_of_;
  std::map<std::string, size_t> index_of_;  // creation order
  std::map<std::string, int64_t> attempt_;
  std::map<std::string, core::JobState> terminal_;  // last state seen
  int event_ = 0;
  std::optional<std::string> failure_;
  std::vector<std::string> trace_;  // FTUNE_SIM_TRACE=1 prints it
};

std::vector<uint64_t> Seeds() {
  if (const char* one = std::getenv("FTUNE_SIM_SEED")) {
    return {std::strtoull(one, nullptr, 10)};
  }
  int n = kCiSeeds;
  if (const char* many = std::getenv("FTUNE_SIM_SEEDS")) n = std::atoi(many);
  std::vector<uint64_t> seeds;
  for (int i = 1; i <= n; ++i) seeds.push_back(static_cast<uint64_t>(i));
  return seeds;
}

TEST(SchedulerSimulationTest, InvariantsHoldForEverySeed) {
  int failures = 0;
  for (const uint64_t seed : Seeds()) {
    ::ftune::testing::TempDir dir;
    Simulation sim(seed, dir.path());
    const std::optional<std::string> failure = sim.Run(kEvents);
    if (failure) {
      ADD_FAILURE() << "seed " << seed << " (replay: FTUNE_SIM_SEED=" << seed
                    << "): " << *failure;
      if (++failures >= 3) break;
    }
  }
}

}  // namespace
}  // namespace ftune::server::engine
