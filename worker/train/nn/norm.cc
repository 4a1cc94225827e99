#include "worker/train/nn/norm.h"

namespace ftune::train {

using torch::Tensor;

Tensor ApplyNorm(const Tensor& x, const NormWeights& w, NormKind kind,
                 double eps) {
  if (kind == NormKind::kLayerNorm)
    return torch::layer_norm(x, {x.size(-1)}, w.weight, w.bias, eps);
  // HF normalises in fp32 even for half-precision activations.
  const auto wide =
      x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  Tensor xf = x.to(wide);
  Tensor normed = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  if (kind == NormKind::kRmsOnePlus)
    return (normed * (w.weight.to(wide) + 1)).to(x.scalar_type());
  return w.weight * normed.to(x.scalar_type());
}

}  // namespace ftune::train
