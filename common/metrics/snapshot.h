// Plain values that describe one scrape: what families, collectors and the
// text formatter exchange. No behaviour beyond construction.
//
// Thread-safety: plain data; not synchronised.
#ifndef FTUNE_COMMON_METRICS_SNAPSHOT_H_
#define FTUNE_COMMON_METRICS_SNAPSHOT_H_

#include <string>
#include <utility>
#include <vector>

namespace ftune::metrics {

enum class MetricType { kCounter, kGauge, kHistogram };

// "counter" / "gauge" / "histogram", as written on a `# TYPE` line.
const char* MetricTypeName(MetricType type);

// (label name, label value) pairs in the order they are exposed.
using LabelPairs = std::vector<std::pair<std::string, std::string>>;

// One exposed line: `name{labels} value`. `name` is the full sample name,
// e.g. "ftune_queue_wait_seconds_bucket" for a histogram bucket.
struct Sample {
  std::string name;
  LabelPairs labels;
  double value = 0;
};

// One metric family: the `# HELP` and `# TYPE` lines and its samples.
struct FamilySnapshot {
  std::string name;
  std::string help;
  MetricType type = MetricType::kGauge;
  std::vector<Sample> samples;
};

}  // namespace ftune::metrics

#endif  // FTUNE_COMMON_METRICS_SNAPSHOT_H_
