// CUDA kernels for QLoRA's 4-bit weights: dequantise NF4 / FP4 blocks (with
// or without double-quantised absmax) into fp32, fp16 or bf16 on the GPU.
//
// A plain C++ API over raw device pointers, with no LibTorch and no CUDA
// headers, so any translation unit can include it; the LibTorch glue is
// nf4_cuda_torch.h. The storage layout is exactly the one of
// worker/train/nf4.h, and so is the arithmetic: the output is bit-identical
// to ftune::train::Dequantize() on CPU (fp32 level * fp32 absmax, the
// double-quantised absmax as fp32 (q * s) + c with two roundings and no
// fused multiply-add, then one round-to-nearest-even cast to the output).
//
// Thread-safety: the functions keep no state; launches on one stream are
// ordered by that stream, launches on different streams writing the same
// output race as any CUDA work would.
#ifndef FTUNE_WORKER_TRAIN_CUDA_NF4_KERNELS_H_
#define FTUNE_WORKER_TRAIN_CUDA_NF4_KERNELS_H_

#include <cstdint>

namespace ftune::train::gpu {

// The code book; the values match ftune::train::QuantType.
enum class CodeBookType : int { kNf4 = 0, kFp4 = 1 };

// Element type of the dense output.
enum class OutputType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// Status of a call: 0 is success, a positive value is the cudaError_t that
// the launch reported (e.g. cudaErrorNoKernelImageForDevice), a negative
// value one of these argument errors (nothing was launched then).
enum Nf4Status : int {
  kNf4Ok = 0,
  kNf4NullPointer = -1,     // a pointer the layout needs is null
  kNf4BadBlockSize = -2,    // block_size odd or < 2
  kNf4BadDqBlockSize = -3,  // double_quant_block_size < 1
  kNf4BadSize = -4,         // numel < 0
  kNf4BadType = -5,         // unknown CodeBookType or OutputType
};

// One line describing `status` ("ok", the argument error, or CUDA's own
// message for a cudaError_t). Never null; static storage.
const char* Nf4StatusMessage(int status);

// A quantised weight in device memory, laid out as in worker/train/nf4.h.
// Pointers are borrowed; all of them must be on the device that is current
// for the calling thread when the kernel is launched.
struct Nf4DeviceWeight {
  CodeBookType type = CodeBookType::kNf4;
  int64_t numel = 0;        // values in the weight (the output's size)
  int64_t block_size = 64;  // values per absmax block; even, >= 2
  // uint8 [ceil(numel / block_size) * block_size / 2]: the even element in
  // the high nibble, the odd element in the low nibble.
  const uint8_t* codes = nullptr;
  // Without double quantisation: fp32 [blocks].
  const float* absmax = nullptr;
  // With double quantisation (absmax unused):
  bool double_quant = false;
  int64_t double_quant_block_size = 256;
  const int8_t* absmax_q = nullptr;     // int8 [blocks]
  const float* absmax_scale = nullptr;  // fp32 [ceil(blocks / dq block)]
  float absmax_offset = 0;              // c, as fp32
};

// Number of absmax blocks: ceil(numel / block_size).
inline int64_t Nf4NumBlocks(const Nf4DeviceWeight& w) {
  return w.block_size > 0 ? (w.numel + w.block_size - 1) / w.block_size : 0;
}

// Writes the `w.numel` dequantised values, row-major, to `out` (device
// memory of `out_type`) on `stream` (a cudaStream_t; null = the legacy
// default stream). Asynchronous: returns after the launch, with the launch
// status; errors during execution surface at the next synchronisation.
// numel == 0 launches nothing and returns kNf4Ok.
int DequantizeNf4(const Nf4DeviceWeight& w, OutputType out_type, void* out,
                  void* stream);

}  // namespace ftune::train::gpu

#endif  // FTUNE_WORKER_TRAIN_CUDA_NF4_KERNELS_H_
