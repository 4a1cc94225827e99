#include "common/clock.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"

namespace ftune {
namespace {

TEST(FakeClockTest, AdvanceMovesNow) {
  FakeClock clock(absl::FromUnixSeconds(100));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(100));
  clock.Advance(absl::Seconds(5));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(105));
}

TEST(FakeClockTest, SleepForWakesOnlyWhenAdvancedFarEnough) {
  FakeClock clock;
  std::atomic<bool> woke{false};
  std::thread sleeper([&] {
    clock.SleepFor(absl::Seconds(10));
    woke = true;
  });
  clock.AwaitSleepers(1);
  clock.Advance(absl::Seconds(9));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(woke.load());
  clock.Advance(absl::Seconds(1));
  sleeper.join();
  EXPECT_TRUE(woke.load());
}

TEST(RealClockTest, IsCloseToSystemTime) {
  EXPECT_LT(absl::AbsDuration(Clock::Real()->Now() - absl::Now()),
            absl::Seconds(1));
}

}  // namespace
}  // namespace ftune
