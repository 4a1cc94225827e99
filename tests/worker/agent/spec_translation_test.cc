#include "worker/agent/spec_translation.h"

#include <algorithm>
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
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
  const contract::TrainSpec& s = t.spec;
  EXPECT_EQ(s.model_dir, "/st/models/tiny");
  EXPECT_EQ(s.base_model_name, "tiny");
  EXPECT_EQ(s.train_data, "/st/files/tenant-a/file-1");
  EXPECT_EQ(s.output_dir, "/st/jobs/tenant-a/job-1/adapter");
  EXPECT_EQ(s.checkpoint_dir, "/st/jobs/tenant-a/job-1/checkpoints");
  EXPECT_EQ(s.resume_from, "auto");
  EXPECT_EQ(s.method, contract::Method::kLora);
  EXPECT_EQ(s.device, "cpu");
  EXPECT_FALSE(s.dtype.has_value());
  EXPECT_EQ(s.threads, 3);
  EXPECT_EQ(s.lora.rank, 4);
  EXPECT_EQ(s.lora.alpha, 8.0);
  EXPECT_EQ(s.lora.target_modules,
            (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(s.data.format, contract::DataFormat::kText);
  EXPECT_EQ(s.data.chat_template, "chatml");
  EXPECT_EQ(s.data.overlength, contract::Overlength::kTruncate);
  const contract::HyperParameters& hp = s.hp;
  EXPECT_EQ(hp.max_steps, 100);
  EXPECT_EQ(hp.learning_rate, 1e-3);
  EXPECT_EQ(hp.lr_scheduler, contract::LrScheduler::kCosine);
  // The ratio goes to the trainer, which knows the total step count.
  EXPECT_EQ(hp.warmup_ratio, 0.03);
  EXPECT_EQ(hp.warmup_steps, 0);
  EXPECT_EQ(hp.batch_size, 2);
  EXPECT_EQ(hp.gradient_accumulation_steps, 3);
  EXPECT_EQ(hp.max_seq_length, 128);
  EXPECT_FALSE(hp.packing);
  EXPECT_EQ(hp.max_grad_norm, 0.5);
  EXPECT_EQ(hp.seed, 7u);
  EXPECT_EQ(hp.checkpoint_every_steps, 25);
  EXPECT_FALSE(hp.gradient_checkpointing);
  EXPECT_FALSE(hp.oom_retry);
  EXPECT_EQ(hp.eval_every_steps, 0);
  EXPECT_EQ(t.adapter_dir, "/st/jobs/tenant-a/job-1/adapter");
  EXPECT_EQ(t.log_path, "/st/jobs/tenant-a/job-1/logs/attempt-2.log");
  EXPECT_EQ(t.checkpoints_to_keep, 3);
  EXPECT_EQ(t.log_every_steps, 5);
  EXPECT_FALSE(t.auto_reduce_batch_on_oom);
  // What the agent writes is what the trainer reads back.
  ASSERT_OK_AND_ASSIGN(contract::TrainSpec back,
                       contract::ParseTrainSpec(contract::TrainSpecToJson(s)));
  EXPECT_EQ(contract::TrainSpecToJson(back), contract::TrainSpecToJson(s));
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
  EXPECT_EQ(t.spec.resume_from,
            "/st/jobs/tenant-a/job-1/checkpoints/step-00000025");
  EXPECT_EQ(t.spec.validation_data, "/st/files/tenant-a/file-2");
  EXPECT_EQ(t.spec.device, "cuda");
  // Unset: both memory savers on (the table's defaults).
  EXPECT_TRUE(t.spec.hp.gradient_checkpointing);
  EXPECT_TRUE(t.spec.hp.oom_retry);
  EXPECT_TRUE(t.auto_reduce_batch_on_oom);
}

TEST(SpecTranslationTest, ValidationSplitFractionalEpochsAndWarmupSteps) {
  v1::AssignJobCommand c = Command();
  c.mutable_spec()->set_validation_split(0.2);
  v1::Hyperparameters* h = c.mutable_spec()->mutable_hyperparameters();
  h->set_epochs(2.5);
  h->set_warmup_steps(4);
  h->set_eval_every_steps(7);
  h->set_overlength_policy(v1::OVERLENGTH_POLICY_DROP);
  ASSERT_OK_AND_ASSIGN(TrainerSpec t, TranslateAssignment(c, "/st"));
  EXPECT_EQ(t.spec.data.validation_split, 0.2);
  EXPECT_EQ(t.spec.data.overlength, contract::Overlength::kDrop);
  EXPECT_EQ(t.spec.hp.epochs, 2.5);
  EXPECT_EQ(t.spec.hp.max_steps, 0);
  EXPECT_EQ(t.spec.hp.warmup_steps, 4);
  EXPECT_EQ(t.spec.hp.warmup_ratio, 0);
  EXPECT_EQ(t.spec.hp.eval_every_steps, 7);
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
  EXPECT_EQ(t.spec.method, contract::Method::kQlora);
  EXPECT_EQ(t.spec.quantization.quant_type, contract::QuantType::kNf4);
  EXPECT_TRUE(t.spec.quantization.double_quant);
  EXPECT_EQ(t.spec.quantization.block_size, 64);
  EXPECT_FALSE(t.spec.dtype.has_value());

  // Unresolved defaults come from the table.
  c.mutable_spec()->clear_quantization();
  ASSERT_OK_AND_ASSIGN(t, TranslateAssignment(c, "/st"));
  EXPECT_EQ(t.spec.quantization.block_size,
            contract::defaults::kQuantBlockSize);
  q = c.mutable_spec()->mutable_quantization();
  q->set_type(v1::QUANTIZATION_TYPE_FP4);
  q->set_double_quant(false);
  q->set_block_size(128);
  q->set_compute_dtype(v1::COMPUTE_DTYPE_BF16);
  ASSERT_OK_AND_ASSIGN(t, TranslateAssignment(c, "/st"));
  EXPECT_EQ(t.spec.quantization.quant_type, contract::QuantType::kFp4);
  EXPECT_FALSE(t.spec.quantization.double_quant);
  EXPECT_EQ(t.spec.quantization.block_size, 128);
  EXPECT_EQ(t.spec.dtype, contract::Dtype::kBf16);
}

// Every JobSpec field found by reflection must be carried to the trainer
// (or the agent), or be listed as scheduler-only. A new proto field fails
// this test until it has a mutation here, and then the mutation must change
// what the trainer is asked to do.
void CollectLeaves(const google::protobuf::Descriptor* d,
                   const std::string& prefix, std::vector<std::string>* out) {
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    const std::string path =
        prefix.empty() ? f->name() : prefix + "." + f->name();
    if (f->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE &&
        !f->is_map() && !f->is_repeated()) {
      CollectLeaves(f->message_type(), path, out);
    } else {
      out->push_back(path);
    }
  }
}

using Edit = std::function<void(v1::AssignJobCommand&)>;
// `edit` changes one field; `context`, applied to both sides of the
// comparison, sets what the field needs to mean anything (QLoRA for the
// quantization fields, a validation source for evaluation settings).
struct Mutation {
  Edit edit;
  Edit context;
  Mutation() = default;
  template <typename F, typename = std::enable_if_t<
                            !std::is_same_v<std::decay_t<F>, Mutation>>>
  Mutation(F e) : edit(std::move(e)) {}  // NOLINT: a bare edit
  Mutation(Edit e, Edit ctx) : edit(std::move(e)), context(std::move(ctx)) {}
};

std::map<std::string, Mutation> Mutations() {
  auto hp = [](v1::AssignJobCommand& c) {
    return c.mutable_spec()->mutable_hyperparameters();
  };
  std::map<std::string, Mutation> m;
  m["model"] = [](auto& c) { c.mutable_spec()->set_model("other"); };
  m["training_file"] = [](auto& c) {
    c.mutable_spec()->set_training_file("file-9");
    c.set_training_file_path("files/tenant-a/file-9");
  };
  m["validation_file"] = [](auto& c) {
    c.mutable_spec()->set_validation_file("file-2");
    c.set_validation_file_path("files/tenant-a/file-2");
  };
  m["validation_split"] = [](auto& c) {
    c.mutable_spec()->set_validation_split(0.25);
  };
  m["method"] = [](auto& c) {
    c.mutable_spec()->set_method(v1::TRAINING_METHOD_QLORA);
  };
  m["lora.rank"] = [](auto& c) {
    c.mutable_spec()->mutable_lora()->set_rank(9);
  };
  m["lora.alpha"] = [](auto& c) {
    c.mutable_spec()->mutable_lora()->set_alpha(3);
  };
  m["lora.dropout"] = [](auto& c) {
    c.mutable_spec()->mutable_lora()->set_dropout(0.1);
  };
  m["lora.target_modules"] = [](auto& c) {
    c.mutable_spec()->mutable_lora()->add_target_modules("o_proj");
  };
  const Edit qlora = [](v1::AssignJobCommand& c) {
    c.mutable_spec()->set_method(v1::TRAINING_METHOD_QLORA);
  };
  auto q = [](v1::AssignJobCommand& c) {
    return c.mutable_spec()->mutable_quantization();
  };
  m["quantization.type"] = {
      [=](auto& c) { q(c)->set_type(v1::QUANTIZATION_TYPE_FP4); }, qlora};
  m["quantization.double_quant"] = {
      [=](auto& c) { q(c)->set_double_quant(false); }, qlora};
  m["quantization.block_size"] = {[=](auto& c) { q(c)->set_block_size(256); },
                                  qlora};
  m["quantization.compute_dtype"] = {
      [=](auto& c) { q(c)->set_compute_dtype(v1::COMPUTE_DTYPE_FP32); }, qlora};
  const Edit validates = [](v1::AssignJobCommand& c) {
    c.mutable_spec()->set_validation_split(0.25);
  };
  m["hyperparameters.epochs"] = [=](auto& c) { hp(c)->set_epochs(1.25); };
  m["hyperparameters.max_steps"] = [=](auto& c) { hp(c)->set_max_steps(50); };
  m["hyperparameters.learning_rate"] = [=](auto& c) {
    hp(c)->set_learning_rate(0.01);
  };
  m["hyperparameters.lr_scheduler"] = [=](auto& c) {
    hp(c)->set_lr_scheduler(v1::LR_SCHEDULER_CONSTANT);
  };
  m["hyperparameters.warmup_steps"] = [=](auto& c) {
    hp(c)->set_warmup_steps(2);
  };
  m["hyperparameters.warmup_ratio"] = [=](auto& c) {
    hp(c)->set_warmup_ratio(0.2);
  };
  m["hyperparameters.batch_size"] = [=](auto& c) { hp(c)->set_batch_size(5); };
  m["hyperparameters.gradient_accumulation_steps"] = [=](auto& c) {
    hp(c)->set_gradient_accumulation_steps(7);
  };
  m["hyperparameters.max_seq_length"] = [=](auto& c) {
    hp(c)->set_max_seq_length(256);
  };
  m["hyperparameters.packing"] = [=](auto& c) { hp(c)->set_packing(true); };
  m["hyperparameters.overlength_policy"] = [=](auto& c) {
    hp(c)->set_overlength_policy(v1::OVERLENGTH_POLICY_DROP);
  };
  m["hyperparameters.chat_template"] = [=](auto& c) {
    hp(c)->set_chat_template("llama3");
  };
  m["hyperparameters.weight_decay"] = [=](auto& c) {
    hp(c)->set_weight_decay(0.1);
  };
  m["hyperparameters.max_grad_norm"] = [=](auto& c) {
    hp(c)->set_max_grad_norm(3);
  };
  m["hyperparameters.seed"] = [=](auto& c) { hp(c)->set_seed(99); };
  m["hyperparameters.eval_every_steps"] = {
      [=](auto& c) { hp(c)->set_eval_every_steps(3); }, validates};
  m["hyperparameters.checkpoint_every_steps"] = [=](auto& c) {
    hp(c)->set_checkpoint_every_steps(40);
  };
  m["hyperparameters.checkpoints_to_keep"] = [=](auto& c) {
    hp(c)->set_checkpoints_to_keep(9);
  };
  m["hyperparameters.early_stopping_patience"] = {
      [=](auto& c) { hp(c)->set_early_stopping_patience(2); }, validates};
  m["hyperparameters.eval_on_start"] = {
      [=](auto& c) { hp(c)->set_eval_on_start(true); }, validates};
  m["hyperparameters.gradient_checkpointing"] = [=](auto& c) {
    hp(c)->set_gradient_checkpointing(true);
  };
  m["hyperparameters.auto_reduce_batch_on_oom"] = [=](auto& c) {
    hp(c)->set_auto_reduce_batch_on_oom(true);
  };
  m["hyperparameters.log_every_steps"] = [=](auto& c) {
    hp(c)->set_log_every_steps(8);
  };
  m["resources.gpus"] = [](auto& c) {
    c.mutable_spec()->mutable_resources()->set_gpus(1);
    c.add_gpu_indices(0);
  };
  m["resources.memory_bytes"] = [](auto& c) {
    c.mutable_spec()->mutable_resources()->set_memory_bytes(1 << 30);
  };
  m["resources.gpu_type"] = [](auto& c) {
    c.mutable_spec()->mutable_resources()->set_gpu_type("H100");
  };
  m["resources.cpu_threads"] = [](auto& c) {
    c.clear_cpu_threads();
    c.mutable_spec()->mutable_resources()->set_cpu_threads(6);
  };
  m["resources.processes"] = [](auto& c) {
    c.mutable_spec()->mutable_resources()->set_processes(2);
  };
  m["priority"] = [](auto& c) { c.mutable_spec()->set_priority(5); };
  m["labels"] = [](auto& c) {
    (*c.mutable_spec()->mutable_labels())["team"] = "x";
  };
  m["max_restarts"] = [](auto& c) { c.mutable_spec()->set_max_restarts(1); };
  m["suffix"] = [](auto& c) { c.mutable_spec()->set_suffix("s"); };
  const Edit dpo = [](v1::AssignJobCommand& c) {
    c.mutable_spec()->set_objective(v1::TRAINING_OBJECTIVE_DPO);
  };
  const Edit orpo = [](v1::AssignJobCommand& c) {
    c.mutable_spec()->set_objective(v1::TRAINING_OBJECTIVE_ORPO);
  };
  auto pref = [](v1::AssignJobCommand& c) {
    return c.mutable_spec()->mutable_preference();
  };
  m["objective"] = dpo;
  m["preference.loss"] = {
      [=](auto& c) { pref(c)->set_loss(v1::PREFERENCE_LOSS_IPO); }, dpo};
  m["preference.beta"] = {[=](auto& c) { pref(c)->set_beta(0.5); }, dpo};
  m["preference.label_smoothing"] = {
      [=](auto& c) { pref(c)->set_label_smoothing(0.2); }, dpo};
  m["preference.orpo_lambda"] = {
      [=](auto& c) { pref(c)->set_orpo_lambda(0.5); }, orpo};
  auto samples = [](v1::AssignJobCommand& c) {
    return c.mutable_spec()->mutable_samples();
  };
  m["samples.eval_samples"] = {
      [=](auto& c) { samples(c)->set_eval_samples(3); }, validates};
  m["samples.max_new_tokens"] = [=](auto& c) {
    samples(c)->set_max_new_tokens(9);
  };
  m["samples.temperature"] = [=](auto& c) { samples(c)->set_temperature(0.5); };
  m["samples.top_k"] = [=](auto& c) { samples(c)->set_top_k(5); };
  m["samples.top_p"] = [=](auto& c) { samples(c)->set_top_p(0.5); };
  m["samples.repetition_penalty"] = [=](auto& c) {
    samples(c)->set_repetition_penalty(1.5);
  };
  m["samples.seed"] = [=](auto& c) { samples(c)->set_seed(3); };
  m["samples.stop"] = [=](auto& c) { samples(c)->add_stop("###"); };
  auto task = [](v1::AssignJobCommand& c) {
    return c.mutable_spec()->mutable_task_metrics();
  };
  m["task_metrics.eval_task_examples"] = {
      [=](auto& c) { task(c)->set_eval_task_examples(5); }, validates};
  m["task_metrics.max_new_tokens"] = [=](auto& c) {
    task(c)->set_max_new_tokens(9);
  };
  m["task_metrics.eval_pattern"] = {
      [=](auto& c) { task(c)->set_eval_pattern("^x$"); }, validates};
  m["task_metrics.select_best_by"] = {
      [=](auto& c) {
        task(c)->set_select_best_by(v1::SELECT_BEST_BY_EXACT_MATCH);
      },
      [=](v1::AssignJobCommand& c) {
        validates(c);
        task(c)->set_eval_task_examples(4);
      }};
  // A try job: the trainer generates with the weights at weights_path.
  auto try_model = [](v1::AssignJobCommand& c) {
    return c.mutable_spec()->mutable_try_model();
  };
  const Edit trying = [=](v1::AssignJobCommand& c) {
    try_model(c)->set_source_job_id("job-0");
    try_model(c)->set_source(v1::TRY_SOURCE_ADAPTER);
    try_model(c)->set_weights_path("jobs/tenant-a/job-0/adapter");
    try_model(c)->add_prompts()->set_prompt("hi");
  };
  auto gen = [=](v1::AssignJobCommand& c) {
    return try_model(c)->mutable_generation();
  };
  m["try_model.source_job_id"] = {
      [=](auto& c) { try_model(c)->set_source_job_id("job-9"); }, trying};
  m["try_model.source"] = {
      [=](auto& c) { try_model(c)->set_source(v1::TRY_SOURCE_CHECKPOINT); },
      trying};
  m["try_model.checkpoint_step"] = {
      [=](auto& c) { try_model(c)->set_checkpoint_step(4); }, trying};
  m["try_model.prompts"] = {[=](auto& c) {
                              v1::TryMessage* msg =
                                  try_model(c)->add_prompts()->add_messages();
                              msg->set_role("user");
                              msg->set_content("hello");
                            },
                            trying};
  m["try_model.weights_path"] = {
      [=](auto& c) {
        try_model(c)->set_weights_path("jobs/tenant-a/job-0/checkpoints/x");
      },
      trying};
  m["try_model.generation.eval_samples"] = {
      [=](auto& c) { gen(c)->set_eval_samples(2); }, trying};
  m["try_model.generation.max_new_tokens"] = {
      [=](auto& c) { gen(c)->set_max_new_tokens(9); }, trying};
  m["try_model.generation.temperature"] = {
      [=](auto& c) { gen(c)->set_temperature(0.5); }, trying};
  m["try_model.generation.top_k"] = {[=](auto& c) { gen(c)->set_top_k(5); },
                                     trying};
  m["try_model.generation.top_p"] = {[=](auto& c) { gen(c)->set_top_p(0.5); },
                                     trying};
  m["try_model.generation.repetition_penalty"] = {
      [=](auto& c) { gen(c)->set_repetition_penalty(1.5); }, trying};
  m["try_model.generation.seed"] = {[=](auto& c) { gen(c)->set_seed(3); },
                                    trying};
  m["try_model.generation.stop"] = {[=](auto& c) { gen(c)->add_stop("###"); },
                                    trying};
  return m;
}

// What the trainer and the agent are asked to do, as one comparable text.
std::string Asked(const TrainerSpec& t) {
  return absl::StrCat(
      t.generate
          ? contract::TrySpecToJson(contract::TrySpec{t.spec, *t.generate})
          : contract::TrainSpecToJson(t.spec),
      " keep=", t.checkpoints_to_keep, " log=", t.log_every_steps,
      " oom=", t.auto_reduce_batch_on_oom, " ranks=", t.ranks);
}

TEST(SpecTranslationTest, EveryJobSpecFieldReachesTheTrainerOrIsSchedulerOnly) {
  std::vector<std::string> leaves;
  CollectLeaves(v1::JobSpec::descriptor(), "", &leaves);
  ASSERT_GT(leaves.size(), 40u);
  const std::map<std::string, Mutation> mutations = Mutations();
  const auto& scheduler_only = SchedulerOnlyFields();
  for (const std::string& field : leaves) {
    auto it = mutations.find(field);
    ASSERT_NE(it, mutations.end())
        << "JobSpec field " << field
        << " is new: carry it to the trainer (spec_translation.cc) or list "
           "it in SchedulerOnlyFields(), then add a mutation to this test";
    v1::AssignJobCommand c = Command();
    if (it->second.context) it->second.context(c);
    ASSERT_OK_AND_ASSIGN(TrainerSpec base, TranslateAssignment(c, "/st"));
    it->second.edit(c);
    absl::StatusOr<TrainerSpec> t = TranslateAssignment(c, "/st");
    ASSERT_TRUE(t.ok()) << field << ": " << t.status();
    const bool scheduler =
        std::find(scheduler_only.begin(), scheduler_only.end(), field) !=
        scheduler_only.end();
    if (scheduler) {
      EXPECT_EQ(Asked(*t), Asked(base))
          << field << " is scheduler-only but changed the trainer's spec";
    } else {
      EXPECT_NE(Asked(*t), Asked(base))
          << field << " does not reach the trainer or the agent";
    }
  }
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
      {"hyperparameters.learning_rate",
       [](v1::AssignJobCommand& c) {
         c.mutable_spec()->mutable_hyperparameters()->set_learning_rate(5);
       }},
      {"spec.quantization",
       [](v1::AssignJobCommand& c) {
         c.mutable_spec()->mutable_quantization()->set_block_size(64);
       }},
      {"spec.resources.processes",
       [](v1::AssignJobCommand& c) {
         c.mutable_spec()->mutable_resources()->set_processes(2);
         c.mutable_spec()->mutable_resources()->set_gpus(1);
         c.add_gpu_indices(0);
       }},
      {"spec.resources.processes",
       [](v1::AssignJobCommand& c) {
         c.mutable_spec()->mutable_resources()->set_processes(17);
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

TEST(SpecTranslationTest, RanksShareThreadsAndAccumulatePerRank) {
  // Two CPU processes: the job's 3 threads split (at least one each), and
  // the trainer's step is the global batch: batch_size 2 x accumulation 3
  // on each of the two ranks.
  v1::AssignJobCommand c = Command();
  c.mutable_spec()->mutable_resources()->set_processes(2);
  ASSERT_OK_AND_ASSIGN(TrainerSpec t, TranslateAssignment(c, "/st"));
  EXPECT_EQ(t.ranks, 2);
  EXPECT_EQ(t.spec.threads, 1);
  EXPECT_EQ(t.spec.hp.batch_size, 2);
  EXPECT_EQ(t.spec.hp.gradient_accumulation_steps, 6);
  EXPECT_EQ(t.spec.device, "cpu");

  // Four GPUs: four ranks, one thread each by default, device "cuda" (each
  // rank sees only its own GPU).
  v1::AssignJobCommand g = Command();
  g.clear_cpu_threads();
  g.mutable_spec()->mutable_resources()->set_gpus(4);
  for (int i : {0, 1, 2, 3}) g.add_gpu_indices(i);
  ASSERT_OK_AND_ASSIGN(TrainerSpec tg, TranslateAssignment(g, "/st"));
  EXPECT_EQ(tg.ranks, 4);
  EXPECT_EQ(tg.spec.threads, 1);
  EXPECT_EQ(tg.spec.hp.gradient_accumulation_steps, 12);
  EXPECT_EQ(tg.spec.device, "cuda");

  // One process: the spec as before.
  ASSERT_OK_AND_ASSIGN(TrainerSpec one, TranslateAssignment(Command(), "/st"));
  EXPECT_EQ(one.ranks, 1);
  EXPECT_EQ(one.spec.threads, 3);
  EXPECT_EQ(one.spec.hp.gradient_accumulation_steps, 3);
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
