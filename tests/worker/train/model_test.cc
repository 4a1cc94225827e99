// Model correctness: config parsing, a hand-checkable case against plain
// double loops, a float64 reference computed by a separate Python
// implementation (scripts/reference/), packing, loading errors, LoRA
// gradients against finite differences.
#include "worker/train/model.h"

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "common/file_util.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "worker/train/text/dataset_builder.h"
#include "worker/train/torch_compat.h"

namespace ftune::train {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

const char kPython[] = "/usr/bin/python3";

std::string Script(const std::string& name) {
  return std::string(FTUNE_SOURCE_DIR) + "/scripts/reference/" + name;
}

void RunCommand(const std::string& cmd) {
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

PackedSequence Row(std::vector<int32_t> ids, std::vector<int32_t> labels,
                   std::vector<int32_t> pos, std::vector<int32_t> seg) {
  return PackedSequence{std::move(ids), std::move(labels), std::move(pos),
                        std::move(seg)};
}

// One example of `n` tokens with next-token labels (last one ignored).
PackedSequence Example(std::vector<int32_t> ids) {
  PackedSequence s;
  s.input_ids = ids;
  for (size_t i = 0; i < ids.size(); ++i) {
    s.labels.push_back(i + 1 < ids.size() ? ids[i + 1] : kIgnoreLabel);
    s.position_ids.push_back(static_cast<int32_t>(i));
    s.segment_ids.push_back(0);
  }
  return s;
}

PackedSequence Pack(const std::vector<PackedSequence>& parts) {
  PackedSequence out;
  for (size_t k = 0; k < parts.size(); ++k) {
    const auto& p = parts[k];
    out.input_ids.insert(out.input_ids.end(), p.input_ids.begin(),
                         p.input_ids.end());
    out.labels.insert(out.labels.end(), p.labels.begin(), p.labels.end());
    out.position_ids.insert(out.position_ids.end(), p.position_ids.begin(),
                            p.position_ids.end());
    for (size_t i = 0; i < p.input_ids.size(); ++i)
      out.segment_ids.push_back(static_cast<int32_t>(k));
  }
  return out;
}

nlohmann::json RowsJson(const std::vector<PackedSequence>& rows) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& r : rows)
    j.push_back({{"input_ids", r.input_ids},
                 {"labels", r.labels},
                 {"position_ids", r.position_ids},
                 {"segment_ids", r.segment_ids}});
  return {{"rows", j}};
}

std::vector<const PackedSequence*> Ptrs(const std::vector<PackedSequence>& v) {
  std::vector<const PackedSequence*> out;
  for (const auto& r : v) out.push_back(&r);
  return out;
}

TEST(ModelConfigTest, RefusesUnsupportedArchitectureByName) {
  EXPECT_THAT(
      ParseModelConfig(R"({"architectures":["MambaForCausalLM"]})", "c"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("\"MambaForCausalLM\" is not supported (supported: "
                         "LlamaForCausalLM, MistralForCausalLM")));
}

TEST(ModelConfigTest, ValidatesFields) {
  const std::string base =
      R"("architectures":["LlamaForCausalLM"],"vocab_size":10,"hidden_size":8,)"
      R"("intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2)";
  ASSERT_OK_AND_ASSIGN(ModelConfig c, ParseModelConfig("{" + base + "}", "c"));
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_THAT(
      ParseModelConfig("{" + base + R"(,"num_key_value_heads":3})", "c"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("num_key_value_heads")));
  EXPECT_THAT(
      ParseModelConfig("{" + base + R"(,"rope_scaling":{"type":"yarn"}})", "c"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("yarn")));
  EXPECT_THAT(
      ParseModelConfig(R"({"architectures":["LlamaForCausalLM"]})", "c"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("\"vocab_size\" is missing")));
  std::string mistral = base;
  mistral.replace(mistral.find("Llama"), 5, "Mistral");
  EXPECT_THAT(ParseModelConfig("{" + mistral + R"(,"sliding_window":64})", "c"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sliding_window")));
}

// --- Hand-checkable case
// ------------------------------------------------------ 1 layer, hidden 4, 2
// query heads sharing 1 kv head (head_dim 2), ffn 3, vocab 5, tied embeddings.
// The expected loss comes from plain double loops written directly from the
// equations.
double W(int tensor, int i, int j) {
  return 0.5 * std::sin(1.0 + tensor * 1.7 + i * 0.9 + j * 0.37);
}

TEST(ModelTest, HandCheckableTinyCaseMatchesPlainLoops) {
  ftune::testing::TempDir dir;
  const int d = 4, hd = 2, nh = 2, ff = 3, v = 5;
  const double eps = 1e-5, theta = 10000;
  ASSERT_OK(WriteFileAtomically(
      dir.Sub("config.json"),
      R"({"architectures":["LlamaForCausalLM"],"vocab_size":5,"hidden_size":4,
          "intermediate_size":3,"num_hidden_layers":1,"num_attention_heads":2,
          "num_key_value_heads":1,"rms_norm_eps":1e-5,"tie_word_embeddings":true})"));
  struct T {
    const char* name;
    int id, rows, cols;
  };
  const T tensors[] = {
      {"model.embed_tokens.weight", 0, v, d},
      {"model.layers.0.input_layernorm.weight", 1, 1, d},
      {"model.layers.0.post_attention_layernorm.weight", 2, 1, d},
      {"model.layers.0.self_attn.q_proj.weight", 3, nh * hd, d},
      {"model.layers.0.self_attn.k_proj.weight", 4, hd, d},
      {"model.layers.0.self_attn.v_proj.weight", 5, hd, d},
      {"model.layers.0.self_attn.o_proj.weight", 6, d, nh * hd},
      {"model.layers.0.mlp.gate_proj.weight", 7, ff, d},
      {"model.layers.0.mlp.up_proj.weight", 8, ff, d},
      {"model.layers.0.mlp.down_proj.weight", 9, d, ff},
      {"model.norm.weight", 10, 1, d}};
  SafetensorsWriter writer;
  for (const T& t : tensors) {
    std::vector<double> vals;
    for (int i = 0; i < t.rows; ++i)
      for (int j = 0; j < t.cols; ++j)
        vals.push_back(t.rows == 1 ? 1.0 + 0.2 * W(t.id, i, j) : W(t.id, i, j));
    std::vector<int64_t> shape = t.rows == 1
                                     ? std::vector<int64_t>{t.cols}
                                     : std::vector<int64_t>{t.rows, t.cols};
    ASSERT_OK(
        writer.Add(t.name, StDType::kF64, shape, vals.data(), vals.size() * 8));
  }
  ASSERT_OK(writer.WriteAtomically(dir.Sub("model.safetensors")));

  auto w = [&](int id, int i, int j) { return W(id, i, j); };
  auto norm_w = [&](int id, int j) { return 1.0 + 0.2 * W(id, 0, j); };
  const std::vector<int> ids = {3, 1, 4};
  const std::vector<int> labels = {1, 4, 2};
  const int n = 3;
  std::vector<std::vector<double>> x(n, std::vector<double>(d));
  for (int t = 0; t < n; ++t)
    for (int j = 0; j < d; ++j) x[t][j] = w(0, ids[t], j);
  auto rms = [&](const std::vector<double>& in, int id) {
    double ss = 0;
    for (double a : in) ss += a * a;
    double r = 1 / std::sqrt(ss / in.size() + eps);
    std::vector<double> out(in.size());
    for (size_t j = 0; j < in.size(); ++j) out[j] = in[j] * r * norm_w(id, j);
    return out;
  };
  auto matvec = [&](int id, int rows, const std::vector<double>& in) {
    std::vector<double> out(rows, 0);
    for (int i = 0; i < rows; ++i)
      for (size_t j = 0; j < in.size(); ++j) out[i] += w(id, i, j) * in[j];
    return out;
  };
  // Rotate pair (0,1) of each head by pos * theta^0 = pos (head_dim 2).
  auto rope = [&](std::vector<double> vec, int pos) {
    for (size_t h = 0; h < vec.size(); h += hd) {
      double a = vec[h], b = vec[h + 1], ang = pos * std::pow(theta, 0.0);
      vec[h] = a * std::cos(ang) - b * std::sin(ang);
      vec[h + 1] = b * std::cos(ang) + a * std::sin(ang);
    }
    return vec;
  };
  std::vector<std::vector<double>> q(n), k(n), vv(n);
  for (int t = 0; t < n; ++t) {
    auto h = rms(x[t], 1);
    q[t] = rope(matvec(3, nh * hd, h), t);
    k[t] = rope(matvec(4, hd, h), t);
    vv[t] = matvec(5, hd, h);
  }
  for (int t = 0; t < n; ++t) {
    std::vector<double> att(nh * hd, 0);
    for (int head = 0; head < nh; ++head) {
      std::vector<double> s(t + 1);
      double mx = -1e300, z = 0;
      for (int u = 0; u <= t; ++u) {
        s[u] = (q[t][head * hd] * k[u][0] + q[t][head * hd + 1] * k[u][1]) /
               std::sqrt(static_cast<double>(hd));
        mx = std::max(mx, s[u]);
      }
      for (int u = 0; u <= t; ++u) z += std::exp(s[u] - mx);
      for (int u = 0; u <= t; ++u)
        for (int c = 0; c < hd; ++c)
          att[head * hd + c] += std::exp(s[u] - mx) / z * vv[u][c];
    }
    auto o = matvec(6, d, att);
    for (int j = 0; j < d; ++j) x[t][j] += o[j];
    auto h = rms(x[t], 2);
    auto g = matvec(7, ff, h), up = matvec(8, ff, h);
    std::vector<double> act(ff);
    for (int j = 0; j < ff; ++j) act[j] = g[j] / (1 + std::exp(-g[j])) * up[j];
    auto down = matvec(9, d, act);
    for (int j = 0; j < d; ++j) x[t][j] += down[j];
  }
  double loss = 0;
  for (int t = 0; t < n; ++t) {
    auto h = rms(x[t], 10);
    auto logits = matvec(0, v, h);  // tied: embedding rows
    double mx = *std::max_element(logits.begin(), logits.end()), z = 0;
    for (double l : logits) z += std::exp(l - mx);
    loss += mx + std::log(z) - logits[labels[t]];
  }
  loss /= n;

  ModelOptions opts;
  opts.dtype = torch::kFloat64;
  ASSERT_OK_AND_ASSIGN(auto model, Model::Load(dir.path(), opts));
  PackedSequence row = Row({3, 1, 4}, {1, 4, 2}, {0, 1, 2}, {0, 0, 0});
  Batch batch = MakeBatch({&row}, torch::kCPU);
  double got = model->Loss(batch, false).item<double>();
  EXPECT_NEAR(got, loss, 1e-12);
  EXPECT_GT(loss, 0.1);
}

// --- Python float64 reference
// -------------------------------------------------
struct RefCase {
  std::string args;
  torch::Dtype dtype;
  double tol;  // absolute, on logits and loss
};

void CompareWithReference(const RefCase& c) {
  SCOPED_TRACE(c.args);
  ftune::testing::TempDir dir;
  RunCommand(std::string(kPython) + " " + Script("make_tiny_model.py") +
             " --out " + dir.Sub("model") + " " + c.args);
  std::vector<PackedSequence> rows = {
      Pack({Example({5, 9, 2, 7, 1, 3}), Example({4, 4, 8, 1}),
            Example({60, 2, 11})}),
      Example({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}),
      Row({7, 8, 9}, {kIgnoreLabel, 9, kIgnoreLabel}, {0, 1, 2}, {0, 0, 0})};
  {
    std::ofstream f(dir.Sub("batch.json"));
    f << RowsJson(rows).dump();
  }
  RunCommand(std::string(kPython) + " " + Script("reference_forward.py") +
             " --model " + dir.Sub("model") + " --batch " +
             dir.Sub("batch.json") + " --out " + dir.Sub("ref.json"));
  ASSERT_OK_AND_ASSIGN(std::string text, ReadFile(dir.Sub("ref.json")));
  nlohmann::json ref = nlohmann::json::parse(text);

  ModelOptions opts;
  opts.dtype = c.dtype;
  opts.loss_chunk_rows = 4;  // several chunks
  ASSERT_OK_AND_ASSIGN(auto model, Model::Load(dir.Sub("model"), opts));
  Batch batch = MakeBatch(Ptrs(rows), torch::kCPU);
  torch::NoGradGuard no_grad;
  torch::Tensor logits = model->Logits(batch).to(torch::kFloat64);
  double max_err = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t t = 0; t < rows[r].input_ids.size(); ++t) {
      for (int64_t k = 0; k < model->config().vocab_size; ++k) {
        double want = ref["logits"][r][t][k].get<double>();
        max_err =
            std::max(max_err, std::abs(logits[r][t][k].item<double>() - want));
      }
    }
  }
  EXPECT_LT(max_err, c.tol);
  double loss = model->Loss(batch, false).to(torch::kFloat64).item<double>();
  EXPECT_NEAR(loss, ref["loss"].get<double>(), c.tol);
}

TEST(ModelReferenceTest, LlamaFloat64) {
  CompareWithReference({"--arch llama --seed 1", torch::kFloat64, 1e-9});
}
TEST(ModelReferenceTest, LlamaGqaTiedLlama3RopeShardedFloat32) {
  CompareWithReference(
      {"--arch llama --seed 2 --gqa --tied --llama3-rope --shards 3",
       torch::kFloat32, 2e-4});
}
TEST(ModelReferenceTest, Qwen2GqaBf16WeightsInFloat64) {
  CompareWithReference(
      {"--arch qwen2 --seed 3 --gqa --dtype BF16", torch::kFloat64, 1e-9});
}
TEST(ModelReferenceTest, MistralF16WeightsFloat32) {
  CompareWithReference(
      {"--arch mistral --seed 4 --dtype F16", torch::kFloat32, 2e-4});
}

class TinyModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RunCommand(std::string(kPython) + " " + Script("make_tiny_model.py") +
               " --out " + dir_.Sub("model") + " --arch qwen2 --gqa --seed 7");
  }
  std::unique_ptr<Model> Load(torch::Dtype dtype = torch::kFloat64) {
    ModelOptions opts;
    opts.dtype = dtype;
    opts.loss_chunk_rows = 3;
    auto m = Model::Load(dir_.Sub("model"), opts);
    EXPECT_TRUE(m.ok()) << m.status();
    return std::move(m).value();
  }
  ftune::testing::TempDir dir_;
};

TEST_F(TinyModelTest, ExampleLossIsTheSamePackedOrAlone) {
  auto model = Load();
  PackedSequence a = Example({3, 14, 15, 9, 2, 6});
  PackedSequence b = Example({5, 3, 5, 8});
  PackedSequence packed = Pack({b, a});
  // Ignore b's labels in the packed row: what remains is a's loss.
  for (size_t i = 0; i < b.input_ids.size(); ++i)
    packed.labels[i] = kIgnoreLabel;
  torch::NoGradGuard no_grad;
  double alone =
      model->Loss(MakeBatch({&a}, torch::kCPU), false).item<double>();
  double in_pack =
      model->Loss(MakeBatch({&packed}, torch::kCPU), false).item<double>();
  EXPECT_NEAR(alone, in_pack, 1e-12);
  // And padding in a batch with a longer row does not change it either.
  PackedSequence longer = Example({1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  for (auto& l : longer.labels) l = kIgnoreLabel;
  double padded =
      model->Loss(MakeBatch({&a, &longer}, torch::kCPU), false).item<double>();
  EXPECT_NEAR(alone, padded, 1e-12);
  // Without segment ids the example would see b: the loss must differ.
  PackedSequence leaky = packed;
  for (auto& s : leaky.segment_ids) s = 0;
  double leaked =
      model->Loss(MakeBatch({&leaky}, torch::kCPU), false).item<double>();
  EXPECT_GT(std::abs(leaked - alone), 1e-6);
}

// The same property for rows as the text pipeline packs them (the rows the
// trainer gets from TextJsonlSource): PackExamples' segment ids and
// restarting positions, through Model::Loss, the trainer's forward.
TEST_F(TinyModelTest, TextPipelineRowsGiveTheSameLossPackedOrAlone) {
  auto model = Load();
  TokenizedExample a{{7, 3, 9, 12, 40, 41, 42}, {0, 0, 0, 0, 1, 1, 1}, 1};
  TokenizedExample b{{5, 8, 13, 21, 34}, {0, 0, 1, 1, 1}, 2};
  DatasetStats stats;
  std::vector<PackedSequence> packed =
      PackExamples({b, a}, /*max_seq_length=*/32, /*packing=*/true,
                   OverlengthPolicy::kTruncate, &stats);
  ASSERT_EQ(packed.size(), 1u);
  ASSERT_THAT(packed[0].position_ids,
              ::testing::ElementsAre(0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6));
  std::vector<PackedSequence> alone_a = PackExamples(
      {a}, 32, /*packing=*/false, OverlengthPolicy::kTruncate, &stats);
  std::vector<PackedSequence> alone_b = PackExamples(
      {b}, 32, /*packing=*/false, OverlengthPolicy::kTruncate, &stats);
  torch::NoGradGuard no_grad;
  auto loss = [&](const PackedSequence& r) {
    Batch batch = MakeBatch({&r}, torch::kCPU);
    return std::make_pair(model->Loss(batch, false).item<double>(),
                          batch.num_targets);
  };
  auto [la, na] = loss(alone_a[0]);
  auto [lb, nb] = loss(alone_b[0]);
  auto [lp, np] = loss(packed[0]);
  ASSERT_EQ(np, na + nb);
  // The packed mean is the target-weighted mean of the two alone.
  EXPECT_NEAR(lp, (la * na + lb * nb) / (na + nb), 1e-12);
}

TEST_F(TinyModelTest, LoraGradientsMatchFiniteDifferences) {
  auto model = Load();
  torch::manual_seed(3);
  LoraOptions lora;
  lora.rank = 2;
  lora.alpha = 4;
  lora.target_modules = {"all-linear"};
  ASSERT_OK(model->ApplyLora(lora));
  auto params = model->LoraParameters();
  ASSERT_EQ(params.size(), 2u * 7u * 2u);  // 2 layers x 7 modules x {A, B}
  {
    torch::NoGradGuard g;  // B starts at 0; make it nonzero so A gets gradient
    for (auto& [name, p] : params) p.add_(torch::randn_like(p) * 0.1);
  }
  PackedSequence row =
      Pack({Example({3, 14, 15, 9, 2}), Example({5, 3, 5, 8})});
  Batch batch = MakeBatch({&row}, torch::kCPU);
  torch::Tensor loss = model->Loss(batch, false);
  loss.backward();
  torch::NoGradGuard no_grad;
  int checked = 0;
  for (auto& [name, p] : params) {
    ASSERT_TRUE(p.grad().defined()) << name;
    // Two coordinates per tensor, central differences in float64.
    for (int64_t idx : {int64_t{0}, p.numel() - 1}) {
      auto flat = p.view({-1});
      double orig = flat[idx].item<double>();
      const double h = 1e-6;
      flat[idx] = orig + h;
      double up = model->Loss(batch, false).item<double>();
      flat[idx] = orig - h;
      double down = model->Loss(batch, false).item<double>();
      flat[idx] = orig;
      double fd = (up - down) / (2 * h);
      double an = p.grad().view({-1})[idx].item<double>();
      EXPECT_NEAR(an, fd, 1e-6 + 1e-5 * std::abs(fd))
          << name << "[" << idx << "]";
      ++checked;
    }
  }
  EXPECT_EQ(checked, 56);
  // Base weights are frozen.
  EXPECT_FALSE(model->layers()[0].q_proj->base().Dense().requires_grad());
}

// Gradient checkpointing recomputes each layer in backward from the same RNG
// state: with LoRA dropout on, the loss and every LoRA gradient must be
// exactly those of the run that kept its activations.
TEST_F(TinyModelTest, GradientCheckpointingGivesIdenticalGradients) {
  auto model = Load(torch::kFloat32);
  LoraOptions lora;
  lora.rank = 2;
  lora.alpha = 4;
  lora.dropout = 0.3;
  lora.target_modules = {"all-linear"};
  ASSERT_OK(model->ApplyLora(lora));
  auto params = model->LoraParameters();
  {
    torch::NoGradGuard g;  // nonzero B so that A gets a gradient too
    torch::manual_seed(4);
    for (auto& [name, p] : params) p.add_(torch::randn_like(p) * 0.1);
  }
  PackedSequence row =
      Pack({Example({3, 14, 15, 9, 2, 6, 5}), Example({5, 3, 5, 8})});
  Batch batch = MakeBatch({&row, &row}, torch::kCPU);
  auto run = [&](bool checkpointing) {
    model->set_gradient_checkpointing(checkpointing);
    for (auto& [n, p] : params) p.mutable_grad() = torch::Tensor();
    torch::manual_seed(99);  // the same dropout masks in both runs
    torch::Tensor loss = model->Loss(batch, /*training=*/true);
    loss.backward();
    std::vector<torch::Tensor> grads;
    for (auto& [n, p] : params) grads.push_back(p.grad().clone());
    return std::make_pair(loss.item<double>(), grads);
  };
  auto [loss_plain, grads_plain] = run(false);
  auto [loss_ckpt, grads_ckpt] = run(true);
  EXPECT_EQ(loss_plain, loss_ckpt);
  ASSERT_EQ(grads_plain.size(), grads_ckpt.size());
  for (size_t i = 0; i < grads_plain.size(); ++i) {
    EXPECT_GT(grads_plain[i].abs().sum().item<double>(), 0) << params[i].first;
    EXPECT_TRUE(torch::equal(grads_plain[i], grads_ckpt[i]))
        << params[i].first << " max diff "
        << (grads_plain[i] - grads_ckpt[i]).abs().max().item<double>();
  }
  // Dropout is really on: another seed gives another loss.
  model->set_gradient_checkpointing(true);
  torch::manual_seed(100);
  EXPECT_NE(model->Loss(batch, true).item<double>(), loss_plain);
}

// Mixed precision: with bf16 compute the LoRA weights (and so their
// gradients and AdamW state) stay fp32, and loss and gradients follow the
// fp32 model within bf16's precision.
TEST_F(TinyModelTest, Bf16ComputeKeepsFp32LoraWeights) {
  LoraOptions lora;
  lora.rank = 2;
  lora.alpha = 4;
  lora.target_modules = {"all-linear"};
  auto run = [&](torch::Dtype dtype) {
    auto model = Load(dtype);
    torch::manual_seed(5);
    EXPECT_OK(model->ApplyLora(lora));
    auto params = model->LoraParameters();
    {
      torch::NoGradGuard g;
      for (auto& [name, p] : params) p.add_(torch::randn_like(p) * 0.1);
    }
    PackedSequence row = Pack({Example({3, 14, 15, 9, 2, 6, 5, 1, 8})});
    torch::Tensor loss =
        model->Loss(MakeBatch({&row}, torch::kCPU), /*training=*/true);
    EXPECT_EQ(loss.scalar_type(), torch::kFloat32);
    loss.backward();
    for (auto& [name, p] : params) {
      EXPECT_EQ(p.scalar_type(), torch::kFloat32) << name;
      EXPECT_EQ(p.grad().scalar_type(), torch::kFloat32) << name;
    }
    EXPECT_EQ(model->layers()[0].q_proj->base().Dense().scalar_type(), dtype);
    return std::make_pair(loss.item<double>(), params);
  };
  auto [loss32, params32] = run(torch::kFloat32);
  auto [loss16, params16] = run(torch::kBFloat16);
  // bf16 keeps 8 bits of mantissa: ~0.4% per rounding; the loss of a
  // 2-layer model stays within 1%. A gradient's error depends on where the
  // roundings fall: over seeds 1-12 it was 1.3-6.4% per tensor (q/k the
  // worst) and 1.8-2.7% on average, with LibTorch 1.13 and 2.6 alike.
  EXPECT_NEAR(loss16, loss32, 0.01 * std::abs(loss32));
  double sum_rel = 0;
  for (size_t i = 0; i < params32.size(); ++i) {
    torch::Tensor g32 = params32[i].second.grad();
    torch::Tensor g16 = params16[i].second.grad();
    const double rel = ((g16 - g32).norm() / g32.norm()).item<double>();
    EXPECT_LT(rel, 0.1) << params32[i].first;
    sum_rel += rel;
  }
  EXPECT_LT(sum_rel / params32.size(), 0.04);
}

// In fp32 on CPU the LM-head loss runs the fused cross-entropy kernel; in
// fp64 it runs tensor ops. Same loss and LoRA gradients up to fp32 rounding,
// over several loss chunks (3 rows each, the last one short) with ignored
// labels in between.
TEST_F(TinyModelTest, Fp32FusedLossMatchesFloat64) {
  LoraOptions lora;
  lora.rank = 2;
  lora.alpha = 4;
  lora.target_modules = {"all-linear"};
  PackedSequence a = Pack({Example({3, 14, 15, 9, 2, 6, 5, 1, 8})});
  PackedSequence b = Pack({Example({7, 7, 1}), Example({9, 4, 2, 33, 5})});
  b.labels[1] = kIgnoreLabel;
  // Both models get the same LoRA weights (drawn once, in fp64).
  std::vector<torch::Tensor> weights;
  auto run = [&](torch::Dtype dtype) {
    auto model = Load(dtype);
    EXPECT_OK(model->ApplyLora(lora));
    auto params = model->LoraParameters();
    {
      torch::NoGradGuard g;
      torch::manual_seed(5);
      for (size_t i = 0; i < params.size(); ++i) {
        torch::Tensor& p = params[i].second;
        if (weights.size() == i)
          weights.push_back(torch::randn(p.sizes(), torch::kFloat64) * 0.1);
        p.copy_(weights[i]);
      }
    }
    Batch batch = MakeBatch({&a, &b}, torch::kCPU);
    double eval_loss;
    {
      torch::NoGradGuard g;
      eval_loss = model->Loss(batch, /*training=*/false).item<double>();
    }
    torch::Tensor loss = model->Loss(batch, /*training=*/false);
    loss.backward();
    EXPECT_EQ(loss.item<double>(), eval_loss);  // with or without gradient
    return std::make_pair(loss.item<double>(), params);
  };
  auto [loss64, params64] = run(torch::kFloat64);
  auto [loss32, params32] = run(torch::kFloat32);
  EXPECT_NEAR(loss32, loss64, 1e-5 * std::abs(loss64));
  for (size_t i = 0; i < params64.size(); ++i) {
    torch::Tensor g64 = params64[i].second.grad();
    torch::Tensor g32 = params32[i].second.grad().to(torch::kFloat64);
    const double rel = ((g32 - g64).norm() / g64.norm()).item<double>();
    EXPECT_LT(rel, 1e-4) << params64[i].first;
  }
}

TEST_F(TinyModelTest, LoraInitFollowsPeft) {
  auto model = Load(torch::kFloat32);
  LoraOptions lora;
  lora.rank = 4;
  lora.alpha = 8;
  lora.target_modules = {"q_proj", "v_proj"};
  ASSERT_OK(model->ApplyLora(lora));
  Linear* q = model->layers()[1].q_proj.get();
  ASSERT_TRUE(q->has_lora());
  EXPECT_FALSE(model->layers()[1].k_proj->has_lora());
  EXPECT_DOUBLE_EQ(q->scaling(), 2.0);
  EXPECT_EQ(q->lora_b().abs().sum().item<float>(), 0.f);
  const double bound = 1 / std::sqrt(32.0);
  EXPECT_LE(q->lora_a().abs().max().item<double>(), bound);
  EXPECT_GT(q->lora_a().abs().max().item<double>(), 0.5 * bound);
  EXPECT_THAT(
      model->ApplyLora(lora),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already")));
}

TEST(ModelLoadTest, MissingTensorAndWrongShapeAreNamed) {
  ftune::testing::TempDir dir;
  RunCommand(std::string(kPython) + " " + Script("make_tiny_model.py") +
             " --out " + dir.Sub("m") + " --layers 1");
  ASSERT_OK_AND_ASSIGN(auto file,
                       SafetensorsFile::Open(dir.Sub("m/model.safetensors")));
  // Rewrite without one tensor, then with one wrong shape.
  SafetensorsWriter missing, wrong;
  for (const std::string& name : file->Names()) {
    ASSERT_OK_AND_ASSIGN(auto v, file->Get(name));
    if (name != "model.layers.0.mlp.up_proj.weight") {
      ASSERT_OK(missing.Add(name, v.dtype, v.shape, v.data, v.size_bytes));
    }
    std::vector<int64_t> shape = v.shape;
    if (name == "model.norm.weight") shape = {2, shape[0] / 2};
    ASSERT_OK(wrong.Add(name, v.dtype, shape, v.data, v.size_bytes));
  }
  ASSERT_OK(missing.WriteAtomically(dir.Sub("m/model.safetensors")));
  EXPECT_THAT(Model::Load(dir.Sub("m"), ModelOptions()),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("\"model.layers.0.mlp.up_proj.weight\"")));
  ASSERT_OK(wrong.WriteAtomically(dir.Sub("m/model.safetensors")));
  EXPECT_THAT(Model::Load(dir.Sub("m"), ModelOptions()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"model.norm.weight\" has shape [2, 16]")));
}

}  // namespace
}  // namespace ftune::train
