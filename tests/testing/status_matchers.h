// gtest helpers for absl::Status / StatusOr (Debian's Abseil has no status
// matchers).
//
//   EXPECT_OK(status_or_statusor);
//   ASSERT_OK_AND_ASSIGN(auto value, FunctionReturningStatusOr());
//   EXPECT_THAT(status, StatusIs(absl::StatusCode::kNotFound, HasSubstr("x")));
#ifndef FTUNE_TESTS_TESTING_STATUS_MATCHERS_H_
#define FTUNE_TESTS_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftune::testing {

template <typename T>
const absl::Status& GetStatus(const T& s) {
  return ::ftune::internal::ToStatus(s);
}

MATCHER_P2(StatusIs, code, message_matcher, "") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code &&
         ::testing::ExplainMatchResult(
             message_matcher, std::string(s.message()), result_listener);
}

}  // namespace ftune::testing

#define EXPECT_OK(expr)                               \
  EXPECT_TRUE(::ftune::testing::GetStatus(expr).ok()) \
      << ::ftune::testing::GetStatus(expr)
#define ASSERT_OK(expr)                               \
  ASSERT_TRUE(::ftune::testing::GetStatus(expr).ok()) \
      << ::ftune::testing::GetStatus(expr)

#define FTUNE_TEST_ASSIGN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                            \
  ASSERT_TRUE(tmp.ok()) << tmp.status();        \
  lhs = std::move(tmp).value()
#define ASSERT_OK_AND_ASSIGN(lhs, expr)                                        \
  FTUNE_TEST_ASSIGN_IMPL_(FTUNE_STATUS_CONCAT_(ftune_test_or_, __LINE__), lhs, \
                          expr)

#endif  // FTUNE_TESTS_TESTING_STATUS_MATCHERS_H_
