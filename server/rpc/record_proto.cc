#include "server/rpc/record_proto.h"

#include <cstdint>

#include "google/protobuf/timestamp.pb.h"

namespace ftune::server::rpc {

std::string FilePurposeToRecord(v1::FilePurpose purpose) {
  switch (purpose) {
    case v1::FILE_PURPOSE_FINE_TUNE_TRAIN:
      return std::string(kFilePurposeTrain);
    case v1::FILE_PURPOSE_FINE_TUNE_VALIDATION:
      return std::string(kFilePurposeValidation);
    case v1::FILE_PURPOSE_FINE_TUNE:
      return std::string(core::kFilePurposeFineTune);
    default:
      return "";
  }
}

v1::FilePurpose FilePurposeFromRecord(absl::string_view purpose) {
  if (purpose == kFilePurposeTrain) return v1::FILE_PURPOSE_FINE_TUNE_TRAIN;
  if (purpose == kFilePurposeValidation) {
    return v1::FILE_PURPOSE_FINE_TUNE_VALIDATION;
  }
  if (purpose == core::kFilePurposeFineTune) return v1::FILE_PURPOSE_FINE_TUNE;
  return v1::FILE_PURPOSE_UNSPECIFIED;
}

v1::File FileToProto(const core::FileRecord& file) {
  v1::File out;
  out.set_id(file.id);
  out.set_tenant_id(file.tenant_id);
  out.set_filename(file.filename);
  out.set_purpose(FilePurposeFromRecord(file.purpose));
  out.set_size_bytes(file.size_bytes);
  out.set_sha256(file.sha256);
  SetTimestamp(file.create_time, out.mutable_create_time());
  // Only READY files are visible through the API (uploads are validated
  // before they are recorded), and READY is what the proto calls VALIDATED.
  out.set_status(file.status == core::FileStatus::kReady
                     ? v1::FILE_STATUS_VALIDATED
                     : v1::FILE_STATUS_UNSPECIFIED);
  if (file.format == "chat") {
    out.set_format(v1::FILE_FORMAT_CHAT);
  } else if (file.format == "prompt_completion") {
    out.set_format(v1::FILE_FORMAT_PROMPT_COMPLETION);
  } else if (file.format == "text") {
    out.set_format(v1::FILE_FORMAT_TEXT);
  } else if (file.format == "preference") {
    out.set_format(v1::FILE_FORMAT_PREFERENCE);
  } else if (file.format == "chat_preference") {
    out.set_format(v1::FILE_FORMAT_CHAT_PREFERENCE);
  }
  out.set_example_count(file.example_count);
  return out;
}

}  // namespace ftune::server::rpc
