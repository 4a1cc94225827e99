// LibTorch glue for the NF4 / FP4 CUDA kernels (nf4_kernels.h): the GPU
// counterpart of ftune::train::Dequantize() (worker/train/nf4.h), with the
// same result bit for bit.
//
// Compiled only when the build has FTUNE_WITH_CUDA=ON (ftune_train is then
// compiled with FTUNE_WITH_CUDA=1): callers guard their use with
// `#if FTUNE_WITH_CUDA`.
//
// Thread-safety: pure functions; work is queued on the calling thread's
// current CUDA stream of the weight's device.
#ifndef FTUNE_WORKER_TRAIN_CUDA_NF4_CUDA_TORCH_H_
#define FTUNE_WORKER_TRAIN_CUDA_NF4_CUDA_TORCH_H_

#include <torch/types.h>

#include "worker/train/nf4.h"

namespace ftune::train {

// The dense weight in `dtype` (kFloat32, kFloat16 or kBFloat16), shape
// q.shape, on q's CUDA device, dequantised on the current CUDA stream
// (asynchronous like any CUDA tensor op). q's tensors must all be
// contiguous, on one CUDA device, with the dtypes and sizes of nf4.h.
// Throws c10::Error (as LibTorch ops do) for a weight off the GPU, a wrong
// dtype, size or device, an unsupported output dtype or a failed launch.
torch::Tensor DequantizeCuda(const QuantizedWeight& q, torch::Dtype dtype);

// q with its tensors copied to `device` (metadata unchanged), e.g. to move
// weights quantised on CPU at load time to the GPU once.
QuantizedWeight QuantizedWeightTo(const QuantizedWeight& q,
                                  const torch::Device& device);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_CUDA_NF4_CUDA_TORCH_H_
