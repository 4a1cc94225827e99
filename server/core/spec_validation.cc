#include "server/core/spec_validation.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/contract/generation.h"
#include "common/contract/limits.h"
#include "common/contract/train_spec.h"
#include "common/quote.h"
#include "proto/convert/job_spec.h"
#include "server/core/labels.h"

namespace ftune::core {
namespace {

namespace range = contract::range;
namespace defaults = contract::defaults;

// Collects errors; the helpers format "must be in [lo, hi], got x" the same
// way everywhere so clients and tests can rely on the wording.
class Errors {
 public:
  void Add(std::string field, std::string message) {
    out_.push_back({std::move(field), std::move(message)});
  }
  // `value` must lie in `range` (common/contract/limits.h, the table the
  // trainer checks against too).
  void Check(const std::string& field, double value,
             const contract::Range& range) {
    if (auto why = contract::RangeViolation(range, value)) Add(field, *why);
  }
  std::vector<FieldError> Take() { return std::move(out_); }

 private:
  std::vector<FieldError> out_;
};

bool AllCharsIn(const std::string& s, bool (*ok)(char)) {
  return std::all_of(s.begin(), s.end(), ok);
}
bool IsSuffixChar(char c) {
  return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-';
}

bool IsChatTemplateName(const std::string& name) {
  const auto& names = contract::ChatTemplateNames();
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string ChatTemplateList() {
  return absl::StrJoin(contract::ChatTemplateNames(), ", ");
}

bool IsQlora(const v1::JobSpec& spec) {
  return spec.method() == v1::TRAINING_METHOD_QLORA;
}

bool HasValidation(const v1::JobSpec& spec) {
  return spec.validation_case() != v1::JobSpec::VALIDATION_NOT_SET;
}

void CheckLora(const v1::LoraConfig& lora,
               const std::vector<std::string>& known, Errors& e) {
  if (lora.rank() != 0)
    e.Check("spec.lora.rank", lora.rank(), range::kLoraRank);
  if (lora.alpha() != 0) {
    e.Check("spec.lora.alpha", lora.alpha(), range::kLoraAlpha);
  }
  e.Check("spec.lora.dropout", lora.dropout(), range::kLoraDropout);
  std::set<std::string> seen;
  const int n = lora.target_modules_size();
  for (int i = 0; i < n; ++i) {
    const std::string& m = lora.target_modules(i);
    const std::string field = absl::StrCat("spec.lora.target_modules[", i, "]");
    if (m == "all-linear") {
      if (n > 1) e.Add(field, "\"all-linear\" cannot be combined with others");
      continue;
    }
    if (std::find(known.begin(), known.end(), m) == known.end()) {
      e.Add(field, absl::StrCat("unsupported target module ", QuoteValue(m),
                                "; expected one of ",
                                absl::StrJoin(known, ", "), " or all-linear"));
      continue;
    }
    if (!seen.insert(m).second) {
      e.Add(field, absl::StrCat("duplicate target module ", QuoteValue(m)));
    }
  }
}

// TRAINING_METHOD_FULL trains every weight: each LoRA field set is a
// mistake (named), as is DPO, whose reference is the frozen base.
// Quantization is CheckQuantization's (only with TRAINING_METHOD_QLORA).
void CheckFullFinetune(const v1::JobSpec& spec, Errors& e) {
  if (spec.method() != v1::TRAINING_METHOD_FULL) return;
  const v1::LoraConfig& l = spec.lora();
  const char* why = "not with TRAINING_METHOD_FULL (every weight is trained)";
  if (l.rank() != 0) e.Add("spec.lora.rank", why);
  if (l.alpha() != 0) e.Add("spec.lora.alpha", why);
  if (l.dropout() != 0) e.Add("spec.lora.dropout", why);
  if (l.target_modules_size() > 0) e.Add("spec.lora.target_modules", why);
  if (spec.objective() == v1::TRAINING_OBJECTIVE_DPO) {
    e.Add("spec.objective",
          "TRAINING_OBJECTIVE_DPO needs the frozen base as its reference, "
          "which TRAINING_METHOD_FULL trains; use SFT or ORPO");
  }
}

void CheckQuantization(const v1::JobSpec& spec, bool cpu, Errors& e) {
  if (!spec.has_quantization()) return;
  if (!IsQlora(spec)) {
    e.Add("spec.quantization", "only allowed with TRAINING_METHOD_QLORA");
    return;
  }
  const v1::QuantizationConfig& q = spec.quantization();
  if (!v1::QuantizationType_IsValid(q.type())) {
    e.Add("spec.quantization.type", absl::StrCat("unknown value ", q.type()));
  }
  const int32_t b = q.block_size();
  if (b != 0 && (!range::kQuantBlockSize.Contains(b) || (b & (b - 1)) != 0)) {
    e.Add(
        "spec.quantization.block_size",
        absl::StrCat("must be a power of two in ",
                     contract::RangeText(range::kQuantBlockSize), ", got ", b));
  }
  if (!v1::ComputeDtype_IsValid(q.compute_dtype())) {
    e.Add("spec.quantization.compute_dtype",
          absl::StrCat("unknown value ", q.compute_dtype()));
  } else if (cpu && (q.compute_dtype() == v1::COMPUTE_DTYPE_BF16 ||
                     q.compute_dtype() == v1::COMPUTE_DTYPE_FP16)) {
    e.Add("spec.quantization.compute_dtype",
          "BF16/FP16 is not available on a CPU job (resources.gpus = 0)");
  }
}

void CheckHyperparameters(const v1::JobSpec& spec, const SpecContext& ctx,
                          Errors& e) {
  const v1::Hyperparameters& h = spec.hyperparameters();
  const std::string p = "spec.hyperparameters.";
  if (h.length_case() == v1::Hyperparameters::kEpochs) {
    e.Check(p + "epochs", h.epochs(), range::kEpochs);
  } else if (h.length_case() == v1::Hyperparameters::kMaxSteps) {
    e.Check(p + "max_steps", static_cast<double>(h.max_steps()),
            range::kMaxSteps);
  }
  if (h.learning_rate() != 0) {
    e.Check(p + "learning_rate", h.learning_rate(), range::kLearningRate);
  }
  if (!v1::LrScheduler_IsValid(h.lr_scheduler())) {
    e.Add(p + "lr_scheduler", absl::StrCat("unknown value ", h.lr_scheduler()));
  }
  if (h.warmup_case() == v1::Hyperparameters::kWarmupSteps) {
    if (!range::kWarmupSteps.Contains(static_cast<double>(h.warmup_steps()))) {
      e.Check(p + "warmup_steps", static_cast<double>(h.warmup_steps()),
              range::kWarmupSteps);
    } else if (h.length_case() == v1::Hyperparameters::kMaxSteps &&
               h.warmup_steps() >= h.max_steps()) {
      e.Add(p + "warmup_steps",
            absl::StrCat("must be less than max_steps (", h.max_steps(),
                         "), got ", h.warmup_steps()));
    }
  } else if (h.warmup_case() == v1::Hyperparameters::kWarmupRatio) {
    e.Check(p + "warmup_ratio", h.warmup_ratio(), range::kWarmupRatio);
  }
  if (h.batch_size() != 0) {
    e.Check(p + "batch_size", h.batch_size(), range::kBatchSize);
  }
  if (h.gradient_accumulation_steps() != 0) {
    e.Check(p + "gradient_accumulation_steps", h.gradient_accumulation_steps(),
            range::kGradientAccumulationSteps);
  }
  if (h.max_seq_length() != 0) {
    contract::Range r = range::kMaxSeqLength;
    if (ctx.model && ctx.model->max_position_embeddings > 0) {
      r.hi = static_cast<double>(ctx.model->max_position_embeddings);
    }
    e.Check(p + "max_seq_length", h.max_seq_length(), r);
  }
  if (!v1::OverlengthPolicy_IsValid(h.overlength_policy())) {
    e.Add(p + "overlength_policy",
          absl::StrCat("unknown value ", h.overlength_policy()));
  }
  const std::string& tmpl = h.chat_template();
  if (!tmpl.empty() && tmpl != "auto" && !IsChatTemplateName(tmpl)) {
    e.Add(p + "chat_template",
          absl::StrCat("unknown chat template ", QuoteValue(tmpl),
                       "; expected auto or one of ", ChatTemplateList()));
  } else if ((tmpl.empty() || tmpl == "auto") && ctx.model &&
             ctx.model->default_chat_template.empty() && ctx.training_file &&
             ctx.training_file->format == "chat") {
    e.Add(p + "chat_template",
          absl::StrCat("model ", ctx.model->name,
                       " has no default chat template; name one (",
                       ChatTemplateList(), ")"));
  }
  e.Check(p + "weight_decay", h.weight_decay(), range::kWeightDecay);
  if (h.has_max_grad_norm()) {
    e.Check(p + "max_grad_norm", h.max_grad_norm(), range::kMaxGradNorm);
  }
  if (h.has_seed()) {
    e.Check(p + "seed", static_cast<double>(h.seed()), range::kSeed);
  }
  e.Check(p + "eval_every_steps", static_cast<double>(h.eval_every_steps()),
          range::kEvalEverySteps);
  if (h.has_checkpoint_every_steps()) {
    e.Check(p + "checkpoint_every_steps",
            static_cast<double>(h.checkpoint_every_steps()),
            range::kCheckpointEverySteps);
  }
  if (h.checkpoints_to_keep() != 0) {
    e.Check(p + "checkpoints_to_keep", h.checkpoints_to_keep(),
            range::kCheckpointsToKeep);
  }
  e.Check(p + "early_stopping_patience", h.early_stopping_patience(),
          range::kEarlyStoppingPatience);
  if (h.early_stopping_patience() > 0 && !HasValidation(spec)) {
    e.Add(p + "early_stopping_patience",
          "needs a validation source (validation_file or validation_split)");
  }
  if (h.eval_on_start() && !HasValidation(spec)) {
    e.Add(p + "eval_on_start",
          "needs a validation source (validation_file or validation_split)");
  }
  if (h.log_every_steps() != 0) {
    e.Check(p + "log_every_steps", h.log_every_steps(), range::kLogEverySteps);
  }
}

bool IsPreferenceFileFormat(const std::string& format) {
  return format == "preference" || format == "chat_preference";
}

bool IsPreferenceObjective(const v1::JobSpec& spec) {
  return spec.objective() == v1::TRAINING_OBJECTIVE_DPO ||
         spec.objective() == v1::TRAINING_OBJECTIVE_ORPO;
}

// The objective, its settings, and the training file's format against it.
void CheckObjective(const v1::JobSpec& spec, const SpecContext& ctx,
                    Errors& e) {
  if (!v1::TrainingObjective_IsValid(spec.objective())) {
    e.Add("spec.objective", absl::StrCat("unknown value ", spec.objective()));
    return;
  }
  const bool preference = IsPreferenceObjective(spec);
  const bool orpo = spec.objective() == v1::TRAINING_OBJECTIVE_ORPO;
  if (ctx.training_file &&
      IsPreferenceFileFormat(ctx.training_file->format) != preference) {
    e.Add("spec.training_file",
          preference
              ? absl::StrCat(v1::TrainingObjective_Name(spec.objective()),
                             " trains on preference pairs; file ",
                             ctx.training_file->id, " has format ",
                             ctx.training_file->format,
                             " (upload a preference or chat_preference file)")
              : absl::StrCat("file ", ctx.training_file->id, " has format ",
                             ctx.training_file->format,
                             " (preference pairs): set objective "
                             "TRAINING_OBJECTIVE_DPO or "
                             "TRAINING_OBJECTIVE_ORPO"));
  }
  if (!spec.has_preference()) return;
  const v1::PreferenceConfig& p = spec.preference();
  const std::string f = "spec.preference";
  if (!preference) {
    e.Add(f,
          "only with objective TRAINING_OBJECTIVE_DPO or "
          "TRAINING_OBJECTIVE_ORPO");
    return;
  }
  if (!v1::PreferenceLoss_IsValid(p.loss())) {
    e.Add(f + ".loss", absl::StrCat("unknown value ", p.loss()));
  }
  if (orpo) {
    if (p.loss() != v1::PREFERENCE_LOSS_UNSPECIFIED) {
      e.Add(f + ".loss", "only with objective TRAINING_OBJECTIVE_DPO");
    }
    if (p.has_beta()) {
      e.Add(f + ".beta", "only with objective TRAINING_OBJECTIVE_DPO");
    }
    if (p.label_smoothing() != 0) {
      e.Add(f + ".label_smoothing",
            "only with objective TRAINING_OBJECTIVE_DPO");
    }
    if (p.has_orpo_lambda()) {
      e.Check(f + ".orpo_lambda", p.orpo_lambda(), range::kOrpoLambda);
    }
    return;
  }
  if (p.has_orpo_lambda()) {
    e.Add(f + ".orpo_lambda", "only with objective TRAINING_OBJECTIVE_ORPO");
  }
  if (p.has_beta()) e.Check(f + ".beta", p.beta(), range::kPreferenceBeta);
  e.Check(f + ".label_smoothing", p.label_smoothing(), range::kLabelSmoothing);
  if (p.loss() == v1::PREFERENCE_LOSS_IPO && p.label_smoothing() != 0) {
    e.Add(f + ".label_smoothing",
          "only with PREFERENCE_LOSS_SIGMOID (IPO has no label smoothing)");
  }
}

// Sample completions: eval_samples needs a validation source and the sft
// objective; the generation settings are checked against limits.h.
void CheckSamples(const v1::JobSpec& spec, Errors& e) {
  if (!spec.has_samples()) return;
  const v1::SampleConfig& c = spec.samples();
  const std::string f = "spec.samples.";
  if (c.has_eval_samples()) {
    e.Check(f + "eval_samples", c.eval_samples(), range::kEvalSamples);
    if (c.eval_samples() > 0 && !HasValidation(spec)) {
      e.Add(f + "eval_samples",
            "needs a validation source (validation_file or "
            "validation_split)");
    }
    if (c.eval_samples() > 0 &&
        (spec.objective() == v1::TRAINING_OBJECTIVE_DPO ||
         spec.objective() == v1::TRAINING_OBJECTIVE_ORPO)) {
      e.Add(f + "eval_samples",
            "only with objective TRAINING_OBJECTIVE_SFT (set 0)");
    }
  }
  if (auto v = contract::CheckGeneration(SampleSpecFromProto(c).generation)) {
    e.Add(f + v->field, v->why);
  }
}

// Task metrics: eval_task_examples, eval_pattern and select_best_by need
// validation examples with reference completions and the sft objective;
// eval_pattern is compiled by the trainer's engine (RE2) here already;
// select_best_by needs the metric it names.
void CheckTaskMetrics(const v1::JobSpec& spec, const SpecContext& ctx,
                      Errors& e) {
  if (!spec.has_task_metrics()) return;
  const v1::TaskMetricsConfig& c = spec.task_metrics();
  const std::string f = "spec.task_metrics.";
  if (c.has_eval_task_examples()) {
    e.Check(f + "eval_task_examples", c.eval_task_examples(),
            range::kEvalTaskExamples);
  }
  if (c.has_max_new_tokens()) {
    e.Check(f + "max_new_tokens", c.max_new_tokens(), range::kMaxNewTokens);
  }
  if (!c.eval_pattern().empty()) {
    if (std::string why = contract::EvalPatternProblem(c.eval_pattern());
        !why.empty()) {
      e.Add(f + "eval_pattern", why);
    }
  }
  absl::StatusOr<contract::TaskMetricsSpec> t = TaskMetricsSpecFromProto(c);
  if (!t.ok()) {
    e.Add(f + "select_best_by", "unknown value");
    return;
  }
  const bool by_task = t->select_best_by != contract::SelectBestBy::kEvalLoss;
  if (by_task && c.has_eval_task_examples() && c.eval_task_examples() == 0) {
    e.Add(f + "select_best_by", absl::StrCat(contract::Name(t->select_best_by),
                                             " needs eval_task_examples > 0"));
  }
  if (t->select_best_by == contract::SelectBestBy::kPatternMatch &&
      c.eval_pattern().empty()) {
    e.Add(f + "select_best_by", "pattern_match needs an eval_pattern");
  }
  // Asked for where the metrics cannot exist: name the field asked.
  std::vector<std::string> asked;
  if (c.has_eval_task_examples() && c.eval_task_examples() > 0) {
    asked.push_back("eval_task_examples");
  }
  if (!c.eval_pattern().empty()) asked.push_back("eval_pattern");
  if (by_task) asked.push_back("select_best_by");
  if (asked.empty()) return;
  std::string why;
  const std::optional<FileFacts>& source =
      spec.validation_file().empty() ? ctx.training_file : ctx.validation_file;
  if (!HasValidation(spec)) {
    why = "needs a validation source (validation_file or validation_split)";
  } else if (spec.objective() == v1::TRAINING_OBJECTIVE_DPO ||
             spec.objective() == v1::TRAINING_OBJECTIVE_ORPO) {
    why =
        "only with objective TRAINING_OBJECTIVE_SFT (preference objectives "
        "have no reference completion)";
  } else if (source && source->format == "text") {
    why = absl::StrCat(
        "needs validation examples with a reference "
        "completion (chat or prompt_completion); file ",
        source->id, " has format text");
  }
  if (!why.empty()) {
    for (const std::string& key : asked) e.Add(f + key, why);
  }
}

// Data-parallel trainer processes (ranks): resources.processes, and what
// the rank count means for other fields.
void CheckProcesses(const v1::JobSpec& spec, Errors& e) {
  const v1::Resources& r = spec.resources();
  e.Check("spec.resources.processes", r.processes(), range::kProcesses);
  const int32_t gpus = r.has_gpus() ? r.gpus() : defaults::kGpus;
  if (gpus > 0 && r.processes() != 0 && r.processes() != gpus) {
    e.Add("spec.resources.processes",
          absl::StrCat("a GPU job runs one process per GPU: must be 0 or ",
                       gpus, " (resources.gpus), got ", r.processes()));
  }
  const int32_t ranks = contract::JobRanks(gpus, r.processes());
  if (ranks <= 1) return;
  // Each process accumulates gradient_accumulation_steps micro-batches: the
  // trainer's step covers all of them (docs/distributed.md).
  const int64_t accum =
      spec.hyperparameters().gradient_accumulation_steps() == 0
          ? defaults::kGradientAccumulationSteps
          : spec.hyperparameters().gradient_accumulation_steps();
  if (range::kGradientAccumulationSteps.Contains(static_cast<double>(accum)) &&
      !range::kGradientAccumulationSteps.Contains(
          static_cast<double>(accum * ranks))) {
    e.Add("spec.hyperparameters.gradient_accumulation_steps",
          absl::StrCat("times the ", ranks, " trainer processes must be in ",
                       contract::RangeText(range::kGradientAccumulationSteps),
                       ", got ", accum * ranks));
  }
}

void CheckResources(const v1::JobSpec& spec, Errors& e) {
  const v1::Resources& r = spec.resources();
  if (r.has_gpus()) e.Check("spec.resources.gpus", r.gpus(), range::kGpus);
  e.Check("spec.resources.memory_bytes", static_cast<double>(r.memory_bytes()),
          range::kMemoryBytes);
  if (!r.gpu_type().empty() && r.has_gpus() && r.gpus() == 0) {
    e.Add("spec.resources.gpu_type", "must be empty for a CPU job (gpus = 0)");
  }
  e.Check("spec.resources.cpu_threads", r.cpu_threads(), range::kCpuThreads);
  CheckProcesses(spec, e);
}

void CheckFile(const std::string& field, const std::string& id,
               const std::optional<FileFacts>& facts,
               const std::string& wrong_purpose, Errors& e) {
  if (id.empty()) {
    e.Add(field, "is required");
  } else if (!facts.has_value()) {
    e.Add(field, absl::StrCat("no file ", QuoteValue(id)));
  } else if (facts->purpose == wrong_purpose) {
    e.Add(field, absl::StrCat("file ", id, " has purpose ", facts->purpose));
  } else if (!facts->ready) {
    e.Add(field, absl::StrCat("file ", id, " is not validated (not ready)"));
  }
}

}  // namespace

const std::vector<std::string>& LlamaLinearModules() {
  static const auto* m =
      new std::vector<std::string>{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                   "gate_proj", "up_proj", "down_proj"};
  return *m;
}

std::vector<FieldError> ValidateJobSpec(const v1::JobSpec& spec,
                                        const SpecContext& ctx) {
  Errors e;
  if (spec.model().empty()) {
    e.Add("spec.model", "is required");
  } else if (!ctx.model.has_value()) {
    e.Add("spec.model", absl::StrCat("unknown model ", QuoteValue(spec.model()),
                                     " (see ModelService.ListModels)"));
  } else if (!ctx.model->unsupported.empty()) {
    e.Add("spec.model",
          absl::StrCat("model ", ctx.model->name,
                       " cannot be trained: ", ctx.model->unsupported));
  }
  CheckFile("spec.training_file", spec.training_file(), ctx.training_file,
            kFilePurposeValidation, e);
  if (spec.validation_case() == v1::JobSpec::kValidationFile) {
    CheckFile("spec.validation_file", spec.validation_file(),
              ctx.validation_file, kFilePurposeTrain, e);
    if (ctx.validation_file && ctx.training_file &&
        ctx.validation_file->format != ctx.training_file->format) {
      e.Add("spec.validation_file",
            absl::StrCat("format ", ctx.validation_file->format,
                         " differs from the training file's ",
                         ctx.training_file->format));
    }
  } else if (spec.validation_case() == v1::JobSpec::kValidationSplit) {
    e.Check("spec.validation_split", spec.validation_split(),
            range::kValidationSplit);
    if (ctx.training_file &&
        range::kValidationSplit.Contains(spec.validation_split())) {
      const int64_t n = ctx.training_file->example_count;
      const int64_t held = static_cast<int64_t>(
          std::ceil(spec.validation_split() * static_cast<double>(n)));
      if (held < 1 || n - held < 1) {
        e.Add("spec.validation_split",
              absl::StrCat("leaves an empty part of the ", n,
                           " training examples"));
      }
    }
  }
  if (!v1::TrainingMethod_IsValid(spec.method())) {
    e.Add("spec.method", absl::StrCat("unknown value ", spec.method()));
  } else if (ctx.model) {
    const bool qlora = IsQlora(spec);
    const bool full = spec.method() == v1::TRAINING_METHOD_FULL;
    if ((qlora && !ctx.model->supports_qlora) ||
        (full && !ctx.model->supports_full) ||
        (!qlora && !full && !ctx.model->supports_lora)) {
      e.Add("spec.method",
            absl::StrCat("model ", ctx.model->name, " does not support ",
                         v1::TrainingMethod_Name(spec.method())));
    }
  }
  CheckLora(spec.lora(),
            ctx.model ? ctx.model->linear_modules : LlamaLinearModules(), e);
  const bool cpu = spec.resources().has_gpus() && spec.resources().gpus() == 0;
  CheckQuantization(spec, cpu, e);
  CheckHyperparameters(spec, ctx, e);
  CheckResources(spec, e);
  e.Check("spec.priority", spec.priority(), range::kPriority);
  // One rule for job and worker labels (core/labels.h); sorted by key so
  // the first error is deterministic.
  for (LabelError& le : CheckLabels(
           {spec.labels().begin(), spec.labels().end()}, "spec.labels")) {
    e.Add(std::move(le.field), std::move(le.message));
  }
  if (spec.has_max_restarts()) {
    e.Check("spec.max_restarts", spec.max_restarts(), range::kMaxRestarts);
  }
  if (spec.suffix().size() > 40 || !AllCharsIn(spec.suffix(), IsSuffixChar)) {
    e.Add("spec.suffix", "must be 0-40 characters of [a-z0-9-]");
  }
  CheckObjective(spec, ctx, e);
  CheckFullFinetune(spec, e);
  CheckSamples(spec, e);
  CheckTaskMetrics(spec, ctx, e);
  return e.Take();
}

std::string JoinFieldErrors(const std::vector<FieldError>& errors) {
  const size_t shown = std::min(errors.size(), kMaxJoinedFieldErrors);
  std::string out =
      absl::StrJoin(errors.begin(), errors.begin() + shown, "; ",
                    [](std::string* out, const FieldError& fe) {
                      absl::StrAppend(out, fe.field, ": ", fe.message);
                    });
  if (errors.size() > shown) {
    absl::StrAppend(&out, "; and ", errors.size() - shown, " more");
  }
  return out;
}

v1::JobSpec ResolveJobSpec(const v1::JobSpec& spec, const ModelFacts& model,
                           int64_t default_seed) {
  v1::JobSpec r = spec;
  if (r.method() == v1::TRAINING_METHOD_UNSPECIFIED) {
    r.set_method(v1::TRAINING_METHOD_LORA);
  }
  // A full fine-tune has no LoRA settings to resolve.
  if (r.method() != v1::TRAINING_METHOD_FULL) {
    v1::LoraConfig* lora = r.mutable_lora();
    if (lora->rank() == 0) lora->set_rank(defaults::kLoraRank);
    if (lora->alpha() == 0) {
      lora->set_alpha(defaults::kLoraAlphaPerRank * lora->rank());
    }
    if (lora->target_modules().empty()) {
      lora->add_target_modules(defaults::kAllLinear);
    }
  }
  if (r.method() == v1::TRAINING_METHOD_QLORA) {
    v1::QuantizationConfig* q = r.mutable_quantization();
    if (q->type() == v1::QUANTIZATION_TYPE_UNSPECIFIED) {
      q->set_type(v1::QUANTIZATION_TYPE_NF4);
    }
    if (!q->has_double_quant()) q->set_double_quant(defaults::kDoubleQuant);
    if (q->block_size() == 0) q->set_block_size(defaults::kQuantBlockSize);
    // compute_dtype stays as given: the worker chooses (job_spec.proto).
  }
  v1::Hyperparameters* h = r.mutable_hyperparameters();
  if (h->length_case() == v1::Hyperparameters::LENGTH_NOT_SET) {
    h->set_epochs(defaults::kEpochs);
  }
  if (h->learning_rate() == 0) h->set_learning_rate(defaults::kLearningRate);
  if (h->lr_scheduler() == v1::LR_SCHEDULER_UNSPECIFIED) {
    h->set_lr_scheduler(v1::LR_SCHEDULER_LINEAR);
  }
  if (h->warmup_case() == v1::Hyperparameters::WARMUP_NOT_SET) {
    h->set_warmup_ratio(defaults::kWarmupRatio);
  }
  if (h->batch_size() == 0) h->set_batch_size(defaults::kBatchSize);
  if (h->gradient_accumulation_steps() == 0) {
    h->set_gradient_accumulation_steps(defaults::kGradientAccumulationSteps);
  }
  if (h->max_seq_length() == 0) {
    h->set_max_seq_length(static_cast<int32_t>(
        contract::DefaultMaxSeqLength(model.max_position_embeddings)));
  }
  if (h->overlength_policy() == v1::OVERLENGTH_POLICY_UNSPECIFIED) {
    h->set_overlength_policy(v1::OVERLENGTH_POLICY_TRUNCATE);
  }
  if (h->chat_template().empty() || h->chat_template() == "auto") {
    // Left "auto" when the model has none: only valid for non-chat files,
    // which ignore it.
    h->set_chat_template(model.default_chat_template.empty()
                             ? "auto"
                             : model.default_chat_template);
  }
  if (!h->has_max_grad_norm()) h->set_max_grad_norm(defaults::kMaxGradNorm);
  if (!h->has_seed()) h->set_seed(default_seed);
  if (!h->has_checkpoint_every_steps()) {
    h->set_checkpoint_every_steps(defaults::kCheckpointEverySteps);
  }
  if (h->checkpoints_to_keep() == 0) {
    h->set_checkpoints_to_keep(defaults::kCheckpointsToKeep);
  }
  if (!h->has_gradient_checkpointing()) {
    h->set_gradient_checkpointing(defaults::kGradientCheckpointing);
  }
  if (!h->has_auto_reduce_batch_on_oom()) {
    h->set_auto_reduce_batch_on_oom(defaults::kAutoReduceBatchOnOom);
  }
  if (h->log_every_steps() == 0)
    h->set_log_every_steps(defaults::kLogEverySteps);
  v1::Resources* res = r.mutable_resources();
  if (!res->has_gpus()) res->set_gpus(defaults::kGpus);
  if (res->cpu_threads() == 0) {
    res->set_cpu_threads(contract::DefaultCpuThreads(res->gpus()));
  }
  if (!r.has_max_restarts()) r.set_max_restarts(defaults::kMaxRestarts);
  if (r.objective() == v1::TRAINING_OBJECTIVE_UNSPECIFIED) {
    r.set_objective(v1::TRAINING_OBJECTIVE_SFT);
  }
  if (r.objective() == v1::TRAINING_OBJECTIVE_DPO) {
    v1::PreferenceConfig* p = r.mutable_preference();
    if (p->loss() == v1::PREFERENCE_LOSS_UNSPECIFIED) {
      p->set_loss(v1::PREFERENCE_LOSS_SIGMOID);
    }
    if (!p->has_beta()) p->set_beta(defaults::kPreferenceBeta);
  } else if (r.objective() == v1::TRAINING_OBJECTIVE_ORPO) {
    v1::PreferenceConfig* p = r.mutable_preference();
    if (!p->has_orpo_lambda()) p->set_orpo_lambda(defaults::kOrpoLambda);
  }
  // Sample completions: the defaults where the job makes them (a
  // validation source and sft) or names their settings; nothing otherwise.
  if (r.has_samples() ||
      (HasValidation(r) && r.objective() == v1::TRAINING_OBJECTIVE_SFT)) {
    v1::SampleConfig* c = r.mutable_samples();
    if (!c->has_eval_samples()) {
      c->set_eval_samples(HasValidation(r) &&
                                  r.objective() == v1::TRAINING_OBJECTIVE_SFT
                              ? defaults::kEvalSamples
                              : 0);
    }
    if (!c->has_max_new_tokens()) {
      c->set_max_new_tokens(defaults::kSampleMaxNewTokens);
    }
    if (!c->has_top_p()) c->set_top_p(defaults::kTopP);
    if (!c->has_repetition_penalty()) {
      c->set_repetition_penalty(defaults::kRepetitionPenalty);
    }
  }
  // Task metrics: likewise.
  if (r.has_task_metrics() ||
      (HasValidation(r) && r.objective() == v1::TRAINING_OBJECTIVE_SFT)) {
    v1::TaskMetricsConfig* c = r.mutable_task_metrics();
    if (!c->has_eval_task_examples()) {
      c->set_eval_task_examples(
          HasValidation(r) && r.objective() == v1::TRAINING_OBJECTIVE_SFT
              ? defaults::kEvalTaskExamples
              : 0);
    }
    if (!c->has_max_new_tokens()) {
      c->set_max_new_tokens(defaults::kTaskMaxNewTokens);
    }
    if (c->select_best_by() == v1::SELECT_BEST_BY_UNSPECIFIED) {
      c->set_select_best_by(v1::SELECT_BEST_BY_EVAL_LOSS);
    }
  }
  return r;
}

v1::JobEstimate EstimateJob(const v1::JobSpec& resolved,
                            int64_t training_examples,
                            int64_t validation_file_examples) {
  v1::JobEstimate est;
  const v1::Hyperparameters& h = resolved.hyperparameters();
  int64_t train = training_examples;
  int64_t val = 0;
  if (resolved.validation_case() == v1::JobSpec::kValidationSplit) {
    val = static_cast<int64_t>(
        std::ceil(resolved.validation_split() * static_cast<double>(train)));
    train -= val;
    if (val < 10) {
      est.add_warnings(absl::StrCat("validation_split leaves ", val,
                                    " validation examples"));
    }
  } else if (resolved.validation_case() == v1::JobSpec::kValidationFile) {
    val = validation_file_examples;
  }
  est.set_train_examples(train);
  est.set_validation_examples(val);
  const int64_t ranks = contract::JobRanks(resolved.resources().gpus(),
                                           resolved.resources().processes());
  const int64_t ebs =
      int64_t{h.batch_size()} * h.gradient_accumulation_steps() * ranks;
  est.set_effective_batch_size(ebs);
  const int64_t per_epoch = ebs > 0 ? (train + ebs - 1) / ebs : 0;
  est.set_steps_per_epoch(per_epoch);
  if (h.length_case() == v1::Hyperparameters::kMaxSteps) {
    est.set_total_steps(h.max_steps());
  } else {
    est.set_total_steps(static_cast<int64_t>(
        std::ceil(h.epochs() * static_cast<double>(per_epoch))));
  }
  est.set_total_steps_approximate(
      h.packing() || h.overlength_policy() == v1::OVERLENGTH_POLICY_DROP);
  if (train > 0 && train < ebs) {
    est.add_warnings(absl::StrCat("only ", train,
                                  " training examples for an effective batch "
                                  "size of ",
                                  ebs));
  }
  if (h.warmup_case() == v1::Hyperparameters::kWarmupSteps &&
      h.warmup_steps() >= est.total_steps() && est.total_steps() > 0) {
    est.add_warnings(absl::StrCat("warmup_steps ", h.warmup_steps(),
                                  " is not below the ", est.total_steps(),
                                  " total steps"));
  }
  return est;
}

}  // namespace ftune::core
