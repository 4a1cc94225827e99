#include "server/rpc/job_watch.h"

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/ids.h"
#include "common/quote.h"
#include "server/core/job_state.h"
#include "server/rpc/record_proto.h"
#include "server/rpc/status_util.h"
#include "server/rpc/stream_session.h"

namespace ftune::server::rpc {
namespace {

using WatchReactor = SessionReactor<v1::WatchJobResponse>;

// Most metric points in one batched message (WatchJobRequest.batch_metrics).
constexpr int kMaxBatchedPoints = 512;

// One record of a job in sequence order: an event or a metric point.
struct Record {
  int64_t sequence = 0;
  const core::JobEvent* event = nullptr;
  const core::MetricPoint* metric = nullptr;
};

std::vector<Record> Merge(const std::vector<core::JobEvent>& events,
                          const std::vector<core::MetricPoint>& metrics) {
  std::vector<Record> out;
  out.reserve(events.size() + metrics.size());
  for (const auto& e : events) out.push_back({e.sequence, &e, nullptr});
  for (const auto& m : metrics) out.push_back({m.sequence, nullptr, &m});
  std::sort(out.begin(), out.end(), [](const Record& a, const Record& b) {
    return a.sequence < b.sequence;
  });
  return out;
}

// The metric points of `change` as protos. Every watcher of a job gets the
// same changes on the same thread (the WatchHub's), so each change is
// converted once for all its watchers, not once per watcher. Points of one
// job have unique sequences: (job, first sequence, count) names the
// content, so an entry is never stale; the cache is emptied when it grows
// past a bound (a delivery round touches few changes per job).
const std::vector<v1::MetricPoint>& ConvertedMetrics(
    const store::JobChange& change) {
  using Key = std::tuple<std::string, int64_t, size_t>;
  constexpr size_t kMaxCachedChanges = 256;
  thread_local std::map<Key, std::vector<v1::MetricPoint>> cache;
  static const std::vector<v1::MetricPoint> kNone;
  if (change.metrics.empty()) return kNone;
  Key key{change.job.id, change.metrics.front().sequence,
          change.metrics.size()};
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() >= kMaxCachedChanges) cache.clear();
  std::vector<v1::MetricPoint>& points = cache[std::move(key)];
  points.reserve(change.metrics.size());
  for (const core::MetricPoint& m : change.metrics) {
    points.push_back(MetricPointToProto(m));
  }
  return points;
}

class WatchSession final : public StreamSession<v1::WatchJobResponse>,
                           public std::enable_shared_from_this<WatchSession> {
 public:
  WatchSession(engine::WatchHub* hub, store::Store* store,
               grpc::CallbackServerContext* ctx, std::string tenant,
               const v1::WatchJobRequest& request,
               const WatchJobOptions& options, WatchReactor* reactor)
      : StreamSession(ctx, reactor),
        hub_(hub),
        store_(store),
        tenant_(std::move(tenant)),
        job_id_(request.job_id()),
        has_after_(request.has_after_sequence()),
        after_(request.after_sequence()),
        exclude_metrics_(request.exclude_metrics()),
        batch_metrics_(request.batch_metrics()),
        max_buffered_(std::max<int64_t>(options.max_buffered_messages, 8)),
        page_size_(static_cast<int>(std::max<int64_t>(
            1,
            std::min<int64_t>(options.replay_page_size, max_buffered_ / 4)))),
        max_parked_(options.max_parked_records) {}

  void Start() {
    if (!hub_->Subscribe(job_id_, shared_from_this())) {
      absl::MutexLock lock(&mu_);
      TerminateLocked(absl::UnavailableError("server shutting down"));
    }
    Pump();
  }

  // ---- WatchHub::Subscriber (hub thread) ----
  void OnJobChange(const store::JobChange& change) override {
    {
      absl::MutexLock lock(&mu_);
      ApplyLiveLocked(change);
    }
    Pump();
  }
  // A delivery round: one lock and one Pump for all of them.
  void OnJobChanges(const std::vector<std::shared_ptr<const store::JobChange>>&
                        changes) override {
    {
      absl::MutexLock lock(&mu_);
      for (const auto& change : changes) ApplyLiveLocked(*change);
    }
    Pump();
  }

 private:
  // Schedules a replay step if one is due, then writes the next message or
  // finishes. Never reads the store and is called without mu_ held.
  void Pump() override;
  bool TakeNextLocked(v1::WatchJobResponse* out) override
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
    parked_.clear();
  }
  void AfterDone() override { hub_->Unsubscribe(job_id_, this); }
  // One step of a replay round, on the hub's thread.
  void ReplayStep();

  void PushLocked(v1::WatchJobResponse msg) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    last_is_terminal_snapshot_ =
        msg.has_job() && core::IsTerminal(core::JobState(msg.job().state()));
    pending_.push_back(std::move(msg));
    hub_->NoteBuffered(static_cast<int64_t>(pending_.size()));
  }

  void PushSnapshotLocked(core::Job job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (job.spec.empty()) job.spec = spec_;  // JobChange leaves it empty.
    v1::WatchJobResponse msg;
    msg.set_sequence(job.last_sequence);
    *msg.mutable_job() = JobToProto(job);
    PushLocked(std::move(msg));
  }

  // Queues `r` if it is the next record; false on a gap.
  // `converted`: `r.metric` as a proto when already converted.
  bool PushRecordLocked(const Record& r, bool* state_changed,
                        const v1::MetricPoint* converted = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (r.sequence <= cursor_) return true;  // Already sent.
    if (r.sequence != cursor_ + 1) return false;
    cursor_ = r.sequence;
    if (r.metric != nullptr && exclude_metrics_) return true;
    v1::WatchJobResponse msg;
    msg.set_sequence(r.sequence);
    if (r.event != nullptr) {
      *msg.mutable_event() = JobEventToProto(*r.event);
      if (r.event->type == core::JobEventType::kStateChanged) {
        *state_changed = true;
      }
    } else if (batch_metrics_) {
      // Joins the batch at the back of the queue when there is room (the
      // message being written has left the queue, so it is never touched).
      const bool join =
          !pending_.empty() && pending_.back().has_metrics() &&
          pending_.back().metrics().points_size() < kMaxBatchedPoints;
      v1::WatchJobResponse& target = join ? pending_.back() : msg;
      target.set_sequence(r.sequence);
      *target.mutable_metrics()->add_points() =
          converted ? *converted : MetricPointToProto(*r.metric);
      if (join) return true;  // Joined the batch at the back of the queue.
    } else {
      *msg.mutable_metric() =
          converted ? *converted : MetricPointToProto(*r.metric);
    }
    PushLocked(std::move(msg));
    return true;
  }

  void ApplyLiveLocked(const store::JobChange& change)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    latest_sequence_ = std::max(latest_sequence_, change.job.last_sequence);
    if (finishing_) return;
    if (replaying_) {
      parked_records_ +=
          static_cast<int64_t>(change.events.size() + change.metrics.size());
      if (parked_records_ > max_parked_) {
        parked_.clear();  // The next replay round reads them from the store.
        parked_records_ = 0;
        parked_dropped_ = true;
      } else if (!parked_dropped_) {
        parked_.push_back(change);
      }
      return;
    }
    bool state_changed = false;
    const std::vector<v1::MetricPoint>& converted = ConvertedMetrics(change);
    for (const Record& r : Merge(change.events, change.metrics)) {
      if (static_cast<int64_t>(pending_.size()) >= max_buffered_) {
        TruncateLocked();
        return;
      }
      const v1::MetricPoint* proto =
          r.metric == nullptr || converted.empty()
              ? nullptr
              : &converted[static_cast<size_t>(r.metric -
                                               change.metrics.data())];
      if (!PushRecordLocked(r, &state_changed, proto)) {
        StartRoundLocked();  // Gap: let the store fill it.
        return;
      }
    }
    if (cursor_ < change.job.last_sequence) {
      // The job has records this stream has not seen and the change does
      // not carry (the hub coalesced them): let the store fill the gap.
      StartRoundLocked();
      return;
    }
    const bool terminal = core::IsTerminal(change.job.state);
    if (state_changed || (terminal && !last_is_terminal_snapshot_ &&
                          cursor_ >= change.job.last_sequence)) {
      if (static_cast<int64_t>(pending_.size()) >= max_buffered_) {
        TruncateLocked();
        return;
      }
      PushSnapshotLocked(change.job);
    }
    if (terminal && cursor_ >= change.job.last_sequence) {
      finishing_ = true;  // After the queued messages, OK.
    }
  }

  void StartRoundLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    replaying_ = true;
    need_job_read_ = true;
    parked_.clear();
    parked_records_ = 0;
    parked_dropped_ = false;
  }

  void TruncateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    v1::WatchJobResponse msg;
    msg.set_sequence(cursor_);
    msg.mutable_truncated()->set_resume_after_sequence(cursor_);
    msg.mutable_truncated()->set_skipped_records(
        std::max<int64_t>(0, latest_sequence_ - cursor_));
    PushLocked(std::move(msg));
    finishing_ = true;
    final_status_ = grpc::Status::OK;
    parked_.clear();
  }

  void TerminateLocked(const absl::Status& status) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    pending_.clear();
    parked_.clear();
    finishing_ = true;
    final_status_ = ToGrpcStatus(status, ctx_);
  }

  engine::WatchHub* const hub_;
  store::Store* const store_;
  const std::string tenant_;
  const std::string job_id_;
  const bool has_after_;
  const int64_t after_;
  const bool exclude_metrics_;
  const bool batch_metrics_;
  const int64_t max_buffered_;
  const int page_size_;
  const int64_t max_parked_;

  std::deque<v1::WatchJobResponse> pending_ ABSL_GUARDED_BY(mu_);

  bool started_ ABSL_GUARDED_BY(mu_) = false;  // First snapshot queued.
  std::string spec_ ABSL_GUARDED_BY(mu_);
  // Every record with sequence <= cursor_ is queued (or skipped on purpose).
  int64_t cursor_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t latest_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  bool last_is_terminal_snapshot_ ABSL_GUARDED_BY(mu_) = false;

  bool replaying_ ABSL_GUARDED_BY(mu_) = true;
  bool replay_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  bool need_job_read_ ABSL_GUARDED_BY(mu_) = true;
  core::Job round_job_ ABSL_GUARDED_BY(mu_);  // Read at the round's start.
  bool round_state_changed_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<store::JobChange> parked_ ABSL_GUARDED_BY(mu_);
  int64_t parked_records_ ABSL_GUARDED_BY(mu_) = 0;
  bool parked_dropped_ ABSL_GUARDED_BY(mu_) = false;
};

void WatchSession::Pump() {
  bool schedule = false;
  {
    absl::MutexLock lock(&mu_);
    if (finished_ || reactor_ == nullptr) return;
    if (!finishing_ && replaying_ && !replay_scheduled_ &&
        static_cast<int64_t>(pending_.size()) < max_buffered_ / 4) {
      replay_scheduled_ = schedule = true;
    }
  }
  if (schedule) {
    std::shared_ptr<WatchSession> self = shared_from_this();
    if (!hub_->Post([self] { self->ReplayStep(); })) {
      // Shut down: OnShutdown() ends the stream.
      absl::MutexLock lock(&mu_);
      replay_scheduled_ = false;
    }
  }
  WriteNext();
}

void WatchSession::ReplayStep() {
  bool read_job;
  int64_t cursor;
  int64_t target;
  {
    absl::MutexLock lock(&mu_);
    if (finishing_ || finished_) {
      replay_scheduled_ = false;
      return;
    }
    read_job = need_job_read_;
    cursor = cursor_;
    target = round_job_.last_sequence;
  }
  if (read_job) {
    absl::StatusOr<core::Job> job = store_->GetJob(tenant_, job_id_);
    absl::MutexLock lock(&mu_);
    replay_scheduled_ = false;
    if (finishing_) return;
    if (!job.ok()) {
      TerminateLocked(AboutResource(job.status(), job_id_));
    } else {
      if (!started_) {
        started_ = true;
        spec_ = job->spec;
        if (has_after_ && after_ > job->last_sequence) {
          TerminateLocked(absl::OutOfRangeError(absl::StrCat(
              "after_sequence ", after_, " is larger than the job's ",
              "last_sequence ", job->last_sequence)));
        } else {
          cursor_ = has_after_ ? after_ : job->last_sequence;
          PushSnapshotLocked(*job);
        }
      }
      latest_sequence_ = std::max(latest_sequence_, job->last_sequence);
      round_job_ = *std::move(job);
      round_state_changed_ = false;
      need_job_read_ = false;
    }
  } else {
    // One page of the records in (cursor, target].
    std::vector<core::JobEvent> events;
    std::vector<core::MetricPoint> metrics;
    absl::Status read_status;
    int64_t bound = target;
    if (cursor < target) {
      absl::StatusOr<std::vector<core::JobEvent>> e =
          store_->ListJobEvents(tenant_, job_id_, cursor, page_size_);
      read_status = e.status();
      if (e.ok()) {
        events = *std::move(e);
        if (static_cast<int>(events.size()) == page_size_) {
          bound = std::min(bound, events.back().sequence);
        }
      }
      if (read_status.ok() && !exclude_metrics_) {
        absl::StatusOr<std::vector<core::MetricPoint>> m =
            store_->ListJobMetrics(tenant_, job_id_, cursor, page_size_);
        read_status = m.status();
        if (m.ok()) {
          metrics = *std::move(m);
          if (static_cast<int>(metrics.size()) == page_size_) {
            bound = std::min(bound, metrics.back().sequence);
          }
        }
      }
    }
    absl::MutexLock lock(&mu_);
    replay_scheduled_ = false;
    if (finishing_) return;
    if (!read_status.ok()) {
      TerminateLocked(read_status);
    } else {
      for (const Record& r : Merge(events, metrics)) {
        if (r.sequence > bound) break;
        // The store is complete up to `bound`: a hole before r can only be
        // metric points that exclude_metrics left unread.
        if (r.sequence > cursor_ + 1) cursor_ = r.sequence - 1;
        PushRecordLocked(r, &round_state_changed_);
      }
      cursor_ = std::max(cursor_, bound);
    }
  }
  {
    absl::MutexLock lock(&mu_);
    if (!finishing_ && !need_job_read_ && cursor_ >= round_job_.last_sequence) {
      // Round complete.
      const bool terminal = core::IsTerminal(round_job_.state);
      if ((round_state_changed_ || terminal) && !last_is_terminal_snapshot_) {
        PushSnapshotLocked(round_job_);
      }
      round_state_changed_ = false;
      if (terminal) {
        finishing_ = true;
      } else if (parked_dropped_) {
        StartRoundLocked();
      } else {
        replaying_ = false;
        std::deque<store::JobChange> parked;
        parked.swap(parked_);
        parked_records_ = 0;
        for (const store::JobChange& change : parked) {
          ApplyLiveLocked(change);
          if (replaying_ || finishing_) break;  // Gap or truncated.
        }
      }
    }
  }
  Pump();
}

}  // namespace

grpc::ServerWriteReactor<v1::WatchJobResponse>* StartWatchJob(
    engine::WatchHub* hub, store::Store* store,
    grpc::CallbackServerContext* ctx, const v1::WatchJobRequest* request,
    const Principal& principal, const WatchJobOptions& options) {
  auto* reactor = new WatchReactor();
  absl::Status invalid;
  if (principal.kind != Principal::Kind::kTenant ||
      principal.tenant_id.empty()) {
    invalid = absl::PermissionDeniedError("WatchJob needs a tenant API key");
  } else if (!IsValidId(request->job_id(), kJobIdPrefix)) {
    invalid = InvalidField(
        "job_id", absl::StrCat("job_id ", QuoteValue(request->job_id()),
                               " is not a job id (job-...)"));
  } else if (request->has_after_sequence() && request->after_sequence() < 0) {
    invalid = InvalidField("after_sequence", "after_sequence must be >= 0");
  }
  engine::TenantLimits::StreamSlot slot;
  if (invalid.ok() && options.limits != nullptr) {
    absl::StatusOr<engine::TenantLimits::StreamSlot> acquired =
        options.limits->AcquireStream(principal.tenant_id);
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
  auto session = std::make_shared<WatchSession>(
      hub, store, ctx, principal.tenant_id, *request, options, reactor);
  session->HoldSlot(std::move(slot));
  reactor->set_session(session);
  session->Start();
  return reactor;
}

}  // namespace ftune::server::rpc
