#include "common/metrics/text_format.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace ftune::metrics {
namespace {

bool IsNameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }

// Shared by metric and label names; `what` is "metric name" or "label name".
absl::Status ValidateName(absl::string_view name, absl::string_view what,
                          absl::string_view context) {
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(context, "empty ", what));
  }
  if (!IsNameStart(name[0])) {
    return absl::InvalidArgumentError(absl::StrCat(
        context, what, " \"", name, "\" must start with a letter or '_'"));
  }
  for (char c : name) {
    if (!IsNameChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          context, what, " \"", name, "\" has character '",
          absl::string_view(&c, 1), "'; only [a-zA-Z0-9_] are allowed",
          c == ':' ? " (':' is reserved for recording rules)" : ""));
    }
  }
  if (name.size() >= 2 && name[0] == '_' && name[1] == '_') {
    return absl::InvalidArgumentError(
        absl::StrCat(context, what, " \"", name,
                     "\" starts with \"__\", which Prometheus reserves"));
  }
  return absl::OkStatus();
}

// Length of the valid UTF-8 sequence at s[i], or 0 if it is not valid
// (truncated, overlong, surrogate, or above U+10FFFF).
size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t len;
  unsigned min_code;
  unsigned code;
  if ((c & 0xE0) == 0xC0) {
    len = 2, min_code = 0x80, code = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, min_code = 0x800, code = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, min_code = 0x10000, code = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3F);
  }
  if (code < min_code || code > 0x10FFFF) return 0;
  if (code >= 0xD800 && code <= 0xDFFF) return 0;
  return len;
}

void AppendSample(const Sample& sample, std::string* out) {
  out->append(sample.name);
  if (!sample.labels.empty()) {
    out->push_back('{');
    bool first = true;
    for (const auto& [name, value] : sample.labels) {
      if (!first) out->push_back(',');
      first = false;
      absl::StrAppend(out, name, "=\"", EscapeLabelValue(value), "\"");
    }
    out->push_back('}');
  }
  absl::StrAppend(out, " ", FormatValue(sample.value), "\n");
}

}  // namespace

const char* MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

absl::Status ValidateMetricName(absl::string_view name) {
  return ValidateName(name, "metric name", "");
}

absl::Status ValidateLabelName(absl::string_view metric,
                               absl::string_view label) {
  return ValidateName(label, "label name",
                      absl::StrCat("metric \"", metric, "\": "));
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Integers up to 2^53 are exact in a double: print all their digits rather
  // than "1e+06".
  if (value == std::trunc(value) && std::fabs(value) <= 9007199254740992.0) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.0f", value);
    // "-0" reads back as 0 everywhere; keep it plain.
    return value == 0 ? "0" : buf;
  }
  // Shortest precision that reads back to the same double.
  char buf[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  return buf;
}

std::string EscapeHelp(absl::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out.append("\\\\");
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  size_t i = 0;
  while (i < value.size()) {
    const char c = value[i];
    if (c == '\\') {
      out.append("\\\\");
    } else if (c == '"') {
      out.append("\\\"");
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      const size_t len = Utf8SequenceLength(value, i);
      if (len == 0) {
        out.append("\xEF\xBF\xBD");  // U+FFFD REPLACEMENT CHARACTER
        ++i;
        continue;
      }
      out.append(value.data() + i, len);
      i += len;
      continue;
    }
    ++i;
  }
  return out;
}

std::string FormatText(const std::vector<FamilySnapshot>& families) {
  std::string out;
  for (const FamilySnapshot& family : families) {
    absl::StrAppend(&out, "# HELP ", family.name, " ", EscapeHelp(family.help),
                    "\n# TYPE ", family.name, " ", MetricTypeName(family.type),
                    "\n");
    for (const Sample& sample : family.samples) AppendSample(sample, &out);
  }
  return out;
}

}  // namespace ftune::metrics
