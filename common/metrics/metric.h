// Counter, Gauge, Histogram and Family<T>, the labelled set of one of them.
//
// A Family is created by a Registry (registry.h), which owns it; callers keep
// the returned pointer. Children are looked up by label values, in the order
// of the family's label names:
//
//   auto submitted = registry.AddCounter("ftune_jobs_submitted_total",
//                                        "Jobs accepted.", {"tenant"});
//   (*submitted)->WithLabels({"tenant-a"})->Inc();
//
// Thread-safety: everything here is thread-safe. Inc/Set/Observe on a child
// are lock-free atomics; WithLabels/Remove take the family's own mutex (a
// reader lock when the child exists), never a registry-wide one. Hot paths
// may keep the shared_ptr from WithLabels() and skip the lookup.
#ifndef FTUNE_COMMON_METRICS_METRIC_H_
#define FTUNE_COMMON_METRICS_METRIC_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/metrics/snapshot.h"

namespace ftune::metrics {

// A double updated with compare-and-swap (std::atomic<double>::fetch_add is
// C++20).
class AtomicDouble {
 public:
  explicit AtomicDouble(double v = 0) : bits_(ToBits(v)) {}
  double Get() const { return FromBits(bits_.load(std::memory_order_relaxed)); }
  void Set(double v) { bits_.store(ToBits(v), std::memory_order_relaxed); }
  void Add(double delta);

 private:
  static uint64_t ToBits(double v);
  static double FromBits(uint64_t b);
  std::atomic<uint64_t> bits_;
};

// Monotonic count. Starts at 0.
class Counter {
 public:
  // Adds `v`. A negative or NaN `v` would break monotonicity: it is ignored.
  void Inc(double v = 1);
  double Value() const { return value_.Get(); }
  void AppendSamples(const std::string& name, const LabelPairs& labels,
                     std::vector<Sample>* out) const;

 private:
  AtomicDouble value_;
};

// A value that goes up and down. Starts at 0.
class Gauge {
 public:
  void Set(double v) { value_.Set(v); }
  void Inc(double v = 1) { value_.Add(v); }
  void Dec(double v = 1) { value_.Add(-v); }
  double Value() const { return value_.Get(); }
  void AppendSamples(const std::string& name, const LabelPairs& labels,
                     std::vector<Sample>* out) const;

 private:
  AtomicDouble value_;
};

// Latency buckets in seconds, 5 ms to 10 s (the Prometheus client default).
std::vector<double> DefaultLatencyBuckets();
// `count` bounds start, start*factor, ... (start > 0, factor > 1, count >= 1).
std::vector<double> ExponentialBuckets(double start, double factor, int count);
// `count` bounds start, start+width, ... (width > 0, count >= 1).
std::vector<double> LinearBuckets(double start, double width, int count);

// Counts observations into buckets with inclusive upper bounds (`le`), plus
// the implicit +Inf bucket; tracks their sum and count.
class Histogram {
 public:
  // `bounds` must be finite and strictly increasing (the Registry checks
  // this before constructing one).
  explicit Histogram(std::vector<double> bounds);
  // Records `v`. NaN is ignored (it would poison the sum).
  void Observe(double v);
  // Observations so far; equals the +Inf bucket.
  uint64_t Count() const;
  double Sum() const { return sum_.Get(); }
  // Cumulative counts, one per bound, then +Inf.
  std::vector<uint64_t> CumulativeCounts() const;
  const std::vector<double>& bounds() const { return bounds_; }
  // Emits name_bucket{...,le=...} (cumulative, +Inf last), name_sum,
  // name_count; _count is the +Inf bucket, so the two always agree.
  void AppendSamples(const std::string& name, const LabelPairs& labels,
                     std::vector<Sample>* out) const;

 private:
  const std::vector<double> bounds_;
  // counts_[i]: observations in (bounds_[i-1], bounds_[i]]; last is +Inf.
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  AtomicDouble sum_;
};

// Children of one metric, one per distinct tuple of label values.
// A child is exposed from its first WithLabels() until Remove().
template <typename T>
class Family {
 public:
  Family(std::string name, std::string help, MetricType type,
         std::vector<std::string> label_names,
         std::function<std::shared_ptr<T>()> make_child)
      : name_(std::move(name)),
        help_(std::move(help)),
        type_(type),
        label_names_(std::move(label_names)),
        make_child_(std::move(make_child)) {}
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;

  // The child for `label_values` (one per label name, same order), created
  // at zero on first use. Passing the wrong number of values is a programming
  // error and aborts with a message naming the family.
  // The pointer stays usable for as long as it is held; after Remove() it is
  // detached (updates are kept but no longer exposed) and a later
  // WithLabels() with the same values starts a fresh child at zero.
  std::shared_ptr<T> WithLabels(const std::vector<std::string>& label_values);

  // Stops exposing the child for `label_values`; returns whether it existed.
  // Use it for per-job series when the job ends.
  bool Remove(const std::vector<std::string>& label_values);

  // Removes every child.
  void Clear();

  // Number of children currently exposed.
  size_t size() const;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Snapshot of every child, ordered by label values.
  FamilySnapshot Collect() const;

 private:
  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
  const std::function<std::shared_ptr<T>()> make_child_;
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::shared_ptr<T>> children_
      ABSL_GUARDED_BY(mu_);
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

// --- Implementation -----------------------------------------------------

template <typename T>
std::shared_ptr<T> Family<T>::WithLabels(
    const std::vector<std::string>& label_values) {
  FTUNE_CHECK(label_values.size() == label_names_.size())
      << "metric " << name_ << " has labels {"
      << absl::StrJoin(label_names_, ",") << "} but got " << label_values.size()
      << " values {" << absl::StrJoin(label_values, ",") << "}";
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = children_.find(label_values);
    if (it != children_.end()) return it->second;
  }
  absl::MutexLock lock(&mu_);
  auto& child = children_[label_values];
  if (child == nullptr) child = make_child_();
  return child;
}

template <typename T>
bool Family<T>::Remove(const std::vector<std::string>& label_values) {
  absl::MutexLock lock(&mu_);
  return children_.erase(label_values) > 0;
}

template <typename T>
void Family<T>::Clear() {
  absl::MutexLock lock(&mu_);
  children_.clear();
}

template <typename T>
size_t Family<T>::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return children_.size();
}

template <typename T>
FamilySnapshot Family<T>::Collect() const {
  FamilySnapshot snapshot;
  snapshot.name = name_;
  snapshot.help = help_;
  snapshot.type = type_;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [values, child] : children_) {
    LabelPairs labels;
    labels.reserve(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      labels.emplace_back(label_names_[i], values[i]);
    }
    child->AppendSamples(name_, labels, &snapshot.samples);
  }
  return snapshot;
}

}  // namespace ftune::metrics

#endif  // FTUNE_COMMON_METRICS_METRIC_H_
