#include "server/rpc/job_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/confined_path.h"
#include "common/ids.h"
#include "common/quote.h"
#include "server/core/job_state.h"
#include "server/core/storage_layout.h"
#include "server/rpc/convert.h"
#include "server/rpc/status_util.h"
#include "server/rpc/stream_session.h"

namespace ftune::server::rpc {
namespace {

constexpr int64_t kProtoMaxChunk = 64 << 10;

absl::StatusOr<int64_t> FileSize(const UniqueFd& fd,
                                 absl::string_view relative) {
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return StorageError("cannot stat", relative, errno);
  }
  return static_cast<int64_t>(st.st_size);
}

using LogReactor = SessionReactor<v1::StreamJobLogResponse>;

class LogSession final : public StreamSession<v1::StreamJobLogResponse>,
                         public std::enable_shared_from_this<LogSession> {
 public:
  LogSession(const JobLogStreamer::Shared& shared,
             grpc::CallbackServerContext* ctx, std::string tenant,
             const v1::StreamJobLogRequest& request, LogReactor* reactor)
      : StreamSession(ctx, reactor),
        shared_(shared),
        tenant_(std::move(tenant)),
        job_id_(request.job_id()),
        requested_attempt_(request.attempt()),
        offset_(request.offset()),
        follow_(request.follow()),
        chunk_(std::clamp<int64_t>(shared.options.max_chunk_bytes, 1,
                                   kProtoMaxChunk)) {}

  void Start() {
    subscribed_ = follow_;
    if (follow_ && !shared_.hub->Subscribe(job_id_, shared_from_this())) {
      absl::MutexLock lock(&mu_);
      TerminateLocked(absl::UnavailableError("server shutting down"));
    } else {
      Schedule(absl::InfinitePast());
    }
    Pump();
  }

  // ---- WatchHub::Subscriber (hub thread) ----
  void OnJobChange(const store::JobChange& change) override {
    bool wake = false;
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      const bool was_over = over_;
      const Phase was = phase_;
      NoteChangeLocked(change.job, change.events);
      if (phase_ != Phase::kResolve) DecideLocked();
      wake = phase_ != was || over_ != was_over || finishing_;
    }
    if (wake) Schedule(absl::InfinitePast());
    Pump();
  }

 private:
  enum class Phase { kResolve, kWaitStart, kStream };

  bool TakeNextLocked(v1::StreamJobLogResponse* out) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (pending_ == nullptr) return false;
    *out = std::move(*pending_);
    pending_.reset();
    return true;
  }
  void DropQueuedLocked() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    pending_.reset();
  }
  // The chunk is written: read the next one.
  void AfterWriteDone() override { Schedule(absl::InfinitePast()); }
  void AfterDone() override {
    if (subscribed_) shared_.hub->Unsubscribe(job_id_, this);
    shared_.active->fetch_sub(1);
  }

  // Runs Step on the I/O threads, now or (poll) at `when`.
  void Schedule(absl::Time when) {
    std::shared_ptr<LogSession> self = shared_from_this();
    const bool now = when == absl::InfinitePast();
    if (!now) {
      absl::MutexLock lock(&mu_);
      if (poll_scheduled_) return;
      poll_scheduled_ = true;
    }
    bool posted = now ? shared_.io->Post([self] { self->Step(false); })
                      : shared_.io->PostAt(when, [self] { self->Step(true); });
    if (!posted) {
      absl::MutexLock lock(&mu_);
      if (!now) poll_scheduled_ = false;
      TerminateLocked(absl::UnavailableError(
          "server overloaded or shutting down: log streaming refused"));
    }
  }

  // One round of work, serialized per session (the I/O pool may run two
  // Steps of one session at once; the second only asks the first to loop).
  void Step(bool from_poll) {
    {
      absl::MutexLock lock(&mu_);
      if (from_poll) poll_scheduled_ = false;
      if (in_step_) {
        rerun_ = true;
        return;
      }
      in_step_ = true;
    }
    while (true) {
      StepOnce();
      absl::MutexLock lock(&mu_);
      if (!rerun_ || finishing_) {
        in_step_ = false;
        break;
      }
      rerun_ = false;
    }
    Pump();
  }

  void StepOnce();
  absl::Status Resolve();
  // Reads the next chunk or decides to finish / poll; returns an error that
  // ends the stream.
  absl::Status Stream();

  void NoteChangeLocked(const core::Job& job,
                        const std::vector<core::JobEvent>& events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const core::JobEvent& e : events) {
      if (e.type == core::JobEventType::kStateChanged &&
          e.to_state == core::JobState::kRunning) {
        ran_.insert(e.attempt);
      }
    }
    if (!have_job_ || job.last_sequence >= job_.last_sequence) {
      job_ = job;
      have_job_ = true;
    }
  }

  bool LiveLocked(int64_t attempt) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return job_.attempt == attempt && !job_.worker_id.empty() &&
           core::OccupiesWorker(job_.state);
  }

  // Picks the attempt (or keeps waiting for one), and whether it is over.
  void DecideLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finishing_) return;
    if (target_ == 0) {
      int64_t candidate = requested_attempt_;
      if (candidate == 0) {
        candidate = LiveLocked(job_.attempt)
                        ? job_.attempt
                        : (ran_.empty() ? 0 : *ran_.rbegin());
      }
      if (candidate > 0 && (ran_.count(candidate) || LiveLocked(candidate))) {
        target_ = candidate;
        phase_ = Phase::kStream;
      } else {
        // Not run yet. Can it still start?
        const bool may_start =
            !core::IsTerminal(job_.state) &&
            (requested_attempt_ == 0 || job_.attempt == requested_attempt_);
        if (follow_ && may_start) {
          phase_ = Phase::kWaitStart;
          return;
        }
        const std::string state = JobStateEnumName(job_.state);
        TerminateLocked(FailedPreconditionInState(
            requested_attempt_ == 0
                ? absl::StrCat("job ", job_id_, " has not started (it is ",
                               state, "): no log yet")
                : absl::StrCat("attempt ", requested_attempt_, " of job ",
                               job_id_,
                               may_start ? " has not started" : " never ran",
                               " (the job is ", state, "): no log"),
            state));
        return;
      }
    }
    over_ = !LiveLocked(target_);
  }

  void TerminateLocked(const absl::Status& status) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || finishing_) return;
    pending_.reset();
    finishing_ = true;
    final_status_ = ToGrpcStatus(status, ctx_);
  }

  void FinishOkLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || finishing_) return;
    finishing_ = true;
    final_status_ = grpc::Status::OK;
  }

  const JobLogStreamer::Shared shared_;
  const std::string tenant_;
  const std::string job_id_;
  const int64_t requested_attempt_;
  const int64_t offset_;
  const bool follow_;
  const int64_t chunk_;
  bool subscribed_ = false;  // Set before any other thread sees us.

  // Touched only inside Step (serialized by in_step_).
  UniqueFd fd_;
  int64_t pos_ = -1;         // Next byte to send; -1 until positioned.
  int64_t end_ = 0;          // Without follow: the size when the call started.
  bool final_read_ = false;  // The attempt is over and the file reopened.

  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kResolve;
  bool have_job_ ABSL_GUARDED_BY(mu_) = false;
  core::Job job_ ABSL_GUARDED_BY(mu_);          // Latest known (store or hub).
  std::set<int64_t> ran_ ABSL_GUARDED_BY(mu_);  // Attempts that ran.
  int64_t target_ ABSL_GUARDED_BY(mu_) = 0;     // 0 until chosen.
  bool over_ ABSL_GUARDED_BY(mu_) = false;      // target_ has ended.
  bool in_step_ ABSL_GUARDED_BY(mu_) = false;
  bool rerun_ ABSL_GUARDED_BY(mu_) = false;
  bool poll_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<v1::StreamJobLogResponse> pending_ ABSL_GUARDED_BY(mu_);
};

void LogSession::StepOnce() {
  Phase phase;
  {
    absl::MutexLock lock(&mu_);
    // A chunk waiting or in flight: OnWriteDone schedules the next step.
    if (finishing_ || writing_ || pending_ != nullptr) return;
    phase = phase_;
  }
  absl::Status st;
  if (phase == Phase::kResolve) {
    st = Resolve();
  } else if (phase == Phase::kStream) {
    st = Stream();
  }  // kWaitStart: the hub wakes us when something changes.
  if (!st.ok()) {
    absl::MutexLock lock(&mu_);
    TerminateLocked(st);
  }
}

absl::Status LogSession::Resolve() {
  absl::StatusOr<core::Job> job = shared_.store->GetJob(tenant_, job_id_);
  if (absl::IsNotFound(job.status())) {
    // A foreign job is answered exactly like an unknown one.
    return NotFoundResource(absl::StrCat("job ", job_id_, " not found"),
                            job_id_);
  }
  if (!job.ok()) return job.status();
  if (requested_attempt_ > job->attempt) {
    return InvalidField(
        "attempt",
        absl::StrCat("attempt ", requested_attempt_,
                     " is larger than the job's attempt ", job->attempt));
  }
  // The attempts that ran: their QUEUED -> RUNNING events.
  std::vector<core::JobEvent> running;
  int64_t after = 0;
  while (true) {
    absl::StatusOr<std::vector<core::JobEvent>> page =
        shared_.store->ListJobEvents(tenant_, job_id_, after, 1000);
    if (!page.ok()) return page.status();
    for (core::JobEvent& e : *page) {
      after = e.sequence;
      if (e.type == core::JobEventType::kStateChanged &&
          e.to_state == core::JobState::kRunning) {
        running.push_back(std::move(e));
      }
    }
    if (page->size() < 1000 || after >= job->last_sequence) break;
  }
  {
    absl::MutexLock lock(&mu_);
    if (finishing_) return absl::OkStatus();
    NoteChangeLocked(*job, running);
    DecideLocked();
    if (phase_ == Phase::kResolve) phase_ = Phase::kStream;
    rerun_ = true;  // Start streaming (or wait) right away.
  }
  return absl::OkStatus();
}

absl::Status LogSession::Stream() {
  int64_t attempt;
  bool over;
  {
    absl::MutexLock lock(&mu_);
    attempt = target_;
    over = over_;
  }
  const std::string relative = core::AttemptLogPath(tenant_, job_id_, attempt);
  if (over && !final_read_) {
    // The attempt ended: every byte it wrote is on storage now. Reopen so
    // NFS revalidates (close-to-open), then read to the end.
    final_read_ = true;
    fd_.Reset();
  }
  int64_t size = 0;
  if (!fd_.valid()) {
    absl::StatusOr<UniqueFd> fd =
        OpenBeneath(shared_.options.storage_root, relative);
    if (fd.ok()) {
      fd_ = *std::move(fd);
    } else if (!absl::IsNotFound(fd.status())) {
      return fd.status();
    } else if (over) {
      return NotFoundResource(
          absl::StrCat("the log of attempt ", attempt, " of job ", job_id_,
                       " is not on storage (never written, or removed)"),
          job_id_);
    }
  }
  if (fd_.valid()) {
    absl::StatusOr<int64_t> s = FileSize(fd_, relative);
    if (!s.ok()) return s.status();
    size = *s;
  }
  if (pos_ < 0) {
    if (offset_ >= 0) {
      if (offset_ > size && over) {
        return absl::OutOfRangeError(
            absl::StrCat("offset ", offset_,
                         " is beyond the end of the log of "
                         "attempt ",
                         attempt, " (", size, " bytes)"));
      }
      pos_ = offset_;
    } else {
      pos_ = std::max<int64_t>(0, size + offset_);
    }
    end_ = size;
  }
  const int64_t limit = follow_ ? size : end_;
  if (pos_ < limit && fd_.valid()) {
    const int64_t want = std::min(chunk_, limit - pos_);
    std::string data(static_cast<size_t>(want), '\0');
    ssize_t n;
    do {
      n = ::pread(fd_.get(), data.data(), static_cast<size_t>(want),
                  static_cast<off_t>(pos_));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      return StorageError("cannot read", relative, errno);
    }
    if (n > 0) {
      data.resize(static_cast<size_t>(n));
      auto msg = std::make_unique<v1::StreamJobLogResponse>();
      msg->set_attempt(static_cast<int32_t>(attempt));
      msg->set_offset(pos_);
      msg->set_data(std::move(data));
      pos_ += n;
      absl::MutexLock lock(&mu_);
      if (!finishing_) pending_ = std::move(msg);
      return absl::OkStatus();
    }
  }
  // Nothing more to send now.
  bool poll = false;
  {
    absl::MutexLock lock(&mu_);
    if (!follow_) {
      FinishOkLocked();
    } else if (over_ && !final_read_) {
      rerun_ = true;  // Ended meanwhile: reopen and drain.
    } else if (!final_read_) {
      poll = true;
    } else if (pos_ <= size) {
      FinishOkLocked();
    }
  }
  if (final_read_ && pos_ > size) {
    return absl::OutOfRangeError(
        absl::StrCat("offset ", offset_,
                     " is beyond the end of the log of "
                     "attempt ",
                     attempt, " (", size, " bytes)"));
  }
  if (poll) Schedule(absl::Now() + shared_.options.poll_interval);
  return absl::OkStatus();
}

}  // namespace

JobLogStreamer::JobLogStreamer(store::Store* store, engine::WatchHub* hub,
                               JobLogOptions options)
    : io_(Executor::Options{std::max(1, options.io_threads), 0}),
      shared_{store, hub, &io_, std::move(options), &active_} {}

JobLogStreamer::~JobLogStreamer() { io_.Shutdown(); }

grpc::ServerWriteReactor<v1::StreamJobLogResponse>* JobLogStreamer::Start(
    grpc::CallbackServerContext* ctx, const v1::StreamJobLogRequest* request,
    const Principal& caller) {
  auto* reactor = new LogReactor();
  absl::Status invalid;
  if (caller.kind != Principal::Kind::kTenant || caller.tenant_id.empty()) {
    invalid =
        absl::PermissionDeniedError("StreamJobLog needs a tenant API key");
  } else if (request->job_id().empty()) {
    invalid = InvalidField("job_id", "job_id: is required");
  } else if (!IsValidId(request->job_id(), kJobIdPrefix)) {
    invalid =
        InvalidField("job_id", absl::StrCat("job_id: malformed job id ",
                                            QuoteValue(request->job_id())));
  } else if (request->attempt() < 0) {
    invalid = InvalidField("attempt", "attempt: must be >= 0 (0 = latest)");
  } else if (active_.fetch_add(1) >= shared_.options.max_streams) {
    active_.fetch_sub(1);
    invalid = absl::ResourceExhaustedError(
        absl::StrCat("too many log streams (", shared_.options.max_streams,
                     "); try again later"));
  }
  engine::TenantLimits::StreamSlot slot;
  if (invalid.ok() && shared_.options.limits != nullptr) {
    absl::StatusOr<engine::TenantLimits::StreamSlot> acquired =
        shared_.options.limits->AcquireStream(caller.tenant_id);
    if (acquired.ok()) {
      slot = *std::move(acquired);
    } else {
      active_.fetch_sub(1);
      invalid = acquired.status();
    }
  }
  if (!invalid.ok()) {
    reactor->Finish(ToGrpcStatus(invalid, ctx));
    return reactor;
  }
  auto session = std::make_shared<LogSession>(shared_, ctx, caller.tenant_id,
                                              *request, reactor);
  session->HoldSlot(std::move(slot));
  reactor->set_session(session);
  session->Start();
  return reactor;
}

}  // namespace ftune::server::rpc
