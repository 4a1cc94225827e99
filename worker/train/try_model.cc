#include "worker/train/try_model.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/status.h"
#include "worker/train/adapter.h"
#include "worker/train/checkpoint.h"
#include "worker/train/dtype.h"
#include "worker/train/generate.h"
#include "worker/train/model.h"
#include "worker/train/text/prompts.h"
#include "worker/train/text_generation.h"
#include "worker/train/torch_compat.h"

namespace ftune::train {
namespace {

using contract::GenerateSpec;

// The model as the source job trained it: its dtype, and 4-bit base
// weights for QLoRA (the sample completions during training saw the same).
absl::StatusOr<std::unique_ptr<Model>> LoadBase(
    const contract::TrainSpec& spec) {
  ModelOptions mopts;
  mopts.dtype = TorchDtype(contract::ComputeDtype(spec));
  mopts.device = spec.device;
  if (std::string why;
      !compat::DeviceAvailable(compat::ParseDevice(spec.device), &why)) {
    return absl::FailedPreconditionError(
        absl::StrCat("spec field \"device\": \"", spec.device, "\": ", why));
  }
  if (spec.method == contract::Method::kQlora) {
    QuantOptions q;
    q.type = spec.quantization.quant_type;
    q.block_size = spec.quantization.block_size;
    q.double_quant = spec.quantization.double_quant;
    mopts.quantization = q;
  }
  return Model::Load(spec.model_dir, mopts);
}

// A checkpoint holds the LoRA weights by their PEFT names but no
// adapter_config.json: the shape is the spec's "lora" (the source job's).
absl::Status LoadCheckpointLora(Model& model, const contract::TrainSpec& spec,
                                const std::string& dir) {
  LoraOptions lora(spec.lora);
  lora.dropout = 0;  // inference
  FTUNE_RETURN_IF_ERROR(model.ApplyLora(lora));
  const std::string file = JoinPath(dir, "adapter_model.safetensors");
  FTUNE_ASSIGN_OR_RETURN(NamedTensors tensors, ReadTensors(file));
  NamedTensors params = model.LoraParameters();
  if (tensors.size() != params.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": ", tensors.size(),
        " LoRA tensors, but the spec's lora shape takes ", params.size()));
  }
  return CopyInto(params, tensors, file);
}

}  // namespace

absl::Status RunTryModel(const contract::TrySpec& try_spec,
                         const TrainerHooks& hooks) {
  const contract::TrainSpec& spec = try_spec.train;
  const GenerateSpec& gen = try_spec.generate;
  compat::SetThreads(spec.threads);
  std::vector<GenerationPrompt> prompts;
  for (size_t i = 0; i < gen.prompts.size(); ++i) {
    absl::StatusOr<GenerationPrompt> p =
        ParsePromptLine(gen.prompts[i], static_cast<int64_t>(i) + 1);
    if (!p.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("generate.prompts[", i, "]: ", p.status().message()));
    }
    prompts.push_back(*std::move(p));
  }
  FTUNE_ASSIGN_OR_RETURN(std::unique_ptr<TextGenerator> generator,
                         TextGenerator::Create(spec.model_dir, spec.model_dir,
                                               spec.data.chat_template));
  FTUNE_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, LoadBase(spec));
  switch (gen.weights) {
    case GenerateSpec::Weights::kAdapter:
      FTUNE_RETURN_IF_ERROR(LoadAdapter(*model, gen.weights_dir));
      break;
    case GenerateSpec::Weights::kCheckpoint:
      FTUNE_RETURN_IF_ERROR(LoadCheckpointLora(*model, spec, gen.weights_dir));
      break;
    case GenerateSpec::Weights::kBase:
      break;
  }
  // Every prompt must leave room for max_new_tokens: a try asks for that
  // many, unlike a sample, which is only cut short.
  const int64_t context = ContextLength(*model);
  for (size_t i = 0; i < prompts.size(); ++i) {
    FTUNE_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                           generator->Render(prompts[i]));
    const int64_t n = static_cast<int64_t>(ids.size());
    if (n + gen.generation.max_new_tokens > context) {
      return absl::InvalidArgumentError(
          absl::StrCat("generate.prompts[", i, "]: ", n,
                       " tokens after the chat template plus max_new_tokens ",
                       gen.generation.max_new_tokens,
                       " exceed the model's context of ", context, " tokens"));
    }
  }
  GenerationStats stats;
  FTUNE_ASSIGN_OR_RETURN(
      std::vector<Completion> completions,
      generator->Run(*model, prompts, gen.generation,
                     static_cast<int64_t>(prompts.size()), &stats));
  const size_t cap = contract::defaults::kSampleTextBytes;
  contract::SamplesEvent event;
  event.step = 0;
  for (size_t i = 0; i < completions.size(); ++i) {
    contract::SampleText t;
    t.prompt = contract::TruncateText(prompts[i].display, cap);
    if (prompts[i].expected) {
      t.expected = contract::TruncateText(*prompts[i].expected, cap);
    }
    t.completion = contract::TruncateText(completions[i].text, cap);
    t.finish_reason = completions[i].finish_reason;
    event.samples.push_back(std::move(t));
  }
  FTUNE_LOG(INFO) << "try: " << completions.size() << " completions, "
                  << stats.generated_tokens << " tokens in "
                  << stats.decode_seconds << " s";
  if (hooks.emit) {
    hooks.emit(event);
    hooks.emit(contract::DoneEvent{0, "", 0, std::nullopt});
  }
  return absl::OkStatus();
}

}  // namespace ftune::train
