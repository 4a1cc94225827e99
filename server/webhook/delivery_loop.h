// DeliveryLoop: sends the webhook outbox (store/webhook_store.h).
//
// One thread polls the store for due deliveries and hands them to a pool of
// sender threads, at most max_in_flight at once and at most
// max_in_flight_per_endpoint per endpoint. Each attempt re-checks the
// target (target.h), signs the stored body (signature.h: the same
// webhook-id, the event id, on every attempt), POSTs it, and records the
// outcome: 2xx = delivered; anything else is retried after an exponential
// backoff with jitter (attempt n waits initial_backoff * 2^(n-1), capped at
// max_backoff, times a random factor in [0.5, 1)), until retry_period after
// the event, when the delivery is marked failed. Deliveries are at least
// once: a crash between a send and its record resends it after restart, and
// so does a stop: Stop() abandons the POSTs in flight rather than wait up to
// request_timeout for slow receivers, leaving them pending.
//
// Times come from the injected clock (due times, the webhook-timestamp
// header, backoff); the poll waits at most poll_interval of real time.
//
// Thread-safe; the store, sender, clock and counters outlive the loop.
#ifndef FTUNE_SERVER_WEBHOOK_DELIVERY_LOOP_H_
#define FTUNE_SERVER_WEBHOOK_DELIVERY_LOOP_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/metrics/metric.h"
#include "server/store/webhook_store.h"
#include "server/webhook/sender.h"
#include "server/webhook/target.h"

namespace ftune::metrics {
class Registry;
}  // namespace ftune::metrics

namespace ftune::server::webhook {

struct DeliveryOptions {
  TargetPolicy policy;
  absl::Duration poll_interval = absl::Seconds(1);
  absl::Duration request_timeout = absl::Seconds(10);
  absl::Duration initial_backoff = absl::Seconds(5);
  absl::Duration max_backoff = absl::Hours(1);
  absl::Duration retry_period = absl::Hours(24);
  int max_in_flight = 8;
  int max_in_flight_per_endpoint = 2;
  size_t max_response_bytes = 1024;
  uint64_t jitter_seed = 0;  // 0 = from the OS.
};

// INVALID_ARGUMENT naming the flag for a non-positive limit or duration.
absl::Status ValidateDeliveryOptions(const DeliveryOptions& options);

// The wait before attempt `attempts + 1` after `attempts` failed ones:
// initial * 2^(attempts-1), capped at max, times `jitter` in [0.5, 1).
absl::Duration RetryBackoff(const DeliveryOptions& options, int64_t attempts,
                            double jitter);

class DeliveryLoop {
 public:
  // `registry` may be null (no metrics); else the loop registers
  // ftune_webhook_deliveries_total{result} and
  // ftune_webhook_attempts_total{result}.
  static absl::StatusOr<std::unique_ptr<DeliveryLoop>> Create(
      store::WebhookStore* store, Sender* sender, Clock* clock,
      metrics::Registry* registry, DeliveryOptions options);
  ~DeliveryLoop();  // Stop()s.

  void Start();
  // Wakes the poller now (new outbox rows were committed).
  void Poke();
  // Abandons the attempts in flight (within about a second; they stay
  // pending, unrecorded, and are sent again after a restart), then stops.
  // Idempotent.
  void Stop();

 private:
  DeliveryLoop(store::WebhookStore* store, Sender* sender, Clock* clock,
               DeliveryOptions options);
  void PollLoop();
  void SenderLoop();
  void Deliver(const store::DueWebhookDelivery& due);
  void Count(metrics::CounterFamily* family, const std::string& result);

  store::WebhookStore* const store_;
  Sender* const sender_;
  Clock* const clock_;
  const DeliveryOptions options_;
  metrics::CounterFamily* deliveries_ = nullptr;
  metrics::CounterFamily* attempts_ = nullptr;

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Set by Stop(): the POSTs in flight give up (SendRequest.cancel).
  std::atomic<bool> cancel_sends_{false};
  bool poked_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<store::DueWebhookDelivery> queue_ ABSL_GUARDED_BY(mu_);
  // Delivery ids queued or being sent, and how many per endpoint.
  std::vector<std::string> in_flight_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> per_endpoint_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::thread poller_;
  std::vector<std::thread> senders_;
};

}  // namespace ftune::server::webhook

#endif  // FTUNE_SERVER_WEBHOOK_DELIVERY_LOOP_H_
