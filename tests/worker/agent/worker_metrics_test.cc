// WorkerMetrics: the families a worker exposes, GPU usage read through a
// scripted nvidia-smi.
#include "worker/agent/worker_metrics.h"

#include <sys/stat.h>

#include <fstream>
#include <string>

#include "common/metrics/registry.h"
#include "common/metrics/text_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Scrape(const metrics::Registry& registry) {
  return metrics::FormatText(registry.Collect());
}

TEST(ParseNvidiaSmiUsageTest, ReadsMiBAndPercentAndUnreadableFields) {
  ASSERT_OK_AND_ASSIGN(
      std::vector<GpuUsage> usage,
      ParseNvidiaSmiUsage(
          "0, 1024, 50\n1, [N/A], 7\n\n2, 3, [Not Supported]\n"));
  ASSERT_EQ(usage.size(), 3u);
  EXPECT_EQ(usage[0].index, 0);
  EXPECT_DOUBLE_EQ(usage[0].memory_used_bytes, 1024.0 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(usage[0].utilization_ratio, 0.5);
  EXPECT_LT(usage[1].memory_used_bytes, 0);
  EXPECT_DOUBLE_EQ(usage[1].utilization_ratio, 0.07);
  EXPECT_LT(usage[2].utilization_ratio, 0);
  EXPECT_THAT(ParseNvidiaSmiUsage("0, 1024\n").status(),
              ftune::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("line 1")));
  EXPECT_THAT(ParseNvidiaSmiUsage("0, 1, 2\nx, 1, 2\n").status(),
              ftune::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("line 2: bad index")));
}

TEST(TrainerExitResultTest, NamesEveryClass) {
  EXPECT_EQ(TrainerExitResult(ExitClass::kSuccess, false), "success");
  EXPECT_EQ(TrainerExitResult(ExitClass::kBadInput, false), "bad_input");
  EXPECT_EQ(TrainerExitResult(ExitClass::kOutOfMemory, false), "out_of_memory");
  EXPECT_EQ(TrainerExitResult(ExitClass::kDiverged, false), "diverged");
  EXPECT_EQ(TrainerExitResult(ExitClass::kStopped, false), "stopped");
  EXPECT_EQ(TrainerExitResult(ExitClass::kRetryable, false), "crashed");
  EXPECT_EQ(TrainerExitResult(ExitClass::kSuccess, true), "killed");
}

TEST(WorkerMetricsTest, CountsTrainersAndConnection) {
  metrics::Registry registry;
  v1::WorkerCapabilities caps;
  caps.set_cpu_slots(3);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WorkerMetrics> m,
                       WorkerMetrics::Create(&registry, caps));
  std::string text = Scrape(registry);
  EXPECT_THAT(text, HasSubstr("ftune_worker_slots{resource=\"cpu\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("ftune_worker_slots{resource=\"gpu\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("ftune_worker_connected 0\n"));
  EXPECT_THAT(text, HasSubstr("ftune_worker_trainers_started_total 0\n"));
  EXPECT_THAT(text, Not(HasSubstr("ftune_worker_gpu_")));

  m->SetConnected(true);
  m->TrainerStarted();
  m->TrainerStarted();
  text = Scrape(registry);
  EXPECT_THAT(text, HasSubstr("ftune_worker_running_attempts 2\n"));
  EXPECT_THAT(text, HasSubstr("ftune_worker_connected 1\n"));
  m->TrainerExited(ExitClass::kOutOfMemory, false);
  m->TrainerExited(ExitClass::kRetryable, true);
  text = Scrape(registry);
  EXPECT_THAT(text, HasSubstr("ftune_worker_running_attempts 0\n"));
  EXPECT_THAT(text, HasSubstr("ftune_worker_trainers_started_total 2\n"));
  EXPECT_THAT(
      text,
      HasSubstr(
          "ftune_worker_trainer_exits_total{result=\"out_of_memory\"} 1\n"));
  EXPECT_THAT(
      text,
      HasSubstr("ftune_worker_trainer_exits_total{result=\"killed\"} 1\n"));
}

// Only the offered GPUs are reported; a field nvidia-smi cannot read has no
// sample rather than a made-up value; a failing nvidia-smi leaves no series.
TEST(WorkerMetricsTest, GpuUsageOfOfferedDevicesFromNvidiaSmi) {
  ftune::testing::TempDir dir;
  const std::string script = dir.Sub("nvidia-smi");
  std::ofstream(script) << "#!/bin/sh\n"
                           "echo '0, 2048, 50'\n"
                           "echo '1, 4096, 90'\n"
                           "echo '2, [N/A], 75'\n";
  ASSERT_EQ(::chmod(script.c_str(), 0755), 0);
  metrics::Registry registry;
  v1::WorkerCapabilities caps;
  caps.add_gpus()->set_index(0);
  caps.add_gpus()->set_index(2);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<WorkerMetrics> m,
                       WorkerMetrics::Create(&registry, caps, script));
  const std::string text = Scrape(registry);
  EXPECT_THAT(text, HasSubstr("ftune_worker_slots{resource=\"gpu\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("ftune_worker_gpu_memory_used_bytes{gpu=\"0\"} "
                              "2147483648\n"));
  EXPECT_THAT(text,
              HasSubstr("ftune_worker_gpu_utilization_ratio{gpu=\"0\"} 0.5\n"));
  EXPECT_THAT(
      text, HasSubstr("ftune_worker_gpu_utilization_ratio{gpu=\"2\"} 0.75\n"));
  EXPECT_THAT(text, Not(HasSubstr("{gpu=\"1\"}")));
  EXPECT_THAT(text,
              Not(HasSubstr("ftune_worker_gpu_memory_used_bytes{gpu=\"2\"}")));

  metrics::Registry broken_registry;
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<WorkerMetrics> broken,
      WorkerMetrics::Create(&broken_registry, caps, dir.Sub("missing-smi")));
  EXPECT_THAT(Scrape(broken_registry),
              Not(HasSubstr("ftune_worker_gpu_memory_used_bytes{")));
}

}  // namespace
}  // namespace ftune::agent
