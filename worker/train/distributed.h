// Data-parallel training: ftune-train as one rank of a torch.distributed
// (c10d) process group.
//
// The launcher contract that torchrun, Slurm (srun with the variables set),
// Kubeflow's torch runtime, SkyPilot and ftune's own worker share:
//   WORLD_SIZE, RANK          required together; RANK < WORLD_SIZE
//   MASTER_ADDR, MASTER_PORT  the rendezvous (a c10d TCPStore; rank 0
//                             hosts it unless torchrun's agent does)
//   LOCAL_RANK, LOCAL_WORLD_SIZE  this host's share (default RANK, WORLD_SIZE)
//   TORCHELASTIC_RESTART_COUNT, TORCHELASTIC_USE_AGENT_STORE  (torchrun)
//   FTUNE_RENDEZVOUS_TIMEOUT_S (default 300), FTUNE_COLLECTIVE_TIMEOUT_S
//                             (default 600)
// Without WORLD_SIZE and RANK the run is one process, exactly as before.
//
// How the loop uses a Distributed (trainer.cc): every rank takes its slice
// of each global batch (ShardOf), weights its loss by the GLOBAL count of
// target tokens (SumInt before backward), so the gradients' sum over ranks
// (AllReduceGradients) is the one-process gradient; losses and counts are
// summed before they are reported (SumDoubles); decisions one rank might
// take alone (stop, out-of-memory retry) go through AnyRank. Only rank 0
// (is_main) writes progress, checkpoints and the adapter.
//
// Errors: every collective returns UNAVAILABLE naming this rank when a peer
// died or the collective or the rendezvous timed out (ExitCodeFor maps it to
// kExitPeerLost, retryable); never a hang past the timeout.
//
// Not thread-safe: one training loop per process, and every rank must make
// the same calls in the same order.
#ifndef FTUNE_WORKER_TRAIN_DISTRIBUTED_H_
#define FTUNE_WORKER_TRAIN_DISTRIBUTED_H_

#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ftune::train {

namespace compat {
class Collectives;
}

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// The launcher's variables, checked.
struct LaunchEnv {
  bool distributed = false;  // WORLD_SIZE and RANK were given
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr;
  int master_port = 0;
  int restart_count = 0;
  bool agent_store = false;
  std::chrono::milliseconds rendezvous_timeout{300000};
  std::chrono::milliseconds collective_timeout{600000};
};

// Reads the variables through `getenv` (std::getenv in ftune-train).
// INVALID_ARGUMENT naming the variable when one is malformed or they
// contradict each other (RANK >= WORLD_SIZE, WORLD_SIZE without
// MASTER_ADDR, ...).
absl::StatusOr<LaunchEnv> ReadLaunchEnv(
    const std::function<const char*(const char*)>& getenv);

class Distributed {
 public:
  // World size 1, no process group: every collective is the identity.
  Distributed();
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  // The rendezvous and a Gloo (CPU) or NCCL (CUDA) process group for
  // `device`. Without env.distributed, the single-process context.
  // UNAVAILABLE when the rendezvous fails or times out.
  static absl::StatusOr<std::unique_ptr<Distributed>> Connect(
      const LaunchEnv& env, const std::string& device);

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool is_main() const { return env_.rank == 0; }
  bool active() const { return collectives_ != nullptr; }
  const LaunchEnv& env() const { return env_; }

  // The device this rank trains on: "cuda" without an index becomes
  // cuda:LOCAL_RANK when this process sees more than one GPU (torchrun
  // style); with one visible GPU (the agent sets CUDA_VISIBLE_DEVICES per
  // rank) or on CPU the spec's device as it is.
  std::string DeviceFor(const std::string& spec_device) const;

  // This rank's contiguous slice [begin, end) of `n` items: rank r takes
  // [r*n/W, (r+1)*n/W), so the slices are disjoint and cover all n.
  std::pair<int64_t, int64_t> ShardOf(int64_t n) const;

  // This rank's slice of `all` (ShardOf).
  template <typename T>
  std::vector<T> Shard(const std::vector<T>& all) const {
    const auto [begin, end] = ShardOf(static_cast<int64_t>(all.size()));
    return std::vector<T>(all.begin() + begin, all.begin() + end);
  }

  // After a step's backward on every rank: sums the LoRA gradients
  // (AllReduceGradients), the loss and the token count over ranks. The
  // loss each rank passes in must already be weighted by the global
  // number of target tokens, so the sums are the global batch's.
  absl::Status ReduceStep(NamedTensors& params, double* loss, int64_t* tokens);
  // Seconds the last ReduceStep spent in the gradient all-reduce.
  double last_allreduce_seconds() const { return last_allreduce_seconds_; }

  // Sums over ranks (fp64 for doubles: the reported losses).
  absl::StatusOr<int64_t> SumInt(int64_t value);
  absl::Status SumDoubles(std::vector<double>& values);
  // True on every rank when it is true on any.
  absl::StatusOr<bool> AnyRank(bool value);

  // Sums the gradients of `params` over ranks in one flat fp32 buffer per
  // dtype and device (one all-reduce for all LoRA tensors); an undefined
  // gradient counts as zeros and becomes defined. Returns the seconds spent
  // in the all-reduce itself (bench reports its share of a step).
  absl::StatusOr<double> AllReduceGradients(NamedTensors& params);
  // Every rank ends with rank 0's values of `params` (in place).
  absl::Status BroadcastFromMain(NamedTensors& params);

  // Re-seeds this process's default generator (dropout) from (seed, step,
  // rank) before a step, so ranks draw independent masks and a resumed run
  // draws the same ones as an uninterrupted run. No-op when not active().
  void SeedStep(uint64_t seed, int64_t step) const;

 private:
  absl::Status Failed(const char* what, const std::exception& e) const;

  LaunchEnv env_;
  std::unique_ptr<compat::Collectives> collectives_;
  double last_allreduce_seconds_ = 0;
};

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_DISTRIBUTED_H_
