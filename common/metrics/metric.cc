#include "common/metrics/metric.h"

#include <cmath>
#include <cstring>

#include "common/metrics/text_format.h"

namespace ftune::metrics {

uint64_t AtomicDouble::ToBits(double v) {
  uint64_t b;
  std::memcpy(&b, &v, sizeof(b));
  return b;
}

double AtomicDouble::FromBits(uint64_t b) {
  double v;
  std::memcpy(&v, &b, sizeof(v));
  return v;
}

void AtomicDouble::Add(double delta) {
  uint64_t expected = bits_.load(std::memory_order_relaxed);
  while (!bits_.compare_exchange_weak(expected,
                                      ToBits(FromBits(expected) + delta),
                                      std::memory_order_relaxed)) {
  }
}

void Counter::Inc(double v) {
  if (!(v >= 0)) return;  // Negative or NaN.
  value_.Add(v);
}

void Counter::AppendSamples(const std::string& name, const LabelPairs& labels,
                            std::vector<Sample>* out) const {
  out->push_back(Sample{name, labels, Value()});
}

void Gauge::AppendSamples(const std::string& name, const LabelPairs& labels,
                          std::vector<Sample>* out) const {
  out->push_back(Sample{name, labels, Value()});
}

std::vector<double> DefaultLatencyBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> bounds;
  double bound = start;
  for (int i = 0; i < count; ++i) {
    bounds.push_back(bound);
    bound *= factor;
  }
  return bounds;
}

std::vector<double> LinearBuckets(double start, double width, int count) {
  std::vector<double> bounds;
  for (int i = 0; i < count; ++i) bounds.push_back(start + i * width);
  return bounds;
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double v) {
  if (std::isnan(v)) return;
  // First bound >= v: buckets are inclusive of their upper bound.
  const size_t bucket =
      std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.Add(v);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> cumulative(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    cumulative[i] = total;
  }
  return cumulative;
}

uint64_t Histogram::Count() const { return CumulativeCounts().back(); }

void Histogram::AppendSamples(const std::string& name, const LabelPairs& labels,
                              std::vector<Sample>* out) const {
  const std::vector<uint64_t> cumulative = CumulativeCounts();
  const std::string bucket_name = name + "_bucket";
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    LabelPairs with_le = labels;
    with_le.emplace_back("le",
                         i < bounds_.size() ? FormatValue(bounds_[i]) : "+Inf");
    out->push_back(Sample{bucket_name, std::move(with_le),
                          static_cast<double>(cumulative[i])});
  }
  out->push_back(Sample{name + "_sum", labels, Sum()});
  out->push_back(
      Sample{name + "_count", labels, static_cast<double>(cumulative.back())});
}

}  // namespace ftune::metrics
