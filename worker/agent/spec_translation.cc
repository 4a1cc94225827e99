#include "worker/agent/spec_translation.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "proto/convert/job_spec.h"

namespace ftune::agent {
absl::StatusOr<std::string> ResolveStoragePath(absl::string_view storage_root,
                                               absl::string_view path,
                                               absl::string_view field) {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": is empty"));
  }
  if (path.front() == '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": \"", path, "\" must be relative to the storage root"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "." || part == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": \"", path, "\" must not contain . or .. components"));
    }
  }
  absl::string_view root = storage_root;
  while (root.size() > 1 && root.back() == '/') root.remove_suffix(1);
  return absl::StrCat(root, "/", path);
}

// The try_model fields listed are what the server resolved weights_path
// from, and a setting TryModel refuses.
const std::vector<std::string>& SchedulerOnlyFields() {
  static const auto* f =
      new std::vector<std::string>{"priority",
                                   "labels",
                                   "max_restarts",
                                   "suffix",
                                   "resources.memory_bytes",
                                   "resources.gpu_type",
                                   "try_model.source_job_id",
                                   "try_model.checkpoint_step",
                                   "try_model.generation.eval_samples"};
  return *f;
}

const std::vector<std::string>& AgentFields() {
  static const auto* f = new std::vector<std::string>{
      "hyperparameters.checkpoints_to_keep", "hyperparameters.log_every_steps"};
  return *f;
}

namespace {

// A try job (JobSpec.try_model): the trainer generates instead of
// training, so it reads no training data and writes nothing to storage.
absl::StatusOr<contract::GenerateSpec> TranslateTry(
    const v1::TryModelSpec& tm, absl::string_view storage_root) {
  contract::GenerateSpec g;
  switch (tm.source()) {
    case v1::TRY_SOURCE_UNSPECIFIED:
    case v1::TRY_SOURCE_ADAPTER:
      g.weights = contract::GenerateSpec::Weights::kAdapter;
      break;
    case v1::TRY_SOURCE_CHECKPOINT:
      g.weights = contract::GenerateSpec::Weights::kCheckpoint;
      break;
    case v1::TRY_SOURCE_BASE:
      g.weights = contract::GenerateSpec::Weights::kBase;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("spec.try_model.source: unknown value ", tm.source()));
  }
  if (g.weights != contract::GenerateSpec::Weights::kBase) {
    FTUNE_ASSIGN_OR_RETURN(g.weights_dir,
                           ResolveStoragePath(storage_root, tm.weights_path(),
                                              "spec.try_model.weights_path"));
  }
  for (int i = 0; i < tm.prompts_size(); ++i) {
    const v1::TryPrompt& p = tm.prompts(i);
    nlohmann::json line;
    if (p.messages_size() > 0) {
      nlohmann::json messages = nlohmann::json::array();
      for (const v1::TryMessage& m : p.messages()) {
        messages.push_back({{"role", m.role()}, {"content", m.content()}});
      }
      line["messages"] = std::move(messages);
    } else {
      line["prompt"] = p.prompt();
    }
    g.prompts.push_back(line.dump());
  }
  g.generation = SampleSpecFromProto(tm.generation()).generation;
  return g;
}

}  // namespace

absl::StatusOr<TrainerSpec> TranslateAssignment(
    const v1::AssignJobCommand& c, absl::string_view storage_root) {
  namespace defaults = contract::defaults;
  const v1::JobSpec& spec = c.spec();
  TrainerSpec out;
  contract::TrainSpec& t = out.spec;

  // --- Paths, all under the storage root.
  FTUNE_ASSIGN_OR_RETURN(
      t.model_dir,
      ResolveStoragePath(storage_root, c.model_path(), "model_path"));
  FTUNE_ASSIGN_OR_RETURN(
      t.train_data, ResolveStoragePath(storage_root, c.training_file_path(),
                                       "training_file_path"));
  FTUNE_ASSIGN_OR_RETURN(
      out.checkpoint_dir,
      ResolveStoragePath(storage_root, c.checkpoint_dir(), "checkpoint_dir"));
  FTUNE_ASSIGN_OR_RETURN(
      out.adapter_dir,
      ResolveStoragePath(storage_root, c.adapter_dir(), "adapter_dir"));
  FTUNE_ASSIGN_OR_RETURN(
      out.log_path, ResolveStoragePath(storage_root, c.log_path(), "log_path"));
  t.base_model_name = spec.model().empty() ? c.model_path() : spec.model();
  t.output_dir = out.adapter_dir;
  t.job_id = c.job_id();
  t.checkpoint_dir = out.checkpoint_dir;
  if (c.resume_checkpoint_path().empty()) {
    // Also picks up a checkpoint an earlier attempt wrote but could not
    // report before it died.
    t.resume_from = "auto";
  } else {
    FTUNE_ASSIGN_OR_RETURN(
        t.resume_from,
        ResolveStoragePath(storage_root, c.resume_checkpoint_path(),
                           "resume_checkpoint_path"));
  }

  // --- Method, quantization and compute dtype.
  FTUNE_ASSIGN_OR_RETURN(t.method, MethodFromProto(spec.method()));
  if (t.method != contract::Method::kQlora && spec.has_quantization()) {
    return absl::InvalidArgumentError(
        "spec.quantization: only with TRAINING_METHOD_QLORA");
  }
  const v1::QuantizationConfig& q = spec.quantization();
  switch (q.type()) {
    case v1::QUANTIZATION_TYPE_UNSPECIFIED:
    case v1::QUANTIZATION_TYPE_NF4:
      t.quantization.quant_type = contract::QuantType::kNf4;
      break;
    case v1::QUANTIZATION_TYPE_FP4:
      t.quantization.quant_type = contract::QuantType::kFp4;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("spec.quantization.type: unknown value ", q.type()));
  }
  t.quantization.double_quant =
      q.has_double_quant() ? q.double_quant() : defaults::kDoubleQuant;
  t.quantization.block_size =
      q.block_size() == 0 ? defaults::kQuantBlockSize : q.block_size();
  // UNSPECIFIED: the trainer's default for its device.
  FTUNE_ASSIGN_OR_RETURN(t.dtype, ComputeDtypeFromProto(q.compute_dtype()));

  // --- Objective.
  FTUNE_ASSIGN_OR_RETURN(t.objective, ObjectiveFromProto(spec.objective()));
  if (t.objective == contract::Objective::kSft && spec.has_preference()) {
    return absl::InvalidArgumentError(
        "spec.preference: only with TRAINING_OBJECTIVE_DPO or "
        "TRAINING_OBJECTIVE_ORPO");
  }
  FTUNE_ASSIGN_OR_RETURN(t.preference, PreferenceFromProto(spec.preference()));
  t.samples = SampleSpecFromProto(spec.samples());
  FTUNE_ASSIGN_OR_RETURN(t.task_metrics,
                         TaskMetricsSpecFromProto(spec.task_metrics()));

  // --- Adapter shape.
  const v1::LoraConfig& lora = spec.lora();
  t.lora.rank = lora.rank() == 0 ? defaults::kLoraRank : lora.rank();
  t.lora.alpha = lora.alpha() == 0 ? defaults::kLoraAlphaPerRank *
                                         static_cast<double>(t.lora.rank)
                                   : lora.alpha();
  t.lora.dropout = lora.dropout();
  if (!lora.target_modules().empty()) {
    t.lora.target_modules.assign(lora.target_modules().begin(),
                                 lora.target_modules().end());
  }

  // --- Data.
  const v1::Hyperparameters& h = spec.hyperparameters();
  if (!h.chat_template().empty()) t.data.chat_template = h.chat_template();
  t.data.overlength = h.overlength_policy() == v1::OVERLENGTH_POLICY_DROP
                          ? contract::Overlength::kDrop
                          : contract::Overlength::kTruncate;
  switch (spec.validation_case()) {
    case v1::JobSpec::kValidationFile: {
      FTUNE_ASSIGN_OR_RETURN(
          t.validation_data,
          ResolveStoragePath(storage_root, c.validation_file_path(),
                             "validation_file_path"));
      break;
    }
    case v1::JobSpec::kValidationSplit:
      t.data.validation_split = spec.validation_split();
      break;
    case v1::JobSpec::VALIDATION_NOT_SET:
      break;
  }

  // --- Hyperparameters.
  contract::HyperParameters& hp = t.hp;
  if (h.length_case() == v1::Hyperparameters::kMaxSteps) {
    hp.max_steps = h.max_steps();
  } else if (h.length_case() == v1::Hyperparameters::kEpochs) {
    hp.epochs = h.epochs();
  }
  if (h.learning_rate() != 0) hp.learning_rate = h.learning_rate();
  switch (h.lr_scheduler()) {
    case v1::LR_SCHEDULER_CONSTANT:
      hp.lr_scheduler = contract::LrScheduler::kConstant;
      break;
    case v1::LR_SCHEDULER_COSINE:
      hp.lr_scheduler = contract::LrScheduler::kCosine;
      break;
    default:
      hp.lr_scheduler = contract::LrScheduler::kLinear;
  }
  if (h.warmup_case() == v1::Hyperparameters::kWarmupSteps) {
    hp.warmup_steps = h.warmup_steps();
    hp.warmup_ratio = 0;
  } else if (h.warmup_case() == v1::Hyperparameters::kWarmupRatio) {
    hp.warmup_ratio = h.warmup_ratio();
  }
  if (h.batch_size() != 0) hp.batch_size = h.batch_size();
  if (h.gradient_accumulation_steps() != 0) {
    hp.gradient_accumulation_steps = h.gradient_accumulation_steps();
  }
  hp.max_seq_length = h.max_seq_length();  // 0: the trainer's model default
  hp.packing = h.packing();
  hp.weight_decay = h.weight_decay();
  if (h.has_max_grad_norm()) hp.max_grad_norm = h.max_grad_norm();
  if (h.has_seed()) {
    if (h.seed() < 0) {
      return absl::InvalidArgumentError("spec.hyperparameters.seed: negative");
    }
    hp.seed = static_cast<uint64_t>(h.seed());
  }
  hp.eval_every_steps = h.eval_every_steps();
  hp.early_stopping_patience = h.early_stopping_patience();
  hp.eval_on_start = h.eval_on_start();
  if (h.has_checkpoint_every_steps()) {
    hp.checkpoint_every_steps = h.checkpoint_every_steps();
  }
  if (h.has_gradient_checkpointing()) {
    hp.gradient_checkpointing = h.gradient_checkpointing();
  }
  // The trainer first retries an out-of-memory step in place with half the
  // micro-batch (no step lost); the agent's restart from the latest
  // checkpoint (attempt_runner.cc) covers what that cannot.
  out.auto_reduce_batch_on_oom = h.has_auto_reduce_batch_on_oom()
                                     ? h.auto_reduce_batch_on_oom()
                                     : defaults::kAutoReduceBatchOnOom;
  hp.oom_retry = out.auto_reduce_batch_on_oom;

  // --- Done by the agent.
  if (h.checkpoints_to_keep() != 0) {
    out.checkpoints_to_keep = h.checkpoints_to_keep();
  }
  if (h.log_every_steps() > 0) out.log_every_steps = h.log_every_steps();

  // --- Resources.
  const int32_t gpus =
      spec.resources().has_gpus() ? spec.resources().gpus() : defaults::kGpus;
  if (gpus != c.gpu_indices_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu_indices: ", c.gpu_indices_size(),
                     " assigned for a job that needs ", gpus));
  }
  const int32_t processes = spec.resources().processes();
  if (gpus > 0 && processes != 0 && processes != gpus) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.resources.processes: ", processes, " for ", gpus,
                     " GPUs (one process per GPU)"));
  }
  if (processes < 0 || processes > contract::range::kProcesses.hi) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.resources.processes: ",
        *contract::RangeViolation(contract::range::kProcesses, processes)));
  }
  out.ranks = contract::JobRanks(gpus, processes);
  // Every rank sees only its own GPU (CUDA_VISIBLE_DEVICES, rank_group.h).
  t.device = gpus == 0 ? "cpu" : "cuda";
  t.threads =
      c.cpu_threads() > 0 ? c.cpu_threads() : spec.resources().cpu_threads();
  if (t.threads <= 0) t.threads = contract::DefaultCpuThreads(gpus);
  // The job's threads are shared by its ranks.
  t.threads = std::max(1, t.threads / out.ranks);
  // batch_size and gradient_accumulation_steps are per rank in the JobSpec;
  // the trainer's step is the global batch, sharded over the ranks.
  hp.gradient_accumulation_steps *= out.ranks;

  // The trainer will read it with the same parser: a spec it would refuse
  // is refused here, before a process starts.
  absl::StatusOr<contract::TrainSpec> checked =
      contract::ParseTrainSpec(contract::TrainSpecToJson(t));
  if (!checked.ok()) {
    return absl::InvalidArgumentError(checked.status().message());
  }
  if (spec.has_try_model()) {
    FTUNE_ASSIGN_OR_RETURN(out.generate,
                           TranslateTry(spec.try_model(), storage_root));
    absl::StatusOr<contract::TrySpec> tried = contract::ParseTrySpec(
        contract::TrySpecToJson(contract::TrySpec{t, *out.generate}));
    if (!tried.ok())
      return absl::InvalidArgumentError(tried.status().message());
  }
  return out;
}

}  // namespace ftune::agent
