#include "common/file_util.h"

#include <cerrno>

#include <sys/stat.h>

#include <filesystem>

#include "common/fs_faults.h"
#include "common/status.h"
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

// Injected faults (common/fs_faults.h): each durable write fails cleanly
// where the disk would, and leaves the old state.
class FsFaultTest : public ::testing::Test {
 protected:
  void TearDown() override { fsfault::Clear(); }
  testing::TempDir dir_;
};

TEST_F(FsFaultTest, BadPlansAreRefusedNamingTheRuleAndChangeNothing) {
  ASSERT_OK(fsfault::Install("fsync::1=EIO"));
  EXPECT_THAT(fsfault::Install("fsync::0=EIO"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"fsync::0=EIO\": N must be")));
  EXPECT_THAT(fsfault::Install("unlink:x:1=EIO"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown OP \"unlink\"")));
  EXPECT_THAT(fsfault::Install("write:x:1=EPERM"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown ACTION \"EPERM\"")));
  EXPECT_THAT(fsfault::Install("write:x:1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'='")));
  // The first plan is still in place: the first fsync fails, once.
  EXPECT_EQ(fsfault::Check(fsfault::Op::kFsync, "/any"), EIO);
  EXPECT_EQ(fsfault::Check(fsfault::Op::kFsync, "/any"), 0);
}

TEST_F(FsFaultTest, FullDiskOnWriteOrFsyncKeepsTheOldFileAndNoTemp) {
  const std::string path = dir_.Sub("state.json");
  ASSERT_OK(WriteFileAtomically(path, "old"));
  for (const char* plan :
       {"write:state.json:1=ENOSPC", "fsync:state.json.tmp-:1=EDQUOT",
        "rename:/state.json$:1=EIO"}) {
    SCOPED_TRACE(plan);
    ASSERT_OK(fsfault::Install(plan));
    absl::Status st = WriteFileAtomically(path, "new");
    EXPECT_FALSE(st.ok());
    EXPECT_TRUE(IsStorageError(st)) << st;
    // The mark survives the context callers add.
    EXPECT_TRUE(IsStorageError(Annotate(st, "writing the state")));
    EXPECT_THAT(std::string(st.message()), HasSubstr("state.json"));
    ASSERT_OK_AND_ASSIGN(std::string got, ReadFile(path));
    EXPECT_EQ(got, "old");
    int entries = 0;
    for (auto& e : std::filesystem::directory_iterator(dir_.path())) {
      (void)e;
      ++entries;
    }
    EXPECT_EQ(entries, 1);
  }
  ASSERT_OK(fsfault::Install("write:state.json:1=ENOSPC"));
  EXPECT_THAT(WriteFileAtomically(path, "new"),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("No space left on device")));
  // A rule fires once: the next write goes through.
  ASSERT_OK(WriteFileAtomically(path, "new"));
  EXPECT_FALSE(IsStorageError(absl::ResourceExhaustedError("out of memory")));
}

TEST_F(FsFaultTest, FailedPublishLeavesNoTargetAndLeftoversAreCleared) {
  ASSERT_OK(MakeDirs(dir_.Sub("out.tmp-stage-1")));
  ASSERT_OK(WriteFileAtomically(dir_.Sub("out.tmp-stage-1/a"), "a"));
  ASSERT_OK(fsfault::Install("rename:/out$:1=EIO"));
  EXPECT_THAT(
      PublishDirectory(dir_.Sub("out.tmp-stage-1"), dir_.Sub("out")),
      StatusIs(absl::StatusCode::kInternal, HasSubstr("Input/output error")));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("out")));
  // What crashed publishers would leave, beside names that only look alike.
  ASSERT_OK(MakeDirs(dir_.Sub("outer.tmp-stage-2")));
  ASSERT_OK(MakeDirs(dir_.Sub("step-20.tmp-stage-3")));
  ASSERT_OK(MakeDirs(dir_.Sub("step-10")));
  ASSERT_OK(RemovePublishLeftovers(dir_.Sub("out")));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("out.tmp-stage-1")));
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("outer.tmp-stage-2")));
  ASSERT_OK(RemoveStagingLeftovers(dir_.path(), "step-"));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("step-20.tmp-stage-3")));
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("step-10")));
  EXPECT_OK(RemoveStagingLeftovers(dir_.Sub("missing"), "step-"));
}

}  // namespace
}  // namespace ftune
