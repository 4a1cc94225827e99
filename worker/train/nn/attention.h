// Scaled dot-product attention for the decoder families: the additive mask
// of packed rows (causal, within a segment, optionally a sliding window)
// and the attention itself with grouped-query heads and optional score
// soft-capping (Gemma 2); and the key/value cache of incremental decoding
// (generate.h).
//
// Thread-safety: pure functions; a KvCache is thread-compatible. May throw
// c10::Error.
#ifndef FTUNE_WORKER_TRAIN_NN_ATTENTION_H_
#define FTUNE_WORKER_TRAIN_NN_ATTENTION_H_

#include <torch/types.h>

#include <cstdint>
#include <utility>
#include <vector>

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
// The same rule for queries that are the last T of S keys (a decoding step
// after S - T cached tokens): query i is key S - T + i. query_segments
// [B, T], key_segments [B, S]; returns [B, 1, T, S]. With T == S it is
// AttentionMask(segments, ...).
torch::Tensor AttentionMask(const torch::Tensor& query_segments,
                            const torch::Tensor& key_segments, int64_t window,
                            const torch::TensorOptions& options);

// The keys and values of the tokens a batch has seen so far, one pair per
// decoder layer, for incremental decoding. Rows are left-padded: padding
// (segment -1) comes first, so a row's real tokens are contiguous and their
// cache indices differ as their positions do (sliding windows count in
// indices). Keys are stored after RoPE (and q/k norms), as attention uses
// them. Capacity is fixed at creation: no reallocation while decoding.
class KvCache {
 public:
  // `layers` layers of [batch, kv_heads, capacity, head_dim] in `options`.
  // `rope_length`: the longest sequence the decoding can reach (LongRoPE
  // picks its factors by it, once, so every token of a sequence is rotated
  // alike); 0 = per forward, as without a cache.
  KvCache(int64_t layers, int64_t batch, int64_t kv_heads, int64_t capacity,
          int64_t head_dim, const torch::TensorOptions& options,
          int64_t rope_length = 0);

  // Records the segment ids [B, T] of the tokens about to be appended and
  // returns the additive mask [B, 1, T, length] of their queries over every
  // key (cached and new) for a layer of `window`. Call once per forward,
  // before the layers append (the mask of each window is built once and
  // reused). FAILED check (c10::Error) beyond capacity.
  void BeginForward(const torch::Tensor& segment_ids);
  const torch::Tensor& Mask(int64_t window,
                            const torch::TensorOptions& options);
  // Appends layer `layer`'s keys and values [B, kv, T, hd] of this forward;
  // returns every key and value so far, [B, kv, length, hd] (views).
  std::pair<torch::Tensor, torch::Tensor> Append(int64_t layer,
                                                 const torch::Tensor& k,
                                                 const torch::Tensor& v);
  // Keeps only the rows `rows` (finished rows leave the batch).
  void SelectRows(const torch::Tensor& rows);

  // Tokens cached (after the current forward's BeginForward: including its).
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int64_t batch() const { return batch_; }
  int64_t rope_length() const { return rope_length_; }

 private:
  std::vector<torch::Tensor> k_, v_;  // per layer [B, kv, capacity, hd]
  torch::Tensor segments_;            // [B, capacity] int64, -1 = padding
  torch::Tensor query_segments_;      // this forward's [B, T]
  std::vector<std::pair<int64_t, torch::Tensor>> masks_;  // by window
  int64_t batch_, capacity_, length_ = 0, new_tokens_ = 0;
  int64_t rope_length_;
};

torch::Tensor Attend(const torch::Tensor& q, torch::Tensor k, torch::Tensor v,
                     const torch::Tensor& mask, double softcap);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_NN_ATTENTION_H_
