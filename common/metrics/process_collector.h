// Process metrics with the standard Prometheus names, read from /proc at
// each scrape (Linux only):
//   process_cpu_seconds_total       user + system CPU time (counter)
//   process_resident_memory_bytes   resident set size
//   process_virtual_memory_bytes    virtual memory size
//   process_open_fds                open file descriptors
//   process_max_fds                 soft RLIMIT_NOFILE ("Max open files")
//   process_start_time_seconds      start time, seconds since the Unix epoch
//
//   auto handle = registry.AddCollector(std::make_unique<ProcessCollector>());
//
// A value that cannot be read (missing file, unexpected format) is left out
// of that scrape and logged; the others are still exposed.
//
// Thread-safety: thread-safe (it keeps no mutable state).
#ifndef FTUNE_COMMON_METRICS_PROCESS_COLLECTOR_H_
#define FTUNE_COMMON_METRICS_PROCESS_COLLECTOR_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/metrics/registry.h"

namespace ftune::metrics {

// The values behind the metrics; a member is empty when it could not be read.
struct ProcessStats {
  std::optional<double> cpu_seconds;
  std::optional<double> resident_memory_bytes;
  std::optional<double> virtual_memory_bytes;
  std::optional<double> open_fds;
  std::optional<double> max_fds;
  std::optional<double> start_time_seconds;
};

// Reads the stats of process `pid` ("self" or a number) under `proc_root`.
// Tests point `proc_root` at a hand-made tree. Never fails as a whole: each
// value that cannot be read is empty and logged.
ProcessStats ReadProcessStats(const std::string& proc_root,
                              const std::string& pid);

class ProcessCollector : public Collector {
 public:
  explicit ProcessCollector(std::string proc_root = "/proc",
                            std::string pid = "self");
  std::vector<FamilySnapshot> Collect() override;

 private:
  const std::string proc_root_;
  const std::string pid_;
};

}  // namespace ftune::metrics

#endif  // FTUNE_COMMON_METRICS_PROCESS_COLLECTOR_H_
