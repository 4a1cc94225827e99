#include "server/webhook/delivery_loop.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/metrics/registry.h"
#include "common/status.h"
#include "server/webhook/signature.h"

namespace ftune::server::webhook {

absl::Status ValidateDeliveryOptions(const DeliveryOptions& o) {
  auto positive = [](absl::Duration d, absl::string_view flag) {
    return d > absl::ZeroDuration() ? absl::OkStatus()
                                    : absl::InvalidArgumentError(absl::StrCat(
                                          flag, " must be positive"));
  };
  FTUNE_RETURN_IF_ERROR(positive(o.poll_interval, "webhook_poll_interval"));
  FTUNE_RETURN_IF_ERROR(positive(o.request_timeout, "webhook_request_timeout"));
  FTUNE_RETURN_IF_ERROR(
      positive(o.initial_backoff, "webhook_retry_initial_backoff"));
  FTUNE_RETURN_IF_ERROR(positive(o.max_backoff, "webhook_retry_max_backoff"));
  FTUNE_RETURN_IF_ERROR(positive(o.retry_period, "webhook_retry_period"));
  if (o.max_in_flight < 1) {
    return absl::InvalidArgumentError("webhook_max_in_flight must be >= 1");
  }
  if (o.max_in_flight_per_endpoint < 1) {
    return absl::InvalidArgumentError(
        "webhook_max_in_flight_per_endpoint must be >= 1");
  }
  return absl::OkStatus();
}

absl::Duration RetryBackoff(const DeliveryOptions& o, int64_t attempts,
                            double jitter) {
  absl::Duration d = o.initial_backoff;
  for (int64_t i = 1; i < attempts && d < o.max_backoff; ++i) d *= 2;
  d = std::min(d, o.max_backoff);
  return d * std::clamp(jitter, 0.5, 1.0);
}

absl::StatusOr<std::unique_ptr<DeliveryLoop>> DeliveryLoop::Create(
    store::WebhookStore* store, Sender* sender, Clock* clock,
    metrics::Registry* registry, DeliveryOptions options) {
  FTUNE_RETURN_IF_ERROR(ValidateDeliveryOptions(options));
  std::unique_ptr<DeliveryLoop> loop(
      new DeliveryLoop(store, sender, clock, std::move(options)));
  if (registry != nullptr) {
    FTUNE_ASSIGN_OR_RETURN(
        loop->deliveries_,
        registry->AddCounter(
            "ftune_webhook_deliveries_total",
            "Webhook deliveries that settled, by result: delivered (a 2xx "
            "answer) or failed (the retry period ran out).",
            {"result"}));
    FTUNE_ASSIGN_OR_RETURN(
        loop->attempts_,
        registry->AddCounter(
            "ftune_webhook_attempts_total",
            "Webhook POSTs, by result: success (2xx), http_error (another "
            "status), transport_error (no answer: refused, timeout, TLS), "
            "refused_target (the URL no longer passes the target check).",
            {"result"}));
  }
  return loop;
}

DeliveryLoop::DeliveryLoop(store::WebhookStore* store, Sender* sender,
                           Clock* clock, DeliveryOptions options)
    : store_(store),
      sender_(sender),
      clock_(clock),
      options_(std::move(options)),
      rng_(options_.jitter_seed != 0 ? options_.jitter_seed
                                     : std::random_device{}()) {}

DeliveryLoop::~DeliveryLoop() { Stop(); }

void DeliveryLoop::Start() {
  absl::MutexLock lock(&mu_);
  if (started_) return;
  started_ = true;
  poller_ = std::thread([this] { PollLoop(); });
  for (int i = 0; i < options_.max_in_flight; ++i) {
    senders_.emplace_back([this] { SenderLoop(); });
  }
}

void DeliveryLoop::Poke() {
  absl::MutexLock lock(&mu_);
  poked_ = true;
}

void DeliveryLoop::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    queue_.clear();  // Not sent: still pending in the store.
  }
  cancel_sends_.store(true);
  if (poller_.joinable()) poller_.join();
  for (std::thread& t : senders_) t.join();
  senders_.clear();
}

void DeliveryLoop::Count(metrics::CounterFamily* family,
                         const std::string& result) {
  if (family != nullptr) family->WithLabels({result})->Inc();
}

void DeliveryLoop::PollLoop() {
  while (true) {
    std::vector<std::string> exclude;
    int room = 0;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      poked_ = false;
      exclude = in_flight_;
      room = options_.max_in_flight * 4 - static_cast<int>(in_flight_.size());
    }
    if (room > 0) {
      absl::StatusOr<std::vector<store::DueWebhookDelivery>> due =
          store_->ListDueWebhookDeliveries(clock_->Now(), room, exclude);
      if (!due.ok()) {
        FTUNE_LOG(WARNING) << "webhooks: reading the outbox: " << due.status();
      } else {
        absl::MutexLock lock(&mu_);
        for (store::DueWebhookDelivery& d : *due) {
          int& n = per_endpoint_[d.delivery.endpoint_id];
          if (n >= options_.max_in_flight_per_endpoint) continue;
          ++n;
          in_flight_.push_back(d.delivery.id);
          queue_.push_back(std::move(d));
        }
      }
    }
    absl::MutexLock lock(&mu_);
    auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || poked_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&wake), options_.poll_interval);
  }
}

void DeliveryLoop::SenderLoop() {
  while (true) {
    store::DueWebhookDelivery due;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      due = std::move(queue_.front());
      queue_.pop_front();
    }
    Deliver(due);
    absl::MutexLock lock(&mu_);
    in_flight_.erase(
        std::find(in_flight_.begin(), in_flight_.end(), due.delivery.id));
    if (--per_endpoint_[due.delivery.endpoint_id] <= 0) {
      per_endpoint_.erase(due.delivery.endpoint_id);
    }
    poked_ = true;  // An endpoint slot is free: look again.
  }
}

void DeliveryLoop::Deliver(const store::DueWebhookDelivery& due) {
  const store::WebhookDelivery& d = due.delivery;
  store::WebhookAttemptResult result;
  result.time = clock_->Now();
  std::string attempt_result;
  absl::StatusOr<CheckedTarget> target =
      CheckWebhookTarget(due.url, options_.policy);
  if (!target.ok()) {
    result.error = absl::StrCat("target refused: ", target.status().message());
    attempt_result = "refused_target";
  } else {
    const int64_t timestamp = absl::ToUnixSeconds(result.time);
    absl::StatusOr<std::string> signature =
        SignWebhook(due.secret, d.event_id, timestamp, d.payload);
    // During a rotation's grace period both secrets sign: Standard
    // Webhooks verifiers accept any of the space-separated signatures.
    if (signature.ok() && !due.previous_secret.empty()) {
      absl::StatusOr<std::string> old =
          SignWebhook(due.previous_secret, d.event_id, timestamp, d.payload);
      if (old.ok()) {
        *signature = absl::StrCat(*signature, " ", *old);
      } else {
        signature = old.status();
      }
    }
    if (!signature.ok()) {
      result.error = absl::StrCat("signing: ", signature.status().message());
      attempt_result = "refused_target";
    } else {
      SendRequest req;
      req.url = due.url;
      req.curl_resolve = target->curl_resolve;
      req.body = d.payload;
      req.timeout = options_.request_timeout;
      req.max_response_bytes = options_.max_response_bytes;
      req.cancel = &cancel_sends_;
      req.headers = {{"content-type", "application/json"},
                     {"webhook-id", d.event_id},
                     {"webhook-timestamp", absl::StrCat(timestamp)},
                     {"webhook-signature", *signature}};
      SendResult sent = sender_->Send(req);
      // Stopping: not an attempt. The delivery stays pending as it was and
      // is sent again after the restart (at least once).
      if (sent.cancelled) return;
      result.status_code = sent.status_code;
      result.error = std::move(sent.error);
      result.response_prefix = std::move(sent.response_prefix);
      if (sent.status_code >= 200 && sent.status_code < 300) {
        attempt_result = "success";
      } else if (sent.status_code != 0) {
        attempt_result = "http_error";
      } else {
        attempt_result = "transport_error";
      }
    }
  }
  Count(attempts_, attempt_result);
  if (attempt_result == "success") {
    result.state = store::WebhookDeliveryState::kDelivered;
  } else {
    double jitter;
    {
      absl::MutexLock lock(&mu_);
      jitter = std::uniform_real_distribution<double>(0.5, 1.0)(rng_);
    }
    const absl::Time next =
        result.time + RetryBackoff(options_, d.attempts + 1, jitter);
    if (next > d.create_time + options_.retry_period) {
      result.state = store::WebhookDeliveryState::kFailed;
    } else {
      result.state = store::WebhookDeliveryState::kPending;
      result.next_attempt_time = next;
    }
  }
  absl::StatusOr<store::WebhookDelivery> recorded =
      store_->RecordWebhookAttempt(d.id, result);
  if (!recorded.ok()) {
    // Deleted meanwhile (NOT_FOUND) is expected; anything else means the
    // attempt will be made again (at least once).
    if (!absl::IsNotFound(recorded.status())) {
      FTUNE_LOG(WARNING) << "webhooks: recording delivery " << d.id << ": "
                         << recorded.status();
    }
    return;
  }
  if (result.state == store::WebhookDeliveryState::kDelivered) {
    Count(deliveries_, "delivered");
  } else if (result.state == store::WebhookDeliveryState::kFailed) {
    Count(deliveries_, "failed");
    FTUNE_LOG(WARNING) << "webhooks: delivery " << d.id << " of "
                       << d.event_type << " to endpoint " << d.endpoint_id
                       << " failed after " << recorded->attempts
                       << " attempts: "
                       << (result.error.empty()
                               ? absl::StrCat("HTTP ", result.status_code)
                               : result.error);
  }
}

}  // namespace ftune::server::webhook
