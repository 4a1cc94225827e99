#include "worker/agent/spec_translation.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

namespace ftune::agent {
namespace {

using nlohmann::json;

absl::Status Unsupported(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", why, " (not supported by ftune-train)"));
}

// ceil(x) for a product that should be a whole number but carries rounding
// error (0.03 * 100 = 3.0000000000000004 must give 3).
int64_t CeilTolerant(double x) {
  return static_cast<int64_t>(std::ceil(x - 1e-9));
}

}  // namespace

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

absl::StatusOr<TrainerSpec> TranslateAssignment(
    const v1::AssignJobCommand& c, absl::string_view storage_root) {
  const v1::JobSpec& spec = c.spec();
  TrainerSpec out;
  json& j = out.json;

  FTUNE_ASSIGN_OR_RETURN(
      std::string model_dir,
      ResolveStoragePath(storage_root, c.model_path(), "model_path"));
  FTUNE_ASSIGN_OR_RETURN(
      std::string train_data,
      ResolveStoragePath(storage_root, c.training_file_path(),
                         "training_file_path"));
  FTUNE_ASSIGN_OR_RETURN(
      out.checkpoint_dir,
      ResolveStoragePath(storage_root, c.checkpoint_dir(), "checkpoint_dir"));
  FTUNE_ASSIGN_OR_RETURN(
      out.adapter_dir,
      ResolveStoragePath(storage_root, c.adapter_dir(), "adapter_dir"));
  FTUNE_ASSIGN_OR_RETURN(
      out.log_path, ResolveStoragePath(storage_root, c.log_path(), "log_path"));
  j["model_dir"] = model_dir;
  j["base_model_name"] = spec.model().empty() ? c.model_path() : spec.model();
  j["train_data"] = train_data;
  j["output_dir"] = out.adapter_dir;
  j["checkpoint_dir"] = out.checkpoint_dir;
  if (c.resume_checkpoint_path().empty()) {
    // Also picks up a checkpoint an earlier attempt wrote but could not
    // report before it died.
    j["resume_from"] = "auto";
  } else {
    FTUNE_ASSIGN_OR_RETURN(
        std::string resume,
        ResolveStoragePath(storage_root, c.resume_checkpoint_path(),
                           "resume_checkpoint_path"));
    j["resume_from"] = resume;
  }

  // --- Method and adapter shape.
  switch (spec.method()) {
    case v1::TRAINING_METHOD_UNSPECIFIED:
    case v1::TRAINING_METHOD_LORA:
      j["method"] = "lora";
      break;
    case v1::TRAINING_METHOD_QLORA: {
      j["method"] = "qlora";
      const v1::QuantizationConfig& q = spec.quantization();
      json qj;
      switch (q.type()) {
        case v1::QUANTIZATION_TYPE_UNSPECIFIED:
        case v1::QUANTIZATION_TYPE_NF4:
          qj["quant_type"] = "nf4";
          break;
        case v1::QUANTIZATION_TYPE_FP4:
          qj["quant_type"] = "fp4";
          break;
        default:
          return absl::InvalidArgumentError(
              absl::StrCat("spec.quantization.type: unknown value ", q.type()));
      }
      qj["double_quant"] = !q.has_double_quant() || q.double_quant();
      qj["block_size"] = q.block_size() == 0 ? 64 : q.block_size();
      // UNSPECIFIED: the trainer's default for its device (fp32 on CPU).
      switch (q.compute_dtype()) {
        case v1::COMPUTE_DTYPE_UNSPECIFIED:
          break;
        case v1::COMPUTE_DTYPE_FP32:
          qj["compute_dtype"] = "fp32";
          break;
        case v1::COMPUTE_DTYPE_BF16:
          qj["compute_dtype"] = "bf16";
          break;
        case v1::COMPUTE_DTYPE_FP16:
          qj["compute_dtype"] = "fp16";
          break;
        default:
          return absl::InvalidArgumentError(
              absl::StrCat("spec.quantization.compute_dtype: unknown value ",
                           q.compute_dtype()));
      }
      j["quantization"] = qj;
      break;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("spec.method: unknown value ", spec.method()));
  }
  const v1::LoraConfig& lora = spec.lora();
  const int64_t rank = lora.rank() == 0 ? 16 : lora.rank();
  json lj = {{"rank", rank},
             {"alpha", lora.alpha() == 0 ? 2.0 * rank : lora.alpha()},
             {"dropout", lora.dropout()}};
  if (lora.target_modules().empty()) {
    lj["target_modules"] = {"all-linear"};
  } else {
    lj["target_modules"] = std::vector<std::string>(
        lora.target_modules().begin(), lora.target_modules().end());
  }
  j["lora"] = lj;

  // --- Data.
  const v1::Hyperparameters& h = spec.hyperparameters();
  json data = {
      {"format", "text"},
      {"chat_template", h.chat_template().empty() ? "auto" : h.chat_template()},
      {"overlength", h.overlength_policy() == v1::OVERLENGTH_POLICY_DROP
                         ? "drop"
                         : "truncate"}};
  bool has_validation = false;
  switch (spec.validation_case()) {
    case v1::JobSpec::kValidationFile: {
      FTUNE_ASSIGN_OR_RETURN(
          std::string val,
          ResolveStoragePath(storage_root, c.validation_file_path(),
                             "validation_file_path"));
      j["validation_data"] = val;
      has_validation = true;
      break;
    }
    case v1::JobSpec::kValidationSplit:
      data["validation_split"] = spec.validation_split();
      has_validation = spec.validation_split() > 0;
      break;
    case v1::JobSpec::VALIDATION_NOT_SET:
      break;
  }
  j["data"] = data;

  // --- Hyperparameters.
  json hp;
  const char* kHp = "spec.hyperparameters.";
  int64_t max_steps = 0;
  switch (h.length_case()) {
    case v1::Hyperparameters::kMaxSteps:
      max_steps = h.max_steps();
      if (max_steps < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(kHp, "max_steps: must be >= 1"));
      }
      hp["max_steps"] = max_steps;
      break;
    case v1::Hyperparameters::kEpochs:
    case v1::Hyperparameters::LENGTH_NOT_SET: {
      const double epochs =
          h.length_case() == v1::Hyperparameters::kEpochs ? h.epochs() : 3.0;
      if (epochs < 1 || epochs != std::floor(epochs)) {
        return Unsupported(
            absl::StrCat(kHp, "epochs"),
            absl::StrCat(epochs,
                         " is not a whole number of epochs; use a whole "
                         "number or max_steps"));
      }
      hp["epochs"] = static_cast<int64_t>(epochs);
      break;
    }
  }
  hp["learning_rate"] = h.learning_rate() == 0 ? 2e-4 : h.learning_rate();
  switch (h.lr_scheduler()) {
    case v1::LR_SCHEDULER_CONSTANT:
      hp["lr_scheduler"] = "constant";
      break;
    case v1::LR_SCHEDULER_COSINE:
      hp["lr_scheduler"] = "cosine";
      break;
    default:
      hp["lr_scheduler"] = "linear";
  }
  switch (h.warmup_case()) {
    case v1::Hyperparameters::kWarmupSteps:
      hp["warmup_steps"] = h.warmup_steps();
      break;
    case v1::Hyperparameters::kWarmupRatio:
    case v1::Hyperparameters::WARMUP_NOT_SET: {
      const double ratio = h.warmup_case() == v1::Hyperparameters::kWarmupRatio
                               ? h.warmup_ratio()
                               : 0.03;
      if (ratio == 0) {
        hp["warmup_steps"] = 0;
      } else if (max_steps > 0) {
        hp["warmup_steps"] =
            CeilTolerant(ratio * static_cast<double>(max_steps));
      } else {
        // The total step count of an epochs job is known only after the
        // trainer has tokenized and packed the data: it resolves the ratio.
        hp["warmup_ratio"] = ratio;
      }
      break;
    }
  }
  hp["batch_size"] = h.batch_size() == 0 ? 4 : h.batch_size();
  hp["gradient_accumulation_steps"] = h.gradient_accumulation_steps() == 0
                                          ? 1
                                          : h.gradient_accumulation_steps();
  if (h.max_seq_length() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        kHp, "max_seq_length: 0 (the scheduler resolves it before assigning)"));
  }
  hp["max_seq_length"] = h.max_seq_length();
  hp["packing"] = h.packing();
  hp["weight_decay"] = h.weight_decay();
  hp["max_grad_norm"] = h.has_max_grad_norm() ? h.max_grad_norm() : 1.0;
  if (h.has_seed()) {
    if (h.seed() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(kHp, "seed: negative"));
    }
    hp["seed"] = h.seed();
  }
  if (has_validation) {
    int64_t every = h.eval_every_steps();
    if (every == 0 && max_steps > 0) {
      every = CeilTolerant(static_cast<double>(max_steps) / 10.0);
    }
    if (every > 0) {
      hp["eval_every_steps"] = every;
    } else {
      // "At the end of every epoch": the trainer knows the epoch's length.
      hp["eval_every_epoch"] = true;
    }
    hp["early_stopping_patience"] = h.early_stopping_patience();
  } else if (h.early_stopping_patience() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        kHp, "early_stopping_patience: needs a validation source"));
  }
  hp["checkpoint_every_steps"] =
      h.has_checkpoint_every_steps() ? h.checkpoint_every_steps() : 500;
  j["hyperparameters"] = hp;

  // --- Done by the agent.
  out.checkpoints_to_keep =
      h.checkpoints_to_keep() == 0 ? 2 : h.checkpoints_to_keep();
  out.log_every_steps = h.log_every_steps() <= 0 ? 1 : h.log_every_steps();
  out.auto_reduce_batch_on_oom =
      !h.has_auto_reduce_batch_on_oom() || h.auto_reduce_batch_on_oom();
  // Memory only: the gradients are the same either way.
  j["hyperparameters"]["gradient_checkpointing"] =
      !h.has_gradient_checkpointing() || h.gradient_checkpointing();
  // The trainer first retries an out-of-memory step in place with half the
  // micro-batch (no step lost); the agent's restart from the latest
  // checkpoint (attempt_runner.cc) covers what that cannot.
  j["hyperparameters"]["oom_retry"] = out.auto_reduce_batch_on_oom;

  // --- Resources.
  const int32_t gpus =
      spec.resources().has_gpus() ? spec.resources().gpus() : 1;
  if (gpus > 1) {
    return Unsupported("spec.resources.gpus",
                       absl::StrCat(gpus, " GPUs: data-parallel training"));
  }
  if (gpus != c.gpu_indices_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu_indices: ", c.gpu_indices_size(),
                     " assigned for a job that needs ", gpus));
  }
  j["device"] = gpus == 0 ? "cpu" : "cuda";
  int32_t threads =
      c.cpu_threads() > 0 ? c.cpu_threads() : spec.resources().cpu_threads();
  if (threads <= 0) threads = gpus == 0 ? 4 : gpus;
  j["threads"] = threads;
  return out;
}

}  // namespace ftune::agent
