// What a PromQL expression refers to, for checking dashboards and alert
// rules against the metrics the binaries really export: the metric names
// of its selectors (with the label names each one matches on) and the label
// names of its grouping clauses (`by`, `without`, `on`, `ignoring`,
// `group_left`, `group_right`).
//
// Not a PromQL parser: a tokenizer that knows where names can appear. It
// understands string literals, label matchers, ranges and subqueries, the
// keywords and every function and aggregation of Prometheus 2.42, and
// Grafana's `$variable` / `${variable}` placeholders (kept opaque, listed in
// `variables`). A name followed by `(` that is not a known function is an
// error, so a misspelt function fails instead of passing as a metric.
//
// Thread-safety: the functions are thread-safe.
#ifndef FTUNE_TESTS_DEPLOY_PROMQL_REFS_H_
#define FTUNE_TESTS_DEPLOY_PROMQL_REFS_H_

#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftune::testing {

struct PromQLSelector {
  std::string metric;
  std::set<std::string> labels;  // Label names of the matchers.
};

struct PromQLRefs {
  std::vector<PromQLSelector> selectors;
  std::set<std::string> grouping_labels;
  std::set<std::string> functions;  // Functions and aggregations used.
  std::set<std::string> variables;  // Grafana variables, without the `$`.
};

// InvalidArgument on an unknown function, unbalanced brackets, an
// unterminated string or a selector without a metric name.
absl::StatusOr<PromQLRefs> ParsePromQLRefs(absl::string_view expr);

// Grafana's `label_values(SELECTOR, LABEL)` variable query.
struct LabelValuesQuery {
  std::string selector;
  std::string label;
};
// InvalidArgument when `query` is not of that form.
absl::StatusOr<LabelValuesQuery> ParseLabelValuesQuery(absl::string_view query);

// The family a histogram's series would belong to: `metric` without its
// `_bucket`, `_sum` or `_count` suffix (`x_bucket` -> `x`); empty when it
// has none of them. The caller checks that the family is a histogram.
std::string HistogramFamilyOf(absl::string_view metric);

}  // namespace ftune::testing

#endif  // FTUNE_TESTS_DEPLOY_PROMQL_REFS_H_
