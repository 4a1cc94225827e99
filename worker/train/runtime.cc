#include "worker/train/runtime.h"

#include <unistd.h>

#include <cstdlib>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace ftune::train {

void ReexecWithOpenMpSpinPolicy(char** argv) {
  if (std::getenv("GOMP_SPINCOUNT") != nullptr ||
      std::getenv("OMP_WAIT_POLICY") != nullptr)
    return;
  if (setenv("GOMP_SPINCOUNT", kOpenMpSpinCount, /*overwrite=*/0) != 0) return;
  execv("/proc/self/exe", argv);
  // exec failed (no /proc): go on with libgomp's default policy.
}

bool KeepFreedMemoryInProcess() {
#if defined(__GLIBC__)
  // No mmap'd blocks (whatever their size), no trimming of the heap's top,
  // and grow it 64 MB at a time. If brk ever fails glibc still falls back
  // to mmap for the heap itself.
  return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, -1) == 1 &&
         mallopt(M_TOP_PAD, 64 << 20) == 1;
#else
  return false;
#endif
}

std::string OpenMpSpinPolicy() {
  for (const char* name : {"GOMP_SPINCOUNT", "OMP_WAIT_POLICY"}) {
    if (const char* v = std::getenv(name)) return std::string(name) + "=" + v;
  }
  return "libgomp default";
}

}  // namespace ftune::train
