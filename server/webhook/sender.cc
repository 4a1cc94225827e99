#include "server/webhook/sender.h"

#include <curl/curl.h>

#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace ftune::server::webhook {
namespace {

struct BodySink {
  std::string* out;
  size_t limit;
};

// Keeps the first `limit` bytes and reads (and drops) the rest, so the
// receiver is not cut off mid-answer; the timeout bounds a endless body.
size_t WriteBody(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<BodySink*>(user);
  const size_t bytes = size * n;
  if (sink->out->size() < sink->limit) {
    sink->out->append(data, std::min(bytes, sink->limit - sink->out->size()));
  }
  return bytes;
}

// libcurl's progress callback, called about once a second even while
// nothing moves: non-zero abandons the transfer.
int Progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* cancel = static_cast<const std::atomic<bool>*>(user);
  return cancel->load(std::memory_order_relaxed) ? 1 : 0;
}

}  // namespace

CurlSender::CurlSender() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

SendResult CurlSender::Send(const SendRequest& request) {
  SendResult result;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(),
                                                           &curl_easy_cleanup);
  if (curl == nullptr) {
    result.error = "libcurl: cannot create a handle";
    return result;
  }
  curl_slist* headers = nullptr;
  for (const auto& [name, value] : request.headers) {
    headers =
        curl_slist_append(headers, absl::StrCat(name, ": ", value).c_str());
  }
  // No "Expect: 100-continue" round trip.
  headers = curl_slist_append(headers, "Expect:");
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> owned_headers(
      headers, &curl_slist_free_all);
  curl_slist* resolve = nullptr;
  if (!request.curl_resolve.empty()) {
    resolve = curl_slist_append(nullptr, request.curl_resolve.c_str());
  }
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> owned_resolve(
      resolve, &curl_slist_free_all);
  BodySink sink{&result.response_prefix, request.max_response_bytes};
  char error[CURL_ERROR_SIZE] = {};
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                   static_cast<curl_off_t>(request.body.size()));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  if (resolve != nullptr) curl_easy_setopt(h, CURLOPT_RESOLVE, resolve);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(
      h, CURLOPT_TIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(request.timeout)));
  curl_easy_setopt(h, CURLOPT_USERAGENT, "ftune-webhooks/1");
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &WriteBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  if (request.cancel != nullptr) {
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &Progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA,
                     const_cast<std::atomic<bool>*>(request.cancel));
  }
  const CURLcode rc = curl_easy_perform(h);
  if (rc == CURLE_ABORTED_BY_CALLBACK) {
    result.cancelled = true;
    result.error = "cancelled (the scheduler is stopping)";
    return result;
  }
  if (rc != CURLE_OK) {
    result.error = absl::StrCat(curl_easy_strerror(rc),
                                error[0] != '\0' ? ": " : "", error);
    return result;
  }
  long code = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  result.status_code = static_cast<int>(code);
  return result;
}

}  // namespace ftune::server::webhook
