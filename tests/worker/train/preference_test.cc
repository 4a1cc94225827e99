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

}  // namespace
}  // namespace ftune::train
