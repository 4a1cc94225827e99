// FileService and ModelService commands: datasets in, datasets out, and the
// catalog of base models.
#include <google/protobuf/empty.pb.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/commands_internal.h"
#include "client/progress.h"
#include "common/sha256.h"
#include "ftune/v1/file.grpc.pb.h"
#include "ftune/v1/model.grpc.pb.h"

namespace ftune::client {
namespace {

// FileService takes chunks of at most 1 MiB.
constexpr size_t kChunkBytes = 1 << 20;

std::unique_ptr<v1::FileService::Stub> Stub(const CommandContext& c) {
  return v1::FileService::NewStub(c.conn.channel());
}

// "fine-tune" (or "train") and "validation"; UNSPECIFIED if neither.
v1::FilePurpose ParsePurpose(const std::string& text) {
  if (text == "fine-tune" || text == "train" || text == "training") {
    return v1::FILE_PURPOSE_FINE_TUNE_TRAIN;
  }
  if (text == "validation" || text == "fine-tune-validation") {
    return v1::FILE_PURPOSE_FINE_TUNE_VALIDATION;
  }
  int value = ParseEnum(v1::FilePurpose_descriptor(), "FILE_PURPOSE_", text);
  return value < 0 ? v1::FILE_PURPOSE_UNSPECIFIED
                   : static_cast<v1::FilePurpose>(value);
}

std::string PurposeName(v1::FilePurpose p) {
  switch (p) {
    case v1::FILE_PURPOSE_FINE_TUNE_TRAIN:
      return "fine-tune";
    case v1::FILE_PURPOSE_FINE_TUNE_VALIDATION:
      return "validation";
    default:
      return EnumName(v1::FilePurpose_descriptor(), p, "FILE_PURPOSE_");
  }
}

void PrintFile(const CommandContext& c, const v1::File& f) {
  if (c.output.structured()) return c.output.Message(f);
  c.output.Fields({{"id", f.id()},
                   {"filename", f.filename()},
                   {"purpose", PurposeName(f.purpose())},
                   {"format", EnumName(v1::FileFormat_descriptor(), f.format(),
                                       "FILE_FORMAT_")},
                   {"examples", absl::StrCat(f.example_count())},
                   {"size", absl::StrCat(f.size_bytes(), " bytes (",
                                         FormatBytes(f.size_bytes()), ")")},
                   {"sha256", f.sha256()},
                   {"status", EnumName(v1::FileStatus_descriptor(), f.status(),
                                       "FILE_STATUS_")},
                   {"created", FormatTime(f.create_time())}});
}

std::string MethodsOf(const v1::Model& m) {
  std::vector<std::string> methods;
  for (int method : m.supported_methods()) {
    methods.push_back(
        EnumName(v1::TrainingMethod_descriptor(), method, "TRAINING_METHOD_"));
  }
  return absl::StrJoin(methods, ",");
}

}  // namespace

int FilesUpload(const CommandContext& c) {
  const std::string& path = c.arg(0);
  const std::string purpose_text = c.flags().Get("purpose", "fine-tune");
  v1::FilePurpose purpose = ParsePurpose(purpose_text);
  if (purpose == v1::FILE_PURPOSE_UNSPECIFIED) {
    return UsageFailure(c, absl::StrCat("--purpose: \"", purpose_text,
                                        "\" is not fine-tune or validation"));
  }
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  std::ifstream in(path, std::ios::binary);
  if (ec || !in) {
    c.output.err() << "ftunectl: " << path << ": cannot be read"
                   << (ec ? absl::StrCat(" (", ec.message(), ")") : "") << "\n";
    return kExitUsage;
  }
  // The server checks size and checksum, so a file changed while it was
  // being sent is refused rather than stored half old, half new.
  absl::StatusOr<std::string> sha256 = Sha256File(path);
  if (!sha256.ok()) {
    c.output.err() << "ftunectl: " << sha256.status().message() << "\n";
    return kExitUsage;
  }

  v1::UploadFileRequest first;
  v1::UploadFileMetadata* meta = first.mutable_metadata();
  meta->set_filename(c.flags().Get(
      "filename", std::filesystem::path(path).filename().string()));
  meta->set_purpose(purpose);
  meta->set_expected_size_bytes(static_cast<int64_t>(size));
  meta->set_expected_sha256(*sha256);

  grpc::ClientContext ctx;
  c.conn.Prepare(&ctx, /*deadline=*/c.conn.timeout_set());
  v1::File file;
  auto writer = Stub(c)->UploadFile(&ctx, &file);
  TransferMeter meter(c.output.err(), c.output.terminal(), meta->filename(),
                      static_cast<int64_t>(size));
  int64_t sent = 0;
  // A failed Write means the server ended the call (e.g. refused the key);
  // Finish() below says why.
  if (writer->Write(first)) {
    std::string buffer(kChunkBytes, '\0');
    v1::UploadFileRequest chunk;
    while (in) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      const std::streamsize n = in.gcount();
      if (n <= 0) break;
      chunk.set_chunk(buffer.data(), static_cast<size_t>(n));
      if (!writer->Write(chunk)) break;
      sent += n;
      meter.Update(sent);
    }
    writer->WritesDone();
  }
  // The server validates every line before it answers; the line stays at
  // 100% meanwhile.
  grpc::Status status = writer->Finish();
  if (!status.ok()) {
    meter.Clear();
    return ReportRpcError(status, ctx, c.output.err());
  }
  meter.Done(sent);
  if (c.output.structured()) {
    c.output.Message(file);
  } else {
    c.output.out() << file.id() << "\n";
  }
  return kExitOk;
}

int FilesList(const CommandContext& c) {
  v1::ListFilesRequest req;
  if (c.flags().Has("purpose")) {
    v1::FilePurpose purpose = ParsePurpose(c.flags().Get("purpose"));
    if (purpose == v1::FILE_PURPOSE_UNSPECIFIED) {
      return UsageFailure(
          c, absl::StrCat("--purpose: \"", c.flags().Get("purpose"),
                          "\" is not fine-tune or validation"));
    }
    req.set_purpose(purpose);
  }
  auto stub = Stub(c);
  v1::ListFilesResponse all;
  int rc = ListPages(
      c, req,
      [&](grpc::ClientContext* ctx, const v1::ListFilesRequest& r,
          v1::ListFilesResponse* resp) {
        return stub->ListFiles(ctx, r, resp);
      },
      &all);
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(all);
    return kExitOk;
  }
  Table table(
      {"ID", "FILENAME", "PURPOSE", "FORMAT", "EXAMPLES", "SIZE", "CREATED"});
  for (const v1::File& f : all.files()) {
    table.Add(
        {f.id(), f.filename(), PurposeName(f.purpose()),
         EnumName(v1::FileFormat_descriptor(), f.format(), "FILE_FORMAT_"),
         absl::StrCat(f.example_count()), FormatBytes(f.size_bytes()),
         FormatTime(f.create_time())});
  }
  table.Print(c.output.out());
  return kExitOk;
}

int FilesGet(const CommandContext& c) {
  v1::GetFileRequest req;
  req.set_file_id(c.arg(0));
  v1::File file;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->GetFile(ctx, req, &file);
  });
  if (rc == kExitOk) PrintFile(c, file);
  return rc;
}

int FilesDownload(const CommandContext& c) {
  const std::string out_path = c.flags().Get("output-file");
  // Written next to the target and renamed at the end, so an interrupted
  // download never leaves a truncated file under the wanted name.
  const std::string partial = out_path + ".partial";
  std::ofstream file;
  if (!out_path.empty()) {
    file.open(partial, std::ios::binary | std::ios::trunc);
    if (!file) {
      c.output.err() << "ftunectl: " << partial << ": cannot be written\n";
      return kExitUsage;
    }
  }
  std::ostream& sink = out_path.empty() ? c.output.out() : file;

  v1::DownloadFileRequest req;
  req.set_file_id(c.arg(0));
  grpc::ClientContext ctx;
  c.conn.Prepare(&ctx, /*deadline=*/c.conn.timeout_set());
  auto reader = Stub(c)->DownloadFile(&ctx, req);
  v1::DownloadFileResponse chunk;
  int64_t bytes = 0;
  // A line on stderr only when writing to a file: with stdout as the sink
  // the data may be going to the same terminal.
  TerminalInfo terminal = c.output.terminal();
  if (out_path.empty()) terminal.stderr_is_tty = false;
  TransferMeter meter(c.output.err(), terminal, c.arg(0), /*total=*/0);
  while (reader->Read(&chunk)) {
    sink.write(chunk.chunk().data(),
               static_cast<std::streamsize>(chunk.chunk().size()));
    bytes += static_cast<int64_t>(chunk.chunk().size());
    meter.Update(bytes);
  }
  grpc::Status status = reader->Finish();
  meter.Clear();
  if (!status.ok()) {
    if (!out_path.empty()) {
      file.close();
      std::remove(partial.c_str());
    }
    return ReportRpcError(status, ctx, c.output.err());
  }
  if (out_path.empty()) {
    c.output.out().flush();
    return kExitOk;
  }
  file.close();
  std::error_code ec;
  if (!file || (std::filesystem::rename(partial, out_path, ec), ec)) {
    c.output.err() << "ftunectl: " << out_path << ": write failed"
                   << (ec ? absl::StrCat(" (", ec.message(), ")") : "") << "\n";
    std::remove(partial.c_str());
    return kExitError;
  }
  c.output.err() << c.arg(0) << ": " << bytes << " bytes written to "
                 << out_path << "\n";
  return kExitOk;
}

int FilesDelete(const CommandContext& c) {
  v1::DeleteFileRequest req;
  req.set_file_id(c.arg(0));
  google::protobuf::Empty empty;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return Stub(c)->DeleteFile(ctx, req, &empty);
  });
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(empty);
  } else {
    c.output.out() << c.arg(0) << ": deleted\n";
  }
  return kExitOk;
}

int ModelsList(const CommandContext& c) {
  auto stub = v1::ModelService::NewStub(c.conn.channel());
  v1::ListModelsResponse all;
  int rc = ListPages(
      c, v1::ListModelsRequest(),
      [&](grpc::ClientContext* ctx, const v1::ListModelsRequest& r,
          v1::ListModelsResponse* resp) {
        return stub->ListModels(ctx, r, resp);
      },
      &all);
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(all);
    return kExitOk;
  }
  // BASE: what a model a full fine-tuning job produced was trained from.
  Table table({"NAME", "ARCHITECTURE", "PARAMETERS", "MAX POSITIONS", "METHODS",
               "CHAT TEMPLATE", "BASE"});
  for (const v1::Model& m : all.models()) {
    table.Add(
        {m.name(), m.architecture(), absl::StrCat(m.parameter_count()),
         absl::StrCat(m.max_position_embeddings()), MethodsOf(m),
         m.default_chat_template().empty() ? "-" : m.default_chat_template(),
         m.base_model().empty() ? "-" : m.base_model()});
  }
  table.Print(c.output.out());
  return kExitOk;
}

int ModelsGet(const CommandContext& c) {
  v1::GetModelRequest req;
  req.set_name(c.arg(0));
  v1::Model m;
  int rc = Unary(c, [&](grpc::ClientContext* ctx) {
    return v1::ModelService::NewStub(c.conn.channel())->GetModel(ctx, req, &m);
  });
  if (rc != kExitOk) return rc;
  if (c.output.structured()) {
    c.output.Message(m);
    return kExitOk;
  }
  c.output.Fields(
      {{"name", m.name()},
       {"architecture", m.architecture()},
       {"parameters", absl::StrCat(m.parameter_count())},
       {"weights", FormatBytes(m.weights_size_bytes())},
       {"layers", absl::StrCat(m.num_layers())},
       {"hidden_size", absl::StrCat(m.hidden_size())},
       {"intermediate_size", absl::StrCat(m.intermediate_size())},
       {"attention_heads", absl::StrCat(m.num_attention_heads(), " (kv ",
                                        m.num_key_value_heads(), ")")},
       {"vocab_size", absl::StrCat(m.vocab_size())},
       {"max_positions", absl::StrCat(m.max_position_embeddings())},
       {"dtype", m.torch_dtype()},
       {"methods", MethodsOf(m)},
       {"chat_template", m.default_chat_template()},
       {"base_model", m.base_model()},
       {"job", m.job_id()},
       {"owner", m.owner_tenant_id()}});
  return kExitOk;
}

}  // namespace ftune::client
