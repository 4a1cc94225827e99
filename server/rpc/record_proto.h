// Conversions from server/core records to ftune.v1 protos for the services
// in this directory (files, job snapshots, events, metric points).
//
// Thread-safe: pure functions.
#ifndef FTUNE_SERVER_RPC_RECORD_PROTO_H_
#define FTUNE_SERVER_RPC_RECORD_PROTO_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ftune/v1/file.pb.h"
#include "ftune/v1/job.pb.h"
#include "server/core/types.h"

namespace google::protobuf {
class Timestamp;
}  // namespace google::protobuf

namespace ftune::server::rpc {

// FileRecord::purpose strings stored for each v1::FilePurpose. CreateJob
// compares these when it checks that a spec names a file of the right
// purpose.
inline constexpr absl::string_view kFilePurposeTrain = "fine-tune-train";
inline constexpr absl::string_view kFilePurposeValidation =
    "fine-tune-validation";

// "" for FILE_PURPOSE_UNSPECIFIED and unknown values.
std::string FilePurposeToRecord(v1::FilePurpose purpose);
v1::FilePurpose FilePurposeFromRecord(absl::string_view purpose);

// Sets `out` from `t`; absl::InfinitePast() (not set) clears it.
void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out);

v1::File FileToProto(const core::FileRecord& file);

// `job.spec` (a serialized JobSpec) is parsed into Job.spec when non-empty.
v1::Job JobToProto(const core::Job& job);
v1::JobEvent JobEventToProto(const core::JobEvent& event);
v1::MetricPoint MetricPointToProto(const core::MetricPoint& point);
v1::JobState JobStateToProto(core::JobState state);

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_RECORD_PROTO_H_
