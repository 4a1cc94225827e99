// Every difference between the LibTorch versions we build against lives here:
// Debian's CPU LibTorch 1.13.1 and current CUDA LibTorch 2.x. Trainer code
// includes this instead of <torch/torch.h> and uses the helpers below.
//
// Thread-safety: SetThreads() must be called once, before any torch work;
// the generator helpers touch the process-wide default CPU generator and must
// not race with tensor ops that draw random numbers.
#ifndef FTUNE_WORKER_TRAIN_TORCH_COMPAT_H_
#define FTUNE_WORKER_TRAIN_TORCH_COMPAT_H_

#include <torch/torch.h>
#include <torch/version.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#define FTUNE_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||        \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace ftune::train::compat {

// Sets LibTorch's intra-op and inter-op pools and OpenBLAS's own pool (it
// keeps one independent of OpenMP) to `threads`. <= 0 means all cores.
// Returns the count applied.
int SetThreads(int threads);

// Name of the BLAS library that provides sgemm_ in this process (via
// dladdr), e.g. ".../openblas-pthread/libblas.so.3", or "unknown".
std::string BlasLibrary();

// Exception type LibTorch throws when an allocation fails (CPU or CUDA).
// 1.13 and 2.x both define c10::OutOfMemoryError; older CUDA builds threw
// c10::Error with "out of memory" in the message, so callers also check that.
using OutOfMemoryError = c10::OutOfMemoryError;
inline bool IsOutOfMemory(const c10::Error& e) {
  return std::string(e.what()).find("out of memory") != std::string::npos ||
         std::string(e.what()).find("DefaultCPUAllocator: can't allocate") !=
             std::string::npos;
}

// Peak memory of the process so far, in bytes: on CPU the peak resident
// set (getrusage ru_maxrss); on a CUDA device the caching allocator's peak
// of allocated bytes.
int64_t PeakMemoryBytes(const torch::Device& device);
// The bytes of live tensors, the measure the memory planner
// (common/contract/memory_plan.h) predicts: on a CUDA device the caching
// allocator's allocated bytes; on CPU the bytes of live tensors allocated
// through LibTorch's CPU allocator, counted exactly by a wrapper that
// TrackCpuTensorMemory() installs (the RSS of PeakMemoryBytes also holds
// the process's code, its libraries and malloc's free lists).
// TrackCpuTensorMemory: idempotent, process-wide; tensors allocated before
// it are not counted. Thread-safe.
void TrackCpuTensorMemory();
// Peak since the last ResetTensorPeak (or since tracking began); 0 on CPU
// when untracked.
int64_t TensorPeakBytes(const torch::Device& device);
// Sets the peak to the bytes live now.
void ResetTensorPeak(const torch::Device& device);
// After an out-of-memory error: return the caching allocator's free blocks
// to the device (CUDA); nothing on CPU.
void ReleaseCachedMemory(const torch::Device& device);

// The default generator's state of `device` (CPU, or the CUDA device's
// generator in a CUDA build): gradient checkpointing replays dropout with it.
torch::Tensor GetRngState(const torch::Device& device);
void SetRngState(const torch::Device& device, const torch::Tensor& state);

// Whether `device` can be used by this build on this machine; false with a
// reason for "cuda" in a CPU-only build or with no visible CUDA device.
bool DeviceAvailable(const torch::Device& device, std::string* why);

// Default CPU generator state (an opaque byte tensor) for checkpoints.
inline torch::Tensor GetCpuRngState() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}
inline void SetCpuRngState(const torch::Tensor& state) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

// "cpu" or "cuda[:n]" (DeviceAvailable says whether this build and machine
// can use it). Invalid device strings throw c10::Error.
inline torch::Device ParseDevice(const std::string& name) {
  return torch::Device(name);
}

// --- attention ---------------------------------------------------------------
// Whether this LibTorch has at::scaled_dot_product_attention (2.0 and
// later; flash / memory-efficient kernels on CUDA).
bool HasScaledDotProductAttention();
// Causal attention of q [B, h, T, hd], already carrying the softmax scale,
// over k, v [B, h, T, hd] (as many heads as q) with that kernel. Throws
// c10::Error where HasScaledDotProductAttention() is false.
torch::Tensor CausalScaledDotProductAttention(const torch::Tensor& q,
                                              const torch::Tensor& k,
                                              const torch::Tensor& v);

// --- torch.distributed (c10d) ------------------------------------------------
// A process group's collectives, without c10d's types (LibTorch 1.13 runs
// them on c10d::ProcessGroup, 2.x on c10d::Backend; ProcessGroupGloo's and
// ProcessGroupNCCL's headers need defines and third-party headers that only
// torch_compat.cc sets up). Every call blocks until the collective is done;
// a failure (a peer died, the timeout passed) throws std::exception.
// Not thread-safe: one caller at a time, the same call order on every rank.
class Collectives {
 public:
  virtual ~Collectives() = default;
  // In place: every rank ends with the element-wise sum.
  virtual void AllReduceSum(torch::Tensor& tensor) = 0;
  // In place: every rank ends with `root`'s values.
  virtual void Broadcast(torch::Tensor& tensor, int root) = 0;
  // "gloo" or "nccl".
  virtual std::string backend() const = 0;
};

struct CollectivesOptions {
  int rank = 0;
  int world_size = 1;
  std::string master_addr;
  int master_port = 0;
  // torchrun's agent hosts the TCPStore (TORCHELASTIC_USE_AGENT_STORE): every
  // rank is a client and keys live under /worker/attempt_<restart_count>.
  bool agent_store = false;
  int restart_count = 0;
  std::chrono::milliseconds rendezvous_timeout{300000};
  std::chrono::milliseconds collective_timeout{600000};
  // CPU: Gloo (GLOO_SOCKET_IFNAME picks the interface when set); CUDA
  // (FTUNE_WITH_CUDA builds): NCCL on this device.
  torch::Device device = torch::kCPU;
};

// Rendezvous through a c10d::TCPStore at master_addr:master_port (rank 0
// hosts it unless agent_store), then a Gloo or NCCL process group over it.
// Throws std::exception when the rendezvous fails or times out, or when
// NCCL is asked of a build without it.
std::unique_ptr<Collectives> ConnectCollectives(const CollectivesOptions& o);

}  // namespace ftune::train::compat

#endif  // FTUNE_WORKER_TRAIN_TORCH_COMPAT_H_
