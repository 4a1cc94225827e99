#include "common/fs_faults.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"

namespace ftune::fsfault {
namespace {

constexpr int kCrash = -1;

struct Rule {
  Op op;
  std::string substring;
  bool suffix = false;  // SUBSTRING ended in '$': the path must end with it
  int64_t nth = 1;
  int action = 0;  // an errno, or kCrash
  int64_t seen = 0;
};

struct Plan {
  absl::Mutex mu;
  std::vector<Rule> rules ABSL_GUARDED_BY(mu);
};

Plan& ThePlan() {
  static Plan* const plan = new Plan;
  return *plan;
}
// Check() stays one relaxed load while no plan is installed.
std::atomic<bool> g_any{false};

absl::Status Bad(absl::string_view rule, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("fault rule \"", rule.substr(0, 120), "\": ", why,
                   " (OP:SUBSTRING:N=ACTION; OP create|write|fsync|rename, "
                   "ACTION ENOSPC|EIO|EDQUOT|crash)"));
}

absl::Status ParseRule(absl::string_view text, Rule& rule) {
  std::vector<absl::string_view> lhs_rhs = absl::StrSplit(text, '=');
  if (lhs_rhs.size() != 2) return Bad(text, "expected one '='");
  std::vector<absl::string_view> parts = absl::StrSplit(lhs_rhs[0], ':');
  if (parts.size() != 3) return Bad(text, "expected OP:SUBSTRING:N before '='");
  if (parts[0] == "create") {
    rule.op = Op::kCreate;
  } else if (parts[0] == "write") {
    rule.op = Op::kWrite;
  } else if (parts[0] == "fsync") {
    rule.op = Op::kFsync;
  } else if (parts[0] == "rename") {
    rule.op = Op::kRename;
  } else {
    return Bad(text,
               absl::StrCat("unknown OP \"", parts[0].substr(0, 20), "\""));
  }
  rule.substring = std::string(parts[1]);
  if (!rule.substring.empty() && rule.substring.back() == '$') {
    rule.substring.pop_back();
    rule.suffix = true;
  }
  if (!absl::SimpleAtoi(parts[2], &rule.nth) || rule.nth < 1)
    return Bad(text, "N must be a whole number >= 1");
  const absl::string_view action = lhs_rhs[1];
  if (action == "ENOSPC") {
    rule.action = ENOSPC;
  } else if (action == "EIO") {
    rule.action = EIO;
  } else if (action == "EDQUOT") {
    rule.action = EDQUOT;
  } else if (action == "crash") {
    rule.action = kCrash;
  } else {
    return Bad(text,
               absl::StrCat("unknown ACTION \"", action.substr(0, 20), "\""));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Install(absl::string_view plan) {
  std::vector<Rule> rules;
  for (absl::string_view text : absl::StrSplit(plan, ',', absl::SkipEmpty())) {
    Rule rule;
    if (absl::Status s = ParseRule(text, rule); !s.ok()) return s;
    rules.push_back(std::move(rule));
  }
  Plan& p = ThePlan();
  absl::MutexLock lock(&p.mu);
  p.rules = std::move(rules);
  g_any.store(!p.rules.empty());
  return absl::OkStatus();
}

void Clear() {
  Plan& p = ThePlan();
  absl::MutexLock lock(&p.mu);
  p.rules.clear();
  g_any.store(false);
}

int Check(Op op, absl::string_view path) {
  if (!g_any.load(std::memory_order_relaxed)) return 0;
  Plan& p = ThePlan();
  absl::MutexLock lock(&p.mu);
  for (Rule& rule : p.rules) {
    if (rule.op != op) continue;
    if (rule.suffix ? !absl::EndsWith(path, rule.substring)
                    : !absl::StrContains(path, rule.substring))
      continue;
    if (++rule.seen != rule.nth) continue;
    if (rule.action == kCrash) {
      ::kill(::getpid(), SIGKILL);
      ::_exit(137);  // not reached
    }
    return rule.action;
  }
  return 0;
}

}  // namespace ftune::fsfault
