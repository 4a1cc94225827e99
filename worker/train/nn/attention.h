// Scaled dot-product attention for the decoder families: the additive mask
// of packed rows (causal, within a segment, optionally a sliding window)
// and the attention itself with grouped-query heads and optional score
// soft-capping (Gemma 2).
//
// Thread-safety: pure functions. May throw c10::Error.
#ifndef FTUNE_WORKER_TRAIN_NN_ATTENTION_H_
#define FTUNE_WORKER_TRAIN_NN_ATTENTION_H_

#include <torch/types.h>

#include <cstdint>

namespace ftune::train {

// Additive mask [B, 1, T, T] (0 or -inf, in `options`' dtype) for segment
// ids [B, T]: token i sees token j when j <= i, both are in the same
// segment, and (window > 0) i - j < window. Padding (segment -1) sees
// padding only, which keeps every row of the softmax finite.
torch::Tensor AttentionMask(const torch::Tensor& segment_ids, int64_t window,
                            const torch::TensorOptions& options);

// softmax(softcap(q k^T) + mask) v. q [B, h, T, hd] already carries the
// softmax scale; k, v [B, kv, S, hd] with kv dividing h (each kv head serves
// h / kv consecutive query heads); mask [B, 1, T, S]. softcap > 0 applies
// c * tanh(scores / c) before the mask. The softmax runs in fp32 for
// half-precision inputs, as HF does. Returns [B, h, T, hd].
torch::Tensor Attend(const torch::Tensor& q, torch::Tensor k, torch::Tensor v,
                     const torch::Tensor& mask, double softcap);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_NN_ATTENTION_H_
