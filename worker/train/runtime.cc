#include "worker/train/runtime.h"

#include <unistd.h>

#include <cstdlib>

namespace ftune::train {

void ReexecWithOpenMpSpinPolicy(char** argv) {
  if (std::getenv("GOMP_SPINCOUNT") != nullptr ||
      std::getenv("OMP_WAIT_POLICY") != nullptr)
    return;
  if (setenv("GOMP_SPINCOUNT", kOpenMpSpinCount, /*overwrite=*/0) != 0) return;
  execv("/proc/self/exe", argv);
  // exec failed (no /proc): go on with libgomp's default policy.
}

std::string OpenMpSpinPolicy() {
  for (const char* name : {"GOMP_SPINCOUNT", "OMP_WAIT_POLICY"}) {
    if (const char* v = std::getenv(name)) return std::string(name) + "=" + v;
  }
  return "libgomp default";
}

}  // namespace ftune::train
