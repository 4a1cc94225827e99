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
#include "client/progress.h"
#include "ftune/v1/job_service.grpc.pb.h"

namespace ftune::client {
namespace {

// How long reconnecting may take without --timeout: from the first failure
// after the last message received.
constexpr absl::Duration kDefaultReconnectWindow = absl::Seconds(60);
constexpr absl::Duration kFirstBackoff = absl::Milliseconds(250);
constexpr absl::Duration kMaxBackoff = absl::Seconds(4);

// The exit of `jobs watch` once the job is terminal.
int Finished(const CommandContext& c, const v1::Job& job) {
  if (job.state() == v1::JOB_STATE_SUCCEEDED) {
    if (!c.output.structured()) {
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

// Prints WatchJob messages as text: a line per state change, event and
// metric point; or, with `live`, state changes, events and evaluations as
// lines above one progress line redrawn in place (client/progress.h).
// Not thread-safe.
class WatchPrinter {
 public:
  WatchPrinter(const CommandContext& c, bool live) : c_(c) {
    if (live) live_.emplace(c.output.out());
  }

  void Print(const v1::WatchJobResponse& msg, const v1::Job& job) {
    switch (msg.update_case()) {
      case v1::WatchJobResponse::kJob:
        progress_.SetJob(msg.job());
        // Snapshots repeat what STATE_CHANGED events say; print one only
        // when it shows a state not printed yet (the first one, mostly).
        if (msg.job().state() != shown_) {
          shown_ = msg.job().state();
          std::string line = absl::StrCat(FormatTime(msg.job().update_time()),
                                          "  ", msg.job().id(), " ",
                                          JobStateName(msg.job().state()));
          if (msg.job().state() == v1::JOB_STATE_QUEUED &&
              !msg.job().queue_reason().empty()) {
            absl::StrAppend(&line, " (", msg.job().queue_reason(), ")");
          }
          Line(line);
        }
        break;
      case v1::WatchJobResponse::kEvent:
        if (msg.event().type() == v1::JOB_EVENT_TYPE_STATE_CHANGED) {
          shown_ = msg.event().to_state();
        }
        if (msg.event().type() == v1::JOB_EVENT_TYPE_SAMPLES) {
          // New sample completions: where to read them.
          Line(absl::StrCat(EventLine(msg.event()), " (ftunectl jobs samples ",
                            c_.arg(0), " --step ", msg.event().step(), ")"));
          break;
        }
        Line(EventLine(msg.event()));
        break;
      case v1::WatchJobResponse::kMetric:
        Point(msg.metric(), job);
        break;
      case v1::WatchJobResponse::kMetrics:
        for (const v1::MetricPoint& m : msg.metrics().points()) Point(m, job);
        break;
      case v1::WatchJobResponse::kTruncated:
      case v1::WatchJobResponse::UPDATE_NOT_SET:
        break;
    }
    Redraw();
    c_.output.out().flush();
  }

  // Before anything else is printed, on stdout or stderr.
  void Clear() {
    if (live_) live_->Clear();
  }
  // At the end: the last progress line stays.
  void Keep() {
    if (live_) live_->Keep();
  }

 private:
  void Line(const std::string& text) {
    Clear();
    c_.output.out() << text << "\n";
  }

  void Point(const v1::MetricPoint& point, const v1::Job& job) {
    if (!live_) {
      c_.output.out() << MetricLine(point, job.progress().total_steps())
                      << "\n";
      return;
    }
    progress_.Add(point);
    has_points_ = true;
    // Evaluations are rare and worth keeping on screen.
    if (point.has_eval_loss()) {
      Line(MetricLine(point, job.progress().total_steps()));
    }
  }

  void Redraw() {
    if (!live_ || !has_points_) return;
    // The last column stays free: some terminals wrap when it is written.
    live_->Draw(RenderTrainingLine(progress_.View(),
                                   c_.output.terminal().Columns() - 1));
  }

  const CommandContext& c_;
  v1::JobState shown_ = v1::JOB_STATE_UNSPECIFIED;
  TrainingProgress progress_;
  bool has_points_ = false;
  std::optional<LiveLine> live_;
};

}  // namespace

bool Retryable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::CANCELLED;
}

Reconnector::Reconnector(const CommandContext& c, absl::string_view what)
    : c_(c),
      what_(what),
      window_(c.conn.timeout_set() ? c.conn.timeout()
                                   : kDefaultReconnectWindow),
      backoff_(kFirstBackoff) {}

void Reconnector::Progress() {
  failing_since_.reset();
  backoff_ = kFirstBackoff;
}

bool Reconnector::Wait(const grpc::Status& status, absl::string_view resume) {
  const absl::Time now = absl::Now();
  if (!failing_since_.has_value()) failing_since_ = now;
  const absl::Time deadline = *failing_since_ + window_;
  if (now >= deadline) return false;
  c_.output.err() << "ftunectl: " << what_ << ": connection lost ("
                  << StatusCodeName(status.error_code()) << ": "
                  << status.error_message() << "); reconnecting from " << resume
                  << "\n";
  absl::SleepFor(std::min(backoff_, deadline - now));
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
  return c_.conn.channel()->WaitForConnected(absl::ToChronoTime(deadline));
}

int JobsWatch(const CommandContext& c) {
  auto stub = v1::JobService::NewStub(c.conn.channel());
  std::optional<int64_t> after = c.flags().GetInt("after");
  bool received = false;  // anything at all, on any stream
  v1::Job job;            // latest snapshot
  // The live line only where someone watches it: text on a terminal.
  const bool live =
      !c.output.structured() && c.output.terminal().stdout_is_tty &&
      !c.flags().GetBool("no-progress") && !c.flags().GetBool("no-metrics");
  WatchPrinter printer(c, live);
  Reconnector reconnect(c, "watch");

  for (;;) {
    v1::WatchJobRequest req;
    req.set_job_id(c.arg(0));
    if (after.has_value()) req.set_after_sequence(*after);
    req.set_exclude_metrics(c.flags().GetBool("no-metrics"));
    // Text output prints a line per point (or redraws once) either way;
    // fewer messages for a fast job. JSON and YAML keep one per point.
    req.set_batch_metrics(!c.output.structured());
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
      if (c.output.structured()) {
        c.output.Message(msg);
      } else {
        printer.Print(msg, job);
      }
    }
    grpc::Status status = reader->Finish();
    if (status.ok() && IsTerminal(job.state()) && !truncated) {
      printer.Keep();
      return Finished(c, job);
    }
    if (status.ok() && truncated) continue;  // fell behind: resume at once
    printer.Clear();
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
      if (c.output.structured()) {
        c.output.Message(chunk);
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
