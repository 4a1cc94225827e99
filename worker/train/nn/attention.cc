#include "worker/train/nn/attention.h"

#include <limits>

namespace ftune::train {

using torch::Tensor;

Tensor AttentionMask(const Tensor& seg, int64_t window,
                     const torch::TensorOptions& options) {
  return AttentionMask(seg, seg, window, options);
}

Tensor AttentionMask(const Tensor& qseg, const Tensor& kseg, int64_t window,
                     const torch::TensorOptions& options) {
  const int64_t b = qseg.size(0), t = qseg.size(1), s = kseg.size(1);
  // Query i is key s - t + i: it sees keys j <= s - t + i.
  Tensor causal =
      torch::ones({t, s}, qseg.options().dtype(torch::kBool)).tril(s - t);
  if (window > 0) causal = causal.triu(s - t - (window - 1));
  Tensor allowed = qseg.unsqueeze(2).eq(kseg.unsqueeze(1)) & causal;
  return torch::zeros({b, 1, t, s}, options)
      .masked_fill_(allowed.logical_not().unsqueeze(1),
                    -std::numeric_limits<double>::infinity());
}

KvCache::KvCache(int64_t layers, int64_t batch, int64_t kv_heads,
                 int64_t capacity, int64_t head_dim,
                 const torch::TensorOptions& options, int64_t rope_length)
    : batch_(batch), capacity_(capacity), rope_length_(rope_length) {
  for (int64_t i = 0; i < layers; ++i) {
    k_.push_back(torch::zeros({batch, kv_heads, capacity, head_dim}, options));
    v_.push_back(torch::zeros({batch, kv_heads, capacity, head_dim}, options));
  }
  segments_ = torch::full(
      {batch, capacity}, -1,
      torch::TensorOptions().dtype(torch::kInt64).device(options.device()));
}

void KvCache::BeginForward(const Tensor& segment_ids) {
  const int64_t t = segment_ids.size(1);
  TORCH_CHECK(segment_ids.size(0) == batch_, "KvCache: batch ",
              segment_ids.size(0), " != ", batch_);
  TORCH_CHECK(length_ + t <= capacity_, "KvCache: ", length_, " + ", t,
              " tokens exceed the capacity ", capacity_);
  segments_.narrow(1, length_, t).copy_(segment_ids);
  query_segments_ = segment_ids.to(torch::kInt64);
  new_tokens_ = t;
  length_ += t;
  masks_.clear();
}

const Tensor& KvCache::Mask(int64_t window,
                            const torch::TensorOptions& options) {
  for (const auto& [w, m] : masks_)
    if (w == window) return m;
  masks_.emplace_back(
      window, AttentionMask(query_segments_, segments_.narrow(1, 0, length_),
                            window, options));
  return masks_.back().second;
}

std::pair<Tensor, Tensor> KvCache::Append(int64_t layer, const Tensor& k,
                                          const Tensor& v) {
  const int64_t start = length_ - new_tokens_;
  k_[layer].narrow(2, start, new_tokens_).copy_(k);
  v_[layer].narrow(2, start, new_tokens_).copy_(v);
  return {k_[layer].narrow(2, 0, length_), v_[layer].narrow(2, 0, length_)};
}

void KvCache::SelectRows(const Tensor& rows) {
  for (Tensor& k : k_) k = k.index_select(0, rows);
  for (Tensor& v : v_) v = v.index_select(0, rows);
  segments_ = segments_.index_select(0, rows);
  if (query_segments_.defined())
    query_segments_ = query_segments_.index_select(0, rows);
  masks_.clear();
  batch_ = rows.size(0);
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
