// The preference objectives (DPO, conservative DPO, IPO, ORPO) against an
// independent float64 reference (scripts/reference/preference_reference.py,
// per pair in Python floats with hand-derived derivatives): losses, the
// gradients with respect to the policy's log-probabilities, and the reward
// statistics; in fp64 and fp32.
#include "worker/train/objectives/preference.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/temp_dir.h"

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

}  // namespace
}  // namespace ftune::train
