// The launcher variables and the collectives the training loop needs, over
// compat::Collectives (c10d; torch_compat.cc holds the version differences).
#include "worker/train/distributed.h"

#include <chrono>
#include <cmath>
#include <exception>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"
#include "worker/train/torch_compat.h"

namespace ftune::train {

namespace {

// An integer variable in [lo, hi]; `*present` says whether it was set.
absl::Status IntVar(const std::function<const char*(const char*)>& getenv,
                    const char* name, int64_t lo, int64_t hi, int64_t* out,
                    bool* present) {
  const char* v = getenv(name);
  *present = v != nullptr && *v != '\0';
  if (!*present) return absl::OkStatus();
  int64_t n = 0;
  if (!absl::SimpleAtoi(v, &n) || n < lo || n > hi)
    return absl::InvalidArgumentError(
        absl::StrCat("launcher variable ", name, "=\"", v,
                     "\" must be an integer in [", lo, ", ", hi, "]"));
  *out = n;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LaunchEnv> ReadLaunchEnv(
    const std::function<const char*(const char*)>& getenv) {
  LaunchEnv env;
  constexpr int64_t kMaxRanks = 1 << 20;
  int64_t world = 1, rank = 0, local_rank = -1, local_world = -1, port = 0,
          restarts = 0, rdzv_s = 300, coll_s = 600;
  bool has_world, has_rank, has_local_rank, has_local_world, has_port, unused;
  absl::Status st;
  if (!(st = IntVar(getenv, "WORLD_SIZE", 1, kMaxRanks, &world, &has_world))
           .ok() ||
      !(st = IntVar(getenv, "RANK", 0, kMaxRanks, &rank, &has_rank)).ok() ||
      !(st = IntVar(getenv, "LOCAL_RANK", 0, kMaxRanks, &local_rank,
                    &has_local_rank))
           .ok() ||
      !(st = IntVar(getenv, "LOCAL_WORLD_SIZE", 1, kMaxRanks, &local_world,
                    &has_local_world))
           .ok() ||
      !(st = IntVar(getenv, "MASTER_PORT", 1, 65535, &port, &has_port)).ok() ||
      !(st = IntVar(getenv, "TORCHELASTIC_RESTART_COUNT", 0, 1 << 30, &restarts,
                    &unused))
           .ok() ||
      !(st = IntVar(getenv, "FTUNE_RENDEZVOUS_TIMEOUT_S", 1, 86400, &rdzv_s,
                    &unused))
           .ok() ||
      !(st = IntVar(getenv, "FTUNE_COLLECTIVE_TIMEOUT_S", 1, 86400, &coll_s,
                    &unused))
           .ok())
    return st;
  env.rendezvous_timeout = std::chrono::seconds(rdzv_s);
  env.collective_timeout = std::chrono::seconds(coll_s);
  if (!has_world && !has_rank) {
    if (has_local_rank || has_local_world)
      return absl::InvalidArgumentError(
          "launcher variable LOCAL_RANK or LOCAL_WORLD_SIZE is set without "
          "WORLD_SIZE and RANK");
    return env;  // one process, no process group
  }
  if (!has_world)
    return absl::InvalidArgumentError(
        "launcher variable WORLD_SIZE is missing (RANK is set)");
  if (!has_rank)
    return absl::InvalidArgumentError(
        "launcher variable RANK is missing (WORLD_SIZE is set)");
  if (rank >= world)
    return absl::InvalidArgumentError(absl::StrCat(
        "launcher variable RANK=", rank, " must be below WORLD_SIZE=", world));
  const char* addr = getenv("MASTER_ADDR");
  if (addr == nullptr || *addr == '\0')
    return absl::InvalidArgumentError(
        "launcher variable MASTER_ADDR is missing (WORLD_SIZE is set)");
  if (!has_port)
    return absl::InvalidArgumentError(
        "launcher variable MASTER_PORT is missing (WORLD_SIZE is set)");
  if (!has_local_world) local_world = world;
  if (!has_local_rank) local_rank = rank % local_world;
  if (local_world > world)
    return absl::InvalidArgumentError(
        absl::StrCat("launcher variable LOCAL_WORLD_SIZE=", local_world,
                     " must not exceed WORLD_SIZE=", world));
  if (local_rank >= local_world)
    return absl::InvalidArgumentError(
        absl::StrCat("launcher variable LOCAL_RANK=", local_rank,
                     " must be below LOCAL_WORLD_SIZE=", local_world));
  const char* agent = getenv("TORCHELASTIC_USE_AGENT_STORE");
  env.distributed = true;
  env.world_size = static_cast<int>(world);
  env.rank = static_cast<int>(rank);
  env.local_rank = static_cast<int>(local_rank);
  env.local_world_size = static_cast<int>(local_world);
  env.master_addr = addr;
  env.master_port = static_cast<int>(port);
  env.restart_count = static_cast<int>(restarts);
  env.agent_store = agent != nullptr && std::string(agent) == "True";
  return env;
}

Distributed::Distributed() = default;
Distributed::~Distributed() = default;

absl::StatusOr<std::unique_ptr<Distributed>> Distributed::Connect(
    const LaunchEnv& env, const std::string& device) {
  auto d = std::make_unique<Distributed>();
  d->env_ = env;
  if (!env.distributed) return d;
  compat::CollectivesOptions o;
  o.rank = env.rank;
  o.world_size = env.world_size;
  o.master_addr = env.master_addr;
  o.master_port = env.master_port;
  o.agent_store = env.agent_store;
  o.restart_count = env.restart_count;
  o.rendezvous_timeout = env.rendezvous_timeout;
  o.collective_timeout = env.collective_timeout;
  try {
    o.device = compat::ParseDevice(d->DeviceFor(device));
    const auto t0 = std::chrono::steady_clock::now();
    d->collectives_ = compat::ConnectCollectives(o);
    FTUNE_LOG(INFO) << "rank " << env.rank << " of " << env.world_size
                    << " (local " << env.local_rank << " of "
                    << env.local_world_size
                    << "): " << d->collectives_->backend()
                    << " process group via " << env.master_addr << ":"
                    << env.master_port << " in "
                    << std::chrono::duration<double>(
                           std::chrono::steady_clock::now() - t0)
                           .count()
                    << " s";
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "rank ", env.rank, " of ", env.world_size, ": rendezvous at ",
        env.master_addr, ":", env.master_port, " failed (within ",
        env.rendezvous_timeout.count() / 1000, " s): ", e.what()));
  }
  return d;
}

std::string Distributed::DeviceFor(const std::string& spec_device) const {
  if (!env_.distributed || spec_device != "cuda") return spec_device;
#if FTUNE_WITH_CUDA
  if (torch::cuda::device_count() > 1)
    return absl::StrCat("cuda:", env_.local_rank);
#endif
  return spec_device;
}

std::pair<int64_t, int64_t> Distributed::ShardOf(int64_t n) const {
  const int64_t w = env_.world_size, r = env_.rank;
  return {r * n / w, (r + 1) * n / w};
}

absl::Status Distributed::Failed(const char* what,
                                 const std::exception& e) const {
  return absl::UnavailableError(absl::StrCat(
      "rank ", env_.rank, " of ", env_.world_size, ": ", what,
      " failed (a peer rank exited or the collective timed out after ",
      env_.collective_timeout.count() / 1000, " s): ", e.what()));
}

absl::StatusOr<int64_t> Distributed::SumInt(int64_t value) {
  if (!active()) return value;
  try {
    torch::Tensor t = torch::tensor({value}, torch::kInt64);
    collectives_->AllReduceSum(t);
    return t.item<int64_t>();
  } catch (const std::exception& e) {
    return Failed("all-reduce of a count", e);
  }
}

absl::Status Distributed::SumDoubles(std::vector<double>& values) {
  if (!active() || values.empty()) return absl::OkStatus();
  try {
    torch::Tensor t =
        torch::from_blob(values.data(), {static_cast<int64_t>(values.size())},
                         torch::kFloat64)
            .clone();
    collectives_->AllReduceSum(t);
    for (size_t i = 0; i < values.size(); ++i)
      values[i] = t[static_cast<int64_t>(i)].item<double>();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return Failed("all-reduce of the losses", e);
  }
}

absl::StatusOr<bool> Distributed::AnyRank(bool value) {
  FTUNE_ASSIGN_OR_RETURN(int64_t n, SumInt(value ? 1 : 0));
  return n > 0;
}

absl::StatusOr<double> Distributed::AllReduceGradients(NamedTensors& params) {
  if (!active() || params.empty()) return 0.0;
  try {
    torch::NoGradGuard no_grad;
    // One buffer per (device, dtype): LoRA weights share both, so in
    // practice one all-reduce per step.
    std::vector<size_t> pending(params.size());
    for (size_t i = 0; i < params.size(); ++i) pending[i] = i;
    double seconds = 0;
    while (!pending.empty()) {
      const torch::Tensor& first = params[pending.front()].second;
      std::vector<size_t> group, rest;
      for (size_t i : pending) {
        const torch::Tensor& p = params[i].second;
        (p.device() == first.device() && p.scalar_type() == first.scalar_type()
             ? group
             : rest)
            .push_back(i);
      }
      std::vector<torch::Tensor> flat;
      flat.reserve(group.size());
      for (size_t i : group) {
        torch::Tensor& p = params[i].second;
        if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
        flat.push_back(p.grad().reshape({-1}));
      }
      torch::Tensor buffer = torch::cat(flat);
      const auto t0 = std::chrono::steady_clock::now();
      collectives_->AllReduceSum(buffer);
      seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
              .count();
      int64_t offset = 0;
      for (size_t i : group) {
        torch::Tensor& p = params[i].second;
        const int64_t n = p.numel();
        p.mutable_grad().copy_(
            buffer.narrow(0, offset, n).view(p.grad().sizes()));
        offset += n;
      }
      pending = std::move(rest);
    }
    return seconds;
  } catch (const std::exception& e) {
    return Failed("all-reduce of the LoRA gradients", e);
  }
}

absl::Status Distributed::ReduceStep(NamedTensors& params, double* loss,
                                     int64_t* tokens) {
  if (!active()) return absl::OkStatus();
  FTUNE_ASSIGN_OR_RETURN(last_allreduce_seconds_, AllReduceGradients(params));
  std::vector<double> sums{*loss, static_cast<double>(*tokens)};
  FTUNE_RETURN_IF_ERROR(SumDoubles(sums));
  *loss = sums[0];
  *tokens = static_cast<int64_t>(std::llround(sums[1]));
  return absl::OkStatus();
}

absl::Status Distributed::BroadcastFromMain(NamedTensors& params) {
  if (!active()) return absl::OkStatus();
  try {
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : params) {
      torch::Tensor t = p.detach().contiguous();
      collectives_->Broadcast(t, /*root=*/0);
      if (!t.is_same(p)) p.copy_(t);
    }
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return Failed("broadcast of the LoRA weights", e);
  }
}

void Distributed::SeedStep(uint64_t seed, int64_t step) const {
  if (!active()) return;
  // splitmix64 of (seed, step, rank): independent streams per rank and step.
  uint64_t x = seed * 0x9E3779B97F4A7C15ull ^
               (static_cast<uint64_t>(step) << 20) ^
               static_cast<uint64_t>(env_.rank);
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  torch::manual_seed(x);
}

}  // namespace ftune::train
