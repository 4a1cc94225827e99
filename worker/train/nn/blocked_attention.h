// Training attention that computes only what the mask lets through: the
// queries run in blocks of `block` tokens, and each block meets only the
// keys from the earliest one any of its queries may see (the first token
// of its segment, or the start of its sliding window) up to the block's
// last query. Causal rows so skip the upper triangle; packed rows (several
// documents per row, segment ids) compute the block-diagonal causal
// pattern per segment instead of the full T x T scores masked after the
// fact. The same rule as AttentionMask() (nn/attention.h) within the keys
// a block meets, so results equal Attend() with that mask.
//
// Backward is a custom autograd function: it keeps q, k, v and each
// block's probabilities (and soft-capped scores, with softcap), never the
// masked blocks, and accumulates the key and value gradients of
// overlapping blocks in fp32. Activation memory of one layer beyond its
// q, k, v: 4 * B * h * S bytes of probabilities (twice with softcap) plus
// B * S bytes of masks, where S = sum over blocks of n * L (queries times
// keys met): about T^2 / 2 for one causal document, T * (block + document
// length) for packed short documents, T * (block + window) with a window.
// Dense attention keeps about 4 * B * h * T^2 bytes instead.

// On CUDA with LibTorch 2.x, rows that are one causal segment each (no
// packing, padding only at the end, no window, no soft-cap) go to
// scaled_dot_product_attention (flash / memory-efficient kernels) through
// compat::ScaledDotProductAttention; everything else takes the blocked path
// on any device.
//
// Thread-safety: pure functions. May throw c10::Error.
#ifndef FTUNE_WORKER_TRAIN_NN_BLOCKED_ATTENTION_H_
#define FTUNE_WORKER_TRAIN_NN_BLOCKED_ATTENTION_H_

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace ftune::train {

// Query block size of the blocked path when none is given. On the
// stories15M shape at sequence 1024 (docs/trainer.md, "Attention at long
// sequences") block 64 was the slowest and 128 and 256 were within the
// noise of each other; 128 keeps less memory. Smaller blocks skip more of
// the masked triangle but make more, smaller GEMMs.
inline constexpr int64_t kDefaultAttentionBlock = 128;

// The blocks of one forward: query block i covers queries
// [q0[i], q0[i] + n[i]) and meets keys [lo[i], lo[i] + len[i]);
// masked[i] [B, 1, n, len] bool is true where a query may not see a key.
struct AttentionBlocks {
  std::vector<int64_t> q0, n, lo, len;
  std::vector<torch::Tensor> masked;
};

// Plans the blocks for segment ids [B, T] (any integer dtype, -1 =
// padding, which sees padding only), `window` > 0 a sliding window, on
// the device of `segment_ids`.
AttentionBlocks PlanAttentionBlocks(const torch::Tensor& segment_ids,
                                    int64_t window, int64_t block);

// softmax(softcap(q k^T) + mask) v with the mask of AttentionMask
// (segment_ids, window): q [B, h, T, hd] already scaled, k, v
// [B, kv, T, hd] with kv dividing h (grouped-query heads as in Attend).
// Returns [B, h, T, hd]. Half-precision inputs run the softmax in fp32.
// Differentiable w.r.t. q, k and v.
torch::Tensor BlockedAttention(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v,
                               const torch::Tensor& segment_ids, int64_t window,
                               double softcap,
                               int64_t block = kDefaultAttentionBlock);

// Whether every row of `segment_ids` is one segment from token 0 followed
// by nothing but padding: plain causal attention gives every real token
// what the segment mask gives it.
bool SingleSegmentRows(const torch::Tensor& segment_ids);

// The training forward's attention: on CUDA, where LibTorch has
// scaled_dot_product_attention and SingleSegmentRows() holds with no window
// and no soft-cap, that kernel (causal; a padding query's output differs
// from the segment rule's, but padding carries no target and no real query
// sees a later padding key); else BlockedAttention(). Same arguments.
torch::Tensor SegmentAttention(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v,
                               const torch::Tensor& segment_ids, int64_t window,
                               double softcap,
                               int64_t block = kDefaultAttentionBlock);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_NN_BLOCKED_ATTENTION_H_
