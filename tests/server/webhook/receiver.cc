#include "tests/server/webhook/receiver.h"

#include <civetweb.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace ftune::testing {

absl::StatusOr<std::unique_ptr<WebhookReceiver>> WebhookReceiver::Start(
    std::function<int(int)> status_for) {
  std::unique_ptr<WebhookReceiver> r(new WebhookReceiver());
  r->status_for_ = std::move(status_for);
  metrics::CivetListenerOptions o;
  o.listen_address = "127.0.0.1:0";
  o.server_name = "webhook receiver";
  o.num_threads = 8;
  o.request_timeout_ms = 60000;
  auto listener = metrics::CivetListener::Start(o, r.get());
  if (!listener.ok()) return listener.status();
  r->listener_ = *std::move(listener);
  mg_set_request_handler(r->listener_->context(), "/", &Handle, r.get());
  if (absl::Status s = r->listener_->LearnPort(); !s.ok()) return s;
  return r;
}

WebhookReceiver::~WebhookReceiver() {
  Release();
  listener_.reset();
}

std::string WebhookReceiver::url(const std::string& path) const {
  return absl::StrCat("http://127.0.0.1:", listener_->port(), path);
}

bool WebhookReceiver::AwaitCount(int n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return static_cast<int>(received_.size()) >= n;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

std::vector<ReceivedWebhook> WebhookReceiver::received() {
  absl::MutexLock lock(&mu_);
  return received_;
}

void WebhookReceiver::Release() {
  absl::MutexLock lock(&mu_);
  released_ = true;
}

int WebhookReceiver::Handle(::mg_connection* conn, void* self_ptr) {
  auto* self = static_cast<WebhookReceiver*>(self_ptr);
  const mg_request_info* info = mg_get_request_info(conn);
  ReceivedWebhook got;
  got.path = info->local_uri != nullptr ? info->local_uri : "";
  for (int i = 0; i < info->num_headers; ++i) {
    got.headers[absl::AsciiStrToLower(info->http_headers[i].name)] =
        info->http_headers[i].value;
  }
  char buf[4096];
  int n;
  while ((n = mg_read(conn, buf, sizeof(buf))) > 0) got.body.append(buf, n);
  int index;
  {
    absl::MutexLock lock(&self->mu_);
    index = static_cast<int>(self->received_.size());
    self->received_.push_back(std::move(got));
  }
  int status = self->status_for_(index);
  if (status == kHang) {
    absl::MutexLock lock(&self->mu_);
    self->mu_.Await(absl::Condition(&self->released_));
    status = 200;
  }
  const std::string body = absl::StrCat("answer ", index, " status ", status);
  mg_printf(conn,
            "HTTP/1.1 %d X\r\nContent-Type: text/plain\r\n"
            "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
            status, body.size(), body.c_str());
  return status;
}

}  // namespace ftune::testing
