#include "server/engine/convert.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/quote.h"
#include "common/status.h"
#include "proto/convert/job_spec.h"
#include "proto/convert/progress.h"
#include "proto/convert/trainer_capabilities.h"
#include "server/engine/error_info.h"
#include "worker/train/families/family.h"

namespace ftune::server::engine {
namespace {

int64_t MetaInt(const core::Model& m, const std::string& key) {
  auto it = m.metadata.find(key);
  int64_t v = 0;
  if (it == m.metadata.end() || !absl::SimpleAtoi(it->second, &v)) return 0;
  return v;
}

std::string MetaStr(const core::Model& m, const std::string& key) {
  auto it = m.metadata.find(key);
  return it == m.metadata.end() ? "" : it->second;
}

}  // namespace

void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast()) {
    out->Clear();
    return;
  }
  const int64_t ns = absl::ToUnixNanos(t);
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

absl::Time FromTimestamp(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t nanos = absl::ToInt64Nanoseconds(d);
  out->set_seconds(nanos / 1000000000);
  out->set_nanos(static_cast<int32_t>(nanos % 1000000000));
}

std::string AdapterName(absl::string_view model, absl::string_view suffix,
                        absl::string_view job_id) {
  return suffix.empty() ? absl::StrCat(model, "-", job_id)
                        : absl::StrCat(model, "-", suffix, "-", job_id);
}

v1::JobState JobStateToProto(core::JobState state) {
  // The numeric values agree by construction (both documented as stable).
  return static_cast<v1::JobState>(static_cast<int>(state));
}

std::optional<core::JobState> JobStateFromProto(v1::JobState state) {
  if (state == v1::JOB_STATE_UNSPECIFIED || !v1::JobState_IsValid(state)) {
    return std::nullopt;
  }
  return static_cast<core::JobState>(static_cast<int>(state));
}

std::string JobStateEnumName(core::JobState state) {
  return v1::JobState_Name(JobStateToProto(state));
}

v1::Job JobToProto(const core::Job& job) {
  v1::Job out;
  out.set_id(job.id);
  out.set_tenant_id(job.tenant_id);
  if (!job.spec.empty()) out.mutable_spec()->ParseFromString(job.spec);
  out.set_state(JobStateToProto(job.state));
  // The store counts attempts from 1 at creation (its fencing token for the
  // next assignment); the API counts assignments: 0 until first RUNNING.
  // A job re-queued after running holds the store's next number, so the
  // API shows the latest one that ran.
  int64_t attempt = job.attempt;
  if (job.start_time == absl::InfinitePast()) {
    attempt = 0;
  } else if (job.state == core::JobState::kQueued) {
    attempt = job.attempt - 1;
  }
  out.set_attempt(static_cast<int32_t>(attempt));
  out.set_restart_count(static_cast<int32_t>(job.restart_count));
  v1::JobProgress* p = out.mutable_progress();
  p->set_step(job.progress.step);
  p->set_total_steps(job.progress.total_steps);
  p->set_epoch(job.progress.epoch);
  p->set_tokens_processed(job.progress.tokens);
  if (job.progress.total_steps > 0) {
    double pct = 100.0 * static_cast<double>(job.progress.step) /
                 static_cast<double>(job.progress.total_steps);
    if (job.state != core::JobState::kSucceeded && pct >= 100) pct = 99.99;
    if (job.state == core::JobState::kSucceeded) pct = 100;
    p->set_percent(pct);
  }
  if (!job.metrics.empty()) {
    // What nothing reported stays unset (train_loss before the first
    // training point, the eval fields before the first evaluation).
    const core::JobMetricsSummary& s = job.metrics;
    v1::JobMetrics* jm = out.mutable_metrics();
    if (s.train) {
      jm->set_step(s.train->step);
      if (s.train->train_loss) jm->set_train_loss(*s.train->train_loss);
      jm->set_learning_rate(s.train->lr);
      jm->set_grad_norm(s.train->grad_norm);
      jm->set_tokens_per_second(s.train->tokens_per_s);
    }
    if (s.eval_loss) {
      jm->set_eval_loss(*s.eval_loss);
      jm->set_eval_step(s.eval_step);
      if (s.eval_task) {
        *jm->mutable_eval_task() = TaskMetricsToProto(*s.eval_task);
      }
    }
    if (s.best_eval_loss) {
      jm->set_best_eval_loss(*s.best_eval_loss);
      jm->set_best_eval_step(s.best_eval_step);
    }
    jm->set_peak_memory_bytes(s.peak_memory_bytes);
    jm->set_predicted_peak_memory_bytes(s.predicted_peak_memory_bytes);
    jm->set_tensor_peak_memory_bytes(s.tensor_peak_memory_bytes);
  }
  if (job.error.reason != core::JobErrorReason::kNone) {
    v1::JobError* e = out.mutable_error();
    switch (job.error.reason) {
      case core::JobErrorReason::kInvalidInput:
      case core::JobErrorReason::kInfeasible:
        e->set_reason(v1::ERROR_REASON_INVALID_INPUT);
        break;
      case core::JobErrorReason::kOutOfMemory:
        e->set_reason(v1::ERROR_REASON_OUT_OF_MEMORY);
        break;
      case core::JobErrorReason::kTrainerError:
        e->set_reason(v1::ERROR_REASON_TRAINER_CRASHED);
        break;
      case core::JobErrorReason::kWorkerLost:
        e->set_reason(v1::ERROR_REASON_WORKER_LOST);
        break;
      default:
        e->set_reason(v1::ERROR_REASON_INTERNAL);
        break;
    }
    e->set_message(job.error.message);
    e->set_retryable(job.error.retryable);
    e->set_attempt(static_cast<int32_t>(job.attempt));
  }
  SetTimestamp(job.create_time, out.mutable_create_time());
  SetTimestamp(job.start_time, out.mutable_start_time());
  SetTimestamp(job.end_time, out.mutable_end_time());
  SetTimestamp(job.update_time, out.mutable_update_time());
  if (!job.adapter.path.empty()) {
    v1::Adapter* a = out.mutable_adapter();
    a->set_path(job.adapter.path);
    a->set_manifest_sha256(job.adapter.manifest_sha256);
    a->set_name(AdapterName(job.model, out.spec().suffix(), job.id));
    a->set_step(job.adapter.step);
    SetTimestamp(job.adapter.publish_time, a->mutable_publish_time());
    for (const core::AdapterFile& f : job.adapter.files) {
      v1::AdapterFile* pf = a->add_files();
      pf->set_path(f.path);
      pf->set_size_bytes(f.size_bytes);
      pf->set_sha256(f.sha256);
    }
  }
  if (core::OccupiesWorker(job.state)) out.set_worker_id(job.worker_id);
  out.set_request_id(job.request_id);
  // The store keeps a pause request on a running job as PAUSED with the
  // worker still attached; the API shows it as RUNNING + pause_requested.
  if (job.state == core::JobState::kPaused && !job.worker_id.empty()) {
    out.set_state(v1::JOB_STATE_RUNNING);
    out.set_pause_requested(true);
    out.set_worker_id(job.worker_id);
  }
  out.set_last_sequence(job.last_sequence);
  // The worker service registers a full job's model in the transaction
  // that makes it SUCCEEDED (core::AttemptEnd.output_model).
  if (job.state == core::JobState::kSucceeded &&
      out.spec().method() == v1::TRAINING_METHOD_FULL) {
    out.set_fine_tuned_model(core::FineTunedModelName(job.id));
  }
  return out;
}

v1::JobEventType JobEventTypeToProto(core::JobEventType type) {
  switch (type) {
    case core::JobEventType::kCreated:
      return v1::JOB_EVENT_TYPE_CREATED;
    case core::JobEventType::kStateChanged:
      return v1::JOB_EVENT_TYPE_STATE_CHANGED;
    case core::JobEventType::kCheckpoint:
      return v1::JOB_EVENT_TYPE_CHECKPOINT_SAVED;
    case core::JobEventType::kMessage:
      return v1::JOB_EVENT_TYPE_LOG;
    case core::JobEventType::kWarning:
      return v1::JOB_EVENT_TYPE_WARNING;
    case core::JobEventType::kEval:
      return v1::JOB_EVENT_TYPE_EVAL;
    case core::JobEventType::kBatchSizeReduced:
      return v1::JOB_EVENT_TYPE_BATCH_SIZE_REDUCED;
    case core::JobEventType::kEarlyStopped:
      return v1::JOB_EVENT_TYPE_EARLY_STOPPED;
    case core::JobEventType::kSamples:
      return v1::JOB_EVENT_TYPE_SAMPLES;
    case core::JobEventType::kEvalImproved:
      return v1::JOB_EVENT_TYPE_EVAL_IMPROVED;
  }
  return v1::JOB_EVENT_TYPE_UNSPECIFIED;
}

v1::JobEvent JobEventToProto(const core::JobEvent& event) {
  v1::JobEvent out;
  out.set_sequence(event.sequence);
  SetTimestamp(event.time, out.mutable_time());
  out.set_attempt(static_cast<int32_t>(event.attempt));
  out.set_type(JobEventTypeToProto(event.type));
  if (event.from_state) out.set_from_state(JobStateToProto(*event.from_state));
  if (event.to_state) out.set_to_state(JobStateToProto(*event.to_state));
  out.set_message(event.message);
  out.set_step(event.step);
  return out;
}

v1::MetricPoint MetricPointToProto(const core::MetricPoint& point) {
  v1::MetricPoint out;
  out.set_sequence(point.sequence);
  SetTimestamp(point.time, out.mutable_time());
  out.set_attempt(static_cast<int32_t>(point.attempt));
  out.set_step(point.step);
  out.set_epoch(point.epoch);
  if (point.train_loss) out.set_train_loss(*point.train_loss);
  if (point.eval_loss) out.set_eval_loss(*point.eval_loss);
  out.set_learning_rate(point.lr);
  out.set_grad_norm(point.grad_norm);
  out.set_tokens_per_second(point.tokens_per_s);
  out.set_peak_memory_bytes(point.peak_memory_bytes);
  if (point.preference) {
    *out.mutable_preference() = PreferenceMetricsToProto(*point.preference);
  }
  if (point.eval_preference) {
    *out.mutable_eval_preference() =
        PreferenceMetricsToProto(*point.eval_preference);
  }
  if (point.eval_task) {
    *out.mutable_eval_task() = TaskMetricsToProto(*point.eval_task);
  }
  return out;
}

v1::Checkpoint CheckpointToProto(const core::Checkpoint& checkpoint) {
  v1::Checkpoint out;
  out.set_step(checkpoint.step);
  out.set_attempt(static_cast<int32_t>(checkpoint.attempt));
  SetTimestamp(checkpoint.create_time, out.mutable_create_time());
  out.set_path(checkpoint.path);
  return out;
}

v1::JobSample JobSampleToProto(const core::JobSample& sample) {
  v1::JobSample out;
  out.set_step(sample.step);
  out.set_index(static_cast<int32_t>(sample.index));
  out.set_attempt(static_cast<int32_t>(sample.attempt));
  out.set_prompt(sample.prompt);
  if (sample.expected) out.set_expected_completion(*sample.expected);
  out.set_completion(sample.completion);
  out.set_finish_reason(sample.finish_reason);
  SetTimestamp(sample.create_time, out.mutable_create_time());
  return out;
}

v1::Quota QuotaToProto(const core::Quota& quota) {
  v1::Quota out;
  out.set_max_queued_jobs(static_cast<int32_t>(quota.max_queued_jobs));
  out.set_max_running_jobs(static_cast<int32_t>(quota.max_running_jobs));
  out.set_max_gpus(static_cast<int32_t>(quota.max_gpus));
  return out;
}

v1::Tenant TenantToProto(const core::Tenant& tenant) {
  v1::Tenant out;
  out.set_id(tenant.id);
  out.set_display_name(tenant.name);
  SetTimestamp(tenant.create_time, out.mutable_create_time());
  *out.mutable_quota() = QuotaToProto(tenant.quota);
  out.set_fair_share_weight(tenant.weight);
  return out;
}

v1::ApiKey ApiKeyToProto(const core::ApiKey& key) {
  v1::ApiKey out;
  out.set_id(key.id);
  out.set_tenant_id(key.tenant_id);
  out.set_display_name(key.description);
  out.set_prefix(key.prefix);
  SetTimestamp(key.create_time, out.mutable_create_time());
  if (key.revoked) SetTimestamp(key.revoke_time, out.mutable_revoke_time());
  return out;
}

v1::Model ModelToProto(const core::Model& model) {
  v1::Model out;
  out.set_name(model.name);
  out.set_architecture(MetaStr(model, "architecture"));
  out.set_parameter_count(MetaInt(model, "parameter_count"));
  out.set_hidden_size(static_cast<int32_t>(MetaInt(model, "hidden_size")));
  out.set_intermediate_size(
      static_cast<int32_t>(MetaInt(model, "intermediate_size")));
  out.set_num_layers(static_cast<int32_t>(MetaInt(model, "num_hidden_layers")));
  out.set_num_attention_heads(
      static_cast<int32_t>(MetaInt(model, "num_attention_heads")));
  out.set_num_key_value_heads(
      static_cast<int32_t>(MetaInt(model, "num_key_value_heads")));
  out.set_vocab_size(static_cast<int32_t>(MetaInt(model, "vocab_size")));
  out.set_max_position_embeddings(
      static_cast<int32_t>(MetaInt(model, "max_position_embeddings")));
  out.set_torch_dtype(MetaStr(model, "torch_dtype"));
  const core::ModelFacts facts = ModelFactsFromModel(model);
  if (facts.supports_lora) out.add_supported_methods(v1::TRAINING_METHOD_LORA);
  if (facts.supports_qlora) {
    out.add_supported_methods(v1::TRAINING_METHOD_QLORA);
  }
  if (facts.supports_full) out.add_supported_methods(v1::TRAINING_METHOD_FULL);
  out.set_default_chat_template(MetaStr(model, "default_chat_template"));
  out.set_weights_size_bytes(MetaInt(model, "weights_size_bytes"));
  out.set_owner_tenant_id(model.tenant_id);
  out.set_base_model(MetaStr(model, "base_model"));
  out.set_job_id(model.job_id);
  return out;
}

core::ModelFacts ModelFactsFromModel(const core::Model& model) {
  core::ModelFacts f;
  f.name = model.name;
  f.max_position_embeddings = MetaInt(model, "max_position_embeddings");
  f.default_chat_template = MetaStr(model, "default_chat_template");
  // The registry records the family's LoRA module names. A row written
  // before it did is the Llama family's, unless its architecture says
  // otherwise.
  const std::string modules = MetaStr(model, "lora_modules");
  const std::string arch = MetaStr(model, "architecture");
  if (!modules.empty()) {
    f.linear_modules = absl::StrSplit(modules, ',');
  } else if (!arch.empty()) {
    const train::Family* family = train::FindFamily(arch);
    if (family == nullptr) {
      f.unsupported = absl::StrCat(
          "architecture \"", arch, "\" is not supported (supported: ",
          absl::StrJoin(train::SupportedArchitectures(), ", "), ")");
    } else if (std::string(family->name) != "llama") {
      f.unsupported =
          "it was registered without its LoRA module names; restart the "
          "scheduler with the model in its config to register it again";
    }
  }
  const std::string methods = MetaStr(model, "supported_methods");
  if (!methods.empty()) {
    f.supports_lora = f.supports_qlora = f.supports_full = false;
    for (absl::string_view m : absl::StrSplit(methods, ',')) {
      if (m == "lora") f.supports_lora = true;
      if (m == "qlora") f.supports_qlora = true;
      if (m == "full") f.supports_full = true;
    }
  }
  return f;
}

std::optional<contract::ModelShape> ModelShapeFromModel(
    const core::Model& model) {
  const std::string encoded = MetaStr(model, "memory_shape");
  if (!encoded.empty()) {
    absl::StatusOr<contract::ModelShape> s =
        contract::DecodeModelShape(encoded);
    if (s.ok() && s->hidden_size > 0) return *s;
  }
  contract::ModelShape s;
  s.vocab_size = MetaInt(model, "vocab_size");
  s.hidden_size = MetaInt(model, "hidden_size");
  s.intermediate_size = MetaInt(model, "intermediate_size");
  s.num_layers = MetaInt(model, "num_hidden_layers");
  s.num_heads = MetaInt(model, "num_attention_heads");
  s.num_kv_heads = MetaInt(model, "num_key_value_heads");
  if (s.vocab_size <= 0 || s.hidden_size <= 0 || s.intermediate_size <= 0 ||
      s.num_layers <= 0 || s.num_heads <= 0)
    return std::nullopt;
  return s;
}

contract::TrainerRequirement TrainerRequirementOf(const v1::JobSpec& resolved,
                                                  const core::Model& model) {
  // The spec was validated: its enums are known values.
  contract::TrainerRequirement need;
  need.method = MethodFromProto(resolved.method()).value_or(need.method);
  need.objective =
      ObjectiveFromProto(resolved.objective()).value_or(need.objective);
  need.architecture = MetaStr(model, "architecture");
  need.dtype = ComputeDtypeFromProto(resolved.quantization().compute_dtype())
                   .value_or(std::nullopt);
  need.ranks = contract::JobRanks(resolved.resources().gpus(),
                                  resolved.resources().processes());
  return need;
}

absl::StatusOr<contract::TrainerCapabilities> TrainerCapabilitiesFromProto(
    const v1::TrainerCapabilities& caps, absl::string_view field) {
  constexpr int kMaxEntries = 64;
  constexpr size_t kMaxEntryBytes = 128;
  auto check = [&](absl::string_view name, absl::string_view value,
                   int index) -> absl::Status {
    if (!value.empty() && value.size() <= kMaxEntryBytes) {
      return absl::OkStatus();
    }
    const std::string path =
        index < 0 ? absl::StrCat(field, ".", name)
                  : absl::StrCat(field, ".", name, "[", index, "]");
    return InvalidField(path, absl::StrCat(path, " must be 1-", kMaxEntryBytes,
                                           " bytes, got ", QuoteValue(value)));
  };
  if (!caps.version().empty()) {
    FTUNE_RETURN_IF_ERROR(check("version", caps.version(), -1));
  }
  for (auto [name, list] :
       {std::pair<const char*,
                  const google::protobuf::RepeatedPtrField<std::string>*>{
            "methods", &caps.methods()},
        {"architectures", &caps.architectures()},
        {"dtypes", &caps.dtypes()},
        {"chat_templates", &caps.chat_templates()},
        {"objectives", &caps.objectives()}}) {
    if (list->size() > kMaxEntries) {
      const std::string path = absl::StrCat(field, ".", name);
      return InvalidField(
          path, absl::StrCat(path, " has ", list->size(), " entries, at most ",
                             kMaxEntries));
    }
    for (int i = 0; i < list->size(); ++i) {
      FTUNE_RETURN_IF_ERROR(check(name, list->Get(i), i));
    }
  }
  if (caps.max_gpus_per_job() < 0) {
    const std::string path = absl::StrCat(field, ".max_gpus_per_job");
    return InvalidField(path, absl::StrCat(path, " must be >= 0"));
  }
  if (caps.max_ranks_per_job() < 0) {
    const std::string path = absl::StrCat(field, ".max_ranks_per_job");
    return InvalidField(path, absl::StrCat(path, " must be >= 0"));
  }
  return TrainerCapabilitiesFromProtoUnchecked(caps);
}

core::FileFacts FileFactsFromRecord(const core::FileRecord& file) {
  core::FileFacts f;
  f.id = file.id;
  f.purpose = file.purpose;
  f.ready = file.status == core::FileStatus::kReady;
  f.format = file.format;
  f.example_count = file.example_count;
  return f;
}

}  // namespace ftune::server::engine
