// NF4 / FP4 dequantisation kernels (contract: nf4_kernels.h).
//
// Bit-exactness with the CPU path (worker/train/nf4.cc) is the point, so the
// multiplications and the addition use the _rn intrinsics: nvcc would
// otherwise contract q * s + c into one fused multiply-add, which rounds once
// where LibTorch's two tensor ops round twice.
//
// Dequantisation is memory-bound (0.5 byte in, 2-4 bytes out per value).
// The fast kernel gives each thread one 32-bit word of codes (8 values, all
// in one absmax block) and writes them with 16-byte stores; the generic one
// takes one byte (2 values) per thread and handles any even block size,
// padding and unaligned output.
#include "worker/train/cuda/nf4_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

namespace ftune::train::gpu {
namespace {

// Must equal kNf4 / kFp4 in worker/train/nf4.cc value for value (the
// kernel test checks the levels against its own copy of the paper's table).
__constant__ float kCodeBooks[2][16] = {
    {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
     -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
     0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
     0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
     0.7229568362236023f, 1.0f},
    {0.0f, 0.5f / 6, 1.0f / 6, 1.5f / 6, 2.0f / 6, 3.0f / 6, 4.0f / 6, 1.0f,
     -0.0f, -0.5f / 6, -1.0f / 6, -1.5f / 6, -2.0f / 6, -3.0f / 6, -4.0f / 6,
     -1.0f}};

constexpr int kThreads = 256;
// Grid-stride loops cover anything beyond this many blocks (2M threads,
// several waves on any current GPU).
constexpr int64_t kMaxGrid = 8192;

// Kernel parameters: the weight's pointers and sizes, passed by value.
struct Params {
  const uint8_t* codes;
  const float* absmax;
  const int8_t* absmax_q;
  const float* absmax_scale;
  int64_t numel;
  int64_t block_size;
  int64_t dq_block_size;
  float offset;
  int type;
  bool double_quant;
};

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// The block's absmax as nf4.cc's BlockAbsmax() computes it.
__device__ __forceinline__ float BlockAbsmax(const Params& p, int64_t block) {
  if (!p.double_quant) return __ldg(p.absmax + block);
  const float q = static_cast<float>(__ldg(p.absmax_q + block));
  const float s = __ldg(p.absmax_scale + block / p.dq_block_size);
  return __fadd_rn(__fmul_rn(q, s), p.offset);
}

// The 16 levels in shared memory: indexed by data-dependent codes, which
// the constant cache would serialise.
__device__ __forceinline__ void LoadLevels(const Params& p, float* levels) {
  if (threadIdx.x < 16) levels[threadIdx.x] = kCodeBooks[p.type][threadIdx.x];
  __syncthreads();
}

// One packed byte (two values) per thread and iteration.
template <typename T>
__global__ void DequantizeBytes(Params p, T* __restrict__ out) {
  __shared__ float levels[16];
  LoadLevels(p, levels);
  const int64_t bytes = (p.numel + 1) / 2;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < bytes; i += stride) {
    const int64_t e = 2 * i;
    const float a = BlockAbsmax(p, e / p.block_size);  // e, e + 1: one block
    const unsigned b = __ldg(p.codes + i);
    out[e] = FromFloat<T>(__fmul_rn(levels[b >> 4], a));
    if (e + 1 < p.numel)
      out[e + 1] = FromFloat<T>(__fmul_rn(levels[b & 15], a));
  }
}

// Eight values from one 32-bit word of codes (byte k of the little-endian
// word holds values 2k and 2k + 1), stored with 16-byte writes.
// Preconditions (checked by the launcher): numel % 8 == 0,
// block_size % 8 == 0, codes 4-byte aligned, out 16-byte aligned.
__device__ __forceinline__ void StoreEight(const float (&v)[8], float* out) {
  reinterpret_cast<float4*>(out)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(out)[1] = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ unsigned Bits(__half v) {
  return __half_as_ushort(v);
}
__device__ __forceinline__ unsigned Bits(__nv_bfloat16 v) {
  return __bfloat16_as_ushort(v);
}
template <typename T>
__device__ __forceinline__ void StoreEight(const float (&v)[8], T* out) {
  // Two 16-bit values per 32-bit word, the lower address in the low half.
  unsigned w[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    w[k] =
        Bits(FromFloat<T>(v[2 * k])) | (Bits(FromFloat<T>(v[2 * k + 1])) << 16);
  }
  *reinterpret_cast<uint4*>(out) = make_uint4(w[0], w[1], w[2], w[3]);
}

template <typename T>
__global__ void DequantizeWords(Params p, T* __restrict__ out) {
  __shared__ float levels[16];
  LoadLevels(p, levels);
  const int64_t words = p.numel / 8;
  const uint32_t* codes = reinterpret_cast<const uint32_t*>(p.codes);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < words; i += stride) {
    const int64_t e = 8 * i;
    const float a = BlockAbsmax(p, e / p.block_size);
    const uint32_t word = __ldg(codes + i);
    float v[8];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const unsigned b = (word >> (8 * k)) & 0xffu;
      v[2 * k] = __fmul_rn(levels[b >> 4], a);
      v[2 * k + 1] = __fmul_rn(levels[b & 15], a);
    }
    StoreEight(v, out + e);
  }
}

bool Aligned(const void* p, uintptr_t n) {
  return reinterpret_cast<uintptr_t>(p) % n == 0;
}

template <typename T>
int Launch(const Params& p, void* out, cudaStream_t stream) {
  const bool words = p.numel % 8 == 0 && p.block_size % 8 == 0 &&
                     Aligned(p.codes, 4) && Aligned(out, 16);
  const int64_t items = words ? p.numel / 8 : (p.numel + 1) / 2;
  const int64_t grid =
      std::min<int64_t>((items + kThreads - 1) / kThreads, kMaxGrid);
  if (words) {
    DequantizeWords<T><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(
        p, static_cast<T*>(out));
  } else {
    DequantizeBytes<T><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(
        p, static_cast<T*>(out));
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

const char* Nf4StatusMessage(int status) {
  switch (status) {
    case kNf4Ok:
      return "ok";
    case kNf4NullPointer:
      return "nf4 dequantise: a required device pointer is null";
    case kNf4BadBlockSize:
      return "nf4 dequantise: block_size must be even and >= 2";
    case kNf4BadDqBlockSize:
      return "nf4 dequantise: double_quant_block_size must be >= 1";
    case kNf4BadSize:
      return "nf4 dequantise: numel must be >= 0";
    case kNf4BadType:
      return "nf4 dequantise: unknown code book or output type";
    default:
      if (status > 0)
        return cudaGetErrorString(static_cast<cudaError_t>(status));
      return "nf4 dequantise: unknown status";
  }
}

int DequantizeNf4(const Nf4DeviceWeight& w, OutputType out_type, void* out,
                  void* stream) {
  if (w.numel < 0) return kNf4BadSize;
  if (w.block_size < 2 || w.block_size % 2 != 0) return kNf4BadBlockSize;
  if (w.type != CodeBookType::kNf4 && w.type != CodeBookType::kFp4)
    return kNf4BadType;
  if (out_type != OutputType::kFloat32 && out_type != OutputType::kFloat16 &&
      out_type != OutputType::kBFloat16)
    return kNf4BadType;
  if (w.double_quant && w.double_quant_block_size < 1)
    return kNf4BadDqBlockSize;
  if (w.numel == 0) return kNf4Ok;
  if (w.codes == nullptr || out == nullptr) return kNf4NullPointer;
  if (w.double_quant ? (w.absmax_q == nullptr || w.absmax_scale == nullptr)
                     : w.absmax == nullptr)
    return kNf4NullPointer;

  Params p;
  p.codes = w.codes;
  p.absmax = w.absmax;
  p.absmax_q = w.absmax_q;
  p.absmax_scale = w.absmax_scale;
  p.numel = w.numel;
  p.block_size = w.block_size;
  p.dq_block_size = w.double_quant ? w.double_quant_block_size : 1;
  p.offset = w.absmax_offset;
  p.type = static_cast<int>(w.type);
  p.double_quant = w.double_quant;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (out_type) {
    case OutputType::kFloat32:
      return Launch<float>(p, out, s);
    case OutputType::kFloat16:
      return Launch<__half>(p, out, s);
    case OutputType::kBFloat16:
      return Launch<__nv_bfloat16>(p, out, s);
  }
  return kNf4BadType;
}

}  // namespace ftune::train::gpu
