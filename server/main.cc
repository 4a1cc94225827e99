// ftune-scheduler: the job server. Flags -> options, wiring, signal handling.
// See DESIGN.md for the parts it wires together.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "server/scheduler_server.h"

ABSL_FLAG(std::string, grpc_address, "127.0.0.1:50051",
          "host:port for the gRPC API. Port 0 picks a free port; the bound "
          "address is printed on stdout as 'grpc_address=HOST:PORT'.");
ABSL_FLAG(int, max_message_bytes, 16 << 20,
          "Largest gRPC message accepted or sent, in bytes.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "On SIGTERM/SIGINT, how long in-flight calls may finish before they "
          "are cancelled.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "ftune-scheduler: LoRA/QLoRA fine-tuning job server.\n"
      "Usage: ftune-scheduler [--grpc_address=HOST:PORT] ...\n"
      "Run with --help for every flag.");
  absl::ParseCommandLine(argc, argv);

  // Block the termination signals in every thread; main waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ftune::server::SchedulerOptions options;
  options.grpc_address = absl::GetFlag(FLAGS_grpc_address);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);

  ftune::server::SchedulerServer server(options);
  if (absl::Status st = server.Start(); !st.ok()) {
    std::cerr << "ftune-scheduler: " << st.message() << std::endl;
    return 1;
  }
  // Machine-readable line for scripts and tests (port 0).
  std::cout << "grpc_address=" << server.address() << std::endl;

  int sig = 0;
  sigwait(&signals, &sig);
  FTUNE_LOG(INFO) << "signal " << sig << ": shutting down";
  server.Shutdown();
  server.Wait();
  FTUNE_LOG(INFO) << "stopped";
  return 0;
}
