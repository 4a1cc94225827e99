#include "worker/agent/worker_session.h"

#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace ftune::agent {
namespace {

absl::Duration FromProto(const google::protobuf::Duration& d,
                         absl::Duration fallback) {
  const absl::Duration v =
      absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
  return v > absl::ZeroDuration() ? v : fallback;
}

bool IsLost(const absl::Status& s) {
  return s.code() == absl::StatusCode::kNotFound ||
         s.code() == absl::StatusCode::kFailedPrecondition;
}

constexpr size_t kFinishedRemembered = 4096;

}  // namespace

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      s.error_message());
}

// ReportProgress/FinishAttempt over gRPC with the current worker_id.
class WorkerAgent::Reporter : public AttemptReporter {
 public:
  explicit Reporter(WorkerAgent* agent) : agent_(agent) {}

  absl::StatusOr<v1::ReportProgressResponse> ReportProgress(
      const v1::ReportProgressRequest& request) override {
    v1::ReportProgressRequest r = request;
    r.set_worker_id(agent_->worker_id());
    grpc::ClientContext ctx;
    // Wait for a reconnect instead of failing on a stale TRANSIENT_FAILURE.
    ctx.set_wait_for_ready(true);
    agent_->AddAuth(&ctx);
    ctx.set_deadline(
        absl::ToChronoTime(absl::Now() + agent_->options_.rpc_timeout));
    v1::ReportProgressResponse resp;
    absl::Status s = FromGrpc(agent_->stub_->ReportProgress(&ctx, r, &resp));
    if (!s.ok()) return s;
    return resp;
  }

  absl::StatusOr<v1::FinishAttemptResponse> FinishAttempt(
      const v1::FinishAttemptRequest& request) override {
    v1::FinishAttemptRequest r = request;
    r.set_worker_id(agent_->worker_id());
    grpc::ClientContext ctx;
    // Wait for a reconnect instead of failing on a stale TRANSIENT_FAILURE.
    ctx.set_wait_for_ready(true);
    agent_->AddAuth(&ctx);
    ctx.set_deadline(
        absl::ToChronoTime(absl::Now() + agent_->options_.rpc_timeout));
    v1::FinishAttemptResponse resp;
    absl::Status s = FromGrpc(agent_->stub_->FinishAttempt(&ctx, r, &resp));
    if (!s.ok()) return s;
    return resp;
  }

 private:
  WorkerAgent* const agent_;
};

WorkerAgent::WorkerAgent(WorkerOptions options)
    : options_(std::move(options)),
      clock_(options_.runner.clock),
      reporter_(std::make_unique<Reporter>(this)) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  args.SetMaxSendMessageSize(16 << 20);
  // gRPC's default reconnect backoff (1 s growing to 120 s) would leave the
  // channel failing fast long after a restarted scheduler is back, and the
  // agent self-fences after one lease without a heartbeat: retry the
  // connection at least every second. (GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is
  // also the connect timeout: left at its default.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  channel_ = grpc::CreateCustomChannel(options_.scheduler_address,
                                       options_.channel_credentials != nullptr
                                           ? options_.channel_credentials
                                           : grpc::InsecureChannelCredentials(),
                                       args);
  stub_ = v1::WorkerService::NewStub(channel_);
}

WorkerAgent::~WorkerAgent() { KillAll(); }

std::string WorkerAgent::worker_id() const {
  absl::MutexLock lock(&mu_);
  return worker_id_;
}

void WorkerAgent::AddAuth(grpc::ClientContext* ctx) const {
  ctx->AddMetadata("authorization",
                   absl::StrCat("Bearer ", options_.worker_key));
}

absl::StatusOr<v1::RegisterWorkerResponse> WorkerAgent::Register(
    const std::string& previous_id) {
  absl::Duration backoff = options_.reconnect_initial;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (shutting_down_) return absl::CancelledError("shutting down");
    }
    v1::RegisterWorkerRequest req;
    *req.mutable_capabilities() = options_.capabilities;
    req.set_previous_worker_id(previous_id);
    grpc::ClientContext ctx;
    // Wait for a reconnect instead of failing on a stale TRANSIENT_FAILURE.
    ctx.set_wait_for_ready(true);
    AddAuth(&ctx);
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
    v1::RegisterWorkerResponse resp;
    const absl::Time sent = clock_->Now();
    absl::Status s = FromGrpc(stub_->RegisterWorker(&ctx, req, &resp));
    if (s.ok()) {
      absl::MutexLock lock(&mu_);
      registered_sent_ = sent;
      return resp;
    }
    if (s.code() == absl::StatusCode::kUnauthenticated ||
        s.code() == absl::StatusCode::kPermissionDenied ||
        s.code() == absl::StatusCode::kInvalidArgument) {
      return s;
    }
    FTUNE_LOG(WARNING) << "RegisterWorker at " << options_.scheduler_address
                       << " failed: " << s << "; retrying in "
                       << absl::FormatDuration(backoff);
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&shutting_down_), backoff);
    backoff = std::min(backoff * 2, options_.reconnect_max);
  }
}

absl::Status WorkerAgent::Run() {
  std::string previous_id;
  while (true) {
    absl::StatusOr<v1::RegisterWorkerResponse> reg = Register(previous_id);
    if (!reg.ok()) {
      if (reg.status().code() == absl::StatusCode::kCancelled) {
        return absl::OkStatus();
      }
      return reg.status();
    }
    {
      absl::MutexLock lock(&mu_);
      worker_id_ = reg->worker_id();
      lease_duration_ = FromProto(reg->lease_duration(), absl::Seconds(30));
      heartbeat_interval_ =
          FromProto(reg->heartbeat_interval(), absl::Seconds(5));
      lost_ = false;
      stream_stop_ = false;
      FTUNE_LOG(INFO) << "registered as " << worker_id_ << " (lease "
                      << absl::FormatDuration(lease_duration_)
                      << ", heartbeat every "
                      << absl::FormatDuration(heartbeat_interval_) << ")";
    }
    if (options_.on_registered) options_.on_registered(reg->worker_id());

    std::thread stream([this] { StreamLoop(); });
    const SessionEnd end = HeartbeatLoop();
    {
      absl::MutexLock lock(&mu_);
      stream_stop_ = true;
      if (stream_ctx_ != nullptr) stream_ctx_->TryCancel();
    }
    stream.join();
    KillAll();
    if (end == SessionEnd::kShutdown) return absl::OkStatus();
    previous_id = reg->worker_id();
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return absl::OkStatus();
    // Never a tight loop of registrations, whatever the scheduler says.
    mu_.AwaitWithTimeout(absl::Condition(&shutting_down_),
                         options_.reconnect_initial);
  }
}

WorkerAgent::SessionEnd WorkerAgent::HeartbeatLoop() {
  // The registration counts as the first successful heartbeat: the lease
  // runs from when it was sent at the latest.
  absl::Time last_ok_sent;
  {
    absl::MutexLock lock(&mu_);
    last_ok_sent = registered_sent_;
  }
  absl::Time next = clock_->Now();
  v1::WorkerState last_state = v1::WORKER_STATE_ACTIVE;
  while (true) {
    absl::Duration lease, interval;
    {
      absl::MutexLock lock(&mu_);
      lease = lease_duration_;
      interval = heartbeat_interval_;
    }
    // Kill a little before the deadline: SIGKILL and reaping take time.
    const absl::Time fence_at =
        last_ok_sent + lease - std::min(absl::Seconds(1), lease / 10);
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return lost_ || hard_stop_;
      };
      absl::Time until = std::min(next, fence_at);
      if (shutting_down_) {
        until = std::min(until, clock_->Now() + absl::Milliseconds(100));
      }
      mu_.AwaitWithTimeout(
          absl::Condition(&wake),
          std::max(absl::ZeroDuration(), until - clock_->Now()));
      if (hard_stop_) return SessionEnd::kShutdown;
      if (lost_) {
        FTUNE_LOG(WARNING) << "registration " << worker_id_
                           << " lost; killing every attempt";
        return SessionEnd::kLost;
      }
    }
    SweepDone();
    {
      absl::MutexLock lock(&mu_);
      if (shutting_down_ && runners_.empty()) return SessionEnd::kShutdown;
    }
    const absl::Time now = clock_->Now();
    if (now >= fence_at) {
      FTUNE_LOG(ERROR) << "no successful heartbeat since "
                       << absl::FormatTime(last_ok_sent) << " (lease "
                       << absl::FormatDuration(lease)
                       << "): self-fencing, killing every attempt";
      return SessionEnd::kLost;
    }
    if (now < next) continue;

    v1::HeartbeatRequest req;
    {
      absl::MutexLock lock(&mu_);
      req.set_worker_id(worker_id_);
      for (const auto& [key, runner] : runners_) {
        v1::AttemptRef* a = req.add_running_attempts();
        a->set_job_id(key.first);
        a->set_attempt(key.second);
      }
    }
    grpc::ClientContext ctx;
    // Wait for a reconnect instead of failing on a stale TRANSIENT_FAILURE.
    ctx.set_wait_for_ready(true);
    AddAuth(&ctx);
    ctx.set_deadline(absl::ToChronoTime(
        std::min(now + std::min(options_.rpc_timeout, interval), fence_at)));
    v1::HeartbeatResponse resp;
    const absl::Status s = FromGrpc(stub_->Heartbeat(&ctx, req, &resp));
    next = now + interval;
    if (options_.on_heartbeat) options_.on_heartbeat(s.ok());
    if (s.ok()) {
      last_ok_sent = now;
      if (resp.state() != last_state) {
        FTUNE_LOG(INFO) << "worker state "
                        << v1::WorkerState_Name(resp.state());
        last_state = resp.state();
      }
      absl::MutexLock lock(&mu_);
      for (const v1::AttemptRef& a : resp.stop_attempts()) {
        auto it = runners_.find(Key(a.job_id(), a.attempt()));
        if (it == runners_.end()) continue;
        FTUNE_LOG(WARNING) << "scheduler says job " << a.job_id() << " attempt "
                           << a.attempt() << " is stale: killing it";
        it->second->Kill();
      }
      continue;
    }
    if (IsLost(s)) {
      FTUNE_LOG(WARNING) << "Heartbeat: " << s
                         << "; killing every attempt and registering again";
      return SessionEnd::kLost;
    }
    FTUNE_LOG(WARNING) << "Heartbeat failed: " << s << " (self-fencing at "
                       << absl::FormatTime(fence_at) << ")";
  }
}

void WorkerAgent::StreamLoop() {
  absl::Duration backoff = options_.reconnect_initial;
  while (true) {
    grpc::ClientContext ctx;
    // Wait for a reconnect instead of failing on a stale TRANSIENT_FAILURE.
    ctx.set_wait_for_ready(true);
    AddAuth(&ctx);
    v1::StreamCommandsRequest req;
    {
      absl::MutexLock lock(&mu_);
      if (stream_stop_) return;
      req.set_worker_id(worker_id_);
      stream_ctx_ = &ctx;
    }
    std::unique_ptr<grpc::ClientReader<v1::WorkerCommand>> reader =
        stub_->StreamCommands(&ctx, req);
    v1::WorkerCommand cmd;
    while (reader->Read(&cmd)) {
      backoff = options_.reconnect_initial;
      Handle(cmd);
    }
    const absl::Status s = FromGrpc(reader->Finish());
    absl::MutexLock lock(&mu_);
    stream_ctx_ = nullptr;
    if (stream_stop_) return;
    if (IsLost(s)) {
      FTUNE_LOG(WARNING) << "StreamCommands: " << s;
      lost_ = true;
      return;
    }
    FTUNE_LOG(WARNING) << "command stream ended: " << s << "; reconnecting in "
                       << absl::FormatDuration(backoff);
    mu_.AwaitWithTimeout(absl::Condition(&stream_stop_), backoff);
    backoff = std::min(backoff * 2, options_.reconnect_max);
  }
}

void WorkerAgent::Handle(const v1::WorkerCommand& command) {
  absl::MutexLock lock(&mu_);
  switch (command.command_case()) {
    case v1::WorkerCommand::kAssignJob: {
      const v1::AssignJobCommand& a = command.assign_job();
      const Key key(a.job_id(), a.attempt());
      if (runners_.count(key) || finished_.count(key)) return;  // re-delivery
      // An older attempt of the same job still here is stale (the scheduler
      // moved on): kill it and start the new one only once it is gone.
      std::shared_ptr<AttemptRunner> predecessor;
      for (auto& [k, r] : runners_) {
        if (k.first == a.job_id() && k.second < a.attempt()) {
          r->Kill();
          predecessor = r;
        }
      }
      FTUNE_LOG(INFO) << "assigned job " << a.job_id() << " attempt "
                      << a.attempt();
      auto runner =
          std::make_shared<AttemptRunner>(a, options_.runner, reporter_.get());
      if (shutting_down_) runner->Shutdown();
      runner->Start(predecessor);
      runners_[key] = std::move(runner);
      return;
    }
    case v1::WorkerCommand::kCancelJob: {
      const v1::CancelJobCommand& c = command.cancel_job();
      auto it = runners_.find(Key(c.job_id(), c.attempt()));
      if (it == runners_.end()) return;
      FTUNE_LOG(INFO) << "cancel job " << c.job_id() << " attempt "
                      << c.attempt();
      it->second->Cancel(FromProto(c.grace_period(), absl::ZeroDuration()));
      return;
    }
    case v1::WorkerCommand::kPauseJob: {
      const v1::PauseJobCommand& p = command.pause_job();
      auto it = runners_.find(Key(p.job_id(), p.attempt()));
      if (it == runners_.end()) return;
      FTUNE_LOG(INFO) << "pause job " << p.job_id() << " attempt "
                      << p.attempt();
      it->second->Pause();
      return;
    }
    default:
      return;  // a newer scheduler's command
  }
}

void WorkerAgent::SweepDone() {
  std::vector<std::shared_ptr<AttemptRunner>> done;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = runners_.begin(); it != runners_.end();) {
      if (it->second->done()) {
        done.push_back(it->second);
        if (finished_.insert(it->first).second) {
          finished_order_.push_back(it->first);
          if (finished_order_.size() > kFinishedRemembered) {
            finished_.erase(finished_order_.front());
            finished_order_.pop_front();
          }
        }
        it = runners_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& r : done) r->Wait();
}

void WorkerAgent::KillAll() {
  std::map<Key, std::shared_ptr<AttemptRunner>> runners;
  {
    absl::MutexLock lock(&mu_);
    runners.swap(runners_);
    for (const auto& [key, r] : runners) {
      if (finished_.insert(key).second) finished_order_.push_back(key);
    }
  }
  for (auto& [key, r] : runners) r->Kill();
  for (auto& [key, r] : runners) r->Wait();
}

void WorkerAgent::Shutdown(bool hard) {
  absl::MutexLock lock(&mu_);
  if (hard) hard_stop_ = true;
  if (shutting_down_ && !hard) return;
  shutting_down_ = true;
  FTUNE_LOG(INFO) << "shutting down: stopping " << runners_.size()
                  << " trainer(s)";
  for (auto& [key, r] : runners_) {
    if (hard) {
      r->Kill();
    } else {
      r->Shutdown();
    }
  }
}

}  // namespace ftune::agent
