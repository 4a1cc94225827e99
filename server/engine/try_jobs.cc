#include "server/engine/try_jobs.h"

#include <algorithm>
#include <vector>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/contract/generation.h"
#include "common/ids.h"
#include "common/quote.h"
#include "common/status.h"
#include "proto/convert/job_spec.h"
#include "server/engine/convert.h"
#include "server/engine/error_info.h"
#include "server/engine/job_engine.h"

namespace ftune::server::engine {
namespace {

absl::Status CheckPrompts(const v1::TryModelRequest& request) {
  const int n = request.prompts_size();
  if (n == 0) return InvalidField("prompts", "prompts: at least one is needed");
  if (n > kMaxTryPrompts) {
    return InvalidField("prompts",
                        absl::StrCat("prompts: ", n, " given, at most ",
                                     kMaxTryPrompts, " per request"));
  }
  for (int i = 0; i < n; ++i) {
    const v1::TryPrompt& p = request.prompts(i);
    const std::string field = absl::StrCat("prompts[", i, "]");
    if (p.prompt().empty() == (p.messages_size() == 0)) {
      return InvalidField(field, absl::StrCat(field,
                                              ": set exactly one of prompt "
                                              "and messages"));
    }
    for (int m = 0; m < p.messages_size(); ++m) {
      const v1::TryMessage& msg = p.messages(m);
      const std::string mf = absl::StrCat(field, ".messages[", m, "]");
      if (msg.role() != "system" && msg.role() != "user" &&
          msg.role() != "assistant") {
        return InvalidField(mf + ".role",
                            absl::StrCat(mf, ".role: ", QuoteValue(msg.role()),
                                         " is not one of \"system\", \"user\", "
                                         "\"assistant\""));
      }
      if (msg.content().empty()) {
        return InvalidField(mf + ".content", mf + ".content: is empty");
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckGenerationSettings(const v1::SampleConfig& g) {
  if (g.has_eval_samples()) {
    return InvalidField("generation.eval_samples",
                        "generation.eval_samples: not used by TryModel; "
                        "leave it unset");
  }
  if (auto v = contract::CheckGeneration(SampleSpecFromProto(g).generation)) {
    const std::string field = absl::StrCat("generation.", v->field);
    return InvalidField(field, absl::StrCat(field, ": ", v->why));
  }
  return absl::OkStatus();
}

std::string Serialize(const v1::JobSpec& spec) {
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  spec.SerializeToCodedStream(&coded);
  coded.Trim();
  return bytes;
}

}  // namespace

absl::StatusOr<core::Job> PrepareTryJob(store::Store& store,
                                        const std::string& tenant_id,
                                        const v1::TryModelRequest& request) {
  const std::string& source_id = request.job_id();
  if (source_id.empty()) return InvalidField("job_id", "job_id: is required");
  if (!IsValidId(source_id, kJobIdPrefix)) {
    return InvalidField("job_id", absl::StrCat("job_id: malformed job id ",
                                               QuoteValue(source_id)));
  }
  v1::TrySource source = request.source();
  if (source == v1::TRY_SOURCE_UNSPECIFIED) source = v1::TRY_SOURCE_ADAPTER;
  if (!v1::TrySource_IsValid(source)) {
    return InvalidField("source", absl::StrCat("source: unknown value ",
                                               static_cast<int>(source)));
  }
  if (source == v1::TRY_SOURCE_CHECKPOINT && request.checkpoint_step() <= 0) {
    return InvalidField("checkpoint_step",
                        "checkpoint_step: a step > 0 is required with "
                        "TRY_SOURCE_CHECKPOINT (ListCheckpoints lists them)");
  }
  if (source != v1::TRY_SOURCE_CHECKPOINT && request.checkpoint_step() != 0) {
    return InvalidField("checkpoint_step",
                        "checkpoint_step: only with TRY_SOURCE_CHECKPOINT");
  }
  FTUNE_RETURN_IF_ERROR(CheckPrompts(request));
  FTUNE_RETURN_IF_ERROR(CheckGenerationSettings(request.generation()));

  // A foreign job is answered exactly like one that never existed.
  absl::StatusOr<core::Job> found = store.GetJob(tenant_id, source_id);
  if (absl::IsNotFound(found.status())) {
    return NotFoundResource(absl::StrCat("job ", source_id, " not found"),
                            source_id);
  }
  FTUNE_RETURN_IF_ERROR(found.status());
  const core::Job& job = *found;
  const std::string state = ApiStateName(job);
  if (job.kind == core::JobKind::kTry) {
    return FailedPreconditionInState(
        absl::StrCat("job ", source_id,
                     " is a try job; try the job it tried instead"),
        state);
  }
  v1::JobSpec source_spec;
  if (!source_spec.ParseFromString(job.spec)) {
    return absl::InternalError(
        absl::StrCat("job ", source_id, ": stored spec cannot be parsed"));
  }

  v1::TryModelSpec tm;
  tm.set_source_job_id(source_id);
  tm.set_source(source);
  *tm.mutable_prompts() = request.prompts();
  *tm.mutable_generation() = request.generation();
  // A full fine-tune's result is a whole model, registered as the tenant's
  // model "ft:<job id>": trying it is generating with that model as the
  // base. Its checkpoints hold every weight, which the try path (LoRA
  // weights over the base) does not load.
  const bool full = source_spec.method() == v1::TRAINING_METHOD_FULL;
  std::string model = source_spec.model();
  if (full && source == v1::TRY_SOURCE_CHECKPOINT) {
    return FailedPreconditionInState(
        absl::StrCat("job ", source_id,
                     " is a full fine-tune: its checkpoints cannot be tried "
                     "(TRY_SOURCE_ADAPTER tries its model once it SUCCEEDED)"),
        state);
  }
  switch (source) {
    case v1::TRY_SOURCE_ADAPTER:
      if (job.state != core::JobState::kSucceeded || job.adapter.path.empty()) {
        return FailedPreconditionInState(
            absl::StrCat("job ", source_id, " has no adapter to try: it is ",
                         state,
                         " (TRY_SOURCE_ADAPTER needs a SUCCEEDED job; "
                         "TRY_SOURCE_CHECKPOINT tries one of its "
                         "checkpoints)"),
            state);
      }
      if (full) {
        model = core::FineTunedModelName(source_id);
        tm.set_source(v1::TRY_SOURCE_BASE);
        break;
      }
      tm.set_weights_path(job.adapter.path);
      break;
    case v1::TRY_SOURCE_CHECKPOINT: {
      FTUNE_ASSIGN_OR_RETURN(std::vector<core::Checkpoint> checkpoints,
                             store.ListCheckpoints(tenant_id, source_id));
      std::vector<int64_t> steps;
      const core::Checkpoint* match = nullptr;
      for (const core::Checkpoint& c : checkpoints) {
        steps.push_back(c.step);
        if (c.step == request.checkpoint_step()) match = &c;
      }
      if (match == nullptr) {
        std::sort(steps.begin(), steps.end());
        return NotFoundResource(
            absl::StrCat("job ", source_id, " has no checkpoint at step ",
                         request.checkpoint_step(), "; recorded steps: ",
                         steps.empty() ? "none" : absl::StrJoin(steps, ", ")),
            source_id);
      }
      tm.set_checkpoint_step(match->step);
      tm.set_weights_path(match->path);
      break;
    }
    default:  // TRY_SOURCE_BASE
      break;
  }

  // What the trainer needs to load the model as the source job trained it;
  // nothing of its data or schedule.
  v1::JobSpec spec;
  spec.set_model(model);
  spec.set_training_file(source_spec.training_file());
  spec.set_method(source_spec.method());
  if (source_spec.has_lora()) *spec.mutable_lora() = source_spec.lora();
  if (source_spec.has_quantization()) {
    *spec.mutable_quantization() = source_spec.quantization();
  }
  if (!source_spec.hyperparameters().chat_template().empty()) {
    spec.mutable_hyperparameters()->set_chat_template(
        source_spec.hyperparameters().chat_template());
  }
  // One GPU is enough to generate.
  v1::Resources* res = spec.mutable_resources();
  res->set_gpus(std::min(source_spec.resources().gpus(), 1));
  res->set_memory_bytes(source_spec.resources().memory_bytes());
  res->set_gpu_type(source_spec.resources().gpu_type());
  res->set_cpu_threads(source_spec.resources().cpu_threads());
  spec.set_priority(source_spec.priority());
  spec.set_max_restarts(source_spec.max_restarts());
  *spec.mutable_try_model() = std::move(tm);

  core::Job out;
  out.tenant_id = tenant_id;
  out.kind = core::JobKind::kTry;
  out.spec = Serialize(spec);
  out.priority = spec.priority();
  out.resources.gpus = spec.resources().gpus();
  out.resources.memory_bytes = spec.resources().memory_bytes();
  out.resources.gpu_type = spec.resources().gpu_type();
  out.resources.cpu_threads = spec.resources().cpu_threads();
  out.resources.trainer = job.resources.trainer;
  out.max_restarts = spec.max_restarts();
  out.model = spec.model();
  out.training_file_id = spec.training_file();
  return out;
}

}  // namespace ftune::server::engine
