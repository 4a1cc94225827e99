#include "client/job_spec_flags.h"

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

}  // namespace

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
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--method: \"", flags.Get("method"), "\" is not lora or qlora"));
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
  if (auto v = flags.GetInt("warmup-steps")) hp.set_warmup_steps(*v);
  if (auto v = flags.GetInt("checkpoint-every-steps")) {
    hp.set_checkpoint_every_steps(*v);
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
  if (auto v = flags.GetInt("priority")) spec.set_priority(i32(*v));
  if (auto v = flags.GetInt("max-restarts")) spec.set_max_restarts(i32(*v));
  if (auto v = flags.GetInt("gpus")) resources.set_gpus(i32(*v));
  if (flags.Has("gpu-type")) resources.set_gpu_type(flags.Get("gpu-type"));
  if (auto v = flags.GetInt("cpu-threads")) resources.set_cpu_threads(i32(*v));
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
