// ftune.v1.TrainerCapabilities <-> contract::TrainerCapabilities, the one
// conversion the worker agent (which reports it) and the scheduler (which
// stores and shows it) share. Field for field, no validation: the scheduler
// bounds what it accepts (server/rpc/convert.h).
#ifndef FTUNE_PROTO_CONVERT_TRAINER_CAPABILITIES_H_
#define FTUNE_PROTO_CONVERT_TRAINER_CAPABILITIES_H_

#include "common/contract/capabilities.h"
#include "ftune/v1/worker.pb.h"

namespace ftune {

v1::TrainerCapabilities TrainerCapabilitiesToProto(
    const contract::TrainerCapabilities& caps);
contract::TrainerCapabilities TrainerCapabilitiesFromProtoUnchecked(
    const v1::TrainerCapabilities& caps);

}  // namespace ftune

#endif  // FTUNE_PROTO_CONVERT_TRAINER_CAPABILITIES_H_
