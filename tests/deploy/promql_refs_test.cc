#include "tests/deploy/promql_refs.h"

#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftune::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<std::string> Metrics(const PromQLRefs& refs) {
  std::vector<std::string> out;
  for (const PromQLSelector& s : refs.selectors) out.push_back(s.metric);
  return out;
}

TEST(PromQLRefsTest, HistogramQuantileWithGroupingAndRange) {
  ASSERT_OK_AND_ASSIGN(
      PromQLRefs refs,
      ParsePromQLRefs("histogram_quantile(0.99, sum by (method, le) "
                      "(rate(ftune_grpc_server_handling_seconds_bucket"
                      "{code!=\"OK\"}[$__rate_interval])))"));
  EXPECT_THAT(Metrics(refs),
              ElementsAre("ftune_grpc_server_handling_seconds_bucket"));
  EXPECT_EQ(refs.selectors[0].labels, std::set<std::string>({"code"}));
  EXPECT_EQ(refs.grouping_labels, std::set<std::string>({"method", "le"}));
  EXPECT_EQ(refs.functions,
            std::set<std::string>({"histogram_quantile", "sum", "rate"}));
  EXPECT_EQ(refs.variables, std::set<std::string>({"__rate_interval"}));
}

TEST(PromQLRefsTest, StringsAndMatchersHideTheirContents) {
  // Label names, label values (even ones that look like metrics or
  // functions) and regexes are not metric names.
  ASSERT_OK_AND_ASSIGN(
      PromQLRefs refs,
      ParsePromQLRefs(R"q(up{job="rate(x)", instance=~'a|b'} == 0
                         or absent(up{job=`ftune {scheduler}`}))q"));
  EXPECT_THAT(Metrics(refs), ElementsAre("up", "up"));
  EXPECT_EQ(refs.selectors[0].labels,
            std::set<std::string>({"job", "instance"}));
}

TEST(PromQLRefsTest, BinaryOperatorsKeywordsAndNumbers) {
  ASSERT_OK_AND_ASSIGN(
      PromQLRefs refs,
      ParsePromQLRefs("sum(increase(a_total{state=\"failed\"}[1h])) / "
                      "sum(increase(a_total[1h] offset 5m)) > bool 0.25 "
                      "and on() b >= 1e-3 unless ignoring(x) c * 3600 "
                      "+ d @ end() - e[5m:30s] or vector(inf)"));
  EXPECT_THAT(Metrics(refs),
              ElementsAre("a_total", "a_total", "b", "c", "d", "e"));
  EXPECT_EQ(refs.grouping_labels, std::set<std::string>({"x"}));
}

TEST(PromQLRefsTest, AggregationWithTrailingGrouping) {
  ASSERT_OK_AND_ASSIGN(
      PromQLRefs refs,
      ParsePromQLRefs("topk(3, sum(x{tenant=~\"$tenant\"}) without (job))"));
  EXPECT_THAT(Metrics(refs), ElementsAre("x"));
  EXPECT_EQ(refs.grouping_labels, std::set<std::string>({"job"}));
  EXPECT_EQ(refs.variables, std::set<std::string>({"tenant"}));
}

TEST(PromQLRefsTest, NameInsideBracesAndGrafanaVariableForms) {
  ASSERT_OK_AND_ASSIGN(
      PromQLRefs refs,
      ParsePromQLRefs("{__name__=\"foo\", a=\"${tenant:regex}\"} + "
                      "bar{b=~\"$job\"}[${__range}] + "
                      "label_replace(c, \"d\", \"$1\", \"e\", \"(.*)\")"));
  EXPECT_THAT(Metrics(refs), ElementsAre("foo", "bar", "c"));
  EXPECT_EQ(refs.selectors[0].labels, std::set<std::string>({"a"}));
  // Variables inside strings count too; "$1" (a regex group) does not.
  EXPECT_EQ(refs.variables,
            std::set<std::string>({"tenant", "job", "__range"}));
}

TEST(PromQLRefsTest, ErrorsAreReported) {
  EXPECT_THAT(ParsePromQLRefs("rte(x[5m])"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown function \"rte\"")));
  EXPECT_THAT(
      ParsePromQLRefs("sum(x"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unbalanced")));
  EXPECT_THAT(ParsePromQLRefs("x{a=\"b}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unterminated string")));
  EXPECT_THAT(ParsePromQLRefs("{a=\"b\"}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("without a metric name")));
  EXPECT_THAT(ParsePromQLRefs("sum by x (y)"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("without a label list")));
}

TEST(PromQLRefsTest, LabelValuesQuery) {
  ASSERT_OK_AND_ASSIGN(
      LabelValuesQuery q,
      ParseLabelValuesQuery(
          "label_values(ftune_job_train_loss{tenant=~\"a,b\"}, job_id)"));
  EXPECT_EQ(q.selector, "ftune_job_train_loss{tenant=~\"a,b\"}");
  EXPECT_EQ(q.label, "job_id");
  EXPECT_THAT(ParseLabelValuesQuery("label_values(tenant)"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("")));
  EXPECT_THAT(ParseLabelValuesQuery("query_result(up)"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("")));
}

TEST(PromQLRefsTest, HistogramFamilyOf) {
  EXPECT_EQ(HistogramFamilyOf("x_seconds_bucket"), "x_seconds");
  EXPECT_EQ(HistogramFamilyOf("x_seconds_count"), "x_seconds");
  EXPECT_EQ(HistogramFamilyOf("x_seconds_sum"), "x_seconds");
  EXPECT_THAT(HistogramFamilyOf("x_total"), IsEmpty());
}

}  // namespace
}  // namespace ftune::testing
