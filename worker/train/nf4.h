// 4-bit blockwise quantisation of frozen base weights for QLoRA (Dettmers et
// al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs").
//
// Storage form of a weight (any shape, flattened row-major):
//   - the values are split into blocks of `block_size` consecutive values
//     (the last block is zero-padded); each block is scaled by its absmax so
//     it lies in [-1, 1] and every value becomes the 4-bit index of the
//     nearest level of a 16-entry code book (NF4 or FP4, below);
//   - two codes per uint8: the even element in the high nibble, the odd
//     element in the low nibble;
//   - the per-block absmax is fp32, or with double quantisation an int8:
//     subtract the mean c of all absmax values, split the centred values into
//     groups of 256 and store round(v / s_g) in [-127, 127] with one fp32
//     scale s_g = max|v| / 127 per group (symmetric linear 8-bit; the paper
//     uses an 8-bit float code book instead, the storage cost is the same).
//     Dequantised absmax = q * s_g + c, error <= s_g / 2.
// With block 64 and double quantisation that is 4 + 8/64 + 32/(64*256)
// = 4.127 bits per parameter (4.5 without it).
//
// Thread-safety: pure functions; a QuantizedWeight is an immutable value once
// built (its tensors are not modified afterwards).
#ifndef FTUNE_WORKER_TRAIN_NF4_H_
#define FTUNE_WORKER_TRAIN_NF4_H_

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/contract/train_spec.h"

namespace ftune::train {

// The spec's type (common/contract/train_spec.h):
//   kNf4: 4-bit NormalFloat: levels at quantiles of N(0, 1), normalised to
//         [-1, 1], with an exact zero (the paper's Appendix E values).
//   kFp4: 4-bit float E2M1 (1 sign, 2 exponent, 1 mantissa bit,
//         subnormals): magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6} / 6; code bit
//         3 is the sign.
using QuantType = contract::QuantType;

// "nf4" / "fp4"; INVALID_ARGUMENT otherwise.
absl::StatusOr<QuantType> ParseQuantType(absl::string_view name);
const char* QuantTypeName(QuantType type);

// The 16 levels in [-1, 1], indexed by code.
const std::array<float, 16>& CodeBook(QuantType type);

struct QuantOptions {
  QuantType type = QuantType::kNf4;
  // Values per absmax block; even, >= 2 (the job API allows powers of two in
  // [32, 4096]).
  int64_t block_size = 64;
  bool double_quant = true;
  // Absmax values per second-level scale.
  int64_t double_quant_block_size = 256;
};

struct QuantizedWeight {
  QuantType type = QuantType::kNf4;
  std::vector<int64_t> shape;
  int64_t numel = 0;
  int64_t block_size = 64;
  torch::Tensor codes;  // uint8 [padded numel / 2]
  // Without double quantisation: fp32 [blocks].
  torch::Tensor absmax;
  // With double quantisation (absmax undefined):
  bool double_quant = false;
  int64_t double_quant_block_size = 256;
  torch::Tensor absmax_q;      // int8 [blocks]
  torch::Tensor absmax_scale;  // fp32 [ceil(blocks / dq block)]
  double absmax_offset = 0;    // the mean c

  int64_t num_blocks() const { return (numel + block_size - 1) / block_size; }
};

// Quantises `weight` (any floating dtype, CPU). INVALID_ARGUMENT for an
// empty tensor, an odd or < 2 block size, or non-finite values.
absl::StatusOr<QuantizedWeight> Quantize(const torch::Tensor& weight,
                                         const QuantOptions& options);

// The per-block absmax as fp32 [blocks] (dequantised when double-quantised).
torch::Tensor BlockAbsmax(const QuantizedWeight& q);

// Codes as uint8 [numel] (unpacked, padding dropped).
torch::Tensor UnpackCodes(const QuantizedWeight& q);

// The dense weight in `dtype` (computed in fp32, then cast), shape q.shape.
torch::Tensor Dequantize(const QuantizedWeight& q, torch::Dtype dtype);

// Bytes of the stored form (codes, absmax or its 8-bit form, second-level
// scales, the offset) and bits per parameter = 8 * bytes / numel.
int64_t StorageBytes(const QuantizedWeight& q);
double BitsPerParameter(const QuantizedWeight& q);

// y = x W^T through an autograd function that dequantises W on the fly in
// forward and again in backward (grad_x = grad_y W; W gets no gradient).
// Only the quantised tensors are saved for backward: neither x nor a dense
// W. x's dtype is the compute dtype.
torch::Tensor QuantizedMatmul(const torch::Tensor& x, const QuantizedWeight& q);

// Tests: the tensors the autograd node behind `y` (an output of
// QuantizedMatmul) keeps for backward; empty if y has no such node.
std::vector<torch::Tensor> QuantizedMatmulSavedTensors(const torch::Tensor& y);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_NF4_H_
