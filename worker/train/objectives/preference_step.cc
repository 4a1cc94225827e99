#include "worker/train/objectives/preference_step.h"

#include <torch/torch.h>

#include <algorithm>

#include "worker/train/model.h"

namespace ftune::train {
namespace {

using torch::Tensor;

// Re-enables LoRA however the reference pass ends.
class LoraOff {
 public:
  explicit LoraOff(Model& model) : model_(model) {
    model_.set_lora_enabled(false);
  }
  ~LoraOff() { model_.set_lora_enabled(true); }
  LoraOff(const LoraOff&) = delete;
  LoraOff& operator=(const LoraOff&) = delete;

 private:
  Model& model_;
};

// The pair tensors of one micro-batch: policy log-probabilities (with grad
// when it is on), the reference's (DPO, IPO), the answers' token counts.
PairLogps PairsOf(Model& model, const Batch& batch, bool training,
                  const PreferenceOptions& options) {
  PairLogps p;
  const int64_t pairs = batch.input_ids.size(0) / 2;
  if (options.loss != PreferenceLoss::kOrpo) {
    torch::NoGradGuard no_grad;
    LoraOff off(model);
    Tensor ref =
        model.SequenceLogps(batch, /*training=*/false).view({pairs, 2});
    p.ref_chosen = ref.select(1, 0);
    p.ref_rejected = ref.select(1, 1);
  }
  Tensor logps = model.SequenceLogps(batch, training).view({pairs, 2});
  p.chosen = logps.select(1, 0);
  p.rejected = logps.select(1, 1);
  Tensor counts = batch.labels.ne(kIgnoreLabel)
                      .sum(1)
                      .to(logps.scalar_type())
                      .view({pairs, 2});
  p.chosen_tokens = counts.select(1, 0);
  p.rejected_tokens = counts.select(1, 1);
  return p;
}

void Accumulate(const PreferenceStats& s, double w, PreferenceStats* into) {
  into->rewards_chosen += w * s.rewards_chosen;
  into->rewards_rejected += w * s.rewards_rejected;
  into->reward_accuracy += w * s.reward_accuracy;
  into->reward_margin += w * s.reward_margin;
  into->logps_chosen += w * s.logps_chosen;
  into->logps_rejected += w * s.logps_rejected;
}

}  // namespace

PreferenceOptions PreferenceOptionsFor(const contract::TrainSpec& spec) {
  PreferenceOptions o;
  if (spec.objective == contract::Objective::kOrpo) {
    o.loss = PreferenceLoss::kOrpo;
  } else {
    o.loss = spec.preference.loss == contract::PreferenceLossKind::kIpo
                 ? PreferenceLoss::kIpo
                 : PreferenceLoss::kDpo;
  }
  o.beta = spec.preference.beta;
  o.label_smoothing = spec.preference.label_smoothing;
  o.orpo_lambda = spec.preference.orpo_lambda;
  return o;
}

PreferenceStepResult PreferenceForwardBackward(
    Model& model, NamedTensors& params,
    const std::vector<const PackedSequence*>& rows, int64_t micro_pairs,
    const PreferenceOptions& options,
    const std::function<void(int64_t)>& before_micro_batch,
    int64_t step_pairs) {
  for (auto& [n, p] : params) p.mutable_grad() = Tensor();
  PreferenceStepResult out;
  if (step_pairs <= 0) step_pairs = static_cast<int64_t>(rows.size() / 2);
  const size_t micro_rows =
      2 * static_cast<size_t>(std::max<int64_t>(1, micro_pairs));
  for (size_t s = 0; s < rows.size(); s += micro_rows) {
    std::vector<const PackedSequence*> part(
        rows.begin() + s, rows.begin() + std::min(rows.size(), s + micro_rows));
    const Batch batch = MakeBatch(part, model.device());
    out.tokens += batch.num_tokens;
    if (before_micro_batch) before_micro_batch(batch.input_ids.size(0));
    const PreferenceResult r =
        PreferenceObjective(PairsOf(model, batch, true, options), options);
    const double w =
        static_cast<double>(part.size() / 2) / static_cast<double>(step_pairs);
    (r.loss * w).backward();
    out.loss += r.loss.item<double>() * w;
    Accumulate(r.stats, w, &out.stats);
  }
  return out;
}

PreferenceStepResult PreferenceEvaluate(Model& model,
                                        const std::vector<PackedSequence>& rows,
                                        int64_t micro_pairs,
                                        const PreferenceOptions& options,
                                        int64_t first_pair, int64_t end_pair) {
  torch::NoGradGuard no_grad;
  PreferenceStepResult out;
  const size_t pairs = rows.size() / 2;
  const size_t begin =
      2 * static_cast<size_t>(std::max<int64_t>(0, first_pair));
  const size_t end =
      end_pair < 0 ? rows.size()
                   : std::min(rows.size(), 2 * static_cast<size_t>(end_pair));
  const size_t micro_rows =
      2 * static_cast<size_t>(std::max<int64_t>(1, micro_pairs));
  for (size_t s = begin; s < end; s += micro_rows) {
    std::vector<const PackedSequence*> part;
    for (size_t i = s; i < std::min(end, s + micro_rows); ++i) {
      part.push_back(&rows[i]);
    }
    const Batch batch = MakeBatch(part, model.device());
    out.tokens += batch.num_tokens;
    const PreferenceResult r =
        PreferenceObjective(PairsOf(model, batch, false, options), options);
    const double w =
        static_cast<double>(part.size() / 2) / static_cast<double>(pairs);
    out.loss += r.loss.item<double>() * w;
    Accumulate(r.stats, w, &out.stats);
  }
  return out;
}

}  // namespace ftune::train
