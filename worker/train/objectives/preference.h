// Preference-optimisation objectives over pairs of completions that share a
// prompt: DPO, its conservative (label-smoothed) and IPO variants, and ORPO.
//
// They see only per-pair log-probabilities of the completion tokens
// (never the prompt's), summed over tokens, with the token counts:
//
//   DPO  (Rafailov et al. 2023): h = (pc - rc) - (pr - rr),
//        loss = -(1 - e) log sigmoid(beta h) - e log sigmoid(-beta h)
//        (e = label_smoothing: conservative DPO; 0 = plain DPO).
//   IPO  (Azar et al. 2023): h as DPO's but from per-token *average*
//        log-probabilities (so beta means the same for short and long
//        completions), loss = (h - 1 / (2 beta))^2.
//   ORPO (Hong et al. 2024), reference-free: with a = average log-probability
//        per token, odds(a) = exp(a) / (1 - exp(a)),
//        loss = NLL(chosen) + lambda * -log sigmoid(log odds(ac) -
//        log odds(ar)), NLL(chosen) = -ac.
//
// pc, pr: the policy's (the model with its adapter) log p of the chosen and
// rejected completion; rc, rr: the reference's (the frozen base: the same
// model with the adapter switched off), computed without grad. Every loss is
// the mean over the pairs of the batch.
//
// Thread-compatible; tensor ops may throw c10::Error.
#ifndef FTUNE_WORKER_TRAIN_OBJECTIVES_PREFERENCE_H_
#define FTUNE_WORKER_TRAIN_OBJECTIVES_PREFERENCE_H_

#include <torch/types.h>

namespace ftune::train {

enum class PreferenceLoss { kDpo, kIpo, kOrpo };

struct PreferenceOptions {
  PreferenceLoss loss = PreferenceLoss::kDpo;
  double beta = 0.1;             // DPO/IPO: strength of the KL constraint
  double label_smoothing = 0.0;  // DPO: in [0, 0.5)
  double orpo_lambda = 0.1;      // ORPO: weight of the odds-ratio term
};

// Per pair, shape [P]. Log-probabilities are sums over completion tokens
// (float64 or float32; differentiable for the policy's). The reference's
// are unused (may be undefined) for ORPO.
struct PairLogps {
  torch::Tensor chosen, rejected;                // policy
  torch::Tensor ref_chosen, ref_rejected;        // reference, no grad
  torch::Tensor chosen_tokens, rejected_tokens;  // completion token counts
};

// What a step reports (docs/trainer.md): means over the pairs.
struct PreferenceStats {
  double rewards_chosen = 0;    // beta (pc - rc); ORPO: lambda * ac
  double rewards_rejected = 0;  // beta (pr - rr); ORPO: lambda * ar
  double reward_accuracy = 0;   // share of pairs with chosen > rejected
  double reward_margin = 0;     // rewards_chosen - rewards_rejected
  double logps_chosen = 0;      // policy, summed over tokens
  double logps_rejected = 0;
};

struct PreferenceResult {
  torch::Tensor loss;  // scalar
  PreferenceStats stats;
};

PreferenceResult PreferenceObjective(const PairLogps& pairs,
                                     const PreferenceOptions& options);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_OBJECTIVES_PREFERENCE_H_
