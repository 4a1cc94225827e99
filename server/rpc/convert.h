// The front ends' short names for the proto<->domain conversions, which
// live with the engine (server/engine/convert.h) since the dispatcher and
// the job rules build protos too.
#ifndef FTUNE_SERVER_RPC_CONVERT_H_
#define FTUNE_SERVER_RPC_CONVERT_H_

#include "server/engine/convert.h"

namespace ftune::server::rpc {

using engine::AdapterName;
using engine::ApiKeyToProto;
using engine::CheckpointToProto;
using engine::FileFactsFromRecord;
using engine::FromTimestamp;
using engine::JobEventToProto;
using engine::JobEventTypeToProto;
using engine::JobSampleToProto;
using engine::JobStateEnumName;
using engine::JobStateFromProto;
using engine::JobStateToProto;
using engine::JobToProto;
using engine::MetricPointToProto;
using engine::ModelFactsFromModel;
using engine::ModelToProto;
using engine::QuotaToProto;
using engine::SetDuration;
using engine::SetTimestamp;
using engine::TenantToProto;
using engine::TrainerCapabilitiesFromProto;
using engine::TrainerRequirementOf;

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_CONVERT_H_
