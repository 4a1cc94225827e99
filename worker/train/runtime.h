// Process-level runtime settings of the trainer that must be in place before
// LibTorch's thread pools start. Plain C++: no LibTorch headers.
#ifndef FTUNE_WORKER_TRAIN_RUNTIME_H_
#define FTUNE_WORKER_TRAIN_RUNTIME_H_

#include <string>

namespace ftune::train {

// The GOMP_SPINCOUNT the trainer runs with unless the environment says
// otherwise (bench/README.md has the measurements behind it).
inline constexpr const char* kOpenMpSpinCount = "10000";

// LibTorch's OpenMP workers (libgomp) busy-wait for up to 300,000 spins after
// each parallel region by default; on a machine with few cores that takes the
// cores BLAS needs, and throughput collapses under any competing load.
// libgomp reads its policy once, when it is loaded, before main() runs: so
// unless the environment already sets GOMP_SPINCOUNT or OMP_WAIT_POLICY,
// this sets GOMP_SPINCOUNT=kOpenMpSpinCount and re-executes /proc/self/exe
// with the same argv. It returns only when no re-exec happened (the policy
// was already set, or exec failed). Call it first thing in main(), before any
// thread exists.
void ReexecWithOpenMpSpinPolicy(char** argv);

// A training step allocates and frees the same large tensors every time
// (activations, the LM head's logits). glibc serves large blocks with mmap
// and hands them back with munmap, so every step page-faults its working set
// in again (zeroed by the kernel): ~126 MB, 31,000 faults per step on the
// stories15M bench. This tells glibc malloc to take every block from the heap
// and never trim it, so freed memory is reused in-process: after the first
// step a step takes no page faults. Memory use then stays at the peak, which
// is what a training process reaches every step anyway. Call it once, early
// in main(); glibc only (elsewhere a no-op). Returns whether it applied.
bool KeepFreedMemoryInProcess();

// "GOMP_SPINCOUNT=...", "OMP_WAIT_POLICY=..." or "libgomp default".
std::string OpenMpSpinPolicy();

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_RUNTIME_H_
