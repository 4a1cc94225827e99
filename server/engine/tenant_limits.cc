#include "server/engine/tenant_limits.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/engine/error_info.h"

namespace ftune::server::engine {

absl::Status ValidateTenantLimitOptions(const TenantLimitOptions& options) {
  if (options.max_streams_per_tenant < 0) {
    return absl::InvalidArgumentError(
        "max_streams_per_tenant must be >= 0 (0 = no limit)");
  }
  if (!(options.requests_per_second >= 0) ||
      std::isinf(options.requests_per_second)) {
    return absl::InvalidArgumentError(
        "tenant_requests_per_second must be a finite number >= 0 (0 = no "
        "limit)");
  }
  if (options.requests_per_second > 0 && options.request_burst < 1) {
    return absl::InvalidArgumentError(
        "tenant_request_burst must be >= 1 while tenant_requests_per_second "
        "is set");
  }
  return absl::OkStatus();
}

TenantLimits::TenantLimits(TenantLimitOptions options, Clock* clock)
    : options_(std::move(options)), clock_(clock) {}

void TenantLimits::Refused(const std::string& tenant,
                           absl::string_view quota) const {
  if (options_.on_refused) options_.on_refused(tenant, quota);
}

absl::Status TenantLimits::AdmitRequest(const std::string& tenant) {
  const double rate = options_.requests_per_second;
  if (rate <= 0) return absl::OkStatus();
  const double burst = static_cast<double>(options_.request_burst);
  absl::Duration wait;
  {
    const absl::Time now = clock_->Now();
    absl::MutexLock lock(&mu_);
    auto [it, fresh] = buckets_.try_emplace(tenant);
    Bucket& b = it->second;
    if (fresh) {
      b.tokens = burst;
      b.refilled = now;
    } else if (now > b.refilled) {
      b.tokens = std::min(
          burst, b.tokens + absl::ToDoubleSeconds(now - b.refilled) * rate);
      b.refilled = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return absl::OkStatus();
    }
    // Rounded up to the millisecond: a client that waits this long finds
    // the token there.
    wait =
        absl::Ceil(absl::Seconds((1 - b.tokens) / rate), absl::Milliseconds(1));
  }
  Refused(tenant, kRequestRateQuota);
  v1::ErrorInfo info;
  info.set_quota(kRequestRateQuota);
  info.set_limit(static_cast<int64_t>(std::ceil(rate)));
  info.mutable_retry_delay()->set_seconds(absl::ToInt64Seconds(wait));
  info.mutable_retry_delay()->set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(
          wait - absl::Seconds(absl::ToInt64Seconds(wait)))));
  return WithErrorInfo(
      absl::ResourceExhaustedError(absl::StrFormat(
          "tenant request rate limit exceeded (%g calls/s, bursts of %d, "
          "flag --tenant_requests_per_second): retry in %s",
          rate, options_.request_burst, absl::FormatDuration(wait))),
      info);
}

absl::StatusOr<TenantLimits::StreamSlot> TenantLimits::AcquireStream(
    const std::string& tenant) {
  const int64_t limit = options_.max_streams_per_tenant;
  {
    absl::MutexLock lock(&mu_);
    int64_t& held = streams_[tenant];
    if (limit == 0 || held < limit) {
      ++held;
      // The deleter releases the slot; the pointee is never used.
      return StreamSlot(this, [this, tenant](void*) { ReleaseStream(tenant); });
    }
  }
  Refused(tenant, kStreamsQuota);
  return QuotaExceeded(
      absl::StrCat("tenant already holds ", limit,
                   " streams (WatchJob + StreamJobLog), the most allowed "
                   "(flag --max_streams_per_tenant): close one first"),
      kStreamsQuota, limit);
}

void TenantLimits::ReleaseStream(const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(tenant);
  if (it == streams_.end()) return;
  if (--it->second <= 0) streams_.erase(it);
}

int64_t TenantLimits::streams(const std::string& tenant) const {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(tenant);
  return it == streams_.end() ? 0 : it->second;
}

}  // namespace ftune::server::engine
