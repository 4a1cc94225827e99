#include "common/confined_path.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/quote.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

TEST(CheckConfinedPathTest, AcceptsNormalisedRelativePathsOnly) {
  for (const char* ok : {"a", "adapter_model.safetensors", "a/b/c.json", "..a",
                         "a..", "a/.b", "x y/z"}) {
    EXPECT_OK(CheckConfinedPath(ok)) << ok;
  }
  for (const std::string& bad :
       {std::string(""), std::string("/etc/passwd"), std::string(".."),
        std::string("."), std::string("../x"), std::string("a/../../x"),
        std::string("a/./b"), std::string("a//b"), std::string("a/"),
        std::string("a/.."), std::string("a\0b", 3), std::string(256, 'c'),
        std::string(4097, 'c')}) {
    EXPECT_THAT(CheckConfinedPath(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_))
        << QuoteValue(bad);
  }
}

class OpenBeneathTest : public ::testing::Test {
 protected:
  void Write(const std::string& rel, const std::string& text) {
    std::filesystem::create_directories(
        std::filesystem::path(dir_.Sub("root/" + rel)).parent_path());
    std::ofstream(dir_.Sub("root/" + rel)) << text;
  }
  std::string Read(UniqueFd fd) {
    char buf[64];
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
  ::ftune::testing::TempDir dir_;
};

TEST_F(OpenBeneathTest, OpensRegularFilesAndRefusesEverythingElse) {
  namespace fs = std::filesystem;
  Write("jobs/t/j/adapter/a.json", "{}");
  std::ofstream(dir_.Sub("secret")) << "secret";
  fs::create_symlink(dir_.Sub("secret"), dir_.Sub("root/jobs/t/j/adapter/l"));
  fs::create_directory_symlink(dir_.Sub("root/jobs/t/j/adapter"),
                               dir_.Sub("root/jobs/t/j/linked"));
  ASSERT_EQ(::mkfifo(dir_.Sub("root/jobs/t/j/adapter/fifo").c_str(), 0644), 0);
  const std::string root = dir_.Sub("root");

  ASSERT_OK_AND_ASSIGN(UniqueFd fd,
                       OpenBeneath(root, "jobs/t/j/adapter/a.json"));
  EXPECT_EQ(Read(std::move(fd)), "{}");
  EXPECT_THAT(OpenBeneath(root, "jobs/t/j/adapter/missing"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
  EXPECT_THAT(OpenBeneath(root, "jobs/t/j/adapter/l"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("symbolic")));
  EXPECT_THAT(OpenBeneath(root, "jobs/t/j/linked/a.json"),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
  EXPECT_THAT(OpenBeneath(root, "jobs/t/j/adapter/fifo"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("regular")));
  EXPECT_THAT(OpenBeneath(root, "jobs/t/j/adapter"),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
  EXPECT_THAT(OpenBeneath(root, "jobs/t/j/adapter/a.json/x"),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
  EXPECT_THAT(OpenBeneath(root, "../secret"),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(OpenBeneath(dir_.Sub("no-such-root"), "a"),
              StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  // The root itself may be reached through a link (an operator's mount).
  fs::create_directory_symlink(root, dir_.Sub("mount"));
  EXPECT_OK(OpenBeneath(dir_.Sub("mount"), "jobs/t/j/adapter/a.json").status());
}

TEST(StorageErrorTest, ErrnoBecomesATypedCodeNeverInternal) {
  EXPECT_EQ(StorageError("open", "x", ENOENT).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(StorageError("write", "x", ENOSPC).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(StorageError("open", "x", ELOOP).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(StorageError("open", "x", EACCES).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StorageError("read", "x", EIO).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_THAT(StorageError("read", "jobs/x", EIO).message(),
              HasSubstr("read jobs/x: "));
}

TEST(QuoteValueTest, ShortValuesWholeLongOnesAPrefixAndTheirLength) {
  EXPECT_EQ(QuoteValue("tiny"), "\"tiny\"");
  EXPECT_EQ(QuoteValue("a\"b\n"), "\"a\\\"b\\n\"");
  const std::string huge(70000, 'x');
  EXPECT_EQ(QuoteValue(huge),
            "\"" + std::string(kMaxQuotedBytes, 'x') + "...\" (70000 bytes)");
  EXPECT_EQ(QuoteValue(std::string(kMaxQuotedBytes, 'y')),
            "\"" + std::string(kMaxQuotedBytes, 'y') + "\"");
}

TEST(TruncateMessageTest, CutsOnACharacterBoundary) {
  EXPECT_EQ(TruncateMessage("short", 10), "short");
  EXPECT_EQ(TruncateMessage("abcdef", 3), "abc... (3 more bytes)");
  // "é" is two bytes: a cut inside it backs up before it.
  EXPECT_EQ(TruncateMessage("ab\xc3\xa9z", 3), "ab... (3 more bytes)");
}

}  // namespace
}  // namespace ftune
