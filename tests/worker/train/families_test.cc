// The model families beyond Llama (Qwen3, Phi-3, Gemma 2, GPT-2) against an
// independent float64 reference (scripts/reference/reference_forward.py) on
// tiny random models of each family that the reference's generator writes in
// HF format: logits within 1e-5 relative, LoRA gradients within 1e-4, with a
// PEFT adapter applied by name by the reference (alpha / r, fan_in_fan_out)
// and the trainer's export of the same adapter identical to it. Then what
// every family must support like Llama: gradient checkpointing
// (bit-identical gradients), bf16, QLoRA, merging, exact resume (Phi-3,
// fused projections), PEFT names and adapter_config.json (GPT-2's Conv1D
// modules). Python starts once (it takes seconds); the other tests use
// models of the same configs made in C++ (Model::RandomInit).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/contract/train_spec.h"
#include "common/file_util.h"
#include "common/safetensors.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "worker/train/adapter.h"
#include "worker/train/data.h"
#include "worker/train/model.h"
#include "worker/train/nn/lm_head_loss.h"
#include "worker/train/trainer.h"

namespace ftune::train {
namespace {

using ::testing::ElementsAre;
using json = nlohmann::json;

std::string Script(const std::string& name) {
  return std::string("/usr/bin/python3 ") + FTUNE_SOURCE_DIR +
         "/scripts/reference/" + name;
}

// The configs of the tiny models (the same ones make_tiny_model.py writes
// for --arch qwen3 --gqa / phi3 --gqa --window 4 --longrope --partial-rotary
// 0.5 / gemma2 --gqa / gpt2), for models made in C++.
json TinyConfig(const std::string& family) {
  json c = {{"vocab_size", 64},
            {"hidden_size", 32},
            {"intermediate_size", 72},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 2},
            {"max_position_embeddings", 128},
            {"rms_norm_eps", 1e-5}};
  if (family == "qwen3") {
    c["architectures"] = {"Qwen3ForCausalLM"};
    c["head_dim"] = 16;
  } else if (family == "phi3") {
    c["architectures"] = {"Phi3ForCausalLM"};
    c["sliding_window"] = 4;
    c["partial_rotary_factor"] = 0.5;
    c["original_max_position_embeddings"] = 8;
    c["rope_scaling"] = {{"type", "longrope"},
                         {"short_factor", {1.5, 1.2}},
                         {"long_factor", {2.0, 3.5}}};
  } else if (family == "gemma2") {
    c["architectures"] = {"Gemma2ForCausalLM"};
    c["head_dim"] = 16;
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["query_pre_attn_scalar"] = 24;
    c["attn_logit_softcapping"] = 2.0;
    c["final_logit_softcapping"] = 5.0;
    c["sliding_window"] = 3;
  } else {
    c = {{"architectures", {"GPT2LMHeadModel"}},
         {"vocab_size", 64},
         {"n_embd", 32},
         {"n_layer", 2},
         {"n_head", 4},
         {"n_positions", 128}};
  }
  return c;
}

ModelConfig TinyModelConfig(const std::string& family) {
  absl::StatusOr<ModelConfig> c =
      ParseModelConfig(TinyConfig(family).dump(), family);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.value_or(ModelConfig());
}

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
    out.segment_ids.insert(out.segment_ids.end(), p.input_ids.size(),
                           static_cast<int32_t>(k));
  }
  return out;
}

// Packed rows, padding, and (long) a row of 11 tokens: longer than the tiny
// models' sliding windows (3-4) and than the LongRoPE test model's
// original_max_position_embeddings (8). The short rows stay within 8.
std::vector<PackedSequence> Rows(bool long_rows) {
  std::vector<PackedSequence> rows = {
      Pack({Example({5, 9, 2, 7, 1, 3}), Example({4, 4, 8, 1}),
            Example({60, 2, 11})}),
      Example({7, 8, 9, 10, 3})};
  if (long_rows) rows.push_back(Example({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  return rows;
}

std::vector<const PackedSequence*> Ptrs(const std::vector<PackedSequence>& v) {
  std::vector<const PackedSequence*> out;
  for (const auto& r : v) out.push_back(&r);
  return out;
}

// Nested JSON lists of numbers as a float64 tensor.
torch::Tensor FromJson(const json& j) {
  std::vector<int64_t> shape;
  for (const json* p = &j; p->is_array(); p = &(*p)[0])
    shape.push_back(static_cast<int64_t>(p->size()));
  std::vector<double> flat;
  std::function<void(const json&)> walk = [&](const json& x) {
    if (x.is_array()) {
      for (const json& y : x) walk(y);
    } else {
      flat.push_back(x.get<double>());
    }
  };
  walk(j);
  return torch::tensor(flat, torch::kFloat64).reshape(shape);
}

// max |trainer - reference| / max |reference| over the rows' real tokens.
double LogitsError(const torch::Tensor& logits,
                   const std::vector<PackedSequence>& rows, const json& ref) {
  double err = 0, scale = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    torch::Tensor want = FromJson(ref["logits"][r]);
    torch::Tensor got =
        logits[r].narrow(0, 0, want.size(0)).to(torch::kFloat64);
    err = std::max(err, (got - want).abs().max().item<double>());
    scale = std::max(scale, want.abs().max().item<double>());
  }
  return err / scale;
}

std::unique_ptr<Model> Load(const std::string& dir, torch::Dtype dtype) {
  ModelOptions opts;
  opts.dtype = dtype;
  opts.loss_chunk_rows = 4;  // several chunks
  absl::StatusOr<std::unique_ptr<Model>> m = Model::Load(dir, opts);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : nullptr;
}

std::unique_ptr<Model> Random(const std::string& family, torch::Dtype dtype,
                              bool qlora = false) {
  ModelOptions opts;
  opts.dtype = dtype;
  opts.loss_chunk_rows = 4;
  if (qlora) opts.quantization = QuantOptions{};
  torch::manual_seed(11);  // the same weights for every dtype
  return Model::RandomInit(TinyModelConfig(family), opts);
}

// LoRA on every linear module, with nonzero A and B drawn from `seed` (so
// that every module's update and gradient matter).
NamedTensors AddLora(Model& model, uint64_t seed, double dropout = 0) {
  LoraOptions lora;
  lora.rank = 2;
  lora.alpha = 4;  // scaling 2
  lora.dropout = dropout;
  lora.target_modules = {"all-linear"};
  EXPECT_OK(model.ApplyLora(lora));
  NamedTensors params = model.LoraParameters();
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& [name, p] : params)
    p.copy_(torch::randn(p.sizes(), torch::kFloat64) * 0.2);
  return params;
}

// --- Against the float64 reference -----------------------------------------

struct RefCase {
  const char* name;
  const char* args;  // make_tiny_model.py
  bool long_rows;
};

const RefCase kRefCases[] = {
    {"qwen3", "--arch qwen3 --gqa --seed 21", true},
    {"qwen3 tied, sharded", "--arch qwen3 --seed 22 --tied --shards 2", true},
    {"phi3 longrope (long) partial window",
     "--arch phi3 --gqa --seed 23 --window 4 --longrope --partial-rotary 0.5",
     true},
    {"phi3 longrope (short) partial window",
     "--arch phi3 --gqa --seed 23 --window 4 --longrope --partial-rotary 0.5",
     false},
    {"phi3 tied, plain rope", "--arch phi3 --seed 24 --tied", true},
    {"gemma2", "--arch gemma2 --gqa --seed 25", true},
    {"gpt2", "--arch gpt2 --seed 26", true},
    {"gpt2 bare names, sharded", "--arch gpt2 --seed 27 --no-prefix --shards 2",
     true},
};

json RowsJson(const std::vector<PackedSequence>& rows) {
  json out = json::array();
  for (const auto& r : rows)
    out.push_back({{"input_ids", r.input_ids},
                   {"labels", r.labels},
                   {"position_ids", r.position_ids},
                   {"segment_ids", r.segment_ids}});
  return out;
}

// One test for every case, so that Python (and torch) start once: the
// reference makes each model and a random PEFT adapter for it, and computes
// the logits, loss and LoRA gradients in float64. The trainer loads the
// model (fp32), takes the adapter's tensors by their PEFT names, and must
// give the same logits (1e-5 relative), loss and gradients (1e-4 relative);
// its own export of the adapter must be that adapter (names, tensors,
// fan_in_fan_out), so what the trainer publishes is what the reference
// applied by name.
TEST(FamilyReferenceTest, EveryFamilyMatchesTheFloat64Reference) {
  ftune::testing::TempDir tmp;
  json jobs = json::array();
  for (size_t i = 0; i < std::size(kRefCases); ++i) {
    const std::string d = tmp.Sub(absl::StrCat("case", i));
    // Cases that share arguments share the model.
    std::string model = d + "/model";
    bool make = true;
    for (size_t k = 0; k < i; ++k) {
      if (std::string(kRefCases[k].args) == kRefCases[i].args) {
        model = tmp.Sub(absl::StrCat("case", k, "/model"));
        make = false;
      }
    }
    jobs.push_back({{"make", make ? json(kRefCases[i].args) : json(nullptr)},
                    {"model", model},
                    {"rows", RowsJson(Rows(kRefCases[i].long_rows))},
                    {"adapter",
                     {{"dir", d + "/adapter"},
                      {"rank", 2},
                      {"alpha", 4},
                      {"seed", 100 + i}}},
                    {"out", d + "/ref.json"}});
  }
  ASSERT_OK(WriteFileAtomically(tmp.Sub("jobs.json"), jobs.dump()));
  ASSERT_EQ(std::system((Script("reference_forward.py") + " --jobs " +
                         tmp.Sub("jobs.json"))
                            .c_str()),
            0);

  for (size_t i = 0; i < std::size(kRefCases); ++i) {
    SCOPED_TRACE(kRefCases[i].name);
    const json& job = jobs[i];
    ASSERT_OK_AND_ASSIGN(std::string text,
                         ReadFile(job["out"].get<std::string>()));
    const json ref = json::parse(text);
    const std::vector<PackedSequence> rows = Rows(kRefCases[i].long_rows);
    Batch batch = MakeBatch(Ptrs(rows), torch::kCPU);

    // The base model.
    std::unique_ptr<Model> model = Load(job["model"], torch::kFloat32);
    ASSERT_NE(model, nullptr);
    {
      torch::NoGradGuard no_grad;
      EXPECT_LT(LogitsError(model->Logits(batch), rows, ref["base"]), 1e-5);
      const double want = ref["base"]["loss"].get<double>();
      EXPECT_NEAR(model->Loss(batch, false).item<double>(), want,
                  1e-5 * std::abs(want));
    }

    // With the reference's adapter, taken by name.
    const std::string adapter_dir = job["adapter"]["dir"];
    NamedTensors params = AddLora(*model, 1);
    ASSERT_OK_AND_ASSIGN(
        NamedTensors adapter,
        ReadTensors(JoinPath(adapter_dir, "adapter_model.safetensors")));
    ASSERT_EQ(adapter.size(), params.size());
    {
      std::map<std::string, torch::Tensor> by_name(adapter.begin(),
                                                   adapter.end());
      torch::NoGradGuard no_grad;
      for (auto& [name, p] : params) {
        ASSERT_EQ(by_name.count(name), 1u) << name << " is not PEFT's name";
        ASSERT_TRUE(by_name[name].sizes().equals(p.sizes())) << name;
        p.copy_(by_name[name]);
      }
    }
    const json& aref = ref["adapter"];
    double logits_err;
    {
      torch::NoGradGuard no_grad;
      torch::Tensor logits = model->Logits(batch);
      logits_err = LogitsError(logits, rows, aref);
      EXPECT_LT(logits_err, 1e-5);
      // The adapter matters (so the check above is not the base model's).
      EXPECT_GT(LogitsError(logits, rows, ref["base"]), 1e-2);
    }
    torch::Tensor loss = model->Loss(batch, /*training=*/false);
    const double want = aref["loss"].get<double>();
    EXPECT_NEAR(loss.item<double>(), want, 1e-5 * std::abs(want));
    loss.backward();
    double grad_err = 0;
    for (auto& [name, p] : params) {
      ASSERT_TRUE(aref["grads"].contains(name)) << name;
      torch::Tensor g_ref = FromJson(aref["grads"][name]);
      ASSERT_TRUE(p.grad().defined()) << name;
      torch::Tensor g = p.grad().to(torch::kFloat64);
      const double norm = g_ref.norm().item<double>();
      EXPECT_GT(norm, 0) << name;
      const double rel = (g - g_ref).norm().item<double>() / norm;
      EXPECT_LT(rel, 1e-4) << name;
      grad_err = std::max(grad_err, rel);
    }
    std::cout << kRefCases[i].name << ": logits " << logits_err
              << " relative, LoRA gradients " << grad_err
              << " relative (worst tensor)\n";

    // The trainer's export of this adapter is the reference's.
    ftune::testing::TempDir out;
    ASSERT_OK(
        WriteAdapterFiles(out.path(), model->lora_options(), "base", params));
    ASSERT_OK_AND_ASSIGN(NamedTensors exported,
                         ReadTensors(out.Sub("adapter_model.safetensors")));
    ASSERT_EQ(exported.size(), adapter.size());
    std::map<std::string, torch::Tensor> want_tensors(adapter.begin(),
                                                      adapter.end());
    for (auto& [name, t] : exported)
      EXPECT_TRUE(torch::equal(t, want_tensors[name])) << name;
    ASSERT_OK_AND_ASSIGN(std::string mine,
                         ReadFile(out.Sub("adapter_config.json")));
    ASSERT_OK_AND_ASSIGN(
        std::string theirs,
        ReadFile(JoinPath(adapter_dir, "adapter_config.json")));
    const json a = json::parse(mine), b = json::parse(theirs);
    for (const char* key : {"r", "lora_alpha", "fan_in_fan_out", "peft_type"})
      EXPECT_EQ(a[key], b[key]) << key;
    std::vector<std::string> ta = a["target_modules"], tb = b["target_modules"];
    std::sort(ta.begin(), ta.end());
    EXPECT_EQ(ta, tb);
  }
}

// --- What every family supports like Llama -----------------------------------

class FamilyTest : public ::testing::TestWithParam<const char*> {};

// Recomputing each layer in backward (same RNG state, so LoRA dropout draws
// the same masks) gives exactly the gradients of keeping the activations.
TEST_P(FamilyTest, GradientCheckpointingGivesIdenticalGradients) {
  std::unique_ptr<Model> model = Random(GetParam(), torch::kFloat32);
  NamedTensors params = AddLora(*model, 3, /*dropout=*/0.3);
  const std::vector<PackedSequence> rows = Rows(true);
  Batch batch = MakeBatch(Ptrs(rows), torch::kCPU);
  auto run = [&](bool checkpointing) {
    model->set_gradient_checkpointing(checkpointing);
    for (auto& [n, p] : params) p.mutable_grad() = torch::Tensor();
    torch::manual_seed(99);
    torch::Tensor loss = model->Loss(batch, /*training=*/true);
    loss.backward();
    std::vector<torch::Tensor> grads;
    for (auto& [n, p] : params) grads.push_back(p.grad().clone());
    return std::make_pair(loss.item<double>(), grads);
  };
  auto [loss_plain, grads_plain] = run(false);
  auto [loss_ckpt, grads_ckpt] = run(true);
  EXPECT_EQ(loss_plain, loss_ckpt);
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_GT(grads_plain[i].abs().sum().item<double>(), 0) << params[i].first;
    EXPECT_TRUE(torch::equal(grads_plain[i], grads_ckpt[i])) << params[i].first;
  }
}

// bf16 compute: fp32 LoRA weights and gradients, loss near the fp32 one.
TEST_P(FamilyTest, Bf16ComputeFollowsFp32) {
  const std::vector<PackedSequence> rows = Rows(true);
  auto run = [&](torch::Dtype dtype) {
    std::unique_ptr<Model> model = Random(GetParam(), dtype);
    NamedTensors params = AddLora(*model, 5);
    torch::Tensor loss = model->Loss(MakeBatch(Ptrs(rows), torch::kCPU), true);
    EXPECT_EQ(loss.scalar_type(), torch::kFloat32);
    loss.backward();
    for (auto& [name, p] : params) {
      EXPECT_EQ(p.grad().scalar_type(), torch::kFloat32) << name;
      EXPECT_TRUE(torch::isfinite(p.grad()).all().item<bool>()) << name;
    }
    return loss.item<double>();
  };
  const double l32 = run(torch::kFloat32);
  const double l16 = run(torch::kBFloat16);
  EXPECT_NEAR(l16, l32, 0.02 * std::abs(l32));
}

// The loss in fp32 on CPU runs the fused cross-entropy kernel, in fp64
// tensor ops (the CUDA path's code); both apply Gemma's final soft-cap and
// its gradient: same loss and LoRA gradients up to fp32 rounding.
TEST_P(FamilyTest, FusedLossMatchesTensorOpsInFloat64) {
  const std::vector<PackedSequence> rows = Rows(true);
  auto run = [&](torch::Dtype dtype) {
    std::unique_ptr<Model> model = Random(GetParam(), dtype);
    NamedTensors params = AddLora(*model, 5);
    torch::Tensor loss =
        model->Loss(MakeBatch(Ptrs(rows), torch::kCPU), /*training=*/false);
    loss.backward();
    std::vector<torch::Tensor> grads;
    for (auto& [name, p] : params)
      grads.push_back(p.grad().to(torch::kFloat64));
    return std::make_pair(loss.item<double>(), grads);
  };
  auto [l64, g64] = run(torch::kFloat64);
  auto [l32, g32] = run(torch::kFloat32);
  EXPECT_NEAR(l32, l64, 1e-5 * std::abs(l64));
  for (size_t i = 0; i < g64.size(); ++i)
    EXPECT_LT(((g32[i] - g64[i]).norm() / g64[i].norm()).item<double>(), 1e-4);
}

// The soft-capped LM-head loss (Gemma 2) and its gradient, in both of its
// implementations (fp32: the fused CPU kernel; fp64: tensor ops, as on
// CUDA), against autograd through the formula itself, with logits large
// enough that the cap bends them.
TEST(LmHeadLossTest, SoftCapMatchesAutogradOfTheFormula) {
  torch::manual_seed(3);
  const double cap = 2.0;
  torch::Tensor h = torch::randn({10, 8}, torch::kFloat64);
  torch::Tensor w = torch::randn({13, 8}, torch::kFloat64);
  torch::Tensor targets = torch::randint(0, 13, {10}, torch::kLong);
  torch::Tensor href = h.clone().requires_grad_(true);
  torch::Tensor logits = torch::tanh(torch::mm(href, w.t()) / cap) * cap;
  ASSERT_GT(torch::mm(h, w.t()).abs().max().item<double>(), 2 * cap);
  torch::Tensor want = torch::nn::functional::cross_entropy(logits, targets);
  want.backward();
  for (torch::Dtype dtype : {torch::kFloat64, torch::kFloat32}) {
    torch::Tensor hx = h.to(dtype).detach().clone().requires_grad_(true);
    torch::Tensor loss = LmHeadLoss(hx, w.to(dtype), targets, /*chunk=*/3, cap,
                                    /*need_grad=*/true);
    loss.backward();
    const double tol = dtype == torch::kFloat64 ? 1e-12 : 1e-5;
    EXPECT_NEAR(loss.item<double>(), want.item<double>(), tol) << dtype;
    EXPECT_LT((hx.grad().to(torch::kFloat64) - href.grad())
                  .abs()
                  .max()
                  .item<double>(),
              tol)
        << dtype;
  }
}

// QLoRA: every projection of the family (fused ones included) is stored
// 4-bit, LoRA trains on top, and the loss stays near the dense model's.
TEST_P(FamilyTest, QloraQuantisesEveryProjection) {
  std::unique_ptr<Model> dense = Random(GetParam(), torch::kFloat32);
  std::unique_ptr<Model> model =
      Random(GetParam(), torch::kFloat32, /*qlora=*/true);
  int64_t expected = 0;
  for (DecoderLayer& layer : model->layers()) {
    for (auto& [name, linear] : layer.modules) {
      const auto* q = dynamic_cast<const Nf4Weight*>(&linear->base());
      ASSERT_NE(q, nullptr) << name;
      expected += q->in_features() * q->out_features();
    }
  }
  EXPECT_EQ(model->quantized_size().parameters, expected);
  NamedTensors params = AddLora(*model, 5);
  AddLora(*dense, 5);
  const std::vector<PackedSequence> rows = Rows(true);
  Batch batch = MakeBatch(Ptrs(rows), torch::kCPU);
  torch::Tensor loss = model->Loss(batch, true);
  loss.backward();
  for (auto& [name, p] : params)
    EXPECT_GT(p.grad().abs().sum().item<double>(), 0) << name;
  torch::NoGradGuard no_grad;
  const double l = dense->Loss(batch, false).item<double>();
  EXPECT_NEAR(loss.item<double>(), l, 0.1 * l);
}

// The merged model (W + scaling * B A, Conv1D weights stored back [in, out])
// loads as the family and gives the LoRA model's logits.
TEST_P(FamilyTest, MergedModelGivesTheLoraModelsLogits) {
  std::unique_ptr<Model> model = Random(GetParam(), torch::kFloat64);
  AddLora(*model, 9);
  ftune::testing::TempDir out;
  ASSERT_OK(MergeModel(*model, out.Sub("merged")));
  std::unique_ptr<Model> merged = Load(out.Sub("merged"), torch::kFloat64);
  ASSERT_NE(merged, nullptr);
  EXPECT_EQ(merged->config().family, model->config().family);
  const std::vector<PackedSequence> rows = Rows(true);
  Batch batch = MakeBatch(Ptrs(rows), torch::kCPU);
  torch::NoGradGuard no_grad;
  torch::Tensor a = model->Logits(batch), b = merged->Logits(batch);
  EXPECT_LT((a - b).abs().max().item<double>(),
            1e-9 * a.abs().max().item<double>());
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyTest,
                         ::testing::Values("qwen3", "phi3", "gemma2", "gpt2"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           return std::string(i.param);
                         });

// --- Through the trainer
// --------------------------------------------------------

// `n` pretokenized examples of a learnable pattern over a vocabulary of 64.
void MakeData(const std::string& path, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::ofstream f(path);
  for (int i = 0; i < n; ++i) {
    const int len = 4 + static_cast<int>(rng() % 9);
    std::vector<int> toks = {static_cast<int>(rng() % 64)};
    for (int k = 1; k <= len; ++k) toks.push_back((toks.back() * 3 + 1) % 64);
    json ids = json::array(), labels = json::array();
    for (int k = 0; k < len; ++k) {
      ids.push_back(toks[k]);
      labels.push_back(k == 0 ? -100 : toks[k + 1]);
    }
    f << json{{"input_ids", ids}, {"labels", labels}}.dump() << "\n";
  }
}

class FamilyTrainerTest : public ::testing::Test {
 protected:
  void SetUp() override { MakeData(dir_.Sub("train.jsonl"), 24, 1); }
  // A model directory of the family, written by MergeModel from a random
  // model (nothing merged: no LoRA).
  std::string ModelDir(const std::string& family) {
    std::unique_ptr<Model> m = Random(family, torch::kFloat32);
    EXPECT_OK(MergeModel(*m, dir_.Sub(family)));
    return dir_.Sub(family);
  }
  TrainSpec Spec(const std::string& model_dir, const std::string& run,
                 const json& targets) {
    json j = {{"model_dir", model_dir},
              {"base_model_name", "tiny"},
              {"train_data", dir_.Sub("train.jsonl")},
              {"data", {{"format", "pretokenized"}}},
              {"lora",
               {{"rank", 4},
                {"alpha", 8},
                {"dropout", 0.1},
                {"target_modules", targets}}},
              {"hyperparameters",
               {{"max_steps", 6},
                {"learning_rate", 5e-3},
                {"warmup_steps", 2},
                {"batch_size", 2},
                {"gradient_accumulation_steps", 2},
                {"max_seq_length", 32},
                {"seed", 5},
                {"checkpoint_every_steps", 2}}},
              {"output_dir", dir_.Sub(run + "/adapter")},
              {"checkpoint_dir", dir_.Sub(run + "/ckpt")},
              {"threads", 1}};
    absl::StatusOr<TrainSpec> spec = contract::ParseTrainSpec(j.dump());
    EXPECT_TRUE(spec.ok()) << spec.status();
    return *spec;
  }
  ftune::testing::TempDir dir_;
  PretokenizedJsonlSource data_;
};

// Phi-3 (fused qkv_proj and gate_up_proj with LoRA, LongRoPE, a sliding
// window): stopped after 3 steps and resumed, the run is bit-identical to
// the uninterrupted one.
TEST_F(FamilyTrainerTest, Phi3ResumeReproducesTheUninterruptedRunBitForBit) {
  const std::string model = ModelDir("phi3");
  const json targets = {"all-linear"};
  ASSERT_OK_AND_ASSIGN(TrainResult a,
                       RunTraining(Spec(model, "a", targets), data_, {}));
  ASSERT_EQ(a.losses.size(), 6u);
  TrainerHooks stop;
  stop.stop_after_steps = 3;
  ASSERT_OK_AND_ASSIGN(TrainResult b,
                       RunTraining(Spec(model, "b", targets), data_, stop));
  ASSERT_TRUE(b.interrupted);
  TrainSpec resume = Spec(model, "b", targets);
  resume.resume_from = "auto";
  ASSERT_OK_AND_ASSIGN(TrainResult c, RunTraining(resume, data_, {}));
  std::vector<double> curve = b.losses;
  curve.insert(curve.end(), c.losses.begin(), c.losses.end());
  ASSERT_EQ(curve.size(), 6u);
  for (size_t i = 0; i < 6; ++i)
    EXPECT_EQ(curve[i], a.losses[i]) << "step " << i + 1;
  ASSERT_OK_AND_ASSIGN(
      std::string sa,
      Sha256File(dir_.Sub("a/adapter/adapter_model.safetensors")));
  ASSERT_OK_AND_ASSIGN(
      std::string sb,
      Sha256File(dir_.Sub("b/adapter/adapter_model.safetensors")));
  EXPECT_EQ(sa, sb);
  // One A/B pair per fused module, named as PEFT names it.
  ASSERT_OK_AND_ASSIGN(
      auto st,
      SafetensorsFile::Open(dir_.Sub("a/adapter/adapter_model.safetensors")));
  EXPECT_EQ(st->Names().size(), 2u * 4u * 2u);
  ASSERT_OK_AND_ASSIGN(
      auto qkv_b,
      st->Get("base_model.model.model.layers.1.self_attn.qkv_proj.lora_B."
              "weight"));
  EXPECT_THAT(qkv_b.shape, ElementsAre(32 + 2 * 16, 4));
  ASSERT_OK_AND_ASSIGN(
      auto gu_b,
      st->Get(
          "base_model.model.model.layers.0.mlp.gate_up_proj.lora_B.weight"));
  EXPECT_THAT(gu_b.shape, ElementsAre(2 * 72, 4));
  // It trained (B starts at zero).
  ASSERT_OK_AND_ASSIGN(
      NamedTensors trained,
      ReadTensors(dir_.Sub("a/adapter/adapter_model.safetensors")));
  for (auto& [name, t] : trained)
    EXPECT_GT(t.abs().max().item<double>(), 0) << name;
}

// GPT-2: PEFT's module names (c_proj is attention's output and the MLP's
// down projection), the transformer.h.{i} key path, and fan_in_fan_out.
TEST_F(FamilyTrainerTest, Gpt2AdapterIsWhatPeftWrites) {
  const std::string model = ModelDir("gpt2");
  TrainSpec spec = Spec(model, "g", {"c_proj", "c_attn"});
  spec.hp.max_steps = 2;
  ASSERT_OK(RunTraining(spec, data_, {}));
  ASSERT_OK_AND_ASSIGN(std::string text,
                       ReadFile(dir_.Sub("g/adapter/adapter_config.json")));
  json cfg = json::parse(text);
  EXPECT_EQ(cfg["fan_in_fan_out"], true);
  EXPECT_EQ(cfg["target_modules"], json({"c_attn", "c_proj"}));
  ASSERT_OK_AND_ASSIGN(
      auto st,
      SafetensorsFile::Open(dir_.Sub("g/adapter/adapter_model.safetensors")));
  EXPECT_EQ(st->Names().size(), 2u * 3u * 2u);
  const std::string p = "base_model.model.transformer.h.";
  ASSERT_OK_AND_ASSIGN(auto a, st->Get(p + "0.attn.c_attn.lora_A.weight"));
  EXPECT_THAT(a.shape, ElementsAre(4, 32));
  ASSERT_OK_AND_ASSIGN(auto b, st->Get(p + "0.attn.c_attn.lora_B.weight"));
  EXPECT_THAT(b.shape, ElementsAre(96, 4));
  ASSERT_OK_AND_ASSIGN(auto d, st->Get(p + "1.mlp.c_proj.lora_A.weight"));
  EXPECT_THAT(d.shape, ElementsAre(4, 128));
  ASSERT_OK(st->Get(p + "1.attn.c_proj.lora_B.weight").status());
  EXPECT_FALSE(st->Get(p + "0.mlp.c_fc.lora_A.weight").ok());
}

}  // namespace
}  // namespace ftune::train
