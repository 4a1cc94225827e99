#include "common/metrics/http_server.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/metrics/process_collector.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/http_client.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune::metrics {
namespace {

using ::ftune::testing::HttpGet;
using ::ftune::testing::HttpRequest;
using ::ftune::testing::HttpResponse;
using ::ftune::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr char kPromtool[] = "/usr/bin/promtool";

struct PromtoolResult {
  int exit_code = -1;
  std::string output;
};

// Runs `promtool check metrics` on `text` (a real scrape) and returns its
// exit status and combined output.
PromtoolResult RunPromtool(const std::string& text) {
  ftune::testing::TempDir dir;
  const std::string in = dir.Sub("scrape.txt");
  const std::string out = dir.Sub("promtool.out");
  std::ofstream(in) << text;
  const std::string command =
      absl::StrCat(kPromtool, " check metrics < ", in, " > ", out, " 2>&1");
  PromtoolResult result;
  const int status = std::system(command.c_str());
  if (status != -1 && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  std::ifstream output(out);
  std::stringstream buffer;
  buffer << output.rdbuf();
  result.output = buffer.str();
  return result;
}

MetricsHttpServerOptions AnyPort() {
  MetricsHttpServerOptions options;
  options.listen_address = "127.0.0.1:0";
  return options;
}

// A registry with one of everything, including values that need escaping.
class ServedRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(
        CounterFamily * submitted,
        registry_.AddCounter("ftune_jobs_submitted_total",
                             "Jobs accepted, by tenant.\nSecond line \\.",
                             {"tenant"}));
    submitted->WithLabels({"tenant-a"})->Inc(3);
    submitted->WithLabels({"we\"ird\\ten\nant"})->Inc();
    ASSERT_OK_AND_ASSIGN(
        GaugeFamily * loss,
        registry_.AddGauge("ftune_job_train_loss", "Latest training loss.",
                           {"tenant", "job_id"}));
    loss->WithLabels({"tenant-a", "job-1"})->Set(2.3125);
    loss->WithLabels({"tenant-a", "job-2"})
        ->Set(std::numeric_limits<double>::quiet_NaN());
    ASSERT_OK_AND_ASSIGN(
        HistogramFamily * wait,
        registry_.AddHistogram("ftune_queue_wait_seconds",
                               "Time from submission to start.", {"tenant"},
                               ExponentialBuckets(1, 4, 6)));
    for (double v : {0.5, 3.0, 70.0, 5000.0}) {
      wait->WithLabels({"tenant-a"})->Observe(v);
    }
    ASSERT_OK_AND_ASSIGN(
        jobs_handle_, registry_.AddGaugeCallback(
                          "ftune_jobs", "Jobs by state.", {"tenant", "state"},
                          [](CallbackWriter& out) {
                            out.Set({"tenant-a", "QUEUED"}, 2);
                            out.Set({"tenant-a", "RUNNING"}, 1);
                          }));
    ASSERT_OK_AND_ASSIGN(
        process_handle_,
        registry_.AddCollector(std::make_unique<ProcessCollector>()));
  }

  Registry registry_;
  CollectorHandle jobs_handle_;
  CollectorHandle process_handle_;
};

TEST_F(ServedRegistryTest, ScrapeOverTcpPassesPromtool) {
  ASSERT_OK_AND_ASSIGN(auto server,
                       MetricsHttpServer::Start(AnyPort(), &registry_));
  ASSERT_GT(server->port(), 0);
  EXPECT_EQ(server->address(), absl::StrCat("127.0.0.1:", server->port()));

  ASSERT_OK_AND_ASSIGN(HttpResponse response,
                       HttpGet("127.0.0.1", server->port(), "/metrics"));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.headers["content-type"],
            "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(response.headers["content-length"],
            std::to_string(response.body.size()));
  const std::string& text = response.body;
  EXPECT_THAT(text, HasSubstr("ftune_jobs_submitted_total{tenant=\"tenant-a\"} "
                              "3\n"));
  EXPECT_THAT(text, HasSubstr("ftune_jobs_submitted_total{tenant=\"we\\\"ird"
                              "\\\\ten\\nant\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("# HELP ftune_jobs_submitted_total Jobs "
                              "accepted, by tenant.\\nSecond line \\\\.\n"));
  EXPECT_THAT(text, HasSubstr("ftune_job_train_loss{tenant=\"tenant-a\","
                              "job_id=\"job-2\"} NaN\n"));
  EXPECT_THAT(text, HasSubstr("ftune_queue_wait_seconds_bucket{tenant="
                              "\"tenant-a\",le=\"4\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("ftune_queue_wait_seconds_bucket{tenant="
                              "\"tenant-a\",le=\"1024\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("ftune_queue_wait_seconds_bucket{tenant="
                              "\"tenant-a\",le=\"+Inf\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("ftune_jobs{tenant=\"tenant-a\",state="
                              "\"QUEUED\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("\nprocess_resident_memory_bytes "));
  EXPECT_THAT(text, HasSubstr("\nprocess_open_fds "));

  if (access(kPromtool, X_OK) != 0) {
    GTEST_SKIP() << kPromtool
                 << " not found (Debian package `prometheus`); the scrape was "
                    "checked above but not by promtool";
  }
  const PromtoolResult result = RunPromtool(text);
  EXPECT_EQ(result.exit_code, 0) << result.output << "\n--- scrape:\n" << text;
}

TEST(PromtoolTest, RejectsWhatItShould) {
  // Shows that the check above could fail: promtool flags a counter without
  // "_total" and unparsable text.
  if (access(kPromtool, X_OK) != 0) {
    GTEST_SKIP() << kPromtool << " not found (Debian package `prometheus`)";
  }
  EXPECT_NE(
      RunPromtool("# HELP foo Foo.\n# TYPE foo counter\nfoo 1\n").exit_code, 0);
  EXPECT_NE(RunPromtool("foo{a=\"unterminated} 1\n").exit_code, 0);
}

TEST(MetricsHttpServerTest, HealthAndReadinessFlip) {
  Registry registry;
  std::atomic<bool> ready{false};
  ASSERT_OK_AND_ASSIGN(
      auto server,
      MetricsHttpServer::Start(AnyPort(), &registry, [&]() -> absl::Status {
        if (ready.load()) return absl::OkStatus();
        return absl::UnavailableError("store is still opening");
      }));
  ASSERT_OK_AND_ASSIGN(HttpResponse health,
                       HttpGet("127.0.0.1", server->port(), "/healthz"));
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");

  ASSERT_OK_AND_ASSIGN(HttpResponse not_ready,
                       HttpGet("127.0.0.1", server->port(), "/readyz"));
  EXPECT_EQ(not_ready.status, 503);
  EXPECT_EQ(not_ready.body, "store is still opening\n");

  ready = true;
  ASSERT_OK_AND_ASSIGN(HttpResponse now_ready,
                       HttpGet("127.0.0.1", server->port(), "/readyz"));
  EXPECT_EQ(now_ready.status, 200);
  EXPECT_EQ(now_ready.body, "ok\n");

  // An empty registry serves an empty, valid exposition.
  ASSERT_OK_AND_ASSIGN(HttpResponse metrics,
                       HttpGet("127.0.0.1", server->port(), "/metrics"));
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.body, "");
}

TEST(MetricsHttpServerTest, NoReadinessCheckMeansReady) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(auto server,
                       MetricsHttpServer::Start(AnyPort(), &registry));
  ASSERT_OK_AND_ASSIGN(HttpResponse ready,
                       HttpGet("127.0.0.1", server->port(), "/readyz"));
  EXPECT_EQ(ready.status, 200);
}

TEST(MetricsHttpServerTest, UnknownPathsAndMethods) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(auto server,
                       MetricsHttpServer::Start(AnyPort(), &registry));
  const int port = server->port();
  ASSERT_OK_AND_ASSIGN(HttpResponse missing,
                       HttpGet("127.0.0.1", port, "/nope"));
  EXPECT_EQ(missing.status, 404);
  ASSERT_OK_AND_ASSIGN(HttpResponse below,
                       HttpGet("127.0.0.1", port, "/metrics/extra"));
  EXPECT_EQ(below.status, 404);
  ASSERT_OK_AND_ASSIGN(HttpResponse post,
                       HttpRequest("127.0.0.1", port, "POST", "/metrics"));
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.headers["allow"], "GET, HEAD");
  ASSERT_OK_AND_ASSIGN(HttpResponse head,
                       HttpRequest("127.0.0.1", port, "HEAD", "/healthz"));
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.headers["content-length"], "3");
  EXPECT_EQ(head.body, "");
  ASSERT_OK_AND_ASSIGN(HttpResponse query,
                       HttpGet("127.0.0.1", port, "/healthz?verbose=1"));
  EXPECT_EQ(query.status, 200);
}

TEST(MetricsHttpServerTest, PortInUseIsAClearError) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(auto first,
                       MetricsHttpServer::Start(AnyPort(), &registry));
  MetricsHttpServerOptions same;
  same.listen_address = first->address();
  EXPECT_THAT(
      MetricsHttpServer::Start(same, &registry).status(),
      StatusIs(
          absl::StatusCode::kUnavailable,
          AllOf(HasSubstr(absl::StrCat("cannot listen on ", first->address())),
                HasSubstr("Address already in use"))));
  // The first server is unaffected.
  ASSERT_OK_AND_ASSIGN(HttpResponse health,
                       HttpGet("127.0.0.1", first->port(), "/healthz"));
  EXPECT_EQ(health.status, 200);
}

TEST(MetricsHttpServerTest, StopFreesThePort) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(auto server,
                       MetricsHttpServer::Start(AnyPort(), &registry));
  const int port = server->port();
  server->Stop();
  server->Stop();  // Idempotent.
  EXPECT_THAT(HttpGet("127.0.0.1", port, "/healthz").status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("connect")));
  MetricsHttpServerOptions again;
  again.listen_address = absl::StrCat("127.0.0.1:", port);
  ASSERT_OK_AND_ASSIGN(auto restarted,
                       MetricsHttpServer::Start(again, &registry));
  EXPECT_EQ(restarted->port(), port);
  ASSERT_OK_AND_ASSIGN(HttpResponse health,
                       HttpGet("127.0.0.1", port, "/healthz"));
  EXPECT_EQ(health.status, 200);
}

TEST(MetricsHttpServerTest, RejectsBadOptions) {
  Registry registry;
  MetricsHttpServerOptions options;
  for (const char* address :
       {"9090", "localhost:9090", "127.0.0.1:", "127.0.0.1:70000",
        "127.0.0.1:-1", "[::1]:9090", "127.0.0.1:9x"}) {
    options.listen_address = address;
    EXPECT_THAT(MetricsHttpServer::Start(options, &registry).status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(absl::StrCat("\"", address, "\""))))
        << address;
  }
  options.listen_address = "127.0.0.1:0";
  options.num_threads = 0;
  EXPECT_THAT(
      MetricsHttpServer::Start(options, &registry).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_threads 0")));
  EXPECT_THAT(MetricsHttpServer::Start(AnyPort(), nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("registry is null")));
}

TEST(MetricsHttpServerTest, ConcurrentScrapesWhileUpdating) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(CounterFamily * ops,
                       registry.AddCounter("ftune_ops_total", "Ops.", {"k"}));
  MetricsHttpServerOptions options = AnyPort();
  options.num_threads = 4;
  ASSERT_OK_AND_ASSIGN(auto server,
                       MetricsHttpServer::Start(options, &registry));
  std::atomic<bool> done{false};
  std::thread writer([&] {
    int i = 0;
    while (!done.load()) ops->WithLabels({std::to_string(i++ % 50)})->Inc();
  });
  std::vector<std::thread> scrapers;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    scrapers.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto response = HttpGet("127.0.0.1", server->port(), "/metrics");
        if (response.ok() && response->status == 200 &&
            response->body.rfind("# HELP ftune_ops_total Ops.\n", 0) == 0) {
          ++ok;
        }
      }
    });
  }
  for (auto& thread : scrapers) thread.join();
  done = true;
  writer.join();
  EXPECT_EQ(ok.load(), 40);
}

}  // namespace
}  // namespace ftune::metrics
