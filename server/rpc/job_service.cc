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
#include "server/rpc/job_queries.h"
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

grpc::ServerUnaryReactor* JobServiceImpl::ListJobs(
    grpc::CallbackServerContext* ctx, const v1::ListJobsRequest* request,
    v1::ListJobsResponse* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    return ftune::server::rpc::ListJobs(*store_, caller.tenant_id, *request,
                                        response);
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

grpc::ServerUnaryReactor* JobServiceImpl::ListJobEvents(
    grpc::CallbackServerContext* ctx, const v1::ListJobEventsRequest* request,
    v1::ListJobEventsResponse* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    return ftune::server::rpc::ListJobEvents(*store_, *jobs_, caller.tenant_id,
                                             *request, response);
  });
}

grpc::ServerUnaryReactor* JobServiceImpl::ListJobMetrics(
    grpc::CallbackServerContext* ctx, const v1::ListJobMetricsRequest* request,
    v1::ListJobMetricsResponse* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    return ftune::server::rpc::ListJobMetrics(*store_, *jobs_, caller.tenant_id,
                                              *request, response);
  });
}

grpc::ServerUnaryReactor* JobServiceImpl::ListCheckpoints(
    grpc::CallbackServerContext* ctx, const v1::ListCheckpointsRequest* request,
    v1::ListCheckpointsResponse* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    return ftune::server::rpc::ListCheckpoints(
        *store_, *jobs_, caller.tenant_id, *request, response);
  });
}

grpc::ServerUnaryReactor* JobServiceImpl::ListJobSamples(
    grpc::CallbackServerContext* ctx, const v1::ListJobSamplesRequest* request,
    v1::ListJobSamplesResponse* response) {
  return Unary(ctx, [this, request, response](const Principal& caller) {
    return ftune::server::rpc::ListJobSamples(*store_, *jobs_, caller.tenant_id,
                                              *request, response);
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

grpc::ServerWriteReactor<v1::TryModelResponse>* JobServiceImpl::TryModel(
    grpc::CallbackServerContext* ctx, const v1::TryModelRequest* request) {
  absl::StatusOr<Principal> caller = RequireTenant(*auth_, *ctx);
  if (!caller.ok()) {
    return new FinishedWriter<v1::TryModelResponse>(
        ToGrpcStatus(caller.status(), ctx));
  }
  if (!streams_.try_model) {
    return new FinishedWriter<v1::TryModelResponse>(
        ToGrpcStatus(absl::UnimplementedError("TryModel is not wired"),
                     /*ctx=*/nullptr));
  }
  return streams_.try_model(ctx, request, *caller);
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
