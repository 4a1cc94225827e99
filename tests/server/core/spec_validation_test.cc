#include "server/core/spec_validation.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftune::core {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

SpecContext GoodContext() {
  SpecContext ctx;
  ctx.model = ModelFacts{"tiny", 512, true, true, "chatml"};
  ctx.training_file = FileFacts{"file-a", kFilePurposeTrain, true, "chat", 100};
  ctx.validation_file =
      FileFacts{"file-b", kFilePurposeValidation, true, "chat", 20};
  return ctx;
}

v1::JobSpec GoodSpec() {
  v1::JobSpec spec;
  spec.set_model("tiny");
  spec.set_training_file("file-a");
  return spec;
}

std::vector<std::string> Fields(const std::vector<FieldError>& errors) {
  std::vector<std::string> out;
  for (const auto& e : errors) out.push_back(e.field);
  return out;
}

TEST(SpecValidationTest, MinimalSpecIsValid) {
  EXPECT_THAT(ValidateJobSpec(GoodSpec(), GoodContext()), IsEmpty());
}

TEST(SpecValidationTest, ReportsEveryBadFieldInOrder) {
  v1::JobSpec spec = GoodSpec();
  spec.mutable_lora()->set_dropout(1.0);
  spec.mutable_hyperparameters()->set_learning_rate(5);
  spec.mutable_hyperparameters()->set_batch_size(-1);
  spec.set_priority(101);
  spec.set_suffix("Bad_Suffix");
  auto errors = ValidateJobSpec(spec, GoodContext());
  EXPECT_THAT(Fields(errors), ElementsAre("spec.lora.dropout",
                                          "spec.hyperparameters.learning_rate",
                                          "spec.hyperparameters.batch_size",
                                          "spec.priority", "spec.suffix"));
  EXPECT_EQ(errors[1].message, "must be in (0, 1], got 5");
  EXPECT_THAT(JoinFieldErrors(errors),
              HasSubstr("spec.hyperparameters.learning_rate: must be in (0, "
                        "1], got 5; spec.hyperparameters.batch_size"));
}

TEST(SpecValidationTest, RequiredAndUnknownReferences) {
  v1::JobSpec empty;
  EXPECT_THAT(Fields(ValidateJobSpec(empty, SpecContext())),
              ElementsAre("spec.model", "spec.training_file"));
  SpecContext none;
  auto errors = ValidateJobSpec(GoodSpec(), none);
  EXPECT_THAT(Fields(errors), ElementsAre("spec.model", "spec.training_file"));
  EXPECT_THAT(errors[0].message, HasSubstr("unknown model \"tiny\""));
}

TEST(SpecValidationTest, TargetModules) {
  v1::JobSpec spec = GoodSpec();
  for (const char* m : {"q_proj", "q_proj", "lm_head"}) {
    spec.mutable_lora()->add_target_modules(m);
  }
  auto errors = ValidateJobSpec(spec, GoodContext());
  EXPECT_THAT(Fields(errors), ElementsAre("spec.lora.target_modules[1]",
                                          "spec.lora.target_modules[2]"));
  EXPECT_THAT(errors[0].message, HasSubstr("duplicate"));
  EXPECT_THAT(errors[1].message, HasSubstr("unsupported target module"));
  spec.mutable_lora()->clear_target_modules();
  spec.mutable_lora()->add_target_modules("all-linear");
  spec.mutable_lora()->add_target_modules("v_proj");
  EXPECT_THAT(Fields(ValidateJobSpec(spec, GoodContext())),
              ElementsAre("spec.lora.target_modules[0]"));
}

// The model's family decides what target_modules may name (ModelFacts
// carries its module names); a model the trainer cannot run is refused.
TEST(SpecValidationTest, TargetModulesAreTheModelFamilys) {
  SpecContext ctx = GoodContext();
  ctx.model->linear_modules = {"c_attn", "c_proj", "c_fc"};  // GPT-2
  v1::JobSpec spec = GoodSpec();
  spec.mutable_lora()->add_target_modules("c_attn");
  spec.mutable_lora()->add_target_modules("q_proj");
  auto errors = ValidateJobSpec(spec, ctx);
  EXPECT_THAT(Fields(errors), ElementsAre("spec.lora.target_modules[1]"));
  EXPECT_THAT(JoinFieldErrors(errors),
              HasSubstr("unsupported target module \"q_proj\"; expected one "
                        "of c_attn, c_proj, c_fc or all-linear"));
  spec.mutable_lora()->set_target_modules(1, "c_proj");
  spec.mutable_hyperparameters()->set_chat_template("gemma");
  EXPECT_THAT(ValidateJobSpec(spec, ctx), IsEmpty());
  spec.mutable_hyperparameters()->set_chat_template("phi3");
  EXPECT_THAT(ValidateJobSpec(spec, ctx), IsEmpty());

  ctx.model->unsupported = "architecture \"X\" is not supported";
  errors = ValidateJobSpec(GoodSpec(), ctx);
  EXPECT_THAT(Fields(errors), ElementsAre("spec.model"));
  EXPECT_THAT(JoinFieldErrors(errors),
              HasSubstr("model tiny cannot be trained: architecture \"X\""));
}

TEST(SpecValidationTest, QuantizationOnlyWithQlora) {
  v1::JobSpec spec = GoodSpec();
  spec.mutable_quantization()->set_block_size(64);
  EXPECT_THAT(Fields(ValidateJobSpec(spec, GoodContext())),
              ElementsAre("spec.quantization"));
  spec.set_method(v1::TRAINING_METHOD_QLORA);
  EXPECT_THAT(ValidateJobSpec(spec, GoodContext()), IsEmpty());
  spec.mutable_quantization()->set_block_size(48);
  EXPECT_THAT(Fields(ValidateJobSpec(spec, GoodContext())),
              ElementsAre("spec.quantization.block_size"));
  spec.mutable_quantization()->set_block_size(64);
  spec.mutable_quantization()->set_compute_dtype(v1::COMPUTE_DTYPE_BF16);
  spec.mutable_resources()->set_gpus(0);
  EXPECT_THAT(Fields(ValidateJobSpec(spec, GoodContext())),
              ElementsAre("spec.quantization.compute_dtype"));
}

// TRAINING_METHOD_FULL: every LoRA field and quantization refused naming
// the field; a model without "full" among its methods refused naming the
// model; DPO refused (its reference is the frozen base).
TEST(SpecValidationTest, FullFineTuning) {
  v1::JobSpec spec = GoodSpec();
  spec.set_method(v1::TRAINING_METHOD_FULL);
  EXPECT_THAT(ValidateJobSpec(spec, GoodContext()), IsEmpty());
  v1::JobSpec lora = spec;
  lora.mutable_lora()->set_rank(8);
  lora.mutable_lora()->set_alpha(16);
  lora.mutable_lora()->set_dropout(0.1);
  lora.mutable_lora()->add_target_modules("q_proj");
  auto errors = ValidateJobSpec(lora, GoodContext());
  EXPECT_THAT(Fields(errors),
              ElementsAre("spec.lora.rank", "spec.lora.alpha",
                          "spec.lora.dropout", "spec.lora.target_modules"));
  EXPECT_THAT(errors[0].message, HasSubstr("TRAINING_METHOD_FULL"));
  v1::JobSpec q = spec;
  q.mutable_quantization()->set_block_size(64);
  EXPECT_THAT(Fields(ValidateJobSpec(q, GoodContext())),
              ElementsAre("spec.quantization"));
  v1::JobSpec dpo = spec;
  dpo.set_objective(v1::TRAINING_OBJECTIVE_DPO);
  EXPECT_THAT(Fields(ValidateJobSpec(dpo, GoodContext())),
              testing::Contains("spec.objective"));
  SpecContext no_full = GoodContext();
  no_full.model->supports_full = false;
  errors = ValidateJobSpec(spec, no_full);
  EXPECT_THAT(Fields(errors), ElementsAre("spec.method"));
  EXPECT_THAT(errors[0].message,
              HasSubstr("model tiny does not support TRAINING_METHOD_FULL"));
  // The same model still takes LoRA, and the aggregate-initialised context
  // kept its chat template.
  EXPECT_EQ(GoodContext().model->default_chat_template, "chatml");
  v1::JobSpec l = GoodSpec();
  EXPECT_THAT(ValidateJobSpec(l, no_full), IsEmpty());
  // Resolving a full spec adds no LoRA settings.
  const v1::JobSpec r = ResolveJobSpec(spec, *GoodContext().model, 1);
  EXPECT_EQ(r.method(), v1::TRAINING_METHOD_FULL);
  EXPECT_FALSE(r.has_lora());
}

TEST(SpecValidationTest, FilesAndValidationSources) {
  v1::JobSpec spec = GoodSpec();
  spec.set_validation_file("file-b");
  EXPECT_THAT(ValidateJobSpec(spec, GoodContext()), IsEmpty());
  SpecContext ctx = GoodContext();
  ctx.validation_file->format = "text";
  EXPECT_THAT(Fields(ValidateJobSpec(spec, ctx)),
              ElementsAre("spec.validation_file"));
  ctx = GoodContext();
  ctx.training_file->ready = false;
  EXPECT_THAT(Fields(ValidateJobSpec(spec, ctx)),
              ElementsAre("spec.training_file"));
  spec.set_validation_split(0.6);
  EXPECT_THAT(Fields(ValidateJobSpec(spec, GoodContext())),
              ElementsAre("spec.validation_split"));
  // Early stopping needs a validation source.
  v1::JobSpec es = GoodSpec();
  es.mutable_hyperparameters()->set_early_stopping_patience(3);
  EXPECT_THAT(Fields(ValidateJobSpec(es, GoodContext())),
              ElementsAre("spec.hyperparameters.early_stopping_patience"));
  // So does the baseline evaluation at step 0.
  v1::JobSpec start = GoodSpec();
  start.mutable_hyperparameters()->set_eval_on_start(true);
  EXPECT_THAT(Fields(ValidateJobSpec(start, GoodContext())),
              ElementsAre("spec.hyperparameters.eval_on_start"));
  start.set_validation_split(0.25);
  EXPECT_THAT(Fields(ValidateJobSpec(start, GoodContext())), IsEmpty());
  // A split that leaves one side empty.
  ctx = GoodContext();
  ctx.training_file->example_count = 1;
  es.set_validation_split(0.5);
  EXPECT_THAT(Fields(ValidateJobSpec(es, ctx)),
              ElementsAre("spec.validation_split"));
}

TEST(SpecValidationTest, MaxSeqLengthIsBoundedByTheModel) {
  v1::JobSpec spec = GoodSpec();
  spec.mutable_hyperparameters()->set_max_seq_length(513);
  auto errors = ValidateJobSpec(spec, GoodContext());
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message, "must be in [16, 512], got 513");
}

TEST(SpecValidationTest, LabelsAndWarmup) {
  v1::JobSpec spec = GoodSpec();
  (*spec.mutable_labels())["Team"] = "x";
  (*spec.mutable_labels())["ok"] = "bad value";
  spec.mutable_hyperparameters()->set_max_steps(10);
  spec.mutable_hyperparameters()->set_warmup_steps(10);
  EXPECT_THAT(Fields(ValidateJobSpec(spec, GoodContext())),
              ElementsAre("spec.hyperparameters.warmup_steps",
                          "spec.labels[\"Team\"]", "spec.labels[\"ok\"]"));
}

TEST(SpecValidationTest, ResolveFillsDefaultsAndKeepsGivenValues) {
  v1::JobSpec spec = GoodSpec();
  spec.mutable_lora()->set_rank(8);
  spec.mutable_hyperparameters()->set_seed(7);
  v1::JobSpec r = ResolveJobSpec(spec, *GoodContext().model, 99);
  EXPECT_EQ(r.method(), v1::TRAINING_METHOD_LORA);
  EXPECT_EQ(r.lora().rank(), 8);
  EXPECT_EQ(r.lora().alpha(), 16);
  EXPECT_THAT(r.lora().target_modules(), ElementsAre("all-linear"));
  EXPECT_FALSE(r.has_quantization());
  EXPECT_EQ(r.hyperparameters().epochs(), 3);
  EXPECT_EQ(r.hyperparameters().learning_rate(), 2e-4);
  EXPECT_EQ(r.hyperparameters().warmup_ratio(), 0.03);
  EXPECT_EQ(r.hyperparameters().max_seq_length(), 512);
  EXPECT_EQ(r.hyperparameters().chat_template(), "chatml");
  EXPECT_EQ(r.hyperparameters().seed(), 7);
  EXPECT_EQ(r.hyperparameters().checkpoint_every_steps(), 500);
  EXPECT_EQ(r.resources().gpus(), 1);
  EXPECT_EQ(r.max_restarts(), 3);
  // Resolving is stable: resolving the result changes nothing.
  v1::JobSpec again = ResolveJobSpec(r, *GoodContext().model, 123);
  EXPECT_EQ(again.SerializeAsString(), r.SerializeAsString());
  spec.clear_hyperparameters();
  EXPECT_EQ(
      ResolveJobSpec(spec, *GoodContext().model, 99).hyperparameters().seed(),
      99);
  spec.set_method(v1::TRAINING_METHOD_QLORA);
  v1::JobSpec q = ResolveJobSpec(spec, *GoodContext().model, 1);
  EXPECT_EQ(q.quantization().type(), v1::QUANTIZATION_TYPE_NF4);
  EXPECT_TRUE(q.quantization().double_quant());
  EXPECT_EQ(q.quantization().block_size(), 64);
  EXPECT_EQ(q.quantization().compute_dtype(), v1::COMPUTE_DTYPE_UNSPECIFIED);
}

TEST(SpecValidationTest, PreferenceObjectivesAndTheirFiles) {
  SpecContext pairs = GoodContext();
  pairs.training_file->format = "preference";
  pairs.validation_file->format = "preference";
  v1::JobSpec spec = GoodSpec();
  // A preference file needs a preference objective, and the other way
  // round.
  std::vector<FieldError> errors = ValidateJobSpec(spec, pairs);
  ASSERT_THAT(Fields(errors), ElementsAre("spec.training_file"));
  EXPECT_THAT(errors[0].message,
              HasSubstr("set objective TRAINING_OBJECTIVE_DPO"));
  spec.set_objective(v1::TRAINING_OBJECTIVE_DPO);
  EXPECT_THAT(ValidateJobSpec(spec, pairs), IsEmpty());
  errors = ValidateJobSpec(spec, GoodContext());
  ASSERT_THAT(Fields(errors), ElementsAre("spec.training_file"));
  EXPECT_THAT(
      errors[0].message,
      HasSubstr("trains on preference pairs; file file-a has format chat"));
  pairs.training_file->format = "chat_preference";
  pairs.validation_file->format = "chat_preference";
  EXPECT_THAT(ValidateJobSpec(spec, pairs), IsEmpty());

  // Ranges, and settings the objective does not use.
  spec.mutable_preference()->set_beta(0);
  spec.mutable_preference()->set_label_smoothing(0.5);
  spec.mutable_preference()->set_orpo_lambda(1);
  EXPECT_THAT(Fields(ValidateJobSpec(spec, pairs)),
              ElementsAre("spec.preference.orpo_lambda", "spec.preference.beta",
                          "spec.preference.label_smoothing"));
  spec.clear_preference();
  spec.mutable_preference()->set_loss(v1::PREFERENCE_LOSS_IPO);
  spec.mutable_preference()->set_label_smoothing(0.1);
  errors = ValidateJobSpec(spec, pairs);
  ASSERT_THAT(Fields(errors), ElementsAre("spec.preference.label_smoothing"));
  EXPECT_THAT(errors[0].message, HasSubstr("IPO has no label smoothing"));
  spec.set_objective(v1::TRAINING_OBJECTIVE_ORPO);
  spec.clear_preference();
  spec.mutable_preference()->set_beta(0.2);
  EXPECT_THAT(Fields(ValidateJobSpec(spec, pairs)),
              ElementsAre("spec.preference.beta"));
  spec.set_objective(v1::TRAINING_OBJECTIVE_SFT);
  EXPECT_THAT(Fields(ValidateJobSpec(spec, GoodContext())),
              ElementsAre("spec.preference"));
  spec.set_objective(static_cast<v1::TrainingObjective>(9));
  EXPECT_THAT(Fields(ValidateJobSpec(spec, GoodContext())),
              ElementsAre("spec.objective"));

  // Resolved: the objective and its defaults are filled in.
  spec.clear_preference();
  spec.set_objective(v1::TRAINING_OBJECTIVE_DPO);
  v1::JobSpec r = ResolveJobSpec(spec, *pairs.model, 1);
  EXPECT_EQ(r.preference().loss(), v1::PREFERENCE_LOSS_SIGMOID);
  EXPECT_EQ(r.preference().beta(), 0.1);
  EXPECT_FALSE(r.preference().has_orpo_lambda());
  spec.set_objective(v1::TRAINING_OBJECTIVE_ORPO);
  r = ResolveJobSpec(spec, *pairs.model, 1);
  EXPECT_EQ(r.preference().orpo_lambda(), 0.1);
  EXPECT_FALSE(r.preference().has_beta());
  spec.set_objective(v1::TRAINING_OBJECTIVE_UNSPECIFIED);
  r = ResolveJobSpec(spec, *GoodContext().model, 1);
  EXPECT_EQ(r.objective(), v1::TRAINING_OBJECTIVE_SFT);
  EXPECT_FALSE(r.has_preference());
}

// Sample completions: every generation setting out of its range is
// INVALID_ARGUMENT naming the field; eval_samples needs a validation source
// and the sft objective; resolution fills the defaults.
TEST(SpecValidationTest, SampleSettings) {
  v1::JobSpec spec = GoodSpec();
  spec.set_validation_split(0.2);
  v1::SampleConfig* c = spec.mutable_samples();
  c->set_temperature(-1);
  auto errors = ValidateJobSpec(spec, GoodContext());
  EXPECT_THAT(Fields(errors), ElementsAre("spec.samples.temperature"));
  EXPECT_EQ(errors[0].message, "must be in [0, 100], got -1");
  c->set_temperature(0.7);
  for (double p : {0.0, 1.5}) {
    c->set_top_p(p);
    errors = ValidateJobSpec(spec, GoodContext());
    EXPECT_THAT(Fields(errors), ElementsAre("spec.samples.top_p"));
    EXPECT_THAT(errors[0].message, HasSubstr("must be in (0, 1]"));
  }
  c->set_top_p(0.9);
  c->set_max_new_tokens(4097);
  errors = ValidateJobSpec(spec, GoodContext());
  EXPECT_THAT(Fields(errors), ElementsAre("spec.samples.max_new_tokens"));
  EXPECT_EQ(errors[0].message, "must be in [1, 4096], got 4097");
  c->set_max_new_tokens(32);
  c->set_eval_samples(33);
  EXPECT_THAT(Fields(ValidateJobSpec(spec, GoodContext())),
              ElementsAre("spec.samples.eval_samples"));
  c->set_eval_samples(8);
  EXPECT_THAT(ValidateJobSpec(spec, GoodContext()), IsEmpty());
  // No validation source: nothing to sample from.
  spec.clear_validation_split();
  errors = ValidateJobSpec(spec, GoodContext());
  EXPECT_THAT(Fields(errors), ElementsAre("spec.samples.eval_samples"));
  EXPECT_THAT(errors[0].message, HasSubstr("needs a validation source"));
  c->set_eval_samples(0);
  EXPECT_THAT(ValidateJobSpec(spec, GoodContext()), IsEmpty());

  // Defaults: 4 greedy samples of 64 tokens with a validation source, 0
  // without one.
  v1::JobSpec plain = GoodSpec();
  v1::JobSpec r = ResolveJobSpec(plain, *GoodContext().model, 1);
  EXPECT_EQ(r.samples().eval_samples(), 0);
  plain.set_validation_split(0.1);
  r = ResolveJobSpec(plain, *GoodContext().model, 1);
  EXPECT_EQ(r.samples().eval_samples(), 4);
  EXPECT_EQ(r.samples().max_new_tokens(), 64);
  EXPECT_EQ(r.samples().temperature(), 0);
  EXPECT_EQ(r.samples().top_p(), 1);
  EXPECT_EQ(r.samples().repetition_penalty(), 1);
  EXPECT_THAT(ValidateJobSpec(r, GoodContext()), IsEmpty());
}

// Task metrics: ranges and the eval_pattern (RE2) checked at create time,
// naming the field; select_best_by refused where its metric cannot exist;
// resolution fills the defaults.
TEST(SpecValidationTest, TaskMetricSettings) {
  v1::JobSpec spec = GoodSpec();
  spec.set_validation_file("file-b");
  v1::TaskMetricsConfig* c = spec.mutable_task_metrics();
  c->set_eval_pattern("(unclosed");
  auto errors = ValidateJobSpec(spec, GoodContext());
  EXPECT_THAT(Fields(errors), ElementsAre("spec.task_metrics.eval_pattern"));
  EXPECT_THAT(errors[0].message, HasSubstr("not a valid RE2"));
  c->set_eval_pattern("^(yes|no)$");
  c->set_eval_task_examples(1025);
  c->set_max_new_tokens(0);
  EXPECT_THAT(Fields(ValidateJobSpec(spec, GoodContext())),
              ElementsAre("spec.task_metrics.eval_task_examples",
                          "spec.task_metrics.max_new_tokens"));
  c->set_eval_task_examples(16);
  c->set_max_new_tokens(32);
  c->set_select_best_by(v1::SELECT_BEST_BY_PATTERN_MATCH);
  EXPECT_THAT(ValidateJobSpec(spec, GoodContext()), IsEmpty());
  // pattern_match without a pattern; a task metric with no examples.
  c->clear_eval_pattern();
  errors = ValidateJobSpec(spec, GoodContext());
  EXPECT_THAT(Fields(errors), ElementsAre("spec.task_metrics.select_best_by"));
  EXPECT_THAT(errors[0].message, HasSubstr("needs an eval_pattern"));
  c->set_select_best_by(v1::SELECT_BEST_BY_EXACT_MATCH);
  c->set_eval_task_examples(0);
  errors = ValidateJobSpec(spec, GoodContext());
  EXPECT_THAT(Fields(errors), ElementsAre("spec.task_metrics.select_best_by"));
  EXPECT_THAT(errors[0].message, HasSubstr("needs eval_task_examples > 0"));
  c->clear_eval_task_examples();
  EXPECT_THAT(ValidateJobSpec(spec, GoodContext()), IsEmpty());
  // No validation source, a text-format one, a preference objective.
  v1::JobSpec none = spec;
  none.clear_validation_file();
  errors = ValidateJobSpec(none, GoodContext());
  EXPECT_THAT(Fields(errors), ElementsAre("spec.task_metrics.select_best_by"));
  EXPECT_THAT(errors[0].message, HasSubstr("needs a validation source"));
  SpecContext text = GoodContext();
  text.training_file->format = "text";
  text.validation_file->format = "text";
  errors = ValidateJobSpec(spec, text);
  EXPECT_THAT(Fields(errors), ElementsAre("spec.task_metrics.select_best_by"));
  EXPECT_THAT(errors[0].message, HasSubstr("file-b has format text"));
  SpecContext pairs = GoodContext();
  pairs.training_file->format = "preference";
  pairs.validation_file->format = "preference";
  v1::JobSpec dpo = spec;
  dpo.set_objective(v1::TRAINING_OBJECTIVE_DPO);
  errors = ValidateJobSpec(dpo, pairs);
  EXPECT_THAT(Fields(errors), ElementsAre("spec.task_metrics.select_best_by"));
  EXPECT_THAT(errors[0].message, HasSubstr("TRAINING_OBJECTIVE_SFT"));

  // Defaults: 32 examples of 64 tokens, eval_loss, with a validation
  // source; no task metrics without one.
  v1::JobSpec plain = GoodSpec();
  v1::JobSpec r = ResolveJobSpec(plain, *GoodContext().model, 1);
  EXPECT_EQ(r.task_metrics().eval_task_examples(), 0);
  plain.set_validation_split(0.1);
  r = ResolveJobSpec(plain, *GoodContext().model, 1);
  EXPECT_EQ(r.task_metrics().eval_task_examples(), 32);
  EXPECT_EQ(r.task_metrics().max_new_tokens(), 64);
  EXPECT_EQ(r.task_metrics().select_best_by(), v1::SELECT_BEST_BY_EVAL_LOSS);
  EXPECT_THAT(ValidateJobSpec(r, GoodContext()), IsEmpty());
}

TEST(SpecValidationTest, Estimate) {
  v1::JobSpec spec = GoodSpec();
  spec.set_validation_split(0.2);
  spec.mutable_hyperparameters()->set_batch_size(4);
  spec.mutable_hyperparameters()->set_gradient_accumulation_steps(2);
  spec.mutable_hyperparameters()->set_epochs(1.5);
  spec.mutable_resources()->set_gpus(2);
  v1::JobSpec r = ResolveJobSpec(spec, *GoodContext().model, 1);
  v1::JobEstimate e = EstimateJob(r, 100, 0);
  EXPECT_EQ(e.train_examples(), 80);
  EXPECT_EQ(e.validation_examples(), 20);
  EXPECT_EQ(e.effective_batch_size(), 16);
  EXPECT_EQ(e.steps_per_epoch(), 5);
  EXPECT_EQ(e.total_steps(), 8);  // ceil(1.5 * 5)
  EXPECT_FALSE(e.total_steps_approximate());
  // A CPU job of four processes: batch_size is per process, as per GPU.
  spec.mutable_resources()->set_gpus(0);
  spec.mutable_resources()->set_processes(4);
  r = ResolveJobSpec(spec, *GoodContext().model, 1);
  EXPECT_EQ(EstimateJob(r, 100, 0).effective_batch_size(), 32);
}

TEST(SpecValidationTest, Processes) {
  v1::JobSpec spec = GoodSpec();
  spec.mutable_resources()->set_gpus(0);
  spec.mutable_resources()->set_processes(4);
  EXPECT_THAT(ValidateJobSpec(spec, GoodContext()), IsEmpty());
  spec.mutable_resources()->set_processes(17);
  std::vector<FieldError> errors = ValidateJobSpec(spec, GoodContext());
  ASSERT_THAT(Fields(errors), ElementsAre("spec.resources.processes"));
  EXPECT_EQ(errors[0].message, "must be in [0, 16], got 17");
  // A GPU job runs one process per GPU (default gpus: 1).
  spec.mutable_resources()->clear_gpus();
  spec.mutable_resources()->set_processes(2);
  errors = ValidateJobSpec(spec, GoodContext());
  ASSERT_THAT(Fields(errors), ElementsAre("spec.resources.processes"));
  EXPECT_THAT(errors[0].message, HasSubstr("must be 0 or 1 (resources.gpus)"));
  spec.mutable_resources()->set_gpus(2);
  EXPECT_THAT(ValidateJobSpec(spec, GoodContext()), IsEmpty());
  // Each process accumulates: the trainer's range holds the product.
  spec.mutable_hyperparameters()->set_gradient_accumulation_steps(600);
  errors = ValidateJobSpec(spec, GoodContext());
  ASSERT_THAT(Fields(errors),
              ElementsAre("spec.hyperparameters.gradient_accumulation_steps"));
  EXPECT_THAT(errors[0].message, HasSubstr("got 1200"));
  spec.mutable_hyperparameters()->clear_gradient_accumulation_steps();
  // Preference objectives run on several ranks too (pairs split whole).
  SpecContext pairs = GoodContext();
  pairs.training_file->format = "preference";
  pairs.validation_file->format = "preference";
  spec.set_objective(v1::TRAINING_OBJECTIVE_DPO);
  EXPECT_THAT(ValidateJobSpec(spec, pairs), IsEmpty());
  spec.mutable_resources()->set_gpus(0);
  spec.mutable_resources()->set_processes(2);
  EXPECT_THAT(ValidateJobSpec(spec, pairs), IsEmpty());
}

}  // namespace
}  // namespace ftune::core
