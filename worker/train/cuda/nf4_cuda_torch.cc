// DequantizeCuda(): checks a QuantizedWeight's tensors and hands their raw
// device pointers to the kernels (nf4_kernels.cu) on the current stream.
#include "worker/train/cuda/nf4_cuda_torch.h"

#include <string>

#include "worker/train/cuda/cuda_compat.h"
#include "worker/train/cuda/nf4_kernels.h"

namespace ftune::train {
namespace {

// A tensor of the layout: defined, on `device`, `dtype`, contiguous, with
// `numel` elements. `what` names it in the error.
void CheckPart(const torch::Tensor& t, const char* what,
               const torch::Device& device, torch::Dtype dtype, int64_t numel) {
  TORCH_CHECK(t.defined(), "DequantizeCuda: ", what, " is undefined");
  TORCH_CHECK(t.device() == device, "DequantizeCuda: ", what, " is on ",
              t.device(), ", codes on ", device);
  TORCH_CHECK(t.scalar_type() == dtype, "DequantizeCuda: ", what, " is ",
              t.scalar_type(), ", expected ", dtype);
  TORCH_CHECK(t.is_contiguous(), "DequantizeCuda: ", what,
              " is not contiguous");
  TORCH_CHECK(t.numel() == numel, "DequantizeCuda: ", what, " has ", t.numel(),
              " elements, expected ", numel);
}

gpu::OutputType OutputTypeFor(torch::Dtype dtype) {
  if (dtype == torch::kFloat32) return gpu::OutputType::kFloat32;
  if (dtype == torch::kFloat16) return gpu::OutputType::kFloat16;
  TORCH_CHECK(dtype == torch::kBFloat16, "DequantizeCuda: output dtype ", dtype,
              " is not supported (float32, float16, bfloat16)");
  return gpu::OutputType::kBFloat16;
}

}  // namespace

torch::Tensor DequantizeCuda(const QuantizedWeight& q, torch::Dtype dtype) {
  const gpu::OutputType out_type = OutputTypeFor(dtype);
  TORCH_CHECK(q.codes.defined() && q.codes.is_cuda(),
              "DequantizeCuda: the weight's codes are not on a CUDA device");
  TORCH_CHECK(q.block_size >= 2 && q.block_size % 2 == 0,
              "DequantizeCuda: block_size must be even and >= 2, got ",
              q.block_size);
  int64_t shape_numel = 1;
  for (int64_t d : q.shape) shape_numel *= d;
  TORCH_CHECK(shape_numel == q.numel, "DequantizeCuda: shape has ", shape_numel,
              " elements, numel is ", q.numel);
  const torch::Device device = q.codes.device();
  const int64_t blocks = q.num_blocks();
  CheckPart(q.codes, "codes", device, torch::kUInt8, blocks * q.block_size / 2);

  gpu::Nf4DeviceWeight w;
  w.type = q.type == QuantType::kFp4 ? gpu::CodeBookType::kFp4
                                     : gpu::CodeBookType::kNf4;
  w.numel = q.numel;
  w.block_size = q.block_size;
  w.codes = cuda_compat::ConstData<uint8_t>(q.codes);
  w.double_quant = q.double_quant;
  if (q.double_quant) {
    TORCH_CHECK(q.double_quant_block_size >= 1,
                "DequantizeCuda: double_quant_block_size must be >= 1");
    const int64_t groups =
        (blocks + q.double_quant_block_size - 1) / q.double_quant_block_size;
    CheckPart(q.absmax_q, "absmax_q", device, torch::kInt8, blocks);
    CheckPart(q.absmax_scale, "absmax_scale", device, torch::kFloat32, groups);
    w.double_quant_block_size = q.double_quant_block_size;
    w.absmax_q = cuda_compat::ConstData<int8_t>(q.absmax_q);
    w.absmax_scale = cuda_compat::ConstData<float>(q.absmax_scale);
    // nf4.cc's BlockAbsmax() adds the offset as fp32 too.
    w.absmax_offset = static_cast<float>(q.absmax_offset);
  } else {
    CheckPart(q.absmax, "absmax", device, torch::kFloat32, blocks);
    w.absmax = cuda_compat::ConstData<float>(q.absmax);
  }

  const c10::cuda::CUDAGuard guard(device);
  torch::Tensor out =
      torch::empty(q.shape, torch::TensorOptions().dtype(dtype).device(device));
  const int status =
      gpu::DequantizeNf4(w, out_type, cuda_compat::MutableData(out),
                         cuda_compat::CurrentStream(device));
  TORCH_CHECK(status == gpu::kNf4Ok,
              "DequantizeCuda: ", gpu::Nf4StatusMessage(status));
  return out;
}

QuantizedWeight QuantizedWeightTo(const QuantizedWeight& q,
                                  const torch::Device& device) {
  QuantizedWeight r = q;
  auto move = [&](const torch::Tensor& t) {
    return t.defined() ? t.to(device).contiguous() : t;
  };
  r.codes = move(q.codes);
  r.absmax = move(q.absmax);
  r.absmax_q = move(q.absmax_q);
  r.absmax_scale = move(q.absmax_scale);
  return r;
}

}  // namespace ftune::train
