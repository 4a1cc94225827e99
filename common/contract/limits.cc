#include "common/contract/limits.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace ftune::contract {
namespace {

// Whole numbers as integers (10000000, not 1e+07), others as %g.
std::string Number(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  return absl::StrCat(v);
}

}  // namespace

std::string RangeText(const Range& r) {
  if (r.hi >= kUnbounded)
    return absl::StrCat(r.lo_open ? "> " : ">= ", Number(r.lo));
  return absl::StrCat(r.lo_open ? "(" : "[", Number(r.lo), ", ", Number(r.hi),
                      r.hi_open ? ")" : "]");
}

std::optional<std::string> RangeViolation(const Range& range, double value) {
  if (range.Contains(value)) return std::nullopt;
  if (range.hi >= kUnbounded) {
    return absl::StrCat("must be ", RangeText(range), ", got ", Number(value));
  }
  return absl::StrCat("must be in ", RangeText(range), ", got ", Number(value));
}

int64_t DefaultMaxSeqLength(int64_t max_position_embeddings) {
  if (max_position_embeddings <= 0) return defaults::kMaxSeqLengthCap;
  return std::min(defaults::kMaxSeqLengthCap, max_position_embeddings);
}

int32_t DefaultCpuThreads(int32_t gpus) {
  return gpus == 0 ? defaults::kCpuThreadsCpuJob : gpus;
}

int32_t JobRanks(int32_t gpus, int32_t processes) {
  if (gpus > 0) return gpus;
  return std::max<int32_t>(1, processes);
}

int64_t DefaultEvalEverySteps(int64_t max_steps, int64_t steps_per_epoch) {
  if (max_steps > 0) {
    return std::max<int64_t>(1,
                             (max_steps + defaults::kEvalsPerMaxStepsJob - 1) /
                                 defaults::kEvalsPerMaxStepsJob);
  }
  return std::max<int64_t>(1, steps_per_epoch);
}

int64_t WarmupStepsForRatio(double ratio, int64_t total_steps) {
  if (ratio <= 0) return 0;
  return static_cast<int64_t>(
      std::ceil(ratio * static_cast<double>(total_steps) - 1e-9));
}

}  // namespace ftune::contract
