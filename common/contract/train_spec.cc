#include "common/contract/train_spec.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace ftune::contract {
namespace {

using nlohmann::json;

// ------------------------------------------------------ enum spellings --

template <typename E>
struct Spellings;
template <>
struct Spellings<Method> {
  static constexpr std::array<std::pair<Method, const char*>, 3> kAll{
      {{Method::kLora, "lora"},
       {Method::kQlora, "qlora"},
       {Method::kFull, "full"}}};
};
template <>
struct Spellings<Dtype> {
  static constexpr std::array<std::pair<Dtype, const char*>, 4> kAll{
      {{Dtype::kFp32, "fp32"},
       {Dtype::kBf16, "bf16"},
       {Dtype::kFp16, "fp16"},
       {Dtype::kFp64, "fp64"}}};
};
template <>
struct Spellings<QuantType> {
  static constexpr std::array<std::pair<QuantType, const char*>, 2> kAll{
      {{QuantType::kNf4, "nf4"}, {QuantType::kFp4, "fp4"}}};
};
template <>
struct Spellings<LrScheduler> {
  static constexpr std::array<std::pair<LrScheduler, const char*>, 3> kAll{
      {{LrScheduler::kConstant, "constant"},
       {LrScheduler::kLinear, "linear"},
       {LrScheduler::kCosine, "cosine"}}};
};
template <>
struct Spellings<Overlength> {
  static constexpr std::array<std::pair<Overlength, const char*>, 2> kAll{
      {{Overlength::kTruncate, "truncate"}, {Overlength::kDrop, "drop"}}};
};
template <>
struct Spellings<DataFormat> {
  static constexpr std::array<std::pair<DataFormat, const char*>, 2> kAll{
      {{DataFormat::kText, "text"},
       {DataFormat::kPretokenized, "pretokenized"}}};
};

template <>
struct Spellings<Objective> {
  static constexpr std::array<std::pair<Objective, const char*>, 3> kAll{
      {{Objective::kSft, "sft"},
       {Objective::kDpo, "dpo"},
       {Objective::kOrpo, "orpo"}}};
};
template <>
struct Spellings<PreferenceLossKind> {
  static constexpr std::array<std::pair<PreferenceLossKind, const char*>, 2>
      kAll{{{PreferenceLossKind::kSigmoid, "sigmoid"},
            {PreferenceLossKind::kIpo, "ipo"}}};
};

template <typename E>
const char* NameOf(E v) {
  for (const auto& [value, name] : Spellings<E>::kAll) {
    if (value == v) return name;
  }
  return "?";
}

// ------------------------------------------------------------- reading --

absl::Status Bad(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("spec field \"", field, "\": ", why));
}

// Reads the members of one JSON object, naming them by their path from the
// spec's root ("hyperparameters.batch_size") in every error.
class Reader {
 public:
  Reader(const json& object, std::string prefix)
      : j_(object), prefix_(std::move(prefix)) {}

  std::string Path(absl::string_view key) const {
    return prefix_.empty() ? std::string(key) : absl::StrCat(prefix_, ".", key);
  }
  bool Has(const char* key) const {
    auto it = j_.find(key);
    return it != j_.end() && !it->is_null();
  }
  // Every key of the object must be in `known`.
  absl::Status OnlyKeys(const std::set<std::string>& known) const {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (!known.count(it.key())) {
        return Bad(Path(it.key()),
                   absl::StrCat("unknown field (known: ",
                                absl::StrJoin(known, ", "), ")"));
      }
    }
    return absl::OkStatus();
  }
  absl::Status String(const char* key, std::string* out,
                      bool required = false) const {
    if (!Has(key)) return required ? Bad(Path(key), "is required") : Ok();
    const json& v = j_.at(key);
    if (!v.is_string()) return Bad(Path(key), "must be a string");
    *out = v.get<std::string>();
    if (required && out->empty()) return Bad(Path(key), "must not be empty");
    return Ok();
  }
  absl::Status Bool(const char* key, bool* out) const {
    if (!Has(key)) return Ok();
    const json& v = j_.at(key);
    if (!v.is_boolean()) return Bad(Path(key), "must be true or false");
    *out = v.get<bool>();
    return Ok();
  }
  template <typename T>
  absl::Status Int(const char* key, const Range& range, T* out) const {
    if (!Has(key)) return Ok();
    const json& v = j_.at(key);
    if (!v.is_number_integer()) return Bad(Path(key), "must be an integer");
    // Unsigned JSON numbers above 2^63 do not fit: out of every range.
    const double d = v.is_number_unsigned()
                         ? static_cast<double>(v.get<uint64_t>())
                         : static_cast<double>(v.get<int64_t>());
    if (auto why = RangeViolation(range, d)) return Bad(Path(key), *why);
    *out = static_cast<T>(v.is_number_unsigned() ? v.get<uint64_t>()
                                                 : v.get<int64_t>());
    return Ok();
  }
  absl::Status Number(const char* key, const Range& range, double* out) const {
    if (!Has(key)) return Ok();
    const json& v = j_.at(key);
    if (!v.is_number()) return Bad(Path(key), "must be a number");
    const double d = v.get<double>();
    if (auto why = RangeViolation(range, d)) return Bad(Path(key), *why);
    *out = d;
    return Ok();
  }
  template <typename E>
  absl::Status Enum(const char* key, E* out) const {
    if (!Has(key)) return Ok();
    const json& v = j_.at(key);
    std::optional<E> e;
    if (v.is_string()) e = FromName<E>(v.get<std::string>());
    if (!e) return Bad(Path(key), absl::StrCat("must be ", AllNames<E>()));
    *out = *e;
    return Ok();
  }
  // A child object; FAILED when the member is there but not an object.
  absl::StatusOr<Reader> Object(const char* key) const {
    static const json kEmpty = json::object();
    if (!Has(key)) return Reader(kEmpty, Path(key));
    if (!j_.at(key).is_object()) return Bad(Path(key), "must be an object");
    return Reader(j_.at(key), Path(key));
  }
  const json& raw() const { return j_; }

 private:
  static absl::Status Ok() { return absl::OkStatus(); }
  const json& j_;
  std::string prefix_;
};

absl::Status ReadLora(const Reader& r, LoraSpec& l) {
  FTUNE_RETURN_IF_ERROR(
      r.OnlyKeys({"rank", "alpha", "dropout", "target_modules"}));
  FTUNE_RETURN_IF_ERROR(r.Int("rank", range::kLoraRank, &l.rank));
  l.alpha = defaults::kLoraAlphaPerRank * static_cast<double>(l.rank);
  FTUNE_RETURN_IF_ERROR(r.Number("alpha", range::kLoraAlpha, &l.alpha));
  FTUNE_RETURN_IF_ERROR(r.Number("dropout", range::kLoraDropout, &l.dropout));
  if (r.Has("target_modules")) {
    const json& t = r.raw().at("target_modules");
    const std::string field = r.Path("target_modules");
    if (!t.is_array() || t.empty()) {
      return Bad(field, "must be a non-empty list of names");
    }
    l.target_modules.clear();
    std::set<std::string> seen;
    for (const json& n : t) {
      if (!n.is_string() || n.get<std::string>().empty()) {
        return Bad(field, "entries must be non-empty strings");
      }
      const std::string name = n.get<std::string>();
      if (!seen.insert(name).second) {
        return Bad(field, absl::StrCat("\"", name, "\" is listed twice"));
      }
      l.target_modules.push_back(name);
    }
    if (seen.count(defaults::kAllLinear) && seen.size() > 1) {
      return Bad(field, "\"all-linear\" cannot be combined with other names");
    }
  }
  return absl::OkStatus();
}

absl::Status ReadQuantization(const Reader& r, QuantizationSpec& q) {
  FTUNE_RETURN_IF_ERROR(
      r.OnlyKeys({"quant_type", "double_quant", "block_size"}));
  FTUNE_RETURN_IF_ERROR(r.Enum("quant_type", &q.quant_type));
  FTUNE_RETURN_IF_ERROR(r.Bool("double_quant", &q.double_quant));
  FTUNE_RETURN_IF_ERROR(
      r.Int("block_size", range::kQuantBlockSize, &q.block_size));
  if ((q.block_size & (q.block_size - 1)) != 0) {
    return Bad(r.Path("block_size"),
               absl::StrCat("must be a power of two in ",
                            RangeText(range::kQuantBlockSize), ", got ",
                            q.block_size));
  }
  return absl::OkStatus();
}

absl::Status ReadPreference(const Reader& r, Objective objective,
                            PreferenceSpec& p) {
  FTUNE_RETURN_IF_ERROR(
      r.OnlyKeys({"loss", "beta", "label_smoothing", "orpo_lambda"}));
  FTUNE_RETURN_IF_ERROR(r.Enum("loss", &p.loss));
  FTUNE_RETURN_IF_ERROR(r.Number("beta", range::kPreferenceBeta, &p.beta));
  FTUNE_RETURN_IF_ERROR(
      r.Number("label_smoothing", range::kLabelSmoothing, &p.label_smoothing));
  FTUNE_RETURN_IF_ERROR(
      r.Number("orpo_lambda", range::kOrpoLambda, &p.orpo_lambda));
  // A setting the objective does not use is a mistake, not a no-op.
  if (objective == Objective::kOrpo) {
    for (const char* key : {"loss", "beta", "label_smoothing"}) {
      if (r.Has(key))
        return Bad(r.Path(key), "only with \"objective\": \"dpo\"");
    }
  } else if (r.Has("orpo_lambda")) {
    return Bad(r.Path("orpo_lambda"), "only with \"objective\": \"orpo\"");
  }
  if (p.loss == PreferenceLossKind::kIpo && p.label_smoothing > 0) {
    return Bad(r.Path("label_smoothing"),
               "only with \"loss\": \"sigmoid\" (IPO has no label smoothing)");
  }
  return absl::OkStatus();
}

absl::Status ReadSamples(const Reader& r, SampleSpec& out) {
  FTUNE_RETURN_IF_ERROR(
      r.OnlyKeys({"eval_samples", "max_new_tokens", "temperature", "top_k",
                  "top_p", "repetition_penalty", "seed", "stop"}));
  FTUNE_RETURN_IF_ERROR(
      r.Int("eval_samples", range::kEvalSamples, &out.eval_samples));
  GenerationSpec& g = out.generation;
  FTUNE_RETURN_IF_ERROR(
      r.Int("max_new_tokens", range::kMaxNewTokens, &g.max_new_tokens));
  FTUNE_RETURN_IF_ERROR(
      r.Number("temperature", range::kTemperature, &g.temperature));
  FTUNE_RETURN_IF_ERROR(r.Int("top_k", range::kTopK, &g.top_k));
  FTUNE_RETURN_IF_ERROR(r.Number("top_p", range::kTopP, &g.top_p));
  FTUNE_RETURN_IF_ERROR(r.Number(
      "repetition_penalty", range::kRepetitionPenalty, &g.repetition_penalty));
  FTUNE_RETURN_IF_ERROR(r.Int("seed", range::kGenerationSeed, &g.seed));
  if (r.Has("stop")) {
    const json& t = r.raw().at("stop");
    if (!t.is_array()) return Bad(r.Path("stop"), "must be a list of strings");
    for (const json& x : t) {
      if (!x.is_string()) return Bad(r.Path("stop"), "entries must be strings");
      g.stop.push_back(x.get<std::string>());
    }
  }
  if (auto v = CheckGeneration(g)) return Bad(r.Path(v->field), v->why);
  return absl::OkStatus();
}

absl::Status ReadTaskMetrics(const Reader& r, TaskMetricsSpec& out) {
  FTUNE_RETURN_IF_ERROR(r.OnlyKeys({"eval_task_examples", "max_new_tokens",
                                    "eval_pattern", "select_best_by"}));
  FTUNE_RETURN_IF_ERROR(r.Int("eval_task_examples", range::kEvalTaskExamples,
                              &out.eval_task_examples));
  FTUNE_RETURN_IF_ERROR(
      r.Int("max_new_tokens", range::kMaxNewTokens, &out.max_new_tokens));
  FTUNE_RETURN_IF_ERROR(r.String("eval_pattern", &out.eval_pattern));
  if (r.Has("eval_pattern")) {
    if (std::string why = EvalPatternProblem(out.eval_pattern); !why.empty())
      return Bad(r.Path("eval_pattern"), why);
  }
  std::string by;
  FTUNE_RETURN_IF_ERROR(r.String("select_best_by", &by));
  if (r.Has("select_best_by")) {
    std::optional<SelectBestBy> parsed = ParseSelectBestBy(by);
    if (!parsed) {
      return Bad(r.Path("select_best_by"),
                 "must be \"eval_loss\", \"exact_match\" or "
                 "\"pattern_match\"");
    }
    out.select_best_by = *parsed;
  }
  if (out.select_best_by == SelectBestBy::kPatternMatch &&
      out.eval_pattern.empty()) {
    return Bad(r.Path("select_best_by"),
               "\"pattern_match\" needs an eval_pattern");
  }
  if (out.select_best_by != SelectBestBy::kEvalLoss &&
      out.eval_task_examples == 0) {
    return Bad(r.Path("select_best_by"),
               absl::StrCat("\"", Name(out.select_best_by),
                            "\" needs eval_task_examples > 0"));
  }
  return absl::OkStatus();
}

absl::Status ReadData(const Reader& r, DataSpec& d) {
  FTUNE_RETURN_IF_ERROR(r.OnlyKeys(
      {"format", "chat_template", "overlength", "validation_split"}));
  FTUNE_RETURN_IF_ERROR(r.Enum("format", &d.format));
  FTUNE_RETURN_IF_ERROR(r.String("chat_template", &d.chat_template));
  const auto& names = ChatTemplateNames();
  if (d.chat_template != "auto" &&
      std::find(names.begin(), names.end(), d.chat_template) == names.end()) {
    return Bad(r.Path("chat_template"),
               absl::StrCat("unknown chat template \"", d.chat_template,
                            "\"; expected auto or one of ",
                            absl::StrJoin(names, ", ")));
  }
  FTUNE_RETURN_IF_ERROR(r.Enum("overlength", &d.overlength));
  if (r.Has("validation_split") && r.raw().at("validation_split").is_number() &&
      r.raw().at("validation_split").get<double>() == 0) {
    d.validation_split = 0;  // explicitly none
  } else {
    FTUNE_RETURN_IF_ERROR(r.Number("validation_split", range::kValidationSplit,
                                   &d.validation_split));
  }
  return absl::OkStatus();
}

absl::Status ReadHyperparameters(const Reader& r, HyperParameters& h) {
  FTUNE_RETURN_IF_ERROR(r.OnlyKeys(
      {"epochs", "max_steps", "learning_rate", "lr_scheduler", "warmup_steps",
       "warmup_ratio", "batch_size", "gradient_accumulation_steps",
       "max_seq_length", "packing", "weight_decay", "max_grad_norm", "seed",
       "eval_every_steps", "checkpoint_every_steps", "early_stopping_patience",
       "eval_on_start", "gradient_checkpointing", "oom_retry"}));
  if (r.Has("epochs") && r.Has("max_steps")) {
    return Bad(r.Path("max_steps"), "set epochs or max_steps, not both");
  }
  FTUNE_RETURN_IF_ERROR(r.Number("epochs", range::kEpochs, &h.epochs));
  FTUNE_RETURN_IF_ERROR(r.Int("max_steps", range::kMaxSteps, &h.max_steps));
  FTUNE_RETURN_IF_ERROR(
      r.Number("learning_rate", range::kLearningRate, &h.learning_rate));
  FTUNE_RETURN_IF_ERROR(r.Enum("lr_scheduler", &h.lr_scheduler));
  // Warmup in steps or as a ratio: naming one turns the other off.
  if (r.Has("warmup_steps") && !r.Has("warmup_ratio")) h.warmup_ratio = 0;
  FTUNE_RETURN_IF_ERROR(
      r.Int("warmup_steps", range::kWarmupSteps, &h.warmup_steps));
  FTUNE_RETURN_IF_ERROR(
      r.Number("warmup_ratio", range::kWarmupRatio, &h.warmup_ratio));
  if (h.warmup_steps > 0 && h.warmup_ratio > 0) {
    return Bad(r.Path("warmup_ratio"),
               "set warmup_steps or warmup_ratio, not both");
  }
  if (h.max_steps > 0 && h.warmup_steps >= h.max_steps) {
    return Bad(r.Path("warmup_steps"),
               absl::StrCat("must be less than max_steps (", h.max_steps,
                            "), got ", h.warmup_steps));
  }
  FTUNE_RETURN_IF_ERROR(r.Int("batch_size", range::kBatchSize, &h.batch_size));
  FTUNE_RETURN_IF_ERROR(r.Int("gradient_accumulation_steps",
                              range::kGradientAccumulationSteps,
                              &h.gradient_accumulation_steps));
  // 0 (the default) resolves against the model.
  if (!(r.Has("max_seq_length") && r.raw().at("max_seq_length") == 0)) {
    FTUNE_RETURN_IF_ERROR(
        r.Int("max_seq_length", range::kMaxSeqLength, &h.max_seq_length));
  }
  FTUNE_RETURN_IF_ERROR(r.Bool("packing", &h.packing));
  FTUNE_RETURN_IF_ERROR(
      r.Number("weight_decay", range::kWeightDecay, &h.weight_decay));
  FTUNE_RETURN_IF_ERROR(
      r.Number("max_grad_norm", range::kMaxGradNorm, &h.max_grad_norm));
  FTUNE_RETURN_IF_ERROR(r.Int("seed", range::kSeed, &h.seed));
  FTUNE_RETURN_IF_ERROR(
      r.Int("eval_every_steps", range::kEvalEverySteps, &h.eval_every_steps));
  FTUNE_RETURN_IF_ERROR(r.Int("checkpoint_every_steps",
                              range::kCheckpointEverySteps,
                              &h.checkpoint_every_steps));
  FTUNE_RETURN_IF_ERROR(r.Int("early_stopping_patience",
                              range::kEarlyStoppingPatience,
                              &h.early_stopping_patience));
  FTUNE_RETURN_IF_ERROR(r.Bool("eval_on_start", &h.eval_on_start));
  FTUNE_RETURN_IF_ERROR(
      r.Bool("gradient_checkpointing", &h.gradient_checkpointing));
  FTUNE_RETURN_IF_ERROR(r.Bool("oom_retry", &h.oom_retry));
  return absl::OkStatus();
}

}  // namespace

const char* Name(Method v) { return NameOf(v); }
const char* Name(Dtype v) { return NameOf(v); }
const char* Name(QuantType v) { return NameOf(v); }
const char* Name(LrScheduler v) { return NameOf(v); }
const char* Name(Overlength v) { return NameOf(v); }
const char* Name(DataFormat v) { return NameOf(v); }
const char* Name(Objective v) { return NameOf(v); }
const char* Name(PreferenceLossKind v) { return NameOf(v); }

template <typename E>
std::optional<E> FromName(absl::string_view name) {
  for (const auto& [value, spelling] : Spellings<E>::kAll) {
    if (name == spelling) return value;
  }
  return std::nullopt;
}

template <typename E>
std::string AllNames() {
  return absl::StrJoin(Spellings<E>::kAll, ", ",
                       [](std::string* out, const auto& entry) {
                         absl::StrAppend(out, "\"", entry.second, "\"");
                       });
}

#define FTUNE_CONTRACT_ENUM_(E)                             \
  template std::optional<E> FromName<E>(absl::string_view); \
  template std::string AllNames<E>();
FTUNE_CONTRACT_ENUM_(Method)
FTUNE_CONTRACT_ENUM_(Dtype)
FTUNE_CONTRACT_ENUM_(QuantType)
FTUNE_CONTRACT_ENUM_(LrScheduler)
FTUNE_CONTRACT_ENUM_(Overlength)
FTUNE_CONTRACT_ENUM_(DataFormat)
FTUNE_CONTRACT_ENUM_(Objective)
FTUNE_CONTRACT_ENUM_(PreferenceLossKind)
#undef FTUNE_CONTRACT_ENUM_

const std::vector<std::string>& ChatTemplateNames() {
  static const auto* names = new std::vector<std::string>{
      "chatml", "llama3", "llama2", "alpaca", "phi3", "gemma"};
  return *names;
}

bool IsDeviceName(absl::string_view name) {
  int64_t index = 0;
  return name == "cpu" || name == "cuda" ||
         (absl::StartsWith(name, "cuda:") &&
          absl::SimpleAtoi(name.substr(5), &index) && index >= 0);
}

Dtype DefaultDtype(absl::string_view device) {
  return absl::StartsWith(device, "cuda") ? Dtype::kBf16 : Dtype::kFp32;
}

Dtype ComputeDtype(const TrainSpec& spec) {
  return spec.dtype.value_or(DefaultDtype(spec.device));
}

std::string TrainSpecToJson(const TrainSpec& s) {
  const HyperParameters& h = s.hp;
  json hp = {{"learning_rate", h.learning_rate},
             {"lr_scheduler", Name(h.lr_scheduler)},
             {"warmup_steps", h.warmup_steps},
             {"warmup_ratio", h.warmup_ratio},
             {"batch_size", h.batch_size},
             {"gradient_accumulation_steps", h.gradient_accumulation_steps},
             {"max_seq_length", h.max_seq_length},
             {"packing", h.packing},
             {"weight_decay", h.weight_decay},
             {"max_grad_norm", h.max_grad_norm},
             {"seed", h.seed},
             {"eval_every_steps", h.eval_every_steps},
             {"checkpoint_every_steps", h.checkpoint_every_steps},
             {"early_stopping_patience", h.early_stopping_patience},
             {"eval_on_start", h.eval_on_start},
             {"gradient_checkpointing", h.gradient_checkpointing},
             {"oom_retry", h.oom_retry}};
  if (h.max_steps > 0) {
    hp["max_steps"] = h.max_steps;
  } else {
    hp["epochs"] = h.epochs;
  }
  json j = {{"model_dir", s.model_dir},
            {"base_model_name", s.base_model_name},
            {"train_data", s.train_data},
            {"validation_data", s.validation_data},
            {"data",
             {{"format", Name(s.data.format)},
              {"chat_template", s.data.chat_template},
              {"overlength", Name(s.data.overlength)},
              {"validation_split", s.data.validation_split}}},
            {"method", Name(s.method)},
            {"hyperparameters", hp},
            {"output_dir", s.output_dir},
            {"checkpoint_dir", s.checkpoint_dir},
            {"resume_from", s.resume_from},
            {"merge_output_dir", s.merge_output_dir},
            {"threads", s.threads},
            {"device", s.device}};
  if (s.method != Method::kFull) {  // full fine-tuning has no LoRA
    j["lora"] = {{"rank", s.lora.rank},
                 {"alpha", s.lora.alpha},
                 {"dropout", s.lora.dropout},
                 {"target_modules", s.lora.target_modules}};
  }
  if (s.method == Method::kQlora) {
    j["quantization"] = {{"quant_type", Name(s.quantization.quant_type)},
                         {"double_quant", s.quantization.double_quant},
                         {"block_size", s.quantization.block_size}};
  }
  j["objective"] = Name(s.objective);
  if (s.objective == Objective::kDpo) {
    j["preference"] = {{"loss", Name(s.preference.loss)},
                       {"beta", s.preference.beta},
                       {"label_smoothing", s.preference.label_smoothing}};
  } else if (s.objective == Objective::kOrpo) {
    j["preference"] = {{"orpo_lambda", s.preference.orpo_lambda}};
  }
  const GenerationSpec& g = s.samples.generation;
  // The count that applies (ParseTrainSpec refuses a non-zero one named
  // where it cannot).
  const bool samples_apply =
      (!s.validation_data.empty() || s.data.validation_split > 0) &&
      s.objective == Objective::kSft && s.data.format == DataFormat::kText;
  j["samples"] = {{"eval_samples", samples_apply ? s.samples.eval_samples : 0},
                  {"max_new_tokens", g.max_new_tokens},
                  {"temperature", g.temperature},
                  {"top_k", g.top_k},
                  {"top_p", g.top_p},
                  {"repetition_penalty", g.repetition_penalty},
                  {"seed", g.seed},
                  {"stop", g.stop}};
  const TaskMetricsSpec& t = s.task_metrics;
  j["task_metrics"] = {
      {"eval_task_examples", samples_apply ? t.eval_task_examples : 0},
      {"max_new_tokens", t.max_new_tokens}};
  if (samples_apply) {
    j["task_metrics"]["select_best_by"] = Name(t.select_best_by);
    if (!t.eval_pattern.empty())
      j["task_metrics"]["eval_pattern"] = t.eval_pattern;
  }
  if (s.dtype) j["dtype"] = Name(*s.dtype);
  if (!s.job_id.empty()) j["job_id"] = s.job_id;
  return j.dump(2);
}

// method "full" trains every base weight: LoRA settings, a merged copy and
// DPO's frozen reference (the LoRA-free base) do not exist there.
absl::Status CheckFullFinetune(const Reader& r, const TrainSpec& s) {
  if (s.method != Method::kFull) return absl::OkStatus();
  if (r.Has("lora")) {
    return Bad("lora",
               "not with \"method\": \"full\" (every weight is trained; "
               "rank, alpha, dropout and target_modules are LoRA's)");
  }
  if (!s.merge_output_dir.empty()) {
    return Bad("merge_output_dir",
               "not with \"method\": \"full\" (output_dir is already a "
               "whole model)");
  }
  if (s.objective == Objective::kDpo) {
    return Bad("objective",
               "\"dpo\" needs the frozen base as its reference, which "
               "\"method\": \"full\" trains; use \"sft\" or \"orpo\"");
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainSpec> ParseTrainSpec(absl::string_view text) {
  const json j = json::parse(text.begin(), text.end(), nullptr,
                             /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("spec: not a JSON object");
  }
  const Reader r(j, "");
  FTUNE_RETURN_IF_ERROR(r.OnlyKeys({"model_dir",
                                    "base_model_name",
                                    "train_data",
                                    "validation_data",
                                    "data",
                                    "method",
                                    "lora",
                                    "quantization",
                                    "hyperparameters",
                                    "output_dir",
                                    "checkpoint_dir",
                                    "resume_from",
                                    "merge_output_dir",
                                    "threads",
                                    "dtype",
                                    "device",
                                    "objective",
                                    "preference",
                                    "samples",
                                    "task_metrics",
                                    "job_id"}));
  TrainSpec s;
  s.source_json = std::string(text);
  FTUNE_RETURN_IF_ERROR(r.String("model_dir", &s.model_dir, true));
  FTUNE_RETURN_IF_ERROR(r.String("base_model_name", &s.base_model_name));
  if (s.base_model_name.empty()) s.base_model_name = s.model_dir;
  FTUNE_RETURN_IF_ERROR(r.String("train_data", &s.train_data, true));
  FTUNE_RETURN_IF_ERROR(r.String("validation_data", &s.validation_data));
  FTUNE_RETURN_IF_ERROR(r.Enum("method", &s.method));
  FTUNE_RETURN_IF_ERROR(r.String("output_dir", &s.output_dir, true));
  FTUNE_RETURN_IF_ERROR(r.String("checkpoint_dir", &s.checkpoint_dir));
  FTUNE_RETURN_IF_ERROR(r.String("resume_from", &s.resume_from));
  FTUNE_RETURN_IF_ERROR(r.String("merge_output_dir", &s.merge_output_dir));
  FTUNE_RETURN_IF_ERROR(r.Int("threads", Range{0, 4096}, &s.threads));
  FTUNE_RETURN_IF_ERROR(r.String("device", &s.device));
  FTUNE_RETURN_IF_ERROR(r.String("job_id", &s.job_id));
  if (!IsDeviceName(s.device)) {
    return Bad("device", "must be \"cpu\", \"cuda\" or \"cuda:N\"");
  }
  const bool gpu = s.device != "cpu";
  if (r.Has("dtype")) {
    Dtype d = Dtype::kFp32;
    FTUNE_RETURN_IF_ERROR(r.Enum("dtype", &d));
    s.dtype = d;
  }
  const Dtype dtype = ComputeDtype(s);
  if (dtype == Dtype::kFp16 && !gpu) {
    return Bad("dtype",
               "\"fp16\" needs a CUDA device; on CPU use \"fp32\" "
               "or \"bf16\"");
  }

  FTUNE_ASSIGN_OR_RETURN(Reader lora, r.Object("lora"));
  FTUNE_RETURN_IF_ERROR(ReadLora(lora, s.lora));
  FTUNE_ASSIGN_OR_RETURN(Reader quant, r.Object("quantization"));
  if (r.Has("quantization") && s.method != Method::kQlora) {
    return Bad("quantization", "only with \"method\": \"qlora\"");
  }
  FTUNE_RETURN_IF_ERROR(ReadQuantization(quant, s.quantization));
  if (s.method == Method::kQlora && dtype == Dtype::kFp64) {
    return Bad("dtype", "qlora computes in fp32, bf16 or fp16");
  }
  FTUNE_RETURN_IF_ERROR(r.Enum("objective", &s.objective));
  FTUNE_RETURN_IF_ERROR(CheckFullFinetune(r, s));
  FTUNE_ASSIGN_OR_RETURN(Reader pref, r.Object("preference"));
  if (r.Has("preference") && s.objective == Objective::kSft) {
    return Bad("preference", "only with \"objective\": \"dpo\" or \"orpo\"");
  }
  FTUNE_RETURN_IF_ERROR(ReadPreference(pref, s.objective, s.preference));
  FTUNE_ASSIGN_OR_RETURN(Reader data, r.Object("data"));
  FTUNE_RETURN_IF_ERROR(ReadData(data, s.data));
  if (s.objective != Objective::kSft &&
      s.data.format == DataFormat::kPretokenized) {
    return Bad("data.format",
               "preference objectives read text preference pairs; "
               "\"pretokenized\" is for sft");
  }
  if (s.data.validation_split > 0 && !s.validation_data.empty()) {
    return Bad("data.validation_split",
               "must be 0 when validation_data is given");
  }
  if (s.data.validation_split > 0 &&
      s.data.format == DataFormat::kPretokenized) {
    return Bad("data.validation_split",
               "needs \"format\": \"text\"; pre-tokenized data takes "
               "validation_data");
  }
  FTUNE_ASSIGN_OR_RETURN(Reader hyper, r.Object("hyperparameters"));
  FTUNE_RETURN_IF_ERROR(ReadHyperparameters(hyper, s.hp));

  const bool validates =
      !s.validation_data.empty() || s.data.validation_split > 0;
  if (s.hp.eval_every_steps > 0 && !validates) {
    return Bad("hyperparameters.eval_every_steps",
               "needs validation_data or data.validation_split");
  }
  if (s.hp.early_stopping_patience > 0 && !validates) {
    return Bad("hyperparameters.early_stopping_patience",
               "needs validation_data or data.validation_split");
  }
  if (s.hp.eval_on_start && !validates) {
    return Bad("hyperparameters.eval_on_start",
               "needs validation_data or data.validation_split");
  }
  FTUNE_ASSIGN_OR_RETURN(Reader samples, r.Object("samples"));
  FTUNE_RETURN_IF_ERROR(ReadSamples(samples, s.samples));
  // Named explicitly where it cannot apply: a mistake, not a no-op.
  if (samples.Has("eval_samples") && s.samples.eval_samples > 0) {
    if (!validates) {
      return Bad("samples.eval_samples",
                 "needs validation_data or data.validation_split");
    }
    if (s.objective != Objective::kSft) {
      return Bad("samples.eval_samples",
                 "only with \"objective\": \"sft\" (set 0)");
    }
    if (s.data.format == DataFormat::kPretokenized) {
      return Bad("samples.eval_samples",
                 "needs \"format\": \"text\" (prompts are text)");
    }
  }
  FTUNE_ASSIGN_OR_RETURN(Reader task, r.Object("task_metrics"));
  FTUNE_RETURN_IF_ERROR(ReadTaskMetrics(task, s.task_metrics));
  // Task metrics asked for where they cannot exist: a mistake, not a no-op.
  for (const char* key :
       {"eval_task_examples", "eval_pattern", "select_best_by"}) {
    const bool asked =
        task.Has(key) &&
        (std::string(key) == "eval_task_examples"
             ? s.task_metrics.eval_task_examples > 0
         : std::string(key) == "select_best_by"
             ? s.task_metrics.select_best_by != SelectBestBy::kEvalLoss
             : true);
    if (!asked) continue;
    const std::string field = task.Path(key);
    if (!validates) {
      return Bad(field, "needs validation_data or data.validation_split");
    }
    if (s.objective != Objective::kSft) {
      return Bad(field,
                 "task metrics need \"objective\": \"sft\" (preference "
                 "objectives have no reference completion)");
    }
    if (s.data.format == DataFormat::kPretokenized) {
      return Bad(field, "needs \"format\": \"text\" (completions are text)");
    }
  }
  // A checkpoint interval named explicitly needs somewhere to write; the
  // default one applies only where there is a checkpoint_dir.
  if (s.checkpoint_dir.empty() && ((hyper.Has("checkpoint_every_steps") &&
                                    s.hp.checkpoint_every_steps > 0) ||
                                   !s.resume_from.empty())) {
    return Bad("checkpoint_dir",
               "is required with checkpoint_every_steps or resume_from");
  }
  return s;
}

absl::StatusOr<TrainSpec> LoadTrainSpec(const std::string& path) {
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto spec = ParseTrainSpec(text);
  if (!spec.ok()) return Annotate(spec.status(), path);
  return spec;
}

}  // namespace ftune::contract
