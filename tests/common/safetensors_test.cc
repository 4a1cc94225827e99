#include "common/safetensors.h"

#include <cstring>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Builds a file image from a literal header and a data buffer.
std::string Image(const std::string& header, const std::string& data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(n >> (8 * i)));
  return out + header + data;
}

TEST(SafetensorsTest, RoundTripsTensorsAndMetadata) {
  SafetensorsWriter w;
  std::vector<float> a = {1.f, -2.f, 3.5f, 0.f, 7.f, 8.f};
  std::vector<uint16_t> b = {0x3c00, 0xc000};  // F16 1.0, -2.0
  ASSERT_OK(w.Add("a", StDType::kF32, {2, 3}, a.data(), a.size() * 4));
  ASSERT_OK(w.Add("b", StDType::kF16, {2}, b.data(), b.size() * 2));
  w.SetMetadata("format", "pt");
  std::string bytes = w.Serialize();
  // Data starts 8-byte aligned.
  uint64_t hlen = 0;
  std::memcpy(&hlen, bytes.data(), 8);
  EXPECT_EQ(hlen % 8, 0u);

  ASSERT_OK_AND_ASSIGN(auto f, SafetensorsFile::FromBytes(bytes, "mem"));
  EXPECT_THAT(f->Names(), ElementsAre("a", "b"));
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_OK_AND_ASSIGN(StTensorView va, f->Get("a"));
  EXPECT_EQ(va.dtype, StDType::kF32);
  EXPECT_THAT(va.shape, ElementsAre(2, 3));
  EXPECT_EQ(va.numel(), 6);
  std::vector<float> back(6);
  std::memcpy(back.data(), va.data, 24);
  EXPECT_EQ(back, a);
  ASSERT_OK_AND_ASSIGN(StTensorView vb, f->Get("b"));
  EXPECT_EQ(vb.size_bytes, 4u);
  EXPECT_THAT(f->Get("c"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("\"c\"")));
}

TEST(SafetensorsTest, OpensFromDiskWithMmap) {
  ftune::testing::TempDir dir;
  SafetensorsWriter w;
  std::vector<float> a = {1, 2, 3, 4};
  ASSERT_OK(w.Add("x.weight", StDType::kF32, {4}, a.data(), 16));
  ASSERT_OK(w.WriteAtomically(dir.Sub("m.safetensors")));
  ASSERT_OK_AND_ASSIGN(auto f, SafetensorsFile::Open(dir.Sub("m.safetensors")));
  ASSERT_OK_AND_ASSIGN(auto v, f->Get("x.weight"));
  EXPECT_EQ(reinterpret_cast<const float*>(v.data)[3], 4.f);
  EXPECT_THAT(SafetensorsFile::Open(dir.Sub("missing.safetensors")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

TEST(SafetensorsTest, EmptyShapeIsAScalar) {
  float s = 2.f;
  SafetensorsWriter w;
  ASSERT_OK(w.Add("s", StDType::kF32, {}, &s, 4));
  ASSERT_OK_AND_ASSIGN(auto f,
                       SafetensorsFile::FromBytes(w.Serialize(), "mem"));
  ASSERT_OK_AND_ASSIGN(auto v, f->Get("s"));
  EXPECT_EQ(v.numel(), 1);
}

struct BadCase {
  const char* label;
  std::string image;
  const char* message;
};

TEST(SafetensorsTest, RejectsMalformedHeaders) {
  const std::string d8(8, '\0');
  std::vector<BadCase> cases = {
      {"short", std::string("abc"), "shorter than"},
      {"len past end",
       std::string("\xff\x00\x00\x00\x00\x00\x00\x00", 8) + "{}",
       "runs past the end"},
      {"huge len", std::string("\xff\xff\xff\xff\xff\xff\x00\x00", 8),
       "exceeds the limit"},
      {"not json", Image("{nope", ""), "not valid JSON"},
      {"not object", Image("[1,2]", ""), "not a JSON object"},
      {"bad dtype",
       Image(R"({"t":{"dtype":"F13","shape":[2],"data_offsets":[0,8]}})", d8),
       "tensor \"t\": unsupported safetensors dtype \"F13\""},
      {"size mismatch",
       Image(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8),
       "tensor \"t\": holds 8 bytes but dtype F32 and shape need 12"},
      {"offset past end",
       Image(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d8),
       "tensor \"t\": data_offsets end 16 is past the data buffer"},
      {"begin after end",
       Image(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", d8),
       "begin 8 is after end 4"},
      {"negative dim",
       Image(R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}})", d8),
       "tensor \"t\": shape entries must be non-negative"},
      {"missing offsets", Image(R"({"t":{"dtype":"F32","shape":[2]}})", d8),
       "tensor \"t\": data_offsets"},
      {"overlap",
       Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
             d8),
       "overlaps"},
      {"hole",
       Image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8),
       "hole in the data buffer before tensor \"a\""},
      {"trailing",
       Image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", d8),
       "4 trailing bytes"},
      {"metadata not string", Image(R"({"__metadata__":{"k":1}})", ""),
       "__metadata__ value for \"k\""},
  };
  for (const BadCase& c : cases) {
    EXPECT_THAT(SafetensorsFile::FromBytes(c.image, "bad.safetensors"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::AllOf(HasSubstr("bad.safetensors"),
                                          HasSubstr(c.message))))
        << c.label;
  }
}

TEST(SafetensorsTest, WriterRejectsInconsistentInput) {
  SafetensorsWriter w;
  float x[2] = {0, 0};
  EXPECT_THAT(w.Add("t", StDType::kF32, {3}, x, 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"t\"")));
  ASSERT_OK(w.Add("t", StDType::kF32, {2}, x, 8));
  EXPECT_THAT(w.Add("t", StDType::kF32, {2}, x, 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
}

TEST(SafetensorsTest, ShardedCheckpointRoundTrip) {
  ftune::testing::TempDir dir;
  std::vector<SafetensorsWriter> shards(2);
  float a[2] = {1, 2}, b[3] = {3, 4, 5};
  ASSERT_OK(shards[0].Add("a", StDType::kF32, {2}, a, 8));
  ASSERT_OK(shards[1].Add("b", StDType::kF32, {3}, b, 12));
  ASSERT_OK(WriteShardedSafetensors(dir.path(), shards));
  ASSERT_OK_AND_ASSIGN(std::string index,
                       ReadFile(dir.Sub("model.safetensors.index.json")));
  EXPECT_THAT(index, HasSubstr("model-00002-of-00002.safetensors"));
  EXPECT_THAT(index, HasSubstr("\"total_size\": 20"));
  ASSERT_OK_AND_ASSIGN(auto ckpt, SafetensorsCheckpoint::Open(dir.path()));
  EXPECT_THAT(ckpt->Names(), ElementsAre("a", "b"));
  ASSERT_OK_AND_ASSIGN(auto vb, ckpt->Get("b"));
  EXPECT_EQ(reinterpret_cast<const float*>(vb.data)[2], 5.f);
  EXPECT_THAT(ckpt->Get("zz"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("\"zz\"")));
}

TEST(SafetensorsTest, IndexNamingAMissingTensorIsAnError) {
  ftune::testing::TempDir dir;
  SafetensorsWriter w;
  float a[1] = {1};
  ASSERT_OK(w.Add("a", StDType::kF32, {1}, a, 4));
  ASSERT_OK(w.WriteAtomically(dir.Sub("s1.safetensors")));
  ASSERT_OK(WriteFileAtomically(
      dir.Sub("model.safetensors.index.json"),
      R"({"weight_map":{"a":"s1.safetensors","ghost":"s1.safetensors"}})"));
  EXPECT_THAT(
      SafetensorsCheckpoint::Open(dir.path()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"ghost\"")));
}

TEST(SafetensorsTest, SingleFileDirectoryWithoutIndex) {
  ftune::testing::TempDir dir;
  std::vector<SafetensorsWriter> shards(1);
  float a[1] = {9};
  ASSERT_OK(shards[0].Add("a", StDType::kF32, {1}, a, 4));
  ASSERT_OK(WriteShardedSafetensors(dir.path(), shards));
  ASSERT_OK_AND_ASSIGN(auto ckpt, SafetensorsCheckpoint::Open(dir.path()));
  EXPECT_TRUE(ckpt->Contains("a"));
}

}  // namespace
}  // namespace ftune
