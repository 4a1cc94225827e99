// The streaming job commands: `jobs watch` (WatchJob) and `jobs logs`
// (StreamJobLog). Both survive a broken connection: they reconnect and
// continue from the last record (watch) or byte (logs) they received.
#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/commands_internal.h"
#include "ftune/v1/job_service.grpc.pb.h"

namespace ftune::client {
namespace {

// How long reconnecting may take without --timeout: from the first failure
// after the last message received.
constexpr absl::Duration kDefaultReconnectWindow = absl::Seconds(60);
constexpr absl::Duration kFirstBackoff = absl::Milliseconds(250);
constexpr absl::Duration kMaxBackoff = absl::Seconds(4);

// Whether a broken stream is worth reopening. ftunectl never cancels its own
// calls, so CANCELLED comes from the server side (e.g. a server that shuts
// down while the call is open), like UNAVAILABLE.
bool Retryable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::CANCELLED;
}

// Reopening a stream after it broke: backoff between tries, and a window
// (--timeout, else 60 s) after which it gives up. Not thread-safe.
class Reconnector {
 public:
  Reconnector(const CommandContext& c, absl::string_view what)
      : c_(c),
        what_(what),
        window_(c.conn.timeout_set() ? c.conn.timeout()
                                     : kDefaultReconnectWindow) {}

  // A message arrived: the connection works again.
  void Progress() {
    failing_since_.reset();
    backoff_ = kFirstBackoff;
  }

  // Says that the stream broke, waits for the backoff and for the channel to
  // connect; false when the window is used up.
  bool Wait(const grpc::Status& status, absl::string_view resume) {
    const absl::Time now = absl::Now();
    if (!failing_since_.has_value()) failing_since_ = now;
    const absl::Time deadline = *failing_since_ + window_;
    if (now >= deadline) return false;
    c_.output.err() << "ftunectl: " << what_ << ": connection lost ("
                    << StatusCodeName(status.error_code()) << ": "
                    << status.error_message() << "); reconnecting from "
                    << resume << "\n";
    absl::SleepFor(std::min(backoff_, deadline - now));
    backoff_ = std::min(backoff_ * 2, kMaxBackoff);
    return c_.conn.channel()->WaitForConnected(absl::ToChronoTime(deadline));
  }

 private:
  const CommandContext& c_;
  std::string what_;
  absl::Duration window_;
  absl::Duration backoff_ = kFirstBackoff;
  std::optional<absl::Time> failing_since_;
};

// The exit of `jobs watch` once the job is terminal.
int Finished(const CommandContext& c, const v1::Job& job) {
  if (job.state() == v1::JOB_STATE_SUCCEEDED) {
    if (!c.output.json()) {
      c.output.out() << job.id() << " SUCCEEDED\n"
                     << "Adapter: " << job.adapter().name() << "\n"
                     << "Adapter path: " << job.adapter().path() << "\n";
    }
    return kExitOk;
  }
  c.output.err() << "ftunectl: " << job.id() << " "
                 << JobStateName(job.state());
  if (!job.error().message().empty() ||
      job.error().reason() != v1::ERROR_REASON_UNSPECIFIED) {
    c.output.err() << ": "
                   << EnumName(v1::ErrorReason_descriptor(),
                               job.error().reason(), "ERROR_REASON_")
                   << ": " << job.error().message();
  }
  c.output.err() << "\n";
  return kExitError;
}

// Prints one WatchJob message as text. `shown` is the last state printed.
void PrintUpdate(const CommandContext& c, const v1::WatchJobResponse& msg,
                 const v1::Job& job, v1::JobState* shown) {
  switch (msg.update_case()) {
    case v1::WatchJobResponse::kJob:
      // Snapshots repeat what STATE_CHANGED events say; print one only when
      // it shows a state not printed yet (the first one, mostly).
      if (msg.job().state() != *shown) {
        *shown = msg.job().state();
        std::string line =
            absl::StrCat(FormatTime(msg.job().update_time()), "  ",
                         msg.job().id(), " ", JobStateName(msg.job().state()));
        if (msg.job().state() == v1::JOB_STATE_QUEUED &&
            !msg.job().queue_reason().empty()) {
          absl::StrAppend(&line, " (", msg.job().queue_reason(), ")");
        }
        c.output.out() << line << "\n";
      }
      break;
    case v1::WatchJobResponse::kEvent:
      if (msg.event().type() == v1::JOB_EVENT_TYPE_STATE_CHANGED) {
        *shown = msg.event().to_state();
      }
      c.output.out() << EventLine(msg.event()) << "\n";
      break;
    case v1::WatchJobResponse::kMetric:
      c.output.out() << MetricLine(msg.metric(), job.progress().total_steps())
                     << "\n";
      break;
    case v1::WatchJobResponse::kMetrics:
      for (const v1::MetricPoint& m : msg.metrics().points()) {
        c.output.out() << MetricLine(m, job.progress().total_steps()) << "\n";
      }
      break;
    case v1::WatchJobResponse::kTruncated:
    case v1::WatchJobResponse::UPDATE_NOT_SET:
      break;
  }
  c.output.out().flush();
}

}  // namespace

int JobsWatch(const CommandContext& c) {
  auto stub = v1::JobService::NewStub(c.conn.channel());
  std::optional<int64_t> after = c.flags().GetInt("after");
  bool received = false;  // anything at all, on any stream
  v1::Job job;            // latest snapshot
  v1::JobState shown = v1::JOB_STATE_UNSPECIFIED;
  Reconnector reconnect(c, "watch");

  for (;;) {
    v1::WatchJobRequest req;
    req.set_job_id(c.arg(0));
    if (after.has_value()) req.set_after_sequence(*after);
    req.set_exclude_metrics(c.flags().GetBool("no-metrics"));
    // Text output prints a line per point either way; fewer messages for a
    // fast job. JSON output keeps one object per point.
    req.set_batch_metrics(!c.output.json());
    grpc::ClientContext ctx;
    // A watch lasts as long as the job: no deadline on the stream itself.
    c.conn.Prepare(&ctx, /*deadline=*/false);
    auto reader = stub->WatchJob(&ctx, req);
    v1::WatchJobResponse msg;
    bool truncated = false;
    while (reader->Read(&msg)) {
      received = true;
      reconnect.Progress();
      // Every message carries a sequence that is a valid resume cursor.
      after = msg.sequence();
      if (msg.has_job()) job = msg.job();
      if (msg.has_truncated()) {
        truncated = true;
        after = msg.truncated().resume_after_sequence();
      }
      if (c.output.json()) {
        c.output.Json(msg);
      } else {
        PrintUpdate(c, msg, job, &shown);
      }
    }
    grpc::Status status = reader->Finish();
    if (status.ok() && IsTerminal(job.state()) && !truncated) {
      return Finished(c, job);
    }
    if (status.ok() && truncated) continue;  // fell behind: resume at once
    // The server ended the stream early (OK while the job is still live, as
    // when it shuts down), or the connection broke after we were watching.
    const bool broken = status.ok() || (received && Retryable(status));
    if (!broken) return ReportRpcError(status, ctx, c.output.err());
    const grpc::Status why =
        status.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                   "stream ended before the job did")
                    : status;
    if (!reconnect.Wait(why, absl::StrCat("sequence ", after.value_or(0)))) {
      ReportRpcError(why, ctx, c.output.err());
      return kExitUnavailable;  // the server did not come back
    }
  }
}

int JobsLogs(const CommandContext& c) {
  auto stub = v1::JobService::NewStub(c.conn.channel());
  const bool follow = c.flags().GetBool("follow");
  v1::StreamJobLogRequest req;
  req.set_job_id(c.arg(0));
  if (auto v = c.flags().GetInt("attempt")) {
    req.set_attempt(static_cast<int32_t>(*v));
  }
  if (auto v = c.flags().GetInt("offset")) req.set_offset(*v);
  req.set_follow(follow);
  bool received = false;
  Reconnector reconnect(c, "logs");
  for (;;) {
    grpc::ClientContext ctx;
    c.conn.Prepare(&ctx, /*deadline=*/!follow || c.conn.timeout_set());
    auto reader = stub->StreamJobLog(&ctx, req);
    v1::StreamJobLogResponse chunk;
    while (reader->Read(&chunk)) {
      received = true;
      reconnect.Progress();
      if (c.output.json()) {
        c.output.Json(chunk);
      } else {
        c.output.out().write(chunk.data().data(),
                             static_cast<std::streamsize>(chunk.data().size()));
        c.output.out().flush();
      }
      // Resume exactly after the last byte received, of the same attempt.
      req.set_attempt(chunk.attempt());
      req.set_offset(chunk.offset() +
                     static_cast<int64_t>(chunk.data().size()));
    }
    grpc::Status status = reader->Finish();
    if (status.ok()) return kExitOk;
    if (!follow || !received || !Retryable(status)) {
      return ReportRpcError(status, ctx, c.output.err());
    }
    if (!reconnect.Wait(status, absl::StrCat("byte ", req.offset()))) {
      ReportRpcError(status, ctx, c.output.err());
      return kExitUnavailable;  // the server did not come back
    }
  }
}

}  // namespace ftune::client
