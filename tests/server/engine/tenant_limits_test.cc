// TenantLimits on plain values and a fake clock: the stream count and the
// token bucket per tenant, their refusals and their recovery.
#include "server/engine/tenant_limits.h"

#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/engine/error_info.h"
#include "tests/testing/status_matchers.h"

namespace ftune::server::engine {
namespace {

using ::testing::HasSubstr;

TEST(TenantLimitsTest, StreamsBeyondTheLimitAreRefusedUntilOneIsReleased) {
  FakeClock clock;
  std::vector<std::pair<std::string, std::string>> refused;
  TenantLimitOptions o;
  o.max_streams_per_tenant = 2;
  o.on_refused = [&](const std::string& tenant, absl::string_view quota) {
    refused.emplace_back(tenant, std::string(quota));
  };
  TenantLimits limits(o, &clock);
  ASSERT_OK_AND_ASSIGN(TenantLimits::StreamSlot a1, limits.AcquireStream("a"));
  ASSERT_OK_AND_ASSIGN(TenantLimits::StreamSlot a2, limits.AcquireStream("a"));
  EXPECT_EQ(limits.streams("a"), 2);

  absl::StatusOr<TenantLimits::StreamSlot> a3 = limits.AcquireStream("a");
  ASSERT_EQ(a3.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(a3.status().message(), HasSubstr("--max_streams_per_tenant"));
  std::optional<v1::ErrorInfo> info = GetErrorInfo(a3.status());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->quota(), kStreamsQuota);
  EXPECT_EQ(info->limit(), 2);
  EXPECT_EQ(
      refused,
      (std::vector<std::pair<std::string, std::string>>{{"a", kStreamsQuota}}));

  // Another tenant is not affected.
  ASSERT_OK_AND_ASSIGN(TenantLimits::StreamSlot b1, limits.AcquireStream("b"));
  EXPECT_EQ(limits.streams("b"), 1);

  a1.reset();
  EXPECT_EQ(limits.streams("a"), 1);
  ASSERT_OK_AND_ASSIGN(TenantLimits::StreamSlot a4, limits.AcquireStream("a"));
  a2.reset();
  a4.reset();
  b1.reset();
  EXPECT_EQ(limits.streams("a"), 0);
  EXPECT_EQ(limits.streams("b"), 0);
}

TEST(TenantLimitsTest, RequestRateIsATokenBucketPerTenantWithRetryDelay) {
  FakeClock clock;
  int refusals = 0;
  TenantLimitOptions o;
  o.requests_per_second = 4;  // A token every 250 ms.
  o.request_burst = 3;
  o.on_refused = [&](const std::string&, absl::string_view quota) {
    EXPECT_EQ(quota, kRequestRateQuota);
    ++refusals;
  };
  TenantLimits limits(o, &clock);
  for (int i = 0; i < 3; ++i) EXPECT_OK(limits.AdmitRequest("a"));
  absl::Status over = limits.AdmitRequest("a");
  ASSERT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.message(), HasSubstr("--tenant_requests_per_second"));
  std::optional<v1::ErrorInfo> info = GetErrorInfo(over);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->quota(), kRequestRateQuota);
  EXPECT_EQ(info->limit(), 4);
  EXPECT_EQ(info->retry_delay().seconds(), 0);
  EXPECT_EQ(info->retry_delay().nanos(), 250'000'000);
  EXPECT_EQ(refusals, 1);
  // Another tenant has its own bucket.
  EXPECT_OK(limits.AdmitRequest("b"));

  // Part of the delay is not enough; the whole delay is.
  clock.Advance(absl::Milliseconds(125));
  over = limits.AdmitRequest("a");
  ASSERT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(GetErrorInfo(over)->retry_delay().nanos(), 125'000'000);
  clock.Advance(absl::Milliseconds(125));
  EXPECT_OK(limits.AdmitRequest("a"));
  EXPECT_EQ(limits.AdmitRequest("a").code(),
            absl::StatusCode::kResourceExhausted);
  // A long pause refills the bucket up to the burst, not beyond.
  clock.Advance(absl::Hours(1));
  for (int i = 0; i < 3; ++i) EXPECT_OK(limits.AdmitRequest("a"));
  EXPECT_EQ(limits.AdmitRequest("a").code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(TenantLimitsTest, ZeroTurnsALimitOff) {
  FakeClock clock;
  TenantLimitOptions o;
  o.max_streams_per_tenant = 0;
  o.requests_per_second = 0;
  o.request_burst = 0;
  EXPECT_OK(ValidateTenantLimitOptions(o));
  TenantLimits limits(o, &clock);
  std::vector<TenantLimits::StreamSlot> slots;
  for (int i = 0; i < 5000; ++i) {
    ASSERT_OK_AND_ASSIGN(TenantLimits::StreamSlot s, limits.AcquireStream("a"));
    slots.push_back(std::move(s));
    ASSERT_OK(limits.AdmitRequest("a"));
  }
}

TEST(TenantLimitsTest, BadOptionsAreRefusedNamingTheFlag) {
  TenantLimitOptions o;
  o.max_streams_per_tenant = -1;
  EXPECT_THAT(ValidateTenantLimitOptions(o).message(),
              HasSubstr("max_streams_per_tenant"));
  o = TenantLimitOptions();
  o.requests_per_second = -2;
  EXPECT_THAT(ValidateTenantLimitOptions(o).message(),
              HasSubstr("tenant_requests_per_second"));
  o = TenantLimitOptions();
  o.requests_per_second = 5;
  o.request_burst = 0;
  EXPECT_THAT(ValidateTenantLimitOptions(o).message(),
              HasSubstr("tenant_request_burst"));
  EXPECT_OK(ValidateTenantLimitOptions(TenantLimitOptions()));
}

}  // namespace
}  // namespace ftune::server::engine
