// Shared by the webhook tests: runs the independent python verifier
// (verify_webhook.py: stdlib hmac/hashlib/base64) over received requests.
#ifndef FTUNE_TESTS_SERVER_WEBHOOK_WEBHOOK_TEST_UTIL_H_
#define FTUNE_TESTS_SERVER_WEBHOOK_WEBHOOK_TEST_UTIL_H_

#include <sys/wait.h>

#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/server/webhook/receiver.h"
#include "tests/testing/subprocess.h"

namespace ftune::testing {

// The verifier's exit code (0: every signature verifies), and its output.
inline int VerifyWithPython(const std::string& secret,
                            const std::vector<ReceivedWebhook>& requests,
                            const std::string& scratch_path,
                            std::string* output) {
  nlohmann::json list = nlohmann::json::array();
  for (const ReceivedWebhook& r : requests) {
    auto header = [&r](const std::string& name) {
      auto it = r.headers.find(name);
      return it == r.headers.end() ? std::string() : it->second;
    };
    list.push_back({{"id", header("webhook-id")},
                    {"timestamp", header("webhook-timestamp")},
                    {"signature", header("webhook-signature")},
                    {"body", r.body}});
  }
  std::ofstream(scratch_path) << list.dump();
  Subprocess proc;
  if (!proc.Start({"/usr/bin/python3",
                   std::string(FTUNE_SOURCE_DIR) +
                       "/tests/server/webhook/verify_webhook.py",
                   secret, scratch_path})
           .ok()) {
    return -1;
  }
  (void)proc.ReadAll(absl::Seconds(30));
  for (const std::string& line : proc.lines()) *output += line + "\n";
  absl::StatusOr<int> status = proc.Wait(absl::Seconds(30));
  return status.ok() && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
}

}  // namespace ftune::testing

#endif  // FTUNE_TESTS_SERVER_WEBHOOK_WEBHOOK_TEST_UTIL_H_
