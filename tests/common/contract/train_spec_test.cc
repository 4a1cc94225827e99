// The trainer contract: the spec's JSON both ways, its defaults and ranges
// from the one table (limits.h), and the rules between fields.
#include "common/contract/train_spec.h"

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"

namespace ftune::contract {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

json Minimal() {
  return {
      {"model_dir", "/m"}, {"train_data", "/t.jsonl"}, {"output_dir", "/o"}};
}

absl::StatusOr<TrainSpec> Parse(const json& j) {
  return ParseTrainSpec(j.dump());
}

// Every leaf of `j` by its path ("hyperparameters.seed").
void Leaves(const json& j, const std::string& prefix,
            std::map<std::string, json>* out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      Leaves(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(),
             out);
    }
  } else {
    (*out)[prefix] = j;
  }
}

// A spec with every field away from its default.
TrainSpec EveryFieldSet() {
  TrainSpec s;
  s.model_dir = "/storage/models/m";
  s.base_model_name = "m";
  s.train_data = "/storage/files/t/train";
  s.validation_data = "";
  s.data.format = DataFormat::kPretokenized;
  s.data.chat_template = "llama3";
  s.data.overlength = Overlength::kDrop;
  s.data.validation_split = 0;  // exclusive with validation_data, set below
  s.method = Method::kQlora;
  s.lora = {7, 3.5, 0.25, {"q_proj", "o_proj"}};
  s.quantization = {QuantType::kFp4, false, 128};
  HyperParameters& h = s.hp;
  h.max_steps = 77;
  h.learning_rate = 0.125;
  h.lr_scheduler = LrScheduler::kCosine;
  h.warmup_steps = 5;
  h.warmup_ratio = 0;
  h.batch_size = 3;
  h.gradient_accumulation_steps = 6;
  h.max_seq_length = 96;
  h.packing = true;
  h.weight_decay = 0.5;
  h.max_grad_norm = 2.5;
  h.seed = 123456789012345;
  h.eval_every_steps = 9;
  h.checkpoint_every_steps = 11;
  h.early_stopping_patience = 4;
  h.eval_on_start = true;
  h.gradient_checkpointing = false;
  h.oom_retry = false;
  s.validation_data = "/storage/files/t/val";
  s.output_dir = "/storage/jobs/t/j/adapter";
  s.checkpoint_dir = "/storage/jobs/t/j/checkpoints";
  s.resume_from = "auto";
  s.merge_output_dir = "/storage/merged";
  s.threads = 3;
  s.dtype = Dtype::kBf16;
  s.device = "cuda:1";
  // Pre-tokenized data makes no samples: the count written is 0 (its own
  // round trip is below); the generation settings travel anyway.
  s.samples.eval_samples = 0;
  s.samples.generation = {17, 0.5, 9, 0.75, 1.25, 99, {"###", "\n\n"}};
  // Likewise no task metrics (their own round trip: task_metrics_test.cc).
  s.task_metrics.eval_task_examples = 0;
  s.task_metrics.max_new_tokens = 21;
  return s;
}

// Field by field, so a key the writer drops (and the reader then defaults)
// is caught even though the JSON texts would agree.
void ExpectSameSpec(const TrainSpec& a, const TrainSpec& b) {
  EXPECT_EQ(a.model_dir, b.model_dir);
  EXPECT_EQ(a.base_model_name, b.base_model_name);
  EXPECT_EQ(a.train_data, b.train_data);
  EXPECT_EQ(a.validation_data, b.validation_data);
  EXPECT_EQ(a.data.format, b.data.format);
  EXPECT_EQ(a.data.chat_template, b.data.chat_template);
  EXPECT_EQ(a.data.overlength, b.data.overlength);
  EXPECT_EQ(a.data.validation_split, b.data.validation_split);
  EXPECT_EQ(a.method, b.method);
  EXPECT_EQ(a.lora.rank, b.lora.rank);
  EXPECT_EQ(a.lora.alpha, b.lora.alpha);
  EXPECT_EQ(a.lora.dropout, b.lora.dropout);
  EXPECT_EQ(a.lora.target_modules, b.lora.target_modules);
  EXPECT_EQ(a.quantization.quant_type, b.quantization.quant_type);
  EXPECT_EQ(a.quantization.double_quant, b.quantization.double_quant);
  EXPECT_EQ(a.quantization.block_size, b.quantization.block_size);
  const HyperParameters &h = a.hp, &g = b.hp;
  EXPECT_EQ(h.epochs, g.epochs);
  EXPECT_EQ(h.max_steps, g.max_steps);
  EXPECT_EQ(h.learning_rate, g.learning_rate);
  EXPECT_EQ(h.lr_scheduler, g.lr_scheduler);
  EXPECT_EQ(h.warmup_steps, g.warmup_steps);
  EXPECT_EQ(h.warmup_ratio, g.warmup_ratio);
  EXPECT_EQ(h.batch_size, g.batch_size);
  EXPECT_EQ(h.gradient_accumulation_steps, g.gradient_accumulation_steps);
  EXPECT_EQ(h.max_seq_length, g.max_seq_length);
  EXPECT_EQ(h.packing, g.packing);
  EXPECT_EQ(h.weight_decay, g.weight_decay);
  EXPECT_EQ(h.max_grad_norm, g.max_grad_norm);
  EXPECT_EQ(h.seed, g.seed);
  EXPECT_EQ(h.eval_every_steps, g.eval_every_steps);
  EXPECT_EQ(h.checkpoint_every_steps, g.checkpoint_every_steps);
  EXPECT_EQ(h.early_stopping_patience, g.early_stopping_patience);
  EXPECT_EQ(h.eval_on_start, g.eval_on_start);
  EXPECT_EQ(h.gradient_checkpointing, g.gradient_checkpointing);
  EXPECT_EQ(h.oom_retry, g.oom_retry);
  EXPECT_EQ(a.output_dir, b.output_dir);
  EXPECT_EQ(a.checkpoint_dir, b.checkpoint_dir);
  EXPECT_EQ(a.resume_from, b.resume_from);
  EXPECT_EQ(a.merge_output_dir, b.merge_output_dir);
  EXPECT_EQ(a.threads, b.threads);
  EXPECT_EQ(a.dtype, b.dtype);
  EXPECT_EQ(a.device, b.device);
  EXPECT_EQ(a.objective, b.objective);
  EXPECT_EQ(a.preference.loss, b.preference.loss);
  EXPECT_EQ(a.preference.beta, b.preference.beta);
  EXPECT_EQ(a.preference.label_smoothing, b.preference.label_smoothing);
  EXPECT_EQ(a.preference.orpo_lambda, b.preference.orpo_lambda);
  EXPECT_EQ(a.samples.eval_samples, b.samples.eval_samples);
  EXPECT_EQ(a.task_metrics.eval_task_examples,
            b.task_metrics.eval_task_examples);
  EXPECT_EQ(a.task_metrics.max_new_tokens, b.task_metrics.max_new_tokens);
  EXPECT_EQ(a.task_metrics.eval_pattern, b.task_metrics.eval_pattern);
  EXPECT_EQ(a.task_metrics.select_best_by, b.task_metrics.select_best_by);
  const GenerationSpec &x = a.samples.generation, &y = b.samples.generation;
  EXPECT_EQ(x.max_new_tokens, y.max_new_tokens);
  EXPECT_EQ(x.temperature, y.temperature);
  EXPECT_EQ(x.top_k, y.top_k);
  EXPECT_EQ(x.top_p, y.top_p);
  EXPECT_EQ(x.repetition_penalty, y.repetition_penalty);
  EXPECT_EQ(x.seed, y.seed);
  EXPECT_EQ(x.stop, y.stop);
}

TEST(TrainSpecTest, EveryFieldSurvivesTheRoundTrip) {
  const TrainSpec filled = EveryFieldSet();
  const std::string text = TrainSpecToJson(filled);
  absl::StatusOr<TrainSpec> back = ParseTrainSpec(text);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  ExpectSameSpec(*back, filled);
  EXPECT_EQ(TrainSpecToJson(*back), text);
  EXPECT_EQ(back->source_json, text);

  // Every field the JSON carries differs from its default, so a field the
  // writer or the reader dropped would come back as the default.
  TrainSpec defaults;
  defaults.method = Method::kQlora;  // so "quantization" is written
  defaults.dtype = Dtype::kFp32;     // so "dtype" is written
  defaults.hp.max_steps = 1;         // "max_steps" instead of "epochs"
  std::map<std::string, json> want, base;
  Leaves(json::parse(text), "", &want);
  Leaves(json::parse(TrainSpecToJson(defaults)), "", &base);
  ASSERT_EQ(want.size(), base.size());
  for (const auto& [path, value] : want) {
    ASSERT_TRUE(base.count(path)) << path;
    // objective: sft here (pretokenized data); the preference settings
    // have their own round trip below.
    if (path == "method" || path == "data.validation_split" ||
        path == "objective" || path == "samples.eval_samples" ||
        path == "task_metrics.eval_task_examples") {
      continue;
    }
    EXPECT_NE(value, base[path]) << path << " is at its default";
  }
}

TEST(TrainSpecTest, PreferenceSettingsSurviveTheRoundTrip) {
  TrainSpec dpo = EveryFieldSet();
  dpo.data.format = DataFormat::kText;
  dpo.objective = Objective::kDpo;
  dpo.preference.beta = 0.25;
  dpo.preference.label_smoothing = 0.125;
  TrainSpec ipo = dpo;
  ipo.preference.loss = PreferenceLossKind::kIpo;
  ipo.preference.label_smoothing = 0;
  TrainSpec orpo = EveryFieldSet();
  orpo.data.format = DataFormat::kText;
  orpo.objective = Objective::kOrpo;
  orpo.preference.orpo_lambda = 0.75;
  for (const TrainSpec& want : {dpo, ipo, orpo}) {
    const std::string text = TrainSpecToJson(want);
    absl::StatusOr<TrainSpec> back = ParseTrainSpec(text);
    ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
    ExpectSameSpec(*back, want);
  }
}

TEST(TrainSpecTest, SampleSettingsSurviveTheRoundTripAndAreChecked) {
  TrainSpec want = EveryFieldSet();
  want.data.format = DataFormat::kText;
  want.samples.eval_samples = 7;
  const std::string text = TrainSpecToJson(want);
  absl::StatusOr<TrainSpec> back = ParseTrainSpec(text);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  ExpectSameSpec(*back, want);
  EXPECT_EQ(json::parse(text)["samples"]["eval_samples"], 7);

  // Defaults: 4 greedy samples of at most 64 tokens.
  json minimal = Minimal();
  minimal["checkpoint_dir"] = "/c";  // so the written spec parses back
  absl::StatusOr<TrainSpec> d = Parse(minimal);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->samples.eval_samples, defaults::kEvalSamples);
  EXPECT_EQ(d->samples.generation.max_new_tokens,
            defaults::kSampleMaxNewTokens);
  EXPECT_EQ(d->samples.generation.temperature, 0);
  EXPECT_EQ(d->samples.generation.top_p, 1);
  // Without a validation source the count that applies is 0, so the
  // written spec parses back.
  EXPECT_EQ(json::parse(TrainSpecToJson(*d))["samples"]["eval_samples"], 0);
  EXPECT_OK(ParseTrainSpec(TrainSpecToJson(*d)).status());

  auto error = [](json j) { return Parse(j).status().ToString(); };
  json j = Minimal();
  j["validation_data"] = "/v.jsonl";
  for (const auto& [samples, want_error] :
       std::vector<std::pair<json, std::string>>{
           {{{"temperature", -1}},
            "\"samples.temperature\": must be in [0, 100], got -1"},
           {{{"top_p", 0}}, "\"samples.top_p\": must be in (0, 1], got 0"},
           {{{"top_p", 1.5}}, "\"samples.top_p\": must be in (0, 1], got 1.5"},
           {{{"max_new_tokens", 5000}},
            "\"samples.max_new_tokens\": must be in [1, 4096], got 5000"},
           {{{"eval_samples", 33}},
            "\"samples.eval_samples\": must be in [0, 32], got 33"},
           {{{"stop", {"a", "b", "c", "d", "e"}}},
            "\"samples.stop\": at most 4 stop sequences"},
           {{{"stop", {""}}}, "\"samples.stop[0]\": length in bytes"},
           {{{"greedy", true}}, "\"samples.greedy\": unknown field"}}) {
    j["samples"] = samples;
    EXPECT_THAT(error(j), HasSubstr(want_error)) << samples.dump();
  }
  // Named where it cannot apply: refused, not ignored.
  j = Minimal();
  j["samples"] = {{"eval_samples", 2}};
  EXPECT_THAT(error(j), HasSubstr("\"samples.eval_samples\": needs "
                                  "validation_data"));
  j["validation_data"] = "/v.jsonl";
  j["objective"] = "dpo";
  EXPECT_THAT(error(j), HasSubstr("only with \"objective\": \"sft\""));
  j["samples"] = {{"eval_samples", 0}};
  EXPECT_TRUE(Parse(j).ok()) << error(j);
}

TEST(TrainSpecTest, PreferenceSettingsTheObjectiveDoesNotUseAreRefused) {
  auto error = [](json j) { return Parse(j).status().ToString(); };
  json j = Minimal();
  j["preference"] = {{"beta", 0.2}};
  EXPECT_THAT(error(j), HasSubstr("\"preference\": only with"));
  j["objective"] = "orpo";
  EXPECT_THAT(error(j), HasSubstr("\"preference.beta\": only with "
                                  "\"objective\": \"dpo\""));
  j["objective"] = "dpo";
  j["preference"] = {{"orpo_lambda", 0.2}};
  EXPECT_THAT(error(j), HasSubstr("\"preference.orpo_lambda\": only with"));
  j["preference"] = {{"beta", 0}};
  EXPECT_THAT(error(j), HasSubstr("\"preference.beta\": must be in (0, 100]"));
  j["preference"] = {{"label_smoothing", 0.5}};
  EXPECT_THAT(error(j),
              HasSubstr("\"preference.label_smoothing\": must be in [0, 0.5)"));
  j["preference"] = {{"loss", "ipo"}, {"label_smoothing", 0.1}};
  EXPECT_THAT(error(j), HasSubstr("IPO has no label smoothing"));
  j["preference"] = {{"loss", "hinge"}};
  EXPECT_THAT(error(j), HasSubstr("must be \"sigmoid\", \"ipo\""));
  j["preference"] = json::object();
  j["data"] = {{"format", "pretokenized"}};
  EXPECT_THAT(error(j), HasSubstr("\"data.format\": preference objectives"));
  j = Minimal();
  j["objective"] = "dpo";
  absl::StatusOr<TrainSpec> s = Parse(j);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->preference.beta, defaults::kPreferenceBeta);
  EXPECT_EQ(s->preference.loss, PreferenceLossKind::kSigmoid);
}

TEST(TrainSpecTest, FractionalEpochsAndTheDefaultsOfTheTable) {
  absl::StatusOr<TrainSpec> s = Parse(Minimal());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->base_model_name, "/m");
  EXPECT_EQ(s->lora.rank, defaults::kLoraRank);
  EXPECT_EQ(s->lora.alpha, defaults::kLoraAlphaPerRank * defaults::kLoraRank);
  EXPECT_EQ(s->lora.target_modules,
            std::vector<std::string>{defaults::kAllLinear});
  EXPECT_EQ(s->hp.epochs, defaults::kEpochs);
  EXPECT_EQ(s->hp.lr_scheduler, LrScheduler::kLinear);
  EXPECT_EQ(s->hp.warmup_ratio, defaults::kWarmupRatio);
  EXPECT_EQ(s->hp.packing, defaults::kPacking);
  EXPECT_TRUE(s->hp.gradient_checkpointing);
  EXPECT_TRUE(s->hp.oom_retry);
  EXPECT_EQ(ComputeDtype(*s), Dtype::kFp32);
  EXPECT_FALSE(s->dtype.has_value());

  json j = Minimal();
  j["hyperparameters"] = {{"epochs", 1.5}};
  j["lora"] = {{"rank", 4}};
  s = Parse(j);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->hp.epochs, 1.5);
  EXPECT_EQ(s->lora.alpha, 8);  // 2 * rank when alpha is not given

  // On a GPU compute defaults to bf16 and fp16 is allowed (parsing needs
  // no GPU; the trainer checks the device when it starts); with qlora the
  // dtype is the compute dtype the 4-bit weights are dequantised to.
  j = Minimal();
  j["device"] = "cuda";
  j["method"] = "qlora";
  s = Parse(j);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(ComputeDtype(*s), Dtype::kBf16);
  EXPECT_EQ(s->quantization.quant_type, QuantType::kNf4);
  EXPECT_TRUE(s->quantization.double_quant);
  EXPECT_EQ(s->quantization.block_size, 64);
  j["device"] = "cuda:1";
  j["dtype"] = "fp16";
  s = Parse(j);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(ComputeDtype(*s), Dtype::kFp16);

  // Evaluation is satisfied by a split as well as by a file.
  j = Minimal();
  j["data"] = {{"validation_split", 0.25}};
  j["hyperparameters"] = {{"eval_every_steps", 5}};
  EXPECT_TRUE(Parse(j).ok());

  // Naming warmup_steps turns the default ratio off.
  j = Minimal();
  j["hyperparameters"] = {{"warmup_steps", 0}};
  s = Parse(j);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->hp.warmup_ratio, 0);
}

TEST(TrainSpecTest, OutOfRangeValuesNameTheFieldAndTheRange) {
  struct Case {
    json patch;
    std::string message;
  };
  const Case cases[] = {
      {{{"lora", {{"rank", 0}}}},
       "spec field \"lora.rank\": must be in [1, 256], got 0"},
      {{{"lora", {{"alpha", 0}}}},
       "spec field \"lora.alpha\": must be in (0, 1024], got 0"},
      {{{"hyperparameters", {{"learning_rate", 2}}}},
       "spec field \"hyperparameters.learning_rate\": must be in (0, 1], got "
       "2"},
      {{{"hyperparameters", {{"epochs", 0}}}},
       "spec field \"hyperparameters.epochs\": must be in (0, 100], got 0"},
      {{{"hyperparameters", {{"weight_decay", 1}}}},
       "\"hyperparameters.weight_decay\": must be in [0, 1), got 1"},
      {{{"hyperparameters", {{"max_steps", 5}, {"epochs", 1}}}},
       "set epochs or max_steps, not both"},
      {{{"hyperparameters", {{"max_steps", 5}, {"warmup_steps", 5}}}},
       "must be less than max_steps (5), got 5"},
      {{{"hyperparameters", {{"warmup_steps", 2}, {"warmup_ratio", 0.1}}}},
       "set warmup_steps or warmup_ratio, not both"},
      {{{"hyperparameters", {{"seed", -1}}}},
       "\"hyperparameters.seed\": must be >= 0, got -1"},
      {{{"hyperparameters", {{"batch_size", 1.5}}}}, "must be an integer"},
      {{{"hyperparameters", {{"lr_scheduler", "step"}}}},
       "\"hyperparameters.lr_scheduler\": must be \"constant\", \"linear\", "
       "\"cosine\""},
      {{{"hyperparameters", {{"warmup_ratio", 1}}}},
       "\"hyperparameters.warmup_ratio\": must be in [0, 0.5], got 1"},
      {{{"hyperparameters", {{"oom_retry", 1}}}},
       "\"hyperparameters.oom_retry\": must be true or false"},
      {{{"hyperparameters", {{"batch_sise", 2}}}},
       "\"hyperparameters.batch_sise\": unknown field"},
      {{{"quantization", {{"block_size", 64}}}},
       "\"quantization\": only with \"method\": \"qlora\""},
      {{{"method", "qlora"}, {"quantization", {{"block_size", 48}}}},
       "must be a power of two in [32, 4096], got 48"},
      {{{"method", "qlora"}, {"dtype", "fp64"}},
       "qlora computes in fp32, bf16 or fp16"},
      {{{"dtype", "float32"}},
       "\"dtype\": must be \"fp32\", \"bf16\", \"fp16\", \"fp64\""},
      {{{"dtype", "fp16"}}, "\"fp16\" needs a CUDA device"},
      {{{"device", "gpu"}}, "\"device\": must be \"cpu\""},
      {{{"method", "dora"}},
       "\"method\": must be \"lora\", \"qlora\", \"full\""},
      {{{"data", {{"chat_template", "vicuna"}}}},
       "unknown chat template \"vicuna\""},
      {{{"data", {{"validation_split", 0.7}}}},
       "\"data.validation_split\": must be in (0, 0.5], got 0.7"},
      {{{"validation_data", "/v"}, {"data", {{"validation_split", 0.1}}}},
       "must be 0 when validation_data is given"},
      {{{"hyperparameters", {{"eval_every_steps", 5}}}},
       "needs validation_data or data.validation_split"},
      {{{"hyperparameters", {{"eval_on_start", true}}}},
       "eval_on_start\": needs validation_data or data.validation_split"},
      {{{"hyperparameters", {{"checkpoint_every_steps", 5}}}},
       "\"checkpoint_dir\": is required"},
      {{{"resume_from", "auto"}}, "\"checkpoint_dir\": is required"},
      {{{"lora", {{"target_modules", {"q_proj", "q_proj"}}}}},
       "\"q_proj\" is listed twice"},
      {{{"lora", {{"target_modules", {"all-linear", "q_proj"}}}}},
       "cannot be combined"},
      {{{"lora", "big"}}, "\"lora\": must be an object"},
      {{{"method", "qlora"}, {"quantization", {{"quant_type", "int4"}}}},
       "\"quantization.quant_type\": must be \"nf4\", \"fp4\""},
      {{{"method", "qlora"}, {"quantization", {{"block_size", 16}}}},
       "\"quantization.block_size\": must be in [32, 4096], got 16"},
      {{{"method", "qlora"}, {"quantization", {{"block_size", 8192}}}},
       "must be in [32, 4096], got 8192"},
      {{{"method", "qlora"}, {"quantization", {{"double_quant", 1}}}},
       "\"quantization.double_quant\": must be true or false"},
      {{{"method", "qlora"}, {"quantization", {{"blocksize", 64}}}},
       "\"quantization.blocksize\": unknown field"},
      {{{"method", "qlora"}, {"quantization", json::array()}},
       "\"quantization\": must be an object"},
      {{{"device", "cuda:x"}}, "\"device\": must be"},
      {{{"data", {{"format", "csv"}}}},
       "\"data.format\": must be \"text\", \"pretokenized\""},
      {{{"data", {{"overlength", "wrap"}}}}, "\"data.overlength\": must be"},
      {{{"data", {{"shuffle", true}}}}, "\"data.shuffle\": unknown field"},
      {{{"data", {{"validation_split", 0.1}, {"format", "pretokenized"}}}},
       "pre-tokenized data takes validation_data"},
  };
  for (const Case& c : cases) {
    json j = Minimal();
    j.update(c.patch);
    absl::StatusOr<TrainSpec> s = Parse(j);
    ASSERT_FALSE(s.ok()) << c.patch.dump();
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.status().message()), HasSubstr(c.message))
        << c.patch.dump();
  }
  for (const char* required : {"model_dir", "train_data", "output_dir"}) {
    json j = Minimal();
    j.erase(required);
    absl::StatusOr<TrainSpec> s = Parse(j);
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(std::string(s.status().message()),
                HasSubstr(std::string("\"") + required + "\": is required"));
  }
  EXPECT_FALSE(ParseTrainSpec("[1]").ok());
  EXPECT_FALSE(ParseTrainSpec("{").ok());
}

TEST(TrainSpecTest, TheDefaultCheckpointIntervalNeedsNoCheckpointDir) {
  // Run on its own without a checkpoint_dir, the default interval (500)
  // simply writes nothing; it is not an error.
  absl::StatusOr<TrainSpec> s = Parse(Minimal());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->hp.checkpoint_every_steps, defaults::kCheckpointEverySteps);
}

TEST(LimitsTest, DerivedDefaults) {
  EXPECT_EQ(DefaultMaxSeqLength(0), 2048);
  EXPECT_EQ(DefaultMaxSeqLength(512), 512);
  EXPECT_EQ(DefaultMaxSeqLength(131072), 2048);
  EXPECT_EQ(DefaultCpuThreads(0), 4);
  EXPECT_EQ(DefaultCpuThreads(2), 2);
  EXPECT_EQ(DefaultEvalEverySteps(95, 7), 10);
  EXPECT_EQ(DefaultEvalEverySteps(0, 7), 7);
  EXPECT_EQ(DefaultEvalEverySteps(0, 0), 1);
  EXPECT_EQ(WarmupStepsForRatio(0.03, 100), 3);
  EXPECT_EQ(WarmupStepsForRatio(0.03, 101), 4);
  EXPECT_EQ(WarmupStepsForRatio(0, 101), 0);
  EXPECT_EQ(RangeText(range::kLoraDropout), "[0, 1)");
  EXPECT_EQ(RangeText(range::kSeed), ">= 0");
  EXPECT_EQ(*RangeViolation(range::kMaxSteps, 0),
            "must be in [1, 10000000], got 0");
  EXPECT_TRUE(RangeViolation(range::kLearningRate, std::nan("")).has_value());
  EXPECT_FALSE(RangeViolation(range::kLearningRate, 1).has_value());
}

// method "full": every weight trained, so LoRA's settings, a merged copy,
// quantisation and DPO's frozen reference are refused naming the field; the
// spec written for it carries no "lora" and reads back; job_id travels.
TEST(TrainSpecTest, FullFineTuningRefusesLoraOnlyFields) {
  json j = Minimal();
  j["method"] = "full";
  j["job_id"] = "job-1";
  j["checkpoint_dir"] = "/c";  // the written spec names an interval
  ASSERT_OK_AND_ASSIGN(TrainSpec s, Parse(j));
  EXPECT_EQ(s.method, Method::kFull);
  EXPECT_EQ(s.job_id, "job-1");
  const std::string text = TrainSpecToJson(s);
  EXPECT_FALSE(json::parse(text).contains("lora")) << text;
  ASSERT_OK_AND_ASSIGN(TrainSpec back, ParseTrainSpec(text));
  EXPECT_EQ(back.method, Method::kFull);
  EXPECT_EQ(back.job_id, "job-1");

  const std::vector<std::pair<json, std::string>> cases = {
      {{{"lora", {{"rank", 8}}}}, "spec field \"lora\": not with"},
      {{{"lora", json::object()}}, "spec field \"lora\": not with"},
      {{{"quantization", {{"quant_type", "nf4"}}}},
       "spec field \"quantization\": only with \"method\": \"qlora\""},
      {{{"merge_output_dir", "/merged"}},
       "spec field \"merge_output_dir\": not with"},
      {{{"objective", "dpo"}}, "spec field \"objective\": \"dpo\" needs"},
  };
  for (const auto& [extra, want] : cases) {
    json bad = j;
    for (auto it = extra.begin(); it != extra.end(); ++it)
      bad[it.key()] = it.value();
    EXPECT_THAT(Parse(bad),
                ::ftune::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr(want)))
        << bad.dump();
  }
  json orpo = j;
  orpo["objective"] = "orpo";
  EXPECT_OK(Parse(orpo));
}

}  // namespace
}  // namespace ftune::contract
