// ftune-scheduler: the job server. Flags -> options, wiring, signal handling.
// See DESIGN.md for the parts it wires together.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "nlohmann/json.hpp"
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
ABSL_FLAG(int64_t, db_max_bytes, 0,
          "Largest size of the database file in bytes; 0 = as large as its "
          "disk allows. A write past it (or past a full disk) answers "
          "UNAVAILABLE and writes nothing; reads go on.");
ABSL_FLAG(std::string, storage_root, "",
          "Required. Root directory of shared storage (models/, files/, "
          "jobs/), the same path on the scheduler and every worker.");
ABSL_FLAG(std::string, config, "",
          "JSON config file: base models (\"models\") and flag values "
          "(\"server\": {\"flag_name\": value}); a flag given on the command "
          "line wins. See docs/operations.md.");
ABSL_FLAG(std::string, admin_key_file, "",
          "File holding the admin credential: every non-empty line not "
          "starting with '#' is accepted (old and new during a rotation). "
          "Default: the environment variable FTUNE_ADMIN_KEY.");
ABSL_FLAG(std::string, worker_key_file, "",
          "File holding the worker credential, one per line as for "
          "--admin_key_file. Default: the environment variable "
          "FTUNE_WORKER_KEY; none = no worker can connect.");
ABSL_FLAG(bool, allow_no_admin, false,
          "Start without an admin credential (AdminService then refuses "
          "every call). Without this flag a missing admin credential is a "
          "start-up error.");

ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9090",
          "host:port (IPv4) for the HTTP endpoint serving /metrics "
          "(Prometheus), /healthz and /readyz; port 0 picks a free port, "
          "printed as 'metrics_address=HOST:PORT'; empty = none.");
ABSL_FLAG(std::string, http_address, "",
          "host:port (IPv4) for the OpenAI-compatible fine-tuning HTTP API "
          "(/v1/files, /v1/fine_tuning/jobs; docs/openai-compat.md); port 0 "
          "picks a free port, printed as 'http_address=HOST:PORT'; empty "
          "(default) = off. HTTPS with the --tls_* files (client "
          "certificates required with --tls_client_ca_file), else plain "
          "HTTP.");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain of the gRPC server and the HTTP API (with "
          "--tls_key_file); none = plaintext.");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file.");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA certificates: clients (tenants, admins, workers) must "
          "present a certificate signed by one of them (mutual TLS).");
ABSL_FLAG(absl::Duration, lease_duration, absl::Seconds(30),
          "A worker's lease (and its attempts') after each heartbeat. A worker "
          "silent this long is LOST and its jobs are re-queued.");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(5),
          "How often workers heartbeat; at most lease_duration / 3.");
ABSL_FLAG(absl::Duration, cancel_grace, absl::Seconds(30),
          "How long a cancelled trainer may take to exit after SIGTERM before "
          "the worker SIGKILLs it.");
ABSL_FLAG(int64_t, max_streams_per_tenant, 1000,
          "Most WatchJob + StreamJobLog streams one tenant may hold at once; "
          "one more is refused with RESOURCE_EXHAUSTED (ErrorInfo.quota "
          "max_streams_per_tenant). 0 = no limit.");
ABSL_FLAG(double, tenant_requests_per_second, 10000,
          "Sustained calls per second one tenant may make (a token bucket per "
          "tenant, every authenticated call takes a token); beyond it calls "
          "are refused with RESOURCE_EXHAUSTED (ErrorInfo.quota "
          "tenant_requests_per_second, retry_delay). 0 = no limit.");
ABSL_FLAG(int64_t, tenant_request_burst, 20000,
          "Calls one tenant may make at once above "
          "--tenant_requests_per_second (the bucket's size).");
// Webhooks (docs/webhooks.md).
ABSL_FLAG(bool, webhook_allow_http, false,
          "Allow webhook URLs with http:// (default: https only). For tests "
          "and trusted networks.");
ABSL_FLAG(bool, webhook_allow_private_targets, false,
          "Allow webhook URLs whose host resolves to loopback, link-local, "
          "private or reserved addresses (default: refused at registration "
          "and at delivery).");
ABSL_FLAG(absl::Duration, webhook_request_timeout, absl::Seconds(10),
          "Longest one webhook POST may take (connect to last byte).");
ABSL_FLAG(absl::Duration, webhook_retry_initial_backoff, absl::Seconds(5),
          "Wait before the second attempt of a webhook; doubles with every "
          "failed attempt (times a random factor in [0.5, 1)).");
ABSL_FLAG(absl::Duration, webhook_retry_max_backoff, absl::Hours(1),
          "Longest wait between two attempts of a webhook.");
ABSL_FLAG(absl::Duration, webhook_retry_period, absl::Hours(24),
          "How long after its event a webhook is retried before it is "
          "marked failed.");
ABSL_FLAG(int32_t, webhook_max_in_flight, 8,
          "Webhook POSTs in flight at once (sender threads).");
ABSL_FLAG(int32_t, webhook_max_in_flight_per_endpoint, 2,
          "Webhook POSTs in flight at once to one endpoint.");
ABSL_FLAG(absl::Duration, webhook_poll_interval, absl::Seconds(1),
          "Longest pause between two looks at the webhook outbox (new "
          "events wake it at once).");

namespace {

// Names of the flags given in `argv` ("--x=1", "--x 1", "-x", "--nox").
std::set<std::string> FlagsOnCommandLine(int argc, char** argv) {
  std::set<std::string> names;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "-")) continue;
    absl::ConsumePrefix(&arg, "-");
    arg = arg.substr(0, arg.find('='));
    names.insert(std::string(arg));
    if (absl::ConsumePrefix(&arg, "no")) names.insert(std::string(arg));
  }
  return names;
}

// Applies the "server" object of the --config file: each key names a flag,
// set from the value unless the flag was given on the command line.
absl::Status ApplyConfigFlags(const std::string& path,
                              const std::set<std::string>& on_command_line) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("config ", path, ": cannot read"));
  }
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json root =
      nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", path, ": not a JSON object"));
  }
  if (!root.contains("server")) return absl::OkStatus();
  if (!root["server"].is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config ", path, ": \"server\" must be an object"));
  }
  for (const auto& [key, value] : root["server"].items()) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(key);
    if (flag == nullptr || key == "config" || key == "help" ||
        absl::StartsWith(key, "help")) {
      return absl::InvalidArgumentError(
          absl::StrCat("config ", path, ": server.", key,
                       ": not a flag of ftune-scheduler (see --help)"));
    }
    if (on_command_line.count(key) != 0) continue;  // The command line wins.
    std::string text_value;
    if (value.is_string()) {
      text_value = value.get<std::string>();
    } else if (value.is_number() || value.is_boolean()) {
      text_value = value.dump();
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("config ", path, ": server.", key,
                       ": must be a string, number or "
                       "boolean"));
    }
    std::string error;
    if (!flag->ParseFrom(text_value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("config ", path, ": server.", key, ": ", error));
    }
  }
  return absl::OkStatus();
}

// The credentials of --FLAG_file (every line, see ReadCredentialFile), else
// the one in the environment; none if neither.
absl::StatusOr<std::vector<std::string>> LoadCredentials(
    const std::string& file, const char* env_name) {
  if (!file.empty()) return ftune::server::rpc::ReadCredentialFile(file);
  const char* env = std::getenv(env_name);
  if (env == nullptr || *env == '\0') return std::vector<std::string>();
  return std::vector<std::string>{env};
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "ftune-scheduler: LoRA/QLoRA fine-tuning job server.\n"
      "Usage: ftune-scheduler [--grpc_address=HOST:PORT] ...\n"
      "Run with --help for every flag.");
  // --help lists this file's flags (absl matches files named after the
  // program by default, and this one is main.cc).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view path) {
    return absl::EndsWith(path, "server/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);
  if (const std::string config = absl::GetFlag(FLAGS_config); !config.empty()) {
    if (absl::Status st =
            ApplyConfigFlags(config, FlagsOnCommandLine(argc, argv));
        !st.ok()) {
      std::cerr << "ftune-scheduler: " << st.message() << std::endl;
      return 1;
    }
  }

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
  options.db_max_bytes = absl::GetFlag(FLAGS_db_max_bytes);
  options.storage_root = absl::GetFlag(FLAGS_storage_root);
  options.config_path = absl::GetFlag(FLAGS_config);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  options.http_address = absl::GetFlag(FLAGS_http_address);
  options.lease_duration = absl::GetFlag(FLAGS_lease_duration);
  options.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  options.cancel_grace = absl::GetFlag(FLAGS_cancel_grace);
  options.tenant_limits.max_streams_per_tenant =
      absl::GetFlag(FLAGS_max_streams_per_tenant);
  options.tenant_limits.requests_per_second =
      absl::GetFlag(FLAGS_tenant_requests_per_second);
  options.tenant_limits.request_burst =
      absl::GetFlag(FLAGS_tenant_request_burst);
  options.webhooks.policy.allow_http = absl::GetFlag(FLAGS_webhook_allow_http);
  options.webhooks.policy.allow_private =
      absl::GetFlag(FLAGS_webhook_allow_private_targets);
  options.webhooks.request_timeout =
      absl::GetFlag(FLAGS_webhook_request_timeout);
  options.webhooks.initial_backoff =
      absl::GetFlag(FLAGS_webhook_retry_initial_backoff);
  options.webhooks.max_backoff = absl::GetFlag(FLAGS_webhook_retry_max_backoff);
  options.webhooks.retry_period = absl::GetFlag(FLAGS_webhook_retry_period);
  options.webhooks.max_in_flight = absl::GetFlag(FLAGS_webhook_max_in_flight);
  options.webhooks.max_in_flight_per_endpoint =
      absl::GetFlag(FLAGS_webhook_max_in_flight_per_endpoint);
  options.webhooks.poll_interval = absl::GetFlag(FLAGS_webhook_poll_interval);
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
  for (auto [flag, out] :
       {std::pair<std::string, std::string*>{absl::GetFlag(FLAGS_tls_cert_file),
                                             &options.tls_cert_pem},
        {absl::GetFlag(FLAGS_tls_key_file), &options.tls_key_pem},
        {absl::GetFlag(FLAGS_tls_client_ca_file),
         &options.tls_client_ca_pem}}) {
    if (flag.empty()) continue;
    std::ifstream in(flag);
    std::stringstream pem;
    pem << in.rdbuf();
    if (!in || pem.str().empty()) {
      std::cerr << "ftune-scheduler: cannot read " << flag << std::endl;
      return 1;
    }
    *out = pem.str();
  }
  absl::StatusOr<std::vector<std::string>> admin =
      LoadCredentials(absl::GetFlag(FLAGS_admin_key_file), "FTUNE_ADMIN_KEY");
  absl::StatusOr<std::vector<std::string>> worker =
      LoadCredentials(absl::GetFlag(FLAGS_worker_key_file), "FTUNE_WORKER_KEY");
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
  options.auth.admin_secrets = *admin;
  options.auth.worker_secrets = *worker;

  ftune::server::SchedulerServer server(options);
  if (absl::Status st = server.Start(); !st.ok()) {
    std::cerr << "ftune-scheduler: " << st.message() << std::endl;
    return 1;
  }
  // Machine-readable line for scripts and tests (port 0).
  std::cout << "grpc_address=" << server.address() << std::endl;
  if (!server.metrics_address().empty()) {
    std::cout << "metrics_address=" << server.metrics_address() << std::endl;
  }
  if (!server.http_address().empty()) {
    std::cout << "http_address=" << server.http_address() << std::endl;
  }

  int sig = 0;
  sigwait(&signals, &sig);
  FTUNE_LOG(INFO) << "signal " << sig << ": shutting down";
  server.Shutdown();
  server.Wait();
  FTUNE_LOG(INFO) << "stopped";
  return 0;
}
