#include "server/rpc/job_service.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
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
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/confined_path.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/quote.h"
#include "common/sha256.h"
#include "common/status.h"
#include "server/core/placement.h"
#include "server/core/spec_validation.h"
#include "server/core/storage_layout.h"
#include "server/rpc/auth.h"
#include "server/rpc/convert.h"
#include "server/rpc/executor.h"
#include "server/rpc/file_range_writer.h"
#include "server/rpc/pagination.h"
#include "server/rpc/status_util.h"
#include "server/store/store.h"

namespace ftune::server::rpc {
namespace {

// A write reactor that ends the call at once with `status` (auth failures
// and unimplemented streams).
template <typename T>
class FinishedWriter final : public grpc::ServerWriteReactor<T> {
 public:
  explicit FinishedWriter(grpc::Status status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

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

// The store's NOT_FOUND may phrase things its own way; the API answers a
// foreign and a missing job identically.
absl::StatusOr<core::Job> LoadJob(store::Store& store, const Principal& caller,
                                  const std::string& job_id) {
  FTUNE_RETURN_IF_ERROR(CheckJobId(job_id));
  absl::StatusOr<core::Job> job = store.GetJob(caller.tenant_id, job_id);
  if (absl::IsNotFound(job.status())) return JobNotFound(job_id);
  return job;
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
    absl::SimpleHexAtoi(bytes.substr(0, 16), &v);
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

absl::StatusOr<std::map<std::string, std::string>> ParseLabelSelector(
    const std::string& selector) {
  std::map<std::string, std::string> out;
  if (absl::StripAsciiWhitespace(selector).empty()) return out;
  for (absl::string_view term : absl::StrSplit(selector, ',')) {
    term = absl::StripAsciiWhitespace(term);
    const size_t eq = term.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return InvalidField(
          "label_selector",
          absl::StrCat("label_selector: term ", QuoteValue(term),
                       " is not key=value (e.g. team=search,stage=prod)"));
    }
    std::string key(absl::StripAsciiWhitespace(term.substr(0, eq)));
    std::string value(absl::StripAsciiWhitespace(term.substr(eq + 1)));
    auto [it, inserted] = out.emplace(key, value);
    if (!inserted && it->second != value) {
      return InvalidField("label_selector",
                          absl::StrCat("label_selector: key ", QuoteValue(key),
                                       " is given twice with other values"));
    }
  }
  return out;
}

// The state a client sees (a pending pause shows as RUNNING).
std::string ApiStateName(const core::Job& job) {
  return v1::JobState_Name(JobToProto(job).state());
}

}  // namespace

JobServiceImpl::JobServiceImpl(store::Store* store, Authenticator* auth,
                               JobStreamHandlers streams, Executor* executor,
                               std::string storage_root)
    : store_(store),
      auth_(auth),
      streams_(std::move(streams)),
      executor_(executor),
      storage_root_(std::move(storage_root)) {}

grpc::ServerUnaryReactor* JobServiceImpl::Unary(
    grpc::CallbackServerContext* ctx,
    std::function<absl::Status(const Principal&)> fn) {
  // Authentication and the handler read the store, and writes wait for a
  // group commit (an fsync): on gRPC's few callback threads that would cap
  // the calls in progress, and so the commit batches, at the thread count.
  return RunUnary(executor_, ctx, [this, ctx, fn = std::move(fn)] {
    absl::StatusOr<Principal> caller = RequireTenant(*auth_, *ctx);
    return caller.ok() ? fn(*caller) : caller.status();
  });
}

// ------------------------------------------------------------- create ----

struct JobServiceImpl::PreparedCreate {
  bool answered = false;  // validate_only: `response` is complete.
  core::Job job;          // What to store.
  std::string request_id;
  v1::JobSpec resolved;
};

absl::Status JobServiceImpl::PrepareCreateJob(
    const Principal& caller, const v1::CreateJobRequest& request,
    v1::CreateJobResponse* response, PreparedCreate* prepared) {
  const v1::JobSpec& spec = request.spec();
  const std::string& tenant_id = caller.tenant_id;
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

absl::Status JobServiceImpl::FinishCreateJob(
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

grpc::ServerUnaryReactor* JobServiceImpl::CreateJob(
    grpc::CallbackServerContext* ctx, const v1::CreateJobRequest* request,
    v1::CreateJobResponse* response) {
  // The executor thread validates and queues the write, then is free; the
  // store's writer finishes the call once the job is committed, so no thread
  // waits for the group commit.
  return RunUnaryAsync(
      executor_, ctx, [this, ctx, request, response](UnaryDone done) {
        absl::StatusOr<Principal> caller = RequireTenant(*auth_, *ctx);
        if (!caller.ok()) return done(caller.status());
        auto prepared = std::make_shared<PreparedCreate>();
        absl::Status s =
            PrepareCreateJob(*caller, *request, response, prepared.get());
        if (!s.ok() || prepared->answered) return done(s);
        core::Job job = std::move(prepared->job);
        store_->CreateJobAsync(
            std::move(job),
            [prepared, response, done = std::move(done)](
                absl::StatusOr<store::CreateJobResult> created) {
              done(FinishCreateJob(std::move(created), *prepared, response));
            });
      });
}

// ---------------------------------------------------------- get, list ----

grpc::ServerUnaryReactor* JobServiceImpl::GetJob(
    grpc::CallbackServerContext* ctx, const v1::GetJobRequest* request,
    v1::Job* response) {
  return Unary(
      ctx, [this, request, response](const Principal& caller) -> absl::Status {
        FTUNE_ASSIGN_OR_RETURN(core::Job job,
                               LoadJob(*store_, caller, request->job_id()));
        *response = JobToProto(job);
        return absl::OkStatus();
      });
}

absl::Status JobServiceImpl::DoListJobs(const Principal& caller,
                                        const v1::ListJobsRequest& request,
                                        v1::ListJobsResponse* response) {
  FTUNE_ASSIGN_OR_RETURN(int page_size, ResolvePageSize(request.page_size(),
                                                        store::kDefaultPageSize,
                                                        store::kMaxPageSize));
  store::JobFilter filter;
  for (int i = 0; i < request.states_size(); ++i) {
    std::optional<core::JobState> s = JobStateFromProto(request.states(i));
    if (!s) {
      return InvalidField(absl::StrCat("states[", i, "]"),
                          absl::StrCat("states[", i, "]: not a job state"));
    }
    filter.states.push_back(*s);
  }
  std::sort(filter.states.begin(), filter.states.end());
  filter.states.erase(std::unique(filter.states.begin(), filter.states.end()),
                      filter.states.end());
  FTUNE_ASSIGN_OR_RETURN(filter.labels,
                         ParseLabelSelector(request.label_selector()));
  // Canonical text of the filters the token is bound to.
  std::string binding = "jobs;states=";
  for (core::JobState s : filter.states) {
    absl::StrAppend(&binding, static_cast<int>(s), ",");
  }
  absl::StrAppend(&binding, ";labels=");
  for (const auto& [k, v] : filter.labels) {
    absl::StrAppend(&binding, k.size(), ":", k, "=", v.size(), ":", v, ",");
  }
  FTUNE_ASSIGN_OR_RETURN(std::string store_token,
                         DecodePageToken(request.page_token(), binding));
  absl::StatusOr<store::Page<core::Job>> page =
      store_->ListJobs(caller.tenant_id, filter, page_size, store_token);
  if (absl::IsInvalidArgument(page.status())) {
    return InvalidField("page_token",
                        absl::StrCat("page_token: ", page.status().message()));
  }
  FTUNE_RETURN_IF_ERROR(page.status());
  for (const core::Job& job : page->items) {
    *response->add_jobs() = JobToProto(job);
  }
  if (!page->next_page_token.empty()) {
    response->set_next_page_token(
        EncodePageToken(binding, page->next_page_token));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* JobServiceImpl::ListJobs(
    grpc::CallbackServerContext* ctx, const v1::ListJobsRequest* request,
    v1::ListJobsResponse* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    return DoListJobs(caller, *request, response);
  });
}

// ------------------------------------------------- cancel/pause/resume ----

absl::Status JobServiceImpl::DoControl(const Principal& caller, Control control,
                                       const std::string& job_id,
                                       v1::Job* response) {
  FTUNE_ASSIGN_OR_RETURN(core::Job job, LoadJob(*store_, caller, job_id));
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
  if (!unchanged) {
    absl::StatusOr<core::Job> after;
    switch (control) {
      case Control::kCancel:
        after = store_->CancelJob(caller.tenant_id, job_id,
                                  "cancelled by the tenant");
        break;
      case Control::kPause:
        after = store_->PauseJob(caller.tenant_id, job_id);
        break;
      case Control::kResume:
        after = store_->ResumeJob(caller.tenant_id, job_id);
        break;
    }
    if (absl::IsFailedPrecondition(after.status())) {
      // Lost a race with another state change: report the state now.
      FTUNE_ASSIGN_OR_RETURN(core::Job now, LoadJob(*store_, caller, job_id));
      return refuse(now);
    }
    if (absl::IsNotFound(after.status())) return JobNotFound(job_id);
    FTUNE_RETURN_IF_ERROR(after.status());
    job = *std::move(after);
  }
  *response = JobToProto(job);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* JobServiceImpl::CancelJob(
    grpc::CallbackServerContext* ctx, const v1::CancelJobRequest* request,
    v1::Job* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    return DoControl(caller, Control::kCancel, request->job_id(), response);
  });
}

grpc::ServerUnaryReactor* JobServiceImpl::PauseJob(
    grpc::CallbackServerContext* ctx, const v1::PauseJobRequest* request,
    v1::Job* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    return DoControl(caller, Control::kPause, request->job_id(), response);
  });
}

grpc::ServerUnaryReactor* JobServiceImpl::ResumeJob(
    grpc::CallbackServerContext* ctx, const v1::ResumeJobRequest* request,
    v1::Job* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    return DoControl(caller, Control::kResume, request->job_id(), response);
  });
}

// ------------------------------------------- events, metrics, checkpoints ----

absl::Status JobServiceImpl::DoListJobEvents(
    const Principal& caller, const v1::ListJobEventsRequest& request,
    v1::ListJobEventsResponse* response) {
  FTUNE_ASSIGN_OR_RETURN(int page_size,
                         ResolvePageSize(request.page_size(), 100, 1000));
  if (request.after_sequence() < 0) {
    return InvalidField("after_sequence", "after_sequence: must be >= 0");
  }
  std::vector<int> types;
  for (int i = 0; i < request.types_size(); ++i) {
    if (request.types(i) == v1::JOB_EVENT_TYPE_UNSPECIFIED ||
        !v1::JobEventType_IsValid(request.types(i))) {
      return InvalidField(absl::StrCat("types[", i, "]"),
                          absl::StrCat("types[", i, "]: not an event type"));
    }
    types.push_back(request.types(i));
  }
  std::sort(types.begin(), types.end());
  const std::string binding =
      absl::StrCat("events;", request.job_id(), ";", absl::StrJoin(types, ","));
  FTUNE_ASSIGN_OR_RETURN(std::string cursor,
                         DecodePageToken(request.page_token(), binding));
  int64_t after = request.after_sequence();
  if (!cursor.empty() && !absl::SimpleAtoi(cursor, &after)) {
    return InvalidField("page_token", "page_token: malformed page token");
  }
  FTUNE_RETURN_IF_ERROR(LoadJob(*store_, caller, request.job_id()).status());
  bool more = true;
  while (response->events_size() < page_size && more) {
    const int want = page_size - response->events_size();
    FTUNE_ASSIGN_OR_RETURN(
        std::vector<core::JobEvent> batch,
        store_->ListJobEvents(caller.tenant_id, request.job_id(), after, want));
    more = static_cast<int>(batch.size()) == want;
    for (const core::JobEvent& e : batch) {
      after = e.sequence;
      v1::JobEvent pe = JobEventToProto(e);
      if (types.empty() ||
          std::binary_search(types.begin(), types.end(), pe.type())) {
        *response->add_events() = std::move(pe);
      }
    }
  }
  if (more)
    response->set_next_page_token(
        EncodePageToken(binding, absl::StrCat(after)));
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* JobServiceImpl::ListJobEvents(
    grpc::CallbackServerContext* ctx, const v1::ListJobEventsRequest* request,
    v1::ListJobEventsResponse* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    return DoListJobEvents(caller, *request, response);
  });
}

absl::Status JobServiceImpl::DoListJobMetrics(
    const Principal& caller, const v1::ListJobMetricsRequest& request,
    v1::ListJobMetricsResponse* response) {
  FTUNE_ASSIGN_OR_RETURN(int page_size,
                         ResolvePageSize(request.page_size(), 1000, 10000));
  if (request.after_sequence() < 0) {
    return InvalidField("after_sequence", "after_sequence: must be >= 0");
  }
  if (request.min_step() < 0) {
    return InvalidField("min_step", "min_step: must be >= 0");
  }
  if (request.max_step() < 0) {
    return InvalidField("max_step", "max_step: must be >= 0");
  }
  if (request.max_step() != 0 && request.min_step() > request.max_step()) {
    return InvalidField("min_step",
                        absl::StrCat("min_step ", request.min_step(),
                                     " > max_step ", request.max_step()));
  }
  if (request.attempt() < 0) {
    return InvalidField("attempt", "attempt: must be >= 0");
  }
  const std::string binding =
      absl::StrCat("metrics;", request.job_id(), ";", request.min_step(), ";",
                   request.max_step(), ";", request.attempt());
  FTUNE_ASSIGN_OR_RETURN(std::string cursor,
                         DecodePageToken(request.page_token(), binding));
  int64_t after = request.after_sequence();
  if (!cursor.empty() && !absl::SimpleAtoi(cursor, &after)) {
    return InvalidField("page_token", "page_token: malformed page token");
  }
  FTUNE_RETURN_IF_ERROR(LoadJob(*store_, caller, request.job_id()).status());
  bool more = true;
  while (response->metrics_size() < page_size && more) {
    const int want = std::min(page_size - response->metrics_size(), 1000);
    FTUNE_ASSIGN_OR_RETURN(
        std::vector<core::MetricPoint> batch,
        store_->ListJobMetrics(caller.tenant_id, request.job_id(), after,
                               want));
    more = static_cast<int>(batch.size()) == want;
    for (const core::MetricPoint& m : batch) {
      after = m.sequence;
      if (m.step < request.min_step()) continue;
      if (request.max_step() != 0 && m.step > request.max_step()) continue;
      if (request.attempt() != 0 && m.attempt != request.attempt()) continue;
      *response->add_metrics() = MetricPointToProto(m);
    }
  }
  if (more)
    response->set_next_page_token(
        EncodePageToken(binding, absl::StrCat(after)));
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* JobServiceImpl::ListJobMetrics(
    grpc::CallbackServerContext* ctx, const v1::ListJobMetricsRequest* request,
    v1::ListJobMetricsResponse* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    return DoListJobMetrics(caller, *request, response);
  });
}

absl::Status JobServiceImpl::DoListCheckpoints(
    const Principal& caller, const v1::ListCheckpointsRequest& request,
    v1::ListCheckpointsResponse* response) {
  FTUNE_ASSIGN_OR_RETURN(int page_size,
                         ResolvePageSize(request.page_size(), 100, 1000));
  const std::string binding = absl::StrCat("checkpoints;", request.job_id());
  FTUNE_ASSIGN_OR_RETURN(std::string cursor,
                         DecodePageToken(request.page_token(), binding));
  // Cursor "step:attempt" of the last checkpoint returned.
  std::pair<int64_t, int64_t> after{-1, -1};
  if (!cursor.empty()) {
    std::vector<std::string> parts = absl::StrSplit(cursor, ':');
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &after.first) ||
        !absl::SimpleAtoi(parts[1], &after.second)) {
      return InvalidField("page_token", "page_token: malformed page token");
    }
  }
  FTUNE_RETURN_IF_ERROR(LoadJob(*store_, caller, request.job_id()).status());
  FTUNE_ASSIGN_OR_RETURN(
      std::vector<core::Checkpoint> all,
      store_->ListCheckpoints(caller.tenant_id, request.job_id()));
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return std::make_pair(a.step, a.attempt) <
           std::make_pair(b.step, b.attempt);
  });
  for (const core::Checkpoint& c : all) {
    if (std::make_pair(c.step, c.attempt) <= after) continue;
    if (response->checkpoints_size() == page_size) {
      const v1::Checkpoint& last = *response->checkpoints().rbegin();
      response->set_next_page_token(EncodePageToken(
          binding, absl::StrCat(last.step(), ":", last.attempt())));
      break;
    }
    *response->add_checkpoints() = CheckpointToProto(c);
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* JobServiceImpl::ListCheckpoints(
    grpc::CallbackServerContext* ctx, const v1::ListCheckpointsRequest* request,
    v1::ListCheckpointsResponse* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    return DoListCheckpoints(caller, *request, response);
  });
}

// ---------------------------------------------------------- streaming ----

grpc::ServerWriteReactor<v1::WatchJobResponse>* JobServiceImpl::WatchJob(
    grpc::CallbackServerContext* ctx, const v1::WatchJobRequest* request) {
  absl::StatusOr<Principal> caller = RequireTenant(*auth_, *ctx);
  if (!caller.ok()) {
    return new FinishedWriter<v1::WatchJobResponse>(
        ToGrpcStatus(caller.status(), ctx));
  }
  if (!streams_.watch_job) {
    return new FinishedWriter<v1::WatchJobResponse>(
        grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "WatchJob is not wired"));
  }
  return streams_.watch_job(ctx, request, *caller);
}

grpc::ServerWriteReactor<v1::StreamJobLogResponse>*
JobServiceImpl::StreamJobLog(grpc::CallbackServerContext* ctx,
                             const v1::StreamJobLogRequest* request) {
  absl::StatusOr<Principal> caller = RequireTenant(*auth_, *ctx);
  if (!caller.ok()) {
    return new FinishedWriter<v1::StreamJobLogResponse>(
        ToGrpcStatus(caller.status(), ctx));
  }
  if (!streams_.stream_job_log) {
    return new FinishedWriter<v1::StreamJobLogResponse>(grpc::Status(
        grpc::StatusCode::UNIMPLEMENTED, "StreamJobLog is not wired"));
  }
  return streams_.stream_job_log(ctx, request, *caller);
}

namespace {

// The byte range of an adapter file DownloadAdapterFile sends, or why there
// is none. Only paths recorded in Job.adapter.files are served, and only as
// regular files beneath the job's adapter directory reached without
// following a symbolic link (OpenBeneath): a worker that reported a path
// leaving the directory, or planted a link in it, cannot widen what a
// tenant reads.
absl::StatusOr<FileRange> OpenAdapterFile(
    store::Store& store, const std::string& storage_root,
    const Principal& caller, const v1::DownloadAdapterFileRequest& request) {
  FTUNE_ASSIGN_OR_RETURN(core::Job job,
                         LoadJob(store, caller, request.job_id()));
  if (request.path().empty()) return InvalidField("path", "path: is required");
  if (absl::Status s = CheckConfinedPath(request.path()); !s.ok()) {
    return InvalidField(
        "path",
        absl::StrCat("path ", QuoteValue(request.path()), " ", s.message()));
  }
  if (request.offset() < 0) {
    return InvalidField("offset", "offset: must be >= 0");
  }
  if (job.state != core::JobState::kSucceeded || job.adapter.path.empty()) {
    return FailedPreconditionInState(
        absl::StrCat("job ", job.id, " has no adapter: it is ",
                     ApiStateName(job), " (adapters exist once SUCCEEDED)"),
        ApiStateName(job));
  }
  const core::AdapterFile* file = nullptr;
  for (const core::AdapterFile& f : job.adapter.files) {
    if (f.path == request.path()) file = &f;
  }
  if (file == nullptr) {
    return NotFoundResource(
        absl::StrCat("adapter of job ", job.id, " has no file ",
                     QuoteValue(request.path()), " (see Job.adapter.files)"),
        job.id);
  }
  if (request.offset() > file->size_bytes) {
    return absl::OutOfRangeError(
        absl::StrCat("offset ", request.offset(), " is past the end of ",
                     file->path, " (", file->size_bytes, " bytes)"));
  }
  // The directory is the job's by construction, not the recorded one.
  absl::StatusOr<UniqueFd> fd = OpenBeneath(
      storage_root,
      absl::StrCat(core::AdapterDir(job.tenant_id, job.id), "/", file->path));
  if (absl::IsNotFound(fd.status())) {
    return NotFoundResource(
        absl::StrCat("adapter file ", file->path, " of job ", job.id,
                     " is missing from storage"),
        job.id);
  }
  if (!fd.ok()) {
    return Annotate(fd.status(), absl::StrCat("adapter file ", file->path,
                                              " of job ", job.id));
  }
  struct stat st;
  if (::fstat(fd->get(), &st) != 0) {
    return StorageError("cannot stat adapter file", file->path, errno);
  }
  if (st.st_size != file->size_bytes) {
    return absl::DataLossError(absl::StrCat(
        "adapter file ", file->path, " of job ", job.id,
        " no longer has its recorded size (", file->size_bytes, " bytes)"));
  }
  FileRange range;
  range.fd = fd->Release();
  range.offset = request.offset();
  range.end = file->size_bytes;
  return range;
}

}  // namespace

grpc::ServerWriteReactor<v1::DownloadAdapterFileResponse>*
JobServiceImpl::DownloadAdapterFile(
    grpc::CallbackServerContext* ctx,
    const v1::DownloadAdapterFileRequest* request) {
  using Writer = FileRangeWriter<v1::DownloadAdapterFileResponse>;
  absl::StatusOr<Principal> caller = RequireTenant(*auth_, *ctx);
  if (!caller.ok()) return new Writer(ctx, caller.status());
  if (storage_root_.empty()) {
    return new Writer(
        ctx, absl::UnimplementedError("DownloadAdapterFile is not wired"));
  }
  return new Writer(ctx,
                    OpenAdapterFile(*store_, storage_root_, *caller, *request));
}

}  // namespace ftune::server::rpc
