#include "worker/train/nn/attention.h"

#include <limits>

namespace ftune::train {

using torch::Tensor;

Tensor AttentionMask(const Tensor& seg, int64_t window,
                     const torch::TensorOptions& options) {
  const int64_t b = seg.size(0), t = seg.size(1);
  Tensor causal = torch::ones({t, t}, seg.options().dtype(torch::kBool)).tril();
  if (window > 0) causal = causal.triu(-(window - 1));
  Tensor allowed = seg.unsqueeze(2).eq(seg.unsqueeze(1)) & causal;
  return torch::zeros({b, 1, t, t}, options)
      .masked_fill_(allowed.logical_not().unsqueeze(1),
                    -std::numeric_limits<double>::infinity());
}

Tensor Attend(const Tensor& q, Tensor k, Tensor v, const Tensor& mask,
              double softcap) {
  const int64_t h = q.size(1), kv = k.size(1);
  const auto dtype = q.scalar_type();
  if (kv != h) {
    k = k.repeat_interleave(h / kv, 1);
    v = v.repeat_interleave(h / kv, 1);
  }
  Tensor scores = torch::matmul(q, k.transpose(-2, -1));
  if (softcap > 0) scores = torch::tanh(scores / softcap) * softcap;
  scores.add_(mask);
  // Softmax in fp32 for half-precision activations, as HF does.
  Tensor probs = dtype == torch::kFloat32 || dtype == torch::kFloat64
                     ? torch::softmax(scores, -1)
                     : torch::softmax(scores, -1, torch::kFloat32).to(dtype);
  return torch::matmul(probs, v);
}

}  // namespace ftune::train
