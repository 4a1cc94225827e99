#include "common/metrics/text_format.h"

#include <cmath>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftune::metrics {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

TEST(FormatValueTest, SpecialValues) {
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
}

TEST(FormatValueTest, IntegersHaveNoExponent) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(-0.0), "0");
  EXPECT_EQ(FormatValue(1), "1");
  EXPECT_EQ(FormatValue(-42), "-42");
  EXPECT_EQ(FormatValue(1e6), "1000000");
  EXPECT_EQ(FormatValue(123456789012.0), "123456789012");
  EXPECT_EQ(FormatValue(9007199254740992.0), "9007199254740992");
}

TEST(FormatValueTest, FractionsAreShortestExact) {
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(2.5), "2.5");
  EXPECT_EQ(FormatValue(0.005), "0.005");
  EXPECT_EQ(FormatValue(-1.25), "-1.25");
  EXPECT_EQ(FormatValue(1.0 / 3.0), "0.3333333333333333");
  EXPECT_EQ(FormatValue(1e-7), "1e-07");
  EXPECT_EQ(FormatValue(1e300), "1e+300");
  // Every output reads back to the same double.
  for (double v : {0.1 + 0.2, 3.14159, 6.02214076e23, 1e-300, 123.456}) {
    EXPECT_EQ(std::strtod(FormatValue(v).c_str(), nullptr), v) << v;
  }
}

TEST(EscapeTest, HelpEscapesBackslashAndNewlineOnly) {
  EXPECT_EQ(EscapeHelp("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
}

TEST(EscapeTest, LabelValueEscapesBackslashQuoteNewline) {
  EXPECT_EQ(EscapeLabelValue("C:\\dir \"x\"\nnext"),
            "C:\\\\dir \\\"x\\\"\\nnext");
}

TEST(EscapeTest, LabelValueKeepsUtf8AndReplacesInvalidBytes) {
  EXPECT_EQ(EscapeLabelValue("caf\xC3\xA9 \xE2\x82\xAC"),
            "caf\xC3\xA9 \xE2\x82\xAC");
  // Lone continuation byte, truncated sequence, overlong '/', surrogate.
  EXPECT_EQ(EscapeLabelValue("a\x80"
                             "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(EscapeLabelValue("x\xE2\x82"), "x\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(EscapeLabelValue("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(EscapeLabelValue("\xED\xA0\x80"),
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(NameTest, ValidNames) {
  EXPECT_OK(ValidateMetricName("ftune_jobs_total"));
  EXPECT_OK(ValidateMetricName("_private9"));
  EXPECT_OK(ValidateLabelName("m", "tenant"));
  EXPECT_OK(ValidateLabelName("m", "_x"));
}

TEST(NameTest, InvalidNames) {
  EXPECT_THAT(ValidateMetricName(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(ValidateMetricName("9lives"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must start with a letter")));
  EXPECT_THAT(
      ValidateMetricName("a-b"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("character '-'")));
  EXPECT_THAT(ValidateMetricName("job:rate5m"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("recording rules")));
  EXPECT_THAT(
      ValidateMetricName("__internal"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reserves")));
  EXPECT_THAT(
      ValidateLabelName("ftune_x", "__name__"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("metric \"ftune_x\": label name \"__name__\"")));
  EXPECT_THAT(
      ValidateLabelName("m", "a.b"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("character '.'")));
}

TEST(FormatTextTest, ExactOutput) {
  std::vector<FamilySnapshot> families = {
      {"a_total",
       "Line one\nline \\two",
       MetricType::kCounter,
       {{"a_total", {{"path", "/x\"y\""}, {"code", "200"}}, 3},
        {"a_total", {}, 0.5}}},
      {"b", "Empty family.", MetricType::kGauge, {}},
      {"c_seconds",
       "Latency.",
       MetricType::kHistogram,
       {{"c_seconds_bucket", {{"le", "1"}}, 2},
        {"c_seconds_bucket", {{"le", "+Inf"}}, 3},
        {"c_seconds_sum", {}, 4.5},
        {"c_seconds_count", {}, 3}}},
  };
  EXPECT_EQ(FormatText(families),
            "# HELP a_total Line one\\nline \\\\two\n"
            "# TYPE a_total counter\n"
            "a_total{path=\"/x\\\"y\\\"\",code=\"200\"} 3\n"
            "a_total 0.5\n"
            "# HELP b Empty family.\n"
            "# TYPE b gauge\n"
            "# HELP c_seconds Latency.\n"
            "# TYPE c_seconds histogram\n"
            "c_seconds_bucket{le=\"1\"} 2\n"
            "c_seconds_bucket{le=\"+Inf\"} 3\n"
            "c_seconds_sum 4.5\n"
            "c_seconds_count 3\n");
}

}  // namespace
}  // namespace ftune::metrics
