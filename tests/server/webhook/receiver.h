// A webhook receiver for tests: a real HTTP server (civetweb) on loopback
// that records every POST (headers, body) and answers with the status the
// test chose for that request: a number, or kHang (hold the request open
// until Release() or the receiver stops).
//
// Thread-safe.
#ifndef FTUNE_TESTS_SERVER_WEBHOOK_RECEIVER_H_
#define FTUNE_TESTS_SERVER_WEBHOOK_RECEIVER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics/civet_listener.h"

struct mg_connection;

namespace ftune::testing {

struct ReceivedWebhook {
  std::string path;
  std::map<std::string, std::string> headers;  // Lower-case names.
  std::string body;
};

class WebhookReceiver {
 public:
  static constexpr int kHang = -1;
  // `status_for(n)`: the answer to the n-th request (0-based).
  static absl::StatusOr<std::unique_ptr<WebhookReceiver>> Start(
      std::function<int(int)> status_for = [](int) { return 204; });
  ~WebhookReceiver();

  std::string url(const std::string& path = "/hook") const;
  // Waits (real time) until at least `n` requests arrived; false on timeout.
  bool AwaitCount(int n, absl::Duration timeout = absl::Seconds(20));
  std::vector<ReceivedWebhook> received();
  void Release();  // Lets hanging requests answer 200.

 private:
  WebhookReceiver() = default;
  static int Handle(::mg_connection* conn, void* self);

  std::function<int(int)> status_for_;
  std::unique_ptr<metrics::CivetListener> listener_;
  absl::Mutex mu_;
  std::vector<ReceivedWebhook> received_ ABSL_GUARDED_BY(mu_);
  bool released_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ftune::testing

#endif  // FTUNE_TESTS_SERVER_WEBHOOK_RECEIVER_H_
