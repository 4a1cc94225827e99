// The memory planner's verdict at job creation (server/core/memory_check.h):
// which device memory a job is compared with, the refusal with its
// suggestions, the close-to-the-limit warning.
#include "server/core/memory_check.h"

#include <string>

#include "gtest/gtest.h"

namespace ftune::core {
namespace {

contract::ModelShape Llama8B() {
  contract::ModelShape s;
  s.vocab_size = 128256;
  s.hidden_size = 4096;
  s.intermediate_size = 14336;
  s.num_layers = 32;
  s.num_heads = 32;
  s.num_kv_heads = 8;
  return s;
}

v1::JobSpec GpuSpec(int batch, int seq) {
  v1::JobSpec spec;
  spec.mutable_resources()->set_gpus(1);
  spec.mutable_lora()->set_rank(16);
  spec.mutable_hyperparameters()->set_batch_size(batch);
  spec.mutable_hyperparameters()->set_max_seq_length(seq);
  return spec;
}

Worker GpuWorker(const std::string& id, const std::string& type, int64_t memory,
                 WorkerState state = WorkerState::kActive) {
  Worker w;
  w.id = id;
  w.state = state;
  w.capabilities.gpus = 1;
  w.capabilities.gpu_type = type;
  w.capabilities.gpu_memory_bytes = memory;
  return w;
}

TEST(MemoryCheckTest, TheLargestMatchingWorkerGpuOrTheKnownType) {
  v1::JobSpec spec = GpuSpec(1, 512);
  const std::vector<Worker> workers = {
      GpuWorker("w-l4", "NVIDIA L4", 24'000'000'000),
      GpuWorker("w-a100", "NVIDIA A100-SXM4-40GB", 40'000'000'000),
      GpuWorker("w-lost", "NVIDIA H100 80GB HBM3", 80'000'000'000,
                WorkerState::kLost)};
  DeviceMemory d = DeviceMemoryFor(spec, workers);
  EXPECT_EQ(d.bytes, 40'000'000'000);
  EXPECT_EQ(d.device, "NVIDIA A100-SXM4-40GB (worker w-a100)");
  spec.mutable_resources()->set_gpu_type("l4");
  EXPECT_EQ(DeviceMemoryFor(spec, workers).bytes, 24'000'000'000);
  // Only the LOST worker has an H100: judged by the known H100's memory.
  spec.mutable_resources()->set_gpu_type("H100 80GB");
  d = DeviceMemoryFor(spec, workers);
  EXPECT_EQ(d.bytes, int64_t{81559} << 20);
  EXPECT_EQ(d.device, "a H100 80GB GPU");
  // Unknown everywhere: no check.
  spec.mutable_resources()->set_gpu_type("MI300X");
  EXPECT_EQ(DeviceMemoryFor(spec, workers).bytes, 0);
  // CPU jobs: their host memory reservation, if any.
  v1::JobSpec cpu;
  cpu.mutable_resources()->set_gpus(0);
  EXPECT_EQ(DeviceMemoryFor(cpu, workers).bytes, 0);
  cpu.mutable_resources()->set_memory_bytes(8'000'000'000);
  EXPECT_EQ(DeviceMemoryFor(cpu, workers).bytes, 8'000'000'000);
}

TEST(MemoryCheckTest, RefusalGivesThePredictionAndChangesThatFit) {
  const v1::JobSpec spec = GpuSpec(8, 4096);
  const DeviceMemory l4{24'000'000'000, "NVIDIA L4 (worker w-1)"};
  absl::StatusOr<MemoryVerdict> v = CheckMemory(spec, Llama8B(), l4);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_FALSE(v->fits);
  EXPECT_GT(v->plan.total, l4.bytes);
  const std::string& r = v->refusal;
  EXPECT_NE(r.find("predicted peak memory"), std::string::npos) << r;
  EXPECT_NE(r.find("of NVIDIA L4 (worker w-1)"), std::string::npos) << r;
  EXPECT_NE(r.find("weights "), std::string::npos) << r;  // the breakdown
  // Every suggestion it makes fits when applied.
  EXPECT_NE(r.find("would fit:"), std::string::npos) << r;
  EXPECT_NE(r.find("max_seq_length"), std::string::npos) << r;

  // Applying the checkpointing + QLoRA + micro-batch 1 change: it fits.
  v1::JobSpec smaller = spec;
  smaller.set_method(v1::TRAINING_METHOD_QLORA);
  smaller.mutable_hyperparameters()->set_batch_size(1);
  smaller.mutable_hyperparameters()->set_gradient_checkpointing(true);
  v = CheckMemory(smaller, Llama8B(), l4);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->fits) << v->plan.Breakdown();
  EXPECT_TRUE(v->refusal.empty());
}

TEST(MemoryCheckTest, CloseToTheLimitIsAWarningAndCpuIsNeverRefused) {
  const v1::JobSpec spec = GpuSpec(1, 1024);
  absl::StatusOr<MemoryVerdict> v =
      CheckMemory(spec, Llama8B(), DeviceMemory{0, ""});
  ASSERT_TRUE(v.ok());
  const int64_t total = v->plan.total;
  // 5% headroom: accepted, with a warning.
  v = CheckMemory(spec, Llama8B(),
                  DeviceMemory{total + total / 20, "a test GPU"});
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->fits);
  EXPECT_NE(v->warning.find("within 10%"), std::string::npos) << v->warning;
  v1::JobEstimate est;
  AddMemoryEstimate(*v, &est);
  EXPECT_EQ(est.memory().peak_bytes(), total);
  ASSERT_EQ(est.warnings_size(), 1);
  // 50% headroom: no warning.
  v = CheckMemory(spec, Llama8B(), DeviceMemory{total * 2, "a test GPU"});
  EXPECT_TRUE(v->warning.empty());
  // A CPU job over its reservation: a warning, not a refusal.
  v1::JobSpec cpu = spec;
  cpu.mutable_resources()->set_gpus(0);
  v = CheckMemory(cpu, Llama8B(),
                  DeviceMemory{1'000'000'000, "resources.memory_bytes"});
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->fits);
  EXPECT_NE(v->warning.find("may run out of memory"), std::string::npos);
}

// TRAINING_METHOD_FULL is planned as full fine-tuning: every parameter
// trainable with fp32 masters and AdamW moments, so an 8B model that a LoRA
// job trains on one 80 GB GPU is refused there, with "method LORA" among
// the changes that fit.
TEST(MemoryCheckTest, FullFineTuningCountsEveryWeightsOptimizerState) {
  v1::JobSpec lora = GpuSpec(1, 1024);
  lora.mutable_resources()->set_gpu_type("H100 80GB");
  v1::JobSpec full = lora;
  full.set_method(v1::TRAINING_METHOD_FULL);
  full.clear_lora();
  const DeviceMemory h100 = DeviceMemoryFor(full, {});
  ASSERT_EQ(h100.bytes, int64_t{81559} << 20);

  EXPECT_EQ(MemoryPlanInputOf(full, Llama8B()).method, "full");
  absl::StatusOr<MemoryVerdict> l = CheckMemory(lora, Llama8B(), h100);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_TRUE(l->fits) << l->plan.Breakdown();
  absl::StatusOr<MemoryVerdict> v = CheckMemory(full, Llama8B(), h100);
  ASSERT_TRUE(v.ok()) << v.status();
  // The parameters, counted here from the shape: embeddings and LM head
  // (untied), two norms a layer and the final one, and per layer the q, o
  // (d x d), k, v (d x kv*head_dim) and three MLP projections.
  const int64_t d = 4096, f = 14336, L = 32, kvd = 8 * 128, vocab = 128256;
  const int64_t params = 2 * vocab * d + (2 * L + 1) * d +
                         L * (2 * d * d + 2 * d * kvd + 3 * d * f);
  EXPECT_EQ(v->plan.trainable_parameters, params);
  // fp32 master + two fp32 moments (12 bytes) and the bf16 weights (2).
  EXPECT_GE(v->plan.trainable, 12 * params);
  EXPECT_GE(v->plan.weights, 2 * params);
  EXPECT_FALSE(v->fits);
  EXPECT_GT(v->plan.total, h100.bytes);
  EXPECT_NE(v->refusal.find("method LORA"), std::string::npos) << v->refusal;
  // The estimate carries the full plan.
  v1::JobEstimate est;
  AddMemoryEstimate(*v, &est);
  EXPECT_EQ(est.memory().trainable_parameters(), params);
  EXPECT_EQ(est.memory().peak_bytes(), v->plan.total);
}

}  // namespace
}  // namespace ftune::core
