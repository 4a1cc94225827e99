// JobService commands except the streaming ones (commands_watch.cc):
// create, get, list, cancel, pause, resume, events, metrics, checkpoints.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/commands_internal.h"
#include "client/job_spec_flags.h"
#include "common/contract/memory_plan.h"
#include "ftune/v1/job_service.grpc.pb.h"

namespace ftune::client {
namespace {

// Attempts of CreateJob when the server cannot be reached; the request_id
// makes a repeated create return the first job instead of a second one.
constexpr int kCreateAttempts = 3;

std::unique_ptr<v1::JobService::Stub> Stub(const CommandContext& c) {
  return v1::JobService::NewStub(c.conn.channel());
}

std::string Progress(const v1::JobProgress& p) {
  if (p.step() == 0 && p.total_steps() == 0) return "";
  std::string text = p.total_steps() > 0
                         ? absl::StrFormat("step %d/%d (%.1f%%)", p.step(),
                                           p.total_steps(), p.percent())
                         : absl::StrCat("step ", p.step());
  absl::StrAppend(&text, ", epoch ", FormatNumber(p.epoch()));
  if (std::string eta = FormatDuration(p.eta()); !eta.empty()) {
    absl::StrAppend(&text, ", eta ", eta);
  }
  return text;
}

std::string Metrics(const v1::JobMetrics& m) {
  // Values the server left unset were never measured: not shown as 0.
  std::vector<std::string> parts;
  if (m.has_train_loss()) {
    parts.push_back(absl::StrCat("train_loss ", FormatNumber(m.train_loss()),
                                 " at step ", m.step(), ", lr ",
                                 FormatNumber(m.learning_rate())));
  }
  if (m.has_eval_loss()) {
    std::string eval = absl::StrCat("eval_loss ", FormatNumber(m.eval_loss()),
                                    " at step ", m.eval_step());
    if (m.has_eval_task()) {
      const v1::TaskMetrics& t = m.eval_task();
      absl::StrAppend(&eval, " (exact_match ", FormatNumber(t.exact_match()));
      if (t.has_pattern_match()) {
        absl::StrAppend(&eval, ", pattern_match ",
                        FormatNumber(t.pattern_match()));
      }
      absl::StrAppend(&eval, ")");
    }
    parts.push_back(std::move(eval));
  }
  std::string text = absl::StrJoin(parts, ", ");
  if (m.has_best_eval_loss()) {
    absl::StrAppend(&text, " (best ", FormatNumber(m.best_eval_loss()),
                    " at step ", m.best_eval_step(), ")");
  }
  if (m.predicted_peak_memory_bytes() > 0 || m.tensor_peak_memory_bytes() > 0) {
    absl::StrAppend(&text, text.empty() ? "" : ", ", "peak memory predicted ",
                    contract::FormatBytes(m.predicted_peak_memory_bytes()),
                    ", measured ",
                    contract::FormatBytes(m.tensor_peak_memory_bytes()));
  }
  return text;
}

std::string ErrorText(const v1::JobError& e) {
  if (e.reason() == v1::ERROR_REASON_UNSPECIFIED && e.message().empty()) {
    return "";
  }
  return absl::StrCat(
      EnumName(v1::ErrorReason_descriptor(), e.reason(), "ERROR_REASON_"), ": ",
      e.message(), " (attempt ", e.attempt(),
      e.retryable() ? ", retryable)" : ")");
}

std::string Validation(const v1::JobSpec& spec) {
  if (spec.has_validation_file()) return spec.validation_file();
  if (spec.has_validation_split()) {
    return absl::StrCat("split ", FormatNumber(spec.validation_split()));
  }
  return "";
}

std::string Labels(const v1::JobSpec& spec) {
  std::vector<std::string> labels;
  for (const auto& [k, v] : spec.labels()) labels.push_back(k + "=" + v);
  std::sort(labels.begin(), labels.end());
  return absl::StrJoin(labels, ",");
}

// For cancel, pause and resume: "job-...: STATE".
void PrintJobState(const CommandContext& c, const v1::Job& job) {
  if (c.output.structured()) return c.output.Message(job);
  c.output.out() << job.id() << ": " << JobStateName(job.state())
                 << (job.pause_requested() ? " (pause requested)" : "") << "\n";
}

template <typename Request, typename Method>
int JobControl(const CommandContext& c, Method method) {
  Request req;
  req.set_job_id(c.arg(0));
  v1::Job job;
  auto stub = Stub(c);
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return ((*stub).*method)(ctx, req, &job);
  });
  if (rc == kExitOk) PrintJobState(c, job);
  return rc;
}

// `jobs metrics --format csv`: one row per point, every value in full
// precision, an unset loss as an empty cell.
constexpr char kMetricsCsvHeader[] =
    "attempt,step,epoch,time,train_loss,eval_loss,learning_rate,"
    "tokens_per_second,grad_norm,peak_memory_bytes,sequence,"
    "eval_exact_match,eval_normalized_match,eval_token_f1,"
    "eval_pattern_match";

std::string CsvNumber(double value) { return absl::StrFormat("%.10g", value); }

// The task metrics of an evaluation point (empty cells without them;
// eval_pattern_match empty without a pattern).
std::string MetricsCsvTaskCells(const v1::MetricPoint& p) {
  if (!p.has_eval_task()) return ",,,";
  const v1::TaskMetrics& t = p.eval_task();
  return absl::StrCat(
      CsvNumber(t.exact_match()), ",", CsvNumber(t.normalized_match()), ",",
      CsvNumber(t.token_f1()), ",",
      t.has_pattern_match() ? CsvNumber(t.pattern_match()) : "");
}

std::string MetricsCsvRow(const v1::MetricPoint& p) {
  const absl::Time time = absl::FromUnixSeconds(p.time().seconds()) +
                          absl::Nanoseconds(p.time().nanos());
  return absl::StrCat(
      p.attempt(), ",", p.step(), ",", CsvNumber(p.epoch()), ",",
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone()), ",",
      p.has_train_loss() ? CsvNumber(p.train_loss()) : "", ",",
      p.has_eval_loss() ? CsvNumber(p.eval_loss()) : "", ",",
      CsvNumber(p.learning_rate()), ",", CsvNumber(p.tokens_per_second()), ",",
      CsvNumber(p.grad_norm()), ",", p.peak_memory_bytes(), ",", p.sequence(),
      ",", MetricsCsvTaskCells(p));
}

// Prints the CSV on stdout, or writes it to -o PATH (PATH.partial, renamed
// when complete).
int WriteMetricsCsv(const CommandContext& c,
                    const v1::ListJobMetricsResponse& all) {
  std::string text = absl::StrCat(kMetricsCsvHeader, "\n");
  for (const v1::MetricPoint& p : all.metrics()) {
    absl::StrAppend(&text, MetricsCsvRow(p), "\n");
  }
  const std::string path = c.flags().Get("output-file");
  if (path.empty()) {
    c.output.out() << text;
    c.output.out().flush();
    return kExitOk;
  }
  const std::string partial = path + ".partial";
  std::ofstream file(partial, std::ios::binary | std::ios::trunc);
  file << text;
  file.close();
  std::error_code ec;
  if (!file || (std::filesystem::rename(partial, path, ec), ec)) {
    c.output.err() << "ftunectl: " << path << ": write failed"
                   << (ec ? absl::StrCat(" (", ec.message(), ")") : "") << "\n";
    std::filesystem::remove(partial, ec);
    return kExitError;
  }
  c.output.err() << all.metrics_size() << " points written to " << path << "\n";
  return kExitOk;
}

}  // namespace

std::string JobStateName(v1::JobState state) {
  return EnumName(v1::JobState_descriptor(), state, "JOB_STATE_");
}

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

void PrintJob(const CommandContext& c, const v1::Job& job) {
  if (c.output.structured()) return c.output.Message(job);
  const v1::JobSpec& spec = job.spec();
  std::string state = JobStateName(job.state());
  if (job.pause_requested()) absl::StrAppend(&state, " (pause requested)");
  std::string queue;
  if (job.state() == v1::JOB_STATE_QUEUED) {
    queue = absl::StrCat("position ", job.queue_position());
    if (!job.queue_reason().empty()) {
      absl::StrAppend(&queue, ": ", job.queue_reason());
    }
  }
  c.output.Fields({{"id", job.id()},
                   {"state", state},
                   {"attempt", absl::StrCat(job.attempt(), " (restarts ",
                                            job.restart_count(), ")")},
                   {"model", spec.model()},
                   {"method", EnumName(v1::TrainingMethod_descriptor(),
                                       spec.method(), "TRAINING_METHOD_")},
                   {"training_file", spec.training_file()},
                   {"validation", Validation(spec)},
                   {"labels", Labels(spec)},
                   {"queue", queue},
                   {"worker", job.worker_id()},
                   {"progress", Progress(job.progress())},
                   {"metrics", Metrics(job.metrics())},
                   {"error", ErrorText(job.error())},
                   {"adapter", job.adapter().name()},
                   {"adapter_path", job.adapter().path()},
                   {"fine_tuned_model", job.fine_tuned_model()},
                   {"created", FormatTime(job.create_time())},
                   {"started", FormatTime(job.start_time())},
                   {"ended", FormatTime(job.end_time())},
                   {"request_id", job.request_id()}});
}

std::string EventLine(const v1::JobEvent& e) {
  std::string line = absl::StrCat(
      FormatTime(e.time()), "  #", e.sequence(), "  ",
      EnumName(v1::JobEventType_descriptor(), e.type(), "JOB_EVENT_TYPE_"));
  if (e.type() == v1::JOB_EVENT_TYPE_STATE_CHANGED) {
    absl::StrAppend(&line, " ", JobStateName(e.from_state()), " -> ",
                    JobStateName(e.to_state()));
  }
  if (e.step() != 0) absl::StrAppend(&line, " step ", e.step());
  if (!e.worker_id().empty()) absl::StrAppend(&line, " ", e.worker_id());
  if (e.error_reason() != v1::ERROR_REASON_UNSPECIFIED) {
    absl::StrAppend(&line, " ",
                    EnumName(v1::ErrorReason_descriptor(), e.error_reason(),
                             "ERROR_REASON_"));
  }
  if (!e.message().empty()) absl::StrAppend(&line, ": ", e.message());
  return line;
}

std::string MetricLine(const v1::MetricPoint& p, int64_t total_steps) {
  std::string line = absl::StrCat(FormatTime(p.time()), "  step ", p.step());
  if (total_steps > 0) absl::StrAppend(&line, "/", total_steps);
  if (p.has_train_loss()) {
    absl::StrAppend(&line, "  loss ", absl::StrFormat("%.4f", p.train_loss()));
  }
  // Preference objectives: how often the chosen answer wins, and by how
  // much (rewards).
  if (p.has_preference()) {
    absl::StrAppend(&line, "  reward_acc ",
                    absl::StrFormat("%.2f", p.preference().reward_accuracy()),
                    "  margin ",
                    absl::StrFormat("%.4f", p.preference().reward_margin()));
  }
  if (p.has_eval_loss()) {
    absl::StrAppend(&line, "  eval_loss ",
                    absl::StrFormat("%.4f", p.eval_loss()));
  }
  if (p.has_eval_preference()) {
    absl::StrAppend(
        &line, "  eval_reward_acc ",
        absl::StrFormat("%.2f", p.eval_preference().reward_accuracy()),
        "  eval_margin ",
        absl::StrFormat("%.4f", p.eval_preference().reward_margin()));
  }
  // Task metrics: shares of the validation examples' greedy completions.
  if (p.has_eval_task()) {
    const v1::TaskMetrics& t = p.eval_task();
    absl::StrAppend(&line, "  exact ", absl::StrFormat("%.2f", t.exact_match()),
                    "  norm ", absl::StrFormat("%.2f", t.normalized_match()),
                    "  f1 ", absl::StrFormat("%.2f", t.token_f1()));
    if (t.has_pattern_match()) {
      absl::StrAppend(&line, "  pattern ",
                      absl::StrFormat("%.2f", t.pattern_match()));
    }
  }
  absl::StrAppend(&line, "  lr ", absl::StrFormat("%.3g", p.learning_rate()));
  if (p.tokens_per_second() > 0) {
    absl::StrAppend(&line, "  tok/s ",
                    absl::StrFormat("%.0f", p.tokens_per_second()));
  }
  return line;
}

int JobsCreate(const CommandContext& c) {
  absl::StatusOr<v1::CreateJobRequest> req = BuildCreateJobRequest(c.flags());
  if (!req.ok()) return UsageFailure(c, req.status().message());
  auto stub = Stub(c);
  v1::CreateJobResponse resp;
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext ctx;
    c.conn.Prepare(&ctx);
    grpc::Status status = stub->CreateJob(&ctx, *req, &resp);
    if (status.ok()) break;
    const bool retryable = ExitCodeFor(status.error_code()) == kExitUnavailable;
    if (!retryable || attempt == kCreateAttempts || req->validate_only()) {
      return ReportRpcError(status, ctx, c.output.err());
    }
    c.output.err() << "ftunectl: " << StatusCodeName(status.error_code())
                   << ": " << status.error_message() << "; retrying ("
                   << "request_id " << req->request_id() << ")\n";
    std::this_thread::sleep_for(std::chrono::milliseconds(500 * attempt));
  }
  for (const std::string& warning : resp.estimate().warnings()) {
    c.output.err() << "warning: " << warning << "\n";
  }
  if (req->validate_only()) {
    if (c.output.structured()) {
      c.output.Message(resp);
      return kExitOk;
    }
    const v1::JobEstimate& e = resp.estimate();
    c.output.out() << "valid (nothing created)\n";
    c.output.Fields(
        {{"train_examples", absl::StrCat(e.train_examples())},
         {"validation_examples", absl::StrCat(e.validation_examples())},
         {"effective_batch_size", absl::StrCat(e.effective_batch_size())},
         {"steps_per_epoch", absl::StrCat(e.steps_per_epoch())},
         {"total_steps",
          absl::StrCat(e.total_steps(),
                       e.total_steps_approximate() ? " (approximate)" : "")}});
    if (e.has_memory()) {
      // The memory planner's prediction and its terms (docs/memory.md).
      const v1::MemoryEstimate& m = e.memory();
      using contract::FormatBytes;
      c.output.Fields(
          {{"predicted_peak_memory",
            absl::StrCat(
                FormatBytes(m.peak_bytes()),
                m.device_memory_bytes() > 0
                    ? absl::StrCat(" of ", FormatBytes(m.device_memory_bytes()),
                                   " (", m.device(), ")")
                    : "")},
           {"  weights", FormatBytes(m.weights_bytes())},
           {"  trainable+gradients+adamw", FormatBytes(m.trainable_bytes())},
           {"  activations", FormatBytes(m.activations_bytes())},
           {"  attention", FormatBytes(m.attention_bytes())},
           {"  logits/loss", FormatBytes(m.logits_loss_bytes())},
           {"  workspace", FormatBytes(m.workspace_bytes())}});
    }
    return kExitOk;
  }
  if (c.output.structured()) {
    c.output.Message(resp.job());
  } else {
    c.output.out() << resp.job().id() << "\n";
  }
  return kExitOk;
}

int JobsGet(const CommandContext& c) {
  v1::GetJobRequest req;
  req.set_job_id(c.arg(0));
  v1::Job job;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->GetJob(ctx, req, &job);
  });
  if (rc == kExitOk) PrintJob(c, job);
  return rc;
}

int JobsList(const CommandContext& c) {
  v1::ListJobsRequest req;
  for (const std::string& s : c.flags().GetAll("state")) {
    int state = ParseEnum(v1::JobState_descriptor(), "JOB_STATE_", s);
    if (state < 0) {
      return UsageFailure(
          c,
          absl::StrCat("--state: unknown job state \"", s, "\"; one of ",
                       EnumChoices(v1::JobState_descriptor(), "JOB_STATE_")));
    }
    req.add_states(static_cast<v1::JobState>(state));
  }
  req.set_label_selector(c.flags().Get("label-selector"));
  auto stub = Stub(c);
  v1::ListJobsResponse all;
  int rc = ListPages(
      c, req,
      [&](grpc::ClientContext* ctx, const v1::ListJobsRequest& r,
          v1::ListJobsResponse* resp) { return stub->ListJobs(ctx, r, resp); },
      &all);
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(all);
    return kExitOk;
  }
  Table table({"ID", "STATE", "MODEL", "PROGRESS", "LOSS", "CREATED"});
  for (const v1::Job& j : all.jobs()) {
    std::string progress =
        j.progress().total_steps() > 0
            ? absl::StrCat(j.progress().step(), "/", j.progress().total_steps())
            : "-";
    std::string loss = j.metrics().has_train_loss()
                           ? absl::StrFormat("%.4f", j.metrics().train_loss())
                           : "-";
    table.Add({j.id(), JobStateName(j.state()), j.spec().model(), progress,
               loss, FormatTime(j.create_time())});
  }
  table.Print(c.output.out());
  return kExitOk;
}

int JobsCancel(const CommandContext& c) {
  return JobControl<v1::CancelJobRequest>(c, &v1::JobService::Stub::CancelJob);
}

int JobsPause(const CommandContext& c) {
  return JobControl<v1::PauseJobRequest>(c, &v1::JobService::Stub::PauseJob);
}

int JobsResume(const CommandContext& c) {
  return JobControl<v1::ResumeJobRequest>(c, &v1::JobService::Stub::ResumeJob);
}

int JobsEvents(const CommandContext& c) {
  v1::ListJobEventsRequest req;
  req.set_job_id(c.arg(0));
  if (auto after = c.flags().GetInt("after")) req.set_after_sequence(*after);
  for (const std::string& t : c.flags().GetAll("type")) {
    int type = ParseEnum(v1::JobEventType_descriptor(), "JOB_EVENT_TYPE_", t);
    if (type < 0) {
      return UsageFailure(
          c, absl::StrCat("--type: unknown event type \"", t, "\"; one of ",
                          EnumChoices(v1::JobEventType_descriptor(),
                                      "JOB_EVENT_TYPE_")));
    }
    req.add_types(static_cast<v1::JobEventType>(type));
  }
  auto stub = Stub(c);
  v1::ListJobEventsResponse all;
  int rc = ListPages(
      c, req,
      [&](grpc::ClientContext* ctx, const v1::ListJobEventsRequest& r,
          v1::ListJobEventsResponse* resp) {
        return stub->ListJobEvents(ctx, r, resp);
      },
      &all);
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(all);
    return kExitOk;
  }
  for (const v1::JobEvent& e : all.events()) {
    c.output.out() << EventLine(e) << "\n";
  }
  if (all.events().empty()) c.output.out() << "(none)\n";
  return kExitOk;
}

int JobsMetrics(const CommandContext& c) {
  const bool csv = c.flags().Has("format");
  if (csv && c.flags().Get("format") != "csv") {
    return UsageFailure(c, absl::StrCat("--format: \"", c.flags().Get("format"),
                                        "\" is not csv"));
  }
  if (!csv && c.flags().Has("output-file")) {
    return UsageFailure(c, "-o/--output-file goes with --format csv");
  }
  v1::ListJobMetricsRequest req;
  req.set_job_id(c.arg(0));
  if (auto v = c.flags().GetInt("after")) req.set_after_sequence(*v);
  if (auto v = c.flags().GetInt("attempt")) {
    req.set_attempt(static_cast<int32_t>(*v));
  }
  if (auto v = c.flags().GetInt("min-step")) req.set_min_step(*v);
  if (auto v = c.flags().GetInt("max-step")) req.set_max_step(*v);
  auto stub = Stub(c);
  v1::ListJobMetricsResponse all;
  int rc = ListPages(
      c, req,
      [&](grpc::ClientContext* ctx, const v1::ListJobMetricsRequest& r,
          v1::ListJobMetricsResponse* resp) {
        return stub->ListJobMetrics(ctx, r, resp);
      },
      &all, /*all_pages=*/csv);
  if (rc != kExitOk) return rc;
  if (csv) return WriteMetricsCsv(c, all);
  if (c.output.structured()) {
    c.output.Message(all);
    return kExitOk;
  }
  std::vector<std::string> columns = {"SEQ",   "ATTEMPT",   "STEP",
                                      "EPOCH", "LOSS",      "EVAL_LOSS",
                                      "LR",    "GRAD_NORM", "TOK/S"};
  // A job with task metrics gets their columns (shares at evaluations).
  bool task = false, pattern = false;
  for (const v1::MetricPoint& p : all.metrics()) {
    task = task || p.has_eval_task();
    pattern = pattern || p.eval_task().has_pattern_match();
  }
  if (task) columns.insert(columns.end(), {"EXACT", "NORM", "F1"});
  if (pattern) columns.push_back("PATTERN");
  Table table(columns);
  for (const v1::MetricPoint& p : all.metrics()) {
    std::vector<std::string> row = {
        absl::StrCat(p.sequence()),
        absl::StrCat(p.attempt()),
        absl::StrCat(p.step()),
        absl::StrFormat("%.3f", p.epoch()),
        p.has_train_loss() ? absl::StrFormat("%.4f", p.train_loss()) : "-",
        p.has_eval_loss() ? absl::StrFormat("%.4f", p.eval_loss()) : "-",
        absl::StrFormat("%.3g", p.learning_rate()),
        absl::StrFormat("%.3g", p.grad_norm()),
        absl::StrFormat("%.0f", p.tokens_per_second())};
    const v1::TaskMetrics& t = p.eval_task();
    auto share = [&](double v) {
      return p.has_eval_task() ? absl::StrFormat("%.2f", v) : std::string("-");
    };
    if (task) {
      row.insert(row.end(), {share(t.exact_match()),
                             share(t.normalized_match()), share(t.token_f1())});
    }
    if (pattern) {
      row.push_back(t.has_pattern_match() ? share(t.pattern_match()) : "-");
    }
    table.Add(row);
  }
  table.Print(c.output.out());
  return kExitOk;
}

int JobsCheckpoints(const CommandContext& c) {
  v1::ListCheckpointsRequest req;
  req.set_job_id(c.arg(0));
  auto stub = Stub(c);
  v1::ListCheckpointsResponse all;
  int rc = ListPages(
      c, req,
      [&](grpc::ClientContext* ctx, const v1::ListCheckpointsRequest& r,
          v1::ListCheckpointsResponse* resp) {
        return stub->ListCheckpoints(ctx, r, resp);
      },
      &all);
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(all);
    return kExitOk;
  }
  Table table(
      {"STEP", "ATTEMPT", "EPOCH", "EVAL_LOSS", "BEST", "SIZE", "PATH"});
  for (const v1::Checkpoint& k : all.checkpoints()) {
    table.Add({absl::StrCat(k.step()), absl::StrCat(k.attempt()),
               absl::StrFormat("%.3f", k.epoch()),
               k.has_eval_loss() ? absl::StrFormat("%.4f", k.eval_loss()) : "-",
               k.is_best() ? "yes" : "", FormatBytes(k.size_bytes()),
               k.path()});
  }
  table.Print(c.output.out());
  return kExitOk;
}

namespace {

// `text` under a label, each line indented, so multi-line completions stay
// readable next to each other.
void PrintBlock(std::ostream& out, absl::string_view label,
                absl::string_view text) {
  out << "  " << label << ":\n";
  if (text.empty()) {
    out << "    (empty)\n";
    return;
  }
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    out << "    " << line << "\n";
  }
}

}  // namespace

int JobsSamples(const CommandContext& c) {
  v1::ListJobSamplesRequest req;
  req.set_job_id(c.arg(0));
  if (auto v = c.flags().GetInt("step")) req.set_step(*v);
  auto stub = Stub(c);
  v1::ListJobSamplesResponse all;
  int rc = ListPages(
      c, req,
      [&](grpc::ClientContext* ctx, const v1::ListJobSamplesRequest& r,
          v1::ListJobSamplesResponse* resp) {
        return stub->ListJobSamples(ctx, r, resp);
      },
      &all, /*all_pages=*/true);
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(all);
    return kExitOk;
  }
  std::ostream& out = c.output.out();
  if (all.samples().empty()) {
    out << "(no samples" << (req.has_step() ? " at this step" : "")
        << "; a job makes them with a validation source: see "
           "--eval-samples)\n";
    return kExitOk;
  }
  // Steps in order; the first (step 0 unless it was resumed past it) and
  // the latest are shown next to each other for every prompt.
  std::map<int64_t, std::map<int32_t, const v1::JobSample*>> by_step;
  for (const v1::JobSample& s : all.samples()) {
    by_step[s.step()][s.index()] = &s;
  }
  std::vector<int64_t> shown = {by_step.begin()->first};
  if (by_step.size() > 1) shown.push_back(by_step.rbegin()->first);
  std::vector<std::string> steps;
  for (const auto& [step, unused] : by_step)
    steps.push_back(absl::StrCat(step));
  out << "samples at step" << (steps.size() == 1 ? " " : "s ")
      << absl::StrJoin(steps, ", ");
  if (shown.size() > 1) {
    out << "; showing step " << shown[0] << " next to step " << shown[1];
  }
  out << "\n";
  std::set<int32_t> indices;
  for (int64_t step : shown) {
    for (const auto& [index, unused] : by_step[step]) indices.insert(index);
  }
  for (int32_t index : indices) {
    const v1::JobSample* any = nullptr;
    for (int64_t step : shown) {
      auto it = by_step[step].find(index);
      if (it != by_step[step].end()) any = it->second;
    }
    out << "\n[" << index + 1 << "/" << indices.size() << "]\n";
    PrintBlock(out, "prompt", any->prompt());
    if (any->has_expected_completion()) {
      PrintBlock(out, "expected", any->expected_completion());
    }
    for (int64_t step : shown) {
      auto it = by_step[step].find(index);
      if (it == by_step[step].end()) continue;
      PrintBlock(
          out,
          absl::StrCat("step ", step, " (", it->second->finish_reason(), ")"),
          it->second->completion());
    }
  }
  return kExitOk;
}

}  // namespace ftune::client
