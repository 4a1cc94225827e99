#include "server/rpc/file_catalog.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/confined_path.h"
#include "common/dataset.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/quote.h"
#include "common/sha256.h"
#include "common/status.h"
#include "server/core/storage_layout.h"
#include "server/rpc/pagination.h"
#include "server/rpc/record_proto.h"
#include "server/rpc/status_util.h"

namespace ftune::server::rpc {
namespace {

constexpr char kUploadTempPrefix[] = ".upload-";
constexpr int kDefaultListFilesPageSize = 100;
constexpr int kMaxListFilesPageSize = 1000;

// A failed storage call on `path` (errno): typed by StorageError
// (RESOURCE_EXHAUSTED when storage is full, UNAVAILABLE when it fails, ...),
// never INTERNAL, which means a bug.
absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return StorageError(what, path, errno);
}

bool IsLowerHex(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

// A dotted JSON path such as "messages[2].role": what dataset errors put
// between "line N: " and the next ": " when one field is at fault.
bool LooksLikeJsonPath(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' &&
        c != '.' && c != '[' && c != ']') {
      return false;
    }
  }
  return true;
}

// INVALID_ARGUMENT for invalid dataset content. The message lists the
// validator's errors (first bad line first); ErrorInfo names the first bad
// line and, when one field is at fault, its JSON path.
absl::Status DatasetError(const ValidationReport& report) {
  absl::Status status = report.ToStatus();
  v1::ErrorInfo info;
  if (!report.errors.empty()) {
    absl::string_view first = report.errors.front();
    if (absl::ConsumePrefix(&first, "line ")) {
      const size_t colon = first.find(": ");
      int64_t line = 0;
      if (colon != absl::string_view::npos &&
          absl::SimpleAtoi(first.substr(0, colon), &line)) {
        info.set_line(line);
        absl::string_view rest = first.substr(colon + 2);
        const size_t next = rest.find(": ");
        if (next != absl::string_view::npos &&
            LooksLikeJsonPath(rest.substr(0, next))) {
          info.set_field(std::string(rest.substr(0, next)));
        }
      }
    }
  }
  return WithErrorInfo(absl::InvalidArgumentError(
                           absl::StrCat("invalid dataset: ", status.message())),
                       info);
}

std::string RecordFormat(DatasetFormat format) {
  // The stored name is the validator's, except for chat ("messages" there).
  if (format == DatasetFormat::kUnknown) return "";
  if (format == DatasetFormat::kMessages) return "chat";
  return std::string(DatasetFormatName(format));
}

absl::Status CheckFileId(const std::string& id) {
  if (!IsValidId(id, kFileIdPrefix)) {
    return InvalidField("file_id",
                        absl::StrCat("file_id ", QuoteValue(id),
                                     " is not a file id (file-...)"));
  }
  return absl::OkStatus();
}

// A store lookup of the file `id`: NOT_FOUND carries the id.
absl::StatusOr<core::FileRecord> AboutFile(
    absl::StatusOr<core::FileRecord> file, const std::string& id) {
  if (file.ok()) return file;
  return AboutResource(file.status(), id);
}

absl::Status CheckFilename(const std::string& name) {
  if (name.empty() || name.size() > 255) {
    return InvalidField("metadata.filename",
                        "metadata.filename must be 1-255 bytes");
  }
  if (name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    return InvalidField("metadata.filename",
                        "metadata.filename must not contain '/' or NUL");
  }
  if (FindInvalidUtf8(name) >= 0) {
    return InvalidField("metadata.filename", "metadata.filename must be UTF-8");
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------ upload ----

class UploadImpl final : public FileCatalog::Upload {
 public:
  UploadImpl(store::Store* store, const FileServiceOptions& options,
             std::string tenant, v1::UploadFileMetadata metadata,
             std::string purpose)
      : store_(store),
        options_(options),
        tenant_(std::move(tenant)),
        metadata_(std::move(metadata)),
        purpose_(std::move(purpose)),
        validator_(MakeLimits(options)) {}

  ~UploadImpl() override { RemoveTemp(); }

  absl::Status Add(absl::string_view chunk) override {
    absl::Status s = DoAdd(chunk);
    if (!s.ok()) RemoveTemp();
    return s;
  }

  absl::StatusOr<v1::File> Finish() override {
    absl::StatusOr<v1::File> file = DoFinish();
    if (!file.ok()) RemoveTemp();
    return file;
  }

  absl::Status OpenTemp() {
    dir_ = JoinPath(JoinPath(options_.storage_root, "files"), tenant_);
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) {
      // Messages name the path below the storage root, never the root.
      const std::string rel = JoinPath("files", tenant_);
      // A file where files/ or the tenant's directory should be: storage
      // holds something other than what ftune wrote there.
      if (ec.value() == EEXIST || ec.value() == ENOTDIR) {
        return absl::DataLossError(absl::StrCat("cannot create ", rel,
                                                ": a file is in the way (",
                                                ec.message(), ")"));
      }
      return StorageError("cannot create", rel, ec.value());
    }
    temp_path_ =
        JoinPath(dir_, absl::StrCat(kUploadTempPrefix,
                                    absl::BytesToHexString(RandomBytes(8))));
    fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                 0644);
    if (fd_ < 0) {
      absl::Status s = ErrnoError("cannot create", temp_path_);
      temp_path_.clear();
      return s;
    }
    return absl::OkStatus();
  }

 private:
  static DatasetLimits MakeLimits(const FileServiceOptions& options) {
    DatasetLimits limits;
    limits.max_line_bytes = static_cast<size_t>(options.max_line_bytes);
    return limits;
  }

  // fsync(2), or the injected fault (FileServiceOptions::fsync_for_testing).
  int Fsync(int fd) const {
    return options_.fsync_for_testing ? options_.fsync_for_testing(fd)
                                      : ::fsync(fd);
  }

  // Makes the rename into dir_ durable. A failure is storage failing
  // (UNAVAILABLE, RESOURCE_EXHAUSTED, ... by StorageError), never INTERNAL.
  absl::Status SyncDir() const {
    const std::string rel = JoinPath("files", tenant_);
    const int fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return StorageError("cannot open", rel, errno);
    const int rc = Fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) return StorageError("cannot fsync", rel, err);
    return absl::OkStatus();
  }

  void RemoveTemp() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    if (!temp_path_.empty()) {
      ::unlink(temp_path_.c_str());
      temp_path_.clear();
    }
  }

  absl::Status DoAdd(absl::string_view chunk) {
    if (fd_ < 0) {
      return absl::FailedPreconditionError("the upload has ended");
    }
    if (chunk.empty()) {
      return InvalidField("chunk", "empty chunk (chunks are 1 byte to 1 MiB)");
    }
    if (static_cast<int64_t>(chunk.size()) > options_.max_chunk_size_bytes) {
      return QuotaExceeded(absl::StrCat("chunk of ", chunk.size(),
                                        " bytes exceeds max_chunk_size_bytes ",
                                        options_.max_chunk_size_bytes),
                           "max_chunk_size_bytes",
                           options_.max_chunk_size_bytes);
    }
    const int64_t new_size = size_ + static_cast<int64_t>(chunk.size());
    if (new_size > options_.max_file_size_bytes) {
      return QuotaExceeded(absl::StrCat("file exceeds max_file_size_bytes ",
                                        options_.max_file_size_bytes),
                           "max_file_size_bytes", options_.max_file_size_bytes);
    }
    if (metadata_.has_expected_size_bytes() &&
        new_size > metadata_.expected_size_bytes()) {
      return InvalidField(
          "metadata.expected_size_bytes",
          absl::StrCat("received more than metadata.expected_size_bytes (",
                       metadata_.expected_size_bytes(), ") bytes"));
    }
    FTUNE_RETURN_IF_ERROR(WriteAll(chunk));
    size_ = new_size;
    sha_.Update(chunk);
    validator_.Add(chunk);
    return absl::OkStatus();
  }

  absl::Status WriteAll(absl::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("cannot write", temp_path_);
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<v1::File> DoFinish() {
    if (fd_ < 0) {
      return absl::FailedPreconditionError("the upload has ended");
    }
    if (size_ == 0) return InvalidField("chunk", "the file is empty");
    if (metadata_.has_expected_size_bytes() &&
        size_ != metadata_.expected_size_bytes()) {
      return InvalidField(
          "metadata.expected_size_bytes",
          absl::StrCat("received ", size_, " bytes, metadata.expected_size_",
                       "bytes is ", metadata_.expected_size_bytes()));
    }
    const std::string sha256 = sha_.FinishHex();
    if (!metadata_.expected_sha256().empty() &&
        sha256 != metadata_.expected_sha256()) {
      return InvalidField("metadata.expected_sha256",
                          absl::StrCat("the contents' sha256 is ", sha256,
                                       ", metadata.expected_sha256 is ",
                                       metadata_.expected_sha256()));
    }
    const ValidationReport report = validator_.Finish();
    if (!report.ok()) return DatasetError(report);

    if (Fsync(fd_) != 0) return ErrnoError("cannot fsync", temp_path_);
    if (::close(fd_) != 0) {
      fd_ = -1;
      return ErrnoError("cannot close", temp_path_);
    }
    fd_ = -1;
    core::FileRecord record;
    record.id = NewId(kFileIdPrefix);
    record.tenant_id = tenant_;
    record.filename = metadata_.filename();
    record.purpose = purpose_;
    record.size_bytes = size_;
    record.sha256 = sha256;
    record.status = core::FileStatus::kReady;
    record.format = RecordFormat(report.format);
    record.example_count = report.examples;
    record.storage_path = core::FilePath(tenant_, record.id);
    const std::string final_path =
        JoinPath(options_.storage_root, record.storage_path);
    if (::rename(temp_path_.c_str(), final_path.c_str()) != 0) {
      return ErrnoError("cannot rename into", final_path);
    }
    temp_path_.clear();
    absl::Status synced = SyncDir();
    absl::StatusOr<core::FileRecord> stored =
        synced.ok() ? store_->CreateFile(record)
                    : absl::StatusOr<core::FileRecord>(synced);
    if (!stored.ok()) {
      ::unlink(final_path.c_str());
      return stored.status();
    }
    // Answer with the record as stored: the database keeps times at a
    // coarser precision than CreateFile's return value, and GetFile must
    // later show the same File.
    absl::StatusOr<core::FileRecord> reread =
        store_->GetFile(tenant_, stored->id);
    return FileToProto(reread.ok() ? *reread : *stored);
  }

  store::Store* const store_;
  const FileServiceOptions& options_;
  const std::string tenant_;
  const v1::UploadFileMetadata metadata_;
  const std::string purpose_;
  std::string dir_;
  std::string temp_path_;  // Non-empty while a temp file exists.
  int fd_ = -1;
  int64_t size_ = 0;
  Sha256 sha_;
  DatasetValidator validator_;
};

// Removes "files/*/.upload-*" left by a crash during an upload.
void RemoveStaleUploads(const std::string& storage_root) {
  std::error_code ec;
  const std::filesystem::path files =
      std::filesystem::path(storage_root) / "files";
  for (const auto& tenant_dir :
       std::filesystem::directory_iterator(files, ec)) {
    if (!tenant_dir.is_directory(ec)) continue;
    for (const auto& entry :
         std::filesystem::directory_iterator(tenant_dir.path(), ec)) {
      if (absl::StartsWith(entry.path().filename().string(),
                           kUploadTempPrefix)) {
        std::filesystem::remove(entry.path(), ec);
      }
    }
  }
}

}  // namespace

FileCatalog::FileCatalog(store::Store* store, FileServiceOptions options)
    : store_(store), options_(std::move(options)) {
  RemoveStaleUploads(options_.storage_root);
}

absl::StatusOr<std::unique_ptr<FileCatalog::Upload>> FileCatalog::StartUpload(
    const std::string& tenant, const v1::UploadFileMetadata& metadata) {
  FTUNE_RETURN_IF_ERROR(CheckFilename(metadata.filename()));
  std::string purpose = FilePurposeToRecord(metadata.purpose());
  if (purpose.empty()) {
    return InvalidField("metadata.purpose",
                        "metadata.purpose must be FILE_PURPOSE_FINE_TUNE, "
                        "FILE_PURPOSE_FINE_TUNE_TRAIN or "
                        "FILE_PURPOSE_FINE_TUNE_VALIDATION");
  }
  if (metadata.has_expected_size_bytes()) {
    if (metadata.expected_size_bytes() < 0) {
      return InvalidField("metadata.expected_size_bytes",
                          "metadata.expected_size_bytes must be >= 0");
    }
    if (metadata.expected_size_bytes() > options_.max_file_size_bytes) {
      return QuotaExceeded(
          absl::StrCat("metadata.expected_size_bytes ",
                       metadata.expected_size_bytes(),
                       " exceeds the server's max_file_size_bytes ",
                       options_.max_file_size_bytes),
          "max_file_size_bytes", options_.max_file_size_bytes);
    }
  }
  const std::string& sha = metadata.expected_sha256();
  if (!sha.empty() && (sha.size() != 64 || !IsLowerHex(sha))) {
    return InvalidField(
        "metadata.expected_sha256",
        "metadata.expected_sha256 must be 64 lowercase hex characters");
  }
  auto upload = std::make_unique<UploadImpl>(store_, options_, tenant, metadata,
                                             std::move(purpose));
  FTUNE_RETURN_IF_ERROR(upload->OpenTemp());
  return upload;
}

absl::StatusOr<v1::File> FileCatalog::GetFile(const std::string& tenant,
                                              const std::string& file_id) {
  FTUNE_RETURN_IF_ERROR(CheckFileId(file_id));
  FTUNE_ASSIGN_OR_RETURN(core::FileRecord file,
                         AboutFile(store_->GetFile(tenant, file_id), file_id));
  return FileToProto(file);
}

absl::StatusOr<v1::ListFilesResponse> FileCatalog::ListFiles(
    const std::string& tenant, const v1::ListFilesRequest& request) {
  FTUNE_ASSIGN_OR_RETURN(
      int page_size,
      ResolvePageSize(request.page_size(), kDefaultListFilesPageSize,
                      kMaxListFilesPageSize));
  const std::string purpose = FilePurposeToRecord(request.purpose());
  if (request.purpose() != v1::FILE_PURPOSE_UNSPECIFIED && purpose.empty()) {
    return InvalidField("purpose", "unknown purpose");
  }
  // The token binds the store's cursor to the purpose filter.
  const std::string binding =
      absl::StrCat("files;purpose=", static_cast<int>(request.purpose()));
  FTUNE_ASSIGN_OR_RETURN(std::string store_token,
                         DecodePageToken(request.page_token(), binding));
  absl::StatusOr<store::Page<core::FileRecord>> page =
      store_->ListFiles(tenant, purpose, page_size, store_token);
  if (absl::IsInvalidArgument(page.status())) {
    return InvalidField("page_token", std::string(page.status().message()));
  }
  FTUNE_RETURN_IF_ERROR(page.status());
  v1::ListFilesResponse out;
  for (const core::FileRecord& f : page->items) {
    *out.add_files() = FileToProto(f);
  }
  if (!page->next_page_token.empty()) {
    out.set_next_page_token(EncodePageToken(binding, page->next_page_token));
  }
  return out;
}

absl::Status FileCatalog::DeleteFile(const std::string& tenant,
                                     const std::string& file_id) {
  FTUNE_RETURN_IF_ERROR(CheckFileId(file_id));
  absl::StatusOr<core::FileRecord> deleted =
      store_->DeleteFile(tenant, file_id);
  if (absl::IsFailedPrecondition(deleted.status())) {
    // The store refuses while a live job uses the file; find one such job
    // of this tenant (a file is only usable by its own tenant's jobs) so
    // the client gets it in ErrorInfo.
    v1::ErrorInfo info;
    store::JobFilter filter;
    filter.states = {core::JobState::kQueued, core::JobState::kRunning,
                     core::JobState::kCancelling, core::JobState::kPaused};
    std::string token;
    for (int pages = 0; pages < 100 && info.resource_id().empty(); ++pages) {
      absl::StatusOr<store::Page<core::Job>> jobs =
          store_->ListJobs(tenant, filter, store::kMaxPageSize, token);
      if (!jobs.ok()) break;
      for (const core::Job& job : jobs->items) {
        if (job.training_file_id == file_id ||
            job.validation_file_id == file_id) {
          info.set_resource_id(job.id);
          info.set_current_state(v1::JobState_Name(JobStateToProto(job.state)));
          break;
        }
      }
      token = jobs->next_page_token;
      if (token.empty()) break;
    }
    return WithErrorInfo(deleted.status(), info);
  }
  FTUNE_RETURN_IF_ERROR(AboutResource(deleted.status(), file_id));
  const std::string path =
      JoinPath(options_.storage_root, deleted->storage_path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    // The record is already DELETED (unreachable); leaking bytes is better
    // than failing a delete the client cannot repeat.
    FTUNE_LOG(WARNING) << "cannot remove " << path << ": "
                       << std::strerror(errno);
  }
  return absl::OkStatus();
}

absl::StatusOr<FileRange> FileCatalog::OpenContent(const std::string& tenant,
                                                   const std::string& file_id,
                                                   int64_t offset) {
  FTUNE_RETURN_IF_ERROR(CheckFileId(file_id));
  if (offset < 0) {
    return InvalidField("offset", "offset must be >= 0");
  }
  FTUNE_ASSIGN_OR_RETURN(core::FileRecord file,
                         AboutFile(store_->GetFile(tenant, file_id), file_id));
  if (offset > file.size_bytes) {
    return absl::OutOfRangeError(absl::StrCat("offset ", offset,
                                              " is past the end of the file (",
                                              file.size_bytes, " bytes)"));
  }
  // Opened beneath the root without following links (the record's path is
  // the server's, but storage may have been tampered with).
  absl::StatusOr<UniqueFd> fd =
      OpenBeneath(options_.storage_root, file.storage_path);
  if (absl::IsNotFound(fd.status())) {
    return NotFoundResource(
        absl::StrCat("file ", file.id, " is missing from storage"), file.id);
  }
  if (!fd.ok()) return Annotate(fd.status(), absl::StrCat("file ", file.id));
  struct stat st;
  if (::fstat(fd->get(), &st) != 0) {
    return StorageError("cannot stat", file.storage_path, errno);
  }
  if (st.st_size != file.size_bytes) {
    return absl::DataLossError(
        absl::StrCat("file ", file.id, " no longer has its recorded size (",
                     file.size_bytes, " bytes)"));
  }
  FileRange range;
  range.fd = fd->Release();
  range.offset = offset;
  range.end = file.size_bytes;
  range.chunk_bytes = options_.download_chunk_bytes;
  return range;
}

}  // namespace ftune::server::rpc
