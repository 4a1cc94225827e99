// Prometheus metrics of every RPC the scheduler serves, collected by a
// gRPC server interceptor:
//
//   ftune_grpc_server_handled_total{service,method,code}   every finished call
//   ftune_grpc_server_handling_seconds{service,method}     unary calls only
//
// `service` is the full service name ("ftune.v1.JobService"), `method` the
// method ("CreateJob"), `code` the status code name ("OK",
// "INVALID_ARGUMENT"). Streams are counted when they end but not timed:
// their length (a WatchJob open for hours) is not a latency. Calls to
// methods outside ftune.v1 and grpc.* (only unregistered names a client
// made up) share service="unknown", method="unknown", so clients cannot
// grow the label space.
//
// Thread-safe. The object must outlive the gRPC server built with its
// interceptor factory.
#ifndef FTUNE_SERVER_RPC_GRPC_METRICS_H_
#define FTUNE_SERVER_RPC_GRPC_METRICS_H_

#include <grpcpp/support/server_interceptor.h>

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics/registry.h"

namespace ftune::server::rpc {

class GrpcServerMetrics {
 public:
  // Registers the two families. INTERNAL if a name is taken (a wiring bug).
  static absl::StatusOr<std::unique_ptr<GrpcServerMetrics>> Create(
      metrics::Registry* registry);

  // For grpc::ServerBuilder::experimental().SetInterceptorCreators().
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
  InterceptorFactory();

  // The children of one method, resolved once per method name; a code's
  // counter is created at its first call (no series of zeros for the 16
  // codes a method never returns).
  struct Method {
    std::string service;
    std::string method;
    std::shared_ptr<metrics::Histogram> seconds;  // Unary methods only.
    std::array<std::atomic<metrics::Counter*>, 17> handled{};  // By code.
  };
  // The entry of `full_method` ("/ftune.v1.JobService/CreateJob").
  Method* Lookup(const char* full_method, bool unary);
  // Counts one finished call.
  void Handled(Method& method, grpc::StatusCode code);

 private:
  GrpcServerMetrics(metrics::CounterFamily* handled,
                    metrics::HistogramFamily* seconds)
      : handled_(handled), seconds_(seconds) {}

  metrics::CounterFamily* const handled_;
  metrics::HistogramFamily* const seconds_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Method>> methods_
      ABSL_GUARDED_BY(mu_);
  // Keep the code counters of every Method alive.
  std::vector<std::shared_ptr<metrics::Counter>> counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ftune::server::rpc

#endif  // FTUNE_SERVER_RPC_GRPC_METRICS_H_
