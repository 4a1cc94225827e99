// The norms of the decoder families (ModelConfig's NormKind).
//
// Thread-safety: pure functions. May throw c10::Error.
#ifndef FTUNE_WORKER_TRAIN_NN_NORM_H_
#define FTUNE_WORKER_TRAIN_NN_NORM_H_

#include <torch/types.h>

#include "worker/train/families/model_config.h"

namespace ftune::train {

// A norm's weights; `bias` only for LayerNorm. Undefined `weight`: the
// family has no such norm.
struct NormWeights {
  torch::Tensor weight, bias;
  bool defined() const { return weight.defined(); }
};

// Normalises over the last axis of `x` (any float dtype; the result has
// x's dtype):
//   kRms        w * (x / rms(x)), normalised in fp32 (fp64 for fp64) and
//               cast back before the weight (Llama, Qwen, Phi-3)
//   kRmsOnePlus (x / rms(x)) * (1 + w), all in fp32, then cast (Gemma)
//   kLayerNorm  (x - mean) / sqrt(var + eps) * w + b (GPT-2)
torch::Tensor ApplyNorm(const torch::Tensor& x, const NormWeights& w,
                        NormKind kind, double eps);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_NN_NORM_H_
