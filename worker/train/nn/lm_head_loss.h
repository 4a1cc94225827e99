// The output head: logits = softcap(h @ w^T) and the mean cross-entropy
// over target rows, chunk by chunk, so neither the [rows, vocab] logits nor
// their gradient ever exist for all rows at once.
//
// Thread-safety: pure functions. May throw c10::Error.
#ifndef FTUNE_WORKER_TRAIN_NN_LM_HEAD_LOSS_H_
#define FTUNE_WORKER_TRAIN_NN_LM_HEAD_LOSS_H_

#include <torch/types.h>

#include <cstdint>

namespace ftune::train {

// c * tanh(x / c); x itself when c <= 0.
torch::Tensor SoftCap(const torch::Tensor& x, double c);

// Mean cross-entropy of SoftCap(h @ w^T, softcap) ([n, vocab]) against
// `targets` [n], `chunk` rows at a time. Differentiable w.r.t. `h` when
// `need_grad` (the gradient is computed during the forward pass; backward
// only scales it); `w` must be frozen. The loss is fp32 for half-precision
// `h`. On CPU in fp32/bf16 a fused row kernel (cross_entropy.h) does the
// softmax and its gradient in one pass; elsewhere tensor ops do.
torch::Tensor LmHeadLoss(const torch::Tensor& h, const torch::Tensor& w,
                         const torch::Tensor& targets, int64_t chunk,
                         double softcap, bool need_grad);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_NN_LM_HEAD_LOSS_H_
