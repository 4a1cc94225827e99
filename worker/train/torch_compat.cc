#include "worker/train/torch_compat.h"

#include <dlfcn.h>
#include <sys/resource.h>
#include <unistd.h>

#if FTUNE_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

// c10d's backend headers compile only with their feature macros, which
// LibTorch's CMake config does not give its users. Debian's and the
// official LibTorch builds both have Gloo (libgloo-dev has its headers);
// CUDA builds have NCCL.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if FTUNE_WITH_CUDA && __has_include(<nccl.h>)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define FTUNE_HAVE_NCCL 1
#endif

#include <cmath>
#include <cstdlib>
#include <mutex>
#include <unordered_map>

#include <c10/core/CPUAllocator.h>
#include <stdexcept>

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

namespace {

// Wraps LibTorch's default CPU allocator and counts live bytes. Blocks keep
// the default allocator's raw pointer as data and context (raw_allocate
// needs that); their sizes are looked up at free. Blocks from before the
// wrapper was installed are freed without counting.
class CountingCpuAllocator final : public c10::Allocator {
 public:
  explicit CountingCpuAllocator(c10::Allocator* base)
      : base_(base), base_deleter_(base->raw_deleter()) {}
  // False when the default allocator has no raw deleter to free with.
  bool usable() const { return base_deleter_ != nullptr; }

#if FTUNE_TORCH_AT_LEAST(2, 3)
  c10::DataPtr allocate(size_t n) override {
#else
  c10::DataPtr allocate(size_t n) const override {
#endif
    c10::DataPtr inner = base_->allocate(n);
    void* ptr = inner.release_context();
    {
      std::lock_guard<std::mutex> lock(mu_);
      sizes_[ptr] = n;
      live_ += static_cast<int64_t>(n);
      peak_ = std::max(peak_, live_);
    }
    return {ptr, ptr, &Delete, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &Delete; }
#if FTUNE_TORCH_AT_LEAST(2, 3)
  void copy_data(void* dest, const void* src,
                 std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#endif

  int64_t peak() const {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_;
  }
  void ResetPeak() {
    std::lock_guard<std::mutex> lock(mu_);
    peak_ = live_;
  }

  static CountingCpuAllocator* instance;

 private:
  static void Delete(void* ptr) {
    CountingCpuAllocator* self = instance;
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      auto it = self->sizes_.find(ptr);
      if (it != self->sizes_.end()) {
        self->live_ -= static_cast<int64_t>(it->second);
        self->sizes_.erase(it);
      }
    }
    self->base_deleter_(ptr);
  }

  c10::Allocator* base_;
  const c10::DeleterFnPtr base_deleter_;
  mutable std::mutex mu_;
  mutable std::unordered_map<void*, size_t> sizes_;
  mutable int64_t live_ = 0, peak_ = 0;
};
CountingCpuAllocator* CountingCpuAllocator::instance = nullptr;

}  // namespace

void TrackCpuTensorMemory() {
  static std::once_flag once;
  std::call_once(once, [] {
    c10::Allocator* base = c10::GetDefaultCPUAllocator();
    // Never freed: LibTorch's tensors may outlive every other object.
    auto* counting = new CountingCpuAllocator(base);
    if (!counting->usable()) return;  // cannot wrap: stays untracked
    CountingCpuAllocator::instance = counting;
    c10::SetCPUAllocator(counting, /*priority=*/100);
  });
}

int64_t TensorPeakBytes(const torch::Device& device) {
#if FTUNE_WITH_CUDA
  if (device.is_cuda()) return PeakMemoryBytes(device);
#else
  (void)device;
#endif
  CountingCpuAllocator* c = CountingCpuAllocator::instance;
  return c == nullptr ? 0 : c->peak();
}

void ResetTensorPeak(const torch::Device& device) {
#if FTUNE_WITH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(
        device.has_index() ? device.index() : 0);
    return;
  }
#else
  (void)device;
#endif
  if (CountingCpuAllocator* c = CountingCpuAllocator::instance) c->ResetPeak();
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

bool HasScaledDotProductAttention() { return FTUNE_TORCH_AT_LEAST(2, 0); }

torch::Tensor CausalScaledDotProductAttention(const torch::Tensor& q,
                                              const torch::Tensor& k,
                                              const torch::Tensor& v) {
#if FTUNE_TORCH_AT_LEAST(2, 1)
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{},
                                          /*dropout_p=*/0.0,
                                          /*is_causal=*/true, /*scale=*/1.0);
#elif FTUNE_TORCH_AT_LEAST(2, 0)
  // 2.0 always scales by 1/sqrt(head_dim): undo it on q.
  return at::scaled_dot_product_attention(
      q * std::sqrt(static_cast<double>(q.size(-1))), k, v,
      /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true);
#else
  (void)k;
  (void)v;
  TORCH_CHECK(false,
              "scaled_dot_product_attention needs LibTorch 2.0, this is ",
              TORCH_VERSION, " (q on ", q.device(), ")");
#endif
}

namespace {

// The type a process group's collectives are called on: LibTorch 2.x split
// c10d::ProcessGroup into a dispatching front and per-device c10d::Backend
// objects (ProcessGroupGloo and ProcessGroupNCCL are Backends there); in
// 1.13 they are ProcessGroups.
#if FTUNE_TORCH_AT_LEAST(2, 0)
using C10dBackend = c10d::Backend;
#else
using C10dBackend = c10d::ProcessGroup;
#endif

class C10dCollectives final : public Collectives {
 public:
  C10dCollectives(c10::intrusive_ptr<c10d::Store> store,
                  c10::intrusive_ptr<C10dBackend> group, std::string name)
      : store_(std::move(store)), group_(std::move(group)), name_(name) {}

  void AllReduceSum(torch::Tensor& tensor) override {
    std::vector<torch::Tensor> tensors{tensor};
    group_->allreduce(tensors)->wait();
  }
  void Broadcast(torch::Tensor& tensor, int root) override {
    std::vector<torch::Tensor> tensors{tensor};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    group_->broadcast(tensors, opts)->wait();
  }
  std::string backend() const override { return name_; }

 private:
  c10::intrusive_ptr<c10d::Store> store_;  // outlives the group
  c10::intrusive_ptr<C10dBackend> group_;
  std::string name_;
};

}  // namespace

std::unique_ptr<Collectives> ConnectCollectives(const CollectivesOptions& o) {
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(o.master_port);
  so.isServer = !o.agent_store && o.rank == 0;
  so.numWorkers = static_cast<std::size_t>(o.world_size);
  so.waitWorkers = true;
  so.timeout = o.rendezvous_timeout;
  so.multiTenant = !o.agent_store;
  c10::intrusive_ptr<c10d::Store> store =
      c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
  if (o.agent_store) {
    store = c10::make_intrusive<c10d::PrefixStore>(
        "/worker/attempt_" + std::to_string(o.restart_count), store);
  }
  if (o.device.is_cuda()) {
#if FTUNE_HAVE_NCCL
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = o.collective_timeout;
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(
        store, o.rank, o.world_size, opts);
    return std::make_unique<C10dCollectives>(store, group, "nccl");
#else
    throw std::runtime_error(
        "this ftune-train was built without NCCL (a CUDA LibTorch and "
        "-DFTUNE_WITH_CUDA=ON with nccl.h, docs/gpu.md)");
#endif
  }
  auto opts = c10d::ProcessGroupGloo::Options::create(o.collective_timeout);
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      ifname != nullptr && *ifname != '\0') {
    opts->devices.push_back(
        c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  opts->threads = 2;
  // The Gloo group exchanges its peers' addresses through the store (a
  // collective: every rank must reach it within the rendezvous timeout).
  auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, o.rank,
                                                           o.world_size, opts);
  return std::make_unique<C10dCollectives>(store, group, "gloo");
}

}  // namespace ftune::train::compat
