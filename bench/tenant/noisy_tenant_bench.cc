// noisy_tenant_bench: does one tenant's WatchJob flood slow another
// tenant's CreateJob? (issue 16, defect 5). Against the real
// `ftune-scheduler` binary over gRPC (real SQLite file, synchronous=FULL):
//
//  1. Set-up through the public API: tenants A and B with API keys and an
//     uploaded training file each; a bench worker (WorkerService protocol
//     only) with --a_jobs CPU slots takes A's --a_jobs jobs.
//  2. Phase "alone": B makes CreateJob calls, --b_clients in a closed loop,
//     for --seconds; nothing else runs. Prints B's p50/p90/p99/max.
//  3. Phase "flood": A opens --streams WatchJob streams spread over its
//     jobs (callback client, --channels connections), the worker reports
//     --points_per_second metric points over A's jobs (one ReportProgress
//     per job every --report_ms), and B measures again as in 2. A stream
//     that ends with `truncated` (the slow-consumer policy) is resumed at
//     once from resume_after_sequence, as a real client would; one refused
//     by the per-tenant stream limit is not retried. Also prints the points
//     A's streams received per second, their truncations, resumes and
//     refusals, and the gaps or repeats they saw (must be 0).
//
//   noisy_tenant_bench [--streams=2000] [--points_per_second=200]
//                      [--seconds=10] [--b_clients=1]
//                      [--server_flags=--max_streams_per_tenant=5000,...]
//
// Exit status 1 on a failed call of B, a gap or a repeat; 2 when the set-up
// fails. --smoke is a short, small run for ctest.
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
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ftune/v1/admin.grpc.pb.h"
#include "ftune/v1/file.grpc.pb.h"
#include "ftune/v1/job_service.grpc.pb.h"
#include "ftune/v1/worker.grpc.pb.h"

ABSL_FLAG(int, streams, 2000, "tenant A's WatchJob streams");
ABSL_FLAG(int, a_jobs, 10, "tenant A's running jobs the streams watch");
ABSL_FLAG(int, points_per_second, 200,
          "metric points the worker reports per second over A's jobs");
ABSL_FLAG(int, report_ms, 50, "the worker reports every this many ms");
ABSL_FLAG(double, seconds, 10, "measured duration of each phase");
ABSL_FLAG(int, b_clients, 1, "tenant B's CreateJob calls in flight");
ABSL_FLAG(int, channels, 20, "connections A's streams are spread over");
ABSL_FLAG(bool, batch_metrics, false,
          "A's streams ask for WatchJobRequest.batch_metrics");
ABSL_FLAG(std::vector<std::string>, server_flags, {},
          "extra ftune-scheduler flags, comma-separated");
ABSL_FLAG(std::string, scheduler, FTUNE_BIN_DIR "/ftune-scheduler",
          "the ftune-scheduler binary");
ABSL_FLAG(bool, smoke, false,
          "a short, small run (ctest): 20 streams, 2 jobs, 0.5 s phases");

namespace ftune::bench {
namespace {

constexpr char kAdminKey[] = "noisy-bench-admin-key-0123456789";
constexpr char kWorkerKey[] = "noisy-bench-worker-key-0123456789";

[[noreturn]] void Die(const std::string& what, int code = 2) {
  std::fprintf(stderr, "noisy_tenant_bench: %s\n", what.c_str());
  std::exit(code);
}

void Check(const grpc::Status& s, const std::string& what) {
  if (!s.ok()) Die(absl::StrCat(what, ": ", s.error_message()));
}

void WriteText(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(
      std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

void Auth(grpc::ClientContext& ctx, const std::string& key) {
  ctx.AddMetadata("authorization", "Bearer " + key);
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
                                     "--metrics_address=",
                                     "--db=" + dir + "/sched.db",
                                     "--storage_root=" + dir + "/storage",
                                     "--config=" + dir + "/scheduler.json",
                                     "--admin_key_file=" + dir + "/admin.key",
                                     "--worker_key_file=" + dir + "/worker.key",
                                     "--lease_duration=120s",
                                     "--heartbeat_interval=5s"};
    for (const std::string& f : absl::GetFlag(FLAGS_server_flags)) {
      args.push_back(f);
    }
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

// A tenant: its key and an uploaded training file.
struct Tenant {
  std::string key;
  std::string file_id;
};

Tenant MakeTenant(v1::AdminService::Stub& admin, v1::FileService::Stub& files,
                  const std::string& name) {
  Tenant out;
  v1::CreateTenantRequest treq;
  treq.set_display_name(name);
  v1::Tenant tenant;
  grpc::ClientContext c1;
  Auth(c1, kAdminKey);
  Check(admin.CreateTenant(&c1, treq, &tenant), "CreateTenant");
  v1::CreateApiKeyRequest kreq;
  kreq.set_tenant_id(tenant.id());
  v1::CreateApiKeyResponse key;
  grpc::ClientContext c2;
  Auth(c2, kAdminKey);
  Check(admin.CreateApiKey(&c2, kreq, &key), "CreateApiKey");
  out.key = key.secret();
  grpc::ClientContext ctx;
  Auth(ctx, out.key);
  v1::File file;
  auto writer = files.UploadFile(&ctx, &file);
  v1::UploadFileRequest meta;
  meta.mutable_metadata()->set_filename("train.jsonl");
  meta.mutable_metadata()->set_purpose(v1::FILE_PURPOSE_FINE_TUNE_TRAIN);
  writer->Write(meta);
  v1::UploadFileRequest chunk;
  chunk.set_chunk("{\"text\": \"hello world\"}\n");
  writer->Write(chunk);
  writer->WritesDone();
  Check(writer->Finish(), "UploadFile");
  out.file_id = file.id();
  return out;
}

grpc::Status CreateJob(v1::JobService::Stub& jobs, const Tenant& t,
                       std::string* id = nullptr) {
  v1::CreateJobRequest req;
  req.mutable_spec()->set_model("bench");
  req.mutable_spec()->set_training_file(t.file_id);
  req.mutable_spec()->mutable_hyperparameters()->set_max_steps(1000000);
  req.mutable_spec()->mutable_resources()->set_gpus(0);
  v1::CreateJobResponse resp;
  grpc::ClientContext ctx;
  Auth(ctx, t.key);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Status s = jobs.CreateJob(&ctx, req, &resp);
  if (id != nullptr) *id = resp.job().id();
  return s;
}

// The worker side, reduced to the protocol: register, hold the command
// stream, take A's jobs, report metric points for them.
class BenchWorker {
 public:
  explicit BenchWorker(std::shared_ptr<grpc::Channel> channel)
      : stub_(v1::WorkerService::NewStub(channel)) {}

  void Register(int slots) {
    v1::RegisterWorkerRequest req;
    req.mutable_capabilities()->set_hostname("bench-host");
    req.mutable_capabilities()->set_cpu_slots(slots);
    req.mutable_capabilities()->set_memory_bytes(int64_t{64} << 30);
    v1::RegisterWorkerResponse resp;
    grpc::ClientContext ctx;
    Auth(ctx, kWorkerKey);
    Check(stub_->RegisterWorker(&ctx, req, &resp), "RegisterWorker");
    id_ = resp.worker_id();
    reader_ = std::thread([this] { ReadCommands(); });
    heartbeat_ = std::thread([this] { Heartbeats(); });
  }

  // Waits for `n` assignments.
  std::vector<v1::AssignJobCommand> Take(int n) {
    std::unique_lock<std::mutex> l(mu_);
    if (!cv_.wait_for(l, std::chrono::seconds(60), [&] {
          return static_cast<int>(assigned_.size()) >= n;
        })) {
      Die("the jobs were not assigned within 60 s");
    }
    return assigned_;
  }

  // One ReportProgress of `n` points for `a`, continuing its steps. One
  // thread per job at a time.
  void Report(const v1::AssignJobCommand& a, int n) {
    int64_t* step_ptr;
    int64_t batch;
    {
      std::lock_guard<std::mutex> l(mu_);
      step_ptr = &steps_[a.job_id()];
      batch = ++batches_[a.job_id()];
    }
    int64_t& step = *step_ptr;
    v1::ReportProgressRequest req;
    req.set_worker_id(id_);
    req.set_job_id(a.job_id());
    req.set_attempt(a.attempt());
    req.set_batch_number(batch);
    for (int i = 0; i < n; ++i) {
      v1::MetricPoint* p = req.add_metrics();
      p->set_step(++step);
      p->set_train_loss(2.0 / static_cast<double>(1 + step));
      p->set_learning_rate(1e-4);
    }
    req.mutable_progress()->set_step(step);
    v1::ReportProgressResponse resp;
    grpc::ClientContext ctx;
    Auth(ctx, kWorkerKey);
    Check(stub_->ReportProgress(&ctx, req, &resp), "ReportProgress");
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
      if (stream_ctx_ != nullptr) stream_ctx_->TryCancel();
    }
    cv_.notify_all();
    reader_.join();
    heartbeat_.join();
  }

 private:
  void Heartbeats() {
    while (true) {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait_for(l, std::chrono::seconds(3));
      if (stop_) return;
      v1::HeartbeatRequest hb;
      hb.set_worker_id(id_);
      for (const v1::AssignJobCommand& a : assigned_) {
        v1::AttemptRef* r = hb.add_running_attempts();
        r->set_job_id(a.job_id());
        r->set_attempt(a.attempt());
      }
      l.unlock();
      v1::HeartbeatResponse hr;
      grpc::ClientContext hctx;
      Auth(hctx, kWorkerKey);
      (void)stub_->Heartbeat(&hctx, hb, &hr);
    }
  }

  void ReadCommands() {
    grpc::ClientContext ctx;
    Auth(ctx, kWorkerKey);
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
      stream_ctx_ = &ctx;
    }
    v1::StreamCommandsRequest req;
    req.set_worker_id(id_);
    auto reader = stub_->StreamCommands(&ctx, req);
    v1::WorkerCommand cmd;
    while (reader->Read(&cmd)) {
      if (!cmd.has_assign_job()) continue;
      std::lock_guard<std::mutex> l(mu_);
      // The scheduler replays held attempts when a stream opens, so an
      // attempt granted while this stream was opening arrives twice; like
      // the agent, take each attempt once (two reporters of one job would
      // send its batches out of order).
      const v1::AssignJobCommand& a = cmd.assign_job();
      if (std::any_of(assigned_.begin(), assigned_.end(),
                      [&](const v1::AssignJobCommand& b) {
                        return b.job_id() == a.job_id() &&
                               b.attempt() == a.attempt();
                      })) {
        continue;
      }
      assigned_.push_back(a);
      cv_.notify_all();
    }
    (void)reader->Finish();
    std::lock_guard<std::mutex> l(mu_);
    stream_ctx_ = nullptr;
  }

  std::unique_ptr<v1::WorkerService::Stub> stub_;
  std::string id_;
  std::thread reader_, heartbeat_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  grpc::ClientContext* stream_ctx_ = nullptr;
  std::vector<v1::AssignJobCommand> assigned_;
  // By job; guarded by mu_ (a job's entry is used by its reporter only;
  // std::map nodes do not move).
  std::map<std::string, int64_t> steps_;
  std::map<std::string, int64_t> batches_;
};

// What A's streams saw, summed over all of them.
struct FloodStats {
  std::atomic<int64_t> points{0};
  std::atomic<int64_t> truncated{0};
  std::atomic<int64_t> resumed{0};
  std::atomic<int64_t> refused{0};
  std::atomic<int64_t> gaps_or_repeats{0};
  std::atomic<int64_t> open{0};
};

// One of A's WatchJob streams on the callback client. After `truncated`
// it resumes from resume_after_sequence; it checks that every record it
// receives is the one after the last (no gap, no repeat).
class Watcher : public grpc::ClientReadReactor<v1::WatchJobResponse> {
 public:
  Watcher(v1::JobService::Stub* stub, std::string key, std::string job_id,
          bool batch, FloodStats* stats)
      : stub_(stub),
        key_(std::move(key)),
        job_id_(std::move(job_id)),
        batch_(batch),
        stats_(stats) {}

  void Open(std::optional<int64_t> after) {
    grpc::ClientContext* ctx;
    bool cancel;
    {
      std::lock_guard<std::mutex> l(mu_);
      contexts_.push_back(std::make_unique<grpc::ClientContext>());
      ctx = contexts_.back().get();
      cancel = stopping_;
    }
    Auth(*ctx, key_);
    req_.Clear();
    req_.set_job_id(job_id_);
    if (after) req_.set_after_sequence(*after);
    req_.set_batch_metrics(batch_);
    stub_->async()->WatchJob(ctx, &req_, this);
    StartRead(&msg_);
    StartCall();
    if (cancel) ctx->TryCancel();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows.
    if (msg_.has_truncated()) {
      resume_from_ = msg_.truncated().resume_after_sequence();
      stats_->truncated.fetch_add(1);
    } else if (msg_.has_job()) {
      if (!started_) {
        started_ = true;
        stats_->open.fetch_add(1);
        if (last_ < 0) last_ = msg_.sequence();
      }
    } else {
      int64_t n = 1;
      if (msg_.has_metrics()) n = msg_.metrics().points_size();
      // Events and points share the job's dense sequence.
      if (msg_.sequence() - n + 1 != last_ + 1) {
        stats_->gaps_or_repeats.fetch_add(1);
      }
      last_ = msg_.sequence();
      if (!msg_.has_event()) stats_->points.fetch_add(n);
    }
    StartRead(&msg_);
  }

  void OnDone(const grpc::Status& s) override {
    if (started_) stats_->open.fetch_sub(1);
    started_ = false;
    std::unique_lock<std::mutex> l(mu_);
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      stats_->refused.fetch_add(1);
    }
    if (resume_from_ >= 0 && !stopping_) {
      // The slow-consumer policy ended the stream: resume where it said.
      const int64_t after = resume_from_;
      resume_from_ = -1;
      stats_->resumed.fetch_add(1);
      last_ = after;
      l.unlock();
      Open(after);
      return;
    }
    done_ = true;
    cv_.notify_all();
  }

  void Stop() {
    std::unique_lock<std::mutex> l(mu_);
    stopping_ = true;
    if (!done_) contexts_.back()->TryCancel();
    cv_.wait(l, [this] { return done_; });
  }

 private:
  v1::JobService::Stub* stub_;
  const std::string key_;
  const std::string job_id_;
  const bool batch_;
  FloodStats* stats_;
  // Every call's context (the current one last), kept until the end.
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts_;
  v1::WatchJobRequest req_;
  v1::WatchJobResponse msg_;
  bool started_ = false;
  int64_t last_ = -1;
  int64_t resume_from_ = -1;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool done_ = false;
};

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

// CPU seconds (user + system) the process `pid` has used so far.
double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces) in parentheses.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string f;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stod(f);
    if (i == 15) stime = std::stod(f);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU share of `pid` and of this process over a phase, and the load.
struct CpuMeter {
  pid_t pid;
  double sched0, self0;
  absl::Time t0;
  explicit CpuMeter(pid_t p)
      : pid(p),
        sched0(CpuSeconds(p)),
        self0(CpuSeconds(getpid())),
        t0(absl::Now()) {}
  std::string Report() const {
    const double wall = absl::ToDoubleSeconds(absl::Now() - t0);
    double load = 0;
    std::ifstream("/proc/loadavg") >> load;
    return absl::StrFormat("cpu: scheduler=%.0f%% bench=%.0f%% loadavg=%.1f",
                           100 * (CpuSeconds(pid) - sched0) / wall,
                           100 * (CpuSeconds(getpid()) - self0) / wall, load);
  }
};

// B's closed loop for `seconds`: latencies of successful calls, failures.
std::vector<absl::Duration> MeasureB(v1::JobService::Stub& jobs,
                                     const Tenant& b, double seconds,
                                     int clients, int64_t* failed) {
  std::mutex mu;
  std::vector<absl::Duration> all;
  std::vector<std::thread> threads;
  const absl::Time end = absl::Now() + absl::Seconds(seconds);
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      std::vector<absl::Duration> mine;
      int64_t bad = 0;
      while (absl::Now() < end) {
        const absl::Time t0 = absl::Now();
        grpc::Status s = CreateJob(jobs, b);
        if (s.ok()) {
          mine.push_back(absl::Now() - t0);
        } else {
          ++bad;
          std::fprintf(stderr, "B's CreateJob failed: %s\n",
                       s.error_message().c_str());
        }
      }
      std::lock_guard<std::mutex> l(mu);
      all.insert(all.end(), mine.begin(), mine.end());
      *failed += bad;
    });
  }
  for (std::thread& t : threads) t.join();
  return all;
}

void Print(const char* phase, std::vector<absl::Duration> v, int64_t failed,
           double seconds) {
  if (v.empty()) {
    std::printf("%s: B CreateJob n=0 failed=%lld\n", phase,
                static_cast<long long>(failed));
    return;
  }
  std::sort(v.begin(), v.end());
  auto pct = [&](double p) {
    return Ms(v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))]);
  };
  std::printf(
      "%s: B CreateJob n=%zu (%.0f/s) p50=%.2fms p90=%.2fms p99=%.2fms "
      "max=%.2fms failed=%lld\n",
      phase, v.size(), v.size() / seconds, pct(0.50), pct(0.90), pct(0.99),
      Ms(v.back()), static_cast<long long>(failed));
}

int Run() {
  const bool smoke = absl::GetFlag(FLAGS_smoke);
  const int streams = smoke ? 20 : absl::GetFlag(FLAGS_streams);
  const int a_jobs = smoke ? 2 : absl::GetFlag(FLAGS_a_jobs);
  const double seconds = smoke ? 0.5 : absl::GetFlag(FLAGS_seconds);
  const int points_per_second = absl::GetFlag(FLAGS_points_per_second);
  const int report_ms = std::max(1, absl::GetFlag(FLAGS_report_ms));
  const int channels = std::max(1, absl::GetFlag(FLAGS_channels));
  const int b_clients = std::max(1, absl::GetFlag(FLAGS_b_clients));

  const std::string dir = std::filesystem::temp_directory_path() /
                          absl::StrCat("ftune-noisy-bench-", getpid());
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
  const Tenant a = MakeTenant(*admin, *files, "tenant-a");
  const Tenant b = MakeTenant(*admin, *files, "tenant-b");

  // A's jobs, taken by the worker (it has exactly that many slots, so B's
  // jobs stay QUEUED).
  BenchWorker worker(channel);
  std::vector<std::string> a_ids;
  for (int i = 0; i < a_jobs; ++i) {
    std::string id;
    Check(CreateJob(*jobs, a, &id), "A's CreateJob");
    a_ids.push_back(id);
  }
  worker.Register(a_jobs);
  const std::vector<v1::AssignJobCommand> assigned = worker.Take(a_jobs);

  std::printf(
      "noisy_tenant_bench: scheduler=%s streams=%d a_jobs=%d "
      "points_per_second=%d b_clients=%d phase=%.1fs\n",
      absl::GetFlag(FLAGS_scheduler).c_str(), streams, a_jobs,
      points_per_second, b_clients, seconds);

  // Phase 1: B alone.
  int64_t failed_alone = 0;
  {
    CpuMeter cpu(scheduler.pid);
    Print("alone", MeasureB(*jobs, b, seconds, b_clients, &failed_alone),
          failed_alone, seconds);
    std::printf("alone: %s\n", cpu.Report().c_str());
  }

  // Phase 2: A's flood.
  std::vector<std::shared_ptr<grpc::Channel>> stream_channels;
  std::vector<std::unique_ptr<v1::JobService::Stub>> stubs;
  for (int c = 0; c < channels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("ftune.bench_channel", c);  // Its own connection.
    stream_channels.push_back(grpc::CreateCustomChannel(
        scheduler.address, grpc::InsecureChannelCredentials(), args));
    stubs.push_back(v1::JobService::NewStub(stream_channels.back()));
  }
  FloodStats stats;
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int i = 0; i < streams; ++i) {
    watchers.push_back(
        std::make_unique<Watcher>(stubs[i % channels].get(), a.key,
                                  a_ids[static_cast<size_t>(i) % a_ids.size()],
                                  absl::GetFlag(FLAGS_batch_metrics), &stats));
    watchers.back()->Open(std::nullopt);
  }
  // Every stream has its first snapshot (or was refused).
  const absl::Time open_deadline = absl::Now() + absl::Seconds(60);
  while (stats.open.load() + stats.refused.load() < streams &&
         absl::Now() < open_deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  // Each of A's jobs reports its share of points_per_second every
  // report_ms on a thread of its own, as one worker agent per job would.
  std::atomic<bool> stop_reports{false};
  std::vector<std::thread> reporters;
  for (const v1::AssignJobCommand& job : assigned) {
    reporters.emplace_back([&, job] {
      const double per_tick = static_cast<double>(points_per_second) *
                              report_ms / 1000.0 /
                              static_cast<double>(assigned.size());
      double owed = 0;
      absl::Time tick = absl::Now();
      while (!stop_reports.load()) {
        owed += per_tick;
        if (owed >= 1) {
          const int n = static_cast<int>(owed);
          worker.Report(job, n);
          owed -= n;
        }
        tick += absl::Milliseconds(report_ms);
        absl::SleepFor(tick - absl::Now());
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(500));  // Let the flood settle.
  const int64_t points_before = stats.points.load();
  const absl::Time flood_start = absl::Now();
  const CpuMeter flood_cpu(scheduler.pid);
  int64_t failed_flood = 0;
  std::vector<absl::Duration> flood =
      MeasureB(*jobs, b, seconds, b_clients, &failed_flood);
  const double flood_seconds = absl::ToDoubleSeconds(absl::Now() - flood_start);
  const int64_t points_during = stats.points.load() - points_before;
  stop_reports = true;
  for (std::thread& t : reporters) t.join();
  const std::string flood_cpu_report = flood_cpu.Report();
  Print("flood", std::move(flood), failed_flood, seconds);
  std::printf("flood: %s\n", flood_cpu_report.c_str());
  std::printf(
      "flood: A streams open=%lld refused=%lld; A received %.0f points/s "
      "(%.0f per stream per s); truncated=%lld resumed=%lld "
      "gaps_or_repeats=%lld\n",
      static_cast<long long>(stats.open.load()),
      static_cast<long long>(stats.refused.load()),
      points_during / flood_seconds,
      points_during / flood_seconds / std::max(1, streams),
      static_cast<long long>(stats.truncated.load()),
      static_cast<long long>(stats.resumed.load()),
      static_cast<long long>(stats.gaps_or_repeats.load()));
  for (auto& w : watchers) w->Stop();
  worker.Stop();
  scheduler.Stop();
  std::filesystem::remove_all(dir);
  const bool ok = failed_alone == 0 && failed_flood == 0 &&
                  stats.gaps_or_repeats.load() == 0;
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace ftune::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return ftune::bench::Run();
}
