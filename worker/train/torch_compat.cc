#include "worker/train/torch_compat.h"

#include <dlfcn.h>
#include <sys/resource.h>
#include <unistd.h>

#if FTUNE_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace ftune::train::compat {

int SetThreads(int threads) {
  if (threads <= 0) threads = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  if (threads <= 0) threads = 1;
  at::set_num_threads(threads);
  // The inter-op pool can only be sized before first use; a second call
  // (e.g. a second run in one test process) throws, which is harmless.
  try {
    at::set_num_interop_threads(threads);
  } catch (const c10::Error&) {
  }
  // OpenBLAS (Debian's libblas.so.3 alternative) runs its own thread pool;
  // without this it uses every core regardless of LibTorch's setting.
  using SetFn = void (*)(int);
  if (auto fn = reinterpret_cast<SetFn>(
          dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
    fn(threads);
  return threads;
}

int64_t PeakMemoryBytes(const torch::Device& device) {
#if FTUNE_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(
        device.has_index() ? device.index() : 0);
    return stats.allocated_bytes[0].peak;  // index 0: StatType::AGGREGATE
  }
#else
  (void)device;
#endif
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

void ReleaseCachedMemory(const torch::Device& device) {
#if FTUNE_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#else
  (void)device;
#endif
}

torch::Tensor GetRngState(const torch::Device& device) {
#if FTUNE_WITH_CUDA
  if (device.is_cuda()) {
    auto gen = at::cuda::detail::getDefaultCUDAGenerator(
        device.has_index() ? device.index() : 0);
    std::lock_guard<std::mutex> lock(gen.mutex());
    return gen.get_state();
  }
#else
  (void)device;
#endif
  return GetCpuRngState();
}

void SetRngState(const torch::Device& device, const torch::Tensor& state) {
#if FTUNE_WITH_CUDA
  if (device.is_cuda()) {
    auto gen = at::cuda::detail::getDefaultCUDAGenerator(
        device.has_index() ? device.index() : 0);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
    return;
  }
#else
  (void)device;
#endif
  SetCpuRngState(state);
}

bool DeviceAvailable(const torch::Device& device, std::string* why) {
  if (device.is_cpu()) return true;
  if (!device.is_cuda()) {
    *why = "only cpu and cuda devices are supported";
    return false;
  }
#if FTUNE_WITH_CUDA
  const int64_t n = static_cast<int64_t>(torch::cuda::device_count());
  if (n == 0) {
    *why = "no CUDA device is visible (driver, CUDA_VISIBLE_DEVICES?)";
    return false;
  }
  if (device.has_index() && device.index() >= n) {
    *why = "CUDA device " + std::to_string(device.index()) +
           " does not exist (" + std::to_string(n) + " visible)";
    return false;
  }
  return true;
#else
  *why =
      "this ftune-train was built without CUDA (build with "
      "-DFTUNE_WITH_CUDA=ON against a CUDA LibTorch, docs/gpu.md)";
  return false;
#endif
}

std::string BlasLibrary() {
  void* sym = dlsym(RTLD_DEFAULT, "sgemm_");
  Dl_info info;
  if (sym != nullptr && dladdr(sym, &info) != 0 && info.dli_fname != nullptr)
    return info.dli_fname;
  return "unknown";
}

}  // namespace ftune::train::compat
