// The scheduling policy: which queued job runs next, and on which worker.
//
// Pure functions over a SchedulingSnapshot, so the policy is tested on plain
// values and a fake clock; the dispatcher applies the plan with the store's
// compare-and-set GrantLease (a plan computed from a stale snapshot simply
// loses the race and is recomputed).
//
// Order among queued jobs that fit somewhere now:
//   1. priority, higher first;
//   2. weighted fair share between tenants: the tenant whose running usage
//      divided by its weight is lowest goes next (usage counts GPUs for GPU
//      jobs and 1 per CPU job, including what this plan has already
//      assigned), so a tenant with many queued jobs cannot starve another;
//      equal shares go to the tenant granted a lease least recently
//      (SchedulingSnapshot.last_dispatch), so with one free slot at a time
//      tenants alternate instead of the oldest queue draining first;
//   3. FIFO (create time, then id) within a tenant.
// A job that fits no worker right now does not block jobs behind it
// (backfill). Tenant quotas on running jobs and GPUs are enforced here.
//
// Placement: only ACTIVE workers whose lease (heartbeat) has not expired take
// new work. Among those that fit, best fit: the one with the fewest free
// units left after placing the job, to keep large holes for large jobs.
//
// Thread-safety: pure functions.
#ifndef FTUNE_SERVER_CORE_PLACEMENT_H_
#define FTUNE_SERVER_CORE_PLACEMENT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/core/types.h"

namespace ftune::core {

struct Assignment {
  std::string job_id;
  std::string worker_id;
};

// CPU slots a job holds on its worker: one per trainer process
// (JobResources::trainer->ranks) for a CPU job, none for a GPU job.
int32_t CpuSlotsOf(const JobResources& r);

// Free capacity of one worker in a snapshot.
struct WorkerFree {
  int32_t gpus = 0;       // GPUs not held by an active job.
  int32_t cpu_slots = 0;  // CPU slots not held by an active job.
};

// Whether a worker with these capabilities could ever run a job with these
// resources (ignoring current load). GPU jobs (gpus > 0) need that many GPUs
// whose name contains the requested type (case-insensitive; empty = any) with
// at least memory_bytes each; CPU jobs (gpus == 0) need a CPU slot per
// trainer process (CpuSlotsOf) and memory_bytes of host RAM.
// Also, when both the job and the worker say (JobResources::trainer,
// WorkerCapabilities::trainer), the worker's trainer must run the job's
// method, architecture and dtype with that many GPUs.
bool Fits(const JobResources& need, const WorkerCapabilities& worker);
// Fits without the trainer check.
bool FitsResources(const JobResources& need, const WorkerCapabilities& worker);
// What the worker's trainer cannot run of the job, naming JobSpec fields;
// empty when it can or when either side does not say.
std::vector<contract::Unsupported> TrainerGaps(
    const JobResources& need, const WorkerCapabilities& worker);

// Create-time check: OK when some registered worker that is not LOST could
// ever run the job, or when no worker has registered yet (nothing is known).
// Otherwise FAILED_PRECONDITION: when no worker has the resources, saying
// what the largest worker offers (`*field` = "spec.resources"); when the
// resources exist but no such worker's trainer runs the job, saying what
// the closest one's trainer cannot do (`*field` = the first JobSpec field it
// cannot satisfy, e.g. "spec.method").
absl::Status CheckFeasible(const JobResources& need,
                           const std::vector<Worker>& workers,
                           std::string* field = nullptr);

// Free capacity of `worker` given the active jobs of the snapshot.
WorkerFree FreeCapacity(const Worker& worker, const std::vector<Job>& active);

// The assignments to make now, in the order to grant them. Never assigns a
// job twice or oversubscribes a worker; respects tenant quotas.
std::vector<Assignment> PlanAssignments(const SchedulingSnapshot& snapshot,
                                        absl::Time now);

}  // namespace ftune::core

#endif  // FTUNE_SERVER_CORE_PLACEMENT_H_
