#include "server/core/types.h"

#include "absl/strings/str_cat.h"

namespace ftune::core {

void JobMetricsSummary::Add(const MetricPoint& point) {
  if (point.train_loss.has_value()) {
    train = point;
    train->eval_loss.reset();
  }
  if (point.eval_loss.has_value()) {
    eval_loss = point.eval_loss;
    eval_step = point.step;
    eval_task = point.eval_task;
    // Step 0 is the baseline before training (eval_on_start), never the
    // best: no adapter comes from it.
    if (point.step > 0 &&
        (!best_eval_loss.has_value() || *point.eval_loss < *best_eval_loss)) {
      best_eval_loss = point.eval_loss;
      best_eval_step = point.step;
    }
  }
  peak_memory_bytes = point.peak_memory_bytes;
  if (point.predicted_peak_memory_bytes > 0)
    predicted_peak_memory_bytes = point.predicted_peak_memory_bytes;
  if (point.tensor_peak_memory_bytes > 0)
    tensor_peak_memory_bytes = point.tensor_peak_memory_bytes;
}

std::string JobErrorReasonName(JobErrorReason reason) {
  switch (reason) {
    case JobErrorReason::kNone:
      return "NONE";
    case JobErrorReason::kInvalidInput:
      return "INVALID_INPUT";
    case JobErrorReason::kOutOfMemory:
      return "OUT_OF_MEMORY";
    case JobErrorReason::kTrainerError:
      return "TRAINER_ERROR";
    case JobErrorReason::kWorkerLost:
      return "WORKER_LOST";
    case JobErrorReason::kInfeasible:
      return "INFEASIBLE";
    case JobErrorReason::kInternal:
      return "INTERNAL";
  }
  return absl::StrCat("UNKNOWN(", static_cast<int>(reason), ")");
}

std::string JobEventTypeName(JobEventType type) {
  switch (type) {
    case JobEventType::kCreated:
      return "CREATED";
    case JobEventType::kStateChanged:
      return "STATE_CHANGED";
    case JobEventType::kCheckpoint:
      return "CHECKPOINT";
    case JobEventType::kMessage:
      return "MESSAGE";
    case JobEventType::kWarning:
      return "WARNING";
    case JobEventType::kEval:
      return "EVAL";
    case JobEventType::kBatchSizeReduced:
      return "BATCH_SIZE_REDUCED";
    case JobEventType::kEarlyStopped:
      return "EARLY_STOPPED";
    case JobEventType::kSamples:
      return "SAMPLES";
    case JobEventType::kEvalImproved:
      return "EVAL_IMPROVED";
  }
  return absl::StrCat("UNKNOWN(", static_cast<int>(type), ")");
}

std::string ApiKeyRoleName(ApiKeyRole role) {
  switch (role) {
    case ApiKeyRole::kTenant:
      return "TENANT";
    case ApiKeyRole::kAdmin:
      return "ADMIN";
    case ApiKeyRole::kWorker:
      return "WORKER";
  }
  return absl::StrCat("UNKNOWN(", static_cast<int>(role), ")");
}

std::string FileStatusName(FileStatus status) {
  switch (status) {
    case FileStatus::kProcessing:
      return "PROCESSING";
    case FileStatus::kReady:
      return "READY";
    case FileStatus::kInvalid:
      return "INVALID";
    case FileStatus::kDeleted:
      return "DELETED";
  }
  return absl::StrCat("UNKNOWN(", static_cast<int>(status), ")");
}

std::string FineTunedModelName(absl::string_view job_id) {
  return absl::StrCat("ft:", job_id);
}

std::string WorkerStateName(WorkerState state) {
  switch (state) {
    case WorkerState::kActive:
      return "ACTIVE";
    case WorkerState::kDraining:
      return "DRAINING";
    case WorkerState::kLost:
      return "LOST";
  }
  return absl::StrCat("UNKNOWN(", static_cast<int>(state), ")");
}

}  // namespace ftune::core
