#include "worker/agent/capabilities.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftune::agent {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

TEST(CapabilitiesTest, ParsesNvidiaSmiCsv) {
  ASSERT_OK_AND_ASSIGN(
      std::vector<v1::GpuDevice> gpus,
      ParseNvidiaSmiCsv("0, NVIDIA H100 80GB HBM3, 81559, 9.0\n"
                        "1, NVIDIA A10G, 23028, 8.6\n\n"));
  ASSERT_EQ(gpus.size(), 2u);
  EXPECT_EQ(gpus[0].index(), 0);
  EXPECT_EQ(gpus[0].name(), "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(gpus[0].memory_bytes(), int64_t{81559} * 1024 * 1024);
  EXPECT_EQ(gpus[0].compute_capability(), "9.0");
  EXPECT_EQ(gpus[1].index(), 1);
  EXPECT_EQ(gpus[1].compute_capability(), "8.6");
  ASSERT_OK_AND_ASSIGN(gpus, ParseNvidiaSmiCsv(""));
  EXPECT_TRUE(gpus.empty());
  EXPECT_THAT(
      ParseNvidiaSmiCsv("0, X, 100\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1")));
  EXPECT_THAT(ParseNvidiaSmiCsv("0, X, 100, 9.0\nz, Y, 1, 8.0\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 2: bad index")));
  EXPECT_THAT(
      ParseNvidiaSmiCsv("0, X, [N/A], 9.0\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("memory.total")));
}

TEST(CapabilitiesTest, SelectsGpus) {
  ASSERT_OK_AND_ASSIGN(auto found,
                       ParseNvidiaSmiCsv("0, A, 1, 9.0\n2, B, 1, 9.0\n"));
  ASSERT_OK_AND_ASSIGN(auto all, SelectGpus("auto", found));
  EXPECT_EQ(all.size(), 2u);
  ASSERT_OK_AND_ASSIGN(auto none, SelectGpus("none", found));
  EXPECT_TRUE(none.empty());
  ASSERT_OK_AND_ASSIGN(auto two, SelectGpus("2", found));
  ASSERT_EQ(two.size(), 1u);
  EXPECT_EQ(two[0].name(), "B");
  EXPECT_THAT(SelectGpus("1", found),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("GPU 1")));
  EXPECT_THAT(SelectGpus("0,0", found),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  EXPECT_THAT(SelectGpus("all", found),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("all")));
}

TEST(CapabilitiesTest, ParsesLabels) {
  ASSERT_OK_AND_ASSIGN(auto labels, ParseLabels("zone=eu-1,gpu=h100,empty="));
  EXPECT_EQ(labels.size(), 3u);
  EXPECT_EQ(labels["zone"], "eu-1");
  EXPECT_EQ(labels["empty"], "");
  ASSERT_OK_AND_ASSIGN(labels, ParseLabels(""));
  EXPECT_TRUE(labels.empty());
  EXPECT_THAT(ParseLabels("zone"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("zone")));
  EXPECT_THAT(ParseLabels("a=1,a=2"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
}

TEST(CapabilitiesTest, HostFacts) {
  EXPECT_FALSE(Hostname().empty());
  EXPECT_GE(OnlineCpus(), 1);
  EXPECT_GT(PhysicalMemoryBytes(), 0);
  EXPECT_FALSE(SoftwareVersion().empty());
}

// What the trainer runs, asked of the trainer binary itself (the stand-in
// prints what ftune-train prints, or FTUNE_STAND_IN_CAPABILITIES).
TEST(CapabilitiesTest, QueriesTheTrainerBinary) {
  const std::string trainer =
      std::string(FTUNE_BIN_DIR) + "/ftune-stand-in-trainer";
  unsetenv("FTUNE_STAND_IN_CAPABILITIES");
  ASSERT_OK_AND_ASSIGN(v1::TrainerCapabilities caps, QueryTrainer(trainer));
  EXPECT_THAT(caps.methods(), ::testing::ElementsAre("lora", "qlora"));
  EXPECT_THAT(caps.architectures(),
              ::testing::IsSupersetOf({"LlamaForCausalLM", "Phi3ForCausalLM",
                                       "Gemma2ForCausalLM", "GPT2LMHeadModel",
                                       "Qwen3ForCausalLM"}));
  EXPECT_THAT(caps.chat_templates(), ::testing::Contains("gemma"));

  setenv("FTUNE_STAND_IN_CAPABILITIES", R"({"methods": ["lora"], "cuda": 1})",
         1);
  EXPECT_THAT(QueryTrainer(trainer),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("\"cuda\" must be true or false")));
  unsetenv("FTUNE_STAND_IN_CAPABILITIES");
  // Not a trainer of this release: it exits non-zero.
  EXPECT_THAT(QueryTrainer("/bin/false"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("/bin/false capabilities failed (exit 1)")));
}

}  // namespace
}  // namespace ftune::agent
