#include "worker/agent/progress.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/contract/generation.h"
#include "common/contract/limits.h"
#include "common/contract/progress.h"
#include "proto/convert/progress.h"

namespace ftune::agent {
namespace {

constexpr size_t kMaxQuotedLine = 300;

std::string Quote(absl::string_view line) {
  if (line.size() <= kMaxQuotedLine) return std::string(line);
  return absl::StrCat(line.substr(0, kMaxQuotedLine), "...(",
                      line.size() - kMaxQuotedLine, " more bytes)");
}

}  // namespace

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t nanos = absl::ToUnixNanos(t);
  int64_t secs = nanos / 1'000'000'000;
  int64_t rem = nanos % 1'000'000'000;
  if (rem < 0) {
    rem += 1'000'000'000;
    --secs;
  }
  out->set_seconds(secs);
  out->set_nanos(static_cast<int32_t>(rem));
}

int64_t DirectorySize(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  int64_t total = 0;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    std::error_code fec;
    if (it->is_regular_file(fec)) {
      const auto size = it->file_size(fec);
      if (!fec) total += static_cast<int64_t>(size);
    }
  }
  return total;
}

ProgressTracker::ProgressTracker(ProgressOptions options)
    : options_(std::move(options)) {
  if (options_.log_every_steps < 1) options_.log_every_steps = 1;
  if (!options_.dir_size) options_.dir_size = DirectorySize;
}

void ProgressTracker::AddEvent(v1::JobEventType type, std::string message,
                               int64_t step, absl::Time now) {
  v1::JobEvent e;
  SetTime(now, e.mutable_time());
  e.set_attempt(options_.attempt);
  e.set_type(type);
  e.set_message(std::move(message));
  e.set_step(step);
  events_.push_back(std::move(e));
  urgent_ = true;
}

void ProgressTracker::AddDeletedCheckpoint(std::string relative_path) {
  deleted_.push_back(std::move(relative_path));
  urgent_ = true;
}

void ProgressTracker::SetPeakMemory(int64_t bytes) {
  if (bytes > peak_memory_) peak_memory_ = bytes;
}

void ProgressTracker::Warn(absl::string_view line, absl::string_view why,
                           absl::Time now) {
  ++unparsed_;
  if (unparsed_ <= options_.max_unparsed_warnings) {
    AddEvent(v1::JOB_EVENT_TYPE_WARNING,
             absl::StrCat("trainer printed ", why, ": ", Quote(line),
                          unparsed_ == options_.max_unparsed_warnings
                              ? " (further such lines are not reported)"
                              : ""),
             0, now);
  }
}

void ProgressTracker::AddPoint(v1::MetricPoint point) {
  metrics_.push_back(std::move(point));
}

void ProgressTracker::FlushInterval(absl::Time now) {
  if (interval_steps_ == 0) return;
  v1::MetricPoint p;
  SetTime(now, p.mutable_time());
  p.set_attempt(options_.attempt);
  p.set_step(last_step_);
  p.set_epoch(last_epoch_);
  p.set_train_loss(interval_loss_ / interval_steps_);
  p.set_learning_rate(last_lr_);
  p.set_grad_norm(last_grad_norm_);
  p.set_tokens_per_second(interval_rate_ / interval_steps_);
  p.set_peak_memory_bytes(peak_memory_);
  p.set_predicted_peak_memory_bytes(predicted_peak_memory_);
  p.set_tensor_peak_memory_bytes(tensor_peak_memory_);
  if (interval_preference_steps_ > 0) {
    const double n = static_cast<double>(interval_preference_steps_);
    contract::PreferenceMetrics& m = interval_preference_;
    *p.mutable_preference() = PreferenceMetricsToProto(
        {m.rewards_chosen / n, m.rewards_rejected / n, m.reward_accuracy / n,
         m.reward_margin / n, m.logps_chosen / n, m.logps_rejected / n});
  }
  metrics_state_.set_step(last_step_);
  metrics_state_.set_train_loss(p.train_loss());
  metrics_state_.set_learning_rate(last_lr_);
  metrics_state_.set_grad_norm(last_grad_norm_);
  metrics_state_.set_tokens_per_second(p.tokens_per_second());
  AddPoint(std::move(p));
  interval_steps_ = 0;
  interval_loss_ = 0;
  interval_rate_ = 0;
  interval_preference_ = {};
  interval_preference_steps_ = 0;
}

std::optional<std::string> ProgressTracker::UnderStorageRoot(
    const std::string& path) const {
  std::string root = options_.storage_root;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (!absl::StartsWith(path, root + "/")) return std::nullopt;
  return path.substr(root.size() + 1);
}

void ProgressTracker::OnLine(absl::string_view line, absl::Time now) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) {
    line.remove_suffix(1);
  }
  if (line.empty()) return;
  absl::StatusOr<contract::ProgressEvent> event =
      contract::ParseProgressLine(line);
  if (!event.ok()) {
    Warn(line, event.status().message(), now);
    return;
  }
  std::visit([&](const auto& e) { On(e, line, now); }, *event);
}

void ProgressTracker::On(const contract::MetricsEvent& e,
                         absl::string_view line, absl::Time now) {
  if (e.step < 1 || !std::isfinite(e.loss)) {
    Warn(line, "a metrics line without step/loss", now);
    return;
  }
  last_step_ = e.step;
  last_epoch_ = e.epoch;
  last_lr_ = e.lr;
  last_grad_norm_ = e.grad_norm;
  // The trainer's own figure (the CUDA allocator's peak on a GPU).
  SetPeakMemory(e.peak_memory_bytes);
  if (e.predicted_peak_memory_bytes > 0)
    predicted_peak_memory_ = e.predicted_peak_memory_bytes;
  tensor_peak_memory_ =
      std::max(tensor_peak_memory_, e.tensor_peak_memory_bytes);
  last_time_ = now;
  ++interval_steps_;
  interval_loss_ += e.loss;
  interval_rate_ += e.tokens_per_s;
  if (e.preference) {
    contract::PreferenceMetrics& m = interval_preference_;
    m.rewards_chosen += e.preference->rewards_chosen;
    m.rewards_rejected += e.preference->rewards_rejected;
    m.reward_accuracy += e.preference->reward_accuracy;
    m.reward_margin += e.preference->reward_margin;
    m.logps_chosen += e.preference->logps_chosen;
    m.logps_rejected += e.preference->logps_rejected;
    ++interval_preference_steps_;
  }
  const int64_t total =
      e.total_steps > 0 ? e.total_steps : progress_.total_steps();
  progress_.set_step(e.step);
  progress_.set_total_steps(total);
  progress_.set_epoch(last_epoch_);
  progress_.set_percent(
      total > 0 ? std::min(100.0, 100.0 * static_cast<double>(e.step) / total)
                : 0.0);
  progress_changed_ = true;
  if (e.step % options_.log_every_steps == 0 ||
      (total > 0 && e.step >= total)) {
    FlushInterval(now);
  }
}

void ProgressTracker::On(const contract::EvalEvent& e, absl::string_view,
                         absl::Time now) {
  last_eval_step_ = e.step;
  last_eval_loss_ = e.eval_loss;
  if (e.best_step > 0) best_step_ = e.best_step;
  // The eval belongs on the step's training point when that is still
  // pending; otherwise it gets a point of its own.
  if (!metrics_.empty() && metrics_.back().step() == e.step) {
    metrics_.back().set_eval_loss(e.eval_loss);
    if (e.preference) {
      *metrics_.back().mutable_eval_preference() =
          PreferenceMetricsToProto(*e.preference);
    }
    if (e.task) {
      *metrics_.back().mutable_eval_task() = TaskMetricsToProto(*e.task);
    }
  } else {
    v1::MetricPoint p;
    SetTime(now, p.mutable_time());
    p.set_attempt(options_.attempt);
    p.set_step(e.step);
    p.set_epoch(last_epoch_);
    p.set_eval_loss(e.eval_loss);
    p.set_learning_rate(last_lr_);
    p.set_peak_memory_bytes(peak_memory_);
    if (e.preference) {
      *p.mutable_eval_preference() = PreferenceMetricsToProto(*e.preference);
    }
    if (e.task) *p.mutable_eval_task() = TaskMetricsToProto(*e.task);
    AddPoint(std::move(p));
  }
  metrics_state_.set_eval_loss(e.eval_loss);
  metrics_state_.set_eval_step(e.step);
  if (e.task) {
    *metrics_state_.mutable_eval_task() = TaskMetricsToProto(*e.task);
  } else {
    metrics_state_.clear_eval_task();
  }
  if (e.step == 0) {
    // The baseline before training (eval_on_start): never the best.
    AddEvent(
        v1::JOB_EVENT_TYPE_EVAL,
        absl::StrCat("eval_loss ", e.eval_loss, " at step 0 (before training)"),
        e.step, now);
    return;
  }
  metrics_state_.set_best_eval_loss(e.best_step > 0 ? e.best_eval_loss
                                                    : e.eval_loss);
  metrics_state_.set_best_eval_step(best_step_);
  AddEvent(v1::JOB_EVENT_TYPE_EVAL,
           absl::StrCat("eval_loss ", e.eval_loss, " at step ", e.step,
                        " (best ", metrics_state_.best_eval_loss(), " at step ",
                        best_step_, ")"),
           e.step, now);
  // The trainer's best_step follows select_best_by: this evaluation's
  // adapter is now the one the job publishes.
  if (e.best_step == e.step) {
    std::string what = absl::StrCat("eval_loss ", e.eval_loss);
    if (e.task) {
      absl::StrAppend(&what, ", exact_match ", e.task->exact_match);
      if (e.task->pattern_match) {
        absl::StrAppend(&what, ", pattern_match ", *e.task->pattern_match);
      }
    }
    AddEvent(v1::JOB_EVENT_TYPE_EVAL_IMPROVED,
             absl::StrCat("new best evaluation at step ", e.step, ": ", what),
             e.step, now);
  }
}

void ProgressTracker::On(const contract::CheckpointEvent& e,
                         absl::string_view line, absl::Time now) {
  std::optional<std::string> relative = UnderStorageRoot(e.path);
  if (!relative) {
    Warn(line, "a checkpoint outside the storage root", now);
    return;
  }
  v1::Checkpoint c;
  c.set_step(e.step);
  c.set_epoch(e.step == last_step_ ? last_epoch_ : 0);
  c.set_attempt(options_.attempt);
  SetTime(now, c.mutable_create_time());
  c.set_path(*relative);
  c.set_size_bytes(options_.dir_size(e.path));
  if (e.step == last_eval_step_) {
    c.set_eval_loss(last_eval_loss_);
    c.set_is_best(e.step == best_step_);
  }
  checkpoints_.push_back(c);
  new_checkpoints_.push_back(std::move(c));
  urgent_ = true;
}

void ProgressTracker::On(const contract::InterruptedEvent& e, absl::string_view,
                         absl::Time now) {
  FlushInterval(now);
  outcome_.interrupted = true;
  outcome_.interrupted_step = e.step;
  outcome_.interrupted_path = e.path;
  urgent_ = true;
}

void ProgressTracker::On(const contract::DoneEvent& e, absl::string_view,
                         absl::Time now) {
  FlushInterval(now);
  outcome_.done = true;
  outcome_.done_step = e.step;
  outcome_.output_dir = e.output_dir;
  urgent_ = true;
}

void ProgressTracker::On(const contract::ErrorEvent& e, absl::string_view,
                         absl::Time now) {
  FlushInterval(now);
  outcome_.has_error = true;
  outcome_.error_reason = e.reason;
  outcome_.error_message = e.message;
  urgent_ = true;
}

void ProgressTracker::On(const contract::EarlyStopEvent& e, absl::string_view,
                         absl::Time now) {
  FlushInterval(now);
  outcome_.early_stopped = true;
  AddEvent(
      v1::JOB_EVENT_TYPE_EARLY_STOPPED,
      absl::StrCat("stopped early at step ", e.step,
                   ": no improvement of eval_loss since step ", e.best_step),
      e.step, now);
}

void ProgressTracker::On(const contract::OomRetryEvent& e, absl::string_view,
                         absl::Time now) {
  AddEvent(v1::JOB_EVENT_TYPE_BATCH_SIZE_REDUCED,
           absl::StrCat("out of memory at step ", e.step,
                        "; the trainer runs it again with micro-batches of ",
                        e.micro_batch_size, " rows and ",
                        e.gradient_accumulation_steps,
                        " accumulation steps (same effective batch)"),
           e.step, now);
}

void ProgressTracker::On(const contract::StartEvent& e, absl::string_view,
                         absl::Time now) {
  progress_.set_total_steps(e.total_steps);
  progress_changed_ = true;
  AddEvent(v1::JOB_EVENT_TYPE_LOG,
           absl::StrCat("training started: ", e.total_steps, " steps, ",
                        e.train_rows, " training rows (", e.train_examples,
                        " examples), ", e.validation_rows, " validation rows, ",
                        e.trainable_parameters, " trainable parameters, ",
                        e.threads, " threads"),
           0, now);
}

void ProgressTracker::On(const contract::ResumedEvent& e, absl::string_view,
                         absl::Time now) {
  progress_.set_step(e.step);
  progress_changed_ = true;
  const std::string path = UnderStorageRoot(e.path).value_or(e.path);
  AddEvent(v1::JOB_EVENT_TYPE_LOG,
           absl::StrCat("resumed from checkpoint ", path, " at step ", e.step),
           e.step, now);
}

void ProgressTracker::On(const contract::DataEvent& e, absl::string_view,
                         absl::Time now) {
  AddEvent(v1::JOB_EVENT_TYPE_LOG,
           absl::StrCat(e.split, " data: ", e.examples, " examples in ", e.rows,
                        " rows, ", e.tokens, " tokens (", e.trained_tokens,
                        " trained)"),
           0, now);
  if (e.truncated + e.dropped_overlength + e.dropped_no_target > 0) {
    AddEvent(
        v1::JOB_EVENT_TYPE_WARNING,
        absl::StrCat(e.split, " data: ", e.truncated,
                     " examples truncated to max_seq_length, ",
                     e.dropped_overlength,
                     " dropped as longer than max_seq_length, ",
                     e.dropped_no_target, " dropped without a trained token"),
        0, now);
  }
}

void ProgressTracker::On(const contract::SamplesEvent& e, absl::string_view,
                         absl::Time) {
  // The trainer cuts its texts; a line from another trainer is cut here,
  // so a batch stays bounded whatever printed it.
  const size_t cap = contract::defaults::kSampleTextBytes;
  for (size_t i = 0; i < e.samples.size() &&
                     i < static_cast<size_t>(contract::range::kEvalSamples.hi);
       ++i) {
    const contract::SampleText& t = e.samples[i];
    v1::JobSample s;
    s.set_step(e.step);
    s.set_index(static_cast<int32_t>(i));
    s.set_attempt(options_.attempt);
    s.set_prompt(contract::TruncateText(t.prompt, cap));
    if (t.expected) {
      s.set_expected_completion(contract::TruncateText(*t.expected, cap));
    }
    s.set_completion(contract::TruncateText(t.completion, cap));
    s.set_finish_reason(t.finish_reason);
    samples_.push_back(std::move(s));
  }
  urgent_ = true;
}

void ProgressTracker::On(const contract::UnknownEvent&, absl::string_view line,
                         absl::Time now) {
  // A newer trainer's line: pass it on rather than lose it.
  AddEvent(v1::JOB_EVENT_TYPE_LOG, absl::StrCat("trainer: ", Quote(line)), 0,
           now);
}

bool ProgressTracker::HasPending() const {
  return !metrics_.empty() || !events_.empty() || !new_checkpoints_.empty() ||
         !deleted_.empty() || !samples_.empty() || progress_changed_;
}

bool ProgressTracker::FlushDue(absl::Time now) const {
  if (!HasPending()) return false;
  return urgent_ ||
         static_cast<int>(metrics_.size()) >= options_.max_batch_points ||
         now - last_flush_ >= options_.flush_interval;
}

v1::ReportProgressRequest ProgressTracker::TakeBatch(absl::Time now) {
  v1::ReportProgressRequest r;
  r.set_job_id(options_.job_id);
  r.set_attempt(options_.attempt);
  r.set_batch_number(next_batch_++);
  for (auto& m : metrics_) *r.add_metrics() = std::move(m);
  for (auto& e : events_) *r.add_events() = std::move(e);
  for (auto& c : new_checkpoints_) *r.add_checkpoints() = std::move(c);
  for (auto& d : deleted_) r.add_deleted_checkpoint_paths(std::move(d));
  for (auto& s : samples_) *r.add_samples() = std::move(s);
  r.set_log_size_bytes(log_size_bytes_);
  *r.mutable_progress() = progress_;
  metrics_.clear();
  events_.clear();
  new_checkpoints_.clear();
  deleted_.clear();
  samples_.clear();
  progress_changed_ = false;
  urgent_ = false;
  last_flush_ = now;
  return r;
}

v1::JobMetrics ProgressTracker::FinalMetrics() const {
  v1::JobMetrics m = metrics_state_;
  m.set_peak_memory_bytes(peak_memory_);
  m.set_predicted_peak_memory_bytes(predicted_peak_memory_);
  m.set_tensor_peak_memory_bytes(tensor_peak_memory_);
  return m;
}

}  // namespace ftune::agent
