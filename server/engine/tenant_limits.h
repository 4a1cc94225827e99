// TenantLimits: what one tenant may take from the scheduler so that a noisy
// tenant cannot slow the others (docs/operations.md#tenant-limits):
//  - concurrent streams (WatchJob, StreamJobLog): a tenant holds at most
//    max_streams_per_tenant at once; one more is refused;
//  - request rate: a token bucket per tenant of `request_burst` tokens,
//    refilled at `requests_per_second`; every authenticated tenant call
//    (gRPC or HTTP) takes one token; a call finding the bucket empty is
//    refused and told when a token will be there.
// Refusals are RESOURCE_EXHAUSTED with ftune.v1.ErrorInfo: quota
// "max_streams_per_tenant" or "tenant_requests_per_second", its limit, and
// for the rate retry_delay (when to try again). A limit of 0 is off.
//
// Thread-safe. Time comes from the injected Clock (tests use FakeClock).
#ifndef FTUNE_SERVER_ENGINE_TENANT_LIMITS_H_
#define FTUNE_SERVER_ENGINE_TENANT_LIMITS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace ftune::server::engine {

// ErrorInfo.quota values of the refusals.
inline constexpr char kStreamsQuota[] = "max_streams_per_tenant";
inline constexpr char kRequestRateQuota[] = "tenant_requests_per_second";

struct TenantLimitOptions {
  // Concurrent WatchJob + StreamJobLog streams per tenant; 0 = no limit.
  int64_t max_streams_per_tenant = 1000;
  // Sustained calls per second per tenant; 0 = no limit.
  double requests_per_second = 10000;
  // Calls a tenant may make at once above the sustained rate (the bucket's
  // size); at least 1 when the rate is limited.
  int64_t request_burst = 20000;
  // Called (without locks held) for each refusal: the tenant and the
  // quota name. May be empty.
  std::function<void(const std::string& tenant, absl::string_view quota)>
      on_refused;
};

// INVALID_ARGUMENT naming the option when one is negative, or the burst is
// below 1 while the rate is limited.
absl::Status ValidateTenantLimitOptions(const TenantLimitOptions& options);

class TenantLimits {
 public:
  // A held stream; releases it when destroyed (or reset).
  using StreamSlot = std::shared_ptr<void>;

  // `clock` is not owned and must outlive this object.
  TenantLimits(TenantLimitOptions options, Clock* clock);

  // Takes one token of `tenant`'s bucket: OK, or RESOURCE_EXHAUSTED with
  // ErrorInfo quota kRequestRateQuota, limit = requests_per_second (rounded
  // up) and retry_delay = when the next token is due.
  absl::Status AdmitRequest(const std::string& tenant);

  // Holds one of `tenant`'s streams until the slot is released:
  // RESOURCE_EXHAUSTED with ErrorInfo quota kStreamsQuota when it holds
  // max_streams_per_tenant already.
  absl::StatusOr<StreamSlot> AcquireStream(const std::string& tenant);

  // Streams `tenant` holds now.
  int64_t streams(const std::string& tenant) const;

  const TenantLimitOptions& options() const { return options_; }

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time refilled;
  };
  void ReleaseStream(const std::string& tenant);
  void Refused(const std::string& tenant, absl::string_view quota) const;

  const TenantLimitOptions options_;
  Clock* const clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, int64_t> streams_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ftune::server::engine

#endif  // FTUNE_SERVER_ENGINE_TENANT_LIMITS_H_
