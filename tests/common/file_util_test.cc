#include "common/file_util.h"

#include <sys/stat.h>

#include <filesystem>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

TEST(FileUtilTest, WriteAtomicallyReplacesAndLeavesNoTemp) {
  testing::TempDir dir;
  const std::string path = dir.Sub("a.json");
  ASSERT_OK(WriteFileAtomically(path, "one"));
  ASSERT_OK(WriteFileAtomically(path, "two"));
  ASSERT_OK_AND_ASSIGN(std::string got, ReadFile(path));
  EXPECT_EQ(got, "two");
  int entries = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(FileUtilTest, WriteIntoMissingDirectoryFailsWithPath) {
  testing::TempDir dir;
  EXPECT_THAT(WriteFileAtomically(dir.Sub("no/such/file"), "x"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no/such/file")));
}

TEST(FileUtilTest, PublishDirectoryOnceOnly) {
  testing::TempDir dir;
  ASSERT_OK(MakeDirs(dir.Sub("staging/sub")));
  ASSERT_OK(WriteFileAtomically(dir.Sub("staging/sub/f"), "data"));
  ASSERT_OK(PublishDirectory(dir.Sub("staging"), dir.Sub("final")));
  ASSERT_OK_AND_ASSIGN(std::string got, ReadFile(dir.Sub("final/sub/f")));
  EXPECT_EQ(got, "data");
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("staging")));

  ASSERT_OK(MakeDirs(dir.Sub("staging2")));
  EXPECT_THAT(PublishDirectory(dir.Sub("staging2"), dir.Sub("final")),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("final")));
  // The first publication is untouched.
  ASSERT_OK_AND_ASSIGN(got, ReadFile(dir.Sub("final/sub/f")));
  EXPECT_EQ(got, "data");
}

TEST(FileUtilTest, ReadMissingIsNotFound) {
  testing::TempDir dir;
  EXPECT_THAT(ReadFile(dir.Sub("nope")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
}

TEST(FileUtilTest, JoinPath) {
  EXPECT_EQ(JoinPath("a", "b"), "a/b");
  EXPECT_EQ(JoinPath("a/", "b"), "a/b");
  EXPECT_EQ(JoinPath("a/", "/b"), "a/b");
  EXPECT_EQ(JoinPath("", "b"), "b");
}

}  // namespace
}  // namespace ftune
