// The memory planner (common/contract/memory_plan.h) at job creation: the
// plan of a resolved JobSpec, the device memory it is compared with, and
// the verdict: fits, close (a warning in the estimate), or does not fit (a
// refusal that gives the prediction and the changes that would fit).
//
// Works on the ftune.v1 protos like spec_validation.h (same library).
// Thread-safe: pure functions.
#ifndef FTUNE_SERVER_CORE_MEMORY_CHECK_H_
#define FTUNE_SERVER_CORE_MEMORY_CHECK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/contract/memory_plan.h"
#include "ftune/v1/job_service.pb.h"
#include "ftune/v1/job_spec.pb.h"
#include "server/core/types.h"

namespace ftune::core {

// A prediction within this share of the device's memory is accepted with a
// warning: the planner's measured error is under 10% (docs/memory.md).
inline constexpr double kMemoryCloseShare = 0.9;

// The planner's input for a resolved spec. An unset compute dtype is the
// workers' choice: bf16 for GPU jobs, fp32 on CPU.
contract::MemoryPlanInput MemoryPlanInputOf(const v1::JobSpec& resolved,
                                            const contract::ModelShape& shape);

// The memory of one device that could run the job, and what it is.
struct DeviceMemory {
  int64_t bytes = 0;  // 0: unknown (no check)
  std::string device;
};
// GPU jobs: the largest GPU memory among the registered, not LOST workers
// with enough GPUs whose gpu_type contains resources.gpu_type
// (case-insensitive); when none, the known memory of the named GPU type
// (contract::KnownGpuMemoryBytes). CPU jobs: resources.memory_bytes.
DeviceMemory DeviceMemoryFor(const v1::JobSpec& resolved,
                             const std::vector<Worker>& workers);

struct MemoryVerdict {
  contract::MemoryPlan plan;
  DeviceMemory device;
  bool fits = true;  // false: refuse (GPU jobs only)
  // A close-to-the-limit or a CPU over-reservation note for
  // JobEstimate.warnings; empty when none.
  std::string warning;
  // When !fits: the prediction, the device's memory and the changes that
  // would fit, each with its prediction.
  std::string refusal;
};
// INVALID_ARGUMENT only for a shape the planner cannot use (a model row
// without sizes): callers then skip the check.
absl::StatusOr<MemoryVerdict> CheckMemory(const v1::JobSpec& resolved,
                                          const contract::ModelShape& shape,
                                          const DeviceMemory& device);

// JobEstimate.memory from a verdict (and its warning, if any).
void AddMemoryEstimate(const MemoryVerdict& verdict, v1::JobEstimate* est);

}  // namespace ftune::core

#endif  // FTUNE_SERVER_CORE_MEMORY_CHECK_H_
