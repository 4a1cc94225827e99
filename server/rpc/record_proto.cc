#include "server/rpc/record_proto.h"

#include <cstdint>

#include "google/protobuf/timestamp.pb.h"

namespace ftune::server::rpc {

std::string FilePurposeToRecord(v1::FilePurpose purpose) {
  switch (purpose) {
    case v1::FILE_PURPOSE_FINE_TUNE_TRAIN:
      return std::string(kFilePurposeTrain);
    case v1::FILE_PURPOSE_FINE_TUNE_VALIDATION:
      return std::string(kFilePurposeValidation);
    default:
      return "";
  }
}

v1::FilePurpose FilePurposeFromRecord(absl::string_view purpose) {
  if (purpose == kFilePurposeTrain) return v1::FILE_PURPOSE_FINE_TUNE_TRAIN;
  if (purpose == kFilePurposeValidation) {
    return v1::FILE_PURPOSE_FINE_TUNE_VALIDATION;
  }
  return v1::FILE_PURPOSE_UNSPECIFIED;
}

void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast()) {
    out->Clear();
    return;
  }
  const int64_t nanos = absl::ToUnixNanos(t);
  int64_t seconds = nanos / 1'000'000'000;
  int64_t rem = nanos % 1'000'000'000;
  if (rem < 0) {  // Timestamp.nanos must be in [0, 1e9).
    rem += 1'000'000'000;
    --seconds;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(rem));
}

v1::File FileToProto(const core::FileRecord& file) {
  v1::File out;
  out.set_id(file.id);
  out.set_tenant_id(file.tenant_id);
  out.set_filename(file.filename);
  out.set_purpose(FilePurposeFromRecord(file.purpose));
  out.set_size_bytes(file.size_bytes);
  out.set_sha256(file.sha256);
  SetTimestamp(file.create_time, out.mutable_create_time());
  // Only READY files are visible through the API (uploads are validated
  // before they are recorded), and READY is what the proto calls VALIDATED.
  out.set_status(file.status == core::FileStatus::kReady
                     ? v1::FILE_STATUS_VALIDATED
                     : v1::FILE_STATUS_UNSPECIFIED);
  if (file.format == "chat") {
    out.set_format(v1::FILE_FORMAT_CHAT);
  } else if (file.format == "prompt_completion") {
    out.set_format(v1::FILE_FORMAT_PROMPT_COMPLETION);
  } else if (file.format == "text") {
    out.set_format(v1::FILE_FORMAT_TEXT);
  }
  out.set_example_count(file.example_count);
  return out;
}

v1::JobState JobStateToProto(core::JobState state) {
  // core's stored values were chosen equal to the proto's.
  const int v = static_cast<int>(state);
  return v1::JobState_IsValid(v) ? static_cast<v1::JobState>(v)
                                 : v1::JOB_STATE_UNSPECIFIED;
}

namespace {

v1::ErrorReason ErrorReasonToProto(core::JobErrorReason reason) {
  switch (reason) {
    case core::JobErrorReason::kNone:
      return v1::ERROR_REASON_UNSPECIFIED;
    case core::JobErrorReason::kInvalidInput:
    case core::JobErrorReason::kInfeasible:
      return v1::ERROR_REASON_INVALID_INPUT;
    case core::JobErrorReason::kOutOfMemory:
      return v1::ERROR_REASON_OUT_OF_MEMORY;
    case core::JobErrorReason::kTrainerError:
      return v1::ERROR_REASON_TRAINER_CRASHED;
    case core::JobErrorReason::kWorkerLost:
      return v1::ERROR_REASON_WORKER_LOST;
    case core::JobErrorReason::kInternal:
      return v1::ERROR_REASON_INTERNAL;
  }
  return v1::ERROR_REASON_UNSPECIFIED;
}

v1::JobEventType EventTypeToProto(core::JobEventType type) {
  switch (type) {
    case core::JobEventType::kCreated:
      return v1::JOB_EVENT_TYPE_CREATED;
    case core::JobEventType::kStateChanged:
      return v1::JOB_EVENT_TYPE_STATE_CHANGED;
    case core::JobEventType::kCheckpoint:
      return v1::JOB_EVENT_TYPE_CHECKPOINT_SAVED;
    case core::JobEventType::kMessage:
      return v1::JOB_EVENT_TYPE_LOG;
  }
  return v1::JOB_EVENT_TYPE_UNSPECIFIED;
}

}  // namespace

v1::Job JobToProto(const core::Job& job) {
  v1::Job out;
  out.set_id(job.id);
  out.set_tenant_id(job.tenant_id);
  if (!job.spec.empty()) out.mutable_spec()->ParseFromString(job.spec);
  out.set_state(JobStateToProto(job.state));
  out.set_attempt(static_cast<int32_t>(job.attempt));
  out.set_restart_count(static_cast<int32_t>(job.restart_count));
  v1::JobProgress* progress = out.mutable_progress();
  progress->set_step(job.progress.step);
  progress->set_total_steps(job.progress.total_steps);
  progress->set_epoch(job.progress.epoch);
  if (job.progress.total_steps > 0) {
    progress->set_percent(100.0 * static_cast<double>(job.progress.step) /
                          static_cast<double>(job.progress.total_steps));
  }
  progress->set_tokens_processed(job.progress.tokens);
  if (job.latest_metrics.has_value()) {
    const core::MetricPoint& m = *job.latest_metrics;
    v1::JobMetrics* metrics = out.mutable_metrics();
    metrics->set_step(m.step);
    metrics->set_train_loss(m.train_loss);
    if (m.eval_loss.has_value()) metrics->set_eval_loss(*m.eval_loss);
    metrics->set_learning_rate(m.lr);
    metrics->set_grad_norm(m.grad_norm);
    metrics->set_tokens_per_second(m.tokens_per_s);
    metrics->set_peak_memory_bytes(m.peak_memory_bytes);
  }
  if (job.error.reason != core::JobErrorReason::kNone) {
    v1::JobError* error = out.mutable_error();
    error->set_reason(ErrorReasonToProto(job.error.reason));
    error->set_message(job.error.message);
    error->set_retryable(job.error.retryable);
  }
  SetTimestamp(job.create_time, out.mutable_create_time());
  SetTimestamp(job.start_time, out.mutable_start_time());
  SetTimestamp(job.end_time, out.mutable_end_time());
  SetTimestamp(job.update_time, out.mutable_update_time());
  if (!job.adapter.path.empty()) {
    out.mutable_adapter()->set_path(job.adapter.path);
    out.mutable_adapter()->set_manifest_sha256(job.adapter.manifest_sha256);
  }
  out.set_worker_id(job.worker_id);
  out.set_request_id(job.request_id);
  out.set_last_sequence(job.last_sequence);
  return out;
}

v1::JobEvent JobEventToProto(const core::JobEvent& event) {
  v1::JobEvent out;
  out.set_sequence(event.sequence);
  SetTimestamp(event.time, out.mutable_time());
  out.set_attempt(static_cast<int32_t>(event.attempt));
  out.set_type(EventTypeToProto(event.type));
  if (event.from_state.has_value()) {
    out.set_from_state(JobStateToProto(*event.from_state));
  }
  if (event.to_state.has_value()) {
    out.set_to_state(JobStateToProto(*event.to_state));
  }
  out.set_message(event.message);
  return out;
}

v1::MetricPoint MetricPointToProto(const core::MetricPoint& point) {
  v1::MetricPoint out;
  out.set_sequence(point.sequence);
  SetTimestamp(point.time, out.mutable_time());
  out.set_attempt(static_cast<int32_t>(point.attempt));
  out.set_step(point.step);
  out.set_epoch(point.epoch);
  out.set_train_loss(point.train_loss);
  if (point.eval_loss.has_value()) out.set_eval_loss(*point.eval_loss);
  out.set_learning_rate(point.lr);
  out.set_grad_norm(point.grad_norm);
  out.set_tokens_per_second(point.tokens_per_s);
  out.set_peak_memory_bytes(point.peak_memory_bytes);
  return out;
}

}  // namespace ftune::server::rpc
