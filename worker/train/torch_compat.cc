#include "worker/train/torch_compat.h"

#include <dlfcn.h>
#include <unistd.h>

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

std::string BlasLibrary() {
  void* sym = dlsym(RTLD_DEFAULT, "sgemm_");
  Dl_info info;
  if (sym != nullptr && dladdr(sym, &info) != 0 && info.dli_fname != nullptr)
    return info.dli_fname;
  return "unknown";
}

}  // namespace ftune::train::compat
