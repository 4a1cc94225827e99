#include "common/metrics/registry.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/metrics/text_format.h"
#include "common/status.h"

namespace ftune::metrics {
namespace {

constexpr const char* kHistogramSuffixes[] = {"_bucket", "_sum", "_count"};

// The names a family of `type` puts on its sample lines.
std::vector<std::string> NamesOf(absl::string_view name, MetricType type) {
  std::vector<std::string> names = {std::string(name)};
  if (type == MetricType::kHistogram) {
    for (const char* suffix : kHistogramSuffixes) {
      names.push_back(absl::StrCat(name, suffix));
    }
  }
  return names;
}

// The rules every family obeys, however it is registered.
absl::Status ValidateDescription(absl::string_view name, absl::string_view help,
                                 MetricType type,
                                 const std::vector<std::string>& label_names) {
  FTUNE_RETURN_IF_ERROR(ValidateMetricName(name));
  if (help.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric \"", name, "\": HELP text is empty"));
  }
  if (type == MetricType::kCounter && !absl::EndsWith(name, "_total")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "counter \"", name, "\": counter names must end in \"_total\""));
  }
  std::set<absl::string_view> seen;
  for (const std::string& label : label_names) {
    FTUNE_RETURN_IF_ERROR(ValidateLabelName(name, label));
    if (type == MetricType::kHistogram && label == "le") {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram \"", name,
                       "\": label name \"le\" is reserved for bucket bounds"));
    }
    if (!seen.insert(label).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "metric \"", name, "\": label name \"", label, "\" repeated"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateBounds(absl::string_view name,
                            const std::vector<double>& bounds) {
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram \"", name, "\": bucket bound ", i, " is ",
                       FormatValue(bounds[i]),
                       "; bounds must be finite (+Inf is implicit)"));
    }
    if (i > 0 && !(bounds[i] > bounds[i - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram \"", name,
                       "\": bucket bounds must be strictly "
                       "increasing, but bound ",
                       i, " (", FormatValue(bounds[i]), ") <= bound ", i - 1,
                       " (", FormatValue(bounds[i - 1]), ")"));
    }
  }
  return absl::OkStatus();
}

// Checks a family produced by a collector at scrape time: the description
// rules, and that every sample carries a name of this family.
absl::Status ValidateSnapshot(const FamilySnapshot& family) {
  std::vector<std::string> label_names;
  std::set<std::string> label_set;
  for (const Sample& sample : family.samples) {
    for (const auto& [label, value] : sample.labels) {
      if (family.type == MetricType::kHistogram && label == "le") continue;
      if (label_set.insert(label).second) label_names.push_back(label);
    }
  }
  FTUNE_RETURN_IF_ERROR(
      ValidateDescription(family.name, family.help, family.type, label_names));
  const std::vector<std::string> names = NamesOf(family.name, family.type);
  for (const Sample& sample : family.samples) {
    if (std::find(names.begin(), names.end(), sample.name) == names.end()) {
      return absl::InvalidArgumentError(absl::StrCat("family \"", family.name,
                                                     "\" has a sample named \"",
                                                     sample.name, "\""));
    }
    std::set<absl::string_view> in_sample;
    for (const auto& label : sample.labels) {
      if (!in_sample.insert(label.first).second) {
        return absl::InvalidArgumentError(absl::StrCat("family \"", family.name,
                                                       "\": a sample repeats "
                                                       "label \"",
                                                       label.first, "\""));
      }
    }
  }
  return absl::OkStatus();
}

// Orders samples by label values; for a histogram the `le` label is left out
// of the comparison so each child's buckets, _sum and _count stay together
// in the order the family wrote them.
bool LabelsLess(const LabelPairs& a, const LabelPairs& b, bool skip_le) {
  size_t i = 0, j = 0;
  while (true) {
    while (skip_le && i < a.size() && a[i].first == "le") ++i;
    while (skip_le && j < b.size() && b[j].first == "le") ++j;
    if (i == a.size() || j == b.size()) return i == a.size() && j < b.size();
    if (a[i] != b[j]) return a[i] < b[j];
    ++i, ++j;
  }
}

class CallbackFamily : public Collector {
 public:
  CallbackFamily(std::string name, std::string help, MetricType type,
                 std::vector<std::string> label_names, MetricCallback callback)
      : name_(std::move(name)),
        help_(std::move(help)),
        type_(type),
        label_names_(std::move(label_names)),
        callback_(std::move(callback)) {}

  std::vector<FamilySnapshot> Collect() override {
    Writer writer(this);
    callback_(writer);
    FamilySnapshot family{name_, help_, type_, {}};
    for (const auto& [values, value] : writer.values) {
      LabelPairs labels;
      for (size_t i = 0; i < values.size(); ++i) {
        labels.emplace_back(label_names_[i], values[i]);
      }
      family.samples.push_back(Sample{name_, std::move(labels), value});
    }
    std::vector<FamilySnapshot> out;
    out.push_back(std::move(family));
    return out;
  }

 private:
  struct Writer : CallbackWriter {
    explicit Writer(const CallbackFamily* family) : family(family) {}
    void Set(const std::vector<std::string>& label_values,
             double value) override {
      if (label_values.size() != family->label_names_.size()) {
        FTUNE_LOG(ERROR) << "metric " << family->name_ << " has labels {"
                         << absl::StrJoin(family->label_names_, ",")
                         << "}; callback set a sample with "
                         << label_values.size() << " values {"
                         << absl::StrJoin(label_values, ",")
                         << "}: sample dropped";
        return;
      }
      values[label_values] = value;
    }
    const CallbackFamily* family;
    std::map<std::vector<std::string>, double> values;
  };

  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
  const MetricCallback callback_;
};

}  // namespace

CollectorHandle::CollectorHandle(CollectorHandle&& other) noexcept
    : registry_(other.registry_), id_(other.id_) {
  other.registry_ = nullptr;
}

CollectorHandle& CollectorHandle::operator=(CollectorHandle&& other) noexcept {
  if (this != &other) {
    Reset();
    registry_ = other.registry_;
    id_ = other.id_;
    other.registry_ = nullptr;
  }
  return *this;
}

void CollectorHandle::Reset() {
  if (registry_ == nullptr) return;
  registry_->RemoveCollector(id_);
  registry_ = nullptr;
}

absl::Status Registry::CheckNewFamily(
    absl::string_view name, absl::string_view help, MetricType type,
    const std::vector<std::string>& label_names) const {
  FTUNE_RETURN_IF_ERROR(ValidateDescription(name, help, type, label_names));
  for (const std::string& taken : NamesOf(name, type)) {
    auto it = claimed_names_.find(taken);
    if (it != claimed_names_.end()) {
      return absl::AlreadyExistsError(
          absl::StrCat(MetricTypeName(type), " \"", name, "\": name \"", taken,
                       "\" is already used by ", it->second));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<CounterFamily*> Registry::AddCounter(
    absl::string_view name, absl::string_view help,
    std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  FTUNE_RETURN_IF_ERROR(
      CheckNewFamily(name, help, MetricType::kCounter, label_names));
  claimed_names_[std::string(name)] = absl::StrCat("counter \"", name, "\"");
  counters_.push_back(std::make_unique<CounterFamily>(
      std::string(name), std::string(help), MetricType::kCounter,
      std::move(label_names), [] { return std::make_shared<Counter>(); }));
  return counters_.back().get();
}

absl::StatusOr<GaugeFamily*> Registry::AddGauge(
    absl::string_view name, absl::string_view help,
    std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  FTUNE_RETURN_IF_ERROR(
      CheckNewFamily(name, help, MetricType::kGauge, label_names));
  claimed_names_[std::string(name)] = absl::StrCat("gauge \"", name, "\"");
  gauges_.push_back(std::make_unique<GaugeFamily>(
      std::string(name), std::string(help), MetricType::kGauge,
      std::move(label_names), [] { return std::make_shared<Gauge>(); }));
  return gauges_.back().get();
}

absl::StatusOr<HistogramFamily*> Registry::AddHistogram(
    absl::string_view name, absl::string_view help,
    std::vector<std::string> label_names, std::vector<double> bounds) {
  absl::MutexLock lock(&mu_);
  FTUNE_RETURN_IF_ERROR(
      CheckNewFamily(name, help, MetricType::kHistogram, label_names));
  FTUNE_RETURN_IF_ERROR(ValidateBounds(name, bounds));
  for (const std::string& taken : NamesOf(name, MetricType::kHistogram)) {
    claimed_names_[taken] = absl::StrCat("histogram \"", name, "\"");
  }
  histograms_.push_back(std::make_unique<HistogramFamily>(
      std::string(name), std::string(help), MetricType::kHistogram,
      std::move(label_names), [bounds = std::move(bounds)] {
        return std::make_shared<Histogram>(bounds);
      }));
  return histograms_.back().get();
}

absl::StatusOr<CollectorHandle> Registry::AddCallback(
    absl::string_view name, absl::string_view help, MetricType type,
    std::vector<std::string> label_names, MetricCallback callback) {
  if (callback == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric \"", name, "\": callback is empty"));
  }
  absl::MutexLock lock(&mu_);
  FTUNE_RETURN_IF_ERROR(CheckNewFamily(name, help, type, label_names));
  claimed_names_[std::string(name)] =
      absl::StrCat(MetricTypeName(type), " callback \"", name, "\"");
  const uint64_t id = next_collector_id_++;
  collectors_[id] =
      CollectorEntry{std::make_unique<CallbackFamily>(
                         std::string(name), std::string(help), type,
                         std::move(label_names), std::move(callback)),
                     {std::string(name)}};
  return CollectorHandle(this, id);
}

absl::StatusOr<CollectorHandle> Registry::AddGaugeCallback(
    absl::string_view name, absl::string_view help,
    std::vector<std::string> label_names, MetricCallback callback) {
  return AddCallback(name, help, MetricType::kGauge, std::move(label_names),
                     std::move(callback));
}

absl::StatusOr<CollectorHandle> Registry::AddCounterCallback(
    absl::string_view name, absl::string_view help,
    std::vector<std::string> label_names, MetricCallback callback) {
  return AddCallback(name, help, MetricType::kCounter, std::move(label_names),
                     std::move(callback));
}

absl::StatusOr<CollectorHandle> Registry::AddCollector(
    std::unique_ptr<Collector> collector) {
  if (collector == nullptr) {
    return absl::InvalidArgumentError("AddCollector: collector is null");
  }
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_collector_id_++;
  collectors_[id] = CollectorEntry{std::move(collector), {}};
  return CollectorHandle(this, id);
}

void Registry::RemoveCollector(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = collectors_.find(id);
  if (it == collectors_.end()) return;
  for (const std::string& name : it->second.claimed) claimed_names_.erase(name);
  collectors_.erase(it);
}

std::vector<FamilySnapshot> Registry::Collect() const {
  std::vector<FamilySnapshot> families;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& family : counters_) families.push_back(family->Collect());
  for (const auto& family : gauges_) families.push_back(family->Collect());
  for (const auto& family : histograms_) families.push_back(family->Collect());
  // Collector output is checked here, at scrape time: one bad collector must
  // not make the whole exposition unparseable.
  std::set<std::string> exposed;
  for (const FamilySnapshot& family : families) {
    for (std::string& name : NamesOf(family.name, family.type)) {
      exposed.insert(std::move(name));
    }
  }
  for (const auto& [id, entry] : collectors_) {
    for (FamilySnapshot& family : entry.collector->Collect()) {
      absl::Status valid = ValidateSnapshot(family);
      const std::vector<std::string> names = NamesOf(family.name, family.type);
      for (const std::string& name : names) {
        if (valid.ok() && exposed.count(name) > 0) {
          valid = absl::AlreadyExistsError(
              absl::StrCat("name \"", name, "\" is already exposed"));
        }
      }
      if (!valid.ok()) {
        FTUNE_LOG(ERROR) << "metrics collector " << id << ": family \""
                         << family.name
                         << "\" dropped from scrape: " << valid.message();
        continue;
      }
      exposed.insert(names.begin(), names.end());
      families.push_back(std::move(family));
    }
  }
  std::sort(families.begin(), families.end(),
            [](const FamilySnapshot& a, const FamilySnapshot& b) {
              return a.name < b.name;
            });
  for (FamilySnapshot& family : families) {
    const bool skip_le = family.type == MetricType::kHistogram;
    std::stable_sort(family.samples.begin(), family.samples.end(),
                     [skip_le](const Sample& a, const Sample& b) {
                       return LabelsLess(a.labels, b.labels, skip_le);
                     });
  }
  return families;
}

std::string Registry::Scrape() const { return FormatText(Collect()); }

}  // namespace ftune::metrics
