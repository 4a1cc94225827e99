// End-to-end check of the NF4 CUDA path against the CPU path, through the
// real code: weights quantised by ftune::train::Quantize() (nf4.cc),
// dequantised on CPU by Dequantize() and on the GPU by DequantizeCuda()
// (worker/train/cuda/nf4_cuda_torch.h), compared bit for bit.
//
// It also recomputes the CPU result with the formula the kernels use
// (nf4_kernels.h: fp32 (q * s) + c, level * absmax, one rounding to the
// output type) from the quantised tensors, which needs no GPU: built
// without FTUNE_WITH_CUDA it checks that the kernels' arithmetic is nf4.cc's.
//
// No gtest (GPU hosts may lack it). Exit status: 0 pass, 1 mismatch,
// 77 built with CUDA but no device (the CPU part still ran).
#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "worker/train/nf4.h"
#if FTUNE_WITH_CUDA
#include "worker/train/cuda/nf4_cuda_torch.h"
#endif

namespace {

using ftune::train::QuantizedWeight;
using ftune::train::QuantType;

int failures = 0;

void Check(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  }
}

// Same bits (the tensors as integers of their width), same shape.
bool SameBits(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes())
    return false;
  const torch::Dtype as = a.element_size() == 4 ? torch::kInt32 : torch::kInt16;
  return torch::equal(a.contiguous().view(as), b.contiguous().view(as));
}

// The kernels' formula on the CPU, element by element, in fp32.
torch::Tensor KernelFormula(const QuantizedWeight& q, torch::Dtype dtype) {
  const std::array<float, 16>& cb = ftune::train::CodeBook(q.type);
  torch::Tensor codes = q.codes.contiguous();
  const uint8_t* c = codes.data_ptr<uint8_t>();
  std::vector<float> out(q.numel);
  const float offset = static_cast<float>(q.absmax_offset);
  for (int64_t e = 0; e < q.numel; ++e) {
    const int code = e % 2 == 0 ? c[e / 2] >> 4 : c[e / 2] & 15;
    const int64_t block = e / q.block_size;
    float absmax;
    if (q.double_quant) {
      volatile float prod =
          static_cast<float>(q.absmax_q.data_ptr<int8_t>()[block]) *
          q.absmax_scale.data_ptr<float>()[block / q.double_quant_block_size];
      absmax = prod + offset;
    } else {
      absmax = q.absmax.data_ptr<float>()[block];
    }
    volatile float v = cb[code] * absmax;
    out[e] = v;
  }
  return torch::from_blob(out.data(), {q.numel}, torch::kFloat32)
      .clone()
      .view(q.shape)
      .to(dtype);
}

}  // namespace

int main() {
  torch::manual_seed(7);
  bool gpu = false;
#if FTUNE_WITH_CUDA
  gpu = torch::cuda::is_available();
#endif
  struct Shape {
    std::vector<int64_t> dims;
    int64_t block, dq_block;
  };
  const Shape shapes[] = {{{256, 192}, 64, 256},
                          {{7, 33}, 64, 256},       // padding in the last block
                          {{1000}, 32, 5},          // partial dq group
                          {{64, 4096}, 4096, 256},  // one block per row
                          {{3, 130}, 2, 7}};
  int cases = 0;
  for (QuantType type : {QuantType::kNf4, QuantType::kFp4}) {
    for (bool dq : {true, false}) {
      for (const Shape& s : shapes) {
        torch::Tensor w = torch::randn(s.dims) * 0.05;
        w.view(-1)[0] = 3.0;  // an outlier block
        ftune::train::QuantOptions o;
        o.type = type;
        o.block_size = s.block;
        o.double_quant = dq;
        o.double_quant_block_size = s.dq_block;
        auto q = ftune::train::Quantize(w, o);
        Check(q.ok(), "Quantize");
        if (!q.ok()) continue;
        QuantizedWeight dev;
#if FTUNE_WITH_CUDA
        if (gpu) dev = ftune::train::QuantizedWeightTo(*q, torch::kCUDA);
#endif
        for (torch::Dtype dt :
             {torch::kFloat32, torch::kFloat16, torch::kBFloat16}) {
          const std::string name =
              std::string(ftune::train::QuantTypeName(type)) +
              " dq=" + std::to_string(dq) +
              " shape=" + c10::str(c10::IntArrayRef(s.dims)) +
              " block=" + std::to_string(s.block) + " " + c10::toString(dt);
          torch::Tensor cpu = ftune::train::Dequantize(*q, dt);
          Check(SameBits(cpu, KernelFormula(*q, dt)),
                "kernel formula != Dequantize: " + name);
#if FTUNE_WITH_CUDA
          if (gpu) {
            torch::Tensor g = ftune::train::DequantizeCuda(dev, dt);
            Check(g.is_cuda(), "DequantizeCuda output on GPU: " + name);
            Check(SameBits(cpu, g.cpu()),
                  "DequantizeCuda != Dequantize: " + name);
          }
#endif
          ++cases;
        }
      }
    }
  }
#if FTUNE_WITH_CUDA
  if (gpu) {
    // Wrong inputs are c10::Errors, not crashes.
    auto q = ftune::train::Quantize(torch::randn({64, 64}), {});
    bool threw = false;
    try {
      ftune::train::DequantizeCuda(*q, torch::kFloat32);  // on CPU
    } catch (const c10::Error&) {
      threw = true;
    }
    Check(threw, "a CPU weight is refused");
    threw = false;
    try {
      ftune::train::DequantizeCuda(
          ftune::train::QuantizedWeightTo(*q, torch::kCUDA), torch::kInt64);
    } catch (const c10::Error&) {
      threw = true;
    }
    Check(threw, "an int64 output is refused");
  }
#endif
  if (failures > 0) {
    std::printf("nf4_cuda_torch_check: FAILED (%d checks)\n", failures);
    return 1;
  }
  std::printf("nf4_cuda_torch_check: %d cases match on CPU%s\n", cases,
              gpu ? " and GPU" : "");
#if FTUNE_WITH_CUDA
  if (!gpu) {
    std::printf("nf4_cuda_torch_check: skipped the GPU part (no device)\n");
    return 77;
  }
#endif
  return 0;
}
