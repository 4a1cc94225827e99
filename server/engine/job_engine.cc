#include "server/engine/job_engine.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/message_differencer.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/quote.h"
#include "common/sha256.h"
#include "common/status.h"
#include "server/core/memory_check.h"
#include "server/core/placement.h"
#include "server/core/spec_validation.h"
#include "server/engine/convert.h"
#include "server/engine/error_info.h"

namespace ftune::server::engine {
namespace {

absl::Status JobNotFound(const std::string& job_id) {
  return NotFoundResource(absl::StrCat("job ", job_id, " not found"), job_id);
}

absl::Status CheckJobId(const std::string& job_id) {
  if (job_id.empty()) return InvalidField("job_id", "job_id: is required");
  if (!IsValidId(job_id, kJobIdPrefix)) {
    return InvalidField("job_id", absl::StrCat("job_id: malformed job id ",
                                               QuoteValue(job_id)));
  }
  return absl::OkStatus();
}

bool IsValidRequestId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-';
  });
}

// With a request_id the default seed is derived from it, so a retry
// resolves to the very same spec and can be compared with the stored one.
int64_t DefaultSeed(const std::string& tenant_id,
                    const std::string& request_id) {
  std::string bytes;
  if (request_id.empty()) {
    bytes = RandomBytes(8);
  } else {
    bytes = Sha256Hex(absl::StrCat("seed\n", tenant_id, "\n", request_id));
    uint64_t v = 0;
    // 16 hex digits of a SHA-256: always parses.
    if (!absl::SimpleHexAtoi(bytes.substr(0, 16), &v)) v = 0;
    return static_cast<int64_t>(v & 0x7fffffffffffffffULL);
  }
  uint64_t v = 0;
  std::memcpy(&v, bytes.data(), sizeof(v));
  return static_cast<int64_t>(v & 0x7fffffffffffffffULL);
}

// "quota max_gpus=4 ..." (store wording) -> ("max_gpus", 4).
bool ParseQuotaMessage(absl::string_view message, std::string* quota,
                       int64_t* limit) {
  for (const char* name : {"max_queued_jobs", "max_gpus", "max_running_jobs"}) {
    const std::string key = absl::StrCat(name, "=");
    size_t pos = message.find(key);
    if (pos == absl::string_view::npos) continue;
    pos += key.size();
    size_t end = pos;
    while (end < message.size() && absl::ascii_isdigit(message[end])) ++end;
    *quota = name;
    return absl::SimpleAtoi(message.substr(pos, end - pos), limit);
  }
  return false;
}

// Counts the tenant's jobs in `states` (for quota checks of dry runs).
absl::StatusOr<int64_t> CountJobs(store::Store& store,
                                  const std::string& tenant_id,
                                  std::vector<core::JobState> states,
                                  int64_t stop_at) {
  store::JobFilter filter;
  filter.states = std::move(states);
  int64_t n = 0;
  std::string token;
  do {
    FTUNE_ASSIGN_OR_RETURN(
        store::Page<core::Job> page,
        store.ListJobs(tenant_id, filter, store::kMaxPageSize, token));
    n += static_cast<int64_t>(page.items.size());
    token = page.next_page_token;
  } while (!token.empty() && n < stop_at);
  return n;
}

}  // namespace

std::string ApiStateName(const core::Job& job) {
  return v1::JobState_Name(JobToProto(job).state());
}

JobEngine::JobEngine(store::Store* store) : store_(store) {}

// The store's NOT_FOUND may phrase things its own way; the API answers a
// foreign and a missing job identically.
absl::StatusOr<core::Job> JobEngine::GetJob(const std::string& tenant_id,
                                            const std::string& job_id) {
  FTUNE_RETURN_IF_ERROR(CheckJobId(job_id));
  absl::StatusOr<core::Job> job = store_->GetJob(tenant_id, job_id);
  if (absl::IsNotFound(job.status())) return JobNotFound(job_id);
  return job;
}

// ------------------------------------------------------------- create ----

struct JobEngine::PreparedCreate {
  bool answered = false;  // validate_only: `response` is complete.
  core::Job job;          // What to store.
  std::string request_id;
  v1::JobSpec resolved;
};

void JobEngine::CreateJob(const std::string& tenant_id,
                          const v1::CreateJobRequest& request,
                          v1::CreateJobResponse* response,
                          std::function<void(absl::Status)> done) {
  auto prepared = std::make_shared<PreparedCreate>();
  absl::Status s =
      PrepareCreateJob(tenant_id, request, response, prepared.get());
  if (!s.ok() || prepared->answered) return done(s);
  core::Job job = std::move(prepared->job);
  store_->CreateJobAsync(
      std::move(job), [prepared, response, done = std::move(done)](
                          absl::StatusOr<store::CreateJobResult> created) {
        done(FinishCreateJob(std::move(created), *prepared, response));
      });
}

absl::Status JobEngine::PrepareCreateJob(const std::string& tenant_id,
                                         const v1::CreateJobRequest& request,
                                         v1::CreateJobResponse* response,
                                         PreparedCreate* prepared) {
  const v1::JobSpec& spec = request.spec();
  if (spec.has_try_model()) {
    return InvalidField("spec.try_model",
                        "spec.try_model: set by JobService.TryModel only");
  }
  const std::string request_id =
      request.validate_only() ? std::string() : request.request_id();
  if (!request.request_id().empty() &&
      !IsValidRequestId(request.request_id())) {
    return InvalidField(
        "request_id", "request_id: must be 1-64 characters of [A-Za-z0-9_.-]");
  }

  // Look up everything the spec names (one read of the store), then
  // validate it all at once.
  auto file_id = [](const std::string& id) -> absl::string_view {
    return IsValidId(id, kFileIdPrefix) ? absl::string_view(id) : "";
  };
  FTUNE_ASSIGN_OR_RETURN(
      store::JobCreationFacts facts,
      store_->GetJobCreationFacts(
          tenant_id, spec.model(), file_id(spec.training_file()),
          spec.validation_case() == v1::JobSpec::kValidationFile
              ? file_id(spec.validation_file())
              : ""));
  core::SpecContext sctx;
  if (facts.model) sctx.model = ModelFactsFromModel(*facts.model);
  if (facts.training_file) {
    sctx.training_file = FileFactsFromRecord(*facts.training_file);
  }
  if (facts.validation_file) {
    sctx.validation_file = FileFactsFromRecord(*facts.validation_file);
  }
  const std::vector<core::FieldError> errors =
      core::ValidateJobSpec(spec, sctx);
  if (!errors.empty()) {
    return InvalidField(errors.front().field, core::JoinFieldErrors(errors));
  }

  v1::JobSpec resolved = core::ResolveJobSpec(
      spec, *sctx.model, DefaultSeed(tenant_id, request.request_id()));
  *response->mutable_estimate() = core::EstimateJob(
      resolved, sctx.training_file->example_count,
      sctx.validation_file ? sctx.validation_file->example_count : 0);

  if (!facts.tenant) {
    return NotFoundResource(
        absl::StrCat("tenant with id '", tenant_id, "' not found"), tenant_id);
  }
  const core::Tenant& tenant = *facts.tenant;
  const int64_t gpus = resolved.resources().gpus();
  if (tenant.quota.max_gpus > 0 && gpus > tenant.quota.max_gpus) {
    return QuotaExceeded(
        absl::StrCat("spec.resources.gpus: the job asks for ", gpus,
                     " GPUs, more than the tenant quota max_gpus=",
                     tenant.quota.max_gpus, "; it could never run"),
        "max_gpus", tenant.quota.max_gpus);
  }

  // Larger than any registered worker could ever offer: say so now rather
  // than leave it queued forever (nothing is known before any registers).
  {
    core::JobResources need;
    need.gpus = resolved.resources().gpus();
    need.memory_bytes = resolved.resources().memory_bytes();
    need.gpu_type = resolved.resources().gpu_type();
    need.trainer = TrainerRequirementOf(resolved, *facts.model);
    std::string field;
    if (absl::Status f = core::CheckFeasible(need, facts.workers, &field);
        !f.ok()) {
      return InvalidField(field, absl::StrCat(field, ": ", f.message()));
    }
  }

  // The memory planner (docs/memory.md): the predicted peak goes into the
  // estimate; a GPU job predicted not to fit the GPUs it could run on is
  // refused now, with the changes that would fit, instead of failing out
  // of memory at its first step. INVALID_ARGUMENT like the feasibility
  // check above: the request as written can never run there, and only the
  // request can change that.
  if (std::optional<contract::ModelShape> shape =
          ModelShapeFromModel(*facts.model)) {
    absl::StatusOr<core::MemoryVerdict> verdict = core::CheckMemory(
        resolved, *shape, core::DeviceMemoryFor(resolved, facts.workers));
    if (verdict.ok()) {
      if (!verdict->fits) {
        const std::string field = resolved.resources().gpu_type().empty()
                                      ? "spec.resources.gpus"
                                      : "spec.resources.gpu_type";
        return InvalidField(field, absl::StrCat(field, ": ", verdict->refusal));
      }
      core::AddMemoryEstimate(*verdict, response->mutable_estimate());
    }
  }

  if (request.validate_only()) {
    if (tenant.quota.max_queued_jobs > 0) {
      FTUNE_ASSIGN_OR_RETURN(
          int64_t queued,
          CountJobs(*store_, tenant_id,
                    {core::JobState::kQueued, core::JobState::kPaused},
                    tenant.quota.max_queued_jobs));
      if (queued >= tenant.quota.max_queued_jobs) {
        return QuotaExceeded(
            absl::StrCat(
                "tenant quota max_queued_jobs=", tenant.quota.max_queued_jobs,
                " reached (", queued, " jobs queued or paused)"),
            "max_queued_jobs", tenant.quota.max_queued_jobs);
      }
    }
    v1::Job* job = response->mutable_job();
    job->set_tenant_id(tenant_id);
    *job->mutable_spec() = resolved;
    job->set_state(v1::JOB_STATE_UNSPECIFIED);
    prepared->answered = true;
    return absl::OkStatus();
  }

  core::Job& job = prepared->job;
  job.tenant_id = tenant_id;
  job.request_id = request_id;
  {
    std::string bytes;
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    resolved.SerializeToCodedStream(&coded);
    coded.Trim();
    job.spec = std::move(bytes);
  }
  job.priority = resolved.priority();
  job.resources.gpus = resolved.resources().gpus();
  job.resources.memory_bytes = resolved.resources().memory_bytes();
  job.resources.gpu_type = resolved.resources().gpu_type();
  job.resources.cpu_threads = resolved.resources().cpu_threads();
  job.resources.trainer = TrainerRequirementOf(resolved, *facts.model);
  job.max_restarts = resolved.max_restarts();
  job.labels.insert(resolved.labels().begin(), resolved.labels().end());
  job.model = resolved.model();
  job.training_file_id = resolved.training_file();
  if (resolved.validation_case() == v1::JobSpec::kValidationFile) {
    job.validation_file_id = resolved.validation_file();
  }
  prepared->request_id = request_id;
  prepared->resolved = std::move(resolved);
  return absl::OkStatus();
}

absl::Status JobEngine::FinishCreateJob(
    absl::StatusOr<store::CreateJobResult> created,
    const PreparedCreate& prepared, v1::CreateJobResponse* response) {
  const std::string& request_id = prepared.request_id;
  const v1::JobSpec& resolved = prepared.resolved;
  if (!created.ok()) {
    const absl::Status& st = created.status();
    std::string quota;
    int64_t limit = 0;
    if (absl::IsResourceExhausted(st) &&
        ParseQuotaMessage(st.message(), &quota, &limit)) {
      return QuotaExceeded(absl::StrCat("tenant ", st.message()), quota, limit);
    }
    if (absl::IsInvalidArgument(st)) {
      // A model or file changed between our checks and the transaction.
      const absl::string_view m = st.message();
      if (absl::StrContains(m, "validation_file_id")) {
        return InvalidField("spec.validation_file", std::string(m));
      }
      if (absl::StrContains(m, "training_file_id")) {
        return InvalidField("spec.training_file", std::string(m));
      }
      if (absl::StartsWith(m, "model")) {
        return InvalidField("spec.model", std::string(m));
      }
    }
    return st;
  }
  // The stored spec is `resolved` serialized (a new job) or the original's:
  // either way the response takes the parsed message, not a second parse.
  v1::JobSpec spec;
  if (created->created) {
    spec = resolved;
  } else {
    spec.ParseFromString(created->job.spec);
    if (!google::protobuf::util::MessageDifferencer::Equals(spec, resolved)) {
      v1::ErrorInfo info;
      info.set_resource_id(created->job.id);
      info.set_field("request_id");
      return WithErrorInfo(absl::AlreadyExistsError(absl::StrCat(
                               "request_id ", QuoteValue(request_id),
                               " was already used for job ", created->job.id,
                               " with a different spec")),
                           info);
    }
  }
  created->job.spec.clear();
  v1::Job* job = response->mutable_job();
  *job = JobToProto(created->job);
  *job->mutable_spec() = std::move(spec);
  return absl::OkStatus();
}

// ------------------------------------------------- cancel/pause/resume ----

absl::StatusOr<core::Job> JobEngine::CancelJob(const std::string& tenant_id,
                                               const std::string& job_id) {
  return DoControl(tenant_id, Control::kCancel, job_id);
}

absl::StatusOr<core::Job> JobEngine::PauseJob(const std::string& tenant_id,
                                              const std::string& job_id) {
  return DoControl(tenant_id, Control::kPause, job_id);
}

absl::StatusOr<core::Job> JobEngine::ResumeJob(const std::string& tenant_id,
                                               const std::string& job_id) {
  return DoControl(tenant_id, Control::kResume, job_id);
}

absl::StatusOr<core::Job> JobEngine::DoControl(const std::string& tenant_id,
                                               Control control,
                                               const std::string& job_id) {
  FTUNE_ASSIGN_OR_RETURN(core::Job job, GetJob(tenant_id, job_id));
  const char* verb = control == Control::kCancel  ? "cancel"
                     : control == Control::kPause ? "pause"
                                                  : "resume";
  auto refuse = [&](const core::Job& j) {
    return FailedPreconditionInState(
        absl::StrCat("cannot ", verb, " job ", job_id, ": it is ",
                     ApiStateName(j)),
        ApiStateName(j));
  };
  const core::JobState s = job.state;
  // Requests that already reached their goal succeed without change
  // (docs/api.md "Idempotency").
  bool unchanged = false;
  switch (control) {
    case Control::kCancel:
      if (s == core::JobState::kSucceeded || s == core::JobState::kFailed) {
        return refuse(job);
      }
      unchanged =
          s == core::JobState::kCancelled || s == core::JobState::kCancelling;
      break;
    case Control::kPause:
      if (s == core::JobState::kCancelling || core::IsTerminal(s)) {
        return refuse(job);
      }
      unchanged = s == core::JobState::kPaused;
      break;
    case Control::kResume:
      if (s == core::JobState::kCancelling || core::IsTerminal(s)) {
        return refuse(job);
      }
      unchanged = s == core::JobState::kQueued || s == core::JobState::kRunning;
      break;
  }
  if (unchanged) return job;
  absl::StatusOr<core::Job> after;
  switch (control) {
    case Control::kCancel:
      after = store_->CancelJob(tenant_id, job_id, "cancelled by the tenant");
      break;
    case Control::kPause:
      after = store_->PauseJob(tenant_id, job_id);
      break;
    case Control::kResume:
      after = store_->ResumeJob(tenant_id, job_id);
      break;
  }
  if (absl::IsFailedPrecondition(after.status())) {
    // Lost a race with another state change: report the state now.
    FTUNE_ASSIGN_OR_RETURN(core::Job now, GetJob(tenant_id, job_id));
    return refuse(now);
  }
  if (absl::IsNotFound(after.status())) return JobNotFound(job_id);
  return after;
}

}  // namespace ftune::server::engine
