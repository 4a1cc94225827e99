#include "common/metrics/registry.h"

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftune::metrics {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

TEST(RegistryTest, CounterFamilyChildrenAndExactExposition) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(
      CounterFamily * jobs,
      registry.AddCounter("ftune_jobs_submitted_total", "Jobs accepted.",
                          {"tenant", "priority"}));
  jobs->WithLabels({"tenant-b", "high"})->Inc();
  jobs->WithLabels({"tenant-a", "low"})->Inc(2);
  jobs->WithLabels({"tenant-a", "low"})->Inc(0.5);
  jobs->WithLabels({"tenant-a", "low"})->Inc(-7);  // Ignored.
  EXPECT_EQ(registry.Scrape(),
            "# HELP ftune_jobs_submitted_total Jobs accepted.\n"
            "# TYPE ftune_jobs_submitted_total counter\n"
            "ftune_jobs_submitted_total{tenant=\"tenant-a\",priority=\"low\"}"
            " 2.5\n"
            "ftune_jobs_submitted_total{tenant=\"tenant-b\",priority=\"high\"}"
            " 1\n");
}

TEST(RegistryTest, WithLabelsReturnsTheSameChild) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(GaugeFamily * g,
                       registry.AddGauge("ftune_g", "G.", {"a"}));
  auto first = g->WithLabels({"x"});
  auto second = g->WithLabels({"x"});
  EXPECT_EQ(first.get(), second.get());
  first->Set(5);
  first->Inc();
  second->Dec(2.5);
  EXPECT_EQ(g->WithLabels({"x"})->Value(), 3.5);
  EXPECT_NE(g->WithLabels({"y"}).get(), first.get());
}

TEST(RegistryTest, RemoveDropsTheSeriesAndDetachesHeldPointers) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(
      GaugeFamily * loss,
      registry.AddGauge("ftune_job_train_loss", "Loss.", {"tenant", "job_id"}));
  auto job1 = loss->WithLabels({"t", "job-1"});
  job1->Set(2.25);
  loss->WithLabels({"t", "job-2"})->Set(1.5);
  EXPECT_EQ(loss->size(), 2u);

  EXPECT_TRUE(loss->Remove({"t", "job-1"}));
  EXPECT_FALSE(loss->Remove({"t", "job-1"}));
  EXPECT_EQ(loss->size(), 1u);
  job1->Set(9);  // Still safe to use; just not exposed.
  const std::string text = registry.Scrape();
  EXPECT_THAT(text, ::testing::Not(HasSubstr("job-1")));
  EXPECT_THAT(text,
              HasSubstr("ftune_job_train_loss{tenant=\"t\",job_id=\"job-2\"} "
                        "1.5\n"));
  // Recreating the series starts from zero.
  EXPECT_EQ(loss->WithLabels({"t", "job-1"})->Value(), 0);

  loss->Clear();
  EXPECT_EQ(loss->size(), 0u);
  EXPECT_EQ(registry.Scrape(),
            "# HELP ftune_job_train_loss Loss.\n"
            "# TYPE ftune_job_train_loss gauge\n");
}

TEST(RegistryTest, HistogramBucketsAreCumulativeWithInf) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(HistogramFamily * h,
                       registry.AddHistogram("ftune_wait_seconds", "Wait.",
                                             {"tenant"}, {0.5, 1, 2.5}));
  auto child = h->WithLabels({"a\"b"});
  // 0.5 lands in le=0.5 (bounds are inclusive); 3 and 100 only in +Inf.
  for (double v : {0.1, 0.5, 0.75, 1.0, 2.0, 3.0, 100.0}) child->Observe(v);
  child->Observe(std::nan(""));  // Ignored.
  EXPECT_EQ(child->Count(), 7u);
  EXPECT_EQ(child->Sum(), 107.35);
  EXPECT_EQ(registry.Scrape(),
            "# HELP ftune_wait_seconds Wait.\n"
            "# TYPE ftune_wait_seconds histogram\n"
            "ftune_wait_seconds_bucket{tenant=\"a\\\"b\",le=\"0.5\"} 2\n"
            "ftune_wait_seconds_bucket{tenant=\"a\\\"b\",le=\"1\"} 4\n"
            "ftune_wait_seconds_bucket{tenant=\"a\\\"b\",le=\"2.5\"} 5\n"
            "ftune_wait_seconds_bucket{tenant=\"a\\\"b\",le=\"+Inf\"} 7\n"
            "ftune_wait_seconds_sum{tenant=\"a\\\"b\"} 107.35\n"
            "ftune_wait_seconds_count{tenant=\"a\\\"b\"} 7\n");
}

TEST(RegistryTest, HistogramDefaultBucketsAndHelpers) {
  EXPECT_EQ(DefaultLatencyBuckets(),
            (std::vector<double>{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                 2.5, 5, 10}));
  EXPECT_EQ(ExponentialBuckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
  EXPECT_EQ(LinearBuckets(0, 5, 3), (std::vector<double>{0, 5, 10}));
  Registry registry;
  ASSERT_OK_AND_ASSIGN(HistogramFamily * h,
                       registry.AddHistogram("ftune_rpc_seconds", "RPC.", {}));
  h->WithLabels({})->Observe(0.007);
  const std::string text = registry.Scrape();
  EXPECT_THAT(text, HasSubstr("ftune_rpc_seconds_bucket{le=\"0.005\"} 0\n"
                              "ftune_rpc_seconds_bucket{le=\"0.01\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("ftune_rpc_seconds_bucket{le=\"10\"} 1\n"
                              "ftune_rpc_seconds_bucket{le=\"+Inf\"} 1\n"
                              "ftune_rpc_seconds_sum 0.007\n"
                              "ftune_rpc_seconds_count 1\n"));
}

TEST(RegistryTest, FamiliesAreOrderedByNameAndChildrenByLabels) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(GaugeFamily * z, registry.AddGauge("z_g", "Z.", {"k"}));
  ASSERT_OK_AND_ASSIGN(CounterFamily * a,
                       registry.AddCounter("a_total", "A.", {}));
  ASSERT_OK_AND_ASSIGN(HistogramFamily * m,
                       registry.AddHistogram("m_seconds", "M.", {"k"}, {1}));
  z->WithLabels({"b"})->Set(2);
  z->WithLabels({"a"})->Set(1);
  a->WithLabels({})->Inc();
  m->WithLabels({"y"})->Observe(2);
  m->WithLabels({"x"})->Observe(0.5);
  EXPECT_EQ(registry.Scrape(),
            "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n"
            "# HELP m_seconds M.\n# TYPE m_seconds histogram\n"
            "m_seconds_bucket{k=\"x\",le=\"1\"} 1\n"
            "m_seconds_bucket{k=\"x\",le=\"+Inf\"} 1\n"
            "m_seconds_sum{k=\"x\"} 0.5\n"
            "m_seconds_count{k=\"x\"} 1\n"
            "m_seconds_bucket{k=\"y\",le=\"1\"} 0\n"
            "m_seconds_bucket{k=\"y\",le=\"+Inf\"} 1\n"
            "m_seconds_sum{k=\"y\"} 2\n"
            "m_seconds_count{k=\"y\"} 1\n"
            "# HELP z_g Z.\n# TYPE z_g gauge\n"
            "z_g{k=\"a\"} 1\nz_g{k=\"b\"} 2\n");
}

TEST(RegistryTest, RejectsBadRegistrationsAndChangesNothing) {
  Registry registry;
  ASSERT_OK(registry.AddGauge("ftune_x", "X.", {}).status());
  ASSERT_OK(registry.AddHistogram("ftune_h_seconds", "H.", {}).status());
  const std::string before = registry.Scrape();

  EXPECT_THAT(registry.AddCounter("ftune_jobs", "Jobs.", {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must end in \"_total\"")));
  EXPECT_THAT(
      registry.AddGauge("ftune-bad", "B.", {}).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ftune-bad")));
  EXPECT_THAT(registry.AddGauge("ftune_y", "", {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("HELP text is empty")));
  EXPECT_THAT(registry.AddGauge("ftune_y", "Y.", {"__reserved"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"__reserved\"")));
  EXPECT_THAT(registry.AddGauge("ftune_y", "Y.", {"a", "a"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("label name \"a\" repeated")));
  EXPECT_THAT(registry.AddHistogram("ftune_z", "Z.", {"le"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"le\" is reserved")));
  EXPECT_THAT(registry.AddHistogram("ftune_z", "Z.", {}, {1, 1}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("strictly increasing")));
  EXPECT_THAT(registry
                  .AddHistogram("ftune_z", "Z.", {},
                                {1, std::numeric_limits<double>::infinity()})
                  .status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must be finite")));
  EXPECT_THAT(registry.AddCounter("ftune_x", "Again.", {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::_));  // No _total.
  EXPECT_THAT(registry.AddGauge("ftune_x", "Again.", {}).status(),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       HasSubstr("already used by gauge \"ftune_x\"")));
  EXPECT_THAT(registry.AddGauge("ftune_h_seconds_count", "C.", {}).status(),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       HasSubstr("histogram \"ftune_h_seconds\"")));
  EXPECT_THAT(
      registry.AddGaugeCallback("ftune_x", "X.", {}, [](CallbackWriter&) {})
          .status(),
      StatusIs(absl::StatusCode::kAlreadyExists, ::testing::_));
  EXPECT_THAT(registry.AddGaugeCallback("ftune_cb", "X.", {}, nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("callback is empty")));
  EXPECT_THAT(registry.AddCollector(nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_EQ(registry.Scrape(), before);
}

TEST(RegistryDeathTest, WrongLabelCountAborts) {
  Registry registry;
  auto family = registry.AddGauge("ftune_g", "G.", {"tenant", "state"});
  ASSERT_OK(family.status());
  EXPECT_DEATH((*family)->WithLabels({"only-one"}),
               "metric ftune_g has labels \\{tenant,state\\} but got 1");
}

TEST(RegistryTest, ConcurrentIncrementsAreExact) {
  Registry registry;
  ASSERT_OK_AND_ASSIGN(CounterFamily * c,
                       registry.AddCounter("ftune_ops_total", "Ops.", {"t"}));
  ASSERT_OK_AND_ASSIGN(
      HistogramFamily * h,
      registry.AddHistogram("ftune_op_seconds", "Op.", {}, {0.5}));
  ASSERT_OK_AND_ASSIGN(GaugeFamily * g,
                       registry.AddGauge("ftune_inflight", "In flight.", {}));
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string label = t % 2 == 0 ? "even" : "odd";
      for (int i = 0; i < kPerThread; ++i) {
        // Lookup on every call exercises the family lock as well.
        c->WithLabels({label})->Inc();
        c->WithLabels({"all"})->Inc(0.5);
        h->WithLabels({})->Observe(i % 2 == 0 ? 0.25 : 1.0);
        g->WithLabels({})->Inc();
        g->WithLabels({})->Dec();
        if (i % 1000 == 0) registry.Scrape();  // Scrapes race updates.
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(c->WithLabels({"even"})->Value(), kThreads / 2 * kPerThread);
  EXPECT_EQ(c->WithLabels({"odd"})->Value(), kThreads / 2 * kPerThread);
  EXPECT_EQ(c->WithLabels({"all"})->Value(), kThreads * kPerThread * 0.5);
  auto hist = h->WithLabels({});
  EXPECT_EQ(hist->Count(), static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(hist->CumulativeCounts()[0],
            static_cast<uint64_t>(kThreads * kPerThread / 2));
  EXPECT_EQ(hist->Sum(), kThreads * kPerThread / 2 * 1.25);
  EXPECT_EQ(g->WithLabels({})->Value(), 0);
}

TEST(RegistryTest, GaugeCallbackIsEvaluatedAtScrapeTime) {
  Registry registry;
  int queued = 3;
  ASSERT_OK_AND_ASSIGN(
      CollectorHandle handle,
      registry.AddGaugeCallback("ftune_jobs", "Jobs by state.",
                                {"tenant", "state"}, [&](CallbackWriter& out) {
                                  out.Set({"t2", "RUNNING"}, 1);
                                  out.Set({"t1", "QUEUED"}, queued);
                                  out.Set({"bad"},
                                          7);  // Wrong label count: dropped.
                                }));
  const std::string expected_head =
      "# HELP ftune_jobs Jobs by state.\n# TYPE ftune_jobs gauge\n";
  EXPECT_EQ(registry.Scrape(),
            expected_head +
                "ftune_jobs{tenant=\"t1\",state=\"QUEUED\"} 3\n"
                "ftune_jobs{tenant=\"t2\",state=\"RUNNING\"} 1\n");
  queued = 5;
  EXPECT_THAT(registry.Scrape(),
              HasSubstr("ftune_jobs{tenant=\"t1\",state=\"QUEUED\"} 5\n"));
  // The name is taken while registered, and free again after Reset().
  EXPECT_THAT(registry.AddGauge("ftune_jobs", "Again.", {}).status(),
              StatusIs(absl::StatusCode::kAlreadyExists, ::testing::_));
  handle.Reset();
  EXPECT_FALSE(handle.registered());
  EXPECT_EQ(registry.Scrape(), "");
  EXPECT_OK(registry.AddGauge("ftune_jobs", "Again.", {}).status());
}

TEST(RegistryTest, CollectorHandleUnregistersOnDestruction) {
  Registry registry;
  {
    ASSERT_OK_AND_ASSIGN(CollectorHandle handle,
                         registry.AddCounterCallback(
                             "ftune_restarts_total", "Restarts.", {},
                             [](CallbackWriter& out) { out.Set({}, 4); }));
    CollectorHandle moved = std::move(handle);
    EXPECT_FALSE(handle.registered());
    EXPECT_EQ(registry.Scrape(),
              "# HELP ftune_restarts_total Restarts.\n"
              "# TYPE ftune_restarts_total counter\n"
              "ftune_restarts_total 4\n");
  }
  EXPECT_EQ(registry.Scrape(), "");
}

// A collector that returns whatever the test put in `families`.
class FixedCollector : public Collector {
 public:
  explicit FixedCollector(std::vector<FamilySnapshot> families)
      : families_(std::move(families)) {}
  std::vector<FamilySnapshot> Collect() override { return families_; }

 private:
  std::vector<FamilySnapshot> families_;
};

TEST(RegistryTest, InvalidCollectorFamiliesAreDroppedFromTheScrape) {
  Registry registry;
  ASSERT_OK(registry.AddGauge("ftune_taken", "Taken.", {}).status());
  std::vector<FamilySnapshot> families = {
      {"good_bytes",
       "Good.",
       MetricType::kGauge,
       {{"good_bytes", {{"b", "2"}}, 2}, {"good_bytes", {{"b", "1"}}, 1}}},
      {"bad-name", "Bad.", MetricType::kGauge, {{"bad-name", {}, 1}}},
      {"ftune_taken", "Dup.", MetricType::kGauge, {{"ftune_taken", {}, 1}}},
      {"no_suffix", "Counter.", MetricType::kCounter, {{"no_suffix", {}, 1}}},
      {"bad_label",
       "L.",
       MetricType::kGauge,
       {{"bad_label", {{"__x", ""}}, 1}}},
      {"wrong_sample", "W.", MetricType::kGauge, {{"other", {}, 1}}},
      {"good_bytes", "Second.", MetricType::kGauge, {{"good_bytes", {}, 1}}},
  };
  ASSERT_OK_AND_ASSIGN(
      CollectorHandle handle,
      registry.AddCollector(std::make_unique<FixedCollector>(families)));
  EXPECT_EQ(registry.Scrape(),
            "# HELP ftune_taken Taken.\n# TYPE ftune_taken gauge\n"
            "# HELP good_bytes Good.\n# TYPE good_bytes gauge\n"
            "good_bytes{b=\"1\"} 1\ngood_bytes{b=\"2\"} 2\n");
}

}  // namespace
}  // namespace ftune::metrics
