// The LibTorch CUDA API differences between the versions we build against
// (Debian's LibTorch 1.13 headers for compile checks, CUDA LibTorch 2.x on
// GPU hosts), kept out of worker/train/torch_compat.h so that CPU-only
// translation units never see c10/cuda. Include only from CUDA glue (.cc
// files compiled with FTUNE_WITH_CUDA=1).
//
// Thread-safety: stateless helpers; the current stream is per thread and
// per device, as in LibTorch.
#ifndef FTUNE_WORKER_TRAIN_CUDA_CUDA_COMPAT_H_
#define FTUNE_WORKER_TRAIN_CUDA_CUDA_COMPAT_H_

#include <torch/types.h>
#include <torch/version.h>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

// Same definition as worker/train/torch_compat.h (identical redefinition is
// allowed), without pulling in <torch/torch.h>.
#ifndef FTUNE_TORCH_AT_LEAST
#define FTUNE_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||        \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))
#endif

namespace ftune::train::cuda_compat {

// The current CUDA stream of `device` (a CUDA device) as an opaque
// cudaStream_t, for the plain-C++ kernel API (nf4_kernels.h).
inline void* CurrentStream(const c10::Device& device) {
  return static_cast<void*>(
      c10::cuda::getCurrentCUDAStream(device.index()).stream());
}

// Read-only data pointer. LibTorch 2.1 added const_data_ptr(); on 2.x
// data_ptr() also materialises copy-on-write storage, which a reader must
// not trigger.
template <typename T>
const T* ConstData(const torch::Tensor& t) {
#if FTUNE_TORCH_AT_LEAST(2, 1)
  return t.const_data_ptr<T>();
#else
  return t.data_ptr<T>();
#endif
}

// Writable data pointer (mutable_data_ptr() since 2.1).
inline void* MutableData(const torch::Tensor& t) {
#if FTUNE_TORCH_AT_LEAST(2, 1)
  return t.mutable_data_ptr();
#else
  return t.data_ptr();
#endif
}

}  // namespace ftune::train::cuda_compat

#endif  // FTUNE_WORKER_TRAIN_CUDA_CUDA_COMPAT_H_
