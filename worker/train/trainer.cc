// The training loop, top to bottom (llm.c style). Everything a resumed run
// needs to continue bit-for-bit is in the checkpoint: LoRA weights, AdamW
// moments, the step, the data position (rows consumed; the per-epoch
// shuffle is a pure function of seed and epoch), the CPU RNG state, and the
// best-eval bookkeeping (checkpoint.h). The optimizer is optimizer.h; the
// throughput benchmark is bench.h.
#include "worker/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/contract/memory_plan.h"
#include "common/contract/progress.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "common/status.h"
#include "worker/train/adapter.h"
#include "worker/train/batch_padding.h"
#include "worker/train/checkpoint.h"
#include "worker/train/distributed.h"
#include "worker/train/dtype.h"
#include "worker/train/exit_codes.h"
#include "worker/train/families/memory_shape.h"
#include "worker/train/full_finetune.h"
#include "worker/train/model.h"
#include "worker/train/objectives/preference_step.h"
#include "worker/train/optimizer.h"
#include "worker/train/runtime.h"
#include "worker/train/task_eval.h"
#include "worker/train/text/prompts.h"
#include "worker/train/text_generation.h"
#include "worker/train/torch_compat.h"

namespace ftune::train {

double LearningRate(contract::LrScheduler schedule, double base_lr,
                    int64_t warmup, int64_t total, int64_t step) {
  if (step < warmup) return base_lr * static_cast<double>(step) / warmup;
  if (schedule == contract::LrScheduler::kConstant) return base_lr;
  const double span = static_cast<double>(std::max<int64_t>(1, total - warmup));
  const double progress = std::min(1.0, (step - warmup) / span);
  if (schedule == contract::LrScheduler::kLinear) {
    return base_lr * (1.0 - progress);
  }
  return base_lr * 0.5 * (1.0 + std::cos(M_PI * progress));  // cosine
}

int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kOutOfRange:
      return kExitBadInput;
    case absl::StatusCode::kResourceExhausted:
      // A full disk (file_util's ENOSPC/EDQUOT) is not an out-of-memory:
      // retrying with a smaller micro-batch cannot help.
      return IsStorageError(status) ? kExitRetryable : kExitOutOfMemory;
    case absl::StatusCode::kDataLoss:
      return kExitDiverged;
    case absl::StatusCode::kUnavailable:
      return kExitPeerLost;
    default:
      return kExitRetryable;
  }
}

namespace {

using torch::Tensor;

// Row order: epoch e visits rows in a Fisher-Yates permutation seeded by
// (seed, e). Position = rows consumed since the start, so a checkpoint needs
// one integer.
class RowSampler {
 public:
  RowSampler(size_t n, uint64_t seed) : n_(n), seed_(seed) {}
  size_t RowAt(int64_t consumed) {
    const int64_t epoch = consumed / static_cast<int64_t>(n_);
    if (epoch != epoch_) {
      perm_.resize(n_);
      for (size_t i = 0; i < n_; ++i) perm_[i] = i;
      std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ull + epoch);
      for (size_t i = n_ - 1; i > 0; --i)
        std::swap(perm_[i], perm_[rng() % (i + 1)]);
      epoch_ = epoch;
    }
    return perm_[consumed % static_cast<int64_t>(n_)];
  }

 private:
  size_t n_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<size_t> perm_;
};

bool IsOutOfMemoryError(const c10::Error& e) {
  return dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr ||
         compat::IsOutOfMemory(e);
}

// Forward and backward over one optimizer step's rows in micro-batches of
// `micro_rows`, gradients accumulated into `params` (cleared first). Each
// micro-batch's loss is weighted by its share of the step's target tokens
// (over all ranks of `dist`), so the returned loss is the mean over all of
// them and the gradient is the same whatever `micro_rows` is (up to float
// summation order); with several ranks, their sums are.
absl::StatusOr<double> ForwardBackward(
    Model& model, NamedTensors& params,
    const std::vector<const PackedSequence*>& rows, int64_t micro_rows,
    const TrainerHooks& hooks, Distributed& dist, int64_t* tokens) {
  for (auto& [n, p] : params) p.mutable_grad() = Tensor();
  std::vector<Batch> micro;
  int64_t step_targets = 0;
  *tokens = 0;
  for (size_t s = 0; s < rows.size(); s += micro_rows) {
    std::vector<const PackedSequence*> part(
        rows.begin() + s, rows.begin() + std::min(rows.size(), s + micro_rows));
    micro.push_back(MakeBatch(part, model.device()));
    step_targets += micro.back().num_targets;
    *tokens += micro.back().num_tokens;
  }
  FTUNE_ASSIGN_OR_RETURN(step_targets, dist.SumInt(step_targets));
  double step_loss = 0;
  for (const Batch& b : micro) {
    if (b.num_targets == 0) continue;
    if (hooks.before_micro_batch) hooks.before_micro_batch(b.input_ids.size(0));
    Tensor loss = model.Loss(b, /*training=*/true);
    const double w = static_cast<double>(b.num_targets) / step_targets;
    (loss * w).backward();
    step_loss += loss.item<double>() * w;
  }
  return step_loss;
}

// The mean loss per target token over `all_rows`; each rank of `dist`
// evaluates its slice and the sums are reduced.
absl::StatusOr<double> Evaluate(Model& model,
                                const std::vector<PackedSequence>& all_rows,
                                int64_t batch_size, Distributed& dist) {
  torch::NoGradGuard no_grad;
  const auto [first, end] = dist.ShardOf(static_cast<int64_t>(all_rows.size()));
  double weighted = 0;
  int64_t targets = 0;
  for (int64_t s = first; s < end; s += batch_size) {
    std::vector<const PackedSequence*> b;
    for (int64_t i = s; i < std::min(end, s + batch_size); ++i)
      b.push_back(&all_rows[i]);
    Batch batch = MakeBatch(b, model.device());
    if (batch.num_targets == 0) continue;
    weighted += model.Loss(batch, false).item<double>() * batch.num_targets;
    targets += batch.num_targets;
  }
  std::vector<double> sums{weighted, static_cast<double>(targets)};
  FTUNE_RETURN_IF_ERROR(dist.SumDoubles(sums));
  return sums[1] > 0 ? sums[0] / sums[1] : 0.0;
}

contract::PreferenceMetrics ToMetrics(const PreferenceStats& s) {
  return {s.rewards_chosen, s.rewards_rejected, s.reward_accuracy,
          s.reward_margin,  s.logps_chosen,     s.logps_rejected};
}

// Sums a preference step's or evaluation's statistics (and `loss`, when
// given) over the ranks of `dist`: each rank's are weighted by its share of
// the pairs, so the sums are the means over all of them.
absl::Status SumOverRanks(Distributed& dist, contract::PreferenceMetrics* m,
                          double* loss) {
  std::vector<double> v{m->rewards_chosen,
                        m->rewards_rejected,
                        m->reward_accuracy,
                        m->reward_margin,
                        m->logps_chosen,
                        m->logps_rejected,
                        loss != nullptr ? *loss : 0.0};
  FTUNE_RETURN_IF_ERROR(dist.SumDoubles(v));
  *m = {v[0], v[1], v[2], v[3], v[4], v[5]};
  if (loss != nullptr) *loss = v[6];
  return absl::OkStatus();
}

void Emit(const TrainerHooks& hooks, const contract::ProgressEvent& event) {
  if (hooks.emit) hooks.emit(event);
}

// The spec's model on its device and dtype (4-bit base weights for QLoRA),
// with LoRA applied. Seeds LibTorch's generator first: LoRA's A matrices
// are its first draws.
absl::StatusOr<std::unique_ptr<Model>> LoadModel(const TrainSpec& spec) {
  torch::manual_seed(spec.hp.seed);
  ModelOptions mopts;
  mopts.dtype = TorchDtype(contract::ComputeDtype(spec));
  mopts.device = spec.device;
  if (std::string why;
      !compat::DeviceAvailable(compat::ParseDevice(spec.device), &why))
    return absl::FailedPreconditionError(
        absl::StrCat("spec field \"device\": \"", spec.device, "\": ", why));
  mopts.gradient_checkpointing = spec.hp.gradient_checkpointing;
  if (spec.method == contract::Method::kQlora) {
    QuantOptions q;
    q.type = spec.quantization.quant_type;
    q.block_size = spec.quantization.block_size;
    q.double_quant = spec.quantization.double_quant;
    mopts.quantization = q;
  }
  FTUNE_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                         Model::Load(spec.model_dir, mopts));
  if (mopts.quantization) {
    const Model::QuantizedSize qs = model->quantized_size();
    FTUNE_LOG(INFO) << "qlora: " << qs.parameters << " base parameters in "
                    << contract::Name(spec.quantization.quant_type) << ", "
                    << qs.bytes << " bytes ("
                    << 8.0 * static_cast<double>(qs.bytes) /
                           static_cast<double>(
                               std::max<int64_t>(1, qs.parameters))
                    << " bits/parameter), compute "
                    << contract::Name(contract::ComputeDtype(spec));
  }
  if (spec.method == contract::Method::kFull) {
    FTUNE_RETURN_IF_ERROR(model->EnableFullTraining());
  } else {
    FTUNE_RETURN_IF_ERROR(model->ApplyLora(LoraOptions(spec.lora)));
  }
  return model;
}

// The memory planner's prediction for this run (0 if it cannot plan it):
// rows of max_seq_length tokens, batch_size rows a pass (two per pair for
// the preference objectives, whose log-probabilities the planner does not
// model separately).
int64_t PredictedPeakBytes(const TrainSpec& spec, const ModelConfig& config,
                           int64_t max_seq_length) {
  contract::MemoryPlanInput in;
  in.model = MemoryShapeOf(config);
  in.method = spec.method == contract::Method::kQlora  ? "qlora"
              : spec.method == contract::Method::kFull ? "full"
                                                       : "lora";
  in.dtype = contract::Name(contract::ComputeDtype(spec));
  in.quant_block_size = spec.quantization.block_size;
  in.double_quant = spec.quantization.double_quant;
  in.lora_rank = spec.lora.rank;
  in.lora_dropout = spec.lora.dropout;
  in.target_modules = spec.lora.target_modules;
  in.micro_batch = spec.hp.batch_size *
                   (spec.objective == contract::Objective::kSft ? 1 : 2);
  in.seq_len = max_seq_length;
  in.gradient_checkpointing = spec.hp.gradient_checkpointing;
  in.packing = spec.hp.packing;
  in.gradient_accumulation = spec.hp.gradient_accumulation_steps;
  in.cuda = spec.device.rfind("cuda", 0) == 0;
  absl::StatusOr<contract::MemoryPlan> plan = contract::PlanMemory(in);
  if (!plan.ok()) return 0;
  FTUNE_LOG(INFO) << "memory plan: peak " << contract::FormatBytes(plan->total)
                  << " (" << plan->Breakdown() << ")";
  return plan->total;
}

// The rows to train and evaluate on, and what happened to the data.
struct PreparedData {
  TrainingData loaded;
  bool validates = false;  // A validation source was given.
  int64_t max_seq_length = 0;
  nlohmann::json manifest;  // The manifest's dataset.processing.
};

// Loads the data for `model` and reports it: one data event per split,
// never silent about over-length examples in particular.
absl::StatusOr<PreparedData> PrepareData(const TrainSpec& spec,
                                         DataSource& data, const Model& model,
                                         const TrainerHooks& hooks) {
  const contract::HyperParameters& hp = spec.hp;
  PreparedData out;
  // 0: the table's default for this model.
  out.max_seq_length = hp.max_seq_length > 0
                           ? hp.max_seq_length
                           : contract::DefaultMaxSeqLength(
                                 model.config().max_position_embeddings);
  DataOptions dopts;
  dopts.max_seq_length = out.max_seq_length;
  dopts.packing = hp.packing;
  dopts.vocab_size = model.config().vocab_size;
  dopts.seed = hp.seed;
  dopts.validation_split = spec.data.validation_split;
  FTUNE_ASSIGN_OR_RETURN(
      out.loaded, data.Load(spec.train_data, spec.validation_data, dopts));
  const LoadedData& train = out.loaded.train;
  const LoadedData& val = out.loaded.validation;
  if (train.rows.empty())
    return absl::InvalidArgumentError(
        absl::StrCat(spec.train_data, ": no rows to train on"));
  const bool preference = spec.objective != contract::Objective::kSft;
  if (train.pairs != preference) {
    const auto& d = out.loaded.description;
    auto format = std::find_if(d.begin(), d.end(), [](const auto& kv) {
      return kv.first == "format";
    });
    return absl::InvalidArgumentError(absl::StrCat(
        spec.train_data, ": objective \"", contract::Name(spec.objective),
        "\" ",
        preference ? "trains on preference pairs (prompt/chosen/rejected)"
                   : "does not train on preference pairs",
        ", the file's format is ",
        format == d.end() ? std::string("pretokenized") : format->second));
  }
  out.validates =
      !spec.validation_data.empty() || spec.data.validation_split > 0;
  if (out.validates && val.rows.empty())
    return absl::InvalidArgumentError(
        "the validation data has no rows to evaluate on");
  const auto& description = out.loaded.description;
  out.manifest = nlohmann::json::object();
  for (const auto& [k, v] : description) out.manifest[k] = v;
  for (auto [name, d] :
       {std::pair<const char*, const LoadedData*>{"train", &train},
        {"validation", &val}}) {
    if (std::string(name) == "validation" && d->stats.examples == 0) continue;
    contract::DataEvent line;
    line.split = name;
    line.examples = d->stats.examples;
    line.rows = d->stats.rows;
    line.tokens = d->stats.total_tokens;
    line.trained_tokens = d->stats.trained_tokens;
    line.truncated = d->stats.truncated;
    line.dropped_overlength = d->stats.dropped_overlength;
    line.dropped_no_target = d->stats.dropped_no_target;
    line.description.insert(description.begin(), description.end());
    Emit(hooks, line);
    if (d->stats.truncated + d->stats.dropped_overlength +
            d->stats.dropped_no_target >
        0) {
      FTUNE_LOG(WARNING) << name << " data: " << d->stats.truncated
                         << " examples truncated, "
                         << d->stats.dropped_overlength
                         << " dropped as longer than " << out.max_seq_length
                         << " tokens, " << d->stats.dropped_no_target
                         << " dropped without a target";
    }
    nlohmann::json counts = nlohmann::json::parse(contract::ToJsonLine(line));
    counts.erase("type");
    counts.erase("split");
    out.manifest[name] = counts;
  }
  return out;
}

// Sample completions (spec.samples): the first eval_samples validation
// examples as prompts, generated with the model as it is at step 0 and
// after every evaluation. Rank 0 alone generates (it alone reports); the
// other ranks go on to the next collective and wait there.
struct SampleRun {
  std::unique_ptr<TextGenerator> generator;
  std::vector<GenerationPrompt> prompts;
};

// nullopt when the run makes no samples: off, not rank 0, no validation
// source, a preference objective, or pre-tokenized data (no text prompts).
// Prompts that leave no room in the model's context are left out, with a
// warning (a sample must never fail a training run).
absl::StatusOr<std::optional<SampleRun>> PrepareSamples(
    const TrainSpec& spec, const PreparedData& data, const Model& model,
    bool is_main) {
  const std::vector<Example>& examples = data.loaded.validation_examples;
  if (!is_main || spec.samples.eval_samples <= 0 || !data.validates ||
      spec.objective != contract::Objective::kSft || examples.empty()) {
    return std::optional<SampleRun>();
  }
  SampleRun run;
  FTUNE_ASSIGN_OR_RETURN(run.generator,
                         TextGenerator::Create(spec.model_dir, spec.model_dir,
                                               spec.data.chat_template));
  const int64_t context = ContextLength(model);
  for (const Example& ex : examples) {
    if (static_cast<int64_t>(run.prompts.size()) >= spec.samples.eval_samples)
      break;
    GenerationPrompt p = PromptFromExample(ex);
    FTUNE_ASSIGN_OR_RETURN(std::vector<int32_t> ids, run.generator->Render(p));
    if (ids.empty() || static_cast<int64_t>(ids.size()) >= context) {
      FTUNE_LOG(WARNING) << "sample completions: validation example "
                         << ex.line_number << " has " << ids.size()
                         << " prompt tokens, the model's context " << context
                         << "; left out";
      continue;
    }
    run.prompts.push_back(std::move(p));
  }
  if (run.prompts.empty()) return std::optional<SampleRun>();
  return std::optional<SampleRun>(std::move(run));
}

// Generates the samples at `step` and emits them as one samples line, each
// text cut to kSampleTextBytes.
absl::Status EmitSamples(const TrainSpec& spec, SampleRun& run, Model& model,
                         int64_t step, const TrainerHooks& hooks) {
  FTUNE_ASSIGN_OR_RETURN(
      std::vector<Completion> completions,
      run.generator->Run(model, run.prompts, spec.samples.generation,
                         static_cast<int64_t>(run.prompts.size()), nullptr));
  const size_t cap = contract::defaults::kSampleTextBytes;
  contract::SamplesEvent event;
  event.step = step;
  for (size_t i = 0; i < completions.size(); ++i) {
    contract::SampleText t;
    t.prompt = contract::TruncateText(run.prompts[i].display, cap);
    if (run.prompts[i].expected)
      t.expected = contract::TruncateText(*run.prompts[i].expected, cap);
    t.completion = contract::TruncateText(completions[i].text, cap);
    t.finish_reason = completions[i].finish_reason;
    event.samples.push_back(std::move(t));
  }
  Emit(hooks, event);
  return absl::OkStatus();
}

// How long the run is and when it evaluates.
struct StepPlan {
  int64_t rows_per_step = 0;
  int64_t total_steps = 0;
  int64_t eval_every = 0;  // Every this many steps and at the end; 0 never.
  int64_t warmup_steps = 0;
};

StepPlan PlanSteps(const contract::HyperParameters& hp, int64_t n_rows,
                   bool validates) {
  StepPlan plan;
  plan.rows_per_step = hp.batch_size * hp.gradient_accumulation_steps;
  const int64_t steps_per_epoch =
      (n_rows + plan.rows_per_step - 1) / plan.rows_per_step;
  // Fractional epochs round up to whole steps (the last is a full batch,
  // continuing into the next pass over the rows).
  plan.total_steps =
      hp.max_steps > 0
          ? hp.max_steps
          : std::max<int64_t>(
                1,
                static_cast<int64_t>(std::ceil(
                    hp.epochs * static_cast<double>(steps_per_epoch) - 1e-9)));
  // The spec's count, or the table's default (every epoch, or a tenth of
  // max_steps).
  plan.eval_every =
      !validates ? 0
      : hp.eval_every_steps > 0
          ? hp.eval_every_steps
          : contract::DefaultEvalEverySteps(hp.max_steps, steps_per_epoch);
  // A ratio rounds up, as HF's get_scheduler(num_warmup_steps=ceil(...)).
  plan.warmup_steps =
      hp.warmup_steps > 0
          ? hp.warmup_steps
          : contract::WarmupStepsForRatio(hp.warmup_ratio, plan.total_steps);
  return plan;
}

// The global gradient norm (in fp64), then clipping to max_grad_norm
// (PyTorch's clip_grad_norm_ rule; 0 = none). DATA_LOSS when it is not
// finite: the run diverged.
absl::StatusOr<double> ClipGradients(NamedTensors& params, double max_grad_norm,
                                     int64_t step) {
  double sq = 0;
  for (auto& [n, p] : params)
    if (p.grad().defined())
      sq += p.grad().to(torch::kFloat64).pow(2).sum().item<double>();
  const double grad_norm = std::sqrt(sq);
  if (!std::isfinite(grad_norm)) {
    return absl::DataLossError(absl::StrCat("gradient norm is ", grad_norm,
                                            " at step ", step, " (diverged)"));
  }
  if (max_grad_norm > 0 && grad_norm > max_grad_norm) {
    torch::NoGradGuard no_grad;
    const double coef = max_grad_norm / (grad_norm + 1e-6);
    for (auto& [n, p] : params)
      if (p.grad().defined()) p.mutable_grad().mul_(coef);
  }
  return grad_norm;
}

// The LoRA weights, optimizer and loop position of the checkpoint the spec
// resumes from, if any; FAILED_PRECONDITION when it was taken on other
// training data.
absl::Status Resume(const TrainSpec& spec, const LoadedData& train,
                    LoopState& st, NamedTensors& params, AdamW& opt,
                    NamedTensors* best, bool* has_best,
                    const TrainerHooks& hooks) {
  const int64_t n_rows = static_cast<int64_t>(train.rows.size());
  st.train_sha256 = train.sha256;
  st.train_rows = n_rows;
  FTUNE_ASSIGN_OR_RETURN(std::string resume_dir, ResolveResume(spec));
  if (resume_dir.empty()) return absl::OkStatus();
  const int64_t world_size = st.world_size;
  FTUNE_RETURN_IF_ERROR(LoadCheckpoint(resume_dir, st, params, opt, best,
                                       has_best,
                                       spec.method == contract::Method::kFull));
  if (st.world_size != world_size) {
    // Same rows, same global batch, same position: only the per-rank
    // dropout masks and the order of the float sums differ.
    FTUNE_LOG(INFO) << resume_dir << " was written by " << st.world_size
                    << " rank(s); resuming on " << world_size
                    << " with the same global batch and data position";
  }
  st.world_size = world_size;
  // The data position is a row count; it means the same thing only over
  // the same rows (same file, tokenizer, template, packing and seed).
  if ((!st.train_sha256.empty() && st.train_sha256 != train.sha256) ||
      (st.train_rows > 0 && st.train_rows != n_rows))
    return absl::FailedPreconditionError(absl::StrCat(
        resume_dir, ": the checkpoint was taken on other training data (",
        st.train_rows, " rows, sha256 ", st.train_sha256, "; now ", n_rows,
        " rows, sha256 ", train.sha256, ")"));
  st.train_sha256 = train.sha256;
  st.train_rows = n_rows;
  FTUNE_LOG(INFO) << "resumed from " << resume_dir << " at step " << st.step;
  Emit(hooks, contract::ResumedEvent{st.step, resume_dir});
  return absl::OkStatus();
}

// Publishes the adapter (the best evaluation's when there is one, else the
// last step's) with its manifest, and the merged model when asked.
absl::Status PublishResult(const TrainSpec& spec, Model& model,
                           NamedTensors& params, const LoopState& st,
                           const TrainResult& result, const PreparedData& data,
                           const NamedTensors* best,
                           const TrainerHooks& hooks) {
  if (best != nullptr)
    FTUNE_RETURN_IF_ERROR(CopyInto(params, *best, "best adapter"));
  FTUNE_ASSIGN_OR_RETURN(std::string config_sha,
                         Sha256File(JoinPath(spec.model_dir, "config.json")));
  nlohmann::json metrics = {{"steps", st.step},
                            {"final_train_loss", result.final_loss}};
  if (best != nullptr) {
    metrics["best_eval_loss"] = st.best_eval_loss;
    metrics["best_step"] = st.best_step;
    const contract::SelectBestBy by = spec.task_metrics.select_best_by;
    metrics["select_best_by"] = contract::Name(by);
    if (by != contract::SelectBestBy::kEvalLoss)
      metrics[absl::StrCat("best_", contract::Name(by))] = st.best_score;
  }
  nlohmann::json spec_json =
      nlohmann::json::parse(spec.source_json, nullptr, false);
  nlohmann::json manifest = {
      {"base_model",
       {{"name", spec.base_model_name},
        {"path", spec.model_dir},
        {"architecture", model.config().architecture},
        {"config_sha256", config_sha}}},
      {"dataset",
       {{"train_sha256", data.loaded.train.sha256},
        {"validation_sha256", data.loaded.validation.sha256},
        {"processing", data.manifest}}},
      {"spec", spec_json},
      {"seed", spec.hp.seed},
      {"metrics", metrics}};
  if (spec.method == contract::Method::kFull) {
    manifest["lineage"] = {{"base_model", spec.base_model_name},
                           {"job_id", spec.job_id},
                           {"method", "full"}};
    FTUNE_RETURN_IF_ERROR(PublishFullModel(spec.model_dir, spec.output_dir,
                                           model, std::move(manifest)));
  } else {
    FTUNE_RETURN_IF_ERROR(PublishAdapter(spec.output_dir, model.lora_options(),
                                         spec.base_model_name, params,
                                         manifest));
  }
  if (!spec.merge_output_dir.empty())
    FTUNE_RETURN_IF_ERROR(MergeModel(model, spec.merge_output_dir));
  Emit(hooks, contract::DoneEvent{st.step, spec.output_dir, result.final_loss,
                                  best != nullptr
                                      ? std::optional<double>(st.best_eval_loss)
                                      : std::nullopt});
  return absl::OkStatus();
}

absl::StatusOr<TrainResult> Train(const TrainSpec& spec, DataSource& data,
                                  const TrainerHooks& hooks,
                                  Distributed& dist) {
  auto emit = [&](const contract::ProgressEvent& event) { Emit(hooks, event); };
  const contract::HyperParameters& hp = spec.hp;

  // --- Setup: threads, model, LoRA, data, plan, optimizer, resume ----------
  const int threads = compat::SetThreads(spec.threads);
  FTUNE_LOG(INFO) << "threads=" << threads << " blas=" << compat::BlasLibrary()
                  << " openmp=" << OpenMpSpinPolicy();
  // Count live tensor bytes on CPU (the planner's measure; CUDA's
  // allocator counts its own).
  compat::TrackCpuTensorMemory();
  FTUNE_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, LoadModel(spec));
  const bool full = spec.method == contract::Method::kFull;
  NamedTensors params =
      full ? model->BaseParameters() : model->LoraParameters();
  FTUNE_ASSIGN_OR_RETURN(PreparedData prepared,
                         PrepareData(spec, data, *model, hooks));
  const int64_t predicted_peak =
      PredictedPeakBytes(spec, model->config(), prepared.max_seq_length);
  const LoadedData& train = prepared.loaded.train;
  const LoadedData& val = prepared.loaded.validation;
  // Preference data comes as (chosen, rejected) row pairs: a step takes
  // batch_size pairs, and the sampler and epochs count pairs.
  const bool pairs = train.pairs;
  std::optional<PreferenceOptions> preference;
  if (pairs) preference = PreferenceOptionsFor(spec);
  const int64_t n_rows =
      static_cast<int64_t>(train.rows.size()) / (pairs ? 2 : 1);
  const StepPlan plan = PlanSteps(hp, n_rows, prepared.validates);
  const int64_t total_steps = plan.total_steps;
  AdamW opt(params, hp.weight_decay);
  RowSampler sampler(static_cast<size_t>(n_rows), hp.seed);
  const std::string spec_sha = Sha256Hex(spec.source_json);
  LoopState st;
  st.world_size = dist.world_size();
  NamedTensors best;
  bool has_best = false;
  FTUNE_RETURN_IF_ERROR(
      Resume(spec, train, st, params, opt, &best, &has_best, hooks));
  // Every rank starts from the same LoRA weights (rank 0's).
  FTUNE_RETURN_IF_ERROR(dist.BroadcastFromMain(params));
  {
    contract::StartEvent start;
    start.total_steps = total_steps;
    start.train_rows = n_rows;
    start.train_examples = train.num_examples;
    start.validation_rows = static_cast<int64_t>(val.rows.size());
    for (auto& [k, p] : params) start.trainable_parameters += p.numel();
    start.threads = threads;
    emit(start);
  }
  FTUNE_ASSIGN_OR_RETURN(
      std::optional<SampleRun> samples,
      PrepareSamples(spec, prepared, *model, dist.is_main()));
  FTUNE_ASSIGN_OR_RETURN(
      std::unique_ptr<TaskEvaluator> task_eval,
      TaskEvaluator::Create(spec, prepared.validates,
                            prepared.loaded.validation_examples, *model));
  // Rows per forward pass: batch_size, halved on each out-of-memory step
  // when hp.oom_retry (the step's rows stay the same).
  int64_t micro_rows = hp.batch_size;
  // One evaluation of the model as it is now: eval_loss (and the preference
  // statistics) over the validation rows, the task metrics; reduced over
  // the ranks. The caller fills in the best-so-far fields.
  auto evaluate = [&]() -> absl::StatusOr<contract::EvalEvent> {
    contract::EvalEvent ev;
    ev.step = st.step;
    if (preference) {
      const auto [first, end] =
          dist.ShardOf(static_cast<int64_t>(val.rows.size() / 2));
      const PreferenceStepResult r = PreferenceEvaluate(
          *model, val.rows, micro_rows, *preference, first, end);
      ev.eval_loss = r.loss;
      ev.preference = ToMetrics(r.stats);
      FTUNE_RETURN_IF_ERROR(SumOverRanks(dist, &*ev.preference, &ev.eval_loss));
    } else {
      FTUNE_ASSIGN_OR_RETURN(ev.eval_loss,
                             Evaluate(*model, val.rows, micro_rows, dist));
    }
    if (task_eval) {
      FTUNE_ASSIGN_OR_RETURN(ev.task, task_eval->Evaluate(*model, dist));
    }
    return ev;
  };
  // Step 0: the model before any update (a resumed run did this before).
  // The baseline evaluation is never the best: best_step stays 0.
  if (hp.eval_on_start && prepared.validates && st.step == 0) {
    FTUNE_ASSIGN_OR_RETURN(contract::EvalEvent ev, evaluate());
    ev.best_eval_loss = ev.eval_loss;
    ev.best_step = 0;
    emit(ev);
  }
  if (samples && st.step == 0) {
    FTUNE_RETURN_IF_ERROR(EmitSamples(spec, *samples, *model, 0, hooks));
  }

  // --- The loop -----------------------------------------------------------
  TrainResult result;
  result.total_steps = total_steps;
  bool stop = false;
  // The steps' peak, without the loading transients.
  compat::ResetTensorPeak(model->device());
  while (st.step < total_steps && !stop) {
    auto t0 = std::chrono::steady_clock::now();
    // The step's units (rows, or pairs of rows), then this rank's slice of
    // them: a pair's two rows stay on one rank.
    std::vector<size_t> units;
    for (int64_t i = 0; i < plan.rows_per_step; ++i) {
      units.push_back(sampler.RowAt(st.consumed_rows++));
    }
    const int64_t step_units = static_cast<int64_t>(units.size());
    units = dist.Shard(units);
    std::vector<const PackedSequence*> step_rows;
    for (const size_t unit : units) {
      if (!pairs) {
        step_rows.push_back(&train.rows[unit]);
        continue;
      }
      step_rows.push_back(&train.rows[2 * unit]);
      step_rows.push_back(&train.rows[2 * unit + 1]);
    }
    dist.SeedStep(hp.seed, st.step);
    double step_loss = 0;
    int64_t step_tokens = 0;
    std::optional<contract::PreferenceMetrics> step_preference;
    for (;;) {
      std::string oom;  // this rank's out-of-memory error, if any
      try {
        if (preference) {
          const PreferenceStepResult r = PreferenceForwardBackward(
              *model, params, step_rows, micro_rows, *preference,
              hooks.before_micro_batch, step_units);
          step_loss = r.loss;
          step_tokens = r.tokens;
          step_preference = ToMetrics(r.stats);
        } else {
          FTUNE_ASSIGN_OR_RETURN(
              step_loss, ForwardBackward(*model, params, step_rows, micro_rows,
                                         hooks, dist, &step_tokens));
        }
      } catch (const c10::Error& e) {
        if (!IsOutOfMemoryError(e) || !hp.oom_retry || micro_rows == 1) throw;
        oom = e.what_without_backtrace();
      }
      // Every rank retries when any ran out of memory.
      FTUNE_ASSIGN_OR_RETURN(const bool retry, dist.AnyRank(!oom.empty()));
      if (!retry) break;
      compat::ReleaseCachedMemory(model->device());
      micro_rows = (micro_rows + 1) / 2;
      const int64_t accumulation =
          (plan.rows_per_step + micro_rows - 1) / micro_rows;
      FTUNE_LOG(WARNING) << "out of memory at step " << st.step + 1
                         << "; retrying with micro-batches of " << micro_rows
                         << (pairs ? " pairs x " : " rows x ") << accumulation;
      emit(contract::OomRetryEvent{
          st.step + 1, micro_rows, accumulation,
          oom.empty() ? "out of memory on another rank" : oom});
    }
    FTUNE_RETURN_IF_ERROR(dist.ReduceStep(params, &step_loss, &step_tokens));
    // The padding left in the step's micro-batches (preference micro-batches
    // hold micro_rows pairs), over every rank.
    const BatchPadding padding =
        PaddingOf(step_rows, preference ? 2 * micro_rows : micro_rows);
    std::vector<double> padding_sums{static_cast<double>(padding.padded),
                                     static_cast<double>(padding.total)};
    FTUNE_RETURN_IF_ERROR(dist.SumDoubles(padding_sums));
    if (step_preference) {
      FTUNE_RETURN_IF_ERROR(SumOverRanks(dist, &*step_preference, nullptr));
    }
    if (!std::isfinite(step_loss)) {
      return absl::DataLossError(absl::StrCat(
          "loss is ", step_loss, " at step ", st.step + 1, " (diverged)"));
    }
    FTUNE_ASSIGN_OR_RETURN(
        const double grad_norm,
        ClipGradients(params, hp.max_grad_norm, st.step + 1));
    const double lr = LearningRate(hp.lr_scheduler, hp.learning_rate,
                                   plan.warmup_steps, total_steps, st.step);
    opt.Step(lr);
    ++st.step;
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    result.losses.push_back(step_loss);
    result.loss_steps.push_back(st.step);
    result.final_loss = step_loss;
    contract::MetricsEvent metrics;
    metrics.step = st.step;
    metrics.total_steps = total_steps;
    metrics.epoch = static_cast<double>(st.consumed_rows) / n_rows;
    metrics.loss = step_loss;
    metrics.lr = lr;
    metrics.grad_norm = grad_norm;
    metrics.tokens_per_s = step_tokens / std::max(secs, 1e-9);
    metrics.peak_memory_bytes = compat::PeakMemoryBytes(model->device());
    metrics.predicted_peak_memory_bytes = predicted_peak;
    metrics.tensor_peak_memory_bytes = compat::TensorPeakBytes(model->device());
    metrics.preference = step_preference;
    metrics.padding_share =
        padding_sums[1] > 0 ? padding_sums[0] / padding_sums[1] : 0.0;
    emit(metrics);

    // Evaluation, best adapter, early stopping.
    const bool last = st.step == total_steps;
    if (plan.eval_every > 0 && (st.step % plan.eval_every == 0 || last)) {
      FTUNE_ASSIGN_OR_RETURN(contract::EvalEvent ev, evaluate());
      const double eval_loss = ev.eval_loss;
      const std::optional<contract::TaskMetrics>& task = ev.task;
      // The adapter to publish: the lowest eval_loss, or the highest share
      // of the task metric select_best_by names (the first evaluation that
      // reached it).
      const contract::SelectBestBy by = spec.task_metrics.select_best_by;
      const std::optional<double> score = SelectionScore(by, eval_loss, task);
      const bool improved = by == contract::SelectBestBy::kEvalLoss
                                ? eval_loss < st.best_eval_loss
                                : score.has_value() && *score > st.best_score;
      if (improved) {
        if (score) st.best_score = *score;
        st.best_eval_loss = eval_loss;
        st.best_step = st.step;
        st.evals_without_improvement = 0;
        best = Snapshot(params);
        has_best = true;
      } else {
        ++st.evals_without_improvement;
      }
      ev.best_eval_loss = st.best_eval_loss;
      ev.best_step = st.best_step;
      emit(ev);
      if (samples) {
        FTUNE_RETURN_IF_ERROR(
            EmitSamples(spec, *samples, *model, st.step, hooks));
      }
      if (hp.early_stopping_patience > 0 &&
          st.evals_without_improvement >= hp.early_stopping_patience) {
        result.early_stopped = true;
        emit(contract::EarlyStopEvent{st.step, st.best_step});
        break;
      }
    }

    stop =
        (hooks.stop != nullptr && hooks.stop->load()) ||
        (hooks.stop_after_steps > 0 &&
         static_cast<int64_t>(result.losses.size()) >= hooks.stop_after_steps);
    FTUNE_ASSIGN_OR_RETURN(stop, dist.AnyRank(stop));  // SIGTERM on any rank
    const bool periodic = hp.checkpoint_every_steps > 0 &&
                          st.step % hp.checkpoint_every_steps == 0;
    if ((periodic || stop) && !spec.checkpoint_dir.empty() && !last &&
        dist.is_main()) {
      FTUNE_ASSIGN_OR_RETURN(
          result.last_checkpoint,
          SaveCheckpoint(spec.checkpoint_dir, st, params, opt,
                         has_best ? &best : nullptr, spec_sha, full));
      emit(contract::CheckpointEvent{st.step, result.last_checkpoint});
    }
  }
  result.steps = st.step;
  result.best_step = st.best_step;
  result.best_eval_loss = has_best ? st.best_eval_loss : -1;
  if (stop && st.step < total_steps) {
    result.interrupted = true;
    emit(contract::InterruptedEvent{st.step, result.last_checkpoint});
    return result;
  }

  // --- Output (rank 0; every rank learns whether it worked)
  const absl::Status published =
      dist.is_main() ? PublishResult(spec, *model, params, st, result, prepared,
                                     has_best ? &best : nullptr, hooks)
                     : absl::OkStatus();
  FTUNE_ASSIGN_OR_RETURN(const bool failed, dist.AnyRank(!published.ok()));
  if (!published.ok()) return published;
  if (failed) return absl::UnavailableError("rank 0 could not publish");
  return result;
}

}  // namespace

absl::StatusOr<TrainResult> RunTraining(const TrainSpec& spec, DataSource& data,
                                        const TrainerHooks& hooks) {
  Distributed single;
  return RunTraining(spec, data, hooks, single);
}

absl::StatusOr<TrainResult> RunTraining(const TrainSpec& spec, DataSource& data,
                                        const TrainerHooks& hooks,
                                        Distributed& dist) {
  // One voice: only rank 0 reports progress.
  TrainerHooks rank_hooks = hooks;
  if (!dist.is_main()) rank_hooks.emit = nullptr;
  TrainSpec rank_spec = spec;
  rank_spec.device = dist.DeviceFor(spec.device);
  try {
    return Train(rank_spec, data, rank_hooks, dist);
  } catch (const c10::OutOfMemoryError& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("out of memory: ", e.what_without_backtrace()));
  } catch (const c10::Error& e) {
    if (compat::IsOutOfMemory(e))
      return absl::ResourceExhaustedError(
          absl::StrCat("out of memory: ", e.what_without_backtrace()));
    return absl::InternalError(
        absl::StrCat("LibTorch error: ", e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory (std::bad_alloc)");
  }
}

}  // namespace ftune::train
