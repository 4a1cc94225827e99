#include "worker/train/nn/rope.h"

#include <cmath>

namespace ftune::train {
namespace {

using torch::Tensor;

// Llama-3 frequency scaling (HF's _compute_llama3_parameters).
Tensor ScaleInvFreq(const Tensor& inv_freq, const RopeScaling& s) {
  if (s.type != "llama3") return inv_freq;
  const double old_ctx =
      static_cast<double>(s.original_max_position_embeddings);
  const double low_wavelen = old_ctx / s.low_freq_factor;
  const double high_wavelen = old_ctx / s.high_freq_factor;
  Tensor out = inv_freq.clone();
  auto acc = out.accessor<double, 1>();
  for (int64_t i = 0; i < out.size(0); ++i) {
    double f = acc[i];
    double wavelen = 2 * M_PI / f;
    if (wavelen < high_wavelen) continue;
    if (wavelen > low_wavelen) {
      acc[i] = f / s.factor;
    } else {
      double smooth = (old_ctx / wavelen - s.low_freq_factor) /
                      (s.high_freq_factor - s.low_freq_factor);
      acc[i] = (1 - smooth) * f / s.factor + smooth * f;
    }
  }
  return out;
}

}  // namespace

Rope::Rope(const ModelConfig& c)
    : rotary_dim_(c.arch.rotary_dim > 0 ? c.arch.rotary_dim : c.head_dim) {
  const int64_t d = rotary_dim_;
  Tensor inv =
      1.0 / torch::pow(c.rope_theta, torch::arange(0, d, 2, torch::kFloat64) /
                                         static_cast<double>(d));
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "longrope") {
    auto factors = [&](const std::vector<double>& f) {
      return inv / torch::tensor(f, torch::kFloat64);
    };
    inv_freq_ = factors(s.short_factor);
    long_inv_freq_ = factors(s.long_factor);
    original_max_ = s.original_max_position_embeddings;
    attention_factor_ = s.attention_factor;
  } else {
    inv_freq_ = ScaleInvFreq(inv, s);
  }
}

std::pair<Tensor, Tensor> Rope::Tables(const Tensor& position_ids,
                                       torch::Dtype dtype,
                                       int64_t sequence_length) const {
  const Tensor& inv =
      long_inv_freq_.defined() &&
              (sequence_length > 0
                   ? sequence_length
                   : position_ids.max().item<int64_t>() + 1) > original_max_
          ? long_inv_freq_
          : inv_freq_;
  Tensor angles = position_ids.to(torch::kFloat64).unsqueeze(-1) *
                  inv.to(position_ids.device());
  Tensor emb = torch::cat({angles, angles}, -1).unsqueeze(1);
  Tensor cos = emb.cos(), sin = emb.sin();
  if (attention_factor_ != 1.0) {
    cos = cos * attention_factor_;
    sin = sin * attention_factor_;
  }
  return {cos.to(dtype), sin.to(dtype)};
}

Tensor RotateHalf(const Tensor& x) {
  int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

Tensor ApplyRope(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  const int64_t rot = cos.size(-1);
  if (rot == x.size(-1)) return x * cos + RotateHalf(x) * sin;
  Tensor r = x.narrow(-1, 0, rot);
  return torch::cat(
      {r * cos + RotateHalf(r) * sin, x.narrow(-1, rot, x.size(-1) - rot)}, -1);
}

}  // namespace ftune::train
