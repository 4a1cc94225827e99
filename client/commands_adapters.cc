// `adapters download`: every file of a SUCCEEDED job's adapter
// (Job.adapter.files) into a directory through
// JobService.DownloadAdapterFile. Each file is written as NAME.partial,
// checked against the size and SHA-256 the job lists, then renamed; a
// broken stream resumes at the next byte, and a rerun resumes from the
// partial files a previous run left (and keeps files already complete).
#include <google/protobuf/util/json_util.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/commands_internal.h"
#include "client/progress.h"
#include "common/sha256.h"
#include "ftune/v1/job_service.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace ftune::client {
namespace {

namespace fs = std::filesystem;

// Whether a path from the server stays inside the target directory.
bool SafeRelativePath(const std::string& path) {
  if (path.empty()) return false;
  fs::path p(path);
  if (p.is_absolute() || p.has_root_name()) return false;
  for (const fs::path& part : p) {
    if (part == ".." || part == ".") return false;
  }
  return true;
}

// The default directory: the adapter's name, when it is a plain name.
std::string DefaultDir(const v1::Job& job) {
  const std::string& name = job.adapter().name();
  if (!name.empty() && name.find('/') == std::string::npos && name != "." &&
      name != "..") {
    return name;
  }
  return job.id();
}

int LocalError(const CommandContext& c, TransferMeter& meter,
               const std::string& message) {
  meter.Clear();
  c.output.err() << "ftunectl: " << message << "\n";
  return kExitError;
}

// Downloads one file into `dir`. `before` is the bytes of earlier files,
// for the meter.
int DownloadOne(const CommandContext& c, v1::JobService::Stub& stub,
                const v1::Job& job, const v1::AdapterFile& file,
                const fs::path& dir, int64_t before, TransferMeter& meter) {
  const fs::path dest = dir / file.path();
  const std::string partial = dest.string() + ".partial";
  std::error_code ec;
  fs::create_directories(dest.parent_path(), ec);
  if (ec) {
    return LocalError(c, meter,
                      absl::StrCat(dest.parent_path().string(),
                                   ": cannot be created (", ec.message(), ")"));
  }
  // A rerun keeps what an earlier run completed.
  if (fs::is_regular_file(dest, ec) &&
      static_cast<int64_t>(fs::file_size(dest, ec)) == file.size_bytes()) {
    absl::StatusOr<std::string> sha = Sha256File(dest.string());
    if (sha.ok() && *sha == file.sha256()) {
      meter.Update(before + file.size_bytes());
      return kExitOk;
    }
  }

  int64_t offset = 0;
  if (fs::is_regular_file(partial, ec)) {
    offset = static_cast<int64_t>(fs::file_size(partial, ec));
    if (ec || offset > file.size_bytes()) offset = 0;
  }
  std::ofstream out(partial, std::ios::binary | (offset > 0 ? std::ios::app
                                                            : std::ios::trunc));
  if (!out) {
    return LocalError(c, meter, absl::StrCat(partial, ": cannot be written"));
  }

  Reconnector reconnect(c, absl::StrCat("download ", file.path()));
  while (offset < file.size_bytes()) {
    v1::DownloadAdapterFileRequest req;
    req.set_job_id(job.id());
    req.set_path(file.path());
    req.set_offset(offset);
    grpc::ClientContext ctx;
    c.conn.Prepare(&ctx, /*deadline=*/c.conn.timeout_set());
    auto reader = stub.DownloadAdapterFile(&ctx, req);
    v1::DownloadAdapterFileResponse chunk;
    bool out_of_order = false;
    while (reader->Read(&chunk)) {
      if (chunk.offset() != offset) {
        out_of_order = true;
        ctx.TryCancel();
        break;
      }
      out.write(chunk.chunk().data(),
                static_cast<std::streamsize>(chunk.chunk().size()));
      offset += static_cast<int64_t>(chunk.chunk().size());
      reconnect.Progress();
      meter.Update(before + offset);
    }
    grpc::Status status = reader->Finish();
    if (out_of_order) {
      out.close();
      fs::remove(partial, ec);
      return LocalError(
          c, meter,
          absl::StrCat(file.path(), ": the server sent byte ", chunk.offset(),
                       " where ", offset, " was due"));
    }
    if (status.ok()) break;
    meter.Clear();
    if (!Retryable(status)) {
      out.close();
      fs::remove(partial, ec);
      return ReportRpcError(status, ctx, c.output.err());
    }
    out.flush();
    if (!reconnect.Wait(status, absl::StrCat("byte ", offset))) {
      // The partial file stays: a rerun continues from it.
      ReportRpcError(status, ctx, c.output.err());
      return kExitUnavailable;
    }
  }
  out.close();
  if (!out)
    return LocalError(c, meter, absl::StrCat(partial, ": write failed"));

  const auto size = static_cast<int64_t>(fs::file_size(partial, ec));
  if (ec || size != file.size_bytes()) {
    fs::remove(partial, ec);
    return LocalError(
        c, meter,
        absl::StrCat(file.path(), ": got ", size, " bytes, the job lists ",
                     file.size_bytes(), "; removed the partial file"));
  }
  absl::StatusOr<std::string> sha = Sha256File(partial);
  if (!sha.ok() || *sha != file.sha256()) {
    fs::remove(partial, ec);
    return LocalError(
        c, meter,
        absl::StrCat(file.path(), ": SHA-256 mismatch (the job lists ",
                     file.sha256(), ", got ",
                     sha.ok() ? *sha : std::string(sha.status().message()),
                     "); removed the partial file"));
  }
  fs::rename(partial, dest, ec);
  if (ec) {
    return LocalError(
        c, meter,
        absl::StrCat(dest.string(), ": write failed (", ec.message(), ")"));
  }
  return kExitOk;
}

}  // namespace

int AdaptersDownload(const CommandContext& c) {
  auto stub = v1::JobService::NewStub(c.conn.channel());
  v1::GetJobRequest get;
  get.set_job_id(c.arg(0));
  v1::Job job;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return stub->GetJob(ctx, get, &job);
  });
  if (rc != kExitOk) return rc;
  if (job.state() != v1::JOB_STATE_SUCCEEDED) {
    c.output.err() << "ftunectl: " << job.id() << " is "
                   << JobStateName(job.state())
                   << "; only a SUCCEEDED job has an adapter\n";
    return kExitError;
  }
  const v1::Adapter& adapter = job.adapter();
  if (adapter.files().empty()) {
    c.output.err() << "ftunectl: " << job.id() << " lists no adapter files\n";
    return kExitError;
  }
  const std::string dir = c.flags().Get("output-dir", DefaultDir(job));
  int64_t total = 0;
  for (const v1::AdapterFile& f : adapter.files()) {
    if (!SafeRelativePath(f.path())) {
      c.output.err() << "ftunectl: " << job.id()
                     << ": refusing adapter file path \"" << f.path()
                     << "\" (not inside the adapter directory)\n";
      return kExitError;
    }
    total += f.size_bytes();
  }

  TransferMeter meter(c.output.err(), c.output.terminal(), adapter.name(),
                      total);
  int64_t done = 0;
  for (const v1::AdapterFile& f : adapter.files()) {
    rc = DownloadOne(c, *stub, job, f, dir, done, meter);
    if (rc != kExitOk) return rc;
    done += f.size_bytes();
  }
  meter.Done(total);

  if (c.output.structured()) {
    std::string adapter_json;
    google::protobuf::util::JsonPrintOptions options;
    (void)google::protobuf::util::MessageToJsonString(adapter, &adapter_json,
                                                      options);
    nlohmann::ordered_json json = {
        {"jobId", job.id()},
        {"directory", dir},
        {"adapter", nlohmann::ordered_json::parse(adapter_json)}};
    c.output.JsonText(json.dump());
    return kExitOk;
  }
  c.output.err() << job.id() << ": " << adapter.files_size() << " files ("
                 << FormatBytes(total) << ") written to " << dir
                 << ", SHA-256 checked\n";
  c.output.out() << dir << "\n";
  return kExitOk;
}

}  // namespace ftune::client
