#include "worker/train/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace ftune::train {

TokenSampler::TokenSampler(const contract::GenerationSpec& spec,
                           uint64_t prompt_index)
    : spec_(spec),
      rng_(spec.seed * 0x9E3779B97F4A7C15ull +
           prompt_index * 0xBF58476D1CE4E5B9ull + 1) {}

double TokenSampler::Uniform() {
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

int32_t TokenSampler::Next(absl::Span<float> logits,
                           absl::Span<const int32_t> history) {
  const int64_t v = static_cast<int64_t>(logits.size());
  // Repetition penalty (CTRL, as HF applies it): once per distinct token.
  if (spec_.repetition_penalty != 1.0) {
    seen_.assign(v, 0);
    const float p = static_cast<float>(spec_.repetition_penalty);
    for (int32_t id : history) {
      if (id < 0 || id >= v || seen_[id]) continue;
      seen_[id] = 1;
      float& l = logits[id];
      l = l < 0 ? l * p : l / p;
    }
  }
  if (spec_.temperature == 0) {
    // Greedy: the first maximum (NaN never wins).
    int32_t best = 0;
    for (int64_t i = 1; i < v; ++i)
      if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
    return best;
  }
  // Candidates by logit, highest first (ties: lower id first).
  order_.resize(v);
  std::iota(order_.begin(), order_.end(), 0);
  auto higher = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  int64_t keep = v;
  if (spec_.top_k > 0 && spec_.top_k < v) {
    // Every token tied with the k-th stays, as HF's top-k filter keeps it.
    std::nth_element(order_.begin(), order_.begin() + spec_.top_k - 1,
                     order_.end(), higher);
    const float kth = logits[order_[spec_.top_k - 1]];
    keep = std::partition(order_.begin(), order_.end(),
                          [&](int32_t i) { return logits[i] >= kth; }) -
           order_.begin();
  }
  std::sort(order_.begin(), order_.begin() + keep, higher);
  // Softmax of logit / temperature over the candidates, in double.
  const double t = spec_.temperature;
  const double top = static_cast<double>(logits[order_[0]]) / t;
  std::vector<double> probs(keep);
  double sum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    probs[i] = std::exp(static_cast<double>(logits[order_[i]]) / t - top);
    sum += probs[i];
  }
  if (spec_.top_p < 1.0) {
    // The smallest prefix whose probability reaches top_p (at least one).
    double cum = 0;
    int64_t n = 0;
    while (n < keep && (n == 0 || cum < spec_.top_p * sum)) cum += probs[n++];
    keep = n;
    sum = cum;
  }
  const double u = Uniform() * sum;
  double cum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    cum += probs[i];
    if (u < cum) return order_[i];
  }
  return order_[keep - 1];
}

}  // namespace ftune::train
