// Plain domain records of the scheduler: jobs, their events and metric
// points, checkpoints, tenants, API keys, files, models and workers. No
// transport or storage types: the store maps these to rows, the RPC layer to
// protos. Times are absl::Time (absl::InfinitePast() = "not set").
//
// Thread-safety: plain values; copy freely, synchronize sharing yourself.
#ifndef FTUNE_SERVER_CORE_TYPES_H_
#define FTUNE_SERVER_CORE_TYPES_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/contract/capabilities.h"
#include "common/contract/progress.h"
#include "server/core/job_state.h"

namespace ftune::core {

// ---------------------------------------------------------------- jobs ----

// Resources a job needs from one worker. 0 / "" = none / any.
struct JobResources {
  int32_t gpus = 0;
  int64_t memory_bytes = 0;  // Per-GPU memory needed (GPU jobs) or RAM (CPU).
  std::string gpu_type;      // e.g. "H100"; empty = any.
  int32_t cpu_threads = 0;
  // What the job asks of the worker's trainer (method, architecture,
  // dtype); nullopt for jobs created before it was recorded (any trainer).
  std::optional<contract::TrainerRequirement> trainer;
};

// Numeric values are stored in the database: never renumber.
enum class JobErrorReason : int {
  kNone = 0,
  kInvalidInput = 1,  // Bad spec/data found at run time; not retried.
  kOutOfMemory = 2,   // The trainer ran out of (GPU) memory.
  kTrainerError = 3,  // The trainer failed (retryable exit code).
  kWorkerLost = 4,    // Lease expired: worker dead, partitioned, stopped.
  kInfeasible = 5,    // No worker can ever run it.
  kInternal = 6,
};
std::string JobErrorReasonName(JobErrorReason reason);  // "OUT_OF_MEMORY"...

struct JobError {
  JobErrorReason reason = JobErrorReason::kNone;
  std::string message;
  bool retryable = false;
};

struct JobProgress {
  int64_t step = 0;
  int64_t total_steps = 0;
  double epoch = 0;
  int64_t tokens = 0;  // Training tokens processed so far.
};

// One point of the training curve, as reported by the attempt's worker.
// `sequence` is the job's shared event/metric cursor (assigned by the store).
struct MetricPoint {
  std::string job_id;
  int64_t sequence = 0;
  absl::Time time = absl::InfinitePast();
  int64_t attempt = 0;
  int64_t step = 0;
  double epoch = 0;
  // Unset on a point that only reports an evaluation.
  std::optional<double> train_loss;
  std::optional<double> eval_loss;
  double lr = 0;
  double grad_norm = 0;
  double tokens_per_s = 0;
  int64_t peak_memory_bytes = 0;
  // The trainer's memory plan and measured tensor peak (0: not reported);
  // kept in the summary only, not in the job_metrics rows.
  int64_t predicted_peak_memory_bytes = 0;
  int64_t tensor_peak_memory_bytes = 0;
  // Preference objectives only: over the training pairs (with train_loss)
  // and over the validation pairs (with eval_loss).
  std::optional<contract::PreferenceMetrics> preference, eval_preference;
  // With eval_loss, when the job has task metrics (JobSpec.task_metrics).
  std::optional<contract::TaskMetrics> eval_task;
};

// A job's metrics summary (the API's Job.metrics), folded from its points
// as they are stored: a value nothing reported stays unset.
struct JobMetricsSummary {
  // The latest point with a training loss (its step, loss, learning rate,
  // gradient norm, throughput); unset before the first.
  std::optional<MetricPoint> train;
  // The latest evaluation and the best one (lowest eval_loss; on a tie the
  // earlier, as the trainer keeps the first best adapter).
  std::optional<double> eval_loss;
  int64_t eval_step = 0;
  // The latest evaluation's task metrics (unset without them).
  std::optional<contract::TaskMetrics> eval_task;
  std::optional<double> best_eval_loss;
  int64_t best_eval_step = 0;
  // Of the latest point (the worker reports its attempt's running peak).
  // The latest reported planner prediction and measured tensor peak.
  int64_t predicted_peak_memory_bytes = 0;
  int64_t tensor_peak_memory_bytes = 0;
  int64_t peak_memory_bytes = 0;

  bool empty() const { return !train && !eval_loss; }
  // Folds in `point`, reported after every point already folded in.
  void Add(const MetricPoint& point);
};

struct Checkpoint {
  std::string job_id;
  int64_t step = 0;
  int64_t attempt = 0;
  std::string path;  // Relative to the storage root.
  absl::Time create_time = absl::InfinitePast();
};

// A sample completion of a validation prompt at `step` (JobSpec.samples).
struct JobSample {
  std::string job_id;
  int64_t step = 0;
  int64_t index = 0;  // The prompt's position among the job's samples.
  int64_t attempt = 0;
  std::string prompt;
  std::optional<std::string> expected;  // The reference; nullopt: none.
  std::string completion;
  std::string finish_reason;  // "end", "stop", "length"
  absl::Time create_time = absl::InfinitePast();
};

struct AdapterFile {
  std::string path;  // Relative to the adapter directory.
  int64_t size_bytes = 0;
  std::string sha256;
};

struct Adapter {
  std::string path;             // Relative to the storage root; "" = none yet.
  std::string manifest_sha256;  // sha256 of ftune_manifest.json.
  std::vector<AdapterFile> files;
  int64_t step = 0;  // The optimizer step it was exported at.
  absl::Time publish_time = absl::InfinitePast();
};

// A training job, or a try job (JobService.TryModel): generation with
// another job's model, which publishes no adapter. Stored as 'train' /
// 'try' (jobs.kind).
enum class JobKind { kTrain, kTry };

struct Job {
  std::string id;  // "job-..."
  std::string tenant_id;
  JobState state = JobState::kQueued;
  // The current attempt (fencing token), 1 for the first run. It grows when
  // the job is re-queued (lost lease, retryable failure) or resumed.
  int64_t attempt = 1;
  // Re-queues caused by failures; the job FAILS once this would exceed
  // max_restarts. Pause/resume does not count.
  int64_t restart_count = 0;
  std::string request_id;  // Idempotency key given by the client ("" = none).

  // The full spec, opaque here (a serialized ftune.v1.JobSpec), and the
  // scheduling-relevant fields extracted from it by the service layer.
  std::string spec;
  int32_t priority = 0;  // Higher runs first.
  JobResources resources;
  int32_t max_restarts = 0;
  std::map<std::string, std::string> labels;
  std::string model;  // Registered model name.
  std::string training_file_id;
  std::string validation_file_id;  // "" = none.
  JobKind kind = JobKind::kTrain;

  absl::Time create_time = absl::InfinitePast();
  absl::Time update_time = absl::InfinitePast();
  absl::Time start_time = absl::InfinitePast();  // First RUNNING.
  absl::Time end_time = absl::InfinitePast();    // Reached a terminal state.

  JobError error;  // reason kNone unless FAILED (or a retried failure).
  JobProgress progress;
  JobMetricsSummary metrics;

  std::string worker_id;  // Holder of the current attempt's lease, or "".
  absl::Time lease_expiry = absl::InfinitePast();
  std::optional<Checkpoint> last_checkpoint;
  Adapter adapter;

  // The last sequence assigned to an event or metric point of this job.
  int64_t last_sequence = 0;
};

// Numeric values are stored in the database: never renumber.
enum class JobEventType : int {
  kCreated = 1,
  kStateChanged = 2,
  kCheckpoint = 3,
  kMessage = 4,  // Informational (e.g. lease renewed by a new worker).
  // Reported by the attempt's worker (WorkerService.ReportProgress).
  kWarning = 5,           // Did not stop the job (e.g. examples truncated).
  kEval = 6,              // An evaluation result.
  kBatchSizeReduced = 7,  // Out of memory: retried with a smaller batch.
  kEarlyStopped = 8,      // Stopped early (validation loss stopped falling).
  kSamples = 9,  // Sample completions were stored for `step` (by the store).
  kEvalImproved = 10,  // The evaluation at `step` is the best so far.
};
std::string JobEventTypeName(JobEventType type);

struct JobEvent {
  std::string job_id;
  int64_t sequence = 0;  // Shared with MetricPoint.sequence.
  absl::Time time = absl::InfinitePast();
  int64_t attempt = 0;
  JobEventType type = JobEventType::kMessage;
  // The optimizer step it refers to (checkpoint, evaluation, early stop,
  // batch size reduced); 0 otherwise.
  int64_t step = 0;
  // Set for kCreated (to only) and kStateChanged.
  std::optional<JobState> from_state;
  std::optional<JobState> to_state;
  std::string message;
};

// ------------------------------------------------------ tenants, keys ----

// 0 = unlimited.
struct Quota {
  int64_t max_queued_jobs = 0;   // QUEUED + PAUSED jobs.
  int64_t max_running_jobs = 0;  // RUNNING + CANCELLING jobs.
  int64_t max_gpus = 0;          // GPUs of RUNNING + CANCELLING jobs.
};

struct Tenant {
  std::string id;       // "tenant-..."
  std::string name;     // Unique, human readable.
  double weight = 1.0;  // Fair-share weight (> 0).
  Quota quota;
  absl::Time create_time = absl::InfinitePast();
};

// Numeric values are stored in the database: never renumber.
enum class ApiKeyRole : int { kTenant = 1, kAdmin = 2, kWorker = 3 };
std::string ApiKeyRoleName(ApiKeyRole role);

struct ApiKey {
  std::string id;  // "key-..."
  ApiKeyRole role = ApiKeyRole::kTenant;
  std::string tenant_id;  // Set iff role == kTenant.
  std::string prefix;     // First characters of the secret, shown to users.
  std::string hash;       // Lowercase hex sha256 of the whole key.
  std::string description;
  absl::Time create_time = absl::InfinitePast();
  bool revoked = false;
  absl::Time revoke_time = absl::InfinitePast();
};

// --------------------------------------------------------------- files ----

// Numeric values are stored in the database: never renumber.
enum class FileStatus : int {
  kProcessing = 1,  // Being uploaded/validated: not usable yet.
  kReady = 2,
  kInvalid = 3,  // Failed validation; status_detail says why.
  kDeleted = 4,  // Hidden from get/list; kept for history.
};
std::string FileStatusName(FileStatus status);

struct FileRecord {
  std::string id;  // "file-..."
  std::string tenant_id;
  std::string filename;  // As uploaded; never used as a path.
  std::string purpose;   // e.g. "fine-tune".
  int64_t size_bytes = 0;
  std::string sha256;
  FileStatus status = FileStatus::kProcessing;
  std::string status_detail;
  std::string format;  // "chat", "prompt_completion", "text".
  int64_t example_count = 0;
  std::string storage_path;  // Relative to the storage root.
  absl::Time create_time = absl::InfinitePast();
};

// -------------------------------------------------------------- models ----

struct Model {
  std::string name;                             // What jobs name.
  std::string directory;                        // Relative to the storage root.
  std::map<std::string, std::string> metadata;  // e.g. architecture, params.
  absl::Time update_time = absl::InfinitePast();
  // A model a full fine-tuning job produced (FineTunedModelName): the
  // tenant that owns it (only that tenant sees it) and the job. Both empty
  // for the operator's models, which every tenant sees.
  std::string tenant_id;
  std::string job_id;
};

// The name of the model a TRAINING_METHOD_FULL job's published directory
// becomes: "ft:<job id>". Operator model names cannot hold ':', so the two
// never collide.
std::string FineTunedModelName(absl::string_view job_id);

// Whether `tenant_id` may see and use `model` (the operator's models: every
// tenant).
inline bool ModelVisibleTo(const Model& model, absl::string_view tenant_id) {
  return model.tenant_id.empty() || model.tenant_id == tenant_id;
}

// ------------------------------------------------------------- workers ----

// Numeric values are stored in the database: never renumber.
enum class WorkerState : int { kActive = 1, kDraining = 2, kLost = 3 };
std::string WorkerStateName(WorkerState state);

struct WorkerCapabilities {
  int32_t gpus = 0;  // 0 = CPU worker.
  // Device indices of those GPUs (CUDA ordinals); empty = 0..gpus-1.
  std::vector<int32_t> gpu_indices;
  std::string gpu_type;
  int64_t gpu_memory_bytes = 0;  // Per GPU.
  int32_t cpu_slots = 0;         // Concurrent CPU jobs (CPU workers).
  int64_t memory_bytes = 0;      // Host RAM.
  std::map<std::string, std::string> labels;
  std::string version;  // Worker software version.
  // What its trainer binary runs; nullopt when the agent did not say (an
  // older agent): then it is assumed to run anything.
  std::optional<contract::TrainerCapabilities> trainer;
};

struct Worker {
  std::string id;  // "worker-..."
  std::string hostname;
  WorkerCapabilities capabilities;
  WorkerState state = WorkerState::kActive;
  absl::Time register_time = absl::InfinitePast();
  absl::Time last_heartbeat = absl::InfinitePast();
  absl::Time lease_expiry = absl::InfinitePast();
};

// Everything the scheduling policy needs, read in one consistent snapshot.
// Jobs here carry an empty `spec` (the policy never needs it).
struct SchedulingSnapshot {
  std::vector<Job> queued;  // QUEUED jobs, oldest first.
  std::vector<Job> active;  // Jobs holding a worker (RUNNING, CANCELLING,
                            // PAUSED with a worker), oldest first.
  std::vector<Tenant> tenants;
  std::vector<Worker> workers;  // All workers, any state.
  // When each tenant was last granted a lease (tenants never served are
  // absent): the fair-share tie-break, so equal usage alternates tenants.
  std::map<std::string, absl::Time> last_dispatch;
  absl::Time read_time = absl::InfinitePast();
};

}  // namespace ftune::core

#endif  // FTUNE_SERVER_CORE_TYPES_H_
