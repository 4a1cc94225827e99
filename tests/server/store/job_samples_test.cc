// A job's sample completions in the real SQLite store (migration 7):
// stored with the report that carries them and one SAMPLES event per step,
// durable across a reopen, a step reported again replaces its samples,
// each text and the job's total are bounded and cut texts end with the
// marker, listing pages by (step, index) with a step filter, and another
// tenant's job answers NOT_FOUND.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/contract/limits.h"
#include "gmock/gmock.h"
#include "tests/server/store/store_fixture.h"

namespace ftune::store::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::Pair;

core::JobSample Sample(int64_t step, int64_t index, std::string completion,
                       std::optional<std::string> expected = "ref") {
  core::JobSample s;
  s.step = step;
  s.index = index;
  s.prompt = "prompt " + std::to_string(index);
  s.expected = std::move(expected);
  s.completion = std::move(completion);
  s.finish_reason = "end";
  return s;
}

class JobSamplesTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    tenant_ = MakeTenant("a");
    worker_ = MustRegisterWorker();
    job_ = MustCreate(NewJob(tenant_));
    ASSERT_OK(store_->GrantLease(job_.id, 1, worker_.id,
                                 clock_.Now() + absl::Hours(1)));
  }
  absl::Status Report(std::vector<core::JobSample> samples) {
    ProgressReport r;
    r.worker_id = worker_.id;
    r.job_id = job_.id;
    r.attempt = 1;
    r.batch_number = ++batch_;
    r.samples = std::move(samples);
    r.lease_expiry = clock_.Now() + absl::Hours(1);
    return store_->ApplyProgress(r).status();
  }
  std::vector<core::JobSample> List(
      std::optional<int64_t> step = std::nullopt,
      std::optional<std::pair<int64_t, int64_t>> after = std::nullopt,
      int limit = 0) {
    auto got =
        store_->ListJobSamples(tenant_.tenant.id, job_.id, step, after, limit);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : std::vector<core::JobSample>{};
  }

  TenantSetup tenant_;
  core::Worker worker_;
  core::Job job_;
  int64_t batch_ = 0;
};

std::vector<std::pair<int64_t, int64_t>> Keys(
    const std::vector<core::JobSample>& samples) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const core::JobSample& s : samples) out.emplace_back(s.step, s.index);
  return out;
}

TEST_F(JobSamplesTest, StoredDurablyWithAnEventPerStepAndReplacedPerStep) {
  ASSERT_OK(Report({Sample(0, 0, "a0"), Sample(0, 1, "b0", std::nullopt)}));
  ASSERT_OK(Report({Sample(10, 0, "a10"), Sample(10, 1, "b10")}));

  // Durable: the same after the store is opened again.
  ASSERT_OK(OpenStore());
  std::vector<core::JobSample> all = List();
  EXPECT_THAT(Keys(all),
              ElementsAre(Pair(0, 0), Pair(0, 1), Pair(10, 0), Pair(10, 1)));
  EXPECT_EQ(all[0].completion, "a0");
  EXPECT_EQ(all[0].prompt, "prompt 0");
  EXPECT_EQ(all[0].expected, "ref");
  EXPECT_EQ(all[1].expected, std::nullopt);  // NULL, not ""
  EXPECT_EQ(all[0].attempt, 1);
  EXPECT_EQ(all[0].finish_reason, "end");
  EXPECT_EQ(all[0].create_time, clock_.Now());

  ASSERT_OK_AND_ASSIGN(auto events,
                       store_->ListJobEvents(tenant_.tenant.id, job_.id, 0, 0));
  std::vector<std::pair<int64_t, std::string>> sample_events;
  for (const core::JobEvent& e : events) {
    if (e.type == core::JobEventType::kSamples) {
      sample_events.emplace_back(e.step, e.message);
    }
  }
  EXPECT_THAT(sample_events,
              ElementsAre(Pair(0, "2 sample completions at step 0"),
                          Pair(10, "2 sample completions at step 10")));

  // A later report of step 10 (a resumed attempt reached it again)
  // replaces that step's samples, even where it has fewer.
  ASSERT_OK(Report({Sample(10, 0, "again")}));
  all = List();
  EXPECT_THAT(Keys(all), ElementsAre(Pair(0, 0), Pair(0, 1), Pair(10, 0)));
  EXPECT_EQ(all[2].completion, "again");
}

TEST_F(JobSamplesTest, PagesByStepAndIndexWithAStepFilter) {
  ASSERT_OK(Report({Sample(0, 0, "x"), Sample(0, 1, "x"), Sample(0, 2, "x")}));
  ASSERT_OK(Report({Sample(5, 0, "y"), Sample(5, 1, "y")}));
  EXPECT_THAT(Keys(List(std::nullopt, std::nullopt, 2)),
              ElementsAre(Pair(0, 0), Pair(0, 1)));
  EXPECT_THAT(Keys(List(std::nullopt, std::make_pair(0, 1), 2)),
              ElementsAre(Pair(0, 2), Pair(5, 0)));
  EXPECT_THAT(Keys(List(std::nullopt, std::make_pair(5, 0), 2)),
              ElementsAre(Pair(5, 1)));
  EXPECT_THAT(Keys(List(5)), ElementsAre(Pair(5, 0), Pair(5, 1)));
  EXPECT_THAT(Keys(List(5, std::make_pair(5, 0))), ElementsAre(Pair(5, 1)));
  EXPECT_TRUE(List(7).empty());

  // Another tenant's job: as if it never existed.
  TenantSetup other = MakeTenant("b");
  auto foreign = store_->ListJobSamples(other.tenant.id, job_.id, std::nullopt,
                                        std::nullopt, 0);
  auto missing = store_->ListJobSamples(tenant_.tenant.id, "job-nope",
                                        std::nullopt, std::nullopt, 0);
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(JobSamplesTest, TextsAndTheJobsTotalAreBoundedWithAMarker) {
  namespace defaults = contract::defaults;
  const std::string marker = defaults::kTruncationMarker;
  // One text over the per-text limit is cut to it, ending with the marker.
  ASSERT_OK(Report({Sample(0, 0, std::string(10000, 'c'))}));
  std::vector<core::JobSample> all = List();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].completion.size(),
            static_cast<size_t>(defaults::kSampleTextBytes));
  EXPECT_THAT(all[0].completion, EndsWith(marker));
  EXPECT_EQ(all[0].prompt, "prompt 0");  // short texts are kept whole

  // Fill the job's budget: 3 full texts a sample, 4 KiB each.
  const std::string full(defaults::kSampleTextBytes, 'z');
  const int64_t per_sample = 3 * defaults::kSampleTextBytes;
  const int64_t fit = defaults::kSampleBytesPerJob / per_sample;
  int64_t step = 1;
  for (int64_t n = 0; n < fit + 4; ++step) {
    std::vector<core::JobSample> batch;
    for (int i = 0; i < 32 && n < fit + 4; ++i, ++n) {
      core::JobSample s = Sample(step, i, full, full);
      s.prompt = full;
      batch.push_back(s);
    }
    ASSERT_OK(Report(batch));
  }
  all = List();
  int64_t total = 0;
  int cut = 0;
  for (const core::JobSample& s : all) {
    for (const std::string* t : {&s.prompt, &s.completion, &*s.expected}) {
      total += static_cast<int64_t>(t->size());
      if (absl::EndsWith(*t, marker)) ++cut;
    }
  }
  // Every sample is there (step, index, finish reason), the texts of the
  // last ones cut down to the marker alone: at most the budget plus a
  // marker per text.
  EXPECT_EQ(static_cast<int64_t>(all.size()), 1 + fit + 4);
  EXPECT_LE(total, defaults::kSampleBytesPerJob +
                       3 * static_cast<int64_t>(all.size() * marker.size()));
  EXPECT_GE(cut, 12);
  EXPECT_EQ(all.back().completion, marker);
  EXPECT_EQ(all.back().finish_reason, "end");
}

TEST_F(JobSamplesTest, AStaleAttemptStoresNothing) {
  ProgressReport r;
  r.worker_id = worker_.id;
  r.job_id = job_.id;
  r.attempt = 2;  // the job is at attempt 1
  r.batch_number = 1;
  r.samples = {Sample(0, 0, "late")};
  EXPECT_EQ(store_->ApplyProgress(r).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(List().empty());
}

}  // namespace
}  // namespace ftune::store::testing
