#include "common/metrics/process_collector.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/logging.h"

namespace ftune::metrics {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// /proc/<pid>/stat: "pid (comm) state ppid ...". comm may hold spaces and
// parentheses, so fields are counted from the last ')'. Field numbers as in
// proc(5): 14 utime, 15 stime, 22 starttime (clock ticks), 23 vsize (bytes),
// 24 rss (pages).
void ParseStat(const std::string& path, const std::string& text,
               double boot_time, ProcessStats* stats) {
  const size_t close = text.rfind(')');
  if (close == std::string::npos) {
    FTUNE_LOG(ERROR) << path << ": no ')' after the command name";
    return;
  }
  std::vector<absl::string_view> fields = absl::StrSplit(
      absl::string_view(text).substr(close + 1), ' ', absl::SkipWhitespace());
  // fields[0] is field 3 (state).
  const auto field = [&](int number, double* out) {
    const size_t index = static_cast<size_t>(number - 3);
    if (index >= fields.size() ||
        !absl::SimpleAtod(absl::StripAsciiWhitespace(fields[index]), out)) {
      FTUNE_LOG(ERROR) << path << ": field " << number
                       << " is missing or not a number";
      return false;
    }
    return true;
  };
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  double utime, stime, start, vsize, rss;
  if (field(14, &utime) && field(15, &stime)) {
    stats->cpu_seconds = (utime + stime) / ticks;
  }
  if (field(22, &start) && boot_time >= 0) {
    stats->start_time_seconds = boot_time + start / ticks;
  }
  if (field(23, &vsize)) stats->virtual_memory_bytes = vsize;
  if (field(24, &rss)) stats->resident_memory_bytes = rss * page;
}

// /proc/stat "btime <seconds since epoch>"; -1 if absent.
double ReadBootTime(const std::string& proc_root) {
  const std::string path = proc_root + "/stat";
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    FTUNE_LOG(ERROR) << text.status().message();
    return -1;
  }
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (absl::ConsumePrefix(&line, "btime ")) {
      double seconds;
      if (absl::SimpleAtod(absl::StripAsciiWhitespace(line), &seconds)) {
        return seconds;
      }
    }
  }
  FTUNE_LOG(ERROR) << path << ": no \"btime\" line";
  return -1;
}

// /proc/<pid>/limits: "Max open files  <soft>  <hard>  files".
std::optional<double> ReadMaxFds(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    FTUNE_LOG(ERROR) << text.status().message();
    return std::nullopt;
  }
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (!absl::ConsumePrefix(&line, "Max open files")) continue;
    std::vector<absl::string_view> words =
        absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (words.empty()) break;
    if (words[0] == "unlimited") return std::numeric_limits<double>::infinity();
    double soft;
    if (absl::SimpleAtod(words[0], &soft)) return soft;
    break;
  }
  FTUNE_LOG(ERROR) << path << ": no readable \"Max open files\" line";
  return std::nullopt;
}

// `is_self`: `path` lists this process' descriptors, one of which is the
// directory handle opened here; it is not counted.
std::optional<double> CountOpenFds(const std::string& path, bool is_self) {
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) {
    FTUNE_LOG(ERROR) << "cannot open " << path;
    return std::nullopt;
  }
  const std::string own_fd = is_self ? std::to_string(dirfd(dir)) : "";
  double count = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.' || entry->d_name == own_fd) continue;
    ++count;
  }
  closedir(dir);
  return count;
}

void AddSingle(std::vector<FamilySnapshot>* out, const char* name,
               const char* help, MetricType type,
               const std::optional<double>& value) {
  if (!value.has_value()) return;
  out->push_back(FamilySnapshot{name, help, type, {Sample{name, {}, *value}}});
}

}  // namespace

ProcessStats ReadProcessStats(const std::string& proc_root,
                              const std::string& pid) {
  ProcessStats stats;
  const std::string dir = absl::StrCat(proc_root, "/", pid);
  const std::string stat_path = dir + "/stat";
  absl::StatusOr<std::string> stat = ReadFile(stat_path);
  if (stat.ok()) {
    ParseStat(stat_path, *stat, ReadBootTime(proc_root), &stats);
  } else {
    FTUNE_LOG(ERROR) << stat.status().message();
  }
  const bool is_self = proc_root == "/proc" &&
                       (pid == "self" || pid == std::to_string(getpid()));
  stats.open_fds = CountOpenFds(dir + "/fd", is_self);
  stats.max_fds = ReadMaxFds(dir + "/limits");
  return stats;
}

ProcessCollector::ProcessCollector(std::string proc_root, std::string pid)
    : proc_root_(std::move(proc_root)), pid_(std::move(pid)) {}

std::vector<FamilySnapshot> ProcessCollector::Collect() {
  const ProcessStats stats = ReadProcessStats(proc_root_, pid_);
  std::vector<FamilySnapshot> out;
  AddSingle(&out, "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            MetricType::kCounter, stats.cpu_seconds);
  AddSingle(&out, "process_resident_memory_bytes",
            "Resident memory size in bytes.", MetricType::kGauge,
            stats.resident_memory_bytes);
  AddSingle(&out, "process_virtual_memory_bytes",
            "Virtual memory size in bytes.", MetricType::kGauge,
            stats.virtual_memory_bytes);
  AddSingle(&out, "process_open_fds", "Number of open file descriptors.",
            MetricType::kGauge, stats.open_fds);
  AddSingle(&out, "process_max_fds", "Maximum number of open file descriptors.",
            MetricType::kGauge, stats.max_fds);
  AddSingle(&out, "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            MetricType::kGauge, stats.start_time_seconds);
  return out;
}

}  // namespace ftune::metrics
