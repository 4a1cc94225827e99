// Where a job's things live under the shared storage root (DESIGN.md,
// "Shared storage"). Every path is relative to the root, so the scheduler
// and each worker resolve it against their own mount of it. The scheduler
// computes these once (AssignJobCommand carries them to the worker); the
// file service and StreamJobLog use the same functions, so the layout is
// defined here only.
//
//   models/<name>/
//   files/<tenant>/<file id>
//   jobs/<tenant>/<job id>/checkpoints/step-NNNNNNNN/
//   jobs/<tenant>/<job id>/adapter/
//   jobs/<tenant>/<job id>/logs/attempt-<N>.log
//
// Thread-safety: pure functions.
#ifndef FTUNE_SERVER_CORE_STORAGE_LAYOUT_H_
#define FTUNE_SERVER_CORE_STORAGE_LAYOUT_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace ftune::core {

// "files/<tenant>/<file id>".
std::string FilePath(absl::string_view tenant_id, absl::string_view file_id);
// "jobs/<tenant>/<job id>".
std::string JobDir(absl::string_view tenant_id, absl::string_view job_id);
// "jobs/<tenant>/<job id>/checkpoints".
std::string CheckpointDir(absl::string_view tenant_id,
                          absl::string_view job_id);
// "jobs/<tenant>/<job id>/adapter".
std::string AdapterDir(absl::string_view tenant_id, absl::string_view job_id);
// "jobs/<tenant>/<job id>/logs".
std::string LogDir(absl::string_view tenant_id, absl::string_view job_id);
// "jobs/<tenant>/<job id>/logs/attempt-<attempt>.log".
std::string AttemptLogPath(absl::string_view tenant_id,
                           absl::string_view job_id, int64_t attempt);

}  // namespace ftune::core

#endif  // FTUNE_SERVER_CORE_STORAGE_LAYOUT_H_
