// rpc_bench: durable job submissions over gRPC against the real
// ftune-scheduler binary.
//
// It starts build/bin/ftune-scheduler on port 0 over a fresh SQLite file
// (synchronous=FULL, on local disk: --workdir, default $TMPDIR) with an admin
// credential and one registered model, creates a tenant, an API key and an
// uploaded training file through the public API, then keeps --clients
// CreateJob calls in flight (gRPC callback client, over --channels
// connections) for --seconds (or until --jobs are acknowledged). It prints
// jobs/s and the latency distribution of the measured window, the CPU the
// scheduler, the bench and the whole machine used meanwhile, then checks
// that every acknowledged job exists exactly once (ListJobs, after killing
// the scheduler with SIGKILL and starting it again on the same database,
// so only what was committed to disk counts).
//
//   rpc_bench [--clients=64] [--seconds=10] [--warmup_seconds=1]
//             [--channels=4] [--jobs=0] [--restart_check=true]
//
// Exit status: 0 when every call succeeded and the check passed, 1
// otherwise, 2 when the set-up failed.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "ftune/v1/admin.grpc.pb.h"
#include "ftune/v1/file.grpc.pb.h"
#include "ftune/v1/job_service.grpc.pb.h"
#ifdef FTUNE_RPC_BENCH_SCRAPE
#include "tests/testing/http_client.h"
#endif

ABSL_FLAG(int, clients, 64, "CreateJob calls kept in flight");
ABSL_FLAG(double, seconds, 10, "measured duration (after the warm-up)");
ABSL_FLAG(double, warmup_seconds, 1,
          "duration before the measured window (calls made then are "
          "verified but not counted)");
ABSL_FLAG(double, rate, 0,
          "open loop: offer this many CreateJob calls per second (at most "
          "--clients in flight; latency counts from when a call was due); "
          "0: closed loop, each client calls again as soon as it is answered");
ABSL_FLAG(int64_t, jobs, 0,
          "stop after this many acknowledged jobs instead (0: by time)");
ABSL_FLAG(int, channels, 4, "gRPC connections the clients share");
ABSL_FLAG(std::string, scheduler, "",
          "ftune-scheduler binary (default: next to this binary)");
ABSL_FLAG(std::string, workdir, "",
          "directory for the database, storage and logs (default: a fresh "
          "directory in $TMPDIR or /tmp); must be on local disk");
ABSL_FLAG(bool, keep, false, "keep the work directory");
ABSL_FLAG(bool, restart_check, true,
          "SIGKILL the scheduler after the run and verify on a restarted one");
ABSL_FLAG(std::vector<std::string>, server_flags, {},
          "extra flags for ftune-scheduler, comma-separated");

namespace ftune::bench {
namespace {

#ifdef FTUNE_RPC_BENCH_SCRAPE
// The upper bound of the bucket holding quantile `q` of histogram `name`
// (with `labels`, e.g. "{service=...,method=...}" minus the closing brace)
// in a /metrics text; -1 if absent.
double BucketQuantile(const std::string& text, const std::string& series,
                      double q) {
  std::vector<std::pair<double, double>> buckets;  // (le, cumulative count)
  const std::string prefix = series + "_bucket{";
  size_t pos = 0;
  std::string labels_prefix;
  const size_t brace = series.find('{');
  std::string name = series;
  if (brace != std::string::npos) {
    name = series.substr(0, brace);
    labels_prefix = series.substr(brace + 1);  // "a=\"x\",b=\"y\""
  }
  const std::string want = name + "_bucket{" +
                           (labels_prefix.empty() ? "" : labels_prefix + ",") +
                           "le=\"";
  while ((pos = text.find(want, pos)) != std::string::npos) {
    pos += want.size();
    const size_t quote = text.find('"', pos);
    const std::string le = text.substr(pos, quote - pos);
    const size_t space = text.find(' ', quote);
    const size_t eol = text.find('\n', space);
    const double count = std::stod(text.substr(space + 1, eol - space - 1));
    buckets.emplace_back(le == "+Inf" ? INFINITY : std::stod(le), count);
  }
  if (buckets.empty() || buckets.back().second <= 0) return -1;
  const double target = q * buckets.back().second;
  for (const auto& [le, count] : buckets) {
    if (count >= target) return le;
  }
  return INFINITY;
}

// Where the time went, from the scheduler's own histograms: CreateJob as
// the server timed it and the SQLite group commits behind it.
void PrintServerSide(const std::string& metrics_address) {
  const size_t colon = metrics_address.rfind(':');
  if (colon == std::string::npos) return;
  absl::StatusOr<ftune::testing::HttpResponse> scrape = ftune::testing::HttpGet(
      metrics_address.substr(0, colon),
      std::stoi(metrics_address.substr(colon + 1)), "/metrics");
  if (!scrape.ok() || scrape->status != 200) return;
  const std::string& t = scrape->body;
  const std::string create =
      "ftune_grpc_server_handling_seconds{service=\"ftune.v1.JobService\","
      "method=\"CreateJob\"";
  std::printf(
      "  server (bucket bounds, whole run): CreateJob p50<=%gms p99<=%gms; "
      "commit p50<=%gms p99<=%gms; writes/commit p50<=%g p99<=%g\n",
      1000 * BucketQuantile(t, create, 0.5),
      1000 * BucketQuantile(t, create, 0.99),
      1000 * BucketQuantile(t, "ftune_store_commit_seconds", 0.5),
      1000 * BucketQuantile(t, "ftune_store_commit_seconds", 0.99),
      BucketQuantile(t, "ftune_store_commit_writes", 0.5),
      BucketQuantile(t, "ftune_store_commit_writes", 0.99));
}
#else
void PrintServerSide(const std::string&) {}
#endif

using Clock = std::chrono::steady_clock;
constexpr char kAdminKey[] = "rpc-bench-admin-credential-0123456789";

// ------------------------------------------------------------ process ----

// The scheduler as a child process; stdout is read for grpc_address=.
class Scheduler {
 public:
  ~Scheduler() { Kill(SIGKILL); }

  bool Start(const std::vector<std::string>& argv, const std::string& log) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return false;
    std::vector<char*> args;
    std::vector<std::string> copy = argv;
    for (auto& s : copy) args.push_back(s.data());
    args.push_back(nullptr);
    const int err = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], 1);
      if (err >= 0) dup2(err, 2);
      execv(args[0], args.data());
      _exit(127);
    }
    close(fds[1]);
    if (err >= 0) close(err);
    out_ = fds[0];
    return pid_ > 0;
  }

  // The rest of the first stdout line starting with `prefix`, or "".
  std::string ReadLineWithPrefix(const std::string& prefix, int timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < deadline) {
      size_t nl;
      while ((nl = buffer_.find('\n')) != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        if (absl::StartsWith(line, prefix)) return line.substr(prefix.size());
      }
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      const ssize_t n = read(out_, buf, sizeof(buf));
      if (n <= 0) return "";
      buffer_.append(buf, static_cast<size_t>(n));
    }
    return "";
  }

  // Signals and reaps; the wait status.
  int Kill(int sig) {
    if (pid_ <= 0) return 0;
    kill(pid_, sig);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    if (out_ >= 0) close(out_);
    out_ = -1;
    buffer_.clear();
    return status;
  }

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string buffer_;
};

// CPU seconds (user + system) of a process from /proc/<pid>/stat.
double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  const size_t close_paren = text.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::vector<std::string> f =
      absl::StrSplit(text.substr(close_paren + 2), ' ');
  // Fields 14 and 15 (utime, stime) are at 11 and 12 after the state.
  if (f.size() < 13) return 0;
  return (std::stod(f[11]) + std::stod(f[12])) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

// (busy, total) jiffies of all CPUs from /proc/stat.
std::pair<double, double> MachineCpu() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;
  double v[10] = {};
  double total = 0;
  for (double& x : v) {
    in >> x;
    total += x;
  }
  // idle + iowait are not busy.
  return {total - v[3] - v[4], total};
}

double SelfCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// ------------------------------------------------------------- set-up ----

void WriteText(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

std::string StatusText(const grpc::Status& st) {
  return absl::StrCat(st.error_code(), " ", st.error_message());
}

template <typename Fn>
grpc::Status Call(const std::string& key, Fn fn) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + key);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  return fn(&ctx);
}

struct Tenant {
  std::string key;
  std::string file_id;
};

// A tenant, its API key and an uploaded training file, through the API.
bool MakeTenant(const std::shared_ptr<grpc::Channel>& channel, Tenant* out) {
  auto admin = v1::AdminService::NewStub(channel);
  v1::CreateTenantRequest treq;
  treq.set_display_name("bench");
  v1::Tenant tenant;
  grpc::Status st = Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin->CreateTenant(c, treq, &tenant);
  });
  if (!st.ok()) {
    std::fprintf(stderr, "CreateTenant: %s\n", StatusText(st).c_str());
    return false;
  }
  v1::CreateApiKeyRequest kreq;
  kreq.set_tenant_id(tenant.id());
  kreq.set_display_name("rpc_bench");
  v1::CreateApiKeyResponse kresp;
  st = Call(kAdminKey, [&](grpc::ClientContext* c) {
    return admin->CreateApiKey(c, kreq, &kresp);
  });
  if (!st.ok()) {
    std::fprintf(stderr, "CreateApiKey: %s\n", StatusText(st).c_str());
    return false;
  }
  out->key = kresp.secret();

  std::string data;
  for (int i = 0; i < 100; ++i) {
    absl::StrAppend(&data,
                    "{\"messages\": [{\"role\": \"user\", \"content\": "
                    "\"What is ",
                    i, " + 1?\"}, {\"role\": \"assistant\", \"content\": \"",
                    i + 1, "\"}]}\n");
  }
  auto files = v1::FileService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + out->key);
  v1::File file;
  auto writer = files->UploadFile(&ctx, &file);
  v1::UploadFileRequest req;
  req.mutable_metadata()->set_filename("train.jsonl");
  req.mutable_metadata()->set_purpose(v1::FILE_PURPOSE_FINE_TUNE_TRAIN);
  writer->Write(req);
  req.set_chunk(data);
  writer->Write(req);
  writer->WritesDone();
  st = writer->Finish();
  if (!st.ok()) {
    std::fprintf(stderr, "UploadFile: %s\n", StatusText(st).c_str());
    return false;
  }
  out->file_id = file.id();
  return true;
}

// ---------------------------------------------------------------- run ----

struct Ack {
  std::string request_id;
  std::string job_id;
};

// Keeps CreateJob calls in flight. Closed loop (rate 0): each of `clients`
// issues its next call when the previous one returns. Open loop (rate > 0):
// call k is due at start + k / rate, whatever the answers; at most `clients`
// are in flight, a due call waits for a free slot, and its latency counts
// from when it was due (no coordinated omission).
class Load {
 public:
  Load(std::vector<std::shared_ptr<grpc::Channel>> channels, Tenant tenant,
       int clients, double rate, Clock::time_point start,
       Clock::time_point measure_from, Clock::time_point until,
       int64_t max_jobs)
      : tenant_(std::move(tenant)),
        start_(start),
        measure_from_(measure_from),
        until_(until),
        max_jobs_(max_jobs),
        clients_(clients),
        rate_(rate) {
    for (auto& ch : channels) stubs_.push_back(v1::JobService::NewStub(ch));
  }

  void Run() {
    if (rate_ <= 0) {
      for (int c = 0; c < clients_; ++c) Issue(c, Clock::now());
    } else {
      Pace();
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return in_flight_ == 0; });
  }

  std::vector<Ack> acks;
  std::vector<double> latencies_ms;  // Calls due in the window.
  int64_t measured = 0;              // OK calls completed in the window.
  std::map<std::string, int64_t> errors;
  Clock::time_point last_completion;

 private:
  struct Pending {
    grpc::ClientContext ctx;
    v1::CreateJobRequest request;
    v1::CreateJobResponse response;
    Clock::time_point due;
    int client = 0;
  };

  bool WantMoreLocked(Clock::time_point now) const {
    return now < until_ &&
           (max_jobs_ <= 0 ||
            static_cast<int64_t>(acks.size()) + in_flight_ < max_jobs_);
  }

  void Pace() {
    const auto period = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(1.0 / rate_));
    for (int64_t k = 0;; ++k) {
      const Clock::time_point due = start_ + k * period;
      std::this_thread::sleep_until(due);
      int slot;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return in_flight_ < clients_; });
        if (!WantMoreLocked(due)) return;
        slot = static_cast<int>(k % clients_);
      }
      Issue(slot, due);
    }
  }

  void Issue(int client, Clock::time_point due) {
    auto* p = new Pending();
    {
      std::lock_guard<std::mutex> lock(mu_);
      const int64_t n = issued_++;
      p->request.set_request_id(absl::StrCat("c", client, "-", n));
      ++in_flight_;
    }
    p->client = client;
    p->due = due;
    p->request.mutable_spec()->set_model("tiny");
    p->request.mutable_spec()->set_training_file(tenant_.file_id);
    (*p->request.mutable_spec()->mutable_labels())["bench"] = "rpc";
    p->ctx.AddMetadata("authorization", "Bearer " + tenant_.key);
    p->ctx.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(60));
    stubs_[client % stubs_.size()]->async()->CreateJob(
        &p->ctx, &p->request, &p->response,
        [this, p](grpc::Status st) { Done(p, st); });
  }

  void Done(Pending* p, const grpc::Status& st) {
    const Clock::time_point now = Clock::now();
    bool again;
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_completion = now;
      if (st.ok()) {
        acks.push_back({p->request.request_id(), p->response.job().id()});
        if (p->due >= measure_from_ && p->due < until_) {
          latencies_ms.push_back(
              std::chrono::duration<double, std::milli>(now - p->due).count());
        }
        if (now >= measure_from_ && now <= until_) ++measured;
      } else {
        ++errors[StatusText(st)];
      }
      --in_flight_;
      again = rate_ <= 0 && WantMoreLocked(now);
      if (again) ++in_flight_;  // Held for the next call of this client.
    }
    const int client = p->client;
    delete p;
    if (again) Issue(client, Clock::now());
    std::lock_guard<std::mutex> lock(mu_);
    if (again) --in_flight_;  // The hold: Issue counted the new call.
    cv_.notify_all();
  }

  const Tenant tenant_;
  const Clock::time_point start_;
  const Clock::time_point measure_from_;
  const Clock::time_point until_;
  const int64_t max_jobs_;
  const int clients_;
  const double rate_;
  std::vector<std::unique_ptr<v1::JobService::Stub>> stubs_;
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t issued_ = 0;
  int in_flight_ = 0;
};

// Every job of the tenant, by id, through ListJobs.
bool ListAll(const std::shared_ptr<grpc::Channel>& channel,
             const std::string& key, std::vector<v1::Job>* out) {
  auto jobs = v1::JobService::NewStub(channel);
  std::string token;
  do {
    v1::ListJobsRequest req;
    req.set_page_size(1000);
    req.set_page_token(token);
    v1::ListJobsResponse resp;
    grpc::Status st = Call(key, [&](grpc::ClientContext* c) {
      return jobs->ListJobs(c, req, &resp);
    });
    if (!st.ok()) {
      std::fprintf(stderr, "ListJobs: %s\n", StatusText(st).c_str());
      return false;
    }
    for (auto& j : *resp.mutable_jobs()) out->push_back(std::move(j));
    token = resp.next_page_token();
  } while (!token.empty());
  return true;
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  return sorted[std::min(sorted.size() - 1,
                         static_cast<size_t>(p * sorted.size()))];
}

int Run(const std::string& argv0) {
  namespace fs = std::filesystem;
  std::string scheduler = absl::GetFlag(FLAGS_scheduler);
  if (scheduler.empty()) {
    scheduler =
        (fs::canonical("/proc/self/exe").parent_path() / "ftune-scheduler")
            .string();
  }
  if (!fs::exists(scheduler)) {
    std::fprintf(stderr, "%s: no scheduler binary at %s (--scheduler)\n",
                 argv0.c_str(), scheduler.c_str());
    return 2;
  }
  fs::path work = absl::GetFlag(FLAGS_workdir);
  if (work.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = absl::StrCat(tmp ? tmp : "/tmp", "/rpc_bench.XXXXXX");
    if (mkdtemp(templ.data()) == nullptr) {
      std::perror("mkdtemp");
      return 2;
    }
    work = templ;
  }
  fs::create_directories(work);
  WriteText(work / "storage/models/tiny/config.json",
            "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, "
            "\"intermediate_size\": 128, \"num_hidden_layers\": 2, "
            "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
            "\"vocab_size\": 256, \"max_position_embeddings\": 512, "
            "\"torch_dtype\": \"float32\"}");
  WriteText(work / "storage/models/tiny/tokenizer_config.json",
            "{\"chat_template\": \"{% for m in messages %}<|im_start|>"
            "{{ m.role }}{% endfor %}\"}");
  WriteText(work / "scheduler.json", "{\"models\": [{\"name\": \"tiny\"}]}");
  WriteText(work / "admin.key", std::string(kAdminKey) + "\n");
  std::vector<std::string> args = {
      scheduler,
      "--grpc_address=127.0.0.1:0",
      "--metrics_address=127.0.0.1:0",
      "--db=" + (work / "sched.db").string(),
      "--storage_root=" + (work / "storage").string(),
      "--config=" + (work / "scheduler.json").string(),
      "--admin_key_file=" + (work / "admin.key").string()};
  for (const std::string& f : absl::GetFlag(FLAGS_server_flags)) {
    args.push_back(f);
  }
  const std::string log = (work / "scheduler.log").string();

  Scheduler server;
  if (!server.Start(args, log)) {
    std::perror("starting the scheduler");
    return 2;
  }
  std::string address = server.ReadLineWithPrefix("grpc_address=", 60000);
  if (address.empty()) {
    std::fprintf(stderr, "the scheduler did not start; see %s\n", log.c_str());
    return 2;
  }
  const std::string metrics_address =
      server.ReadLineWithPrefix("metrics_address=", 10000);
  auto setup_channel =
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  Tenant tenant;
  if (!MakeTenant(setup_channel, &tenant)) return 2;

  {
    // One job first, so a bad set-up fails here and not 10^5 times.
    auto stub = v1::JobService::NewStub(setup_channel);
    v1::CreateJobRequest req;
    req.mutable_spec()->set_model("tiny");
    req.mutable_spec()->set_training_file(tenant.file_id);
    req.set_validate_only(true);
    v1::CreateJobResponse resp;
    grpc::Status st = Call(tenant.key, [&](grpc::ClientContext* c) {
      return stub->CreateJob(c, req, &resp);
    });
    if (!st.ok()) {
      std::fprintf(stderr, "CreateJob (validate_only): %s\n",
                   StatusText(st).c_str());
      return 2;
    }
  }

  const int nchannels = std::max(1, absl::GetFlag(FLAGS_channels));
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < nchannels; ++i) {
    grpc::ChannelArguments ca;
    // Distinct arguments: separate connections instead of one shared one.
    ca.SetInt("ftune.bench_channel", i);
    ca.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channels.push_back(grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), ca));
    channels.back()->WaitForConnected(std::chrono::system_clock::now() +
                                      std::chrono::seconds(10));
  }

  const int clients = std::max(1, absl::GetFlag(FLAGS_clients));
  const int64_t max_jobs = absl::GetFlag(FLAGS_jobs);
  const auto warmup =
      std::chrono::duration<double>(absl::GetFlag(FLAGS_warmup_seconds));
  const auto measured = std::chrono::duration<double>(
      max_jobs > 0 ? 3600.0 : absl::GetFlag(FLAGS_seconds));
  const Clock::time_point start = Clock::now();
  const Clock::time_point from =
      start + std::chrono::duration_cast<Clock::duration>(warmup);
  const Clock::time_point until =
      from + std::chrono::duration_cast<Clock::duration>(measured);

  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  // CPU counters are read at the window's edges from a helper thread.
  double server_cpu[2] = {0, 0}, self_cpu[2] = {0, 0};
  std::pair<double, double> machine[2];
  std::thread sampler([&] {
    std::this_thread::sleep_until(from);
    server_cpu[0] = ProcessCpuSeconds(server.pid());
    self_cpu[0] = SelfCpuSeconds();
    machine[0] = MachineCpu();
    if (max_jobs <= 0) {
      std::this_thread::sleep_until(until);
      server_cpu[1] = ProcessCpuSeconds(server.pid());
      self_cpu[1] = SelfCpuSeconds();
      machine[1] = MachineCpu();
    }
  });
  Load run(channels, tenant, clients, absl::GetFlag(FLAGS_rate), start, from,
           until, max_jobs);
  run.Run();
  sampler.join();
  if (max_jobs > 0) {
    server_cpu[1] = ProcessCpuSeconds(server.pid());
    self_cpu[1] = SelfCpuSeconds();
    machine[1] = MachineCpu();
  }
  const double window =
      max_jobs > 0
          ? std::chrono::duration<double>(run.last_completion - from).count()
          : measured.count();

  std::sort(run.latencies_ms.begin(), run.latencies_ms.end());
  int64_t failed = 0;
  for (const auto& [what, n] : run.errors) failed += n;
  const double ncpu = static_cast<double>(sysconf(_SC_NPROCESSORS_ONLN));
  const double machine_busy =
      (machine[1].first - machine[0].first) /
      std::max(1.0, machine[1].second - machine[0].second);
  std::printf(
      "rpc_bench: clients=%d rate=%s channels=%d window=%.2fs "
      "acknowledged=%zu failed=%lld\n"
      "  jobs/s=%.0f  p50=%.2fms  p90=%.2fms  p99=%.2fms  max=%.2fms\n"
      "  cpu: scheduler=%.0f%% bench=%.0f%% machine_busy=%.0f%% of %d cores  "
      "loadavg_before=%.2f\n",
      clients,
      absl::GetFlag(FLAGS_rate) > 0
          ? absl::StrCat(absl::GetFlag(FLAGS_rate), "/s").c_str()
          : "closed-loop",
      nchannels, window, run.acks.size(), static_cast<long long>(failed),
      run.measured / window, Percentile(run.latencies_ms, 0.50),
      Percentile(run.latencies_ms, 0.90), Percentile(run.latencies_ms, 0.99),
      run.latencies_ms.empty() ? 0.0 : run.latencies_ms.back(),
      100 * (server_cpu[1] - server_cpu[0]) / window,
      100 * (self_cpu[1] - self_cpu[0]) / window, 100 * machine_busy,
      static_cast<int>(ncpu), load[0]);
  for (const auto& [what, n] : run.errors) {
    std::printf("  error x%lld: %s\n", static_cast<long long>(n), what.c_str());
  }

  PrintServerSide(metrics_address);

  // ---- verification ----
  if (absl::GetFlag(FLAGS_restart_check)) {
    server.Kill(SIGKILL);
    if (!server.Start(args, log)) return 2;
    address = server.ReadLineWithPrefix("grpc_address=", 60000);
    if (address.empty()) {
      std::fprintf(stderr, "the scheduler did not restart; see %s\n",
                   log.c_str());
      return 2;
    }
  }
  std::vector<v1::Job> listed;
  if (!ListAll(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()),
               tenant.key, &listed)) {
    return 1;
  }
  std::map<std::string, int> seen;  // job id -> times listed
  std::map<std::string, std::string> request_of;
  for (const v1::Job& j : listed) {
    ++seen[j.id()];
    request_of[j.id()] = j.request_id();
  }
  int64_t missing = 0, duplicated = 0, mismatched = 0;
  std::map<std::string, int> acked_ids;
  for (const Ack& a : run.acks) {
    ++acked_ids[a.job_id];
    auto it = seen.find(a.job_id);
    if (it == seen.end()) {
      ++missing;
    } else if (it->second != 1) {
      ++duplicated;
    } else if (request_of[a.job_id] != a.request_id) {
      ++mismatched;
    }
  }
  for (const auto& [id, n] : acked_ids) {
    if (n != 1) ++duplicated;  // Two acknowledgements named one job.
  }
  const int64_t extra = static_cast<int64_t>(seen.size()) -
                        static_cast<int64_t>(acked_ids.size());
  const bool ok = missing == 0 && duplicated == 0 && mismatched == 0;
  std::printf(
      "  verify%s: listed=%zu acknowledged=%zu missing=%lld duplicated=%lld "
      "wrong_request_id=%lld unacknowledged_but_stored=%lld -> %s\n",
      absl::GetFlag(FLAGS_restart_check) ? " (after SIGKILL + restart)" : "",
      listed.size(), run.acks.size(), static_cast<long long>(missing),
      static_cast<long long>(duplicated), static_cast<long long>(mismatched),
      static_cast<long long>(extra), ok ? "OK" : "FAILED");

  server.Kill(SIGTERM);
  if (!absl::GetFlag(FLAGS_keep) && absl::GetFlag(FLAGS_workdir).empty()) {
    std::error_code ec;
    fs::remove_all(work, ec);
  } else {
    std::printf("  workdir: %s\n", work.c_str());
  }
  return ok && failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace ftune::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Durable CreateJob throughput and latency over gRPC against a real "
      "ftune-scheduler.\nUsage: rpc_bench [--clients=64] [--seconds=10] ...");
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  return ftune::bench::Run(argv[0]);
}
