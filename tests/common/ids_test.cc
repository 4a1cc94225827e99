#include "common/ids.h"

#include <set>

#include "gtest/gtest.h"

namespace ftune {
namespace {

TEST(IdsTest, NewIdHasPrefixAndValidates) {
  std::string id = NewId(kJobIdPrefix);
  EXPECT_EQ(id.rfind("job-", 0), 0u);
  EXPECT_TRUE(IsValidId(id, kJobIdPrefix));
  EXPECT_FALSE(IsValidId(id, kFileIdPrefix));
}

TEST(IdsTest, RejectsMalformed) {
  EXPECT_FALSE(IsValidId("job-", kJobIdPrefix));
  EXPECT_FALSE(IsValidId("job-ABCDEFGHIJKLMNOPQRSTUVWX", kJobIdPrefix));
  EXPECT_FALSE(IsValidId("job_abcdefghijklmnopqrstuvwx", kJobIdPrefix));
  EXPECT_FALSE(IsValidId("job-abcdefghijklmnopqrstuvw", kJobIdPrefix));
  EXPECT_FALSE(IsValidId("job-abcdefghijklmnopqrstuv01", kJobIdPrefix));
  EXPECT_TRUE(IsValidId("job-abcdefghijklmnopqrstuv23", kJobIdPrefix));
}

TEST(IdsTest, IdsAreDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    EXPECT_TRUE(seen.insert(NewId("x")).second);
  }
}

}  // namespace
}  // namespace ftune
