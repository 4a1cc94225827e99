// Blocked attention (nn/blocked_attention.h) against the dense path
// (Attend with AttentionMask) and against a float64 reference whose mask is
// written out with loops; and the packing property through the real model:
// a packed batch gives each document the loss and LoRA gradients it gets
// alone.
#include "worker/train/nn/blocked_attention.h"

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/worker/train/tiny_model.h"
#include "worker/train/batch_padding.h"
#include "worker/train/model.h"
#include "worker/train/nn/attention.h"
#include "worker/train/torch_compat.h"

namespace ftune::train {
namespace {

using torch::Tensor;

// ||a - b|| / ||b||, in float64.
double RelativeError(const Tensor& a, const Tensor& b) {
  const Tensor bd = b.to(torch::kFloat64);
  return (a.to(torch::kFloat64) - bd).norm().item<double>() /
         bd.norm().item<double>();
}

// The float64 reference: the allowed set spelled out token by token, then
// softmax(softcap(q k^T) + mask) v with every kv head repeated.
Tensor ReferenceAttention(const Tensor& q, const Tensor& k, const Tensor& v,
                          const std::vector<std::vector<int>>& segs,
                          int64_t window, double softcap) {
  const int64_t b = q.size(0), h = q.size(1), t = q.size(2);
  Tensor mask = torch::zeros({b, 1, t, t}, torch::kFloat64);
  auto m = mask.accessor<double, 4>();
  for (int64_t r = 0; r < b; ++r)
    for (int64_t i = 0; i < t; ++i)
      for (int64_t j = 0; j < t; ++j) {
        const bool ok = j <= i && segs[r][i] == segs[r][j] &&
                        (window == 0 || i - j < window);
        if (!ok) m[r][0][i][j] = -std::numeric_limits<double>::infinity();
      }
  const int64_t g = h / k.size(1);
  Tensor kk = k.to(torch::kFloat64).repeat_interleave(g, 1);
  Tensor vv = v.to(torch::kFloat64).repeat_interleave(g, 1);
  Tensor s = torch::matmul(q.to(torch::kFloat64), kk.transpose(-2, -1));
  if (softcap > 0) s = torch::tanh(s / softcap) * softcap;
  return torch::matmul(torch::softmax(s + mask, -1), vv);
}

struct Case {
  const char* name;
  std::vector<std::vector<int>> segments;  // per row; -1 = padding
  int64_t window = 0;
  double softcap = 0;
};

std::vector<int> Segments(const std::vector<int>& lengths, int padding) {
  std::vector<int> out;
  for (size_t d = 0; d < lengths.size(); ++d)
    out.insert(out.end(), lengths[d], static_cast<int>(d));
  out.insert(out.end(), padding, -1);
  return out;
}

// 37 tokens, block 8: documents cross block edges, rows differ in where.
std::vector<Case> Cases() {
  const auto causal = Segments({37}, 0);
  const auto padded = Segments({30}, 7);
  const auto packed_a = Segments({5, 11, 1, 17}, 3);
  const auto packed_b = Segments({9, 2, 26}, 0);
  return {
      {"causal", {causal, padded}},
      {"packed", {packed_a, packed_b}},
      {"sliding_window", {packed_a, causal}, /*window=*/6},
      {"softcap", {packed_b, padded}, 0, /*softcap=*/2.5},
      {"window_and_softcap", {packed_a, packed_b}, 4, 1.5},
  };
}

TEST(BlockedAttentionTest, MatchesDenseAndFloat64ReferenceWithGradients) {
  torch::manual_seed(11);
  const int64_t h = 4, kv = 2, hd = 8, t = 37, block = 8;
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    const int64_t b = static_cast<int64_t>(c.segments.size());
    Tensor seg = torch::empty({b, t}, torch::kInt64);
    for (int64_t r = 0; r < b; ++r)
      for (int64_t i = 0; i < t; ++i) seg[r][i] = c.segments[r][i];
    const Tensor q0 = torch::randn({b, h, t, hd}) * 0.8;
    const Tensor k0 = torch::randn({b, kv, t, hd});
    const Tensor v0 = torch::randn({b, kv, t, hd});
    const Tensor dout = torch::randn({b, h, t, hd});
    // Outputs and gradients of one path.
    auto run = [&](torch::Dtype dtype, auto&& attend) {
      Tensor q = q0.to(dtype).clone().requires_grad_(true);
      Tensor k = k0.to(dtype).clone().requires_grad_(true);
      Tensor v = v0.to(dtype).clone().requires_grad_(true);
      Tensor out = attend(q, k, v);
      (out * dout.to(dtype)).sum().backward();
      return std::vector<Tensor>{out.detach(), q.grad(), k.grad(), v.grad()};
    };
    const auto blocked = run(torch::kFloat32, [&](auto& q, auto& k, auto& v) {
      return BlockedAttention(q, k, v, seg, c.window, c.softcap, block);
    });
    const auto dense = run(torch::kFloat32, [&](auto& q, auto& k, auto& v) {
      return Attend(q, k, v, AttentionMask(seg, c.window, q.options()),
                    c.softcap);
    });
    const auto reference = run(torch::kFloat64, [&](auto& q, auto& k, auto& v) {
      return ReferenceAttention(q, k, v, c.segments, c.window, c.softcap);
    });
    const char* what[] = {"output", "dq", "dk", "dv"};
    for (int i = 0; i < 4; ++i) {
      SCOPED_TRACE(what[i]);
      EXPECT_LT(RelativeError(blocked[i], reference[i]), 1e-5);
      EXPECT_LT(RelativeError(blocked[i], dense[i]), 1e-5);
      // Per element too: no token may hide behind the norm.
      EXPECT_TRUE(torch::allclose(blocked[i].to(torch::kFloat64), reference[i],
                                  /*rtol=*/1e-4, /*atol=*/1e-5));
    }
    // The fp64 path of the blocked function itself is exact to rounding.
    const auto blocked64 = run(torch::kFloat64, [&](auto& q, auto& k, auto& v) {
      return BlockedAttention(q, k, v, seg, c.window, c.softcap, block);
    });
    for (int i = 0; i < 4; ++i)
      EXPECT_LT(RelativeError(blocked64[i], reference[i]), 1e-12) << what[i];
    // bf16 activations (fp32 softmax, fp32 key gradient sums).
    const auto bf16 = run(torch::kBFloat16, [&](auto& q, auto& k, auto& v) {
      return BlockedAttention(q, k, v, seg, c.window, c.softcap, block);
    });
    for (int i = 0; i < 4; ++i)
      EXPECT_LT(RelativeError(bf16[i], reference[i]), 3e-2) << what[i];
  }
}

TEST(BlockedAttentionTest, BlockSizeDoesNotChangeTheResult) {
  torch::manual_seed(5);
  const auto segs = Segments({13, 40, 7}, 4);
  Tensor seg = torch::empty({1, 64}, torch::kInt64);
  for (int64_t i = 0; i < 64; ++i) seg[0][i] = segs[i];
  Tensor q = torch::randn({1, 2, 64, 4}, torch::kFloat64);
  Tensor k = torch::randn({1, 2, 64, 4}, torch::kFloat64);
  Tensor v = torch::randn({1, 2, 64, 4}, torch::kFloat64);
  const Tensor one = BlockedAttention(q, k, v, seg, 0, 0, /*block=*/64);
  for (int64_t block : {1, 3, 16, 100}) {
    EXPECT_LT(RelativeError(BlockedAttention(q, k, v, seg, 0, 0, block), one),
              1e-13)
        << block;
  }
}

// What the blocked path computes grows with the documents, not with T^2:
// 4096 tokens of 64-token documents meet fewer than T * (block + 64) keys.
TEST(BlockedAttentionTest, PackedShortDocumentsComputeOnlyTheirBlocks) {
  const int64_t t = 4096, block = 128;
  std::vector<int> lengths(t / 64, 64);
  const auto segs = Segments(lengths, 0);
  Tensor seg = torch::empty({1, t}, torch::kInt64);
  for (int64_t i = 0; i < t; ++i) seg[0][i] = segs[i];
  const AttentionBlocks plan = PlanAttentionBlocks(seg, 0, block);
  int64_t scores = 0;
  for (size_t i = 0; i < plan.q0.size(); ++i) {
    scores += plan.n[i] * plan.len[i];
    // Every block starts its keys at its first document's first token.
    EXPECT_EQ(plan.lo[i], plan.q0[i]);
  }
  EXPECT_EQ(scores, t * block);
  // One causal document: the lower triangle in blocks, about T^2 / 2.
  const AttentionBlocks causal =
      PlanAttentionBlocks(torch::zeros({1, t}, torch::kInt64), 0, block);
  scores = 0;
  for (size_t i = 0; i < causal.q0.size(); ++i)
    scores += causal.n[i] * causal.len[i];
  EXPECT_EQ(scores, t * t / 2 + t * block / 2);
  // A sliding window bounds it by T * (window + block).
  const AttentionBlocks windowed =
      PlanAttentionBlocks(torch::zeros({1, t}, torch::kInt64), 256, block);
  scores = 0;
  for (size_t i = 0; i < windowed.q0.size(); ++i)
    scores += windowed.n[i] * windowed.len[i];
  EXPECT_LE(scores, t * (256 + block));
}

TEST(BlockedAttentionTest, SingleSegmentRows) {
  auto rows = [](std::vector<std::vector<int64_t>> v) {
    Tensor t = torch::empty(
        {static_cast<int64_t>(v.size()), static_cast<int64_t>(v[0].size())},
        torch::kInt64);
    for (size_t r = 0; r < v.size(); ++r)
      for (size_t i = 0; i < v[r].size(); ++i) t[r][i] = v[r][i];
    return t;
  };
  EXPECT_TRUE(SingleSegmentRows(rows({{0, 0, 0}, {0, 0, -1}})));
  EXPECT_FALSE(SingleSegmentRows(rows({{0, 0, 1}})));
  EXPECT_FALSE(SingleSegmentRows(rows({{-1, 0, 0}})));
  EXPECT_FALSE(SingleSegmentRows(rows({{0, -1, 0}})));
}

TEST(BatchPaddingTest, CountsWhatEachMicroBatchPadsToItsLongestRow) {
  PackedSequence a, b, c;
  a.input_ids.assign(3, 1);
  b.input_ids.assign(5, 1);
  c.input_ids.assign(2, 1);
  // [3, 5] padded to 5 + [2]: 2 of 12 positions; one row each: none.
  const BatchPadding two = PaddingOf({&a, &b, &c}, 2);
  EXPECT_EQ(two.padded, 2);
  EXPECT_EQ(two.total, 12);
  const BatchPadding one = PaddingOf({&a, &b, &c}, 1);
  EXPECT_EQ(one.padded, 0);
  EXPECT_EQ(one.total, 10);
  const BatchPadding all = PaddingOf({&a, &b, &c}, 3);
  EXPECT_EQ(all.padded, 5);
  EXPECT_EQ(all.total, 15);
}

// Issue 24's packing test, through Model::Loss: in one packed batch, each
// document's loss and the LoRA gradients of that loss equal those of the
// document run alone (fp32, 1e-5 relative), with blocks small enough that
// documents cross block edges.
TEST(BlockedAttentionTest, PackedBatchGivesEachDocumentItsAloneLossAndGrads) {
  ftune::testing::TempDir dir;
  ASSERT_OK(ftune::testing::WriteTinyLlama(dir.Sub("model"), /*vocab=*/64,
                                           /*seed=*/3));
  ModelOptions opts;
  opts.attention_block = 4;
  auto loaded = Model::Load(dir.Sub("model"), opts);
  ASSERT_OK(loaded.status());
  std::unique_ptr<Model> model = std::move(loaded).value();
  LoraOptions lora;
  lora.rank = 2;
  lora.alpha = 4;
  lora.target_modules = {"all-linear"};
  ASSERT_OK(model->ApplyLora(lora));
  torch::manual_seed(2);
  {
    // Non-zero B so that every LoRA tensor gets a gradient.
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : model->LoraParameters()) p.normal_(0, 0.1);
  }
  // Three documents of uneven length, and a second row of two.
  std::vector<std::vector<int32_t>> docs = {
      {3, 14, 15, 9, 2, 6, 5, 35, 8, 9, 7},
      {5, 3, 5, 8},
      {2, 7, 1, 8, 2, 8, 18, 28, 45, 9, 4, 52, 3, 60},
      {11, 12, 13, 14, 15, 16, 17},
      {40, 41, 42, 43, 44, 45}};
  auto doc_row = [](const std::vector<int32_t>& ids, int32_t seg) {
    PackedSequence s;
    for (size_t i = 0; i < ids.size(); ++i) {
      s.input_ids.push_back(ids[i]);
      s.labels.push_back(i + 1 < ids.size() ? ids[i + 1] : kIgnoreLabel);
      s.position_ids.push_back(static_cast<int32_t>(i));
      s.segment_ids.push_back(seg);
    }
    return s;
  };
  auto append = [](PackedSequence& to, const PackedSequence& from) {
    to.input_ids.insert(to.input_ids.end(), from.input_ids.begin(),
                        from.input_ids.end());
    to.labels.insert(to.labels.end(), from.labels.begin(), from.labels.end());
    to.position_ids.insert(to.position_ids.end(), from.position_ids.begin(),
                           from.position_ids.end());
    to.segment_ids.insert(to.segment_ids.end(), from.segment_ids.begin(),
                          from.segment_ids.end());
  };
  // Row 0: docs 0, 1, 2; row 1: docs 3, 4 (padded to row 0's length).
  const std::vector<std::pair<int, int32_t>> where = {
      {0, 0}, {0, 1}, {0, 2}, {1, 0}, {1, 1}};
  auto loss_and_grads = [&](const std::vector<const PackedSequence*>& rows) {
    for (auto& [name, p] : model->LoraParameters()) p.mutable_grad() = Tensor();
    Tensor loss = model->Loss(MakeBatch(rows, torch::kCPU), false);
    loss.backward();
    std::vector<Tensor> grads;
    for (auto& [name, p] : model->LoraParameters())
      grads.push_back(p.grad().flatten());
    return std::make_pair(loss.item<double>(), torch::cat(grads));
  };
  for (size_t d = 0; d < docs.size(); ++d) {
    SCOPED_TRACE(d);
    PackedSequence alone = doc_row(docs[d], 0);
    const auto [alone_loss, alone_grads] = loss_and_grads({&alone});
    // The packed batch with only document d's targets.
    PackedSequence rows[2];
    for (size_t e = 0; e < docs.size(); ++e) {
      PackedSequence part = doc_row(docs[e], where[e].second);
      if (e != d)
        for (auto& l : part.labels) l = kIgnoreLabel;
      append(rows[where[e].first], part);
    }
    const auto [packed_loss, packed_grads] =
        loss_and_grads({&rows[0], &rows[1]});
    EXPECT_NEAR(packed_loss, alone_loss, 1e-5 * std::abs(alone_loss));
    EXPECT_LT(RelativeError(packed_grads, alone_grads), 1e-5);
    EXPECT_GT(alone_grads.norm().item<double>(), 0);
  }
}

}  // namespace
}  // namespace ftune::train
