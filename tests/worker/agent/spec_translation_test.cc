#include "worker/agent/spec_translation.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftune::agent {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

// A command as the scheduler sends it: spec with defaults resolved
// (server/core/spec_validation.cc ResolveJobSpec).
v1::AssignJobCommand Command() {
  v1::AssignJobCommand c;
  c.set_job_id("job-1");
  c.set_attempt(2);
  c.set_model_path("models/tiny");
  c.set_training_file_path("files/tenant-a/file-1");
  c.set_checkpoint_dir("jobs/tenant-a/job-1/checkpoints");
  c.set_adapter_dir("jobs/tenant-a/job-1/adapter");
  c.set_log_path("jobs/tenant-a/job-1/logs/attempt-2.log");
  c.set_cpu_threads(3);
  v1::JobSpec* s = c.mutable_spec();
  s->set_model("tiny");
  s->set_method(v1::TRAINING_METHOD_LORA);
  s->mutable_lora()->set_rank(4);
  s->mutable_lora()->set_alpha(8);
  s->mutable_lora()->add_target_modules("q_proj");
  s->mutable_lora()->add_target_modules("v_proj");
  v1::Hyperparameters* h = s->mutable_hyperparameters();
  h->set_max_steps(100);
  h->set_learning_rate(1e-3);
  h->set_lr_scheduler(v1::LR_SCHEDULER_COSINE);
  h->set_warmup_ratio(0.03);
  h->set_batch_size(2);
  h->set_gradient_accumulation_steps(3);
  h->set_max_seq_length(128);
  h->set_chat_template("chatml");
  h->set_max_grad_norm(0.5);
  h->set_seed(7);
  h->set_checkpoint_every_steps(25);
  h->set_checkpoints_to_keep(3);
  h->set_gradient_checkpointing(false);
  h->set_auto_reduce_batch_on_oom(false);
  h->set_log_every_steps(5);
  s->mutable_resources()->set_gpus(0);
  return c;
}

TEST(SpecTranslationTest, MapsEveryFieldToAbsolutePaths) {
  ASSERT_OK_AND_ASSIGN(TrainerSpec t, TranslateAssignment(Command(), "/st/"));
  const nlohmann::json& j = t.json;
  EXPECT_EQ(j["model_dir"], "/st/models/tiny");
  EXPECT_EQ(j["base_model_name"], "tiny");
  EXPECT_EQ(j["train_data"], "/st/files/tenant-a/file-1");
  EXPECT_EQ(j["output_dir"], "/st/jobs/tenant-a/job-1/adapter");
  EXPECT_EQ(j["checkpoint_dir"], "/st/jobs/tenant-a/job-1/checkpoints");
  EXPECT_EQ(j["resume_from"], "auto");
  EXPECT_EQ(j["method"], "lora");
  EXPECT_EQ(j["device"], "cpu");
  EXPECT_EQ(j["threads"], 3);
  EXPECT_EQ(j["lora"]["rank"], 4);
  EXPECT_EQ(j["lora"]["alpha"], 8.0);
  EXPECT_EQ(j["lora"]["target_modules"], nlohmann::json({"q_proj", "v_proj"}));
  EXPECT_EQ(j["data"]["format"], "text");
  EXPECT_EQ(j["data"]["chat_template"], "chatml");
  EXPECT_EQ(j["data"]["overlength"], "truncate");
  const nlohmann::json& hp = j["hyperparameters"];
  EXPECT_EQ(hp["max_steps"], 100);
  EXPECT_FALSE(hp.contains("epochs"));
  EXPECT_EQ(hp["learning_rate"], 1e-3);
  EXPECT_EQ(hp["lr_scheduler"], "cosine");
  // ceil(0.03 * 100) = 3 exactly (0.03 * 100 is 3.0000000000000004 in
  // binary floating point).
  EXPECT_EQ(hp["warmup_steps"], 3);
  EXPECT_EQ(hp["batch_size"], 2);
  EXPECT_EQ(hp["gradient_accumulation_steps"], 3);
  EXPECT_EQ(hp["max_seq_length"], 128);
  EXPECT_EQ(hp["packing"], false);
  EXPECT_EQ(hp["max_grad_norm"], 0.5);
  EXPECT_EQ(hp["seed"], 7);
  EXPECT_EQ(hp["checkpoint_every_steps"], 25);
  EXPECT_EQ(hp["gradient_checkpointing"], false);
  EXPECT_EQ(hp["oom_retry"], false);
  EXPECT_FALSE(hp.contains("eval_every_steps"));
  EXPECT_EQ(t.adapter_dir, "/st/jobs/tenant-a/job-1/adapter");
  EXPECT_EQ(t.log_path, "/st/jobs/tenant-a/job-1/logs/attempt-2.log");
  EXPECT_EQ(t.checkpoints_to_keep, 3);
  EXPECT_EQ(t.log_every_steps, 5);
  EXPECT_FALSE(t.auto_reduce_batch_on_oom);
  EXPECT_TRUE(t.warnings.empty());
}

TEST(SpecTranslationTest, ResumePathValidationAndGpus) {
  v1::AssignJobCommand c = Command();
  c.set_resume_checkpoint_path("jobs/tenant-a/job-1/checkpoints/step-00000025");
  c.set_validation_file_path("files/tenant-a/file-2");
  c.mutable_spec()->set_validation_file("file-2");
  c.mutable_spec()->mutable_resources()->set_gpus(1);
  c.add_gpu_indices(3);
  c.mutable_spec()->mutable_hyperparameters()->clear_gradient_checkpointing();
  c.mutable_spec()->mutable_hyperparameters()->clear_auto_reduce_batch_on_oom();
  ASSERT_OK_AND_ASSIGN(TrainerSpec t, TranslateAssignment(c, "/st"));
  EXPECT_EQ(t.json["resume_from"],
            "/st/jobs/tenant-a/job-1/checkpoints/step-00000025");
  EXPECT_EQ(t.json["validation_data"], "/st/files/tenant-a/file-2");
  // eval_every_steps 0 with max_steps: every ceil(100 / 10) steps.
  EXPECT_EQ(t.json["hyperparameters"]["eval_every_steps"], 10);
  EXPECT_EQ(t.json["device"], "cuda");
  // Unset: both memory savers on.
  EXPECT_EQ(t.json["hyperparameters"]["gradient_checkpointing"], true);
  EXPECT_EQ(t.json["hyperparameters"]["oom_retry"], true);
  EXPECT_TRUE(t.auto_reduce_batch_on_oom);
  EXPECT_TRUE(t.warnings.empty());
}

TEST(SpecTranslationTest, ValidationSplitAndEpochs) {
  v1::AssignJobCommand c = Command();
  c.mutable_spec()->set_validation_split(0.2);
  v1::Hyperparameters* h = c.mutable_spec()->mutable_hyperparameters();
  h->set_epochs(2);
  h->set_warmup_steps(4);
  h->set_eval_every_steps(7);
  h->set_overlength_policy(v1::OVERLENGTH_POLICY_DROP);
  ASSERT_OK_AND_ASSIGN(TrainerSpec t, TranslateAssignment(c, "/st"));
  EXPECT_EQ(t.json["data"]["validation_split"], 0.2);
  EXPECT_EQ(t.json["data"]["overlength"], "drop");
  EXPECT_EQ(t.json["hyperparameters"]["epochs"], 2);
  EXPECT_FALSE(t.json["hyperparameters"].contains("max_steps"));
  EXPECT_EQ(t.json["hyperparameters"]["warmup_steps"], 4);
  EXPECT_EQ(t.json["hyperparameters"]["eval_every_steps"], 7);
}

TEST(SpecTranslationTest, WarmupRatioOfAnEpochsJobGoesToTheTrainer) {
  v1::AssignJobCommand c = Command();
  v1::Hyperparameters* h = c.mutable_spec()->mutable_hyperparameters();
  h->set_epochs(3);
  h->set_warmup_ratio(0.1);
  ASSERT_OK_AND_ASSIGN(TrainerSpec t, TranslateAssignment(c, "/st"));
  EXPECT_EQ(t.json["hyperparameters"]["warmup_ratio"], 0.1);
  EXPECT_FALSE(t.json["hyperparameters"].contains("warmup_steps"));
  // Evaluation "at the end of every epoch" (eval_every_steps 0) too.
  c.mutable_spec()->set_validation_split(0.1);
  ASSERT_OK_AND_ASSIGN(t, TranslateAssignment(c, "/st"));
  EXPECT_EQ(t.json["hyperparameters"]["eval_every_epoch"], true);
  EXPECT_FALSE(t.json["hyperparameters"].contains("eval_every_steps"));
}

TEST(SpecTranslationTest, QloraMapsTheQuantizationConfig) {
  v1::AssignJobCommand c = Command();
  c.mutable_spec()->set_method(v1::TRAINING_METHOD_QLORA);
  // As ResolveJobSpec leaves it: NF4, double quant, block 64, compute dtype
  // unspecified (the trainer picks fp32 on CPU).
  v1::QuantizationConfig* q = c.mutable_spec()->mutable_quantization();
  q->set_type(v1::QUANTIZATION_TYPE_NF4);
  q->set_double_quant(true);
  q->set_block_size(64);
  ASSERT_OK_AND_ASSIGN(TrainerSpec t, TranslateAssignment(c, "/st"));
  EXPECT_EQ(t.json["method"], "qlora");
  EXPECT_EQ(t.json["quantization"], nlohmann::json({{"quant_type", "nf4"},
                                                    {"double_quant", true},
                                                    {"block_size", 64}}));
  EXPECT_EQ(t.json["lora"]["rank"], 4);

  // Unresolved defaults and every explicit value.
  c.mutable_spec()->clear_quantization();
  ASSERT_OK_AND_ASSIGN(t, TranslateAssignment(c, "/st"));
  EXPECT_EQ(t.json["quantization"]["quant_type"], "nf4");
  EXPECT_EQ(t.json["quantization"]["double_quant"], true);
  EXPECT_EQ(t.json["quantization"]["block_size"], 64);
  q = c.mutable_spec()->mutable_quantization();
  q->set_type(v1::QUANTIZATION_TYPE_FP4);
  q->set_double_quant(false);
  q->set_block_size(128);
  q->set_compute_dtype(v1::COMPUTE_DTYPE_BF16);
  ASSERT_OK_AND_ASSIGN(t, TranslateAssignment(c, "/st"));
  EXPECT_EQ(t.json["quantization"],
            nlohmann::json({{"quant_type", "fp4"},
                            {"double_quant", false},
                            {"block_size", 128},
                            {"compute_dtype", "bf16"}}));
  q->set_compute_dtype(v1::COMPUTE_DTYPE_FP32);
  ASSERT_OK_AND_ASSIGN(t, TranslateAssignment(c, "/st"));
  EXPECT_EQ(t.json["quantization"]["compute_dtype"], "fp32");
  // LoRA jobs carry no quantization block.
  ASSERT_OK_AND_ASSIGN(t, TranslateAssignment(Command(), "/st"));
  EXPECT_FALSE(t.json.contains("quantization"));
}

TEST(SpecTranslationTest, WhatTheTrainerCannotDoIsBadInputNamingTheField) {
  struct Case {
    const char* field;
    std::function<void(v1::AssignJobCommand&)> edit;
  } cases[] = {
      {"spec.method",
       [](v1::AssignJobCommand& c) {
         c.mutable_spec()->set_method(static_cast<v1::TrainingMethod>(99));
       }},
      {"spec.quantization.type",
       [](v1::AssignJobCommand& c) {
         c.mutable_spec()->set_method(v1::TRAINING_METHOD_QLORA);
         c.mutable_spec()->mutable_quantization()->set_type(
             static_cast<v1::QuantizationType>(7));
       }},
      {"spec.hyperparameters.epochs",
       [](v1::AssignJobCommand& c) {
         c.mutable_spec()->mutable_hyperparameters()->set_epochs(1.5);
       }},
      {"spec.resources.gpus",
       [](v1::AssignJobCommand& c) {
         c.mutable_spec()->mutable_resources()->set_gpus(2);
         c.add_gpu_indices(0);
         c.add_gpu_indices(1);
       }},
      {"gpu_indices",
       [](v1::AssignJobCommand& c) {
         c.mutable_spec()->mutable_resources()->set_gpus(1);
       }},
      {"checkpoint_dir",
       [](v1::AssignJobCommand& c) { c.set_checkpoint_dir("../../etc"); }},
      {"adapter_dir",
       [](v1::AssignJobCommand& c) { c.set_adapter_dir("/abs/adapter"); }},
      {"training_file_path",
       [](v1::AssignJobCommand& c) { c.clear_training_file_path(); }},
  };
  for (const Case& tc : cases) {
    v1::AssignJobCommand c = Command();
    tc.edit(c);
    EXPECT_THAT(
        TranslateAssignment(c, "/st"),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(tc.field)))
        << tc.field;
  }
}

TEST(SpecTranslationTest, ResolveStoragePath) {
  ASSERT_OK_AND_ASSIGN(std::string p, ResolveStoragePath("/a", "b/c", "f"));
  EXPECT_EQ(p, "/a/b/c");
  EXPECT_THAT(
      ResolveStoragePath("/a", "b/./c", "field_x"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("field_x")));
  EXPECT_THAT(ResolveStoragePath("/a", "", "f"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
}

}  // namespace
}  // namespace ftune::agent
