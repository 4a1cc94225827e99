#include "server/core/job_state.h"

#include <set>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftune::core {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;
using S = JobState;

// The table from DESIGN.md "Flow of one job", written out independently of
// AllTransitions() so a change to either shows up here.
const std::set<std::pair<S, S>>& ExpectedEdges() {
  static const auto* edges = new std::set<std::pair<S, S>>{
      {S::kQueued, S::kRunning},       {S::kQueued, S::kPaused},
      {S::kQueued, S::kCancelled},     {S::kQueued, S::kFailed},
      {S::kRunning, S::kSucceeded},    {S::kRunning, S::kFailed},
      {S::kRunning, S::kQueued},       {S::kRunning, S::kCancelling},
      {S::kRunning, S::kPaused},       {S::kCancelling, S::kCancelled},
      {S::kCancelling, S::kSucceeded}, {S::kCancelling, S::kFailed},
      {S::kPaused, S::kQueued},        {S::kPaused, S::kCancelled},
      {S::kPaused, S::kSucceeded},     {S::kPaused, S::kFailed},
  };
  return *edges;
}

TEST(JobStateTest, EveryPairIsAllowedExactlyWhenInTheTable) {
  int allowed = 0;
  for (S from : kAllJobStates) {
    for (S to : kAllJobStates) {
      const bool expected = ExpectedEdges().count({from, to}) > 0;
      EXPECT_EQ(IsAllowedTransition(from, to), expected)
          << JobStateName(from) << " -> " << JobStateName(to);
      allowed += expected;
    }
  }
  EXPECT_EQ(allowed, 16);
  EXPECT_EQ(AllTransitions().size(), ExpectedEdges().size());
}

TEST(JobStateTest, TerminalStatesHaveNoOutgoingEdges) {
  for (S from : kAllJobStates) {
    bool has_edge = false;
    for (S to : kAllJobStates) has_edge |= IsAllowedTransition(from, to);
    EXPECT_EQ(IsTerminal(from), !has_edge) << JobStateName(from);
  }
  EXPECT_TRUE(IsTerminal(S::kSucceeded));
  EXPECT_TRUE(IsTerminal(S::kFailed));
  EXPECT_TRUE(IsTerminal(S::kCancelled));
  EXPECT_FALSE(IsTerminal(S::kCancelling));
}

TEST(JobStateTest, NamesRoundTrip) {
  for (S s : kAllJobStates) {
    ASSERT_OK_AND_ASSIGN(S parsed, ParseJobState(JobStateName(s)));
    EXPECT_EQ(parsed, s);
    ASSERT_OK_AND_ASSIGN(S from_int, JobStateFromInt(static_cast<int>(s)));
    EXPECT_EQ(from_int, s);
  }
  ASSERT_OK_AND_ASSIGN(S lower, ParseJobState("running"));
  EXPECT_EQ(lower, S::kRunning);
  EXPECT_THAT(ParseJobState("DONE"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("DONE")));
  EXPECT_THAT(JobStateFromInt(0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0")));
}

TEST(JobStateTest, CancelTargets) {
  EXPECT_EQ(*CancelTarget(S::kQueued), S::kCancelled);
  EXPECT_EQ(*CancelTarget(S::kPaused), S::kCancelled);
  EXPECT_EQ(*CancelTarget(S::kRunning), S::kCancelling);
  EXPECT_EQ(*CancelTarget(S::kCancelling), S::kCancelling);
  for (S s : {S::kSucceeded, S::kFailed, S::kCancelled}) {
    EXPECT_THAT(CancelTarget(s), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr(JobStateName(s))));
  }
}

TEST(JobStateTest, PauseAndResumeTargets) {
  EXPECT_EQ(*PauseTarget(S::kQueued), S::kPaused);
  EXPECT_EQ(*PauseTarget(S::kRunning), S::kPaused);
  for (S s :
       {S::kPaused, S::kCancelling, S::kSucceeded, S::kFailed, S::kCancelled}) {
    EXPECT_THAT(PauseTarget(s), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr(JobStateName(s))));
  }
  EXPECT_EQ(*ResumeTarget(S::kPaused), S::kQueued);
  for (S s : kAllJobStates) {
    if (s == S::kPaused) continue;
    EXPECT_THAT(ResumeTarget(s), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr(JobStateName(s))));
  }
  // Every target a request produces is itself an edge of the table (or no
  // change at all).
  for (S s : kAllJobStates) {
    for (auto fn : {&CancelTarget, &PauseTarget, &ResumeTarget}) {
      absl::StatusOr<S> t = fn(s);
      if (t.ok() && *t != s) {
        EXPECT_TRUE(IsAllowedTransition(s, *t));
      }
    }
  }
}

}  // namespace
}  // namespace ftune::core
