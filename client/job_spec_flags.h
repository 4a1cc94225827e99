// Turns the flags of `ftunectl jobs create` into a CreateJobRequest: the
// JobSpec from --spec-file (YAML or protobuf JSON, client/spec_file.h), then
// each flag given overrides its field. Checks only what the server cannot see
// (bad flag syntax, unreadable spec file); the spec's values are the server's
// to judge.
//
// Thread-safe: functions share nothing.
#ifndef FTUNE_CLIENT_JOB_SPEC_FLAGS_H_
#define FTUNE_CLIENT_JOB_SPEC_FLAGS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "client/flags.h"
#include "ftune/v1/job_service.pb.h"

namespace ftune::client {

// INVALID_ARGUMENT naming the flag (or the spec file) on a usage error,
// including a missing model or training file. Without --request-id the
// request gets a random one, so that retrying this request is idempotent.
absl::StatusOr<v1::CreateJobRequest> BuildCreateJobRequest(
    const FlagValues& flags);

// Every JobSpec field (its path below JobSpec, "hyperparameters.seed") and
// the `jobs create` flag that sets it ("seed").
const std::vector<std::pair<std::string, std::string>>& JobSpecFieldFlags();

// "ftunectl-" and 32 random hex characters.
std::string NewRequestId();

}  // namespace ftune::client

#endif  // FTUNE_CLIENT_JOB_SPEC_FLAGS_H_
