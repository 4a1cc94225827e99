#include "tests/deploy/promql_refs.h"

#include <algorithm>
#include <cctype>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace ftune::testing {
namespace {

// Prometheus 2.42: promql/parser/functions.go and the aggregation keywords.
const std::set<std::string>& Functions() {
  static const auto* kFunctions = new std::set<std::string>{
      "abs",
      "absent",
      "absent_over_time",
      "acos",
      "acosh",
      "asin",
      "asinh",
      "atan",
      "atanh",
      "avg_over_time",
      "ceil",
      "changes",
      "clamp",
      "clamp_max",
      "clamp_min",
      "cos",
      "cosh",
      "count_over_time",
      "day_of_month",
      "day_of_week",
      "day_of_year",
      "days_in_month",
      "deg",
      "delta",
      "deriv",
      "end",
      "exp",
      "floor",
      "histogram_count",
      "histogram_fraction",
      "histogram_quantile",
      "histogram_sum",
      "holt_winters",
      "hour",
      "idelta",
      "increase",
      "irate",
      "label_join",
      "label_replace",
      "last_over_time",
      "ln",
      "log10",
      "log2",
      "max_over_time",
      "min_over_time",
      "minute",
      "month",
      "pi",
      "predict_linear",
      "present_over_time",
      "quantile_over_time",
      "rad",
      "rate",
      "resets",
      "round",
      "scalar",
      "sgn",
      "sin",
      "sinh",
      "sort",
      "sort_desc",
      "sqrt",
      "start",
      "stddev_over_time",
      "stdvar_over_time",
      "sum_over_time",
      "tan",
      "tanh",
      "time",
      "timestamp",
      "vector",
      "year",
  };
  return *kFunctions;
}

const std::set<std::string>& Aggregations() {
  static const auto* kAggregations = new std::set<std::string>{
      "avg", "bottomk",  "count",  "count_values", "group", "max",
      "min", "quantile", "stddev", "stdvar",       "sum",   "topk",
  };
  return *kAggregations;
}

// Keywords whose parenthesised list holds label names.
const std::set<std::string>& GroupingKeywords() {
  static const auto* kGrouping = new std::set<std::string>{
      "by", "without", "on", "ignoring", "group_left", "group_right"};
  return *kGrouping;
}

// Keywords and literals that are neither metrics nor functions.
const std::set<std::string>& OtherKeywords() {
  static const auto* kOther = new std::set<std::string>{
      "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"};
  return *kOther;
}

enum class Kind { kIdent, kString, kNumber, kVariable, kPunct, kOperator };

struct Token {
  Kind kind;
  std::string text;
};

bool IsIdentStart(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
}
bool IsIdentChar(char c) {
  return IsIdentStart(c) || std::isdigit(static_cast<unsigned char>(c));
}

absl::StatusOr<std::vector<Token>> Tokenize(absl::string_view s) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (c == '#') {  // A comment runs to the end of the line.
      while (i < s.size() && s[i] != '\n') ++i;
    } else if (c == '"' || c == '\'' || c == '`') {
      const size_t start = i++;
      // Backquoted strings have no escapes.
      while (i < s.size() && s[i] != c) i += (s[i] == '\\' && c != '`') ? 2 : 1;
      if (i >= s.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("unterminated string at offset ", start, " in: ", s));
      }
      ++i;
      out.push_back({Kind::kString, std::string(s.substr(start, i - start))});
    } else if (std::isdigit(static_cast<unsigned char>(c)) ||
               (c == '.' && i + 1 < s.size() &&
                std::isdigit(static_cast<unsigned char>(s[i + 1])))) {
      // Numbers (1, 0.5, 1e-3, 0x1f) and durations (5m, 1h30m).
      const size_t start = i;
      while (i < s.size() &&
             (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '.' ||
              ((s[i] == '+' || s[i] == '-') &&
               (s[i - 1] == 'e' || s[i - 1] == 'E')))) {
        ++i;
      }
      out.push_back({Kind::kNumber, std::string(s.substr(start, i - start))});
    } else if (c == '$') {
      size_t start = ++i;
      size_t end = i;
      if (i < s.size() && s[i] == '{') {
        while (end < s.size() && s[end] != '}') ++end;
        if (end >= s.size()) {
          return absl::InvalidArgumentError(
              absl::StrCat("unterminated ${ in: ", s));
        }
        ++start;
        i = end + 1;
      } else {
        while (end < s.size() && IsIdentChar(s[end])) ++end;
        i = end;
      }
      // ${name:format} names `name`.
      std::string name(s.substr(start, end - start));
      name = name.substr(0, name.find(':'));
      if (name.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("empty $ in: ", s));
      }
      out.push_back({Kind::kVariable, name});
    } else if (IsIdentStart(c)) {
      const size_t start = i;
      while (i < s.size() && IsIdentChar(s[i])) ++i;
      out.push_back({Kind::kIdent, std::string(s.substr(start, i - start))});
    } else if (absl::string_view("(){}[],").find(c) !=
               absl::string_view::npos) {
      out.push_back({Kind::kPunct, std::string(1, c)});
      ++i;
    } else if (absl::string_view("+-*/%^=!<>~@").find(c) !=
               absl::string_view::npos) {
      const size_t start = i;
      while (i < s.size() && absl::string_view("+-*/%^=!<>~@").find(s[i]) !=
                                 absl::string_view::npos) {
        ++i;
      }
      out.push_back({Kind::kOperator, std::string(s.substr(start, i - start))});
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected character '", std::string(1, c),
                       "' at offset ", i, " in: ", s));
    }
  }
  return out;
}

bool IsPunct(const std::vector<Token>& t, size_t i, char c) {
  return i < t.size() && t[i].kind == Kind::kPunct && t[i].text[0] == c;
}

// Reads `{ name op value, ... }` starting at the `{`; returns the index after
// the `}`.
absl::StatusOr<size_t> ReadMatchers(const std::vector<Token>& t, size_t i,
                                    PromQLSelector* selector,
                                    absl::string_view expr) {
  ++i;  // '{'
  while (true) {
    if (i >= t.size()) {
      return absl::InvalidArgumentError(absl::StrCat("unclosed { in: ", expr));
    }
    if (IsPunct(t, i, '}')) return i + 1;
    if (IsPunct(t, i, ',')) {
      ++i;
      continue;
    }
    if (t[i].kind != Kind::kIdent || i + 2 >= t.size() ||
        t[i + 1].kind != Kind::kOperator ||
        (t[i + 2].kind != Kind::kString && t[i + 2].kind != Kind::kVariable)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad label matcher at \"", t[i].text, "\" in: ", expr));
    }
    if (t[i].text == "__name__" && t[i + 2].kind == Kind::kString &&
        t[i + 1].text == "=") {
      selector->metric = t[i + 2].text.substr(1, t[i + 2].text.size() - 2);
    } else {
      selector->labels.insert(t[i].text);
    }
    i += 3;
  }
}

// Grafana substitutes `$name` and `${name}` inside strings too (regex
// matchers on a multi-value variable).
void AddVariablesInString(absl::string_view s, std::set<std::string>* out) {
  for (size_t i = s.find('$'); i != absl::string_view::npos;
       i = s.find('$', i + 1)) {
    size_t start = i + 1;
    size_t end = start;
    if (start < s.size() && s[start] == '{') {
      ++start;
      end = s.find('}', start);
      if (end == absl::string_view::npos) return;
    } else {
      while (end < s.size() && IsIdentChar(s[end])) ++end;
    }
    std::string name(s.substr(start, end - start));
    name = name.substr(0, name.find(':'));
    // "$1" in label_replace is a regex group, not a variable.
    if (!name.empty() && IsIdentStart(name[0])) out->insert(name);
  }
}

}  // namespace

absl::StatusOr<PromQLRefs> ParsePromQLRefs(absl::string_view expr) {
  absl::StatusOr<std::vector<Token>> tokens = Tokenize(expr);
  if (!tokens.ok()) return tokens.status();
  const std::vector<Token>& t = *tokens;
  PromQLRefs refs;
  for (const Token& tok : t) {
    if (tok.kind == Kind::kString)
      AddVariablesInString(tok.text, &refs.variables);
  }
  int parens = 0;
  size_t i = 0;
  while (i < t.size()) {
    const Token& tok = t[i];
    if (tok.kind == Kind::kVariable) {
      refs.variables.insert(tok.text);
      ++i;
    } else if (tok.kind == Kind::kPunct && tok.text == "[") {
      // A range or subquery: durations, `:` and variables only.
      ++i;
      while (i < t.size() && !IsPunct(t, i, ']')) {
        if (t[i].kind == Kind::kVariable) refs.variables.insert(t[i].text);
        ++i;
      }
      if (i >= t.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("unclosed [ in: ", expr));
      }
      ++i;
    } else if (tok.kind == Kind::kPunct && tok.text == "{") {
      PromQLSelector selector;
      absl::StatusOr<size_t> next = ReadMatchers(t, i, &selector, expr);
      if (!next.ok()) return next.status();
      if (selector.metric.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("selector without a metric name in: ", expr));
      }
      refs.selectors.push_back(std::move(selector));
      i = *next;
    } else if (tok.kind == Kind::kPunct &&
               (tok.text == "(" || tok.text == ")")) {
      parens += tok.text == "(" ? 1 : -1;
      if (parens < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("unbalanced ) in: ", expr));
      }
      ++i;
    } else if (tok.kind == Kind::kPunct &&
               (tok.text == "]" || tok.text == "}")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unbalanced ", tok.text, " in: ", expr));
    } else if (tok.kind != Kind::kIdent) {
      ++i;
    } else if (GroupingKeywords().count(tok.text)) {
      ++i;
      if (!IsPunct(t, i, '(')) {
        // group_left / group_right may stand without a list.
        if (tok.text == "group_left" || tok.text == "group_right") continue;
        return absl::InvalidArgumentError(
            absl::StrCat("\"", tok.text, "\" without a label list in: ", expr));
      }
      for (++i; i < t.size() && !IsPunct(t, i, ')'); ++i) {
        if (IsPunct(t, i, ',')) continue;
        if (t[i].kind != Kind::kIdent) {
          return absl::InvalidArgumentError(
              absl::StrCat("\"", t[i].text, "\" in the label list of ",
                           tok.text, " in: ", expr));
        }
        refs.grouping_labels.insert(t[i].text);
      }
      if (i >= t.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("unclosed ( in: ", expr));
      }
      ++i;
    } else if (OtherKeywords().count(tok.text)) {
      ++i;
    } else if (Aggregations().count(tok.text)) {
      // `sum by (x) (...)` puts the grouping before the parenthesis.
      refs.functions.insert(tok.text);
      ++i;
    } else if (IsPunct(t, i + 1, '(')) {
      if (!Functions().count(tok.text)) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown function \"", tok.text, "\" in: ", expr));
      }
      refs.functions.insert(tok.text);
      ++i;
    } else {
      PromQLSelector selector;
      selector.metric = tok.text;
      ++i;
      if (IsPunct(t, i, '{')) {
        absl::StatusOr<size_t> next = ReadMatchers(t, i, &selector, expr);
        if (!next.ok()) return next.status();
        i = *next;
      }
      refs.selectors.push_back(std::move(selector));
    }
  }
  if (parens != 0) {
    return absl::InvalidArgumentError(absl::StrCat("unbalanced ( in: ", expr));
  }
  return refs;
}

absl::StatusOr<LabelValuesQuery> ParseLabelValuesQuery(
    absl::string_view query) {
  absl::string_view q = absl::StripAsciiWhitespace(query);
  if (!absl::ConsumePrefix(&q, "label_values(") ||
      !absl::ConsumeSuffix(&q, ")")) {
    return absl::InvalidArgumentError(
        absl::StrCat("not label_values(SELECTOR, LABEL): ", query));
  }
  // The label is after the last comma (matchers may contain commas too).
  const size_t comma = q.rfind(',');
  if (comma == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("label_values without a selector: ", query));
  }
  LabelValuesQuery out;
  out.selector = std::string(absl::StripAsciiWhitespace(q.substr(0, comma)));
  out.label = std::string(absl::StripAsciiWhitespace(q.substr(comma + 1)));
  if (out.selector.empty() || out.label.empty() ||
      !IsIdentStart(out.label[0]) ||
      !std::all_of(out.label.begin(), out.label.end(), IsIdentChar)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad label_values query: ", query));
  }
  return out;
}

std::string HistogramFamilyOf(absl::string_view metric) {
  for (absl::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (absl::EndsWith(metric, suffix)) {
      return std::string(metric.substr(0, metric.size() - suffix.size()));
    }
  }
  return "";
}

}  // namespace ftune::testing
