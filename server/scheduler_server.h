// SchedulerServer: the ftune-scheduler process's gRPC server and everything it
// owns, behind a narrow start/stop API so tests can run it in-process on
// port 0 and main.cc stays wiring only.
//
// Every server enables the standard grpc.health.v1 service and server
// reflection (DESIGN.md).
//
// Thread-safety: Start()/Shutdown() are called from one thread; port() and
// address() are safe after Start() returns.
#ifndef FTUNE_SERVER_SCHEDULER_SERVER_H_
#define FTUNE_SERVER_SCHEDULER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace ftune::server {

struct SchedulerOptions {
  // host:port for gRPC. Port 0 picks a free port (see SchedulerServer::port()).
  std::string grpc_address = "127.0.0.1:50051";
  // Largest request/response message in bytes (uploads are streamed in
  // chunks well below this).
  int max_message_bytes = 16 << 20;
  // How long Shutdown() lets in-flight calls finish before cancelling them.
  absl::Duration shutdown_grace = absl::Seconds(10);
};

class SchedulerServer {
 public:
  explicit SchedulerServer(SchedulerOptions options);
  ~SchedulerServer();  // Shuts down if still running.
  SchedulerServer(const SchedulerServer&) = delete;
  SchedulerServer& operator=(const SchedulerServer&) = delete;

  // Binds and starts serving. UNAVAILABLE if the address cannot be bound,
  // INVALID_ARGUMENT if it is malformed.
  absl::Status Start();
  // The bound port (the real one when the options asked for port 0).
  int port() const { return port_; }
  // host:port actually bound.
  std::string address() const;
  // Stops accepting calls, lets in-flight calls finish within the grace
  // period, then cancels the rest. Idempotent.
  void Shutdown();
  // Blocks until the server has shut down.
  void Wait();

 private:
  SchedulerOptions options_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace ftune::server

#endif  // FTUNE_SERVER_SCHEDULER_SERVER_H_
