#include "server/rpc/worker_service.h"

#include <algorithm>
#include <deque>
#include <filesystem>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/confined_path.h"
#include "common/contract/limits.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/quote.h"
#include "common/status.h"
#include "proto/convert/progress.h"
#include "server/core/labels.h"
#include "server/core/storage_layout.h"
#include "server/engine/dispatcher.h"
#include "server/model_registry.h"
#include "server/rpc/auth.h"
#include "server/rpc/convert.h"
#include "server/rpc/executor.h"
#include "server/rpc/status_util.h"
#include "server/store/store.h"

namespace ftune::server::rpc {
namespace {

using AttemptKey = std::pair<std::string, int64_t>;

// Bounds of the free-text values a worker registers (a DNS name's limit;
// GPU model names and versions are far shorter).
constexpr size_t kMaxHostnameBytes = 253;
constexpr size_t kMaxNameBytes = 128;

absl::Status RequireField(bool present, const char* field) {
  if (present) return absl::OkStatus();
  return InvalidField(field, absl::StrCat(field, " is required"));
}

// A required id field: present and well formed (so nothing longer than an
// id is ever echoed or looked up).
absl::Status RequireId(const std::string& id, absl::string_view prefix,
                       const char* field) {
  FTUNE_RETURN_IF_ERROR(RequireField(!id.empty(), field));
  if (IsValidId(id, prefix)) return absl::OkStatus();
  return InvalidField(field, absl::StrCat(field, " ", QuoteValue(id),
                                          " is not a ", prefix, " id"));
}

absl::StatusOr<core::Worker> WorkerFromProto(const v1::WorkerCapabilities& c) {
  if (c.hostname().empty() || c.hostname().size() > kMaxHostnameBytes) {
    return InvalidField(
        "capabilities.hostname",
        absl::StrCat("capabilities.hostname must be 1-", kMaxHostnameBytes,
                     " bytes, got ", QuoteValue(c.hostname())));
  }
  if (c.software_version().size() > kMaxNameBytes) {
    return InvalidField("capabilities.software_version",
                        absl::StrCat("capabilities.software_version must be "
                                     "at most ",
                                     kMaxNameBytes, " bytes, got ",
                                     QuoteValue(c.software_version())));
  }
  // The job spec's label rule (core/labels.h), so placement never sees a
  // key such as "../x" or "%2e%2e".
  const std::vector<core::LabelError> label_errors = core::CheckLabels(
      {c.labels().begin(), c.labels().end()}, "capabilities.labels");
  if (!label_errors.empty()) {
    const core::LabelError& first = label_errors.front();
    return InvalidField(first.field,
                        absl::StrCat(first.field, ": ", first.message));
  }
  if (c.cpu_slots() < 1) {
    return InvalidField(
        "capabilities.cpu_slots",
        absl::StrCat("capabilities.cpu_slots must be >= 1, got ",
                     c.cpu_slots()));
  }
  if (c.memory_bytes() < 0) {
    return InvalidField("capabilities.memory_bytes",
                        "capabilities.memory_bytes must be >= 0");
  }
  core::Worker w;
  w.hostname = c.hostname();
  w.capabilities.cpu_slots = c.cpu_slots();
  w.capabilities.memory_bytes = c.memory_bytes();
  w.capabilities.labels = {c.labels().begin(), c.labels().end()};
  w.capabilities.version = c.software_version();
  if (c.has_trainer()) {
    FTUNE_ASSIGN_OR_RETURN(
        w.capabilities.trainer,
        TrainerCapabilitiesFromProto(c.trainer(), "capabilities.trainer"));
  }
  std::set<int32_t> seen;
  for (int i = 0; i < c.gpus_size(); ++i) {
    const v1::GpuDevice& g = c.gpus(i);
    const std::string field = absl::StrCat("capabilities.gpus[", i, "]");
    if (g.index() < 0 || !seen.insert(g.index()).second) {
      return InvalidField(field + ".index",
                          absl::StrCat(field, ".index ", g.index(),
                                       " is negative or repeated"));
    }
    if (g.memory_bytes() < 0) {
      return InvalidField(field + ".memory_bytes",
                          absl::StrCat(field, ".memory_bytes must be >= 0"));
    }
    if (g.name().size() > kMaxNameBytes) {
      return InvalidField(
          field + ".name",
          absl::StrCat(field, ".name must be at most ", kMaxNameBytes,
                       " bytes, got ", QuoteValue(g.name())));
    }
    w.capabilities.gpu_indices.push_back(g.index());
    // Placement sees one type and the smallest memory: a job asking for a
    // type or memory gets it on every GPU it is given.
    if (i == 0) {
      w.capabilities.gpu_type = g.name();
      w.capabilities.gpu_memory_bytes = g.memory_bytes();
    } else {
      if (g.name() != w.capabilities.gpu_type) w.capabilities.gpu_type = "";
      w.capabilities.gpu_memory_bytes =
          std::min(w.capabilities.gpu_memory_bytes, g.memory_bytes());
    }
  }
  w.capabilities.gpus = c.gpus_size();
  return w;
}

absl::StatusOr<core::JobEventType> EventTypeFromProto(v1::JobEventType t,
                                                      int index) {
  switch (t) {
    case v1::JOB_EVENT_TYPE_LOG:
      return core::JobEventType::kMessage;
    case v1::JOB_EVENT_TYPE_WARNING:
      return core::JobEventType::kWarning;
    case v1::JOB_EVENT_TYPE_EVAL:
      return core::JobEventType::kEval;
    case v1::JOB_EVENT_TYPE_BATCH_SIZE_REDUCED:
      return core::JobEventType::kBatchSizeReduced;
    case v1::JOB_EVENT_TYPE_EARLY_STOPPED:
      return core::JobEventType::kEarlyStopped;
    case v1::JOB_EVENT_TYPE_EVAL_IMPROVED:
      return core::JobEventType::kEvalImproved;
    default:
      return InvalidField(
          absl::StrCat("events[", index, "].type"),
          absl::StrCat("events[", index, "].type ", v1::JobEventType_Name(t),
                       ": workers may report only LOG, WARNING, EVAL, "
                       "EVAL_IMPROVED, BATCH_SIZE_REDUCED and "
                       "EARLY_STOPPED"));
  }
}

core::JobErrorReason ErrorReasonFromProto(v1::ErrorReason r) {
  switch (r) {
    case v1::ERROR_REASON_INVALID_INPUT:
      return core::JobErrorReason::kInvalidInput;
    case v1::ERROR_REASON_OUT_OF_MEMORY:
      return core::JobErrorReason::kOutOfMemory;
    case v1::ERROR_REASON_NUMERIC_ERROR:
    case v1::ERROR_REASON_TRAINER_CRASHED:
      return core::JobErrorReason::kTrainerError;
    case v1::ERROR_REASON_LEASE_EXPIRED:
    case v1::ERROR_REASON_WORKER_LOST:
      return core::JobErrorReason::kWorkerLost;
    default:
      return core::JobErrorReason::kInternal;
  }
}

// A path a worker reports inside one of the job's directories: `dir` + "/"
// + a confined relative path (common/confined_path.h).
absl::Status CheckPathInside(const std::string& path, const std::string& dir,
                             const std::string& field) {
  const std::string prefix = dir + "/";
  absl::Status rest = absl::StartsWith(path, prefix)
                          ? CheckConfinedPath(path.substr(prefix.size()))
                          : absl::InvalidArgumentError(
                                absl::StrCat("does not start with ", prefix));
  if (rest.ok()) return absl::OkStatus();
  return InvalidField(
      field, absl::StrCat(field, " ", QuoteValue(path),
                          " is not a path inside ", dir, ": ", rest.message()));
}

// The adapter's files, as FinishAttempt(SUCCEEDED) reports them: paths
// relative to the adapter directory, confined to it, sizes >= 0.
absl::Status CheckAdapterFiles(const v1::Adapter& adapter) {
  for (int i = 0; i < adapter.files_size(); ++i) {
    const v1::AdapterFile& f = adapter.files(i);
    const std::string field = absl::StrCat("adapter.files[", i, "]");
    if (absl::Status s = CheckConfinedPath(f.path()); !s.ok()) {
      return InvalidField(field + ".path",
                          absl::StrCat(field, ".path ", QuoteValue(f.path()),
                                       " ", s.message()));
    }
    if (f.size_bytes() < 0) {
      return InvalidField(field + ".size_bytes",
                          absl::StrCat(field, ".size_bytes must be >= 0, got ",
                                       f.size_bytes()));
    }
  }
  return absl::OkStatus();
}

// The model a full fine-tuning job's published directory becomes
// (core::FineTunedModelName), read by the registry's InspectModelDirectory
// like an operator's model, after the same confinement as adapter files:
// the job's own directory (not the reported one), reached without a
// symbolic link, holding only regular files (no link, no subdirectory), so
// a later job of the tenant reads nothing from outside it.
absl::StatusOr<core::Model> FineTunedModelOf(store::Store& store,
                                             const std::string& storage_root,
                                             const core::Job& job) {
  if (storage_root.empty()) {
    return absl::FailedPreconditionError(
        "the scheduler has no --storage_root to read the model from");
  }
  const std::string dir = core::AdapterDir(job.tenant_id, job.id);
  FTUNE_RETURN_IF_ERROR(CheckConfinedPath(dir));
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path at(storage_root);
  for (const fs::path& part : fs::path(dir)) {
    at /= part;
    const fs::file_status st = fs::symlink_status(at, ec);
    if (ec || st.type() != fs::file_type::directory) {
      return absl::InvalidArgumentError(absl::StrCat(
          dir, ": ", part.string(), " is not a directory (or is a link)"));
    }
  }
  for (const fs::directory_entry& e : fs::directory_iterator(at, ec)) {
    const fs::file_status st = e.symlink_status(ec);
    if (ec || st.type() != fs::file_type::regular) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, ": ", e.path().filename().string(),
                       " is not a regular file (links and subdirectories "
                       "are not allowed in a model directory)"));
    }
  }
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": cannot list: ", ec.message()));
  }
  core::Model model;
  model.name = core::FineTunedModelName(job.id);
  model.directory = dir;
  model.tenant_id = job.tenant_id;
  model.job_id = job.id;
  FTUNE_RETURN_IF_ERROR(InspectModelDirectory(at.string(), model));
  model.metadata["base_model"] = job.model;
  // The methods of the base: the weights have its architecture and dtype.
  absl::StatusOr<core::Model> base = store.GetModel(job.model);
  if (base.ok() && base->metadata.count("supported_methods")) {
    model.metadata["supported_methods"] = base->metadata["supported_methods"];
  }
  return model;
}

// The write side of StreamCommands. gRPC owns it until OnDone, and the
// set-up task (Start) until it returns: it deletes itself after both.
class CommandWriter final : public grpc::ServerWriteReactor<v1::WorkerCommand>,
                            public engine::CommandStream {
 public:
  // `generation`: Dispatcher::NextStreamGeneration() when the call arrived.
  CommandWriter(grpc::CallbackServerContext* ctx,
                engine::Dispatcher* dispatcher, std::string worker_id,
                uint64_t generation)
      : ctx_(ctx),
        dispatcher_(dispatcher),
        worker_id_(std::move(worker_id)),
        generation_(generation) {}

  // Queues `replay`, then joins the dispatcher (which may Send from then
  // on). Called once, on the set-up task, after any Close() it needs.
  void Start(const std::vector<v1::WorkerCommand>& replay) {
    for (const v1::WorkerCommand& c : replay) Send(c);
    bool closed;
    {
      absl::MutexLock lock(&mu_);
      closed = finished_ || done_;
    }
    if (!closed) {
      dispatcher_->Attach(worker_id_, this, generation_);
      bool done;
      {
        absl::MutexLock lock(&mu_);
        done = done_;
      }
      // OnDone ran meanwhile and its Detach may have come first.
      if (done) dispatcher_->Detach(worker_id_, this);
    }
    Unref();
  }

  void Send(const v1::WorkerCommand& command) override {
    absl::MutexLock lock(&mu_);
    if (finished_ || done_) return;
    queue_.push_back(command);
    MaybeWrite();
  }

  void Close(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    EndLocked(ToGrpcStatus(status, /*ctx=*/nullptr));
  }

  // Ends the call with `status` and its ErrorInfo (set-up failures).
  void Fail(const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    if (finished_ || done_) return;
    error_info_sent_ = true;
    EndLocked(ToGrpcStatus(status, ctx_));
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!queue_.empty()) queue_.pop_front();
    if (pending_status_) {
      Finish(*pending_status_);
      pending_status_.reset();
      return;
    }
    if (!ok) {
      EndLocked(ToGrpcStatus(absl::UnavailableError("write failed"),
                             /*ctx=*/nullptr));
      return;
    }
    MaybeWrite();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    EndLocked(ToGrpcStatus(absl::CancelledError(""), /*ctx=*/nullptr));
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    dispatcher_->Detach(worker_id_, this);
    Unref();
  }

 private:
  void EndLocked(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || done_) return;
    finished_ = true;
    if (!status.ok() && !error_info_sent_) {
      // Every failed call carries an ErrorInfo (common.proto); the
      // dispatcher's closes (ABORTED, UNAVAILABLE, ...) have no detail.
      error_info_sent_ = true;
      ctx_->AddTrailingMetadata(kErrorInfoMetadataKey,
                                v1::ErrorInfo().SerializeAsString());
    }
    if (writing_) {
      pending_status_ = status;  // Finish after the write in flight.
    } else {
      Finish(status);
    }
  }

  void MaybeWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || queue_.empty() || finished_) return;
    writing_ = true;
    StartWrite(&queue_.front());
  }

  void Unref() {
    bool last;
    {
      absl::MutexLock lock(&mu_);
      last = --refs_ == 0;
    }
    if (last) delete this;
  }

  grpc::CallbackServerContext* const ctx_;
  engine::Dispatcher* const dispatcher_;
  const std::string worker_id_;
  const uint64_t generation_;
  absl::Mutex mu_;
  int refs_ ABSL_GUARDED_BY(mu_) = 2;  // gRPC (OnDone) + the set-up task.
  std::deque<v1::WorkerCommand> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool error_info_sent_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> pending_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

WorkerServiceImpl::WorkerServiceImpl(store::Store* store, Authenticator* auth,
                                     engine::Dispatcher* dispatcher,
                                     Clock* clock, Executor* executor,
                                     std::string storage_root)
    : store_(store),
      auth_(auth),
      dispatcher_(dispatcher),
      clock_(clock),
      executor_(executor),
      storage_root_(std::move(storage_root)) {}

grpc::ServerUnaryReactor* WorkerServiceImpl::Unary(
    grpc::CallbackServerContext* ctx, std::function<absl::Status()> fn) {
  return RunUnary(executor_, ctx, [this, ctx, fn = std::move(fn)] {
    absl::StatusOr<Principal> caller = RequireWorker(*auth_, *ctx);
    return caller.ok() ? fn() : caller.status();
  });
}

template <typename Request>
absl::StatusOr<core::Job> WorkerServiceImpl::ReportedJob(
    const Request& request) {
  FTUNE_RETURN_IF_ERROR(
      RequireId(request.worker_id(), kWorkerIdPrefix, "worker_id"));
  FTUNE_RETURN_IF_ERROR(RequireId(request.job_id(), kJobIdPrefix, "job_id"));
  FTUNE_RETURN_IF_ERROR(RequireField(request.attempt() > 0, "attempt"));
  absl::StatusOr<core::Job> job =
      store_->GetJob(store::kAnyTenant, request.job_id());
  if (!job.ok()) return AboutResource(job.status(), request.job_id());
  return job;
}

absl::Status WorkerServiceImpl::Fenced(absl::Status status,
                                       const std::string& job_id) {
  if (!absl::IsFailedPrecondition(status)) return status;
  absl::StatusOr<core::Job> job = store_->GetJob(store::kAnyTenant, job_id);
  if (!job.ok()) return status;
  return FailedPreconditionInState(std::string(status.message()),
                                   JobStateEnumName(job->state));
}

// ----------------------------------------------------------- register ----

grpc::ServerUnaryReactor* WorkerServiceImpl::RegisterWorker(
    grpc::CallbackServerContext* ctx, const v1::RegisterWorkerRequest* request,
    v1::RegisterWorkerResponse* response) {
  return Unary(ctx, [this, request, response] {
    return DoRegister(*request, response);
  });
}

absl::Status WorkerServiceImpl::DoRegister(
    const v1::RegisterWorkerRequest& request,
    v1::RegisterWorkerResponse* response) {
  FTUNE_RETURN_IF_ERROR(
      RequireField(request.has_capabilities(), "capabilities"));
  FTUNE_ASSIGN_OR_RETURN(core::Worker worker,
                         WorkerFromProto(request.capabilities()));
  if (!request.previous_worker_id().empty()) {
    FTUNE_RETURN_IF_ERROR(RequireId(request.previous_worker_id(),
                                    kWorkerIdPrefix, "previous_worker_id"));
    // The agent restarted and killed its old trainers: re-queue at once.
    absl::StatusOr<store::LeaseExpiryResult> lost =
        store_->MarkWorkerLost(request.previous_worker_id());
    if (!lost.ok() && !absl::IsNotFound(lost.status())) return lost.status();
    dispatcher_->CloseStream(
        request.previous_worker_id(),
        absl::FailedPreconditionError(
            "this worker registered again under a new id"));
  }
  const engine::DispatcherOptions& o = dispatcher_->options();
  FTUNE_ASSIGN_OR_RETURN(
      core::Worker registered,
      store_->RegisterWorker(std::move(worker),
                             clock_->Now() + o.lease_duration));
  FTUNE_LOG(INFO) << "worker " << registered.id << " registered ("
                  << registered.hostname << ", " << registered.capabilities.gpus
                  << " GPU(s), " << registered.capabilities.cpu_slots
                  << " CPU slot(s))";
  response->set_worker_id(registered.id);
  SetDuration(o.lease_duration, response->mutable_lease_duration());
  SetDuration(o.heartbeat_interval, response->mutable_heartbeat_interval());
  dispatcher_->Notify();
  return absl::OkStatus();
}

// ---------------------------------------------------------- heartbeat ----

grpc::ServerUnaryReactor* WorkerServiceImpl::Heartbeat(
    grpc::CallbackServerContext* ctx, const v1::HeartbeatRequest* request,
    v1::HeartbeatResponse* response) {
  return Unary(ctx, [this, request, response] {
    return DoHeartbeat(*request, response);
  });
}

absl::Status WorkerServiceImpl::DoHeartbeat(const v1::HeartbeatRequest& request,
                                            v1::HeartbeatResponse* response) {
  FTUNE_RETURN_IF_ERROR(
      RequireId(request.worker_id(), kWorkerIdPrefix, "worker_id"));
  const engine::DispatcherOptions& o = dispatcher_->options();
  const absl::Time now = clock_->Now();
  const absl::Time expiry = now + o.lease_duration;
  FTUNE_ASSIGN_OR_RETURN(std::vector<store::JobAttemptRef> held,
                         store_->HeartbeatWorker(request.worker_id(), expiry));
  std::set<AttemptKey> listed;
  for (const v1::AttemptRef& a : request.running_attempts()) {
    listed.insert({a.job_id(), a.attempt()});
  }
  std::set<AttemptKey> holds;
  for (const store::JobAttemptRef& h : held)
    holds.insert({h.job_id, h.attempt});
  for (const AttemptKey& k : listed) {
    if (holds.count(k) == 0) {
      v1::AttemptRef* stop = response->add_stop_attempts();
      stop->set_job_id(k.first);
      stop->set_attempt(static_cast<int32_t>(k.second));
    }
  }
  // Held but not listed: the worker does not run it (its trainer ended and
  // the outcome was lost, or the assignment never arrived). After a grace
  // of two heartbeats from the grant the lease is given up now rather than
  // renewed forever.
  size_t still_held = holds.size();
  bool released = false;
  if (std::any_of(holds.begin(), holds.end(),
                  [&](const AttemptKey& k) { return listed.count(k) == 0; })) {
    FTUNE_ASSIGN_OR_RETURN(std::vector<store::HeldAttempt> attempts,
                           store_->ListHeldAttempts(request.worker_id()));
    for (const store::HeldAttempt& h : attempts) {
      if (listed.count({h.job.id, h.job.attempt}) != 0) continue;
      if (h.grant_time > now - 2 * o.heartbeat_interval) continue;
      absl::StatusOr<core::Job> lost =
          store_->AbandonAttempt(h.job.id, h.job.attempt, request.worker_id());
      if (lost.ok()) {
        FTUNE_LOG(WARNING) << "worker " << request.worker_id()
                           << " no longer runs job " << h.job.id << " attempt "
                           << h.job.attempt << ": now "
                           << core::JobStateName(lost->state);
        --still_held;
        released = true;
      }
    }
  }
  if (released) dispatcher_->Notify();
  FTUNE_ASSIGN_OR_RETURN(core::Worker w,
                         store_->GetWorker(request.worker_id()));
  SetTimestamp(expiry, response->mutable_lease_expire_time());
  switch (w.state) {
    case core::WorkerState::kActive:
      response->set_state(v1::WORKER_STATE_ACTIVE);
      break;
    case core::WorkerState::kDraining:
      response->set_state(still_held == 0 ? v1::WORKER_STATE_DRAINED
                                          : v1::WORKER_STATE_DRAINING);
      break;
    case core::WorkerState::kLost:
      response->set_state(v1::WORKER_STATE_LOST);
      break;
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------ commands ----

grpc::ServerWriteReactor<v1::WorkerCommand>* WorkerServiceImpl::StreamCommands(
    grpc::CallbackServerContext* ctx,
    const v1::StreamCommandsRequest* request) {
  // Numbered here, in the order the calls arrive; the set-up tasks below
  // may finish in another order.
  auto* writer = new CommandWriter(ctx, dispatcher_, request->worker_id(),
                                   dispatcher_->NextStreamGeneration());
  auto setup = [this, ctx, writer, worker_id = request->worker_id()] {
    auto fail = [&](const absl::Status& s) {
      writer->Fail(s);
      writer->Start({});
    };
    absl::StatusOr<Principal> caller = RequireWorker(*auth_, *ctx);
    if (!caller.ok()) return fail(caller.status());
    if (absl::Status s = RequireId(worker_id, kWorkerIdPrefix, "worker_id");
        !s.ok()) {
      return fail(s);
    }
    absl::StatusOr<core::Worker> w = store_->GetWorker(worker_id);
    if (!w.ok()) return fail(w.status());
    if (w->state == core::WorkerState::kLost) {
      return fail(absl::FailedPreconditionError(
          absl::StrCat("worker ", worker_id, " is LOST; register again")));
    }
    absl::StatusOr<std::vector<store::HeldAttempt>> held =
        store_->ListHeldAttempts(worker_id);
    if (!held.ok()) return fail(held.status());
    writer->Start(dispatcher_->CommandsFor(*held));
  };
  if (executor_ == nullptr || !executor_->Post(setup)) setup();
  return writer;
}

// ------------------------------------------------------------ progress ----

grpc::ServerUnaryReactor* WorkerServiceImpl::ReportProgress(
    grpc::CallbackServerContext* ctx, const v1::ReportProgressRequest* request,
    v1::ReportProgressResponse* response) {
  return Unary(
      ctx, [this, request, response] { return DoReport(*request, response); });
}

absl::Status WorkerServiceImpl::DoReport(
    const v1::ReportProgressRequest& request,
    v1::ReportProgressResponse* response) {
  FTUNE_ASSIGN_OR_RETURN(core::Job job, ReportedJob(request));
  const std::string checkpoint_dir = core::CheckpointDir(job.tenant_id, job.id);

  store::ProgressReport r;
  r.worker_id = request.worker_id();
  r.job_id = request.job_id();
  r.attempt = request.attempt();
  r.batch_number = request.batch_number();
  for (const v1::MetricPoint& m : request.metrics()) {
    core::MetricPoint p;
    if (m.has_time()) p.time = FromTimestamp(m.time());
    p.step = m.step();
    p.epoch = m.epoch();
    if (m.has_train_loss()) p.train_loss = m.train_loss();
    if (m.has_eval_loss()) p.eval_loss = m.eval_loss();
    p.lr = m.learning_rate();
    p.grad_norm = m.grad_norm();
    p.tokens_per_s = m.tokens_per_second();
    p.peak_memory_bytes = m.peak_memory_bytes();
    p.predicted_peak_memory_bytes = m.predicted_peak_memory_bytes();
    p.tensor_peak_memory_bytes = m.tensor_peak_memory_bytes();
    if (m.has_preference()) {
      p.preference = PreferenceMetricsFromProto(m.preference());
    }
    if (m.has_eval_preference()) {
      p.eval_preference = PreferenceMetricsFromProto(m.eval_preference());
    }
    if (m.has_eval_task()) p.eval_task = TaskMetricsFromProto(m.eval_task());
    r.metrics.push_back(p);
  }
  for (int i = 0; i < request.events_size(); ++i) {
    const v1::JobEvent& e = request.events(i);
    core::JobEvent ce;
    FTUNE_ASSIGN_OR_RETURN(ce.type, EventTypeFromProto(e.type(), i));
    ce.message = e.message();
    ce.step = e.step();
    r.events.push_back(std::move(ce));
  }
  for (int i = 0; i < request.checkpoints_size(); ++i) {
    const v1::Checkpoint& c = request.checkpoints(i);
    FTUNE_RETURN_IF_ERROR(CheckPathInside(
        c.path(), checkpoint_dir, absl::StrCat("checkpoints[", i, "].path")));
    core::Checkpoint cc;
    cc.step = c.step();
    cc.path = c.path();
    r.checkpoints.push_back(std::move(cc));
  }
  for (int i = 0; i < request.deleted_checkpoint_paths_size(); ++i) {
    const std::string& p = request.deleted_checkpoint_paths(i);
    FTUNE_RETURN_IF_ERROR(CheckPathInside(
        p, checkpoint_dir, absl::StrCat("deleted_checkpoint_paths[", i, "]")));
    r.deleted_checkpoint_paths.push_back(p);
  }
  for (int i = 0; i < request.samples_size(); ++i) {
    const v1::JobSample& in = request.samples(i);
    // At most kEvalSamples.hi prompts a step: the rows stay bounded too.
    const int64_t max_index =
        static_cast<int64_t>(contract::range::kEvalSamples.hi);
    if (in.step() < 0 || in.index() < 0 || in.index() >= max_index) {
      return InvalidField(
          absl::StrCat("samples[", i, "]"),
          absl::StrCat("samples[", i, "]: step must be >= 0 and index in [0, ",
                       max_index, "), got step ", in.step(), ", index ",
                       in.index()));
    }
    core::JobSample s;
    s.step = in.step();
    s.index = in.index();
    s.prompt = in.prompt();
    if (in.has_expected_completion()) s.expected = in.expected_completion();
    s.completion = in.completion();
    s.finish_reason = in.finish_reason();
    r.samples.push_back(std::move(s));
  }
  if (request.has_progress()) {
    core::JobProgress p;
    p.step = request.progress().step();
    p.total_steps = request.progress().total_steps();
    p.epoch = request.progress().epoch();
    p.tokens = request.progress().tokens_processed();
    r.progress = p;
  }
  r.lease_expiry = clock_->Now() + dispatcher_->options().lease_duration;
  absl::StatusOr<store::ProgressResult> applied = store_->ApplyProgress(r);
  if (!applied.ok()) return Fenced(applied.status(), request.job_id());
  SetTimestamp(applied->job.lease_expiry,
               response->mutable_lease_expire_time());
  response->set_cancel_requested(applied->job.state ==
                                 core::JobState::kCancelling);
  response->set_pause_requested(applied->job.state == core::JobState::kPaused);
  return absl::OkStatus();
}

// -------------------------------------------------------------- finish ----

grpc::ServerUnaryReactor* WorkerServiceImpl::FinishAttempt(
    grpc::CallbackServerContext* ctx, const v1::FinishAttemptRequest* request,
    v1::FinishAttemptResponse* response) {
  return Unary(
      ctx, [this, request, response] { return DoFinish(*request, response); });
}

absl::Status WorkerServiceImpl::DoFinish(
    const v1::FinishAttemptRequest& request,
    v1::FinishAttemptResponse* response) {
  FTUNE_ASSIGN_OR_RETURN(core::Job job, ReportedJob(request));
  core::AttemptEnd end;
  switch (request.outcome()) {
    case v1::ATTEMPT_OUTCOME_SUCCEEDED: {
      if (job.kind == core::JobKind::kTry) {
        // A try job's result is its samples; it publishes nothing.
        if (request.has_adapter()) {
          return InvalidField("adapter", "a try job publishes no adapter");
        }
        end.outcome = core::AttemptOutcome::kSucceeded;
        break;
      }
      const std::string adapter_dir = core::AdapterDir(job.tenant_id, job.id);
      if (request.adapter().path() != adapter_dir) {
        return InvalidField(
            "adapter.path",
            absl::StrCat("SUCCEEDED needs the adapter published at ",
                         adapter_dir, ", got ",
                         QuoteValue(request.adapter().path())));
      }
      FTUNE_RETURN_IF_ERROR(CheckAdapterFiles(request.adapter()));
      end.outcome = core::AttemptOutcome::kSucceeded;
      end.adapter.path = request.adapter().path();
      end.adapter.manifest_sha256 = request.adapter().manifest_sha256();
      end.adapter.step = request.adapter().step();
      end.adapter.publish_time =
          request.adapter().has_publish_time()
              ? FromTimestamp(request.adapter().publish_time())
              : clock_->Now();
      for (const v1::AdapterFile& f : request.adapter().files()) {
        end.adapter.files.push_back({f.path(), f.size_bytes(), f.sha256()});
      }
      v1::JobSpec spec;
      if (spec.ParseFromString(job.spec) &&
          spec.method() == v1::TRAINING_METHOD_FULL &&
          job.attempt == request.attempt()) {
        absl::StatusOr<core::Model> model =
            FineTunedModelOf(*store_, storage_root_, job);
        if (model.ok()) {
          end.output_model = *std::move(model);
        } else {
          // Not a model a later job could train on: the job fails (not
          // retried: the trainer would publish the same).
          end.outcome = core::AttemptOutcome::kFailed;
          end.error.reason = core::JobErrorReason::kInternal;
          end.error.message = absl::StrCat(
              "the published model directory cannot be registered as model ",
              core::FineTunedModelName(job.id), ": ", model.status().message());
          end.error.retryable = false;
          FTUNE_LOG(WARNING) << "job " << job.id << ": " << end.error.message;
        }
      }
      break;
    }
    case v1::ATTEMPT_OUTCOME_FAILED:
      if (!request.has_error()) {
        return InvalidField("error", "FAILED needs error");
      }
      end.outcome = request.error().retryable()
                        ? core::AttemptOutcome::kRetryableFailure
                        : core::AttemptOutcome::kFailed;
      end.error.reason = ErrorReasonFromProto(request.error().reason());
      end.error.message = request.error().message();
      end.error.retryable = request.error().retryable();
      break;
    case v1::ATTEMPT_OUTCOME_CANCELLED:
    case v1::ATTEMPT_OUTCOME_PAUSED:
      end.outcome = core::AttemptOutcome::kStopped;
      break;
    default:
      return InvalidField("outcome", "outcome is required");
  }
  // A retry after a lost reply: the recorded outcome answers.
  auto already_done = [&]() -> bool {
    absl::StatusOr<store::AttemptRecord> rec =
        store_->GetAttempt(request.job_id(), request.attempt());
    return rec.ok() && rec->worker_id == request.worker_id() &&
           rec->outcome.has_value() && *rec->outcome == end.outcome;
  };
  if (request.outcome() == v1::ATTEMPT_OUTCOME_CANCELLED &&
      job.state != core::JobState::kCancelling &&
      job.attempt == request.attempt()) {
    if (already_done()) {
      response->set_job_state(JobToProto(job).state());
      return absl::OkStatus();
    }
    return InvalidField("outcome",
                        absl::StrCat("CANCELLED, but no cancel was requested ("
                                     "job is ",
                                     core::JobStateName(job.state), ")"));
  }
  if (request.outcome() == v1::ATTEMPT_OUTCOME_PAUSED) {
    if (job.state != core::JobState::kPaused &&
        job.attempt == request.attempt()) {
      if (already_done()) {
        response->set_job_state(JobToProto(job).state());
        return absl::OkStatus();
      }
      return InvalidField("outcome",
                          absl::StrCat("PAUSED, but no pause was requested ("
                                       "job is ",
                                       core::JobStateName(job.state), ")"));
    }
    // Only the attempt's own worker may record its pause checkpoint (the
    // store's AddCheckpoint fences the attempt, not the worker).
    if (job.worker_id != request.worker_id() ||
        job.attempt != request.attempt()) {
      if (already_done()) {
        response->set_job_state(JobToProto(job).state());
        return absl::OkStatus();
      }
      return Fenced(absl::FailedPreconditionError(absl::StrCat(
                        "attempt ", request.attempt(), " of job ", job.id,
                        " is not held by worker ", request.worker_id())),
                    request.job_id());
    }
    if (!request.has_checkpoint() || request.checkpoint().path().empty()) {
      return InvalidField("checkpoint", "PAUSED needs the checkpoint written");
    }
    FTUNE_RETURN_IF_ERROR(CheckPathInside(
        request.checkpoint().path(), core::CheckpointDir(job.tenant_id, job.id),
        "checkpoint.path"));
    core::Checkpoint c;
    c.step = request.checkpoint().step();
    c.path = request.checkpoint().path();
    absl::StatusOr<core::Checkpoint> added =
        store_->AddCheckpoint(request.job_id(), request.attempt(), c);
    if (!added.ok() && !absl::IsFailedPrecondition(added.status())) {
      return added.status();
    }
  }
  absl::StatusOr<core::Job> ended = store_->EndAttempt(
      request.job_id(), request.attempt(), request.worker_id(), end);
  if (!ended.ok()) {
    if (absl::IsFailedPrecondition(ended.status()) && already_done()) {
      absl::StatusOr<core::Job> now =
          store_->GetJob(store::kAnyTenant, request.job_id());
      if (now.ok()) response->set_job_state(JobToProto(*now).state());
      return absl::OkStatus();
    }
    return Fenced(ended.status(), request.job_id());
  }
  FTUNE_LOG(INFO) << "job " << ended->id << " attempt " << request.attempt()
                  << " ended on " << request.worker_id() << ": "
                  << v1::AttemptOutcome_Name(request.outcome()) << " -> "
                  << core::JobStateName(ended->state);
  response->set_job_state(JobToProto(*ended).state());
  dispatcher_->Notify();
  return absl::OkStatus();
}

}  // namespace ftune::server::rpc
