#include "worker/train/spec.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/train/text/chat_template.h"

namespace ftune::train {
namespace {

using nlohmann::json;

absl::Status Bad(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("spec field \"", field, "\": ", why));
}

absl::Status CheckKeys(const json& j, absl::string_view where,
                       const std::set<std::string>& known) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!known.count(it.key())) {
      return Bad(absl::StrCat(where, where.empty() ? "" : ".", it.key()),
                 absl::StrCat("unknown field (known: ",
                              absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status Str(const json& j, const char* key, const std::string& path,
                 bool required, std::string* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return required ? Bad(path, "is required") : absl::OkStatus();
  }
  if (!it->is_string()) return Bad(path, "must be a string");
  *out = it->get<std::string>();
  if (required && out->empty()) return Bad(path, "must not be empty");
  return absl::OkStatus();
}

template <typename T>
absl::Status Int(const json& j, const char* key, const std::string& path,
                 int64_t min, T* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number_integer()) return Bad(path, "must be an integer");
  int64_t v = it->get<int64_t>();
  if (v < min) return Bad(path, absl::StrCat("must be >= ", min));
  *out = static_cast<T>(v);
  return absl::OkStatus();
}

absl::Status Num(const json& j, const char* key, const std::string& path,
                 double min, double max, bool max_inclusive, double* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) return Bad(path, "must be a number");
  double v = it->get<double>();
  if (!(v >= min) || v > max || (!max_inclusive && v == max)) {
    return Bad(path, absl::StrCat("must be in [", min, ", ", max,
                                  max_inclusive ? "]" : ")"));
  }
  *out = v;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TrainSpec> ParseTrainSpec(absl::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError("spec: not a JSON object");
  FTUNE_RETURN_IF_ERROR(CheckKeys(
      j, "",
      {"model_dir", "base_model_name", "train_data", "validation_data", "data",
       "method", "lora", "quantization", "hyperparameters", "output_dir",
       "checkpoint_dir", "resume_from", "merge_output_dir", "threads", "dtype",
       "device"}));
  TrainSpec s;
  s.source_json = std::string(text);
  FTUNE_RETURN_IF_ERROR(Str(j, "model_dir", "model_dir", true, &s.model_dir));
  s.base_model_name = s.model_dir;
  FTUNE_RETURN_IF_ERROR(
      Str(j, "base_model_name", "base_model_name", false, &s.base_model_name));
  FTUNE_RETURN_IF_ERROR(
      Str(j, "train_data", "train_data", true, &s.train_data));
  FTUNE_RETURN_IF_ERROR(
      Str(j, "validation_data", "validation_data", false, &s.validation_data));
  FTUNE_RETURN_IF_ERROR(Str(j, "method", "method", false, &s.method));
  if (s.method != "lora" && s.method != "qlora")
    return Bad("method", "must be \"lora\" or \"qlora\"");
  FTUNE_RETURN_IF_ERROR(
      Str(j, "output_dir", "output_dir", true, &s.output_dir));
  FTUNE_RETURN_IF_ERROR(
      Str(j, "checkpoint_dir", "checkpoint_dir", false, &s.checkpoint_dir));
  FTUNE_RETURN_IF_ERROR(
      Str(j, "resume_from", "resume_from", false, &s.resume_from));
  FTUNE_RETURN_IF_ERROR(Str(j, "merge_output_dir", "merge_output_dir", false,
                            &s.merge_output_dir));
  FTUNE_RETURN_IF_ERROR(Int(j, "threads", "threads", 0, &s.threads));
  FTUNE_RETURN_IF_ERROR(Str(j, "device", "device", false, &s.device));
  if (!IsDeviceName(s.device))
    return Bad("device", "must be \"cpu\", \"cuda\" or \"cuda:N\"");
  const bool gpu = s.device != "cpu";
  FTUNE_RETURN_IF_ERROR(Str(j, "dtype", "dtype", false, &s.dtype));
  if (s.dtype != "float32" && s.dtype != "float64" && s.dtype != "bfloat16" &&
      s.dtype != "float16")
    return Bad("dtype",
               "must be \"float32\", \"float64\", \"bfloat16\" or "
               "\"float16\"");
  if (gpu && !j.contains("dtype")) s.dtype = "bfloat16";  // the GPU default
  if (s.dtype == "float16" && !gpu)
    return Bad("dtype",
               "\"float16\" needs a CUDA device; on CPU use "
               "\"float32\" or \"bfloat16\"");

  if (j.contains("lora")) {
    const json& l = j["lora"];
    if (!l.is_object()) return Bad("lora", "must be an object");
    FTUNE_RETURN_IF_ERROR(
        CheckKeys(l, "lora", {"rank", "alpha", "dropout", "target_modules"}));
    FTUNE_RETURN_IF_ERROR(Int(l, "rank", "lora.rank", 1, &s.lora.rank));
    FTUNE_RETURN_IF_ERROR(
        Num(l, "alpha", "lora.alpha", 1e-9, 1e9, true, &s.lora.alpha));
    FTUNE_RETURN_IF_ERROR(Num(l, "dropout", "lora.dropout", 0, 1,
                              /*max_inclusive=*/false, &s.lora.dropout));
    if (l.contains("target_modules")) {
      const json& t = l["target_modules"];
      if (!t.is_array() || t.empty())
        return Bad("lora.target_modules", "must be a non-empty list of names");
      s.lora.target_modules.clear();
      for (const json& n : t) {
        if (!n.is_string())
          return Bad("lora.target_modules", "entries must be strings");
        s.lora.target_modules.push_back(n.get<std::string>());
      }
    }
  }
  if (j.contains("quantization")) {
    const json& q = j["quantization"];
    if (s.method != "qlora")
      return Bad("quantization", "only with \"method\": \"qlora\"");
    if (!q.is_object()) return Bad("quantization", "must be an object");
    FTUNE_RETURN_IF_ERROR(CheckKeys(
        q, "quantization",
        {"quant_type", "double_quant", "block_size", "compute_dtype"}));
    QuantizationSpec& qs = s.quantization;
    FTUNE_RETURN_IF_ERROR(
        Str(q, "quant_type", "quantization.quant_type", false, &qs.quant_type));
    if (qs.quant_type != "nf4" && qs.quant_type != "fp4")
      return Bad("quantization.quant_type", "must be \"nf4\" or \"fp4\"");
    if (q.contains("double_quant")) {
      if (!q["double_quant"].is_boolean())
        return Bad("quantization.double_quant", "must be true or false");
      qs.double_quant = q["double_quant"].get<bool>();
    }
    FTUNE_RETURN_IF_ERROR(
        Int(q, "block_size", "quantization.block_size", 32, &qs.block_size));
    if (qs.block_size > 4096 || (qs.block_size & (qs.block_size - 1)) != 0)
      return Bad("quantization.block_size",
                 absl::StrCat("must be a power of two in [32, 4096], got ",
                              qs.block_size));
    FTUNE_RETURN_IF_ERROR(Str(q, "compute_dtype", "quantization.compute_dtype",
                              false, &qs.compute_dtype));
    if (qs.compute_dtype == "fp16" && !gpu)
      return Bad("quantization.compute_dtype",
                 "\"fp16\" needs a CUDA device; on CPU use \"fp32\" or "
                 "\"bf16\"");
    if (qs.compute_dtype != "fp32" && qs.compute_dtype != "bf16" &&
        qs.compute_dtype != "fp16")
      return Bad("quantization.compute_dtype",
                 "must be \"fp32\", \"bf16\" or \"fp16\" (GPU only)");
  }
  if (s.method == "qlora") {
    // The compute dtype is the model's dtype (frozen weights, activations;
    // LoRA weights stay fp32): quantization.compute_dtype, else "dtype",
    // else bf16 on a GPU and fp32 on CPU.
    const bool given = j.contains("quantization") &&
                       j["quantization"].contains("compute_dtype");
    if (!given && j.contains("dtype")) {
      if (s.dtype == "float64")
        return Bad("dtype", "qlora computes in float32, bfloat16 or float16");
      s.quantization.compute_dtype = s.dtype == "bfloat16"  ? "bf16"
                                     : s.dtype == "float16" ? "fp16"
                                                            : "fp32";
    } else if (!given) {
      s.quantization.compute_dtype = gpu ? "bf16" : "fp32";
    }
    const std::string dtype =
        s.quantization.compute_dtype == "bf16"   ? "bfloat16"
        : s.quantization.compute_dtype == "fp16" ? "float16"
                                                 : "float32";
    if (j.contains("dtype") && s.dtype != dtype)
      return Bad("dtype",
                 absl::StrCat("\"", s.dtype,
                              "\" disagrees with quantization.compute_dtype "
                              "\"",
                              s.quantization.compute_dtype,
                              "\" (with qlora, leave dtype out)"));
    s.dtype = dtype;
  }
  if (j.contains("data")) {
    const json& d = j["data"];
    if (!d.is_object()) return Bad("data", "must be an object");
    FTUNE_RETURN_IF_ERROR(CheckKeys(
        d, "data",
        {"format", "chat_template", "overlength", "validation_split"}));
    FTUNE_RETURN_IF_ERROR(
        Str(d, "format", "data.format", false, &s.data.format));
    if (s.data.format != "text" && s.data.format != "pretokenized")
      return Bad("data.format", "must be \"text\" or \"pretokenized\"");
    FTUNE_RETURN_IF_ERROR(Str(d, "chat_template", "data.chat_template", false,
                              &s.data.chat_template));
    if (s.data.chat_template != "auto") {
      // The text pipeline owns the list of names.
      absl::StatusOr<ChatTemplate> t =
          ResolveChatTemplate(s.data.chat_template, TokenizerConfig());
      if (!t.ok()) return Bad("data.chat_template", t.status().message());
    }
    FTUNE_RETURN_IF_ERROR(
        Str(d, "overlength", "data.overlength", false, &s.data.overlength));
    if (s.data.overlength != "truncate" && s.data.overlength != "drop")
      return Bad("data.overlength", "must be \"truncate\" or \"drop\"");
    FTUNE_RETURN_IF_ERROR(Num(d, "validation_split", "data.validation_split", 0,
                              1, /*max_inclusive=*/false,
                              &s.data.validation_split));
  }
  if (s.data.validation_split > 0 && !s.validation_data.empty())
    return Bad("data.validation_split",
               "must be 0 when validation_data is given");
  if (s.data.validation_split > 0 && s.data.format == "pretokenized")
    return Bad("data.validation_split",
               "needs \"format\": \"text\"; pre-tokenized data takes "
               "validation_data");
  if (j.contains("hyperparameters")) {
    const json& h = j["hyperparameters"];
    if (!h.is_object()) return Bad("hyperparameters", "must be an object");
    FTUNE_RETURN_IF_ERROR(CheckKeys(
        h, "hyperparameters",
        {"epochs", "max_steps", "learning_rate", "lr_scheduler", "warmup_steps",
         "warmup_ratio", "batch_size", "gradient_accumulation_steps",
         "max_seq_length", "packing", "weight_decay", "max_grad_norm", "seed",
         "eval_every_steps", "eval_every_epoch", "checkpoint_every_steps",
         "early_stopping_patience", "gradient_checkpointing", "oom_retry"}));
    HyperParameters& hp = s.hp;
    const std::string p = "hyperparameters.";
    FTUNE_RETURN_IF_ERROR(Int(h, "epochs", p + "epochs", 1, &hp.epochs));
    FTUNE_RETURN_IF_ERROR(
        Int(h, "max_steps", p + "max_steps", 0, &hp.max_steps));
    FTUNE_RETURN_IF_ERROR(Num(h, "learning_rate", p + "learning_rate", 0, 10,
                              true, &hp.learning_rate));
    FTUNE_RETURN_IF_ERROR(
        Str(h, "lr_scheduler", p + "lr_scheduler", false, &hp.lr_scheduler));
    if (hp.lr_scheduler != "constant" && hp.lr_scheduler != "linear" &&
        hp.lr_scheduler != "cosine")
      return Bad(p + "lr_scheduler",
                 "must be \"constant\", \"linear\" or \"cosine\"");
    FTUNE_RETURN_IF_ERROR(
        Int(h, "warmup_steps", p + "warmup_steps", 0, &hp.warmup_steps));
    FTUNE_RETURN_IF_ERROR(Num(h, "warmup_ratio", p + "warmup_ratio", 0, 1,
                              false, &hp.warmup_ratio));
    if (hp.warmup_steps > 0 && hp.warmup_ratio > 0) {
      return Bad(p + "warmup_ratio",
                 "set warmup_steps or warmup_ratio, not both");
    }
    FTUNE_RETURN_IF_ERROR(
        Int(h, "batch_size", p + "batch_size", 1, &hp.batch_size));
    FTUNE_RETURN_IF_ERROR(Int(h, "gradient_accumulation_steps",
                              p + "gradient_accumulation_steps", 1,
                              &hp.gradient_accumulation_steps));
    FTUNE_RETURN_IF_ERROR(
        Int(h, "max_seq_length", p + "max_seq_length", 2, &hp.max_seq_length));
    if (h.contains("packing")) {
      if (!h["packing"].is_boolean())
        return Bad(p + "packing", "must be true or false");
      hp.packing = h["packing"].get<bool>();
    }
    for (auto [name, slot] :
         {std::pair<const char*, bool*>{"eval_every_epoch",
                                        &hp.eval_every_epoch},
          {"gradient_checkpointing", &hp.gradient_checkpointing},
          {"oom_retry", &hp.oom_retry}}) {
      if (!h.contains(name)) continue;
      if (!h[name].is_boolean()) return Bad(p + name, "must be true or false");
      *slot = h[name].get<bool>();
    }
    FTUNE_RETURN_IF_ERROR(Num(h, "weight_decay", p + "weight_decay", 0, 10,
                              true, &hp.weight_decay));
    FTUNE_RETURN_IF_ERROR(Num(h, "max_grad_norm", p + "max_grad_norm", 0, 1e9,
                              true, &hp.max_grad_norm));
    FTUNE_RETURN_IF_ERROR(Int(h, "seed", p + "seed", 0, &hp.seed));
    FTUNE_RETURN_IF_ERROR(Int(h, "eval_every_steps", p + "eval_every_steps", 0,
                              &hp.eval_every_steps));
    FTUNE_RETURN_IF_ERROR(Int(h, "checkpoint_every_steps",
                              p + "checkpoint_every_steps", 0,
                              &hp.checkpoint_every_steps));
    FTUNE_RETURN_IF_ERROR(Int(h, "early_stopping_patience",
                              p + "early_stopping_patience", 0,
                              &hp.early_stopping_patience));
  }
  const bool evaluates = s.hp.eval_every_steps > 0 || s.hp.eval_every_epoch;
  if (evaluates && s.validation_data.empty() && s.data.validation_split == 0)
    return Bad(s.hp.eval_every_steps > 0 ? "hyperparameters.eval_every_steps"
                                         : "hyperparameters.eval_every_epoch",
               "needs validation_data or data.validation_split");
  if (s.hp.early_stopping_patience > 0 && !evaluates)
    return Bad("hyperparameters.early_stopping_patience",
               "needs eval_every_steps > 0 or eval_every_epoch");
  if ((s.hp.checkpoint_every_steps > 0 || !s.resume_from.empty()) &&
      s.checkpoint_dir.empty())
    return Bad("checkpoint_dir",
               "is required with checkpoint_every_steps or "
               "resume_from");
  return s;
}

bool IsDeviceName(const std::string& name) {
  int64_t index = 0;
  return name == "cpu" || name == "cuda" ||
         (absl::StartsWith(name, "cuda:") &&
          absl::SimpleAtoi(name.substr(5), &index) && index >= 0);
}

absl::StatusOr<TrainSpec> LoadTrainSpec(const std::string& path) {
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto spec = ParseTrainSpec(text);
  if (!spec.ok()) return Annotate(spec.status(), path);
  return spec;
}

}  // namespace ftune::train
