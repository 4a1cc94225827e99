#include "server/core/placement.h"

#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftune::core {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

Worker GpuWorker(std::string id, int gpus, std::string type = "H100",
                 int64_t mem_gib = 80) {
  Worker w;
  w.id = std::move(id);
  w.capabilities.gpus = gpus;
  w.capabilities.gpu_type = std::move(type);
  w.capabilities.gpu_memory_bytes = mem_gib << 30;
  w.lease_expiry = kNow + absl::Seconds(30);
  return w;
}

Worker CpuWorker(std::string id, int slots) {
  Worker w;
  w.id = std::move(id);
  w.capabilities.cpu_slots = slots;
  w.capabilities.memory_bytes = int64_t{64} << 30;
  w.lease_expiry = kNow + absl::Seconds(30);
  return w;
}

// Job number `n` (also its creation order) of `tenant`.
Job MakeJob(std::string tenant, int n, int gpus = 1, int priority = 0) {
  Job j;
  j.id = absl::StrCat("job-", tenant, "-", n < 10 ? "0" : "", n);
  j.tenant_id = std::move(tenant);
  j.priority = priority;
  j.resources.gpus = gpus;
  j.create_time = kNow - absl::Hours(1) + absl::Seconds(n);
  return j;
}

Job Running(Job j, std::string worker) {
  j.state = JobState::kRunning;
  j.worker_id = std::move(worker);
  return j;
}

Tenant MakeTenant(std::string id, double weight = 1.0, Quota quota = {}) {
  Tenant t;
  t.id = std::move(id);
  t.weight = weight;
  t.quota = quota;
  return t;
}

// Independent restatement of "fits the worker's free capacity now".
bool FitsNow(const JobResources& need, const Worker& w, const WorkerFree& f) {
  if (!Fits(need, w.capabilities)) return false;
  return need.gpus > 0 ? f.gpus >= need.gpus : f.cpu_slots >= 1;
}

std::vector<std::string> JobIds(const std::vector<Assignment>& plan) {
  std::vector<std::string> ids;
  for (const auto& a : plan) ids.push_back(a.job_id);
  return ids;
}

std::map<std::string, int> PerTenant(const std::vector<Assignment>& plan,
                                     const SchedulingSnapshot& s) {
  std::map<std::string, std::string> owner;
  for (const Job& j : s.queued) owner[j.id] = j.tenant_id;
  std::map<std::string, int> n;
  for (const auto& a : plan) n[owner[a.job_id]]++;
  return n;
}

TEST(FitsTest, GpuCountTypeAndMemory) {
  const auto caps = GpuWorker("w", 4, "H100", 80).capabilities;
  JobResources need;
  need.gpus = 4;
  EXPECT_TRUE(Fits(need, caps));
  need.gpus = 5;
  EXPECT_FALSE(Fits(need, caps));
  need.gpus = 1;
  need.gpu_type = "h100";  // Case does not matter.
  EXPECT_TRUE(Fits(need, caps));
  need.gpu_type = "A100";
  EXPECT_FALSE(Fits(need, caps));
  need.gpu_type = "";
  need.memory_bytes = int64_t{81} << 30;
  EXPECT_FALSE(Fits(need, caps));
  need.memory_bytes = int64_t{80} << 30;
  EXPECT_TRUE(Fits(need, caps));
}

TEST(FitsTest, CpuJobsNeedASlotAndRam) {
  JobResources need;  // gpus = 0: a CPU job.
  EXPECT_FALSE(Fits(need, GpuWorker("g", 8).capabilities));
  EXPECT_TRUE(Fits(need, CpuWorker("c", 1).capabilities));
  need.memory_bytes = int64_t{65} << 30;
  EXPECT_FALSE(Fits(need, CpuWorker("c", 1).capabilities));
}

TEST(CheckFeasibleTest, NoWorkersYetIsAccepted) {
  JobResources need;
  need.gpus = 64;
  EXPECT_OK(CheckFeasible(need, {}));
}

TEST(CheckFeasibleTest, TooLargeForEveryWorkerNamesTheLargest) {
  JobResources need;
  need.gpus = 16;
  auto status =
      CheckFeasible(need, {GpuWorker("worker-small", 2),
                           GpuWorker("worker-big", 8), CpuWorker("c", 4)});
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition,
                               HasSubstr("needs 16 GPU(s)")));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition,
                               HasSubstr("worker-big (8 GPU(s)")));
  need.gpus = 8;
  EXPECT_OK(CheckFeasible(need, {GpuWorker("worker-big", 8)}));
}

TEST(CheckFeasibleTest, LostWorkersDoNotCount) {
  Worker lost = GpuWorker("w", 8);
  lost.state = WorkerState::kLost;
  JobResources need;
  need.gpus = 4;
  EXPECT_THAT(CheckFeasible(need, {lost, GpuWorker("w2", 2)}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("w2")));
}

TEST(PlanTest, HigherPriorityFirstEvenIfNewer) {
  SchedulingSnapshot s;
  s.workers = {GpuWorker("w1", 1)};
  s.queued = {MakeJob("a", 1), MakeJob("a", 2, 1, /*priority=*/5)};
  EXPECT_THAT(JobIds(PlanAssignments(s, kNow)), ElementsAre("job-a-02"));
}

TEST(PlanTest, FifoWithinATenant) {
  SchedulingSnapshot s;
  s.workers = {GpuWorker("w1", 2)};
  s.queued = {MakeJob("a", 3), MakeJob("a", 1), MakeJob("a", 2)};
  EXPECT_THAT(JobIds(PlanAssignments(s, kNow)),
              ElementsAre("job-a-01", "job-a-02"));
}

TEST(PlanTest, ManyQueuedJobsCannotStarveAnotherTenant) {
  SchedulingSnapshot s;
  s.workers = {GpuWorker("w1", 4)};
  for (int i = 1; i <= 20; ++i) s.queued.push_back(MakeJob("a", i));
  s.queued.push_back(MakeJob("b", 30));  // Newest of all.
  s.queued.push_back(MakeJob("b", 31));
  const auto plan = PlanAssignments(s, kNow);
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_EQ(PerTenant(plan, s),
            (std::map<std::string, int>{{"a", 2}, {"b", 2}}));
}

TEST(PlanTest, WeightsDivideTheCluster) {
  SchedulingSnapshot s;
  s.workers = {GpuWorker("w1", 8)};
  s.tenants = {MakeTenant("a", 3.0), MakeTenant("b", 1.0)};
  for (int i = 1; i <= 10; ++i) {
    s.queued.push_back(MakeJob("a", i));
    s.queued.push_back(MakeJob("b", 20 + i));
  }
  EXPECT_EQ(PerTenant(PlanAssignments(s, kNow), s),
            (std::map<std::string, int>{{"a", 6}, {"b", 2}}));
}

TEST(PlanTest, OneSlotAtATimeAlternatesTenantsOfEqualUsage) {
  // One GPU frees at a time; a's queue is older, but a was served last, so
  // b goes next; then a again (b now served more recently).
  SchedulingSnapshot s;
  s.workers = {GpuWorker("w1", 1)};
  s.queued = {MakeJob("a", 2), MakeJob("a", 3), MakeJob("b", 10)};
  s.last_dispatch = {{"a", kNow - absl::Seconds(5)}};
  EXPECT_THAT(JobIds(PlanAssignments(s, kNow)), ElementsAre("job-b-10"));
  s.queued = {MakeJob("a", 2), MakeJob("a", 3), MakeJob("b", 11)};
  s.last_dispatch = {{"a", kNow - absl::Seconds(5)},
                     {"b", kNow - absl::Seconds(1)}};
  EXPECT_THAT(JobIds(PlanAssignments(s, kNow)), ElementsAre("job-a-02"));
  // Never-served tenants go before served ones at equal usage.
  s.last_dispatch = {{"a", kNow - absl::Seconds(5)}};
  s.queued = {MakeJob("a", 2), MakeJob("c", 40)};
  EXPECT_THAT(JobIds(PlanAssignments(s, kNow)), ElementsAre("job-c-40"));
}

TEST(FitsTest, GpuTypeIsASubstringOfTheDeviceName) {
  WorkerCapabilities w;
  w.gpus = 2;
  w.gpu_type = "NVIDIA H100 80GB HBM3";
  JobResources need;
  need.gpus = 1;
  need.gpu_type = "h100";
  EXPECT_TRUE(Fits(need, w));
  need.gpu_type = "A100";
  EXPECT_FALSE(Fits(need, w));
}

TEST(PlanTest, RunningUsageCountsTowardsFairShare) {
  SchedulingSnapshot s;
  s.workers = {GpuWorker("w1", 4)};
  s.active = {Running(MakeJob("a", 1), "w1"), Running(MakeJob("a", 2), "w1")};
  s.queued = {MakeJob("a", 3), MakeJob("b", 4), MakeJob("b", 5)};
  // Two free GPUs; a already holds two, so both go to b.
  EXPECT_THAT(JobIds(PlanAssignments(s, kNow)),
              ElementsAre("job-b-04", "job-b-05"));
}

TEST(PlanTest, BigJobThatDoesNotFitNowDoesNotBlockSmallOnes) {
  SchedulingSnapshot s;
  s.workers = {GpuWorker("w1", 4)};
  s.active = {Running(MakeJob("x", 1, 2), "w1")};
  s.queued = {MakeJob("a", 2, /*gpus=*/4), MakeJob("a", 3, 1)};
  EXPECT_THAT(JobIds(PlanAssignments(s, kNow)), ElementsAre("job-a-03"));
}

TEST(PlanTest, BestFitKeepsLargeHolesForLargeJobs) {
  SchedulingSnapshot s;
  s.workers = {GpuWorker("w-big", 8), GpuWorker("w-small", 2)};
  s.active = {Running(MakeJob("x", 1, 1), "w-small")};
  s.queued = {MakeJob("a", 2, 1), MakeJob("b", 3, 8)};
  const auto plan = PlanAssignments(s, kNow);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].job_id, "job-a-02");
  EXPECT_EQ(plan[0].worker_id, "w-small");
  EXPECT_EQ(plan[1].job_id, "job-b-03");
  EXPECT_EQ(plan[1].worker_id, "w-big");
}

TEST(PlanTest, GpuTypeIsHonoured) {
  SchedulingSnapshot s;
  s.workers = {GpuWorker("w-a100", 1, "A100"), GpuWorker("w-h100", 1)};
  Job j = MakeJob("a", 1);
  j.resources.gpu_type = "H100";
  s.queued = {j};
  const auto plan = PlanAssignments(s, kNow);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].worker_id, "w-h100");
}

// A trainer that loads Llama models with LoRA only, on up to 1 GPU a job.
contract::TrainerCapabilities LoraOnlyTrainer() {
  contract::TrainerCapabilities t;
  t.methods = {"lora"};
  t.architectures = {"LlamaForCausalLM"};
  t.dtypes = {"fp32", "bf16"};
  t.cuda = true;
  t.max_gpus_per_job = 1;
  return t;
}

TEST(PlanTest, TrainerCapabilitiesAreHonoured) {
  SchedulingSnapshot s;
  Worker lora_only = GpuWorker("w-lora", 1);
  lora_only.capabilities.trainer = LoraOnlyTrainer();
  Worker both = GpuWorker("w-both", 1);
  both.capabilities.trainer = LoraOnlyTrainer();
  both.capabilities.trainer->methods.push_back("qlora");
  // Listed first, so a plan that ignored the trainer would pick it.
  s.workers = {lora_only, both};
  Job j = MakeJob("a", 1);
  j.resources.trainer = contract::TrainerRequirement{
      contract::Method::kQlora, "LlamaForCausalLM", std::nullopt};
  s.queued = {j};
  auto plan = PlanAssignments(s, kNow);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].worker_id, "w-both");

  // No trainer runs it: not placed at all.
  s.workers = {lora_only};
  EXPECT_THAT(PlanAssignments(s, kNow), IsEmpty());
  // A job recorded without a requirement (created before there was one),
  // or a worker that did not say, is placed as before.
  s.queued[0].resources.trainer.reset();
  EXPECT_THAT(JobIds(PlanAssignments(s, kNow)), ElementsAre("job-a-01"));
  s.queued = {j};
  s.workers = {GpuWorker("w-old", 1)};
  EXPECT_THAT(JobIds(PlanAssignments(s, kNow)), ElementsAre("job-a-01"));
}

TEST(CheckFeasibleTest, NamesTheFieldNoTrainerCanRun) {
  Worker w = GpuWorker("w-lora", 2);
  w.capabilities.trainer = LoraOnlyTrainer();
  JobResources need;
  need.gpus = 1;
  need.trainer = contract::TrainerRequirement{
      contract::Method::kQlora, "LlamaForCausalLM", contract::Dtype::kFp16};
  std::string field;
  absl::Status st = CheckFeasible(need, {w}, &field);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  // The first field it cannot satisfy; the message lists every one.
  EXPECT_EQ(field, "spec.method");
  EXPECT_THAT(st.message(), HasSubstr("w-lora"));
  EXPECT_THAT(st.message(), HasSubstr("spec.quantization.compute_dtype"));
  // Resources come first: a job no worker has the GPUs for says so.
  need.gpus = 4;
  EXPECT_FALSE(CheckFeasible(need, {w}, &field).ok());
  EXPECT_EQ(field, "spec.resources");
  // One worker whose trainer runs it is enough.
  need.gpus = 1;
  need.trainer->method = contract::Method::kLora;
  need.trainer->dtype = contract::Dtype::kBf16;
  EXPECT_OK(CheckFeasible(need, {w}));
}

TEST(PlanTest, CpuJobsUseCpuSlots) {
  SchedulingSnapshot s;
  s.workers = {CpuWorker("c1", 2), GpuWorker("g1", 4)};
  s.queued = {MakeJob("a", 1, 0), MakeJob("a", 2, 0), MakeJob("a", 3, 0)};
  const auto plan = PlanAssignments(s, kNow);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].worker_id, "c1");
  EXPECT_EQ(plan[1].worker_id, "c1");
}

// A CPU job of `ranks` trainer processes.
Job CpuRanksJob(std::string tenant, int n, int ranks) {
  Job j = MakeJob(std::move(tenant), n, /*gpus=*/0);
  j.resources.trainer = contract::TrainerRequirement{};
  j.resources.trainer->ranks = ranks;
  return j;
}

TEST(PlanTest, MultiProcessCpuJobsTakeASlotPerProcess) {
  EXPECT_EQ(CpuSlotsOf(CpuRanksJob("a", 1, 3).resources), 3);
  EXPECT_EQ(CpuSlotsOf(MakeJob("a", 1, 0).resources), 1);  // no requirement
  EXPECT_EQ(CpuSlotsOf(MakeJob("a", 1, 2).resources), 0);  // a GPU job
  EXPECT_TRUE(
      Fits(CpuRanksJob("a", 1, 3).resources, CpuWorker("c", 3).capabilities));
  EXPECT_FALSE(
      Fits(CpuRanksJob("a", 1, 3).resources, CpuWorker("c", 2).capabilities));

  SchedulingSnapshot s;
  s.workers = {CpuWorker("c1", 3)};
  s.queued = {CpuRanksJob("a", 1, 2), CpuRanksJob("a", 2, 2),
              CpuRanksJob("a", 3, 1)};
  // Two slots for the first, one left: the second waits, the third fits.
  EXPECT_THAT(JobIds(PlanAssignments(s, kNow)),
              ElementsAre("job-a-01", "job-a-03"));
  // A running two-process job holds two of the three slots.
  s.active = {Running(CpuRanksJob("b", 9, 2), "c1")};
  EXPECT_EQ(FreeCapacity(s.workers[0], s.active).cpu_slots, 1);
  EXPECT_THAT(JobIds(PlanAssignments(s, kNow)), ElementsAre("job-a-03"));
}

TEST(CheckFeasibleTest, MoreProcessesThanAnyWorkerHasSlotsNamesTheField) {
  JobResources need = CpuRanksJob("a", 1, 4).resources;
  std::string field;
  EXPECT_THAT(
      CheckFeasible(need, {CpuWorker("c1", 2), CpuWorker("c2", 3)}, &field),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("needs 4 CPU slots (processes)")));
  EXPECT_EQ(field, "spec.resources.processes");
  EXPECT_OK(CheckFeasible(need, {CpuWorker("c1", 2), CpuWorker("c3", 4)}));
  // No CPU slot anywhere: the resources as a whole.
  EXPECT_FALSE(CheckFeasible(need, {GpuWorker("g", 8)}, &field).ok());
  EXPECT_EQ(field, "spec.resources");
}

TEST(PlanTest, QuotaOnRunningJobs) {
  SchedulingSnapshot s;
  s.workers = {GpuWorker("w1", 8)};
  s.tenants = {MakeTenant("a", 1.0, Quota{0, /*max_running_jobs=*/3, 0})};
  s.active = {Running(MakeJob("a", 1), "w1")};
  for (int i = 2; i <= 6; ++i) s.queued.push_back(MakeJob("a", i));
  EXPECT_THAT(JobIds(PlanAssignments(s, kNow)),
              ElementsAre("job-a-02", "job-a-03"));
}

TEST(PlanTest, QuotaOnGpusLetsSmallerJobsThrough) {
  SchedulingSnapshot s;
  s.workers = {GpuWorker("w1", 8)};
  s.tenants = {MakeTenant("a", 1.0, Quota{0, 0, /*max_gpus=*/3})};
  s.queued = {MakeJob("a", 1, 2), MakeJob("a", 2, 2), MakeJob("a", 3, 1)};
  EXPECT_THAT(JobIds(PlanAssignments(s, kNow)),
              ElementsAre("job-a-01", "job-a-03"));
}

TEST(PlanTest, DrainingLostAndExpiredWorkersGetNothing) {
  SchedulingSnapshot s;
  Worker draining = GpuWorker("w-drain", 8);
  draining.state = WorkerState::kDraining;
  Worker lost = GpuWorker("w-lost", 8);
  lost.state = WorkerState::kLost;
  Worker silent = GpuWorker("w-silent", 8);
  silent.lease_expiry = kNow;  // Expires exactly now: no new work.
  s.workers = {draining, lost, silent};
  s.queued = {MakeJob("a", 1)};
  EXPECT_THAT(PlanAssignments(s, kNow), IsEmpty());
  s.workers.push_back(GpuWorker("w-ok", 1));
  EXPECT_THAT(JobIds(PlanAssignments(s, kNow)), ElementsAre("job-a-01"));
}

// Invariants on random snapshots: no job twice, no worker oversubscribed, no
// quota exceeded, and nothing left queued that would have fitted.
TEST(PlanTest, RandomSnapshotsKeepInvariants) {
  std::mt19937 rng(7);
  for (int round = 0; round < 300; ++round) {
    SchedulingSnapshot s;
    const int n_workers = 1 + static_cast<int>(rng() % 4);
    for (int w = 0; w < n_workers; ++w) {
      s.workers.push_back(rng() % 3 == 0
                              ? CpuWorker(absl::StrCat("c", w), rng() % 3)
                              : GpuWorker(absl::StrCat("g", w), rng() % 9));
    }
    const char* names[] = {"a", "b", "c"};
    for (const char* t : names) {
      s.tenants.push_back(MakeTenant(t, 0.5 + (rng() % 4),
                                     Quota{0, static_cast<int64_t>(rng() % 4),
                                           static_cast<int64_t>(rng() % 6)}));
    }
    int n = 0;
    for (int k = 0; k < static_cast<int>(rng() % 12); ++k) {
      Job j = MakeJob(names[rng() % 3], ++n, rng() % 4, rng() % 2);
      const Worker& w = s.workers[rng() % s.workers.size()];
      if (FitsNow(j.resources, w, FreeCapacity(w, s.active)))
        s.active.push_back(Running(j, w.id));
    }
    for (int k = 0; k < static_cast<int>(rng() % 25); ++k)
      s.queued.push_back(MakeJob(names[rng() % 3], ++n, rng() % 4, rng() % 3));

    const auto plan = PlanAssignments(s, kNow);
    std::set<std::string> seen;
    std::map<std::string, const Job*> by_id;
    for (const Job& j : s.queued) by_id[j.id] = &j;
    SchedulingSnapshot after = s;
    for (const auto& a : plan) {
      ASSERT_TRUE(seen.insert(a.job_id).second) << a.job_id;
      after.active.push_back(Running(*by_id[a.job_id], a.worker_id));
    }
    for (const Worker& w : s.workers) {
      int gpus = w.capabilities.gpus, slots = w.capabilities.cpu_slots;
      for (const Job& j : after.active) {
        if (j.worker_id != w.id) continue;
        if (j.resources.gpus > 0) {
          gpus -= j.resources.gpus;
        } else {
          --slots;
        }
      }
      EXPECT_GE(gpus, 0) << "round " << round << " worker " << w.id;
      EXPECT_GE(slots, 0) << "round " << round << " worker " << w.id;
    }
    for (const Tenant& t : s.tenants) {
      int64_t jobs = 0, gpus = 0;
      int64_t before_jobs = 0, before_gpus = 0;
      for (const Job& j : after.active) {
        if (j.tenant_id != t.id) continue;
        ++jobs;
        gpus += j.resources.gpus;
      }
      for (const Job& j : s.active) {
        if (j.tenant_id != t.id) continue;
        ++before_jobs;
        before_gpus += j.resources.gpus;
      }
      if (jobs > before_jobs && t.quota.max_running_jobs > 0) {
        EXPECT_LE(jobs, t.quota.max_running_jobs) << "round " << round;
      }
      if (gpus > before_gpus && t.quota.max_gpus > 0) {
        EXPECT_LE(gpus, t.quota.max_gpus) << "round " << round;
      }
    }
    // Maximality: every queued job left out either fits no worker's free
    // capacity or is over its tenant's quota.
    for (const Job& j : s.queued) {
      if (seen.count(j.id)) continue;
      const Tenant* t = nullptr;
      for (const Tenant& x : s.tenants) {
        if (x.id == j.tenant_id) t = &x;
      }
      int64_t jobs = 0, gpus = 0;
      for (const Job& a : after.active) {
        if (a.tenant_id != j.tenant_id || a.state != JobState::kRunning)
          continue;
        ++jobs;
        gpus += a.resources.gpus;
      }
      const bool over_quota = (t->quota.max_running_jobs > 0 &&
                               jobs + 1 > t->quota.max_running_jobs) ||
                              (t->quota.max_gpus > 0 &&
                               gpus + j.resources.gpus > t->quota.max_gpus);
      bool fits = false;
      for (const Worker& w : s.workers)
        fits |= FitsNow(j.resources, w, FreeCapacity(w, after.active));
      EXPECT_TRUE(over_quota || !fits)
          << "round " << round << ": " << j.id << " was left queued";
    }
  }
}

}  // namespace
}  // namespace ftune::core
