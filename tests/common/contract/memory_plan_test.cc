// The memory planner's arithmetic (common/contract/memory_plan.h). Its
// accuracy against the trainer's measured peak is
// tests/worker/train/memory_plan_test.cc.
#include "common/contract/memory_plan.h"

#include "gtest/gtest.h"

namespace ftune::contract {
namespace {

// The stories15M shape (Llama): dim 288, 6 layers, 6 heads, ff 768,
// vocab 32000, untied.
MemoryPlanInput Stories() {
  MemoryPlanInput in;
  in.model.vocab_size = 32000;
  in.model.hidden_size = 288;
  in.model.intermediate_size = 768;
  in.model.num_layers = 6;
  in.model.num_heads = 6;
  in.model.num_kv_heads = 6;
  in.lora_rank = 8;
  in.micro_batch = 4;
  in.seq_len = 256;
  return in;
}

TEST(MemoryPlanTest, WeightsAndTrainableCountWhatTheModelHolds) {
  const MemoryPlanInput in = Stories();
  const MemoryPlan p = *PlanMemory(in);
  // Embedding + LM head + 13 norms, and 7 projections per layer, fp32.
  const int64_t d = 288, f = 768, v = 32000, l = 6;
  const int64_t proj = 4 * d * d + 3 * d * f;
  EXPECT_EQ(p.weights, 4 * (2 * v * d + (2 * l + 1) * d + l * proj));
  // LoRA A [r, in] and B [out, r] on each: q k v o (288 -> 288),
  // gate up (288 -> 768), down (768 -> 288).
  const int64_t lora = l * 8 * (4 * 2 * d + 3 * (d + f));
  EXPECT_EQ(p.trainable_parameters, lora);
  // fp32 weights and 2 AdamW moments; the gradients (dropped before each
  // step) count at the forward peak only when micro-batches accumulate.
  EXPECT_EQ(p.trainable, 12 * lora);
  MemoryPlanInput accumulating = in;
  accumulating.gradient_accumulation = 4;
  EXPECT_EQ(PlanMemory(accumulating)->trainable, 16 * lora);
  EXPECT_EQ(p.total, p.weights + p.trainable + p.activations + p.attention +
                         p.logits_loss + p.workspace);
  // The logits buffer is one 256-row chunk, not [tokens, vocab].
  EXPECT_LT(p.logits_loss, 4 * 4 * 256 * v);
}

TEST(MemoryPlanTest, EachKnobMovesTheTermItShould) {
  const MemoryPlanInput base = Stories();
  const MemoryPlan p = *PlanMemory(base);

  MemoryPlanInput q = base;
  q.method = "qlora";
  const MemoryPlan pq = *PlanMemory(q);
  EXPECT_LT(pq.weights, p.weights);
  EXPECT_EQ(pq.trainable, p.trainable);

  MemoryPlanInput c = base;
  c.gradient_checkpointing = true;
  const MemoryPlan pc = *PlanMemory(c);
  EXPECT_LT(pc.activations, p.activations);
  EXPECT_LT(pc.attention, p.attention);

  MemoryPlanInput longer = base;
  longer.seq_len *= 2;
  const MemoryPlan pl = *PlanMemory(longer);
  // Attention is quadratic in the sequence: 2x tokens, > 2x its term
  // (the masks and the per-layer scores grow 4x).
  EXPECT_GT(pl.attention, 3 * p.attention);
  EXPECT_GT(pl.activations, p.activations);

  MemoryPlanInput targets = base;
  targets.target_modules = {"q_proj", "v_proj"};
  EXPECT_EQ(PlanMemory(targets)->trainable_parameters, 6 * 8 * 4 * 288);

  MemoryPlanInput full = base;
  full.method = "full";
  const MemoryPlan pf = *PlanMemory(full);
  EXPECT_GT(pf.trainable, 12 * 6 * (4 * 288 * 288));
  EXPECT_EQ(pf.weights, 0);  // fp32: the master weights are the weights

  MemoryPlanInput bf16 = base;
  bf16.dtype = "bf16";
  EXPECT_LT(PlanMemory(bf16)->weights, p.weights);
}

TEST(MemoryPlanTest, BadInputNamesTheField) {
  MemoryPlanInput in = Stories();
  in.seq_len = 0;
  absl::StatusOr<MemoryPlan> p = PlanMemory(in);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("seq_len"), std::string::npos);
  in = Stories();
  in.method = "adapter";
  EXPECT_NE(PlanMemory(in).status().message().find("method"),
            std::string::npos);
  in = Stories();
  in.dtype = "int8";
  EXPECT_NE(PlanMemory(in).status().message().find("dtype"), std::string::npos);
}

TEST(MemoryPlanTest, LongestFittingSequenceIsTheLastThatFits) {
  const MemoryPlanInput in = Stories();
  const int64_t budget = 2'000'000'000;
  const int64_t seq = LongestFittingSequence(in, budget, 64, 1 << 20);
  ASSERT_GT(seq, 0);
  MemoryPlanInput at = in, next = in;
  at.seq_len = seq;
  next.seq_len = seq + 64;
  EXPECT_LE(PlanMemory(at)->total, budget);
  EXPECT_GT(PlanMemory(next)->total, budget);
  EXPECT_EQ(LongestFittingSequence(in, 1000, 64, 1 << 20), 0);
}

TEST(MemoryPlanTest, ShapeRoundTripsThroughItsText) {
  ModelShape s = Stories().model;
  s.head_dim = 48;
  s.tie_word_embeddings = true;
  s.fused_qkv = true;
  s.sliding_window_kinds = 2;
  const absl::StatusOr<ModelShape> back = DecodeModelShape(EncodeModelShape(s));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(EncodeModelShape(*back), EncodeModelShape(s));
  EXPECT_EQ(back->head_dim, 48);
  EXPECT_TRUE(back->tie_word_embeddings);
  // Unknown keys (a newer writer) are ignored; a bad entry is not.
  EXPECT_TRUE(DecodeModelShape("hidden_size=8,future_key=3").ok());
  EXPECT_FALSE(DecodeModelShape("hidden_size=eight").ok());
}

TEST(MemoryPlanTest, KnownGpusBySubstring) {
  EXPECT_EQ(KnownGpuMemoryBytes("h100 80gb"), int64_t{81559} << 20);
  // Ambiguous: the largest of the matches.
  EXPECT_EQ(KnownGpuMemoryBytes("A100"), int64_t{81920} << 20);
  EXPECT_EQ(KnownGpuMemoryBytes(""), 0);
  EXPECT_EQ(KnownGpuMemoryBytes("TPU"), 0);
}

}  // namespace
}  // namespace ftune::contract
