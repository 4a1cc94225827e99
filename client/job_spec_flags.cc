#include "client/job_spec_flags.h"

#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/spec_file.h"
#include "common/ids.h"
#include "common/sha256.h"

namespace ftune::client {
namespace {

absl::Status ReadSpecFile(const std::string& path, v1::JobSpec* spec) {
  return ReadMessageFile(path, "--spec-file", spec);
}

// --flag's value as the proto enum named `prefix` + VALUE (case-insensitive,
// "cosine" -> LR_SCHEDULER_COSINE); `choices` go into the error.
template <typename E>
absl::Status EnumFlag(const FlagValues& flags, absl::string_view name,
                      absl::string_view prefix,
                      bool (*parse)(const std::string&, E*),
                      absl::string_view choices,
                      const std::function<void(E)>& set) {
  if (!flags.Has(name)) return absl::OkStatus();
  const std::string value = flags.Get(name);
  E e;
  if (value.empty() ||
      !parse(absl::StrCat(prefix, absl::AsciiStrToUpper(value)), &e) ||
      static_cast<int>(e) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, ": \"", value, "\" is not one of ", choices));
  }
  set(e);
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::pair<std::string, std::string>>& JobSpecFieldFlags() {
  static const auto* table =
      new std::vector<std::pair<std::string, std::string>>{
          {"model", "model"},
          {"training_file", "training-file"},
          {"validation_file", "validation-file"},
          {"validation_split", "validation-split"},
          {"method", "method"},
          {"lora.rank", "lora-rank"},
          {"lora.alpha", "lora-alpha"},
          {"lora.dropout", "lora-dropout"},
          {"lora.target_modules", "target-modules"},
          {"quantization.type", "quantization-type"},
          {"quantization.double_quant", "double-quant"},
          {"quantization.block_size", "quantization-block-size"},
          {"quantization.compute_dtype", "compute-dtype"},
          {"hyperparameters.epochs", "epochs"},
          {"hyperparameters.max_steps", "max-steps"},
          {"hyperparameters.learning_rate", "learning-rate"},
          {"hyperparameters.lr_scheduler", "lr-scheduler"},
          {"hyperparameters.warmup_steps", "warmup-steps"},
          {"hyperparameters.warmup_ratio", "warmup-ratio"},
          {"hyperparameters.batch_size", "batch-size"},
          {"hyperparameters.gradient_accumulation_steps",
           "gradient-accumulation-steps"},
          {"hyperparameters.max_seq_length", "max-seq-length"},
          {"hyperparameters.packing", "packing"},
          {"hyperparameters.overlength_policy", "overlength-policy"},
          {"hyperparameters.chat_template", "chat-template"},
          {"hyperparameters.weight_decay", "weight-decay"},
          {"hyperparameters.max_grad_norm", "max-grad-norm"},
          {"hyperparameters.seed", "seed"},
          {"hyperparameters.eval_every_steps", "eval-every-steps"},
          {"hyperparameters.checkpoint_every_steps", "checkpoint-every-steps"},
          {"hyperparameters.checkpoints_to_keep", "checkpoints-to-keep"},
          {"hyperparameters.early_stopping_patience",
           "early-stopping-patience"},
          {"hyperparameters.eval_on_start", "eval-on-start"},
          {"hyperparameters.gradient_checkpointing", "gradient-checkpointing"},
          {"hyperparameters.auto_reduce_batch_on_oom",
           "auto-reduce-batch-on-oom"},
          {"hyperparameters.log_every_steps", "log-every-steps"},
          {"resources.gpus", "gpus"},
          {"resources.memory_bytes", "memory-bytes"},
          {"resources.gpu_type", "gpu-type"},
          {"resources.cpu_threads", "cpu-threads"},
          {"resources.processes", "processes"},
          {"priority", "priority"},
          {"labels", "label"},
          {"max_restarts", "max-restarts"},
          {"suffix", "suffix"},
          {"objective", "objective"},
          {"preference.loss", "preference-loss"},
          {"preference.beta", "beta"},
          {"preference.label_smoothing", "label-smoothing"},
          {"preference.orpo_lambda", "orpo-lambda"},
          {"samples.eval_samples", "eval-samples"},
          {"samples.max_new_tokens", "sample-max-new-tokens"},
          {"samples.temperature", "sample-temperature"},
          {"samples.top_k", "sample-top-k"},
          {"samples.top_p", "sample-top-p"},
          {"samples.repetition_penalty", "sample-repetition-penalty"},
          {"samples.seed", "sample-seed"},
          {"samples.stop", "sample-stop"},
          {"task_metrics.eval_task_examples", "eval-task-examples"},
          {"task_metrics.max_new_tokens", "task-max-new-tokens"},
          {"task_metrics.eval_pattern", "eval-pattern"},
          {"task_metrics.select_best_by", "select-best-by"},
      };
  return *table;
}

std::string NewRequestId() {
  std::string bytes = RandomBytes(16);
  return absl::StrCat("ftunectl-", HexEncode(bytes.data(), bytes.size()));
}

absl::StatusOr<v1::CreateJobRequest> BuildCreateJobRequest(
    const FlagValues& flags) {
  v1::CreateJobRequest req;
  v1::JobSpec& spec = *req.mutable_spec();
  if (flags.Has("spec-file")) {
    if (absl::Status s = ReadSpecFile(flags.Get("spec-file"), &spec); !s.ok()) {
      return s;
    }
  }
  v1::Hyperparameters& hp = *spec.mutable_hyperparameters();
  v1::LoraConfig& lora = *spec.mutable_lora();
  v1::Resources& resources = *spec.mutable_resources();
  auto i32 = [](int64_t v) { return static_cast<int32_t>(v); };

  if (flags.Has("model")) spec.set_model(flags.Get("model"));
  if (flags.Has("training-file")) {
    spec.set_training_file(flags.Get("training-file"));
  }
  if (flags.Has("validation-file") && flags.Has("validation-split")) {
    return absl::InvalidArgumentError(
        "--validation-file and --validation-split exclude each other");
  }
  if (flags.Has("validation-file")) {
    spec.set_validation_file(flags.Get("validation-file"));
  }
  if (auto v = flags.GetDouble("validation-split")) {
    spec.set_validation_split(*v);
  }
  if (flags.Has("method")) {
    const std::string method = absl::AsciiStrToLower(flags.Get("method"));
    if (method == "lora") {
      spec.set_method(v1::TRAINING_METHOD_LORA);
    } else if (method == "qlora") {
      spec.set_method(v1::TRAINING_METHOD_QLORA);
    } else if (method == "full") {
      spec.set_method(v1::TRAINING_METHOD_FULL);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--method: \"", flags.Get("method"),
                       "\" is not lora, qlora or full"));
    }
  }
  if (flags.Has("epochs") && flags.Has("max-steps")) {
    return absl::InvalidArgumentError(
        "--epochs and --max-steps exclude each other");
  }
  if (auto v = flags.GetDouble("epochs")) hp.set_epochs(*v);
  if (auto v = flags.GetInt("max-steps")) hp.set_max_steps(*v);
  if (auto v = flags.GetDouble("learning-rate")) hp.set_learning_rate(*v);
  if (auto v = flags.GetInt("batch-size")) hp.set_batch_size(i32(*v));
  if (auto v = flags.GetInt("gradient-accumulation-steps")) {
    hp.set_gradient_accumulation_steps(i32(*v));
  }
  if (auto v = flags.GetInt("max-seq-length")) hp.set_max_seq_length(i32(*v));
  if (flags.Has("warmup-steps") && flags.Has("warmup-ratio")) {
    return absl::InvalidArgumentError(
        "--warmup-steps and --warmup-ratio exclude each other");
  }
  if (auto v = flags.GetInt("warmup-steps")) hp.set_warmup_steps(*v);
  if (auto v = flags.GetDouble("warmup-ratio")) hp.set_warmup_ratio(*v);
  if (absl::Status s = EnumFlag<v1::LrScheduler>(
          flags, "lr-scheduler", "LR_SCHEDULER_", v1::LrScheduler_Parse,
          "linear, cosine, constant",
          [&](v1::LrScheduler e) { hp.set_lr_scheduler(e); });
      !s.ok()) {
    return s;
  }
  if (flags.Has("packing")) hp.set_packing(flags.GetBool("packing"));
  if (absl::Status s = EnumFlag<v1::OverlengthPolicy>(
          flags, "overlength-policy", "OVERLENGTH_POLICY_",
          v1::OverlengthPolicy_Parse, "truncate, drop",
          [&](v1::OverlengthPolicy e) { hp.set_overlength_policy(e); });
      !s.ok()) {
    return s;
  }
  if (auto v = flags.GetDouble("weight-decay")) hp.set_weight_decay(*v);
  if (auto v = flags.GetDouble("max-grad-norm")) hp.set_max_grad_norm(*v);
  if (auto v = flags.GetInt("eval-every-steps")) hp.set_eval_every_steps(*v);
  if (auto v = flags.GetInt("early-stopping-patience")) {
    hp.set_early_stopping_patience(i32(*v));
  }
  if (auto v = flags.GetInt("checkpoint-every-steps")) {
    hp.set_checkpoint_every_steps(*v);
  }
  if (auto v = flags.GetInt("checkpoints-to-keep")) {
    hp.set_checkpoints_to_keep(i32(*v));
  }
  if (auto v = flags.GetInt("log-every-steps")) {
    hp.set_log_every_steps(i32(*v));
  }
  if (flags.Has("eval-on-start")) {
    hp.set_eval_on_start(flags.GetBool("eval-on-start"));
  }
  if (flags.Has("gradient-checkpointing")) {
    hp.set_gradient_checkpointing(flags.GetBool("gradient-checkpointing"));
  }
  if (flags.Has("auto-reduce-batch-on-oom")) {
    hp.set_auto_reduce_batch_on_oom(flags.GetBool("auto-reduce-batch-on-oom"));
  }
  v1::QuantizationConfig quant = spec.quantization();
  if (absl::Status s = EnumFlag<v1::QuantizationType>(
          flags, "quantization-type", "QUANTIZATION_TYPE_",
          v1::QuantizationType_Parse, "nf4, fp4",
          [&](v1::QuantizationType e) { quant.set_type(e); });
      !s.ok()) {
    return s;
  }
  if (flags.Has("double-quant")) {
    quant.set_double_quant(flags.GetBool("double-quant"));
  }
  if (auto v = flags.GetInt("quantization-block-size")) {
    quant.set_block_size(i32(*v));
  }
  if (absl::Status s = EnumFlag<v1::ComputeDtype>(
          flags, "compute-dtype", "COMPUTE_DTYPE_", v1::ComputeDtype_Parse,
          "fp32, bf16, fp16",
          [&](v1::ComputeDtype e) { quant.set_compute_dtype(e); });
      !s.ok()) {
    return s;
  }
  if (quant.ByteSizeLong() > 0 || quant.has_double_quant()) {
    *spec.mutable_quantization() = quant;
  }
  if (flags.Has("chat-template")) {
    hp.set_chat_template(flags.Get("chat-template"));
  }
  if (auto v = flags.GetInt("seed")) hp.set_seed(*v);
  if (auto v = flags.GetInt("lora-rank")) lora.set_rank(i32(*v));
  if (auto v = flags.GetDouble("lora-alpha")) lora.set_alpha(*v);
  if (auto v = flags.GetDouble("lora-dropout")) lora.set_dropout(*v);
  if (flags.Has("target-modules")) {
    lora.clear_target_modules();
    for (absl::string_view m :
         absl::StrSplit(flags.Get("target-modules"), ',', absl::SkipEmpty())) {
      lora.add_target_modules(std::string(absl::StripAsciiWhitespace(m)));
    }
  }
  if (flags.Has("suffix")) spec.set_suffix(flags.Get("suffix"));
  if (absl::Status s = EnumFlag<v1::TrainingObjective>(
          flags, "objective", "TRAINING_OBJECTIVE_",
          v1::TrainingObjective_Parse, "sft, dpo, orpo",
          [&](v1::TrainingObjective e) { spec.set_objective(e); });
      !s.ok()) {
    return s;
  }
  v1::PreferenceConfig preference = spec.preference();
  if (absl::Status s = EnumFlag<v1::PreferenceLoss>(
          flags, "preference-loss", "PREFERENCE_LOSS_",
          v1::PreferenceLoss_Parse, "sigmoid, ipo",
          [&](v1::PreferenceLoss e) { preference.set_loss(e); });
      !s.ok()) {
    return s;
  }
  if (auto v = flags.GetDouble("beta")) preference.set_beta(*v);
  if (auto v = flags.GetDouble("label-smoothing")) {
    preference.set_label_smoothing(*v);
  }
  if (auto v = flags.GetDouble("orpo-lambda")) preference.set_orpo_lambda(*v);
  if (preference.ByteSizeLong() > 0) *spec.mutable_preference() = preference;
  v1::SampleConfig samples = spec.samples();
  if (auto v = flags.GetInt("eval-samples")) samples.set_eval_samples(i32(*v));
  if (auto v = flags.GetInt("sample-max-new-tokens")) {
    samples.set_max_new_tokens(*v);
  }
  if (auto v = flags.GetDouble("sample-temperature")) {
    samples.set_temperature(*v);
  }
  if (auto v = flags.GetInt("sample-top-k")) samples.set_top_k(i32(*v));
  if (auto v = flags.GetDouble("sample-top-p")) samples.set_top_p(*v);
  if (auto v = flags.GetDouble("sample-repetition-penalty")) {
    samples.set_repetition_penalty(*v);
  }
  if (auto v = flags.GetInt("sample-seed")) {
    samples.set_seed(static_cast<uint64_t>(*v));
  }
  for (const std::string& stop : flags.GetAll("sample-stop")) {
    samples.add_stop(stop);
  }
  if (samples.ByteSizeLong() > 0 || samples.has_eval_samples()) {
    *spec.mutable_samples() = samples;
  }
  v1::TaskMetricsConfig task = spec.task_metrics();
  if (auto v = flags.GetInt("eval-task-examples")) {
    task.set_eval_task_examples(i32(*v));
  }
  if (auto v = flags.GetInt("task-max-new-tokens")) task.set_max_new_tokens(*v);
  if (flags.Has("eval-pattern"))
    task.set_eval_pattern(flags.Get("eval-pattern"));
  if (absl::Status s = EnumFlag<v1::SelectBestBy>(
          flags, "select-best-by", "SELECT_BEST_BY_", v1::SelectBestBy_Parse,
          "eval_loss, exact_match, pattern_match",
          [&](v1::SelectBestBy e) { task.set_select_best_by(e); });
      !s.ok()) {
    return s;
  }
  if (task.ByteSizeLong() > 0 || task.has_eval_task_examples()) {
    *spec.mutable_task_metrics() = task;
  }
  if (auto v = flags.GetInt("priority")) spec.set_priority(i32(*v));
  if (auto v = flags.GetInt("max-restarts")) spec.set_max_restarts(i32(*v));
  if (auto v = flags.GetInt("gpus")) resources.set_gpus(i32(*v));
  if (flags.Has("gpu-type")) resources.set_gpu_type(flags.Get("gpu-type"));
  if (auto v = flags.GetInt("cpu-threads")) resources.set_cpu_threads(i32(*v));
  if (auto v = flags.GetInt("processes")) resources.set_processes(i32(*v));
  if (auto v = flags.GetInt("memory-bytes")) resources.set_memory_bytes(*v);
  for (const std::string& label : flags.GetAll("label")) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(label, absl::MaxSplits('=', 1));
    if (kv.first.empty() || label.find('=') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--label: \"", label, "\" is not KEY=VALUE"));
    }
    (*spec.mutable_labels())[kv.first] = kv.second;
  }
  // Messages left empty mean "defaults"; do not send empty ones we created.
  if (hp.ByteSizeLong() == 0) spec.clear_hyperparameters();
  if (lora.ByteSizeLong() == 0) spec.clear_lora();
  if (resources.ByteSizeLong() == 0 && !resources.has_gpus()) {
    spec.clear_resources();
  }

  if (spec.model().empty()) {
    return absl::InvalidArgumentError(
        "\"jobs create\" needs --model (or \"model\" in --spec-file)");
  }
  if (spec.training_file().empty()) {
    return absl::InvalidArgumentError(
        "\"jobs create\" needs --training-file (or \"trainingFile\" in "
        "--spec-file)");
  }
  req.set_request_id(flags.Has("request-id") ? flags.Get("request-id")
                                             : NewRequestId());
  req.set_validate_only(flags.GetBool("validate-only") ||
                        flags.GetBool("dry-run"));
  return req;
}

}  // namespace ftune::client
