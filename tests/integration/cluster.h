// A whole ftune cluster of real processes for integration tests: one
// `ftune-scheduler` (real SQLite file, port 0, short leases) and any number
// of `ftune-worker` agents sharing one storage root, plus gRPC stubs to act
// as an admin and as tenants. The workers run a trainer binary chosen by the
// test: the scripted stand-in (tests/testing/stand_in_trainer.cc) or the real
// `ftune-train`.
//
// Not thread-safe: one test thread drives a Cluster.
#ifndef FTUNE_TESTS_INTEGRATION_CLUSTER_H_
#define FTUNE_TESTS_INTEGRATION_CLUSTER_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ftune/v1/admin.grpc.pb.h"
#include "ftune/v1/file.grpc.pb.h"
#include "ftune/v1/job_service.grpc.pb.h"
#include "ftune/v1/model.grpc.pb.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace ftune::testing {

inline constexpr char kClusterAdminKey[] = "cluster-test-admin-key-0123456789";
inline constexpr char kClusterWorkerKey[] =
    "cluster-test-worker-key-0123456789";

struct ClusterOptions {
  // Scheduler lease timing (short, so lost workers are noticed quickly).
  std::string lease_duration = "3s";
  std::string heartbeat_interval = "1s";
  std::string cancel_grace = "5s";
  // The registered model: `model_name` at storage models/<model_name>. When
  // `write_model` is set it fills that directory (else a minimal config.json
  // is written, enough for the stand-in trainer).
  std::string model_name = "tiny";
  std::function<absl::Status(const std::string& dir)> write_model;
  // Serve the OpenAI-compatible HTTP API too (--http_address, port 0).
  bool http_api = false;
};

struct WorkerOptions {
  std::string trainer;  // Path of the trainer binary.
  int cpu_slots = 1;
  std::map<std::string, std::string> env;  // Extra env (reaches the trainer).
  std::vector<std::string> extra_flags;
};

// A tenant as the tests use it: its id and key.
struct TenantHandle {
  std::string id;
  std::string key;
};

class Cluster {
 public:
  explicit Cluster(ClusterOptions options = {});
  ~Cluster();

  // Starts (or restarts, on the same database and storage) the scheduler.
  absl::Status StartScheduler();
  // SIGKILLs the scheduler (no graceful shutdown).
  absl::Status KillScheduler();
  const std::string& address() const { return address_; }
  // host:port of the scheduler's /metrics endpoint.
  const std::string& metrics_address() const { return metrics_address_; }
  // host:port of the OpenAI-compatible HTTP API (ClusterOptions::http_api).
  const std::string& http_address() const { return http_address_; }

  // Starts a worker; returns its index. Waits until it has registered.
  absl::StatusOr<int> StartWorker(const WorkerOptions& options);
  // The worker_id the worker printed last.
  const std::string& worker_id(int index) const;
  // host:port of the worker's /metrics endpoint (each worker picks a free
  // port; "" when started with --metrics_address=).
  const std::string& worker_metrics_address(int index) const;
  Subprocess& worker(int index) { return *workers_[index].process; }
  absl::Status SignalWorker(int index, int sig);

  // Admin: creates a tenant and a key for it.
  absl::StatusOr<TenantHandle> CreateTenant(const std::string& name,
                                            double weight = 1.0);
  // Uploads JSONL text as a training file; returns the file id.
  absl::StatusOr<std::string> UploadFile(const TenantHandle& tenant,
                                         const std::string& filename,
                                         const std::string& jsonl);
  absl::StatusOr<v1::Job> CreateJob(const TenantHandle& tenant,
                                    const v1::JobSpec& spec);
  absl::StatusOr<v1::Job> GetJob(const TenantHandle& tenant,
                                 const std::string& job_id);
  absl::StatusOr<v1::Job> CancelJob(const TenantHandle& tenant,
                                    const std::string& job_id);
  absl::StatusOr<std::vector<v1::JobEvent>> ListEvents(
      const TenantHandle& tenant, const std::string& job_id);
  // Polls GetJob until `pred` holds (DEADLINE_EXCEEDED with the last state
  // after `timeout`). Tolerates the scheduler being briefly down.
  absl::StatusOr<v1::Job> WaitForJob(
      const TenantHandle& tenant, const std::string& job_id,
      const std::function<bool(const v1::Job&)>& pred, absl::Duration timeout);
  absl::StatusOr<v1::Job> WaitForState(const TenantHandle& tenant,
                                       const std::string& job_id,
                                       v1::JobState state,
                                       absl::Duration timeout);

  // Absolute path under the storage root.
  std::string StoragePath(const std::string& relative) const;
  std::string Path(const std::string& name) const { return dir_.Sub(name); }

  v1::AdminService::Stub& admin() { return *admin_; }
  v1::JobService::Stub& jobs() { return *jobs_; }
  v1::ModelService::Stub& models() { return *models_; }

 private:
  struct WorkerProc {
    std::unique_ptr<Subprocess> process;
    std::string id;
    std::string metrics_address;
  };

  ClusterOptions options_;
  TempDir dir_;
  std::unique_ptr<Subprocess> scheduler_;
  int scheduler_starts_ = 0;
  std::string address_;
  std::string metrics_address_;
  std::string http_address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::FileService::Stub> files_;
  std::unique_ptr<v1::ModelService::Stub> models_;
  std::vector<WorkerProc> workers_;
};

// Adds "authorization: Bearer <key>" to a context.
void Authorize(grpc::ClientContext& ctx, const std::string& key);

// A JobSpec for `model` and `training_file` with `max_steps` steps,
// checkpoints every `checkpoint_every` steps and `max_restarts`.
v1::JobSpec StepsSpec(const std::string& model,
                      const std::string& training_file, int max_steps,
                      int checkpoint_every, int max_restarts);

// Lines of the stand-in trainer's FTUNE_STAND_IN_RECORD file.
std::vector<std::string> ReadLines(const std::string& path);

}  // namespace ftune::testing

#endif  // FTUNE_TESTS_INTEGRATION_CLUSTER_H_
