// Rotary position embeddings (rotate-half layout, as HF stores q/k weights):
// the inverse frequencies of a config (plain, Llama-3 scaled, or LongRoPE
// with its short/long factors and attention factor), the cos/sin tables of
// a batch's position ids, and their application to the first rotary_dim
// dims of each head (the rest pass through: partial rotary, Phi-4-mini).
//
// Thread-compatible; Tables() and ApplyRope() may throw c10::Error.
#ifndef FTUNE_WORKER_TRAIN_NN_ROPE_H_
#define FTUNE_WORKER_TRAIN_NN_ROPE_H_

#include <torch/types.h>

#include <cstdint>
#include <utility>

#include "worker/train/families/model_config.h"

namespace ftune::train {

class Rope {
 public:
  explicit Rope(const ModelConfig& config);
  // cos and sin [B, 1, T, rotary_dim] in `dtype` for position ids [B, T],
  // computed in fp64 (times the attention factor, if any) and rounded once.
  // LongRoPE takes its long factors when the batch's largest position
  // reaches original_max_position_embeddings, as HF does per forward;
  // `sequence_length` > 0 decides instead (incremental decoding: the
  // longest sequence the generation can reach, so that every token of it is
  // rotated with the same factors).
  std::pair<torch::Tensor, torch::Tensor> Tables(
      const torch::Tensor& position_ids, torch::Dtype dtype,
      int64_t sequence_length = 0) const;
  int64_t rotary_dim() const { return rotary_dim_; }

 private:
  int64_t rotary_dim_;
  torch::Tensor inv_freq_;       // [rotary_dim / 2], fp64
  torch::Tensor long_inv_freq_;  // LongRoPE beyond original_max_; else undef
  int64_t original_max_ = 0;
  double attention_factor_ = 1.0;
};

// [-x2, x1] for x = [x1, x2] on the last axis.
torch::Tensor RotateHalf(const torch::Tensor& x);

// x * cos + RotateHalf(x) * sin on the first cos.size(-1) dims of x's last
// axis; the other dims are passed through.
torch::Tensor ApplyRope(const torch::Tensor& x, const torch::Tensor& cos,
                        const torch::Tensor& sin);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_NN_ROPE_H_
