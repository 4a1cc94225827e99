#include "proto/convert/trainer_capabilities.h"

#include <algorithm>
#include <string>

namespace ftune {

v1::TrainerCapabilities TrainerCapabilitiesToProto(
    const contract::TrainerCapabilities& caps) {
  v1::TrainerCapabilities out;
  out.set_version(caps.version);
  for (const std::string& m : caps.methods) out.add_methods(m);
  for (const std::string& a : caps.architectures) out.add_architectures(a);
  for (const std::string& d : caps.dtypes) out.add_dtypes(d);
  out.set_cuda(caps.cuda);
  out.set_max_gpus_per_job(caps.max_gpus_per_job);
  for (const std::string& t : caps.chat_templates) out.add_chat_templates(t);
  for (const std::string& o : caps.objectives) out.add_objectives(o);
  out.set_max_ranks_per_job(caps.max_ranks_per_job);
  return out;
}

contract::TrainerCapabilities TrainerCapabilitiesFromProtoUnchecked(
    const v1::TrainerCapabilities& caps) {
  contract::TrainerCapabilities out;
  out.version = caps.version();
  out.methods = {caps.methods().begin(), caps.methods().end()};
  out.architectures = {caps.architectures().begin(),
                       caps.architectures().end()};
  out.dtypes = {caps.dtypes().begin(), caps.dtypes().end()};
  out.cuda = caps.cuda();
  out.max_gpus_per_job = caps.max_gpus_per_job();
  out.chat_templates = {caps.chat_templates().begin(),
                        caps.chat_templates().end()};
  out.objectives = {caps.objectives().begin(), caps.objectives().end()};
  out.max_ranks_per_job = std::max(1, caps.max_ranks_per_job());
  return out;
}

}  // namespace ftune
