// Prometheus text exposition format, version 0.0.4, and the naming rules
// that keep it valid.
//
// Format (https://prometheus.io/docs/instrumenting/exposition_formats/):
//   # HELP <name> <help with \\ and \n escaped>
//   # TYPE <name> counter|gauge|histogram
//   <name>{<label>="<value with \\, \" and \n escaped>",...} <value>
// Values use FormatValue(): "+Inf", "-Inf", "NaN", integers without an
// exponent, other numbers in the shortest form that reads back exactly.
//
// Thread-safety: every function here is pure and thread-safe.
#ifndef FTUNE_COMMON_METRICS_TEXT_FORMAT_H_
#define FTUNE_COMMON_METRICS_TEXT_FORMAT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/metrics/snapshot.h"

namespace ftune::metrics {

// The Content-Type of FormatText()'s output.
inline constexpr char kTextContentType[] =
    "text/plain; version=0.0.4; charset=utf-8";

// Metric names: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved for
// Prometheus' internal use). Colons are legal in Prometheus but reserved for
// recording rules, so an exporter must not use them: rejected too.
// Returns InvalidArgument naming the metric and the rule it breaks.
absl::Status ValidateMetricName(absl::string_view name);

// Label names: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__".
// Returns InvalidArgument naming the label (and `metric`, for context).
absl::Status ValidateLabelName(absl::string_view metric,
                               absl::string_view label);

// Formats a sample value (also used for histogram `le` bounds).
std::string FormatValue(double value);

// Escapes `\` and newline (HELP text).
std::string EscapeHelp(absl::string_view help);

// Escapes `\`, `"` and newline (label values). Bytes that are not valid
// UTF-8 become U+FFFD, because the format requires UTF-8.
std::string EscapeLabelValue(absl::string_view value);

// Writes `families` in the given order; samples in the given order. A family
// without samples is still described by its HELP and TYPE lines.
// Does not validate names: the Registry does that before anything gets here.
std::string FormatText(const std::vector<FamilySnapshot>& families);

}  // namespace ftune::metrics

#endif  // FTUNE_COMMON_METRICS_TEXT_FORMAT_H_
