#include "common/sha256.h"

#include <string>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune {
namespace {

// Test vectors from FIPS 180-4 examples / NIST CAVP.
TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(
      Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, StreamingMatchesOneShotAtEveryBoundary) {
  std::string data;
  for (int i = 0; i < 300; ++i) data.push_back(static_cast<char>(i * 7));
  const std::string whole = Sha256Hex(data);
  for (size_t split = 0; split <= data.size(); split += 13) {
    Sha256 h;
    h.Update(absl::string_view(data).substr(0, split));
    h.Update(absl::string_view(data).substr(split));
    EXPECT_EQ(h.FinishHex(), whole) << "split at " << split;
  }
}

TEST(Sha256Test, FileDigestAndMissingFile) {
  testing::TempDir dir;
  ASSERT_OK(WriteFileAtomically(dir.Sub("f"), "abc"));
  ASSERT_OK_AND_ASSIGN(std::string hex, Sha256File(dir.Sub("f")));
  EXPECT_EQ(hex, Sha256Hex("abc"));
  EXPECT_EQ(Sha256File(dir.Sub("missing")).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace ftune
