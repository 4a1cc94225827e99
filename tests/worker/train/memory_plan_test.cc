// The memory planner (common/contract/memory_plan.h) against the trainer's
// measured peak on CPU, over a grid of 12 small shapes: hidden size,
// layers, heads (and GQA), sequence length, micro-batch, LoRA rank and
// targets, fp32/bf16, LoRA/QLoRA, gradient checkpointing on/off.
//
// The measure is compat::TensorPeakBytes: the bytes of live tensors counted
// by a wrapper around LibTorch's CPU allocator over one training step
// (forward, backward, AdamW; setup transients excluded; the gradients are
// dropped before every step, so later steps peak the same). It is exact and
// deterministic (no RSS, no allocator caching), and it is what the CUDA caching
// allocator's allocated-bytes peak measures on a GPU.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/contract/memory_plan.h"
#include "gtest/gtest.h"
#include "worker/train/bench.h"

namespace ftune::train {
namespace {

struct Shape {
  int64_t dim, layers, heads, kv, ff, vocab, seq, batch, rank;
  const char* dtype;
  bool qlora, checkpointing;
  const char* targets = "all-linear";
};

BenchOptions OptionsOf(const Shape& s) {
  const std::string json = absl::StrCat(
      R"({"architectures": ["LlamaForCausalLM"], "hidden_size": )", s.dim,
      R"(, "num_hidden_layers": )", s.layers, R"(, "num_attention_heads": )",
      s.heads, R"(, "num_key_value_heads": )", s.kv,
      R"(, "intermediate_size": )", s.ff, R"(, "vocab_size": )", s.vocab,
      R"(, "rms_norm_eps": 1e-5})");
  BenchOptions o;
  o.config = *ParseModelConfig(json, "test");
  o.seq = s.seq;
  o.batch = s.batch;
  o.rank = s.rank;
  o.targets = {s.targets};
  o.steps = 1;
  o.warmup = 0;
  o.threads = 2;
  o.dtype = s.dtype;
  o.qlora = s.qlora;
  o.gradient_checkpointing = s.checkpointing;
  return o;
}

TEST(MemoryPlanMeasuredTest, WithinTenPercentOfTheMeasuredPeakOnCpu) {
  const std::vector<Shape> shapes = {
      // dim layers heads kv  ff vocab seq batch rank dtype qlora ckpt
      {64, 2, 4, 4, 176, 512, 64, 2, 8, "fp32", false, false},
      {128, 2, 4, 4, 352, 1024, 128, 2, 8, "fp32", false, false},
      {128, 4, 8, 2, 352, 1024, 128, 4, 16, "fp32", false, false},
      {96, 3, 4, 4, 256, 768, 256, 1, 4, "fp32", false, true},
      {128, 2, 4, 4, 352, 1024, 128, 2, 8, "bf16", false, false},
      {160, 3, 5, 5, 432, 2048, 64, 4, 8, "bf16", false, true},
      {128, 2, 4, 4, 352, 1024, 128, 2, 8, "fp32", true, false},
      {128, 4, 8, 4, 352, 1024, 96, 2, 32, "bf16", true, true},
      {256, 2, 8, 8, 688, 2048, 64, 2, 8, "fp32", true, true},
      {64, 6, 4, 1, 176, 512, 192, 2, 2, "fp32", false, false},
      {192, 2, 6, 6, 512, 4096, 32, 8, 8, "bf16", false, false},
      {128, 3, 4, 4, 352, 1024, 128, 2, 8, "fp32", false, false,
       "q_proj,v_proj"},
  };
  for (const Shape& s : shapes) {
    BenchOptions o = OptionsOf(s);
    if (std::string(s.targets) != "all-linear") {
      o.targets = {"q_proj", "v_proj"};
    }
    absl::StatusOr<BenchResult> r = RunBench(o, nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    absl::StatusOr<contract::MemoryPlan> plan =
        contract::PlanMemory(MemoryPlanInputOf(o));
    ASSERT_TRUE(plan.ok()) << plan.status();
    const double measured = static_cast<double>(r->tensor_peak_bytes);
    const double predicted = static_cast<double>(plan->total);
    const double error = (predicted - measured) / measured;
    const std::string label =
        absl::StrCat("dim ", s.dim, " layers ", s.layers, " heads ", s.heads,
                     "/", s.kv, " seq ", s.seq, " batch ", s.batch, " rank ",
                     s.rank, " ", s.dtype, s.qlora ? " qlora" : " lora",
                     s.checkpointing ? " ckpt" : "", " targets ", s.targets);
    // The figures docs/memory.md's accuracy table lists.
    std::printf("| %s | %lld | %lld | %+.1f%% |\n", label.c_str(),
                static_cast<long long>(measured),
                static_cast<long long>(predicted), 100 * error);
    EXPECT_GT(measured, 0) << label;
    EXPECT_LT(std::abs(error), 0.10)
        << label << ": predicted " << predicted << ", measured " << measured
        << " (" << plan->Breakdown() << ")";
  }
}

}  // namespace
}  // namespace ftune::train
