// The one table of defaults and valid ranges of a job's settings, for the
// whole path: ftunectl's help, the scheduler's validation and default
// resolution (server/core/spec_validation.cc), the worker agent's
// translation and the trainer's spec parser (train_spec.cc) all read them
// from here, so a setting has one default and one range wherever it is seen.
//
// Ranges are data (Range) with one checker (RangeViolation) that words every
// message the same way ("must be in [1, 256], got 0"): clients and tests
// rely on the wording.
//
// Plain C++ (no gRPC, no LibTorch). Thread-safe: constants and pure
// functions.
#ifndef FTUNE_COMMON_CONTRACT_LIMITS_H_
#define FTUNE_COMMON_CONTRACT_LIMITS_H_

#include <cstdint>
#include <optional>
#include <string>

namespace ftune::contract {

// A closed or half-open interval of numbers.
struct Range {
  double lo;
  double hi;
  bool lo_open = false;  // (lo, ...
  bool hi_open = false;  // ..., hi)
  bool Contains(double v) const {
    return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
  }
};

// Upper bound of a range that has none in practice; printed as ">= lo".
inline constexpr double kUnbounded = 9223372036854775807.0;

// "must be in [1, 256], got 0" (or "must be >= 0, got -1" when the range is
// unbounded above) when `value` is outside `range` (NaN is always outside);
// nullopt when inside. Whole numbers print without an exponent.
std::optional<std::string> RangeViolation(const Range& range, double value);
// "[1, 256]", "(0, 1]".
std::string RangeText(const Range& range);

// ---------------------------------------------------------------- ranges --
// Named after the JobSpec field (job_spec.proto); the trainer spec uses the
// same names (docs/trainer.md).
namespace range {
inline constexpr Range kLoraRank{1, 256};
inline constexpr Range kLoraAlpha{0, 1024, /*lo_open=*/true};
inline constexpr Range kLoraDropout{0, 1, false, /*hi_open=*/true};
inline constexpr Range kQuantBlockSize{32, 4096};  // and a power of two
inline constexpr Range kEpochs{0, 100, /*lo_open=*/true};
inline constexpr Range kMaxSteps{1, 10000000};
inline constexpr Range kLearningRate{0, 1, /*lo_open=*/true};
inline constexpr Range kWarmupSteps{0, kUnbounded};
inline constexpr Range kWarmupRatio{0, 0.5};
inline constexpr Range kBatchSize{1, 1024};
inline constexpr Range kGradientAccumulationSteps{1, 1024};
// The upper bound is the model's max_position_embeddings where it is known.
inline constexpr Range kMaxSeqLength{16, double{1 << 30}};
inline constexpr Range kWeightDecay{0, 1, false, /*hi_open=*/true};
inline constexpr Range kMaxGradNorm{0, 1000};
inline constexpr Range kSeed{0, kUnbounded};
inline constexpr Range kEvalEverySteps{0, 10000000};
inline constexpr Range kCheckpointEverySteps{0, 10000000};
inline constexpr Range kCheckpointsToKeep{1, 100};
inline constexpr Range kEarlyStoppingPatience{0, 1000};
inline constexpr Range kLogEverySteps{1, 10000};
inline constexpr Range kValidationSplit{0, 0.5, /*lo_open=*/true};
inline constexpr Range kGpus{0, 16};
inline constexpr Range kMemoryBytes{0, double(int64_t{1} << 50)};
inline constexpr Range kCpuThreads{0, 256};
// resources.processes: trainer processes (data-parallel ranks) of a CPU job.
inline constexpr Range kProcesses{0, 16};
inline constexpr Range kPriority{-100, 100};
inline constexpr Range kMaxRestarts{0, 100};
// Preference optimisation (preference.*).
inline constexpr Range kPreferenceBeta{0, 100, /*lo_open=*/true};
inline constexpr Range kLabelSmoothing{0, 0.5, false, /*hi_open=*/true};
inline constexpr Range kOrpoLambda{0, 100, /*lo_open=*/true};
// Generation (ftune-train generate, a job's sample completions;
// common/contract/generation.h). max_new_tokens is also cut short where
// the model's context ends.
inline constexpr Range kMaxNewTokens{1, 4096};
inline constexpr Range kTemperature{0, 100};  // 0 = greedy
inline constexpr Range kTopK{0, 1 << 20};     // 0 = off
inline constexpr Range kTopP{0, 1, /*lo_open=*/true};
inline constexpr Range kRepetitionPenalty{0, 100, /*lo_open=*/true};
inline constexpr Range kGenerationSeed{0, kUnbounded};
inline constexpr Range kStopSequences{0, 4};        // how many
inline constexpr Range kStopSequenceBytes{1, 256};  // each
// Validation prompts sampled at step 0 and at every evaluation.
inline constexpr Range kEvalSamples{0, 32};
// Validation examples whose greedy completions are scored at every
// evaluation (task metrics, task_metrics.h): generation costs time.
inline constexpr Range kEvalTaskExamples{0, 1024};
// ftune-train generate --batch-size.
inline constexpr Range kGenerateBatchSize{1, 256};
}  // namespace range

// -------------------------------------------------------------- defaults --
// What an unset field means (job_spec.proto says the same in words; the
// docs test checks the proto comments against these).
namespace defaults {
inline constexpr int64_t kLoraRank = 16;
// alpha = kLoraAlphaPerRank * rank.
inline constexpr double kLoraAlphaPerRank = 2.0;
inline constexpr double kLoraDropout = 0.0;
inline constexpr char kAllLinear[] = "all-linear";
inline constexpr int64_t kQuantBlockSize = 64;
inline constexpr bool kDoubleQuant = true;
inline constexpr double kEpochs = 3;
inline constexpr double kLearningRate = 2e-4;
inline constexpr double kWarmupRatio = 0.03;
inline constexpr int64_t kBatchSize = 4;
inline constexpr int64_t kGradientAccumulationSteps = 1;
// max_seq_length: the smaller of this and the model's
// max_position_embeddings.
inline constexpr int64_t kMaxSeqLengthCap = 2048;
inline constexpr bool kPacking = false;
inline constexpr double kWeightDecay = 0.0;
inline constexpr double kMaxGradNorm = 1.0;
// The scheduler draws a seed per job and records it; ftune-train run on its
// own without one uses this.
inline constexpr uint64_t kStandaloneSeed = 42;
// Evaluations of a max_steps job when eval_every_steps is 0: every
// ceil(max_steps / kEvalsPerMaxStepsJob) steps (epochs jobs: every epoch).
inline constexpr int64_t kEvalsPerMaxStepsJob = 10;
inline constexpr int64_t kCheckpointEverySteps = 500;
inline constexpr int32_t kCheckpointsToKeep = 2;
inline constexpr int32_t kEarlyStoppingPatience = 0;
inline constexpr bool kGradientCheckpointing = true;
inline constexpr bool kAutoReduceBatchOnOom = true;
inline constexpr int32_t kLogEverySteps = 1;
inline constexpr int32_t kGpus = 1;
// cpu_threads when 0: this many for a CPU job, one per GPU otherwise.
inline constexpr int32_t kCpuThreadsCpuJob = 4;
inline constexpr int32_t kMaxRestarts = 3;
// DPO/IPO: strength of the pull towards the reference (TRL's and the DPO
// paper's usual value).
inline constexpr double kPreferenceBeta = 0.1;
inline constexpr double kLabelSmoothing = 0.0;
// ORPO: weight of the odds-ratio term (the ORPO paper's value).
inline constexpr double kOrpoLambda = 0.1;
// Generation settings (generation.h) when unset.
inline constexpr int64_t kMaxNewTokens = 128;
inline constexpr double kTemperature = 0;  // greedy
inline constexpr int64_t kTopK = 0;
inline constexpr double kTopP = 1.0;
inline constexpr double kRepetitionPenalty = 1.0;
// Sample completions of a job: this many validation prompts when it has a
// validation source (0 without one), at most kSampleMaxNewTokens tokens
// each unless the job says otherwise.
inline constexpr int32_t kEvalSamples = 4;
inline constexpr int64_t kSampleMaxNewTokens = 64;
// Task metrics of a job with a validation source: the first this many
// validation examples, completions of at most kTaskMaxNewTokens tokens.
inline constexpr int32_t kEvalTaskExamples = 32;
inline constexpr int64_t kTaskMaxNewTokens = 64;
// ftune-train generate: prompts decoded together.
inline constexpr int64_t kGenerateBatchSize = 8;
// The scheduler keeps at most this many bytes of sample text per job
// (prompts, expected and generated completions); beyond it a sample's
// texts are cut and end with kTruncationMarker.
inline constexpr int64_t kSampleBytesPerJob = 1 << 20;
// One text (prompt, expected, completion) of a stored sample.
inline constexpr int64_t kSampleTextBytes = 4096;
inline constexpr char kTruncationMarker[] = "…[truncated]";
}  // namespace defaults

// The default max_seq_length for a model of `max_position_embeddings`
// (0 = unknown).
int64_t DefaultMaxSeqLength(int64_t max_position_embeddings);
// The default cpu_threads of a job with `gpus` GPUs.
int32_t DefaultCpuThreads(int32_t gpus);
// The trainer processes (data-parallel ranks) of a job with `gpus` GPUs
// and resources.processes = `processes` (0 = unset): one per GPU, else
// `processes`, at least 1.
int32_t JobRanks(int32_t gpus, int32_t processes);
// The default evaluation interval in steps when eval_every_steps is 0:
// ceil(max_steps / 10) for a max_steps job, `steps_per_epoch` otherwise.
int64_t DefaultEvalEverySteps(int64_t max_steps, int64_t steps_per_epoch);
// Warmup steps for a ratio of `total_steps`, rounded up (as Hugging Face's
// ceil(ratio * total)), tolerating the rounding error of the product
// (0.03 * 100 is 3, not 4).
int64_t WarmupStepsForRatio(double ratio, int64_t total_steps);

}  // namespace ftune::contract

#endif  // FTUNE_COMMON_CONTRACT_LIMITS_H_
