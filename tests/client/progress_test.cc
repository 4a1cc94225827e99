// The live progress lines of ftunectl (client/progress.h) as pure
// functions: percent, step/total, ETA from the points' own timestamps,
// tokens/s, loss and its sparkline, and what goes first on a narrow
// terminal; and the transfer line of uploads and downloads.
#include "client/progress.h"

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftune::client {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// `n` points, one every `seconds` from step `first`, losses from `loss`.
std::vector<v1::MetricPoint> Points(int n, double seconds,
                                    const std::vector<double>& losses = {},
                                    int64_t first = 1,
                                    double tokens_per_second = 5120) {
  std::vector<v1::MetricPoint> points;
  for (int i = 0; i < n; ++i) {
    v1::MetricPoint p;
    p.set_step(first + i);
    const double t = 1767225600 + i * seconds;
    p.mutable_time()->set_seconds(static_cast<int64_t>(t));
    p.mutable_time()->set_nanos(
        static_cast<int32_t>((t - std::floor(t)) * 1e9));
    p.set_tokens_per_second(tokens_per_second);
    p.set_train_loss(i < static_cast<int>(losses.size()) ? losses[i]
                                                         : 2.0 - 0.01 * i);
    points.push_back(p);
  }
  return points;
}

TEST(FtunectlProgressTest, FullLine) {
  // 120 of 500 steps, 2 s a step: 380 steps left, 12m40s.
  std::vector<v1::MetricPoint> points = Points(120, 2.0);
  const std::string line = RenderTrainingLine(points, 500, 200);
  EXPECT_THAT(line, StartsWith("[████░░░░░░░░░░░░░░░░]   24.0%  step 120/500"));
  EXPECT_THAT(line, HasSubstr("  eta 12m40s  "));
  EXPECT_THAT(line, HasSubstr("  5120 tok/s  "));
  EXPECT_THAT(line, HasSubstr("  loss 0.8100 "));
  // The sparkline: the last 30 losses, falling, one cell each.
  const std::string spark = line.substr(line.find("loss 0.8100 ") + 12);
  EXPECT_EQ(DisplayWidth(spark), 30u);
  EXPECT_THAT(spark, StartsWith("█"));
  EXPECT_THAT(spark, ::testing::EndsWith("▁"));
  EXPECT_LE(DisplayWidth(line), 200u);
}

TEST(FtunectlProgressTest, PercentAndStepWithoutTotal) {
  std::vector<v1::MetricPoint> points = Points(3, 1.0);
  // Total unknown: no percent, no bar, no ETA.
  const std::string unknown = RenderTrainingLine(points, 0, 120);
  EXPECT_THAT(unknown, StartsWith("step 3  5120 tok/s  loss"));
  EXPECT_THAT(unknown, Not(HasSubstr("%")));
  EXPECT_THAT(unknown, Not(HasSubstr("eta")));
  // At the last step: 100%, ETA 0s.
  const std::string done = RenderTrainingLine(points, 3, 120);
  EXPECT_THAT(done, HasSubstr("100.0%  step 3/3  eta 0s"));
  // A step past a total that later shrank is still at most 100%.
  EXPECT_THAT(RenderTrainingLine(Points(5, 1.0), 4, 120),
              HasSubstr("100.0%  step 5/4"));
}

TEST(FtunectlProgressTest, EtaFromRecentStepRate) {
  // Slow first steps, then 0.5 s a step: the ETA follows the recent rate
  // (the last 20 points), not the average.
  std::vector<v1::MetricPoint> points = Points(10, 10.0);
  std::vector<v1::MetricPoint> fast = Points(40, 0.5, {}, 11);
  for (auto& p : fast) {
    p.mutable_time()->set_seconds(p.time().seconds() + 100);
  }
  points.insert(points.end(), fast.begin(), fast.end());
  // Step 50 of 170: 120 steps at 0.5 s.
  EXPECT_THAT(RenderTrainingLine(points, 170, 200), HasSubstr("eta 1m00s"));

  // One point: no rate yet, no ETA.
  EXPECT_THAT(RenderTrainingLine(Points(1, 1.0), 10, 200),
              Not(HasSubstr("eta")));

  // A restart resumes at an earlier step: the rate starts over there.
  std::vector<v1::MetricPoint> restarted = Points(10, 1.0);
  std::vector<v1::MetricPoint> again = Points(3, 4.0, {}, 6);
  for (auto& p : again) p.mutable_time()->set_seconds(p.time().seconds() + 60);
  restarted.insert(restarted.end(), again.begin(), again.end());
  // Step 8 of 20 at 4 s a step: 48 s.
  EXPECT_THAT(RenderTrainingLine(restarted, 20, 200),
              HasSubstr("step 8/20  eta 48s"));
}

TEST(FtunectlProgressTest, EtaFormatting) {
  EXPECT_EQ(FormatEta(absl::ZeroDuration()), "0s");
  EXPECT_EQ(FormatEta(absl::Milliseconds(400)), "0s");
  EXPECT_EQ(FormatEta(absl::Seconds(42)), "42s");
  EXPECT_EQ(FormatEta(absl::Seconds(59.6)), "1m00s");
  EXPECT_EQ(FormatEta(absl::Seconds(190)), "3m10s");
  EXPECT_EQ(FormatEta(absl::Hours(2) + absl::Minutes(5)), "2h05m");
  EXPECT_EQ(FormatEta(absl::Hours(76)), "3d04h");
  EXPECT_EQ(FormatEta(-absl::Seconds(5)), "0s");
}

TEST(FtunectlProgressTest, SparklineScaling) {
  EXPECT_EQ(Sparkline({}), "");
  EXPECT_EQ(Sparkline({0, 1, 2, 3, 4, 5, 6, 7}), "▁▂▃▄▅▆▇█");
  EXPECT_EQ(Sparkline({10, 0}), "█▁");
  // Scaled between this window's extremes, whatever the magnitude.
  EXPECT_EQ(Sparkline({1e-9, 2e-9, 3e-9}), "▁▅█");
  // Constant: mid height.
  EXPECT_EQ(Sparkline({2.5, 2.5, 2.5}), "▄▄▄");
  EXPECT_EQ(Sparkline({7}), "▄");
  // NaN and infinities are gaps and do not stretch the scale.
  EXPECT_EQ(Sparkline({1, NAN, 3, INFINITY, 2}), "▁ █ ▅");
  EXPECT_EQ(Sparkline({NAN, NAN}), "  ");
}

TEST(FtunectlProgressTest, NanLossIsShown) {
  std::vector<v1::MetricPoint> points = Points(5, 1.0, {2, 1.5, 1, NAN, NAN});
  const std::string line = RenderTrainingLine(points, 10, 200);
  EXPECT_THAT(line, HasSubstr("loss nan █▅▁  "));
}

TEST(FtunectlProgressTest, NarrowTerminalsDropPartsInOrder) {
  std::vector<v1::MetricPoint> points = Points(120, 2.0);
  const std::string full = RenderTrainingLine(points, 500, 1000);
  // Every width gets a line that fits.
  for (int width = 0; width <= 130; ++width) {
    EXPECT_LE(DisplayWidth(RenderTrainingLine(points, 500, width)),
              static_cast<size_t>(width))
        << width;
  }
  // All of it: a 20-cell bar and 30 losses, 112 columns.
  EXPECT_EQ(DisplayWidth(full), 112u);
  EXPECT_EQ(RenderTrainingLine(points, 500, 112), full);
  // 99 (a 100-column terminal): a 10-cell bar and 20 losses.
  const std::string ninety_nine = RenderTrainingLine(points, 500, 99);
  EXPECT_THAT(ninety_nine, StartsWith("[██░░░░░░░░]   24.0%  step 120/500"));
  EXPECT_THAT(ninety_nine, HasSubstr("eta 12m40s  5120 tok/s  loss 0.8100 "));
  EXPECT_EQ(DisplayWidth(ninety_nine.substr(ninety_nine.find("0.8100 ") + 7)),
            20u);
  // 90: the sparkline shortens to 10 before the bar goes.
  const std::string ninety = RenderTrainingLine(points, 500, 90);
  EXPECT_THAT(ninety, StartsWith("[██░░░░░░░░]"));
  EXPECT_EQ(DisplayWidth(ninety.substr(ninety.find("0.8100 ") + 7)), 10u);
  // 79 (an 80-column terminal): the bar goes, which leaves room for 20
  // losses again.
  const std::string eighty = RenderTrainingLine(points, 500, 79);
  EXPECT_THAT(eighty, StartsWith(" 24.0%  step 120/500  eta 12m40s"));
  EXPECT_THAT(eighty, Not(HasSubstr("[")));
  EXPECT_EQ(DisplayWidth(eighty.substr(eighty.find("0.8100 ") + 7)), 20u);
  // 60: the sparkline goes.
  EXPECT_EQ(RenderTrainingLine(points, 500, 60),
            " 24.0%  step 120/500  eta 12m40s  5120 tok/s  loss 0.8100");
  // 50: no tokens/s; 40: no ETA; 30: no loss; 12: no step count.
  EXPECT_EQ(RenderTrainingLine(points, 500, 50),
            " 24.0%  step 120/500  eta 12m40s  loss 0.8100");
  EXPECT_EQ(RenderTrainingLine(points, 500, 40),
            " 24.0%  step 120/500  loss 0.8100");
  EXPECT_EQ(RenderTrainingLine(points, 500, 30), " 24.0%  step 120/500");
  EXPECT_EQ(RenderTrainingLine(points, 500, 12), " 24.0%");
  // Below the percent's own width it is cut.
  EXPECT_EQ(RenderTrainingLine(points, 500, 4), " 24.");
}

TEST(FtunectlProgressTest, TrainingProgressUsesSnapshotsForTotalAndEta) {
  TrainingProgress progress;
  v1::Job job;
  job.mutable_progress()->set_total_steps(100);
  job.mutable_progress()->set_step(10);
  job.mutable_progress()->mutable_eta()->set_seconds(300);
  progress.SetJob(job);
  TrainingView view = progress.View();
  EXPECT_EQ(view.step, 10);
  EXPECT_EQ(view.total_steps, 100);
  // Too few points for a rate: the server's estimate.
  ASSERT_TRUE(view.eta.has_value());
  EXPECT_EQ(*view.eta, absl::Seconds(300));
  EXPECT_FALSE(view.loss.has_value());
  for (const v1::MetricPoint& p : Points(11, 1.0, {}, 11)) progress.Add(p);
  view = progress.View();
  EXPECT_EQ(view.step, 21);
  EXPECT_EQ(*view.eta, absl::Seconds(79));  // from the points' rate
  // An eval-only point moves the step but adds no loss.
  v1::MetricPoint eval;
  eval.set_step(22);
  eval.set_eval_loss(1.0);
  *eval.mutable_time() = Points(12, 1.0).back().time();
  progress.Add(eval);
  EXPECT_EQ(progress.View().losses.size(), 11u);
  EXPECT_EQ(progress.View().step, 22);
}

TEST(FtunectlProgressTest, TransferLine) {
  TransferView view{"train.jsonl", 3 << 20, 4 << 20, absl::Seconds(2)};
  EXPECT_EQ(RenderTransferLine(view, 200),
            "[███████████████░░░░░]   75%  3.0 MiB / 4.0 MiB  1.5 MiB/s  "
            "train.jsonl");
  EXPECT_EQ(RenderTransferLine(view, 50),
            "[███████░░░]   75%  3.0 MiB / 4.0 MiB  1.5 MiB/s");
  EXPECT_EQ(RenderTransferLine(view, 30), " 75%  3.0 MiB / 4.0 MiB");
  EXPECT_EQ(RenderTransferLine(view, 10), " 75%");
  // Too early for a rate; unknown total.
  EXPECT_EQ(RenderTransferLine({"", 512, 0, absl::Milliseconds(10)}, 80),
            "512 B");
}

TEST(FtunectlProgressTest, LiveLineRedrawsInPlace) {
  std::ostringstream out;
  {
    LiveLine line(out);
    line.Clear();  // nothing drawn: nothing written
    line.Draw("a");
    line.Draw("b");
    line.Keep();
    line.Draw("c");
  }  // a line still drawn is erased
  EXPECT_EQ(out.str(), "\ra\033[K\rb\033[K\n\rc\033[K\r\033[K");
}

}  // namespace
}  // namespace ftune::client
