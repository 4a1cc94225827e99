// NF4 / FP4 blockwise quantisation and the dequantise-on-the-fly matmul.
// This is the CPU reference path: dequantisation is plain tensor ops (a
// fused CUDA kernel is future work), so a matmul costs one temporary dense
// weight that lives only inside forward or backward.
#include "worker/train/nf4.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "worker/train/torch_compat.h"

#if FTUNE_WITH_CUDA
#include "worker/train/cuda/nf4_cuda_torch.h"
#endif

namespace ftune::train {
namespace {

using torch::Tensor;

// QLoRA paper, Appendix E (the NF4 data type's 16 values).
constexpr std::array<float, 16> kNf4 = {-1.0f,
                                        -0.6961928009986877f,
                                        -0.5250730514526367f,
                                        -0.39491748809814453f,
                                        -0.28444138169288635f,
                                        -0.18477343022823334f,
                                        -0.09105003625154495f,
                                        0.0f,
                                        0.07958029955625534f,
                                        0.16093020141124725f,
                                        0.24611230194568634f,
                                        0.33791524171829224f,
                                        0.44070982933044434f,
                                        0.5626170039176941f,
                                        0.7229568362236023f,
                                        1.0f};

// E2M1 magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6} scaled by 1/6; codes 8-15 are
// the negatives of codes 0-7 (code 8 is -0, the same level as code 0).
constexpr std::array<float, 16> kFp4 = {
    0.0f,      0.5f / 6,  1.0f / 6,  1.5f / 6,  2.0f / 6,  3.0f / 6,
    4.0f / 6,  1.0f,      -0.0f,     -0.5f / 6, -1.0f / 6, -1.5f / 6,
    -2.0f / 6, -3.0f / 6, -4.0f / 6, -1.0f};

Tensor CodeBookTensor(QuantType type, const torch::Device& device) {
  const std::array<float, 16>& cb = CodeBook(type);
  return torch::tensor(std::vector<float>(cb.begin(), cb.end()),
                       torch::TensorOptions().dtype(torch::kFloat32))
      .to(device);
}

// Nearest-level search: the distinct levels sorted, the midpoints between
// neighbours (bucketize boundaries) and, per sorted level, its code.
struct LevelSearch {
  Tensor midpoints;  // fp32 [levels - 1]
  Tensor code_of;    // int64 [levels]
};

LevelSearch MakeLevelSearch(QuantType type, const torch::Device& device) {
  const std::array<float, 16>& cb = CodeBook(type);
  std::vector<int64_t> order(16);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return cb[a] < cb[b]; });
  std::vector<int64_t> codes;
  std::vector<float> levels;
  for (int64_t c : order) {
    if (!levels.empty() && levels.back() == cb[c]) continue;  // FP4's -0
    levels.push_back(cb[c]);
    codes.push_back(c);
  }
  std::vector<float> mids;
  for (size_t i = 0; i + 1 < levels.size(); ++i)
    mids.push_back(0.5f * (levels[i] + levels[i + 1]));
  LevelSearch s;
  s.midpoints = torch::tensor(mids, torch::kFloat32).to(device);
  s.code_of = torch::tensor(codes, torch::kInt64).to(device);
  return s;
}

// Codes as int64 [padded numel].
Tensor UnpackPadded(const QuantizedWeight& q) {
  Tensor p = q.codes.to(torch::kInt64);
  Tensor hi = torch::div(p, 16, "floor");
  Tensor lo = torch::remainder(p, 16);
  return torch::stack({hi, lo}, 1).reshape({-1});
}

// The autograd function behind QuantizedMatmul. Saved for backward: the
// quantised tensors (shared with the weight, not copied) and its metadata.
class QuantizedMatmulFn : public torch::autograd::Function<QuantizedMatmulFn> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, Tensor x,
                        const QuantizedWeight* q) {
    Tensor y;
    {
      Tensor w = Dequantize(*q, x.scalar_type());
      y = torch::matmul(x, w.t());
    }  // the dense weight is freed here
    ctx->save_for_backward(
        q->double_quant ? torch::autograd::variable_list{q->codes, q->absmax_q,
                                                         q->absmax_scale}
                        : torch::autograd::variable_list{q->codes, q->absmax});
    ctx->saved_data["type"] = static_cast<int64_t>(q->type);
    ctx->saved_data["shape"] = c10::IntArrayRef(q->shape);
    ctx->saved_data["numel"] = q->numel;
    ctx->saved_data["block_size"] = q->block_size;
    ctx->saved_data["double_quant"] = q->double_quant;
    ctx->saved_data["dq_block_size"] = q->double_quant_block_size;
    ctx->saved_data["offset"] = q->absmax_offset;
    return y;
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grad_out) {
    torch::autograd::variable_list saved = ctx->get_saved_variables();
    QuantizedWeight q;
    q.type = static_cast<QuantType>(ctx->saved_data["type"].toInt());
    q.shape = ctx->saved_data["shape"].toIntVector();
    q.numel = ctx->saved_data["numel"].toInt();
    q.block_size = ctx->saved_data["block_size"].toInt();
    q.double_quant = ctx->saved_data["double_quant"].toBool();
    q.double_quant_block_size = ctx->saved_data["dq_block_size"].toInt();
    q.absmax_offset = ctx->saved_data["offset"].toDouble();
    q.codes = saved[0];
    if (q.double_quant) {
      q.absmax_q = saved[1];
      q.absmax_scale = saved[2];
    } else {
      q.absmax = saved[1];
    }
    const Tensor& g = grad_out[0];
    Tensor grad_x = torch::matmul(g, Dequantize(q, g.scalar_type()));
    return {grad_x, Tensor()};
  }
};

}  // namespace

absl::StatusOr<QuantType> ParseQuantType(absl::string_view name) {
  if (auto t = contract::FromName<QuantType>(name)) return *t;
  return absl::InvalidArgumentError(absl::StrCat("unknown quantisation type \"",
                                                 name, "\" (known: nf4, fp4)"));
}

const char* QuantTypeName(QuantType type) { return contract::Name(type); }

const std::array<float, 16>& CodeBook(QuantType type) {
  return type == QuantType::kFp4 ? kFp4 : kNf4;
}

absl::StatusOr<QuantizedWeight> Quantize(const Tensor& weight,
                                         const QuantOptions& options) {
  const int64_t bs = options.block_size;
  if (bs < 2 || bs % 2 != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("block_size must be even and >= 2, got ", bs));
  if (options.double_quant && options.double_quant_block_size < 1)
    return absl::InvalidArgumentError("double_quant_block_size must be >= 1");
  if (!weight.defined() || weight.numel() == 0)
    return absl::InvalidArgumentError("cannot quantise an empty tensor");
  if (!weight.is_floating_point())
    return absl::InvalidArgumentError("can only quantise floating-point data");
  torch::NoGradGuard no_grad;
  Tensor flat = weight.detach().to(torch::kFloat32).reshape({-1});
  if (!torch::isfinite(flat).all().item<bool>())
    return absl::InvalidArgumentError("weight has NaN or Inf values");

  QuantizedWeight q;
  q.type = options.type;
  q.shape = weight.sizes().vec();
  q.numel = flat.numel();
  q.block_size = bs;
  const int64_t nb = q.num_blocks();
  if (nb * bs > q.numel)
    flat =
        torch::cat({flat, torch::zeros({nb * bs - q.numel}, flat.options())});
  Tensor blocks = flat.view({nb, bs});
  Tensor absmax = std::get<0>(blocks.abs().max(/*dim=*/1));
  Tensor denom =
      torch::where(absmax > 0, absmax, torch::ones_like(absmax)).unsqueeze(1);
  LevelSearch search = MakeLevelSearch(options.type, flat.device());
  Tensor sorted_idx = torch::bucketize(blocks / denom, search.midpoints);
  Tensor codes =
      search.code_of.index_select(0, sorted_idx.reshape({-1})).view({-1, 2});
  q.codes = (codes.select(1, 0) * 16 + codes.select(1, 1)).to(torch::kUInt8);

  if (!options.double_quant) {
    q.absmax = absmax.contiguous();
    return q;
  }
  q.double_quant = true;
  const int64_t gbs = options.double_quant_block_size;
  q.double_quant_block_size = gbs;
  // The offset and scales are stored as fp32; quantise against the stored
  // values so that dequantisation reproduces exactly what was measured.
  const float offset = absmax.to(torch::kFloat64).mean().item<float>();
  q.absmax_offset = offset;
  Tensor centred = absmax.to(torch::kFloat64) - static_cast<double>(offset);
  const int64_t ng = (nb + gbs - 1) / gbs;
  Tensor padded = centred;
  if (ng * gbs > nb)
    padded =
        torch::cat({centred, torch::zeros({ng * gbs - nb}, centred.options())});
  Tensor groups = padded.view({ng, gbs});
  Tensor scale = (std::get<0>(groups.abs().max(1)) / 127.0).to(torch::kFloat32);
  Tensor s64 = scale.to(torch::kFloat64);
  Tensor safe = torch::where(s64 > 0, s64, torch::ones_like(s64));
  Tensor qv = torch::round(groups / safe.unsqueeze(1)).clamp(-127, 127);
  q.absmax_q = qv.reshape({-1}).narrow(0, 0, nb).to(torch::kInt8).contiguous();
  q.absmax_scale = scale.contiguous();
  return q;
}

Tensor BlockAbsmax(const QuantizedWeight& q) {
  if (!q.double_quant) return q.absmax;
  const int64_t nb = q.num_blocks();
  Tensor scale = q.absmax_scale.repeat_interleave(q.double_quant_block_size)
                     .narrow(0, 0, nb);
  return q.absmax_q.to(torch::kFloat32) * scale +
         static_cast<float>(q.absmax_offset);
}

Tensor UnpackCodes(const QuantizedWeight& q) {
  return UnpackPadded(q).narrow(0, 0, q.numel).to(torch::kUInt8);
}

Tensor Dequantize(const QuantizedWeight& q, torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
#if FTUNE_WITH_CUDA
  // Our kernel on the GPU (same result bit for bit, one pass, no temporaries).
  if (q.codes.is_cuda() &&
      (dtype == torch::kFloat32 || dtype == torch::kFloat16 ||
       dtype == torch::kBFloat16))
    return DequantizeCuda(q, dtype);
#endif
  Tensor levels = CodeBookTensor(q.type, q.codes.device());
  Tensor vals = levels.index_select(0, UnpackPadded(q))
                    .view({q.num_blocks(), q.block_size});
  vals.mul_(BlockAbsmax(q).unsqueeze(1));
  return vals.view({-1}).narrow(0, 0, q.numel).view(q.shape).to(dtype);
}

int64_t StorageBytes(const QuantizedWeight& q) {
  int64_t bytes = q.codes.numel();  // uint8
  if (q.double_quant) {
    bytes += q.absmax_q.numel() + 4 * q.absmax_scale.numel() + 4;
  } else {
    bytes += 4 * q.absmax.numel();
  }
  return bytes;
}

double BitsPerParameter(const QuantizedWeight& q) {
  return 8.0 * static_cast<double>(StorageBytes(q)) /
         static_cast<double>(q.numel);
}

Tensor QuantizedMatmul(const Tensor& x, const QuantizedWeight& q) {
  return QuantizedMatmulFn::apply(x, &q);
}

// CppNode<T>::ctx_ and AutogradContext::get_saved_variables() are public in
// LibTorch 1.13 and 2.x alike.
std::vector<Tensor> QuantizedMatmulSavedTensors(const Tensor& y) {
  if (!y.grad_fn()) return {};
  auto* node = dynamic_cast<torch::autograd::CppNode<QuantizedMatmulFn>*>(
      y.grad_fn().get());
  if (node == nullptr) return {};
  std::vector<Tensor> out = node->ctx_.get_saved_variables();
  for (const auto& kv : node->ctx_.saved_data)
    if (kv.second.isTensor()) out.push_back(kv.second.toTensor());
  return out;
}

}  // namespace ftune::train
