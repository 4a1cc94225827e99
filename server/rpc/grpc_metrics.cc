#include "server/rpc/grpc_metrics.h"

#include <chrono>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace ftune::server::rpc {
namespace {

namespace gx = grpc::experimental;

// "OK", "INVALID_ARGUMENT": gRPC's codes are absl's (same numbers, same
// names).
std::string CodeName(grpc::StatusCode code) {
  std::string name =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "UNKNOWN" : name;
}

// One per call: times it from its creation (the call's start) to the status
// being sent.
class MetricsInterceptor final : public gx::Interceptor {
 public:
  MetricsInterceptor(GrpcServerMetrics* metrics,
                     GrpcServerMetrics::Method* method)
      : metrics_(metrics),
        method_(method),
        start_(std::chrono::steady_clock::now()) {}

  void Intercept(gx::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            gx::InterceptionHookPoints::PRE_SEND_STATUS)) {
      metrics_->Handled(*method_, methods->GetSendStatus().error_code());
      if (method_->seconds != nullptr) {
        method_->seconds->Observe(std::chrono::duration<double>(
                                      std::chrono::steady_clock::now() - start_)
                                      .count());
      }
    }
    methods->Proceed();
  }

 private:
  GrpcServerMetrics* const metrics_;
  GrpcServerMetrics::Method* const method_;
  const std::chrono::steady_clock::time_point start_;
};

class Factory final : public gx::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(GrpcServerMetrics* metrics) : metrics_(metrics) {}
  gx::Interceptor* CreateServerInterceptor(gx::ServerRpcInfo* info) override {
    GrpcServerMetrics::Method* method = metrics_->Lookup(
        info->method(), info->type() == gx::ServerRpcInfo::Type::UNARY);
    return new MetricsInterceptor(metrics_, method);
  }

 private:
  GrpcServerMetrics* const metrics_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcServerMetrics>> GrpcServerMetrics::Create(
    metrics::Registry* registry) {
  auto internal = [](const absl::Status& s) {
    return absl::InternalError(
        absl::StrCat("registering a metric: ", s.message()));
  };
  absl::StatusOr<metrics::CounterFamily*> handled = registry->AddCounter(
      "ftune_grpc_server_handled_total",
      "RPCs finished by the server, by service, method and status code.",
      {"service", "method", "code"});
  if (!handled.ok()) return internal(handled.status());
  absl::StatusOr<metrics::HistogramFamily*> seconds = registry->AddHistogram(
      "ftune_grpc_server_handling_seconds",
      "Time from a unary RPC's arrival to its status being sent, by service "
      "and method.",
      {"service", "method"},
      {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
       5, 10, 30});
  if (!seconds.ok()) return internal(seconds.status());
  return std::unique_ptr<GrpcServerMetrics>(
      new GrpcServerMetrics(*handled, *seconds));
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
GrpcServerMetrics::InterceptorFactory() {
  return std::make_unique<Factory>(this);
}

GrpcServerMetrics::Method* GrpcServerMetrics::Lookup(const char* full_method,
                                                     bool unary) {
  const absl::string_view name = full_method == nullptr ? "" : full_method;
  {
    // Every call looks its method up: shared lock, no allocation.
    absl::ReaderMutexLock lock(&mu_);
    auto it = methods_.find(name);
    if (it != methods_.end()) return it->second.get();
  }
  absl::MutexLock lock(&mu_);
  auto it = methods_.find(name);
  if (it != methods_.end()) return it->second.get();
  // "/package.Service/Method"; anything else, or a package we do not
  // serve, is "unknown".
  std::string service = "unknown";
  std::string method = "unknown";
  absl::string_view rest = name;
  const size_t slash = rest.size() > 1 ? rest.find('/', 1) : rest.npos;
  if (absl::StartsWith(rest, "/") && slash != rest.npos &&
      slash + 1 < rest.size() &&
      (absl::StartsWith(rest, "/ftune.v1.") ||
       absl::StartsWith(rest, "/grpc."))) {
    service = std::string(rest.substr(1, slash - 1));
    method = std::string(rest.substr(slash + 1));
  }
  const std::string key =
      service == "unknown" ? std::string("?") : std::string(name);
  it = methods_.find(key);
  if (it == methods_.end()) {
    auto entry = std::make_unique<Method>();
    entry->service = service;
    entry->method = method;
    if (unary && service != "unknown") {
      entry->seconds = seconds_->WithLabels({service, method});
    }
    it = methods_.emplace(key, std::move(entry)).first;
  }
  return it->second.get();
}

void GrpcServerMetrics::Handled(Method& method, grpc::StatusCode code) {
  const int index = static_cast<int>(code);
  if (index < 0 || index >= static_cast<int>(method.handled.size())) return;
  metrics::Counter* counter =
      method.handled[index].load(std::memory_order_acquire);
  if (counter == nullptr) {
    absl::MutexLock lock(&mu_);
    counter = method.handled[index].load(std::memory_order_acquire);
    if (counter == nullptr) {
      std::shared_ptr<metrics::Counter> child =
          handled_->WithLabels({method.service, method.method, CodeName(code)});
      counter = child.get();
      counters_.push_back(std::move(child));
      method.handled[index].store(counter, std::memory_order_release);
    }
  }
  counter->Inc();
}

}  // namespace ftune::server::rpc
