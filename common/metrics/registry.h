// Registry: the set of metric families and collectors one process exposes.
//
// There is no global registry: main() creates one and passes a pointer to
// every owner of metrics (scheduler, store, RPC layer) and to the
// MetricsHttpServer. The Registry must outlive the families it returns and
// every CollectorHandle.
//
// Naming (enforced at registration; see docs/metrics.md): metric and label
// names follow Prometheus' rules (text_format.h: ValidateMetricName); HELP
// must be non-empty; counter names must end in "_total" (enforced, not
// appended, so the name you register is the name you query); a histogram
// may not use the label "le"; histogram "x" also claims "x_bucket", "x_sum"
// and "x_count". Errors: InvalidArgument for a bad name, label or bucket
// list; AlreadyExists for a name that is taken. A failed registration
// changes nothing.
//
// Values computed at scrape time come from collectors: AddGaugeCallback /
// AddCounterCallback for one family, AddCollector for anything else (e.g.
// process_collector.h). They run on the scraping thread, under the
// registry's reader lock: they must not call back into this Registry.
//
// Thread-safety: thread-safe. Registration and collector removal take a
// writer lock; Collect() a reader lock; metric updates take neither.
#ifndef FTUNE_COMMON_METRICS_REGISTRY_H_
#define FTUNE_COMMON_METRICS_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics/metric.h"
#include "common/metrics/snapshot.h"

namespace ftune::metrics {

// Produces families at scrape time. Implementations must be thread-safe:
// two scrapes may call Collect() concurrently.
class Collector {
 public:
  virtual ~Collector() = default;
  // Families whose names or labels break the naming rules, or that repeat a
  // name already exposed, are dropped from the scrape with an error log.
  virtual std::vector<FamilySnapshot> Collect() = 0;
};

// Receives the values of a callback family during one scrape.
class CallbackWriter {
 public:
  // Sets the sample for `label_values` (one per label name, same order).
  // The wrong number of values is dropped with an error log (a scrape must
  // stay valid); a repeated tuple keeps the last value.
  virtual void Set(const std::vector<std::string>& label_values,
                   double value) = 0;

 protected:
  ~CallbackWriter() = default;
};
using MetricCallback = std::function<void(CallbackWriter&)>;

class Registry;

// Keeps a collector registered; destroying or Reset()ting it unregisters the
// collector, waiting for any scrape that is running it to finish (so the
// callback's captures may be destroyed right after). Move-only.
class CollectorHandle {
 public:
  CollectorHandle() = default;
  ~CollectorHandle() { Reset(); }
  CollectorHandle(CollectorHandle&& other) noexcept;
  CollectorHandle& operator=(CollectorHandle&& other) noexcept;
  CollectorHandle(const CollectorHandle&) = delete;
  CollectorHandle& operator=(const CollectorHandle&) = delete;

  void Reset();
  bool registered() const { return registry_ != nullptr; }

 private:
  friend class Registry;
  CollectorHandle(Registry* registry, uint64_t id)
      : registry_(registry), id_(id) {}
  Registry* registry_ = nullptr;
  uint64_t id_ = 0;
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Families owned by the registry; the pointers stay valid for its life.
  absl::StatusOr<CounterFamily*> AddCounter(
      absl::string_view name, absl::string_view help,
      std::vector<std::string> label_names = {});
  absl::StatusOr<GaugeFamily*> AddGauge(
      absl::string_view name, absl::string_view help,
      std::vector<std::string> label_names = {});
  // `bounds`: finite, strictly increasing upper bounds; +Inf is implicit.
  absl::StatusOr<HistogramFamily*> AddHistogram(
      absl::string_view name, absl::string_view help,
      std::vector<std::string> label_names,
      std::vector<double> bounds = DefaultLatencyBuckets());

  // One family whose samples `callback` writes at each scrape.
  absl::StatusOr<CollectorHandle> AddGaugeCallback(
      absl::string_view name, absl::string_view help,
      std::vector<std::string> label_names, MetricCallback callback);
  absl::StatusOr<CollectorHandle> AddCounterCallback(
      absl::string_view name, absl::string_view help,
      std::vector<std::string> label_names, MetricCallback callback);

  // Any collector; its family names are checked at each scrape.
  absl::StatusOr<CollectorHandle> AddCollector(
      std::unique_ptr<Collector> collector);

  // Everything registered, families ordered by name, samples by label
  // values (histogram buckets in bound order, then _sum and _count).
  std::vector<FamilySnapshot> Collect() const;

  // FormatText(Collect()).
  std::string Scrape() const;

 private:
  friend class CollectorHandle;

  absl::Status CheckNewFamily(absl::string_view name, absl::string_view help,
                              MetricType type,
                              const std::vector<std::string>& label_names) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<CollectorHandle> AddCallback(
      absl::string_view name, absl::string_view help, MetricType type,
      std::vector<std::string> label_names, MetricCallback callback);
  void RemoveCollector(uint64_t id);

  mutable absl::Mutex mu_;
  // Names taken by registered families and callback families, including the
  // suffixed names a histogram claims.
  std::map<std::string, std::string, std::less<>> claimed_names_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<CounterFamily>> counters_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<GaugeFamily>> gauges_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<HistogramFamily>> histograms_
      ABSL_GUARDED_BY(mu_);
  struct CollectorEntry {
    std::unique_ptr<Collector> collector;
    std::vector<std::string> claimed;  // Names to release on removal.
  };
  std::map<uint64_t, CollectorEntry> collectors_ ABSL_GUARDED_BY(mu_);
  uint64_t next_collector_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace ftune::metrics

#endif  // FTUNE_COMMON_METRICS_REGISTRY_H_
