#include "server/core/storage_layout.h"

#include "absl/strings/str_cat.h"

namespace ftune::core {

std::string FilePath(absl::string_view tenant_id, absl::string_view file_id) {
  return absl::StrCat("files/", tenant_id, "/", file_id);
}

std::string JobDir(absl::string_view tenant_id, absl::string_view job_id) {
  return absl::StrCat("jobs/", tenant_id, "/", job_id);
}

std::string CheckpointDir(absl::string_view tenant_id,
                          absl::string_view job_id) {
  return absl::StrCat(JobDir(tenant_id, job_id), "/checkpoints");
}

std::string AdapterDir(absl::string_view tenant_id, absl::string_view job_id) {
  return absl::StrCat(JobDir(tenant_id, job_id), "/adapter");
}

std::string LogDir(absl::string_view tenant_id, absl::string_view job_id) {
  return absl::StrCat(JobDir(tenant_id, job_id), "/logs");
}

std::string AttemptLogPath(absl::string_view tenant_id,
                           absl::string_view job_id, int64_t attempt) {
  return absl::StrCat(LogDir(tenant_id, job_id), "/attempt-", attempt, ".log");
}

}  // namespace ftune::core
