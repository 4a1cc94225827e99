// store_bench: N threads doing durable CreateJob against a SqliteStore on a
// fresh database; prints creates/s, p50/p99/max latency and the average
// group-commit batch size.
//
//   store_bench --threads=32 --seconds=5 [--db=/path/x.db] [--sync=full]
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/store/sqlite_store.h"

ABSL_FLAG(int, threads, 32, "concurrent writer threads");
ABSL_FLAG(double, seconds, 5, "measured duration");
ABSL_FLAG(std::string, db, "",
          "database file (default: a fresh file in $TMPDIR)");
ABSL_FLAG(std::string, sync, "full", "synchronous mode: full or normal");
ABSL_FLAG(int, spec_bytes, 512, "size of the opaque job spec");

namespace ftune::store {
namespace {

int Run() {
  std::string path = absl::GetFlag(FLAGS_db);
  if (path.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    path = absl::StrCat(tmp ? tmp : "/tmp", "/store_bench_", getpid(), ".db");
  }
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::remove(absl::StrCat(path, suffix).c_str());
  }
  SqliteStoreOptions options;
  options.path = path;
  options.synchronous_full = absl::GetFlag(FLAGS_sync) != "normal";
  auto opened = SqliteStore::Open(options);
  if (!opened.ok()) {
    std::fprintf(stderr, "open %s: %s\n", path.c_str(),
                 opened.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<SqliteStore> store = std::move(opened).value();
  core::Tenant tenant;
  tenant.name = "bench";
  tenant = *store->CreateTenant(tenant);
  (void)store->UpsertModel(core::Model{"tiny", "models/tiny", {}, {}});
  core::FileRecord file;
  file.tenant_id = tenant.id;
  file.status = core::FileStatus::kReady;
  file.storage_path = "files/bench";
  file = *store->CreateFile(file);

  const int threads = absl::GetFlag(FLAGS_threads);
  const absl::Duration duration = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  const std::string spec(absl::GetFlag(FLAGS_spec_bytes), 's');
  std::vector<std::vector<double>> latencies_ms(threads);
  std::atomic<int> errors{0};
  const int64_t commits_before = store->commit_count();
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      int64_t n = 0;
      while (absl::Now() < end) {
        core::Job job;
        job.tenant_id = tenant.id;
        job.request_id = absl::StrCat("t", t, "-", n++);
        job.spec = spec;
        job.model = "tiny";
        job.training_file_id = file.id;
        job.labels = {{"bench", "1"}};
        const absl::Time t0 = absl::Now();
        auto r = store->CreateJob(std::move(job));
        latencies_ms[t].push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
        if (!r.ok() || !r->created) errors.fetch_add(1);
      }
    });
  }
  for (auto& w : workers) w.join();
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  const int64_t commits = store->commit_count() - commits_before;
  std::vector<double> all;
  for (auto& v : latencies_ms) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all.empty() ? 0.0
                       : all[std::min(all.size() - 1,
                                      static_cast<size_t>(p * all.size()))];
  };
  std::printf(
      "store_bench: threads=%d sync=%s creates=%zu errors=%d seconds=%.2f\n"
      "  creates/s=%.0f  p50=%.2fms  p99=%.2fms  max=%.2fms  commits=%lld  "
      "avg_batch=%.1f\n",
      threads, options.synchronous_full ? "FULL" : "NORMAL", all.size(),
      errors.load(), elapsed, all.size() / elapsed, pct(0.50), pct(0.99),
      all.empty() ? 0.0 : all.back(), static_cast<long long>(commits),
      commits ? static_cast<double>(all.size()) / commits : 0.0);
  store.reset();
  if (absl::GetFlag(FLAGS_db).empty()) {
    for (const char* suffix : {"", "-wal", "-shm"}) {
      std::remove(absl::StrCat(path, suffix).c_str());
    }
  }
  return errors.load() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace ftune::store

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return ftune::store::Run();
}
