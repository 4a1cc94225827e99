#include "worker/train/objectives/preference.h"

#include <torch/torch.h>

namespace ftune::train {
namespace {

using torch::Tensor;

double Mean(const Tensor& t) { return t.mean().item<double>(); }

// log(1 - exp(a)) for a < 0, stable for a near 0 and very negative.
Tensor Log1mExp(const Tensor& a) {
  // Mächler's rule: log(-expm1(a)) when a > -log 2, else log1p(-exp(a)).
  return torch::where(a > -0.6931471805599453, torch::log(-torch::expm1(a)),
                      torch::log1p(-torch::exp(a)));
}

}  // namespace

PreferenceResult PreferenceObjective(const PairLogps& p,
                                     const PreferenceOptions& o) {
  PreferenceResult r;
  Tensor rewards_chosen, rewards_rejected;
  switch (o.loss) {
    case PreferenceLoss::kDpo: {
      const Tensor chosen_ratio = p.chosen - p.ref_chosen;
      const Tensor rejected_ratio = p.rejected - p.ref_rejected;
      const Tensor h = o.beta * (chosen_ratio - rejected_ratio);
      const double e = o.label_smoothing;
      r.loss = (-(1.0 - e) * torch::log_sigmoid(h) - e * torch::log_sigmoid(-h))
                   .mean();
      rewards_chosen = o.beta * chosen_ratio.detach();
      rewards_rejected = o.beta * rejected_ratio.detach();
      break;
    }
    case PreferenceLoss::kIpo: {
      const Tensor chosen_ratio =
          (p.chosen - p.ref_chosen) / p.chosen_tokens.to(p.chosen.dtype());
      const Tensor rejected_ratio = (p.rejected - p.ref_rejected) /
                                    p.rejected_tokens.to(p.rejected.dtype());
      const Tensor h = chosen_ratio - rejected_ratio;
      r.loss = (h - 1.0 / (2.0 * o.beta)).pow(2).mean();
      rewards_chosen = o.beta * chosen_ratio.detach();
      rewards_rejected = o.beta * rejected_ratio.detach();
      break;
    }
    case PreferenceLoss::kOrpo: {
      const Tensor ac = p.chosen / p.chosen_tokens.to(p.chosen.dtype());
      const Tensor ar = p.rejected / p.rejected_tokens.to(p.rejected.dtype());
      const Tensor log_odds = (ac - ar) - (Log1mExp(ac) - Log1mExp(ar));
      r.loss = (-ac - o.orpo_lambda * torch::log_sigmoid(log_odds)).mean();
      rewards_chosen = o.orpo_lambda * ac.detach();
      rewards_rejected = o.orpo_lambda * ar.detach();
      break;
    }
  }
  r.stats.rewards_chosen = Mean(rewards_chosen);
  r.stats.rewards_rejected = Mean(rewards_rejected);
  r.stats.reward_accuracy =
      Mean((rewards_chosen > rewards_rejected).to(torch::kFloat64));
  r.stats.reward_margin = Mean(rewards_chosen - rewards_rejected);
  r.stats.logps_chosen = Mean(p.chosen.detach());
  r.stats.logps_rejected = Mean(p.rejected.detach());
  return r;
}

}  // namespace ftune::train
