#include "server/core/api_key.h"

#include <set>

#include "common/sha256.h"
#include "gtest/gtest.h"

namespace ftune::core {
namespace {

TEST(ApiKeyTest, GeneratedKeysHaveTheDocumentedShape) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    GeneratedApiKey k = GenerateApiKey();
    EXPECT_EQ(k.key.size(), 44u);
    EXPECT_EQ(k.key.substr(0, 4), "ftk_");
    EXPECT_TRUE(LooksLikeApiKey(k.key)) << k.key;
    EXPECT_EQ(k.prefix, k.key.substr(0, 12));
    EXPECT_EQ(k.hash.size(), 64u);
    EXPECT_TRUE(seen.insert(k.key).second) << "duplicate key";
  }
}

TEST(ApiKeyTest, HashIsSha256OfTheWholeKey) {
  // sha256("abc"), FIPS 180-4 example.
  EXPECT_EQ(HashApiKey("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  GeneratedApiKey k = GenerateApiKey();
  EXPECT_EQ(k.hash, Sha256Hex(k.key));
  EXPECT_TRUE(ApiKeyMatches(k.key, k.hash));
  std::string other = k.key;
  other.back() = other.back() == 'a' ? 'b' : 'a';
  EXPECT_FALSE(ApiKeyMatches(other, k.hash));
}

TEST(ApiKeyTest, ShapeCheckRejectsNearMisses) {
  EXPECT_FALSE(LooksLikeApiKey(""));
  EXPECT_FALSE(LooksLikeApiKey("ftk_"));
  EXPECT_FALSE(LooksLikeApiKey("ftx_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
  EXPECT_FALSE(LooksLikeApiKey("ftk_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1"));
  EXPECT_FALSE(LooksLikeApiKey("ftk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
  EXPECT_TRUE(LooksLikeApiKey("ftk_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2"));
}

TEST(ApiKeyTest, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_FALSE(ConstantTimeEquals("xbc", "abc"));
}

}  // namespace
}  // namespace ftune::core
