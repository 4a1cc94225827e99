// dispatch_bench: the scheduler's two hot paths between tenants and
// workers, measured against the real `ftune-scheduler` binary (real SQLite
// file, synchronous=FULL) over gRPC:
//
//  1. Dispatch latency: with one idle worker (a real WorkerService client
//     holding its command stream open), the time from CreateJob's
//     acknowledgement (the job is durably QUEUED) to the AssignJobCommand
//     arriving at the worker. The worker then finishes the attempt at once,
//     so the next job finds it idle again. Prints p50/p90/p99/max.
//  2. Metric ingestion and fan-out: the worker reports --points metric
//     points in ReportProgress batches of --batch while --watchers WatchJob
//     streams follow the job; prints points/s from the first report until
//     every watcher has received every point.
//
//   dispatch_bench [--jobs=300] [--watchers=100] [--points=50000] [--batch=500]
//
// Targets (issue "Workers and dispatch"): dispatch p99 < 50 ms; >= 20,000
// points/s with 100 watchers.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ftune/v1/admin.grpc.pb.h"
#include "ftune/v1/file.grpc.pb.h"
#include "ftune/v1/job_service.grpc.pb.h"
#include "ftune/v1/worker.grpc.pb.h"

ABSL_FLAG(int, jobs, 300, "jobs for the dispatch-latency part");
ABSL_FLAG(int, watchers, 100, "WatchJob streams for the fan-out part");
ABSL_FLAG(int, points, 50000, "metric points for the fan-out part");
ABSL_FLAG(int, batch, 500, "metric points per ReportProgress");
ABSL_FLAG(bool, batch_metrics, true,
          "watchers ask for batched metric messages "
          "(WatchJobRequest.batch_metrics); false: one message per point");
ABSL_FLAG(std::string, scheduler, FTUNE_BIN_DIR "/ftune-scheduler",
          "the ftune-scheduler binary");

namespace ftune::bench {
namespace {

constexpr char kAdminKey[] = "dispatch-bench-admin-key-0123456789";
constexpr char kWorkerKey[] = "dispatch-bench-worker-key-0123456789";

void Die(const std::string& what) {
  std::fprintf(stderr, "dispatch_bench: %s\n", what.c_str());
  std::exit(1);
}

void Check(const grpc::Status& s, const std::string& what) {
  if (!s.ok()) Die(absl::StrCat(what, ": ", s.error_message()));
}

void WriteText(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(
      std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

// The scheduler as a child process; its address is read from its stdout.
struct Scheduler {
  pid_t pid = -1;
  std::string address;

  void Start(const std::string& dir) {
    int out[2];
    if (pipe(out) != 0) Die("pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    posix_spawn_file_actions_addopen(&fa, 2, (dir + "/scheduler.log").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<std::string> args = {absl::GetFlag(FLAGS_scheduler),
                                     "--grpc_address=127.0.0.1:0",
                                     "--metrics_address=127.0.0.1:0",
                                     "--db=" + dir + "/sched.db",
                                     "--storage_root=" + dir + "/storage",
                                     "--config=" + dir + "/scheduler.json",
                                     "--admin_key_file=" + dir + "/admin.key",
                                     "--worker_key_file=" + dir + "/worker.key",
                                     "--lease_duration=60s",
                                     "--heartbeat_interval=5s"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) {
      Die("cannot start " + args[0]);
    }
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    std::string buf;
    char c;
    while (read(out[0], &c, 1) == 1) {
      if (c != '\n') {
        buf += c;
        continue;
      }
      if (buf.rfind("grpc_address=", 0) == 0) {
        address = buf.substr(13);
        break;
      }
      buf.clear();
    }
    if (address.empty()) Die("the scheduler did not start; see scheduler.log");
    // Keep draining its stdout so it never blocks on a full pipe.
    std::thread([fd = out[0]] {
      char b[256];
      while (read(fd, b, sizeof b) > 0) {
      }
      close(fd);
    }).detach();
  }

  void Stop() {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
  }
};

void Auth(grpc::ClientContext& ctx, const std::string& key) {
  ctx.AddMetadata("authorization", "Bearer " + key);
}

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

void PrintLatencies(const char* name, std::vector<absl::Duration> v) {
  std::sort(v.begin(), v.end());
  auto pct = [&](double p) {
    return Ms(v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))]);
  };
  std::printf("%s: n=%zu p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms\n", name,
              v.size(), pct(0.50), pct(0.90), pct(0.99), Ms(v.back()));
}

// A worker agent reduced to the protocol: register, hold the command
// stream, hand every AssignJobCommand (with its arrival time) to the bench.
class BenchWorker {
 public:
  BenchWorker(std::shared_ptr<grpc::Channel> channel, std::string storage)
      : stub_(v1::WorkerService::NewStub(channel)),
        storage_(std::move(storage)) {}

  void Start() {
    v1::RegisterWorkerRequest req;
    req.mutable_capabilities()->set_hostname("bench-host");
    req.mutable_capabilities()->set_cpu_slots(1);
    req.mutable_capabilities()->set_memory_bytes(int64_t{64} << 30);
    v1::RegisterWorkerResponse resp;
    grpc::ClientContext ctx;
    Auth(ctx, kWorkerKey);
    Check(stub_->RegisterWorker(&ctx, req, &resp), "RegisterWorker");
    id_ = resp.worker_id();
    reader_ = std::thread([this] { ReadCommands(); });
    heartbeat_ = std::thread([this, every = resp.heartbeat_interval()] {
      while (!stop_) {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait_for(
            l, std::chrono::seconds(std::max<int64_t>(1, every.seconds())));
        if (stop_) break;
        v1::HeartbeatRequest hb;
        hb.set_worker_id(id_);
        for (const auto& [job, attempt] : running_) {
          v1::AttemptRef* r = hb.add_running_attempts();
          r->set_job_id(job);
          r->set_attempt(attempt);
        }
        l.unlock();
        v1::HeartbeatResponse hr;
        grpc::ClientContext hctx;
        Auth(hctx, kWorkerKey);
        (void)stub_->Heartbeat(&hctx, hb, &hr);
      }
    });
  }

  // The next assignment and when it arrived.
  std::pair<v1::AssignJobCommand, absl::Time> Next() {
    std::unique_lock<std::mutex> l(mu_);
    if (!cv_.wait_for(l, std::chrono::seconds(30),
                      [this] { return !assigned_.empty(); })) {
      Die("no assignment within 30 s");
    }
    auto a = assigned_.front();
    assigned_.pop_front();
    return a;
  }

  void Report(const v1::AssignJobCommand& a, int64_t batch_number,
              int first_step, int n) {
    v1::ReportProgressRequest req;
    req.set_worker_id(id_);
    req.set_job_id(a.job_id());
    req.set_attempt(a.attempt());
    req.set_batch_number(batch_number);
    for (int i = 0; i < n; ++i) {
      v1::MetricPoint* p = req.add_metrics();
      p->set_step(first_step + i);
      p->set_train_loss(2.0 / (1 + first_step + i));
      p->set_learning_rate(1e-4);
    }
    req.mutable_progress()->set_step(first_step + n - 1);
    v1::ReportProgressResponse resp;
    grpc::ClientContext ctx;
    Auth(ctx, kWorkerKey);
    Check(stub_->ReportProgress(&ctx, req, &resp), "ReportProgress");
  }

  // Publishes a one-file adapter where the attempt says and finishes it.
  void Succeed(const v1::AssignJobCommand& a) {
    const std::string dir = storage_ + "/" + a.adapter_dir();
    WriteText(dir + "/adapter_config.json", "{}");
    v1::FinishAttemptRequest req;
    req.set_worker_id(id_);
    req.set_job_id(a.job_id());
    req.set_attempt(a.attempt());
    req.set_outcome(v1::ATTEMPT_OUTCOME_SUCCEEDED);
    v1::Adapter* adapter = req.mutable_adapter();
    adapter->set_name(a.adapter_name());
    adapter->set_path(a.adapter_dir());
    v1::AdapterFile* f = adapter->add_files();
    f->set_path("adapter_config.json");
    f->set_size_bytes(2);
    f->set_sha256(
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    v1::FinishAttemptResponse resp;
    grpc::ClientContext ctx;
    Auth(ctx, kWorkerKey);
    Check(stub_->FinishAttempt(&ctx, req, &resp), "FinishAttempt");
    std::lock_guard<std::mutex> l(mu_);
    running_.erase(std::remove(running_.begin(), running_.end(),
                               std::make_pair(a.job_id(), a.attempt())),
                   running_.end());
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
      if (stream_ctx_) stream_ctx_->TryCancel();
    }
    cv_.notify_all();
    reader_.join();
    heartbeat_.join();
  }

 private:
  void ReadCommands() {
    grpc::ClientContext ctx;
    Auth(ctx, kWorkerKey);
    {
      std::lock_guard<std::mutex> l(mu_);
      stream_ctx_ = &ctx;
    }
    v1::StreamCommandsRequest req;
    req.set_worker_id(id_);
    auto reader = stub_->StreamCommands(&ctx, req);
    v1::WorkerCommand cmd;
    while (reader->Read(&cmd)) {
      const absl::Time now = absl::Now();
      if (!cmd.has_assign_job()) continue;
      std::lock_guard<std::mutex> l(mu_);
      // Held attempts are replayed when a stream opens: an attempt granted
      // while it was opening arrives twice. Count it once, as the agent does.
      const std::pair<std::string, int32_t> key(cmd.assign_job().job_id(),
                                                cmd.assign_job().attempt());
      if (std::find(running_.begin(), running_.end(), key) != running_.end()) {
        continue;
      }
      running_.emplace_back(cmd.assign_job().job_id(),
                            cmd.assign_job().attempt());
      assigned_.emplace_back(cmd.assign_job(), now);
      cv_.notify_all();
    }
    grpc::Status s = reader->Finish();
    std::lock_guard<std::mutex> l(mu_);
    stream_ctx_ = nullptr;
    if (!stop_) Die("the command stream ended: " + s.error_message());
  }

  std::unique_ptr<v1::WorkerService::Stub> stub_;
  std::string storage_;
  std::string id_;
  std::thread reader_, heartbeat_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  grpc::ClientContext* stream_ctx_ = nullptr;
  std::deque<std::pair<v1::AssignJobCommand, absl::Time>> assigned_;
  std::vector<std::pair<std::string, int32_t>> running_;
};

int Run() {
  const std::string dir = std::filesystem::temp_directory_path() /
                          absl::StrCat("ftune-dispatch-bench-", getpid());
  WriteText(dir + "/storage/models/bench/config.json",
            R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
                "intermediate_size": 128, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2,
                "vocab_size": 256, "max_position_embeddings": 512,
                "torch_dtype": "float32"})");
  WriteText(dir + "/scheduler.json", R"({"models": [{"name": "bench"}]})");
  WriteText(dir + "/admin.key", kAdminKey);
  WriteText(dir + "/worker.key", kWorkerKey);
  Scheduler scheduler;
  scheduler.Start(dir);
  auto channel = grpc::CreateChannel(scheduler.address,
                                     grpc::InsecureChannelCredentials());
  auto admin = v1::AdminService::NewStub(channel);
  auto files = v1::FileService::NewStub(channel);
  auto jobs = v1::JobService::NewStub(channel);

  std::string tenant_key;
  {
    v1::CreateTenantRequest treq;
    treq.set_display_name("bench");
    v1::Tenant tenant;
    grpc::ClientContext c1;
    Auth(c1, kAdminKey);
    Check(admin->CreateTenant(&c1, treq, &tenant), "CreateTenant");
    v1::CreateApiKeyRequest kreq;
    kreq.set_tenant_id(tenant.id());
    v1::CreateApiKeyResponse key;
    grpc::ClientContext c2;
    Auth(c2, kAdminKey);
    Check(admin->CreateApiKey(&c2, kreq, &key), "CreateApiKey");
    tenant_key = key.secret();
  }
  std::string file_id;
  {
    grpc::ClientContext ctx;
    Auth(ctx, tenant_key);
    v1::File file;
    auto writer = files->UploadFile(&ctx, &file);
    v1::UploadFileRequest meta;
    meta.mutable_metadata()->set_filename("train.jsonl");
    meta.mutable_metadata()->set_purpose(v1::FILE_PURPOSE_FINE_TUNE_TRAIN);
    writer->Write(meta);
    v1::UploadFileRequest chunk;
    chunk.set_chunk("{\"text\": \"hello world\"}\n");
    writer->Write(chunk);
    writer->WritesDone();
    Check(writer->Finish(), "UploadFile");
    file_id = file.id();
  }
  auto create_job = [&](int max_steps) {
    v1::CreateJobRequest req;
    req.mutable_spec()->set_model("bench");
    req.mutable_spec()->set_training_file(file_id);
    req.mutable_spec()->mutable_hyperparameters()->set_max_steps(max_steps);
    req.mutable_spec()->mutable_resources()->set_gpus(0);
    v1::CreateJobResponse resp;
    grpc::ClientContext ctx;
    Auth(ctx, tenant_key);
    Check(jobs->CreateJob(&ctx, req, &resp), "CreateJob");
    return resp.job().id();
  };

  BenchWorker worker(channel, dir + "/storage");
  worker.Start();

  // 1. Dispatch latency.
  std::vector<absl::Duration> dispatch;
  for (int i = 0; i < absl::GetFlag(FLAGS_jobs); ++i) {
    const std::string id = create_job(10);
    const absl::Time acked = absl::Now();
    auto [assign, arrived] = worker.Next();
    if (assign.job_id() != id) Die("assigned an unexpected job");
    dispatch.push_back(arrived - acked);
    worker.Succeed(assign);
  }
  PrintLatencies("dispatch (CreateJob ack -> AssignJobCommand at the worker)",
                 dispatch);

  // 2. Metric ingestion with watchers.
  const int points = absl::GetFlag(FLAGS_points);
  const int batch = absl::GetFlag(FLAGS_batch);
  const std::string id = create_job(points);
  auto [assign, arrived] = worker.Next();
  (void)arrived;
  std::atomic<int> done_watchers{0}, truncated{0}, ready{0};
  std::vector<std::thread> watchers;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  for (int w = 0; w < absl::GetFlag(FLAGS_watchers); ++w) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    watchers.emplace_back([&, ctx = contexts.back().get()] {
      Auth(*ctx, tenant_key);
      v1::WatchJobRequest req;
      req.set_job_id(id);
      req.set_after_sequence(0);
      req.set_batch_metrics(absl::GetFlag(FLAGS_batch_metrics));
      auto reader = jobs->WatchJob(ctx, req);
      v1::WatchJobResponse msg;
      int seen = 0;
      bool counted_ready = false;
      while (reader->Read(&msg)) {
        if (!counted_ready) {
          counted_ready = true;
          ready.fetch_add(1);
        }
        if (msg.has_truncated()) {
          truncated.fetch_add(1);
          break;
        }
        if (msg.has_metric()) ++seen;
        if (msg.has_metrics()) seen += msg.metrics().points_size();
        if (seen >= points) break;
      }
      done_watchers.fetch_add(1);
      ctx->TryCancel();
      (void)reader->Finish();
    });
  }
  while (ready.load() < static_cast<int>(watchers.size())) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  const absl::Time start = absl::Now();
  int64_t batch_number = 0;
  for (int sent = 0; sent < points; sent += batch) {
    worker.Report(assign, ++batch_number, sent + 1,
                  std::min(batch, points - sent));
  }
  const absl::Time ingested = absl::Now();
  for (std::thread& t : watchers) t.join();
  const absl::Time delivered = absl::Now();
  std::printf(
      "ingest: %d points in batches of %d: %.0f points/s stored; with %zu "
      "watchers, %.0f points/s until every watcher had every point "
      "(%.0f deliveries/s); truncated watchers: %d\n",
      points, batch, points / absl::ToDoubleSeconds(ingested - start),
      watchers.size(), points / absl::ToDoubleSeconds(delivered - start),
      static_cast<double>(points) * watchers.size() /
          absl::ToDoubleSeconds(delivered - start),
      truncated.load());
  worker.Succeed(assign);
  worker.Stop();
  scheduler.Stop();
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace ftune::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return ftune::bench::Run();
}
