#include "server/core/placement.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace ftune::core {
namespace {

// Fair-share units a job holds: its GPUs, or its CPU slots.
int64_t Units(const JobResources& r) {
  return r.gpus > 0 ? r.gpus : CpuSlotsOf(r);
}

bool TakesNewWork(const Worker& w, absl::Time now) {
  return w.state == WorkerState::kActive && w.lease_expiry > now;
}

bool CountsForRunningQuota(JobState s) {
  return s == JobState::kRunning || s == JobState::kCancelling;
}

bool FitsNow(const JobResources& need, const Worker& w, const WorkerFree& f) {
  if (!Fits(need, w.capabilities)) return false;
  return need.gpus > 0 ? f.gpus >= need.gpus : f.cpu_slots >= CpuSlotsOf(need);
}

std::string Gib(int64_t bytes) {
  return absl::StrFormat("%.1f GiB", static_cast<double>(bytes) / (1 << 30));
}

std::string Describe(const JobResources& r) {
  if (r.gpus > 0) {
    std::string s = absl::StrCat(r.gpus, " GPU(s)");
    if (!r.gpu_type.empty()) absl::StrAppend(&s, " of type ", r.gpu_type);
    if (r.memory_bytes > 0)
      absl::StrAppend(&s, " with ", Gib(r.memory_bytes), " each");
    return s;
  }
  const int32_t slots = CpuSlotsOf(r);
  std::string s =
      slots == 1 ? "a CPU slot" : absl::StrCat(slots, " CPU slots (processes)");
  if (r.memory_bytes > 0) absl::StrAppend(&s, " with ", Gib(r.memory_bytes));
  return s;
}

std::string Describe(const Worker& w) {
  const auto& c = w.capabilities;
  std::string s = absl::StrCat(w.id, " (", c.gpus, " GPU(s)");
  if (!c.gpu_type.empty()) absl::StrAppend(&s, " ", c.gpu_type);
  if (c.gpu_memory_bytes > 0)
    absl::StrAppend(&s, " ", Gib(c.gpu_memory_bytes), " each");
  absl::StrAppend(&s, ", ", c.cpu_slots, " CPU slot(s)");
  if (c.memory_bytes > 0)
    absl::StrAppend(&s, ", ", Gib(c.memory_bytes), " RAM");
  return s + ")";
}

}  // namespace

int32_t CpuSlotsOf(const JobResources& r) {
  if (r.gpus > 0) return 0;
  return r.trainer ? std::max(1, r.trainer->ranks) : 1;
}

std::vector<contract::Unsupported> TrainerGaps(
    const JobResources& need, const WorkerCapabilities& worker) {
  // Unknown on either side (an older job or agent): nothing to check.
  if (!need.trainer || !worker.trainer) return {};
  return contract::CheckCapabilities(*need.trainer, need.gpus, *worker.trainer);
}

bool Fits(const JobResources& need, const WorkerCapabilities& worker) {
  return FitsResources(need, worker) && TrainerGaps(need, worker).empty();
}

bool FitsResources(const JobResources& need, const WorkerCapabilities& worker) {
  // Memory figures of 0 on the worker side mean "not reported": no limit.
  if (need.gpus > 0) {
    if (worker.gpus < need.gpus) return false;
    // A case-insensitive substring of the GPU's name ("H100" matches
    // "NVIDIA H100 80GB HBM3").
    if (!need.gpu_type.empty() &&
        !absl::StrContains(absl::AsciiStrToLower(worker.gpu_type),
                           absl::AsciiStrToLower(need.gpu_type))) {
      return false;
    }
    return need.memory_bytes == 0 || worker.gpu_memory_bytes == 0 ||
           worker.gpu_memory_bytes >= need.memory_bytes;
  }
  if (worker.cpu_slots < CpuSlotsOf(need)) return false;
  return need.memory_bytes == 0 || worker.memory_bytes == 0 ||
         worker.memory_bytes >= need.memory_bytes;
}

absl::Status CheckFeasible(const JobResources& need,
                           const std::vector<Worker>& workers,
                           std::string* field) {
  const Worker* largest = nullptr;
  // Among the workers with the resources, the one whose trainer misses the
  // fewest things, and what it misses.
  const Worker* closest = nullptr;
  std::vector<contract::Unsupported> closest_gaps;
  for (const Worker& w : workers) {
    if (w.state == WorkerState::kLost) continue;
    if (FitsResources(need, w.capabilities)) {
      std::vector<contract::Unsupported> gaps =
          TrainerGaps(need, w.capabilities);
      if (gaps.empty()) return absl::OkStatus();
      if (closest == nullptr || gaps.size() < closest_gaps.size()) {
        closest = &w;
        closest_gaps = std::move(gaps);
      }
      continue;
    }
    if (largest == nullptr ||
        w.capabilities.gpus > largest->capabilities.gpus ||
        (w.capabilities.gpus == largest->capabilities.gpus &&
         w.capabilities.gpu_memory_bytes >
             largest->capabilities.gpu_memory_bytes)) {
      largest = &w;
    }
  }
  if (closest != nullptr) {
    if (field != nullptr) *field = closest_gaps.front().field;
    std::vector<std::string> why;
    for (const contract::Unsupported& u : closest_gaps) {
      why.push_back(absl::StrCat(u.field, ": ", u.message));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "no registered worker's trainer can run this job; the closest, ",
        closest->id, ", cannot: ", absl::StrJoin(why, "; ")));
  }
  if (largest == nullptr) return absl::OkStatus();  // Nothing known yet.
  if (field != nullptr) {
    *field = "spec.resources";
    // A CPU job that one process would fit: its process count is the
    // problem.
    if (need.gpus == 0 && CpuSlotsOf(need) > 1) {
      JobResources one = need;
      one.trainer->ranks = 1;
      for (const Worker& w : workers) {
        if (w.state != WorkerState::kLost &&
            FitsResources(one, w.capabilities)) {
          *field = "spec.resources.processes";
          break;
        }
      }
    }
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "no registered worker can run this job: it needs ", Describe(need),
      "; the largest worker is ", Describe(*largest)));
}

WorkerFree FreeCapacity(const Worker& worker, const std::vector<Job>& active) {
  WorkerFree f{worker.capabilities.gpus, worker.capabilities.cpu_slots};
  for (const Job& j : active) {
    if (j.worker_id != worker.id) continue;
    if (j.resources.gpus > 0) {
      f.gpus -= j.resources.gpus;
    } else {
      f.cpu_slots -= CpuSlotsOf(j.resources);
    }
  }
  f.gpus = std::max(f.gpus, 0);
  f.cpu_slots = std::max(f.cpu_slots, 0);
  return f;
}

std::vector<Assignment> PlanAssignments(const SchedulingSnapshot& snapshot,
                                        absl::Time now) {
  std::vector<Assignment> plan;

  // Workers that take new work, and what they have free.
  std::vector<const Worker*> workers;
  std::map<std::string, WorkerFree> free;
  for (const Worker& w : snapshot.workers) {
    if (!TakesNewWork(w, now)) continue;
    workers.push_back(&w);
    free[w.id] = FreeCapacity(w, snapshot.active);
  }
  if (workers.empty()) return plan;

  // Tenants: weight, quota and current usage.
  struct TenantState {
    double weight = 1.0;
    Quota quota;
    int64_t units = 0;         // Fair-share usage.
    int64_t running_jobs = 0;  // For max_running_jobs.
    int64_t running_gpus = 0;  // For max_gpus.
  };
  std::map<std::string, TenantState> tenants;
  for (const Tenant& t : snapshot.tenants) {
    TenantState& s = tenants[t.id];
    s.weight = t.weight > 0 ? t.weight : 1.0;
    s.quota = t.quota;
  }
  for (const Job& j : snapshot.active) {
    TenantState& s = tenants[j.tenant_id];
    s.units += Units(j.resources);
    if (CountsForRunningQuota(j.state)) {
      s.running_jobs += 1;
      s.running_gpus += j.resources.gpus;
    }
  }

  // Queued jobs by priority (highest first), then tenant, FIFO within.
  std::vector<const Job*> queued;
  for (const Job& j : snapshot.queued) {
    if (j.state == JobState::kQueued) queued.push_back(&j);
  }
  std::stable_sort(queued.begin(), queued.end(),
                   [](const Job* a, const Job* b) {
                     if (a->create_time != b->create_time)
                       return a->create_time < b->create_time;
                     return a->id < b->id;
                   });
  std::map<int32_t, std::map<std::string, std::deque<const Job*>>,
           std::greater<int32_t>>
      levels;
  for (const Job* j : queued) levels[j->priority][j->tenant_id].push_back(j);

  // Where `job` would go now, or null. Best fit: least capacity left over.
  auto place = [&](const Job& job) -> const Worker* {
    const Worker* best = nullptr;
    int64_t best_left = std::numeric_limits<int64_t>::max();
    for (const Worker* w : workers) {
      const WorkerFree& f = free[w->id];
      if (!FitsNow(job.resources, *w, f)) continue;
      const int64_t left = job.resources.gpus > 0
                               ? f.gpus - job.resources.gpus
                               : f.cpu_slots - CpuSlotsOf(job.resources);
      if (left < best_left) {  // Ties keep the earlier (lower id) worker.
        best = w;
        best_left = left;
      }
    }
    return best;
  };
  auto within_quota = [](const TenantState& s, const Job& job) {
    if (s.quota.max_running_jobs > 0 &&
        s.running_jobs + 1 > s.quota.max_running_jobs) {
      return false;
    }
    return s.quota.max_gpus == 0 ||
           s.running_gpus + job.resources.gpus <= s.quota.max_gpus;
  };

  std::map<std::string, absl::Time> served = snapshot.last_dispatch;
  auto last_served = [&](const std::string& tenant) {
    auto it = served.find(tenant);
    return it == served.end() ? absl::InfinitePast() : it->second;
  };

  // Capacity only shrinks and usage only grows while planning, so a job
  // that cannot be placed now cannot be placed later in this plan: it is
  // dropped from consideration as soon as it is found unplaceable.
  for (auto& [priority, by_tenant] : levels) {
    (void)priority;
    while (!by_tenant.empty()) {
      // The tenant furthest below its fair share; ties go to the tenant
      // served least recently (so equal usage alternates tenants even with
      // one slot), then to the one whose next job is older.
      auto pick = by_tenant.end();
      double pick_share = 0;
      absl::Time pick_served;
      for (auto it = by_tenant.begin(); it != by_tenant.end(); ++it) {
        const TenantState& s = tenants[it->first];
        const double share = static_cast<double>(s.units) / s.weight;
        const absl::Time served = last_served(it->first);
        bool better = pick == by_tenant.end() || share < pick_share;
        if (!better && share == pick_share) {
          better =
              served < pick_served ||
              (served == pick_served && it->second.front()->create_time <
                                            pick->second.front()->create_time);
        }
        if (better) {
          pick = it;
          pick_share = share;
          pick_served = served;
        }
      }
      const std::string tenant = pick->first;
      auto& fifo = pick->second;
      TenantState& s = tenants[tenant];
      const Job* job = nullptr;
      const Worker* worker = nullptr;
      while (!fifo.empty() && job == nullptr) {
        const Job* candidate = fifo.front();
        fifo.pop_front();
        if (!within_quota(s, *candidate)) continue;
        if (const Worker* w = place(*candidate)) {
          job = candidate;
          worker = w;
        }
      }
      if (fifo.empty()) by_tenant.erase(pick);
      if (job == nullptr) continue;

      plan.push_back({job->id, worker->id});
      WorkerFree& f = free[worker->id];
      if (job->resources.gpus > 0) {
        f.gpus -= job->resources.gpus;
      } else {
        f.cpu_slots -= CpuSlotsOf(job->resources);
      }
      s.units += Units(job->resources);
      served[tenant] = now;
      s.running_jobs += 1;
      s.running_gpus += job->resources.gpus;
    }
  }
  return plan;
}

}  // namespace ftune::core
