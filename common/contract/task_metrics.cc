#include "common/contract/task_metrics.h"

#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "re2/re2.h"

namespace ftune::contract {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
         c == '\r';
}

}  // namespace

std::string NormalizeAnswer(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool pending_space = false;
  for (const char c : text) {
    if (IsSpace(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  }
  return out;
}

double TokenF1(absl::string_view completion, absl::string_view reference) {
  const std::string c = NormalizeAnswer(completion);
  const std::string r = NormalizeAnswer(reference);
  const std::vector<absl::string_view> ct =
      absl::StrSplit(c, ' ', absl::SkipEmpty());
  const std::vector<absl::string_view> rt =
      absl::StrSplit(r, ' ', absl::SkipEmpty());
  if (ct.empty() || rt.empty()) return ct.empty() && rt.empty() ? 1.0 : 0.0;
  std::map<absl::string_view, int64_t> left;
  for (absl::string_view t : rt) ++left[t];
  int64_t shared = 0;
  for (absl::string_view t : ct) {
    auto it = left.find(t);
    if (it != left.end() && it->second > 0) {
      --it->second;
      ++shared;
    }
  }
  if (shared == 0) return 0.0;
  const double precision = static_cast<double>(shared) / ct.size();
  const double recall = static_cast<double>(shared) / rt.size();
  return 2 * precision * recall / (precision + recall);
}

TaskScore ScoreCompletion(absl::string_view completion,
                          absl::string_view reference) {
  TaskScore s;
  s.exact_match = completion == reference;
  s.normalized_match =
      NormalizeAnswer(completion) == NormalizeAnswer(reference);
  s.token_f1 = TokenF1(completion, reference);
  return s;
}

absl::StatusOr<CompletionPattern> CompletionPattern::Compile(
    absl::string_view pattern) {
  if (pattern.empty()) return absl::InvalidArgumentError("must not be empty");
  if (pattern.size() > kEvalPatternMaxBytes)
    return absl::InvalidArgumentError(absl::StrCat(
        "at most ", kEvalPatternMaxBytes, " bytes, got ", pattern.size()));
  RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_shared<const RE2>(
      re2::StringPiece(pattern.data(), pattern.size()), options);
  if (!re->ok())
    return absl::InvalidArgumentError(
        absl::StrCat("not a valid RE2 regular expression: ", re->error()));
  CompletionPattern p;
  p.re_ = std::move(re);
  return p;
}

bool CompletionPattern::Matches(absl::string_view completion) const {
  return RE2::PartialMatch(
      re2::StringPiece(completion.data(), completion.size()), *re_);
}

std::string EvalPatternProblem(absl::string_view pattern) {
  absl::StatusOr<CompletionPattern> p = CompletionPattern::Compile(pattern);
  return p.ok() ? std::string() : std::string(p.status().message());
}

const char* Name(SelectBestBy by) {
  switch (by) {
    case SelectBestBy::kEvalLoss:
      return "eval_loss";
    case SelectBestBy::kExactMatch:
      return "exact_match";
    case SelectBestBy::kPatternMatch:
      return "pattern_match";
  }
  return "?";
}

std::optional<SelectBestBy> ParseSelectBestBy(absl::string_view name) {
  for (SelectBestBy by : {SelectBestBy::kEvalLoss, SelectBestBy::kExactMatch,
                          SelectBestBy::kPatternMatch}) {
    if (name == Name(by)) return by;
  }
  return std::nullopt;
}

}  // namespace ftune::contract
