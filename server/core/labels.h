// The one rule for labels, wherever a client or a worker sets them
// (JobSpec.labels, WorkerCapabilities.labels): at most kMaxLabels labels;
// keys 1-63 characters of [a-z0-9_-] starting with a letter; values 0-63
// characters of [A-Za-z0-9_.-] (so a label is also a valid Kubernetes label
// value, and no key looks like a path).
//
// Thread-safety: pure functions.
#ifndef FTUNE_SERVER_CORE_LABELS_H_
#define FTUNE_SERVER_CORE_LABELS_H_

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace ftune::core {

inline constexpr size_t kMaxLabels = 32;
inline constexpr size_t kMaxLabelKeyChars = 63;
inline constexpr size_t kMaxLabelValueChars = 63;

struct LabelError {
  std::string field;    // `field`, or `field`["key"] for one label
  std::string message;  // what is wrong, without the field
};

// Every problem of `labels`, keys in sorted order, fields named after
// `field` (e.g. "spec.labels" -> "spec.labels" for the count,
// spec.labels["Team"] for a key or value; a key is quoted with QuoteValue,
// so an absurdly long one stays short). Empty when valid.
std::vector<LabelError> CheckLabels(
    const std::map<std::string, std::string>& labels, absl::string_view field);

}  // namespace ftune::core

#endif  // FTUNE_SERVER_CORE_LABELS_H_
