// What a trainer can run: its JSON both ways, and the check that names the
// JobSpec field a trainer cannot satisfy.
#include "common/contract/capabilities.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftune::contract {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

TrainerCapabilities CpuTrainer() {
  TrainerCapabilities c;
  c.version = "0.9";
  c.methods = {"lora", "qlora"};
  c.architectures = {"LlamaForCausalLM", "Qwen2ForCausalLM"};
  c.dtypes = {"fp32", "bf16", "fp64"};
  c.cuda = false;
  c.max_gpus_per_job = 1;
  c.chat_templates = {"chatml"};
  return c;
}

std::vector<std::string> Fields(const std::vector<Unsupported>& u) {
  std::vector<std::string> f;
  for (const Unsupported& x : u) f.push_back(x.field);
  return f;
}

TEST(CapabilitiesTest, RoundTrip) {
  TrainerCapabilities c = CpuTrainer();
  c.objectives = {"sft", "dpo"};
  absl::StatusOr<TrainerCapabilities> back =
      ParseCapabilities(CapabilitiesToJson(c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(CapabilitiesToJson(*back), CapabilitiesToJson(c));
  EXPECT_EQ(back->architectures, c.architectures);
  EXPECT_EQ(back->objectives, c.objectives);
  EXPECT_FALSE(back->cuda);
  EXPECT_THAT(
      std::string(
          ParseCapabilities(R"({"methods":"lora"})").status().message()),
      HasSubstr("\"methods\" must be a list of strings"));
  EXPECT_FALSE(ParseCapabilities("nope").ok());
  EXPECT_FALSE(ParseCapabilities(R"({"max_gpus_per_job":-1})").ok());
}

TEST(CapabilitiesTest, NamesEveryFieldTheTrainerCannotRun) {
  const TrainerCapabilities c = CpuTrainer();
  TrainerRequirement ok;
  ok.architecture = "LlamaForCausalLM";
  EXPECT_THAT(CheckCapabilities(ok, 0, c), IsEmpty());

  TrainerRequirement bad;
  bad.method = Method::kQlora;
  bad.architecture = "Gemma2ForCausalLM";
  bad.dtype = Dtype::kFp16;
  TrainerCapabilities lora_only = c;
  lora_only.methods = {"lora"};
  const std::vector<Unsupported> u = CheckCapabilities(bad, 2, lora_only);
  EXPECT_THAT(Fields(u),
              ElementsAre("spec.method", "spec.model", "spec.resources.gpus",
                          "spec.quantization.compute_dtype"));
  EXPECT_THAT(u[1].message, HasSubstr("does not load Gemma2ForCausalLM"));
  EXPECT_THAT(u[2].message, HasSubstr("without CUDA"));

  // A CUDA trainer limited to one GPU a job.
  TrainerCapabilities gpu = c;
  gpu.cuda = true;
  TrainerRequirement any;
  ASSERT_THAT(Fields(CheckCapabilities(any, 2, gpu)),
              ElementsAre("spec.resources.gpus"));
  EXPECT_THAT(CheckCapabilities(any, 2, gpu)[0].message,
              HasSubstr("at most 1 GPU(s) per job, 2 asked"));
  EXPECT_THAT(CheckCapabilities(any, 1, gpu), IsEmpty());

  // Objectives: a trainer from before preference optimisation reports
  // none and runs SFT only.
  TrainerRequirement dpo = ok;
  dpo.objective = Objective::kDpo;
  ASSERT_THAT(Fields(CheckCapabilities(dpo, 0, c)),
              ElementsAre("spec.objective"));
  EXPECT_THAT(CheckCapabilities(dpo, 0, c)[0].message,
              HasSubstr("runs objectives sft, not dpo"));
  TrainerCapabilities prefs = c;
  prefs.objectives = {"sft", "dpo", "orpo"};
  EXPECT_THAT(CheckCapabilities(dpo, 0, prefs), IsEmpty());
  EXPECT_THAT(CheckCapabilities(ok, 0, prefs), IsEmpty());
}

TEST(CapabilitiesTest, RequirementRoundTripAndBadValues) {
  TrainerRequirement need;
  need.method = Method::kQlora;
  need.architecture = "Phi3ForCausalLM";
  need.dtype = Dtype::kBf16;
  need.objective = Objective::kOrpo;
  absl::StatusOr<TrainerRequirement> back =
      ParseRequirement(RequirementToJson(need));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->method, Method::kQlora);
  EXPECT_EQ(back->objective, Objective::kOrpo);
  EXPECT_EQ(back->architecture, "Phi3ForCausalLM");
  EXPECT_EQ(back->dtype, Dtype::kBf16);
  need.dtype.reset();
  back = ParseRequirement(RequirementToJson(need));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->dtype.has_value());
  // Stored before objectives existed: SFT.
  back = ParseRequirement(R"({"method":"lora"})");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->objective, Objective::kSft);
  EXPECT_THAT(
      std::string(ParseRequirement(R"({"method":"lora","objective":"ppo"})")
                      .status()
                      .message()),
      HasSubstr("unknown objective \"ppo\""));
  EXPECT_THAT(
      std::string(ParseRequirement(R"({"method":"sft"})").status().message()),
      HasSubstr("unknown method \"sft\""));
  EXPECT_THAT(std::string(ParseRequirement(R"({"method":"lora","dtype":5})")
                              .status()
                              .message()),
              HasSubstr("\"dtype\" must be a string"));
  EXPECT_FALSE(ParseRequirement("[]").ok());
}

TEST(CapabilitiesTest, RanksOfACpuJob) {
  // Stored with a queued job only when more than one.
  TrainerRequirement need;
  EXPECT_EQ(RequirementToJson(need).find("ranks"), std::string::npos);
  need.ranks = 4;
  absl::StatusOr<TrainerRequirement> back =
      ParseRequirement(RequirementToJson(need));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ranks, 4);
  EXPECT_EQ(ParseRequirement(R"({"method":"lora"})")->ranks, 1);
  EXPECT_THAT(std::string(ParseRequirement(R"({"method":"lora","ranks":0})")
                              .status()
                              .message()),
              HasSubstr("\"ranks\" must be an integer in [1, 16]"));

  // A trainer from before data-parallel training (no max_ranks_per_job)
  // runs one process a job.
  TrainerCapabilities old = CpuTrainer();
  absl::StatusOr<TrainerCapabilities> parsed = ParseCapabilities(
      R"({"methods":["lora"],"architectures":["LlamaForCausalLM"]})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->max_ranks_per_job, 1);
  need.architecture = "LlamaForCausalLM";
  need.ranks = 2;
  EXPECT_THAT(Fields(CheckCapabilities(need, 0, old)),
              ElementsAre("spec.resources.processes"));
  TrainerCapabilities now = CpuTrainer();
  now.max_ranks_per_job = 16;
  back = ParseRequirement(RequirementToJson(need));
  EXPECT_THAT(CheckCapabilities(need, 0, now), IsEmpty());
  parsed = ParseCapabilities(CapabilitiesToJson(now));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->max_ranks_per_job, 16);
  EXPECT_FALSE(ParseCapabilities(R"({"max_ranks_per_job":-1})").ok());
}

}  // namespace
}  // namespace ftune::contract
