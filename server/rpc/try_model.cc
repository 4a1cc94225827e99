#include "server/rpc/try_model.h"

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/core/job_state.h"
#include "server/engine/convert.h"
#include "server/engine/job_engine.h"
#include "server/engine/try_jobs.h"
#include "server/rpc/status_util.h"
#include "server/rpc/stream_session.h"

namespace ftune::server::rpc {
namespace {

using TryReactor = SessionReactor<v1::TryModelResponse>;

class TrySession final : public StreamSession<v1::TryModelResponse>,
                         public std::enable_shared_from_this<TrySession> {
 public:
  TrySession(engine::WatchHub* hub, store::Store* store,
             grpc::CallbackServerContext* ctx, std::string tenant,
             const v1::TryModelRequest& request, TryReactor* reactor)
      : StreamSession(ctx, reactor),
        hub_(hub),
        store_(store),
        tenant_(std::move(tenant)),
        request_(request) {}

  void Start() {
    auto self = shared_from_this();
    if (!hub_->Post([self] { self->Create(); })) ShutDown();
    Pump();
  }

  // ---- WatchHub::Subscriber (hub thread) ----
  void OnJobChange(const store::JobChange&) override { ScheduleRead(); }

 private:
  // Validates and queues the job's write (hub thread).
  void Create() {
    absl::StatusOr<core::Job> job =
        engine::PrepareTryJob(*store_, tenant_, request_);
    if (!job.ok()) return Fail(job.status());
    auto self = shared_from_this();
    store_->CreateJobAsync(*std::move(job),
                           [self](absl::StatusOr<store::CreateJobResult> r) {
                             self->OnCreated(std::move(r));
                           });
  }

  // The store's writer thread: subscribe, then read once (what committed
  // before the subscription).
  void OnCreated(absl::StatusOr<store::CreateJobResult> created) {
    if (!created.ok()) return Fail(created.status());
    const std::string id = created->job.id;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;  // the client left; the job goes on
      job_id_ = id;
    }
    if (!hub_->Subscribe(id, shared_from_this())) return ShutDown();
    bool gone;
    {
      absl::MutexLock lock(&mu_);
      gone = finished_;
    }
    // OnDone may have run before the subscription: undo it here.
    if (gone) return hub_->Unsubscribe(id, this);
    ScheduleRead();
  }

  void ScheduleRead() {
    {
      absl::MutexLock lock(&mu_);
      if (read_scheduled_ || finishing_ || finished_) return;
      read_scheduled_ = true;
    }
    auto self = shared_from_this();
    if (!hub_->Post([self] { self->Read(); })) ShutDown();
  }

  // The job, then its samples (hub thread). A terminal job's samples were
  // all committed before its terminal state, so this read has them all.
  void Read() {
    std::string job_id;
    {
      absl::MutexLock lock(&mu_);
      read_scheduled_ = false;
      if (finishing_ || finished_) return;
      job_id = job_id_;
    }
    absl::StatusOr<core::Job> job = store_->GetJob(tenant_, job_id);
    if (!job.ok()) return Fail(job.status());
    absl::StatusOr<std::vector<core::JobSample>> samples =
        store_->ListJobSamples(tenant_, job_id, std::nullopt, std::nullopt,
                               engine::kMaxTryPrompts);
    if (!samples.ok()) return Fail(samples.status());
    const bool terminal = core::IsTerminal(job->state);
    {
      absl::MutexLock lock(&mu_);
      if (finishing_ || finished_) return;
      const std::string state = engine::ApiStateName(*job);
      if (!terminal && state != last_state_) PushSnapshotLocked(*job, state);
      for (const core::JobSample& s : *samples) {
        if (s.index < next_index_) continue;
        v1::TryModelResponse m;
        *m.mutable_sample() = engine::JobSampleToProto(s);
        pending_.push_back(std::move(m));
        next_index_ = s.index + 1;
      }
      if (terminal) {
        PushSnapshotLocked(*job, state);
        finishing_ = true;
        final_status_ = grpc::Status::OK;
      }
    }
    Pump();
  }

  void PushSnapshotLocked(const core::Job& job, const std::string& state)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    v1::TryModelResponse m;
    *m.mutable_job() = engine::JobToProto(job);
    pending_.push_back(std::move(m));
    last_state_ = state;
  }

  void Fail(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      TerminateLocked(status);
    }
    Pump();
  }
  void ShutDown() { Fail(absl::UnavailableError("server shutting down")); }

  bool TakeNextLocked(v1::TryModelResponse* out) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (pending_.empty()) return false;
    *out = std::move(pending_.front());
    pending_.pop_front();
    return true;
  }
  bool HasQueuedLocked() const override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !pending_.empty();
  }
  void DropQueuedLocked() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    pending_.clear();
  }
  void TerminateLocked(const absl::Status& status) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || finishing_) return;
    pending_.clear();
    finishing_ = true;
    final_status_ = ToGrpcStatus(status, ctx_);
  }
  void AfterDone() override {
    std::string job_id;
    {
      absl::MutexLock lock(&mu_);
      job_id = job_id_;
    }
    if (!job_id.empty()) hub_->Unsubscribe(job_id, this);
  }

  engine::WatchHub* const hub_;
  store::Store* const store_;
  const std::string tenant_;
  const v1::TryModelRequest request_;

  std::string job_id_ ABSL_GUARDED_BY(mu_);  // "" until created
  bool read_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  std::string last_state_ ABSL_GUARDED_BY(mu_);
  int64_t next_index_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<v1::TryModelResponse> pending_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerWriteReactor<v1::TryModelResponse>* StartTryModel(
    engine::WatchHub* hub, store::Store* store,
    grpc::CallbackServerContext* ctx, const v1::TryModelRequest* request,
    const Principal& principal, engine::TenantLimits* limits) {
  auto* reactor = new TryReactor();
  absl::Status invalid;
  if (principal.kind != Principal::Kind::kTenant ||
      principal.tenant_id.empty()) {
    invalid = absl::PermissionDeniedError("TryModel needs a tenant API key");
  }
  engine::TenantLimits::StreamSlot slot;
  if (invalid.ok() && limits != nullptr) {
    absl::StatusOr<engine::TenantLimits::StreamSlot> acquired =
        limits->AcquireStream(principal.tenant_id);
    if (acquired.ok()) {
      slot = *std::move(acquired);
    } else {
      invalid = acquired.status();
    }
  }
  if (!invalid.ok()) {
    reactor->Finish(ToGrpcStatus(invalid, ctx));
    return reactor;
  }
  auto session = std::make_shared<TrySession>(
      hub, store, ctx, principal.tenant_id, *request, reactor);
  session->HoldSlot(std::move(slot));
  reactor->set_session(session);
  session->Start();
  return reactor;
}

}  // namespace ftune::server::rpc
