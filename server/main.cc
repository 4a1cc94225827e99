// ftune-scheduler: the job server. Flags -> options, wiring, signal handling.
// See DESIGN.md for the parts it wires together.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "server/rpc/auth.h"
#include "server/scheduler_server.h"

ABSL_FLAG(std::string, grpc_address, "127.0.0.1:50051",
          "host:port for the gRPC API. Port 0 picks a free port; the bound "
          "address is printed on stdout as 'grpc_address=HOST:PORT'.");
ABSL_FLAG(int, max_message_bytes, 16 << 20,
          "Largest gRPC message accepted or sent, in bytes.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "On SIGTERM/SIGINT, how long in-flight calls may finish before they "
          "are cancelled.");
ABSL_FLAG(int, rpc_threads, 64,
          "Threads serving JobService calls. Each call in progress holds one "
          "while it reads the database or waits for its write to be committed, "
          "so this bounds how many job writes one commit (fsync) can batch.");
ABSL_FLAG(std::string, db, "",
          "Required. Path of the SQLite database, on local disk (never on "
          "shared storage). Created and migrated if needed.");
ABSL_FLAG(std::string, storage_root, "",
          "Required. Root directory of shared storage (models/, files/, "
          "jobs/), the same path on the scheduler and every worker.");
ABSL_FLAG(std::string, config, "",
          "JSON config file registering base models; see "
          "docs/operations.md.");
ABSL_FLAG(std::string, admin_key_file, "",
          "File holding the admin credential (first non-empty line). "
          "Default: the environment variable FTUNE_ADMIN_KEY.");
ABSL_FLAG(std::string, worker_key_file, "",
          "File holding the worker credential. Default: the environment "
          "variable FTUNE_WORKER_KEY; none = no worker can connect.");
ABSL_FLAG(bool, allow_no_admin, false,
          "Start without an admin credential (AdminService then refuses "
          "every call). Without this flag a missing admin credential is a "
          "start-up error.");

ABSL_FLAG(absl::Duration, lease_duration, absl::Seconds(30),
          "A worker's lease (and its attempts') after each heartbeat. A worker "
          "silent this long is LOST and its jobs are re-queued.");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(5),
          "How often workers heartbeat; at most lease_duration / 3.");
ABSL_FLAG(absl::Duration, cancel_grace, absl::Seconds(30),
          "How long a cancelled trainer may take to exit after SIGTERM before "
          "the worker SIGKILLs it.");

namespace {

// A credential from --FLAG_file, else from the environment; "" if neither.
absl::StatusOr<std::string> LoadCredential(const std::string& file,
                                           const char* env_name) {
  if (!file.empty()) return ftune::server::rpc::ReadCredentialFile(file);
  const char* env = std::getenv(env_name);
  return std::string(env == nullptr ? "" : env);
}

}  // namespace

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
  options.rpc_threads = absl::GetFlag(FLAGS_rpc_threads);
  options.db_path = absl::GetFlag(FLAGS_db);
  options.storage_root = absl::GetFlag(FLAGS_storage_root);
  options.config_path = absl::GetFlag(FLAGS_config);
  options.lease_duration = absl::GetFlag(FLAGS_lease_duration);
  options.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  options.cancel_grace = absl::GetFlag(FLAGS_cancel_grace);
  if (options.db_path.empty()) {
    std::cerr << "ftune-scheduler: --db=PATH is required (the SQLite "
                 "database, on local disk)"
              << std::endl;
    return 1;
  }
  if (options.storage_root.empty()) {
    std::cerr << "ftune-scheduler: --storage_root=DIR is required (shared "
                 "storage for models, uploaded files and job outputs)"
              << std::endl;
    return 1;
  }
  absl::StatusOr<std::string> admin =
      LoadCredential(absl::GetFlag(FLAGS_admin_key_file), "FTUNE_ADMIN_KEY");
  absl::StatusOr<std::string> worker =
      LoadCredential(absl::GetFlag(FLAGS_worker_key_file), "FTUNE_WORKER_KEY");
  for (const auto* cred : {&admin, &worker}) {
    if (!cred->ok()) {
      std::cerr << "ftune-scheduler: " << cred->status().message() << std::endl;
      return 1;
    }
  }
  if (admin->empty() && !absl::GetFlag(FLAGS_allow_no_admin)) {
    std::cerr << "ftune-scheduler: no admin credential: set --admin_key_file "
                 "or FTUNE_ADMIN_KEY (or pass --allow_no_admin to run "
                 "without AdminService access)"
              << std::endl;
    return 1;
  }
  if (!admin->empty()) options.auth.admin_secrets.push_back(*admin);
  if (!worker->empty()) options.auth.worker_secrets.push_back(*worker);

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
