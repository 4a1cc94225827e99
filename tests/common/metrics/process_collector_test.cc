#include "common/metrics/process_collector.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

// A /proc with one process "42" whose values are known.
class FakeProcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(mkdir(dir_.Sub("42").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(dir_.Sub("42/fd").c_str(), 0755), 0);
    for (const char* fd : {"0", "1", "2", "7"}) {
      WriteFile(dir_.Sub(std::string("42/fd/") + fd), "");
    }
    WriteFile(dir_.Sub("stat"),
              "cpu  1 2 3 4\nintr 5\nbtime 1700000000\nprocesses 9\n");
    // The command name holds spaces and a ')' to check the parser counts
    // fields from the last ')'.
    WriteFile(dir_.Sub("42/stat"),
              "42 (my (od) d) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 "
              "20 0 4 0 5000 104857600 2560 18446744073709551615 1 1 0 0 0 "
              "0 0 0 0 0 0 0 17 3 0 0 0 0 0\n");
    WriteFile(dir_.Sub("42/limits"),
              "Limit                     Soft Limit           Hard Limit  "
              "         Units     \n"
              "Max cpu time              unlimited            unlimited   "
              "         seconds   \n"
              "Max open files            1024                 524288      "
              "         files     \n");
  }
  ftune::testing::TempDir dir_;
};

TEST_F(FakeProcTest, ReadsEveryValue) {
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  const ProcessStats stats = ReadProcessStats(dir_.path(), "42");
  ASSERT_TRUE(stats.cpu_seconds.has_value());
  EXPECT_DOUBLE_EQ(*stats.cpu_seconds, (250 + 150) / ticks);
  ASSERT_TRUE(stats.start_time_seconds.has_value());
  EXPECT_DOUBLE_EQ(*stats.start_time_seconds, 1700000000 + 5000 / ticks);
  EXPECT_EQ(stats.virtual_memory_bytes, 104857600);
  EXPECT_EQ(stats.resident_memory_bytes, 2560 * page);
  EXPECT_EQ(stats.open_fds, 4);
  EXPECT_EQ(stats.max_fds, 1024);
}

TEST_F(FakeProcTest, CollectorExposesStandardNames) {
  if (sysconf(_SC_CLK_TCK) != 100 || sysconf(_SC_PAGESIZE) != 4096) {
    GTEST_SKIP() << "exact text below assumes 100 clock ticks/s, 4 KiB pages";
  }
  Registry registry;
  ASSERT_OK_AND_ASSIGN(CollectorHandle handle,
                       registry.AddCollector(std::make_unique<ProcessCollector>(
                           dir_.path(), "42")));
  EXPECT_EQ(registry.Scrape(),
            "# HELP process_cpu_seconds_total Total user and system CPU time "
            "spent in seconds.\n"
            "# TYPE process_cpu_seconds_total counter\n"
            "process_cpu_seconds_total 4\n"
            "# HELP process_max_fds Maximum number of open file "
            "descriptors.\n"
            "# TYPE process_max_fds gauge\n"
            "process_max_fds 1024\n"
            "# HELP process_open_fds Number of open file descriptors.\n"
            "# TYPE process_open_fds gauge\n"
            "process_open_fds 4\n"
            "# HELP process_resident_memory_bytes Resident memory size in "
            "bytes.\n"
            "# TYPE process_resident_memory_bytes gauge\n"
            "process_resident_memory_bytes 10485760\n"
            "# HELP process_start_time_seconds Start time of the process "
            "since unix epoch in seconds.\n"
            "# TYPE process_start_time_seconds gauge\n"
            "process_start_time_seconds 1700000050\n"
            "# HELP process_virtual_memory_bytes Virtual memory size in "
            "bytes.\n"
            "# TYPE process_virtual_memory_bytes gauge\n"
            "process_virtual_memory_bytes 104857600\n");
}

TEST_F(FakeProcTest, UnreadableValuesAreLeftOut) {
  ASSERT_EQ(unlink(dir_.Sub("42/limits").c_str()), 0);
  WriteFile(dir_.Sub("42/stat"), "42 (x) S 1 2\n");  // Truncated.
  const ProcessStats stats = ReadProcessStats(dir_.path(), "42");
  EXPECT_FALSE(stats.max_fds.has_value());
  EXPECT_FALSE(stats.cpu_seconds.has_value());
  EXPECT_FALSE(stats.resident_memory_bytes.has_value());
  EXPECT_EQ(stats.open_fds, 4);

  Registry registry;
  ASSERT_OK_AND_ASSIGN(CollectorHandle handle,
                       registry.AddCollector(std::make_unique<ProcessCollector>(
                           dir_.path(), "42")));
  const std::string text = registry.Scrape();
  EXPECT_THAT(text, HasSubstr("process_open_fds 4\n"));
  EXPECT_THAT(text, Not(HasSubstr("process_max_fds")));
  EXPECT_THAT(text, Not(HasSubstr("process_cpu_seconds_total")));
}

TEST(ProcessCollectorTest, RealProcess) {
  const ProcessStats before = ReadProcessStats("/proc", "self");
  ASSERT_TRUE(before.open_fds.has_value());
  const int fd = open("/proc/self/stat", O_RDONLY);
  ASSERT_GE(fd, 0);
  const ProcessStats after = ReadProcessStats("/proc", "self");
  close(fd);
  EXPECT_EQ(*after.open_fds, *before.open_fds + 1);

  rlimit limit;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  ASSERT_TRUE(after.max_fds.has_value());
  EXPECT_EQ(*after.max_fds, static_cast<double>(limit.rlim_cur));
  ASSERT_TRUE(after.resident_memory_bytes.has_value());
  EXPECT_GT(*after.resident_memory_bytes, 0);
  ASSERT_TRUE(after.virtual_memory_bytes.has_value());
  EXPECT_GE(*after.virtual_memory_bytes, *after.resident_memory_bytes);
  ASSERT_TRUE(after.cpu_seconds.has_value());
  EXPECT_GE(*after.cpu_seconds, 0);
  // Started before now, and not before the machine booted a year ago.
  ASSERT_TRUE(after.start_time_seconds.has_value());
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_LE(*after.start_time_seconds, now + 1);
  EXPECT_GT(*after.start_time_seconds, 1.5e9);
}

}  // namespace
}  // namespace ftune::metrics
