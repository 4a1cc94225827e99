#include "common/status.h"

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftune {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  FTUNE_ASSIGN_OR_RETURN(int half, Half(x));
  FTUNE_ASSIGN_OR_RETURN(auto quarter, Half(half));
  return quarter;
}

int calls = 0;
absl::Status Counted(bool fail) {
  ++calls;
  return fail ? absl::NotFoundError("gone") : absl::OkStatus();
}

absl::Status Twice(bool fail_first) {
  FTUNE_RETURN_IF_ERROR(Counted(fail_first));
  FTUNE_RETURN_IF_ERROR(Counted(false));
  return absl::OkStatus();
}

TEST(StatusMacrosTest, AssignOrReturnPropagatesFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_THAT(Quarter(6), StatusIs(absl::StatusCode::kInvalidArgument, "odd"));
  EXPECT_THAT(Quarter(3), StatusIs(absl::StatusCode::kInvalidArgument, "odd"));
}

TEST(StatusMacrosTest, ReturnIfErrorStopsAndEvaluatesOnce) {
  calls = 0;
  EXPECT_THAT(Twice(true), StatusIs(absl::StatusCode::kNotFound, "gone"));
  EXPECT_EQ(calls, 1);
  calls = 0;
  EXPECT_OK(Twice(false));
  EXPECT_EQ(calls, 2);
}

TEST(StatusMacrosTest, AnnotateKeepsCodeAndPrefixesMessage) {
  EXPECT_THAT(Annotate(absl::NotFoundError("x"), "loading y"),
              StatusIs(absl::StatusCode::kNotFound, "loading y: x"));
  EXPECT_OK(Annotate(absl::OkStatus(), "ctx"));
  EXPECT_THAT(Annotate(absl::InternalError("e"), "a"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("a: e")));
}

}  // namespace
}  // namespace ftune
