// File records <-> ftune.v1 protos. Jobs, events, metric points and
// timestamps are converted by convert.h (included here for the services that
// use both).
//
// Thread-safe: pure functions.
#ifndef FTUNE_SERVER_RPC_RECORD_PROTO_H_
#define FTUNE_SERVER_RPC_RECORD_PROTO_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ftune/v1/file.pb.h"
#include "ftune/v1/job.pb.h"
#include "server/core/spec_validation.h"
#include "server/core/types.h"
#include "server/rpc/convert.h"

namespace ftune::server::rpc {

// FileRecord::purpose strings stored for each v1::FilePurpose: the ones
// CreateJob's validation checks (server/core/spec_validation.h).
using core::kFilePurposeTrain;
using core::kFilePurposeValidation;

// "" for FILE_PURPOSE_UNSPECIFIED and unknown values.
std::string FilePurposeToRecord(v1::FilePurpose purpose);
v1::FilePurpose FilePurposeFromRecord(absl::string_view purpose);

v1::File FileToProto(const core::FileRecord& file);

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_RECORD_PROTO_H_
