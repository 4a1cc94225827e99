// The preference objectives (DPO, conservative DPO, IPO, ORPO) against an
// independent float64 reference (scripts/reference/preference_reference.py,
// per pair in Python floats with hand-derived derivatives): losses, the
// gradients with respect to the policy's log-probabilities, and the reward
// statistics; in fp64 and fp32. Then a whole preference step on the tiny
// model (policy = the model with LoRA, reference = the same model with LoRA
// off) against scripts/reference/preference_model_reference.py: the loss,
// its gradient with respect to every LoRA tensor, and the statistics.
#include "worker/train/objectives/preference.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/temp_dir.h"
#include "tests/worker/train/tiny_model.h"
#include "worker/train/adapter.h"
#include "worker/train/model.h"
#include "worker/train/objectives/preference_step.h"
#include "worker/train/text_data.h"
#include "worker/train/torch_compat.h"
#include "worker/train/trainer.h"

namespace ftune::train {
namespace {

using nlohmann::json;

struct Case {
  const char* name;
  PreferenceOptions options;
};

// Twelve pairs: completion log-probabilities of 3-12 tokens at -0.2 to -3
// nats each, chosen and rejected drawn independently so some pairs are
// already ordered the wrong way.
json Pairs() {
  torch::manual_seed(11);
  json pairs = json::array();
  for (int i = 0; i < 12; ++i) {
    const int nc =
        3 + static_cast<int>(torch::randint(10, {1}).item<int64_t>());
    const int nr =
        3 + static_cast<int>(torch::randint(10, {1}).item<int64_t>());
    auto per_token = [](int n) {
      return -(0.2 + 2.8 * torch::rand({n}, torch::kFloat64))
                  .sum()
                  .item<double>();
    };
    pairs.push_back({{"pc", per_token(nc)},
                     {"pr", per_token(nr)},
                     {"rc", per_token(nc)},
                     {"rr", per_token(nr)},
                     {"nc", nc},
                     {"nr", nr}});
  }
  return pairs;
}

json Reference(const json& pairs, const Case& c) {
  ftune::testing::TempDir dir;
  const char* kind = c.options.loss == PreferenceLoss::kDpo   ? "dpo"
                     : c.options.loss == PreferenceLoss::kIpo ? "ipo"
                                                              : "orpo";
  json in = {{"loss", kind},
             {"beta", c.options.beta},
             {"label_smoothing", c.options.label_smoothing},
             {"orpo_lambda", c.options.orpo_lambda},
             {"pairs", pairs}};
  std::ofstream(dir.Sub("in.json")) << in.dump();
  const std::string cmd = std::string("/usr/bin/python3 ") + FTUNE_SOURCE_DIR +
                          "/scripts/reference/preference_reference.py " +
                          dir.Sub("in.json") + " " + dir.Sub("out.json");
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream f(dir.Sub("out.json"));
  std::stringstream ss;
  ss << f.rdbuf();
  return json::parse(ss.str());
}

void ExpectMatches(const json& pairs, const Case& c, torch::Dtype dtype,
                   double tolerance) {
  SCOPED_TRACE(std::string(c.name) +
               (dtype == torch::kFloat64 ? " fp64" : " fp32"));
  const json want = Reference(pairs, c);
  auto column = [&](const char* key) {
    std::vector<double> v;
    for (const json& p : pairs) v.push_back(p[key].get<double>());
    return torch::tensor(v, torch::kFloat64).to(dtype);
  };
  PairLogps p;
  p.chosen = column("pc").requires_grad_();
  p.rejected = column("pr").requires_grad_();
  p.ref_chosen = column("rc");
  p.ref_rejected = column("rr");
  p.chosen_tokens = column("nc");
  p.rejected_tokens = column("nr");
  PreferenceResult r = PreferenceObjective(p, c.options);
  r.loss.backward();
  auto near = [&](double got, double expect, const std::string& what) {
    EXPECT_LE(std::abs(got - expect),
              tolerance * std::max(1.0, std::abs(expect)))
        << what << ": " << got << " vs " << expect;
  };
  near(r.loss.item<double>(), want["loss"].get<double>(), "loss");
  for (size_t i = 0; i < pairs.size(); ++i) {
    near(p.chosen.grad()[i].item<double>(), want["grad_pc"][i].get<double>(),
         "d/dpc " + std::to_string(i));
    near(p.rejected.grad()[i].item<double>(), want["grad_pr"][i].get<double>(),
         "d/dpr " + std::to_string(i));
  }
  near(r.stats.rewards_chosen, want["rewards_chosen"].get<double>(),
       "rewards_chosen");
  near(r.stats.rewards_rejected, want["rewards_rejected"].get<double>(),
       "rewards_rejected");
  near(r.stats.reward_margin, want["reward_margin"].get<double>(),
       "reward_margin");
  EXPECT_EQ(r.stats.reward_accuracy, want["reward_accuracy"].get<double>());
}

TEST(PreferenceObjectiveTest, MatchesTheFloat64Reference) {
  const json pairs = Pairs();
  PreferenceOptions dpo;
  dpo.beta = 0.3;
  PreferenceOptions cdpo = dpo;
  cdpo.label_smoothing = 0.2;
  PreferenceOptions ipo;
  ipo.loss = PreferenceLoss::kIpo;
  ipo.beta = 0.5;
  PreferenceOptions orpo;
  orpo.loss = PreferenceLoss::kOrpo;
  orpo.orpo_lambda = 0.25;
  for (const Case& c : {Case{"dpo", dpo}, Case{"conservative dpo", cdpo},
                        Case{"ipo", ipo}, Case{"orpo", orpo}}) {
    ExpectMatches(pairs, c, torch::kFloat64, 1e-9);
    ExpectMatches(pairs, c, torch::kFloat32, 1e-4);
  }
}

TEST(PreferenceObjectiveTest, ChoosingBetterLowersTheLoss) {
  // The same pair twice, the second with the policy moved toward chosen:
  // the DPO loss falls and the reward accuracy rises to 1.
  PairLogps p;
  p.chosen = torch::tensor({-10.0, -8.0}, torch::kFloat64);
  p.rejected = torch::tensor({-9.0, -11.0}, torch::kFloat64);
  p.ref_chosen = torch::tensor({-10.0, -10.0}, torch::kFloat64);
  p.ref_rejected = torch::tensor({-9.0, -9.0}, torch::kFloat64);
  p.chosen_tokens = torch::tensor({5.0, 5.0}, torch::kFloat64);
  p.rejected_tokens = torch::tensor({5.0, 5.0}, torch::kFloat64);
  PreferenceOptions o;
  // At the reference, DPO's loss is log 2 whatever beta.
  PairLogps at_ref = p;
  at_ref.chosen = p.ref_chosen;
  at_ref.rejected = p.ref_rejected;
  EXPECT_NEAR(PreferenceObjective(at_ref, o).loss.item<double>(), std::log(2.0),
              1e-15);
  PreferenceResult r = PreferenceObjective(p, o);
  EXPECT_EQ(r.stats.reward_accuracy, 0.5);
  EXPECT_LT(r.loss.item<double>(), std::log(2.0));
  EXPECT_NEAR(r.stats.rewards_chosen, 0.1 * (0 + 2) / 2, 1e-12);
  EXPECT_NEAR(r.stats.rewards_rejected, 0.1 * (0 - 2) / 2, 1e-12);
}

// --- A preference step on the tiny model --------------------------------

// One side of a pair: `ids`, the first `prompt` of them the prompt; targets
// on the answer.
PackedSequence Side(const std::vector<int32_t>& ids, size_t prompt) {
  PackedSequence r;
  for (size_t i = 0; i < ids.size(); ++i) {
    r.input_ids.push_back(ids[i]);
    r.labels.push_back(i + 1 < ids.size() && i + 1 >= prompt ? ids[i + 1]
                                                             : kIgnoreLabel);
    r.position_ids.push_back(static_cast<int32_t>(i));
    r.segment_ids.push_back(0);
  }
  return r;
}

class PreferenceStepTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ftune::testing::TempDir;
    ASSERT_TRUE(
        ftune::testing::WriteTinyLlama(dir_->Sub("model"), 64, 17).ok());
    // Three pairs; answers of different lengths, prompts shared.
    rows_ = new std::vector<PackedSequence>{
        Side({1, 5, 9, 12, 7}, 3),     Side({1, 5, 9, 30, 31, 2}, 3),
        Side({1, 40, 41, 3, 4}, 2),    Side({1, 40, 20}, 2),
        Side({1, 8, 8, 8, 50, 51}, 4), Side({1, 8, 8, 8, 11, 12, 13}, 4)};
    json batch = {{"rows", json::array()}};
    for (const PackedSequence& r : *rows_) {
      batch["rows"].push_back({{"input_ids", r.input_ids},
                               {"labels", r.labels},
                               {"position_ids", r.position_ids},
                               {"segment_ids", r.segment_ids}});
    }
    std::ofstream(dir_->Sub("batch.json")) << batch.dump();
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete rows_;
  }

  // The tiny model in `dtype` with LoRA on every module, A and B random
  // (B != 0, so the policy differs from the reference), the LoRA values
  // fp32-representable and written as the PEFT adapter the reference reads.
  std::unique_ptr<Model> Load(torch::Dtype dtype) {
    ModelOptions opts;
    opts.dtype = dtype;
    opts.loss_chunk_rows = 4;  // several chunks
    auto model = Model::Load(dir_->Sub("model"), opts);
    EXPECT_TRUE(model.ok()) << model.status();
    LoraOptions lora;
    lora.rank = 4;
    lora.alpha = 8;
    EXPECT_TRUE((*model)->ApplyLora(lora).ok());
    torch::manual_seed(23);
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : (*model)->LoraParameters()) {
      t.copy_(
          (torch::randn(t.sizes(), torch::kFloat64) * 0.3).to(torch::kFloat32));
    }
    if (!std::filesystem::exists(dir_->Sub("adapter"))) {
      NamedTensors fp32;
      for (auto& [name, t] : (*model)->LoraParameters()) {
        fp32.emplace_back(name, t.to(torch::kFloat32));
      }
      EXPECT_TRUE(MakeDirs(dir_->Sub("adapter")).ok());
      EXPECT_TRUE(WriteAdapterFiles(dir_->Sub("adapter"),
                                    (*model)->lora_options(), "tiny", fp32)
                      .ok());
    }
    return std::move(model).value();
  }

  json Reference(const char* kind, const PreferenceOptions& o) {
    const std::string out = dir_->Sub(std::string(kind) + ".json");
    const std::string cmd =
        std::string("/usr/bin/python3 ") + FTUNE_SOURCE_DIR +
        "/scripts/reference/preference_model_reference.py --model " +
        dir_->Sub("model") + " --adapter " + dir_->Sub("adapter") +
        " --batch " + dir_->Sub("batch.json") + " --loss " + kind + " --beta " +
        std::to_string(o.beta) + " --label-smoothing " +
        std::to_string(o.label_smoothing) + " --orpo-lambda " +
        std::to_string(o.orpo_lambda) + " --out " + out;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream f(out);
    std::stringstream ss;
    ss << f.rdbuf();
    return json::parse(ss.str());
  }

  void ExpectStepMatches(const char* kind, const PreferenceOptions& o,
                         const json& want, torch::Dtype dtype, double tol) {
    SCOPED_TRACE(std::string(kind) +
                 (dtype == torch::kFloat64 ? " fp64" : " fp32"));
    std::unique_ptr<Model> model = Load(dtype);
    NamedTensors params = model->LoraParameters();
    std::vector<const PackedSequence*> rows;
    for (const PackedSequence& r : *rows_) rows.push_back(&r);
    // Two micro-batches (2 pairs, then 1): the weighting is checked too.
    const PreferenceStepResult got =
        PreferenceForwardBackward(*model, params, rows, 2, o, nullptr);
    auto near = [&](double g, double w, const std::string& what) {
      EXPECT_LE(std::abs(g - w), tol * std::max(1.0, std::abs(w)))
          << what << ": " << g << " vs " << w;
    };
    const double loss = want["loss"].get<double>();
    near(got.loss, loss, "loss");
    near(got.stats.rewards_chosen, want["rewards_chosen"], "rewards_chosen");
    near(got.stats.rewards_rejected, want["rewards_rejected"],
         "rewards_rejected");
    near(got.stats.reward_margin, want["reward_margin"], "reward_margin");
    near(got.stats.logps_chosen, want["logps_chosen"], "logps_chosen");
    near(got.stats.logps_rejected, want["logps_rejected"], "logps_rejected");
    EXPECT_EQ(got.stats.reward_accuracy, want["reward_accuracy"].get<double>());
    double scale = 0, worst = 0;
    for (auto& [name, p] : params) {
      ASSERT_TRUE(want["grads"].contains(name)) << name;
      const auto rows2 =
          want["grads"][name].get<std::vector<std::vector<double>>>();
      std::vector<double> flat;
      for (const auto& r : rows2) flat.insert(flat.end(), r.begin(), r.end());
      torch::Tensor ref = torch::tensor(flat, torch::kFloat64).view(p.sizes());
      ASSERT_TRUE(p.grad().defined()) << name;
      scale = std::max(scale, ref.abs().max().item<double>());
      worst = std::max(
          worst,
          (p.grad().to(torch::kFloat64) - ref).abs().max().item<double>());
    }
    EXPECT_GT(scale, 0);
    EXPECT_LE(worst, tol * scale) << "largest gradient " << scale;
    // The reference's alternatives are far from it, so a step that dropped
    // the reference term or swapped chosen and rejected would fail above.
    if (o.loss != PreferenceLoss::kOrpo) {
      EXPECT_GT(std::abs(want["loss_without_reference"].get<double>() - loss),
                1e3 * tol * std::max(1.0, std::abs(loss)));
    }
    EXPECT_GT(std::abs(want["loss_swapped"].get<double>() - loss),
              1e3 * tol * std::max(1.0, std::abs(loss)));
  }

  static ftune::testing::TempDir* dir_;
  static std::vector<PackedSequence>* rows_;
};
ftune::testing::TempDir* PreferenceStepTest::dir_ = nullptr;
std::vector<PackedSequence>* PreferenceStepTest::rows_ = nullptr;

TEST_F(PreferenceStepTest, LossGradientsAndStatisticsMatchTheReference) {
  Load(torch::kFloat64);  // writes the adapter the reference reads
  PreferenceOptions dpo;
  dpo.beta = 0.5;
  PreferenceOptions cdpo = dpo;
  cdpo.label_smoothing = 0.2;
  PreferenceOptions ipo;
  ipo.loss = PreferenceLoss::kIpo;
  ipo.beta = 0.5;
  PreferenceOptions orpo;
  orpo.loss = PreferenceLoss::kOrpo;
  orpo.orpo_lambda = 0.25;
  for (auto [kind, o] : {std::pair<const char*, PreferenceOptions>{"dpo", dpo},
                         {"dpo", cdpo},
                         {"ipo", ipo},
                         {"orpo", orpo}}) {
    const json want = Reference(kind, o);
    ExpectStepMatches(kind, o, want, torch::kFloat64, 1e-6);
    ExpectStepMatches(kind, o, want, torch::kFloat32, 1e-4);
  }
}

// --- Out of memory during a preference step -----------------------------

// Out of memory with oom_retry in a DPO run: the step runs again in
// micro-batches of half the pairs (a pair's two rows always together), and
// the run trains what a run that had the memory trains. The fault is
// injected before each forward pass of more than one pair (as in
// TrainerTest.OomRetryHalvesTheMicroBatchAndKeepsTheEffectiveBatch).
TEST(PreferenceOomTest, RetryHalvesTheMicroBatchKeepingPairsWhole) {
  ftune::testing::TempDir dir;
  ASSERT_TRUE(ftune::testing::WriteTinyLlama(dir.Sub("model"), 320, 3).ok());
  ASSERT_TRUE(ftune::testing::WriteChatTokenizer(dir.Sub("model")).ok());
  ASSERT_TRUE(
      ftune::testing::WritePreferencePairs(dir.Sub("pairs.jsonl"), 16, 5).ok());
  ASSERT_TRUE(
      ftune::testing::WritePreferencePairs(dir.Sub("val.jsonl"), 4, 6).ok());
  auto spec = [&](const std::string& run, bool retry) {
    json j = {{"model_dir", dir.Sub("model")},
              {"base_model_name", "tiny-llama"},
              {"train_data", dir.Sub("pairs.jsonl")},
              {"validation_data", dir.Sub("val.jsonl")},
              {"data", {{"format", "text"}, {"chat_template", "auto"}}},
              {"objective", "dpo"},
              {"preference", {{"beta", 0.5}}},
              {"lora",
               {{"rank", 4},
                {"alpha", 8},
                {"dropout", 0},  // masks depend on the micro-batch split
                {"target_modules", {"all-linear"}}}},
              {"hyperparameters",
               {{"max_steps", 3},
                {"learning_rate", 1e-2},
                {"warmup_steps", 0},
                {"batch_size", 4},
                {"gradient_accumulation_steps", 1},
                {"max_seq_length", 64},
                {"seed", 7},
                {"eval_every_steps", 3},
                {"checkpoint_every_steps", 0},
                {"packing", false},
                {"gradient_checkpointing", false},
                {"oom_retry", retry}}},
              {"output_dir", dir.Sub(run + "/adapter")},
              {"checkpoint_dir", dir.Sub(run + "/ckpt")},
              {"threads", 1}};
    auto s = contract::ParseTrainSpec(j.dump());
    EXPECT_TRUE(s.ok()) << s.status();
    return *s;
  };
  struct Run {
    std::vector<json> events;
    std::vector<int64_t> micro_rows;  // every forward pass's row count
  };
  auto hooks_for = [](Run& run, int64_t max_rows) {
    TrainerHooks h;
    h.emit = [&run](const contract::ProgressEvent& e) {
      run.events.push_back(json::parse(contract::ToJsonLine(e)));
    };
    h.before_micro_batch = [&run, max_rows](int64_t rows) {
      run.micro_rows.push_back(rows);
      TORCH_CHECK_WITH(OutOfMemoryError, rows <= max_rows,
                       "injected: out of memory for ", rows, " rows");
    };
    return h;
  };
  // The reference: micro-batches of one pair from the start (batch 4,
  // accumulating 4 passes of 1 pair), no fault.
  TrainSpec small = spec("small", false);
  small.hp.batch_size = 1;
  small.hp.gradient_accumulation_steps = 4;
  Run a;
  auto data_a = NewDataSource(small);
  absl::StatusOr<TrainResult> ra =
      RunTraining(small, *data_a, hooks_for(a, 1 << 20));
  ASSERT_TRUE(ra.ok()) << ra.status();

  // Batches of 4 pairs, out of memory above one pair (2 rows).
  Run b;
  TrainSpec big = spec("big", true);
  auto data_b = NewDataSource(big);
  absl::StatusOr<TrainResult> rb = RunTraining(big, *data_b, hooks_for(b, 2));
  ASSERT_TRUE(rb.ok()) << rb.status();
  ASSERT_EQ(rb->losses.size(), 3u);
  ASSERT_EQ(ra->losses.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(rb->losses[i], ra->losses[i], 1e-5 * std::abs(ra->losses[i]))
        << "step " << i + 1;
  }
  EXPECT_NEAR(rb->best_eval_loss, ra->best_eval_loss,
              1e-5 * std::abs(ra->best_eval_loss));
  // Retried twice at step 1: 2 pairs x 2, then 1 pair x 4.
  std::vector<std::pair<int64_t, int64_t>> retries;
  std::vector<json> metrics_a, metrics_b;
  for (const json& e : b.events) {
    if (e["type"] == "oom_retry") {
      EXPECT_EQ(e["step"], 1);
      EXPECT_NE(e["message"].get<std::string>().find("injected"),
                std::string::npos);
      retries.emplace_back(e["micro_batch_size"],
                           e["gradient_accumulation_steps"]);
    }
    if (e["type"] == "metrics") metrics_b.push_back(e);
  }
  for (const json& e : a.events) {
    if (e["type"] == "metrics") metrics_a.push_back(e);
  }
  EXPECT_EQ(retries,
            (std::vector<std::pair<int64_t, int64_t>>{{2, 2}, {1, 4}}));
  // Forward passes of 8 rows (refused), 4 (refused), then 2 ever after:
  // always whole pairs.
  ASSERT_GE(b.micro_rows.size(), 3u);
  EXPECT_EQ(b.micro_rows[0], 8);
  EXPECT_EQ(b.micro_rows[1], 4);
  for (size_t i = 2; i < b.micro_rows.size(); ++i) {
    EXPECT_EQ(b.micro_rows[i], 2) << "forward pass " << i;
  }
  // The reward statistics are those of the run that had the memory.
  ASSERT_EQ(metrics_a.size(), 3u);
  ASSERT_EQ(metrics_b.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    for (const char* k : {"rewards_chosen", "rewards_rejected",
                          "reward_accuracy", "reward_margin"}) {
      const double want = metrics_a[i]["preference"][k].get<double>();
      EXPECT_NEAR(metrics_b[i]["preference"][k].get<double>(), want,
                  1e-5 * std::max(1.0, std::abs(want)))
          << k << " at step " << i + 1;
    }
  }

  // Without oom_retry the same fault fails the run as out of memory.
  Run c;
  TrainSpec no_retry = spec("no-retry", false);
  auto data_c = NewDataSource(no_retry);
  absl::StatusOr<TrainResult> rc =
      RunTraining(no_retry, *data_c, hooks_for(c, 2));
  EXPECT_EQ(rc.status().code(), absl::StatusCode::kResourceExhausted)
      << rc.status();
}

}  // namespace
}  // namespace ftune::train
