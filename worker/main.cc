// ftune-worker: the worker agent, one per host (docs/worker-agent.md).
// Flags -> WorkerOptions, capability discovery, signal handling.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/metrics/http_server.h"
#include "common/metrics/registry.h"
#include "worker/agent/capabilities.h"
#include "worker/agent/worker_metrics.h"
#include "worker/agent/worker_session.h"

ABSL_FLAG(std::string, scheduler, "127.0.0.1:50051",
          "HOST:PORT of the scheduler's gRPC API.");
ABSL_FLAG(std::string, storage_root, "",
          "Required. This host's mount of the shared storage root (models/, "
          "files/, jobs/); the scheduler's paths are relative to it.");
ABSL_FLAG(std::string, worker_key_file, "",
          "File holding the cluster's worker credential (first non-empty "
          "line), sent as 'authorization: Bearer'. Default: the environment "
          "variable FTUNE_WORKER_KEY.");
ABSL_FLAG(std::string, trainer, "",
          "Path of the trainer binary. Default: ftune-train next to this "
          "binary.");
ABSL_FLAG(std::string, work_dir, "",
          "Local scratch directory for trainer specs. Default: a new "
          "directory under $TMPDIR (or /tmp), removed at exit.");
ABSL_FLAG(int, cpu_slots, 0,
          "CPU threads offered to trainers. Default (0): the number of online "
          "CPUs.");
ABSL_FLAG(int64_t, memory_bytes, -1,
          "Host memory in bytes offered to trainers. Default (-1): the "
          "machine's physical memory.");
ABSL_FLAG(std::string, gpus, "auto",
          "GPUs to offer: auto (every GPU nvidia-smi lists; none without "
          "nvidia-smi), none, or a list of indices such as 0,1.");
ABSL_FLAG(std::string, labels, "",
          "Labels of this host, k=v,k2=v2 (matched by job placement).");
ABSL_FLAG(absl::Duration, stop_grace, absl::Seconds(30),
          "How long a trainer may take to checkpoint and exit after SIGTERM "
          "(pause, worker shutdown, cancel without its own grace) before "
          "SIGKILL.");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM root certificates to verify the scheduler with; enables TLS.");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM client certificate for mTLS (with --tls_key_file).");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file.");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9091",
          "host:port of the HTTP endpoint serving /metrics, /healthz and "
          "/readyz (ready while heartbeats succeed); port 0 picks one, "
          "printed as 'metrics_address=HOST:PORT'; empty = none.");

namespace v1 = ftune::v1;

namespace {

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<std::string> LoadWorkerKey(const std::string& file) {
  if (file.empty()) {
    const char* env = std::getenv("FTUNE_WORKER_KEY");
    if (env == nullptr || *env == '\0') {
      return absl::InvalidArgumentError(
          "no worker credential: set --worker_key_file or FTUNE_WORKER_KEY");
    }
    return std::string(absl::StripAsciiWhitespace(env));
  }
  absl::StatusOr<std::string> text = ReadAll(file);
  if (!text.ok()) return text.status();
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    absl::string_view t = absl::StripAsciiWhitespace(line);
    if (!t.empty()) return std::string(t);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("worker key file ", file, " is empty"));
}

std::string SelfDir() {
  std::error_code ec;
  const std::filesystem::path self =
      std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "." : self.parent_path().string();
}

int Fail(absl::string_view msg) {
  std::cerr << "ftune-worker: " << msg << std::endl;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "runs fine-tuning attempts for an ftune-scheduler.\n"
      "Usage: ftune-worker --storage_root=DIR [--scheduler=HOST:PORT] ...\n"
      "Prints 'worker_id=worker-...' on stdout after each registration.\n"
      "Run with --help for every flag.");
  // --help lists this file's flags (absl matches files named after the
  // program by default).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view path) {
    return absl::EndsWith(path, "worker/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  namespace agent = ftune::agent;
  agent::WorkerOptions o;
  o.scheduler_address = absl::GetFlag(FLAGS_scheduler);

  std::string root = absl::GetFlag(FLAGS_storage_root);
  if (root.empty()) {
    return Fail(
        "--storage_root=DIR is required (this host's mount of the "
        "shared storage)");
  }
  std::error_code ec;
  root = std::filesystem::absolute(root, ec).lexically_normal().string();
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (!std::filesystem::is_directory(root, ec)) {
    return Fail(absl::StrCat("--storage_root ", root, " is not a directory"));
  }
  o.runner.storage_root = root;

  absl::StatusOr<std::string> key =
      LoadWorkerKey(absl::GetFlag(FLAGS_worker_key_file));
  if (!key.ok()) return Fail(key.status().message());
  o.worker_key = *key;

  o.runner.trainer_path = absl::GetFlag(FLAGS_trainer);
  if (o.runner.trainer_path.empty()) {
    o.runner.trainer_path = SelfDir() + "/ftune-train";
  }
  if (::access(o.runner.trainer_path.c_str(), X_OK) != 0) {
    return Fail(absl::StrCat("trainer ", o.runner.trainer_path,
                             " is not an executable file (--trainer)"));
  }

  std::string work_dir = absl::GetFlag(FLAGS_work_dir);
  bool remove_work_dir = false;
  if (work_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp",
                                    "/ftune-worker-XXXXXX");
    if (::mkdtemp(tmpl.data()) == nullptr) {
      return Fail(absl::StrCat("cannot create a work dir from ", tmpl));
    }
    work_dir = tmpl;
    remove_work_dir = true;
  } else {
    std::filesystem::create_directories(work_dir, ec);
    if (ec)
      return Fail(absl::StrCat("--work_dir ", work_dir, ": ", ec.message()));
  }
  o.runner.work_dir = work_dir;
  o.runner.stop_grace = absl::GetFlag(FLAGS_stop_grace);

  // Capabilities.
  v1::WorkerCapabilities& caps = o.capabilities;
  caps.set_hostname(agent::Hostname());
  const int cpu_slots = absl::GetFlag(FLAGS_cpu_slots);
  if (cpu_slots < 0) return Fail("--cpu_slots must be >= 0");
  caps.set_cpu_slots(cpu_slots > 0 ? cpu_slots : agent::OnlineCpus());
  const int64_t mem = absl::GetFlag(FLAGS_memory_bytes);
  caps.set_memory_bytes(mem >= 0 ? mem : agent::PhysicalMemoryBytes());
  absl::StatusOr<std::map<std::string, std::string>> labels =
      agent::ParseLabels(absl::GetFlag(FLAGS_labels));
  if (!labels.ok()) return Fail(labels.status().message());
  for (const auto& [k, v] : *labels) (*caps.mutable_labels())[k] = v;
  caps.set_software_version(agent::SoftwareVersion());
  const std::string gpu_mode = absl::GetFlag(FLAGS_gpus);
  std::vector<v1::GpuDevice> found;
  if (gpu_mode != "none") {
    absl::StatusOr<std::vector<v1::GpuDevice>> d = agent::DiscoverGpus();
    if (!d.ok()) return Fail(d.status().message());
    found = *d;
  }
  absl::StatusOr<std::vector<v1::GpuDevice>> gpus =
      agent::SelectGpus(gpu_mode, found);
  if (!gpus.ok()) return Fail(gpus.status().message());
  for (const v1::GpuDevice& g : *gpus) *caps.add_gpus() = g;
  absl::StatusOr<v1::TrainerCapabilities> trainer =
      agent::QueryTrainer(o.runner.trainer_path);
  if (!trainer.ok()) return Fail(trainer.status().message());
  *caps.mutable_trainer() = *std::move(trainer);
  FTUNE_LOG(INFO) << "host " << caps.hostname() << ": " << caps.gpus_size()
                  << " GPU(s), " << caps.cpu_slots() << " CPU slots, "
                  << caps.memory_bytes() << " bytes; trainer "
                  << o.runner.trainer_path << " ("
                  << caps.trainer().architectures_size() << " architectures, "
                  << (caps.trainer().cuda() ? "CUDA" : "CPU only")
                  << "); work dir " << work_dir;

  // TLS.
  const std::string ca = absl::GetFlag(FLAGS_tls_ca_file);
  const std::string cert = absl::GetFlag(FLAGS_tls_cert_file);
  const std::string tls_key = absl::GetFlag(FLAGS_tls_key_file);
  if (!ca.empty() || !cert.empty() || !tls_key.empty()) {
    if (cert.empty() != tls_key.empty()) {
      return Fail("--tls_cert_file and --tls_key_file go together");
    }
    grpc::SslCredentialsOptions ssl;
    for (auto [path, out] :
         {std::pair<const std::string*, std::string*>{&ca, &ssl.pem_root_certs},
          {&cert, &ssl.pem_cert_chain},
          {&tls_key, &ssl.pem_private_key}}) {
      if (path->empty()) continue;
      absl::StatusOr<std::string> text = ReadAll(*path);
      if (!text.ok()) return Fail(text.status().message());
      *out = *text;
    }
    o.channel_credentials = grpc::SslCredentials(ssl);
  }

  // Metrics: the registry and the endpoint outlive the agent, whose hooks
  // feed them.
  ftune::metrics::Registry registry;
  absl::StatusOr<std::unique_ptr<agent::WorkerMetrics>> metrics =
      agent::WorkerMetrics::Create(&registry, caps);
  if (!metrics.ok()) return Fail(metrics.status().message());
  agent::WorkerMetrics* m = metrics->get();
  std::atomic<bool> connected{false};
  o.runner.on_trainer_start = [m] { m->TrainerStarted(); };
  o.runner.on_trainer_exit = [m](agent::ExitClass c, bool killed) {
    m->TrainerExited(c, killed);
  };
  o.on_heartbeat = [m, &connected](bool ok) {
    connected = ok;
    m->SetConnected(ok);
  };
  o.on_registered = [m, &connected](const std::string& id) {
    connected = true;
    m->SetConnected(true);
    std::cout << "worker_id=" << id << std::endl;
  };
  std::unique_ptr<ftune::metrics::MetricsHttpServer> metrics_http;
  if (const std::string address = absl::GetFlag(FLAGS_metrics_address);
      !address.empty()) {
    ftune::metrics::MetricsHttpServerOptions mo;
    mo.listen_address = address;
    absl::StatusOr<std::unique_ptr<ftune::metrics::MetricsHttpServer>> http =
        ftune::metrics::MetricsHttpServer::Start(
            mo, &registry, [&connected]() -> absl::Status {
              if (connected) return absl::OkStatus();
              return absl::UnavailableError(
                  "not registered with the scheduler, or the last heartbeat "
                  "failed");
            });
    if (!http.ok()) {
      return Fail(absl::StrCat("metrics endpoint ", address, ": ",
                               http.status().message()));
    }
    metrics_http = *std::move(http);
    std::cout << "metrics_address=" << metrics_http->address() << std::endl;
  }

  agent::WorkerAgent worker(o);
  absl::Status result;
  std::thread session([&] { result = worker.Run(); });
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    FTUNE_LOG(INFO) << "signal " << sig
                    << ": stopping trainers, reporting, exiting (a second "
                       "signal kills them)";
    worker.Shutdown();
    sigwait(&signals, &sig);
    worker.Shutdown(/*hard=*/true);
  });
  signal_thread.detach();
  session.join();
  if (metrics_http != nullptr) metrics_http->Stop();
  if (remove_work_dir) std::filesystem::remove_all(work_dir, ec);
  if (!result.ok()) return Fail(result.ToString());
  FTUNE_LOG(INFO) << "stopped";
  return 0;
}
