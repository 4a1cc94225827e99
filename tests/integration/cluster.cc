#include "tests/integration/cluster.h"

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"

namespace ftune::testing {
namespace {

const std::string kSchedulerBin =
    std::string(FTUNE_BIN_DIR) + "/ftune-scheduler";
const std::string kWorkerBin = std::string(FTUNE_BIN_DIR) + "/ftune-worker";

void WriteText(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(
      std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

}  // namespace

void Authorize(grpc::ClientContext& ctx, const std::string& key) {
  ctx.AddMetadata("authorization", "Bearer " + key);
}

Cluster::Cluster(ClusterOptions options) : options_(std::move(options)) {
  const std::string model_dir = StoragePath("models/" + options_.model_name);
  std::filesystem::create_directories(model_dir);
  if (options_.write_model) {
    absl::Status st = options_.write_model(model_dir);
    if (!st.ok()) FTUNE_LOG(ERROR) << "writing the model: " << st;
  } else {
    WriteText(model_dir + "/config.json",
              R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 256,
                  "hidden_size": 64, "intermediate_size": 128,
                  "num_hidden_layers": 2, "num_attention_heads": 4,
                  "max_position_embeddings": 512})");
  }
  WriteText(dir_.Sub("scheduler.json"),
            absl::StrCat(R"({"models": [{"name": ")", options_.model_name,
                         R"("}]})"));
  WriteText(dir_.Sub("admin.key"), std::string(kClusterAdminKey) + "\n");
  WriteText(dir_.Sub("worker.key"), std::string(kClusterWorkerKey) + "\n");
}

Cluster::~Cluster() {
  // Workers first (they SIGTERM their trainers), then the scheduler.
  for (WorkerProc& w : workers_) {
    if (w.process->running()) {
      (void)w.process->Signal(SIGKILL);
      (void)w.process->Wait(absl::Seconds(10));
    }
  }
  // Close our connection first: the scheduler's graceful stop waits (up to
  // 5 s in gRPC 1.51) for idle client connections to go away.
  admin_.reset();
  jobs_.reset();
  files_.reset();
  models_.reset();
  channel_.reset();
  if (scheduler_ && scheduler_->running()) {
    (void)scheduler_->Signal(SIGTERM);
    if (!scheduler_->Wait(absl::Seconds(15)).ok()) {
      (void)scheduler_->Signal(SIGKILL);
      (void)scheduler_->Wait(absl::Seconds(10));
    }
  }
  // A failed test shows what the processes said.
  if (::testing::Test::HasFailure()) {
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      if (entry.path().extension() != ".log") continue;
      std::ifstream in(entry.path());
      std::string line;
      std::vector<std::string> lines;
      while (std::getline(in, line)) lines.push_back(line);
      const size_t from = lines.size() > 60 ? lines.size() - 60 : 0;
      std::cerr << "---- " << entry.path().filename().string() << " (last "
                << lines.size() - from << " lines)\n";
      for (size_t i = from; i < lines.size(); ++i)
        std::cerr << lines[i] << "\n";
    }
  }
}

std::string Cluster::StoragePath(const std::string& relative) const {
  return dir_.Sub("storage/" + relative);
}

absl::Status Cluster::StartScheduler() {
  if (scheduler_ && scheduler_->running()) {
    return absl::FailedPreconditionError("the scheduler is running");
  }
  scheduler_ = std::make_unique<Subprocess>();
  ++scheduler_starts_;
  // A restart comes back on the first start's port: the workers know
  // only that address.
  std::vector<std::string> argv = {
      kSchedulerBin,
      "--grpc_address=" + (address_.empty() ? "127.0.0.1:0" : address_),
      "--metrics_address=127.0.0.1:0",
      "--db=" + dir_.Sub("sched.db"),
      "--storage_root=" + dir_.Sub("storage"),
      "--config=" + dir_.Sub("scheduler.json"),
      "--admin_key_file=" + dir_.Sub("admin.key"),
      "--worker_key_file=" + dir_.Sub("worker.key"),
      "--lease_duration=" + options_.lease_duration,
      "--heartbeat_interval=" + options_.heartbeat_interval,
      "--cancel_grace=" + options_.cancel_grace};
  if (options_.http_api) argv.push_back("--http_address=127.0.0.1:0");
  FTUNE_RETURN_IF_ERROR(scheduler_->Start(
      argv, {},
      dir_.Sub(absl::StrCat("scheduler-", scheduler_starts_, ".log"))));
  FTUNE_ASSIGN_OR_RETURN(
      std::string address,
      scheduler_->ReadLineWithPrefix("grpc_address=", absl::Seconds(30)));
  address_ = address;
  FTUNE_ASSIGN_OR_RETURN(
      metrics_address_,
      scheduler_->ReadLineWithPrefix("metrics_address=", absl::Seconds(30)));
  if (options_.http_api) {
    FTUNE_ASSIGN_OR_RETURN(
        http_address_,
        scheduler_->ReadLineWithPrefix("http_address=", absl::Seconds(30)));
  }
  channel_ = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
  admin_ = v1::AdminService::NewStub(channel_);
  jobs_ = v1::JobService::NewStub(channel_);
  files_ = v1::FileService::NewStub(channel_);
  models_ = v1::ModelService::NewStub(channel_);
  return absl::OkStatus();
}

absl::Status Cluster::KillScheduler() {
  if (!scheduler_ || !scheduler_->running()) {
    return absl::FailedPreconditionError("the scheduler is not running");
  }
  FTUNE_RETURN_IF_ERROR(scheduler_->Signal(SIGKILL));
  return scheduler_->Wait(absl::Seconds(10)).status();
}

absl::StatusOr<int> Cluster::StartWorker(const WorkerOptions& options) {
  WorkerProc w;
  w.process = std::make_unique<Subprocess>();
  const int index = static_cast<int>(workers_.size());
  std::vector<std::string> argv = {
      kWorkerBin,
      "--scheduler=" + address_,
      "--storage_root=" + dir_.Sub("storage"),
      "--worker_key_file=" + dir_.Sub("worker.key"),
      "--trainer=" + options.trainer,
      "--work_dir=" + dir_.Sub(absl::StrCat("worker-", index)),
      absl::StrCat("--cpu_slots=", options.cpu_slots),
      "--gpus=none",
      "--stop_grace=5s",
      "--metrics_address=127.0.0.1:0"};
  argv.insert(argv.end(), options.extra_flags.begin(),
              options.extra_flags.end());
  const bool metrics_off =
      std::find(argv.begin(), argv.end(), "--metrics_address=") != argv.end();
  FTUNE_RETURN_IF_ERROR(w.process->Start(
      argv, options.env, dir_.Sub(absl::StrCat("worker-", index, ".log"))));
  if (!metrics_off) {
    FTUNE_ASSIGN_OR_RETURN(
        w.metrics_address,
        w.process->ReadLineWithPrefix("metrics_address=", absl::Seconds(30)));
  }
  FTUNE_ASSIGN_OR_RETURN(
      w.id, w.process->ReadLineWithPrefix("worker_id=", absl::Seconds(30)));
  workers_.push_back(std::move(w));
  return index;
}

const std::string& Cluster::worker_id(int index) const {
  return workers_[index].id;
}

const std::string& Cluster::worker_metrics_address(int index) const {
  return workers_[index].metrics_address;
}

absl::Status Cluster::SignalWorker(int index, int sig) {
  return workers_[index].process->Signal(sig);
}

absl::StatusOr<TenantHandle> Cluster::CreateTenant(const std::string& name,
                                                   double weight) {
  v1::CreateTenantRequest treq;
  treq.set_display_name(name);
  treq.set_fair_share_weight(weight);
  v1::Tenant tenant;
  {
    grpc::ClientContext ctx;
    Authorize(ctx, kClusterAdminKey);
    FTUNE_RETURN_IF_ERROR(
        FromGrpc(admin_->CreateTenant(&ctx, treq, &tenant), "CreateTenant"));
  }
  v1::CreateApiKeyRequest kreq;
  kreq.set_tenant_id(tenant.id());
  v1::CreateApiKeyResponse key;
  {
    grpc::ClientContext ctx;
    Authorize(ctx, kClusterAdminKey);
    FTUNE_RETURN_IF_ERROR(
        FromGrpc(admin_->CreateApiKey(&ctx, kreq, &key), "CreateApiKey"));
  }
  return TenantHandle{tenant.id(), key.secret()};
}

absl::StatusOr<std::string> Cluster::UploadFile(const TenantHandle& tenant,
                                                const std::string& filename,
                                                const std::string& jsonl) {
  grpc::ClientContext ctx;
  Authorize(ctx, tenant.key);
  v1::File file;
  std::unique_ptr<grpc::ClientWriter<v1::UploadFileRequest>> writer(
      files_->UploadFile(&ctx, &file));
  v1::UploadFileRequest req;
  req.mutable_metadata()->set_filename(filename);
  req.mutable_metadata()->set_purpose(v1::FILE_PURPOSE_FINE_TUNE_TRAIN);
  writer->Write(req);
  v1::UploadFileRequest chunk;
  chunk.set_chunk(jsonl);
  writer->Write(chunk);
  writer->WritesDone();
  FTUNE_RETURN_IF_ERROR(FromGrpc(writer->Finish(), "UploadFile"));
  return file.id();
}

absl::StatusOr<v1::Job> Cluster::CreateJob(const TenantHandle& tenant,
                                           const v1::JobSpec& spec) {
  grpc::ClientContext ctx;
  Authorize(ctx, tenant.key);
  v1::CreateJobRequest req;
  *req.mutable_spec() = spec;
  v1::CreateJobResponse resp;
  FTUNE_RETURN_IF_ERROR(
      FromGrpc(jobs_->CreateJob(&ctx, req, &resp), "CreateJob"));
  return resp.job();
}

absl::StatusOr<v1::Job> Cluster::GetJob(const TenantHandle& tenant,
                                        const std::string& job_id) {
  grpc::ClientContext ctx;
  Authorize(ctx, tenant.key);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetJobRequest req;
  req.set_job_id(job_id);
  v1::Job job;
  FTUNE_RETURN_IF_ERROR(FromGrpc(jobs_->GetJob(&ctx, req, &job), "GetJob"));
  return job;
}

absl::StatusOr<v1::Job> Cluster::CancelJob(const TenantHandle& tenant,
                                           const std::string& job_id) {
  grpc::ClientContext ctx;
  Authorize(ctx, tenant.key);
  v1::CancelJobRequest req;
  req.set_job_id(job_id);
  v1::Job job;
  FTUNE_RETURN_IF_ERROR(
      FromGrpc(jobs_->CancelJob(&ctx, req, &job), "CancelJob"));
  return job;
}

absl::StatusOr<std::vector<v1::JobEvent>> Cluster::ListEvents(
    const TenantHandle& tenant, const std::string& job_id) {
  std::vector<v1::JobEvent> out;
  std::string token;
  do {
    grpc::ClientContext ctx;
    Authorize(ctx, tenant.key);
    v1::ListJobEventsRequest req;
    req.set_job_id(job_id);
    req.set_page_size(500);
    req.set_page_token(token);
    v1::ListJobEventsResponse resp;
    FTUNE_RETURN_IF_ERROR(
        FromGrpc(jobs_->ListJobEvents(&ctx, req, &resp), "ListJobEvents"));
    out.insert(out.end(), resp.events().begin(), resp.events().end());
    token = resp.next_page_token();
  } while (!token.empty());
  return out;
}

absl::StatusOr<v1::Job> Cluster::WaitForJob(
    const TenantHandle& tenant, const std::string& job_id,
    const std::function<bool(const v1::Job&)>& pred, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<v1::Job> last = absl::DeadlineExceededError("no answer");
  while (absl::Now() < deadline) {
    last = GetJob(tenant, job_id);
    if (last.ok() && pred(*last)) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "job ", job_id, " did not reach the condition; last: ",
      last.ok() ? last->ShortDebugString() : last.status().ToString()));
}

absl::StatusOr<v1::Job> Cluster::WaitForState(const TenantHandle& tenant,
                                              const std::string& job_id,
                                              v1::JobState state,
                                              absl::Duration timeout) {
  return WaitForJob(
      tenant, job_id, [state](const v1::Job& j) { return j.state() == state; },
      timeout);
}

v1::JobSpec StepsSpec(const std::string& model,
                      const std::string& training_file, int max_steps,
                      int checkpoint_every, int max_restarts) {
  v1::JobSpec spec;
  spec.set_model(model);
  spec.set_training_file(training_file);
  spec.set_method(v1::TRAINING_METHOD_LORA);
  spec.mutable_hyperparameters()->set_max_steps(max_steps);
  spec.mutable_hyperparameters()->set_batch_size(2);
  spec.mutable_hyperparameters()->set_max_seq_length(64);
  spec.mutable_hyperparameters()->set_checkpoint_every_steps(checkpoint_every);
  spec.mutable_resources()->set_gpus(0);
  spec.mutable_resources()->set_cpu_threads(1);
  spec.set_max_restarts(max_restarts);
  return spec;
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace ftune::testing
