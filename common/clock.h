// Injectable time source. Production code takes a `Clock*` instead of calling
// absl::Now() so tests can drive time by hand.
//
// Thread-safety: every implementation here is thread-safe.
#ifndef FTUNE_COMMON_CLOCK_H_
#define FTUNE_COMMON_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ftune {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time (for timestamps shown to users and stored).
  virtual absl::Time Now() = 0;
  // Blocks the caller for `d` of this clock's time.
  virtual void SleepFor(absl::Duration d) = 0;

  // The process-wide real clock. Never deleted; not a mutable singleton.
  static Clock* Real();
};

// A clock that moves only when told to. SleepFor() blocks until another
// thread advances the clock past the wake-up time.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000));
  absl::Time Now() override;
  void SleepFor(absl::Duration d) override;
  void Advance(absl::Duration d);
  void SetTime(absl::Time t);
  // Blocks until at least `n` threads are inside SleepFor(), so a test can
  // advance time knowing the sleepers have computed their wake-up times.
  void AwaitSleepers(int n);

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  int sleepers_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace ftune

#endif  // FTUNE_COMMON_CLOCK_H_
