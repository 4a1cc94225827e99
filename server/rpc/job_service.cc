#include "server/rpc/job_service.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/confined_path.h"
#include "common/file_util.h"
#include "common/quote.h"
#include "common/status.h"
#include "server/core/storage_layout.h"
#include "server/engine/job_engine.h"
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

// The tenant's job, as the engine finds it (a foreign and a missing job
// answer alike).
absl::StatusOr<core::Job> LoadJob(engine::JobEngine& jobs,
                                  const Principal& caller,
                                  const std::string& job_id) {
  return jobs.GetJob(caller.tenant_id, job_id);
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

}  // namespace

JobServiceImpl::JobServiceImpl(store::Store* store, engine::JobEngine* jobs,
                               Authenticator* auth, JobStreamHandlers streams,
                               Executor* executor, std::string storage_root)
    : store_(store),
      jobs_(jobs),
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
        jobs_->CreateJob(caller->tenant_id, *request, response,
                         std::move(done));
      });
}

// ---------------------------------------------------------- get, list ----

grpc::ServerUnaryReactor* JobServiceImpl::GetJob(
    grpc::CallbackServerContext* ctx, const v1::GetJobRequest* request,
    v1::Job* response) {
  return Unary(
      ctx, [this, request, response](const Principal& caller) -> absl::Status {
        FTUNE_ASSIGN_OR_RETURN(core::Job job,
                               LoadJob(*jobs_, caller, request->job_id()));
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
  absl::StatusOr<core::Job> job;
  switch (control) {
    case Control::kCancel:
      job = jobs_->CancelJob(caller.tenant_id, job_id);
      break;
    case Control::kPause:
      job = jobs_->PauseJob(caller.tenant_id, job_id);
      break;
    case Control::kResume:
      job = jobs_->ResumeJob(caller.tenant_id, job_id);
      break;
  }
  FTUNE_RETURN_IF_ERROR(job.status());
  *response = JobToProto(*job);
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
  FTUNE_ASSIGN_OR_RETURN(int64_t after,
                         SequenceCursor(cursor, request.after_sequence()));
  FTUNE_RETURN_IF_ERROR(LoadJob(*jobs_, caller, request.job_id()).status());
  FTUNE_ASSIGN_OR_RETURN(
      std::string next,
      SequencePage(
          after, page_size, /*max_batch=*/page_size, binding,
          [&](int64_t from, int limit) {
            return store_->ListJobEvents(caller.tenant_id, request.job_id(),
                                         from, limit);
          },
          [&](const core::JobEvent& e) -> std::optional<v1::JobEvent> {
            v1::JobEvent pe = JobEventToProto(e);
            if (!types.empty() &&
                !std::binary_search(types.begin(), types.end(), pe.type())) {
              return std::nullopt;
            }
            return pe;
          },
          response->mutable_events()));
  response->set_next_page_token(next);
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
  FTUNE_ASSIGN_OR_RETURN(int64_t after,
                         SequenceCursor(cursor, request.after_sequence()));
  FTUNE_RETURN_IF_ERROR(LoadJob(*jobs_, caller, request.job_id()).status());
  FTUNE_ASSIGN_OR_RETURN(
      std::string next,
      SequencePage(
          after, page_size, /*max_batch=*/1000, binding,
          [&](int64_t from, int limit) {
            return store_->ListJobMetrics(caller.tenant_id, request.job_id(),
                                          from, limit);
          },
          [&](const core::MetricPoint& m) -> std::optional<v1::MetricPoint> {
            if (m.step < request.min_step()) return std::nullopt;
            if (request.max_step() != 0 && m.step > request.max_step()) {
              return std::nullopt;
            }
            if (request.attempt() != 0 && m.attempt != request.attempt()) {
              return std::nullopt;
            }
            return MetricPointToProto(m);
          },
          response->mutable_metrics()));
  response->set_next_page_token(next);
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
  using Key = std::pair<int64_t, int64_t>;
  std::optional<Key> after;
  if (!cursor.empty()) {
    after.emplace();
    std::vector<std::string> parts = absl::StrSplit(cursor, ':');
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &after->first) ||
        !absl::SimpleAtoi(parts[1], &after->second)) {
      return InvalidField("page_token", "page_token: malformed page token");
    }
  }
  FTUNE_RETURN_IF_ERROR(LoadJob(*jobs_, caller, request.job_id()).status());
  FTUNE_ASSIGN_OR_RETURN(
      std::vector<core::Checkpoint> all,
      store_->ListCheckpoints(caller.tenant_id, request.job_id()));
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return std::make_pair(a.step, a.attempt) <
           std::make_pair(b.step, b.attempt);
  });
  FTUNE_ASSIGN_OR_RETURN(
      std::optional<Key> next,
      KeysetPage(
          all, after, page_size,
          [](const core::Checkpoint& c) { return Key(c.step, c.attempt); },
          [](const core::Checkpoint& c)
              -> absl::StatusOr<std::optional<v1::Checkpoint>> {
            return CheckpointToProto(c);
          },
          response->mutable_checkpoints()));
  if (next) {
    response->set_next_page_token(
        EncodePageToken(binding, absl::StrCat(next->first, ":", next->second)));
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
        ToGrpcStatus(absl::UnimplementedError("WatchJob is not wired"),
                     /*ctx=*/nullptr));
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
    return new FinishedWriter<v1::StreamJobLogResponse>(
        ToGrpcStatus(absl::UnimplementedError("StreamJobLog is not wired"),
                     /*ctx=*/nullptr));
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
    engine::JobEngine& jobs, const std::string& storage_root,
    const Principal& caller, const v1::DownloadAdapterFileRequest& request) {
  FTUNE_ASSIGN_OR_RETURN(core::Job job,
                         LoadJob(jobs, caller, request.job_id()));
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
                     engine::ApiStateName(job),
                     " (adapters exist once SUCCEEDED)"),
        engine::ApiStateName(job));
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
                    OpenAdapterFile(*jobs_, storage_root_, *caller, *request));
}

}  // namespace ftune::server::rpc
