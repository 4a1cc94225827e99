#include "client/rpc.h"

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ftune::client {
namespace {

constexpr char kErrorInfoKey[] = "ftune-error-bin";

absl::StatusOr<std::string> ReadWholeFile(const std::string& path,
                                          absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(what, " ", path, ": cannot be read"));
  }
  std::ostringstream data;
  data << in.rdbuf();
  return data.str();
}

}  // namespace

absl::StatusOr<std::string> ReadKeyFile(const std::string& path) {
  auto text = ReadWholeFile(path, "API key file");
  if (!text.ok()) return text.status();
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty()) return std::string(line);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("API key file ", path, " is empty"));
}

absl::StatusOr<Connection> Connection::Open(const GlobalOptions& options) {
  Connection conn;
  conn.address_ = options.address;
  conn.timeout_ = options.timeout;
  conn.timeout_set_ = options.timeout_set;
  conn.api_key_ = options.api_key;
  if (!options.api_key_file.empty()) {
    auto key = ReadKeyFile(options.api_key_file);
    if (!key.ok()) return key.status();
    conn.api_key_ = *key;
  }

  std::shared_ptr<grpc::ChannelCredentials> creds;
  grpc::ChannelArguments args;
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca.empty()) {
      auto ca = ReadWholeFile(options.tls_ca, "--tls-ca");
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
    }
    if (options.tls_cert.empty() != options.tls_key.empty()) {
      return absl::InvalidArgumentError(
          "--tls-cert and --tls-key go together (mutual TLS needs both)");
    }
    if (!options.tls_cert.empty()) {
      auto cert = ReadWholeFile(options.tls_cert, "--tls-cert");
      if (!cert.ok()) return cert.status();
      auto key = ReadWholeFile(options.tls_key, "--tls-key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  conn.channel_ = grpc::CreateCustomChannel(options.address, creds, args);
  return conn;
}

void Connection::Prepare(grpc::ClientContext* ctx, bool deadline) const {
  if (!api_key_.empty()) {
    ctx->AddMetadata("authorization", absl::StrCat("Bearer ", api_key_));
  }
  if (deadline) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      absl::ToChronoMilliseconds(timeout_));
  }
}

int ExitCodeFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return kExitOk;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kExitUnavailable;
    default:
      return kExitError;
  }
}

std::string StatusCodeName(grpc::StatusCode code) {
  // gRPC's codes are absl's (same numbers, same names).
  std::string name =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? absl::StrCat("CODE_", static_cast<int>(code)) : name;
}

std::optional<v1::ErrorInfo> ErrorInfoOf(const grpc::ClientContext& ctx) {
  const auto& trailers = ctx.GetServerTrailingMetadata();
  auto it = trailers.find(kErrorInfoKey);
  if (it == trailers.end()) return std::nullopt;
  v1::ErrorInfo info;
  // gRPC has already base64-decoded the "-bin" value.
  if (!info.ParseFromArray(it->second.data(),
                           static_cast<int>(it->second.size()))) {
    return std::nullopt;
  }
  return info;
}

int ReportRpcError(const grpc::Status& status, const grpc::ClientContext& ctx,
                   std::ostream& err) {
  err << "ftunectl: " << StatusCodeName(status.error_code()) << ": "
      << status.error_message() << "\n";
  if (std::optional<v1::ErrorInfo> info = ErrorInfoOf(ctx); info.has_value()) {
    if (!info->field().empty()) err << "  field: " << info->field() << "\n";
    if (info->line() != 0) err << "  line: " << info->line() << "\n";
    if (!info->quota().empty()) {
      err << "  quota: " << info->quota() << " (limit " << info->limit()
          << ")\n";
    }
    if (!info->current_state().empty()) {
      err << "  current_state: " << info->current_state() << "\n";
    }
    if (!info->resource_id().empty()) {
      err << "  resource_id: " << info->resource_id() << "\n";
    }
  }
  err.flush();
  return ExitCodeFor(status.error_code());
}

}  // namespace ftune::client
