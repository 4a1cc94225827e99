// Generation (worker/train/generate.h): cached decoding against full
// forwards (logits within 1e-5 relative in fp32, every family, left-padded
// batches of different lengths), greedy tokens against an independent
// float64 decode (scripts/reference/reference_forward.py: no cache, one
// full forward per token) for every family, base and with a PEFT adapter;
// the adapter unmerged, merged, and under QLoRA giving the same greedy
// tokens; batching not changing completions; the sampler's rules; end
// tokens and stop sequences; refusals naming the setting or the lengths.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "worker/train/adapter.h"
#include "worker/train/generate.h"
#include "worker/train/model.h"
#include "worker/train/nn/attention.h"
#include "worker/train/sampling.h"

namespace ftune::train {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;
using json = nlohmann::json;

// The tiny configs of families_test.cc (and a Llama with GQA, a Qwen2 with
// q/k/v biases): every option a family's block has is on.
json TinyConfig(const std::string& family) {
  json c = {{"vocab_size", 64},
            {"hidden_size", 32},
            {"intermediate_size", 72},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 2},
            {"max_position_embeddings", 128},
            {"rms_norm_eps", 1e-5}};
  if (family == "llama") {
    c["architectures"] = {"LlamaForCausalLM"};
  } else if (family == "qwen2") {
    c["architectures"] = {"Qwen2ForCausalLM"};
  } else if (family == "qwen3") {
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

std::unique_ptr<Model> Random(const std::string& family, torch::Dtype dtype,
                              bool lora = true) {
  absl::StatusOr<ModelConfig> c =
      ParseModelConfig(TinyConfig(family).dump(), family);
  EXPECT_TRUE(c.ok()) << c.status();
  ModelOptions opts;
  opts.dtype = dtype;
  torch::manual_seed(11);
  std::unique_ptr<Model> m = Model::RandomInit(*c, opts);
  if (lora) {
    LoraOptions l;
    l.rank = 2;
    l.alpha = 4;
    l.target_modules = {"all-linear"};
    EXPECT_OK(m->ApplyLora(l));
    torch::NoGradGuard no_grad;
    torch::manual_seed(5);
    for (auto& [name, p] : m->LoraParameters())
      p.copy_(torch::randn(p.sizes(), torch::kFloat64) * 0.2);
  }
  return m;
}

Batch Rows(const std::vector<std::vector<int64_t>>& ids,
           const std::vector<std::vector<int64_t>>& pos,
           const std::vector<std::vector<int64_t>>& seg) {
  auto t = [](const std::vector<std::vector<int64_t>>& v) {
    std::vector<int64_t> flat;
    for (const auto& r : v) flat.insert(flat.end(), r.begin(), r.end());
    return torch::tensor(flat, torch::kInt64)
        .reshape({static_cast<int64_t>(v.size()), -1});
  };
  Batch b;
  b.input_ids = t(ids);
  b.position_ids = t(pos);
  b.segment_ids = t(seg);
  return b;
}

StopConditions NoStops() {
  StopConditions s;
  s.decode = [](absl::Span<const int32_t> ids) {
    std::string out;
    for (int32_t id : ids) out.push_back(static_cast<char>('a' + id % 26));
    return out;
  };
  return s;
}

contract::GenerationSpec Greedy(int64_t n) {
  contract::GenerationSpec g;
  g.max_new_tokens = n;
  return g;
}

std::vector<std::vector<int32_t>> Ids(const std::vector<Completion>& c) {
  std::vector<std::vector<int32_t>> out;
  for (const Completion& x : c) out.push_back(x.ids);
  return out;
}

class GenerateFamilyTest : public ::testing::TestWithParam<const char*> {};

// Two rows of 12 and 9 tokens: a prefill of their first 5 and 2 (left
// padded by 3), then one token per step. Every step's logits equal the
// full forward's of the unpadded sequences at the same position (fp32:
// 1e-5 relative). The sequences are longer than the sliding windows (3-4)
// and than LongRoPE's original context (8; both forwards take the long
// factors, the cache by its rope_length).
//
// In bf16 the two orders of rounding differ: cached decoding must be no
// further from the bf16 full forward than twice bf16's own distance from
// fp32.
TEST_P(GenerateFamilyTest, CachedLogitsEqualTheFullForward) {
  double fp32_full_max = 0;
  torch::Tensor fp32_full;
  for (torch::Dtype dtype : {torch::kFloat32, torch::kBFloat16}) {
    SCOPED_TRACE(dtype == torch::kFloat32 ? "fp32" : "bf16");
    std::unique_ptr<Model> model = Random(GetParam(), dtype);
    const std::vector<int64_t> a = {5, 9, 2, 7, 1, 3, 60, 4, 4, 8, 11, 30};
    const std::vector<int64_t> b = {7, 8, 9, 10, 3, 2, 50, 1, 6};
    std::vector<int64_t> pos_a(12), pos_b(12, 0), seg_b(12, -1);
    std::vector<int64_t> b_padded(12, 0);
    for (int64_t i = 0; i < 12; ++i) pos_a[i] = i;
    for (int64_t i = 0; i < 9; ++i) {
      pos_b[3 + i] = i;
      seg_b[3 + i] = 0;
      b_padded[3 + i] = b[i];
    }
    torch::Tensor full;
    {
      torch::NoGradGuard no_grad;
      // Unpadded full forwards, one per row (right padding for b).
      std::vector<int64_t> b_right(12, 0), pos_br(12, 0), seg_br(12, -1);
      for (int64_t i = 0; i < 9; ++i) {
        b_right[i] = b[i];
        pos_br[i] = i;
        seg_br[i] = 0;
      }
      full = model
                 ->Logits(Rows({a, b_right}, {pos_a, pos_br},
                               {std::vector<int64_t>(12, 0), seg_br}))
                 .to(torch::kFloat64);
    }
    if (dtype == torch::kFloat32) fp32_full = full;
    KvCache cache = model->NewKvCache(2, 12, /*rope_length=*/12);
    double err = 0, scale = 0;
    auto compare = [&](const torch::Tensor& logits, int64_t start, int64_t t) {
      // logits [2, t, V] for padded columns start..start+t-1.
      for (int64_t j = 0; j < t; ++j) {
        const int64_t col = start + j;
        torch::Tensor got = logits.select(1, j).to(torch::kFloat64);
        err = std::max(err, (got[0] - full[0][col]).abs().max().item<double>());
        scale = std::max(scale, full[0][col].abs().max().item<double>());
        if (col >= 3) {
          err = std::max(
              err, (got[1] - full[1][col - 3]).abs().max().item<double>());
        }
      }
    };
    auto slice = [](const std::vector<int64_t>& v, int64_t s, int64_t n) {
      return std::vector<int64_t>(v.begin() + s, v.begin() + s + n);
    };
    torch::Tensor pre = model->ForwardCached(
        Rows({slice(a, 0, 5), slice(b_padded, 0, 5)},
             {slice(pos_a, 0, 5), slice(pos_b, 0, 5)},
             {std::vector<int64_t>(5, 0), slice(seg_b, 0, 5)}),
        cache, /*last_only=*/false);
    EXPECT_EQ(pre.scalar_type(), torch::kFloat32);
    compare(pre, 0, 5);
    for (int64_t col = 5; col < 12; ++col) {
      torch::Tensor step =
          model->ForwardCached(Rows({{a[col]}, {b_padded[col]}},
                                    {{pos_a[col]}, {pos_b[col]}}, {{0}, {0}}),
                               cache, /*last_only=*/true);
      compare(step, col, 1);
    }
    EXPECT_EQ(cache.length(), 12);
    const double rel = err / scale;
    if (dtype == torch::kFloat32) {
      EXPECT_LT(rel, 1e-5) << GetParam();
      fp32_full_max = scale;
    } else {
      // The full forwards' real tokens, bf16 against fp32.
      const double bf16_err =
          std::max((full[0] - fp32_full[0]).abs().max().item<double>(),
                   (full[1].narrow(0, 0, 9) - fp32_full[1].narrow(0, 0, 9))
                       .abs()
                       .max()
                       .item<double>()) /
          fp32_full_max;
      EXPECT_GT(bf16_err, 0);
      EXPECT_LT(rel, 2 * bf16_err + 1e-3) << GetParam();
    }
  }
}

// A prompt's greedy completion does not depend on the prompts batched with
// it (left padding is masked out), in fp32 and bf16.
TEST_P(GenerateFamilyTest, BatchedGreedyEqualsOneAtATime) {
  for (torch::Dtype dtype : {torch::kFloat32, torch::kBFloat16}) {
    std::unique_ptr<Model> model = Random(GetParam(), dtype);
    const std::vector<std::vector<int32_t>> prompts = {
        {5, 9, 2}, {7, 8, 9, 10, 3, 1, 2}, {60}, {4, 4, 8, 1, 2}};
    ASSERT_OK_AND_ASSIGN(
        std::vector<Completion> batched,
        Generate(*model, prompts, Greedy(7), NoStops(), 4, nullptr));
    ASSERT_OK_AND_ASSIGN(
        std::vector<Completion> single,
        Generate(*model, prompts, Greedy(7), NoStops(), 1, nullptr));
    EXPECT_EQ(Ids(batched), Ids(single));
    for (const Completion& c : batched) {
      EXPECT_EQ(c.ids.size(), 7u);
      EXPECT_EQ(c.finish_reason, "length");
    }
  }
}

// QLoRA: the 4-bit base with the adapter unmerged, and the model merged
// from it (dequantised weights plus the adapter), give the same greedy
// tokens.
TEST_P(GenerateFamilyTest, QloraUnmergedEqualsItsMergedModel) {
  absl::StatusOr<ModelConfig> c =
      ParseModelConfig(TinyConfig(GetParam()).dump(), GetParam());
  ASSERT_OK(c.status());
  ModelOptions opts;
  opts.quantization = QuantOptions{};
  torch::manual_seed(11);
  std::unique_ptr<Model> q = Model::RandomInit(*c, opts);
  LoraOptions l;
  l.rank = 2;
  l.alpha = 4;
  ASSERT_OK(q->ApplyLora(l));
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(5);
    for (auto& [name, p] : q->LoraParameters())
      p.copy_(torch::randn(p.sizes(), torch::kFloat64) * 0.2);
  }
  ftune::testing::TempDir tmp;
  ASSERT_OK(MergeModel(*q, tmp.Sub("merged")));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> merged,
                       Model::Load(tmp.Sub("merged"), ModelOptions()));
  const std::vector<std::vector<int32_t>> prompts = {{5, 9, 2}, {7, 8, 9, 10}};
  ASSERT_OK_AND_ASSIGN(auto a,
                       Generate(*q, prompts, Greedy(8), NoStops(), 2, nullptr));
  ASSERT_OK_AND_ASSIGN(
      auto b, Generate(*merged, prompts, Greedy(8), NoStops(), 2, nullptr));
  EXPECT_EQ(Ids(a), Ids(b));
}

INSTANTIATE_TEST_SUITE_P(Families, GenerateFamilyTest,
                         ::testing::Values("llama", "qwen2", "qwen3", "phi3",
                                           "gemma2", "gpt2"));

// --- Against the float64 reference -----------------------------------------

struct RefCase {
  const char* name;
  const char* args;  // make_tiny_model.py
  double alpha;      // of the adapter (rank 2)
};
// Gemma 2 multiplies its (tied) embeddings by sqrt(hidden) and normalises
// every layer's output: with N(0, 1) embeddings its tiny model repeats the
// last token whatever the layers do, so its embeddings are small.
const RefCase kRefCases[] = {
    {"llama", "--arch llama --gqa --seed 31", 4},
    {"qwen2", "--arch qwen2 --seed 32", 4},
    {"qwen3", "--arch qwen3 --gqa --seed 33", 4},
    {"phi3 longrope partial window",
     "--arch phi3 --gqa --seed 34 --window 4 --longrope --partial-rotary 0.5",
     4},
    {"gemma2", "--arch gemma2 --gqa --seed 35 --embed-std 0.05", 4},
    {"gpt2", "--arch gpt2 --seed 36", 4},
};

// The reference decodes each prompt alone by full float64 forwards; the
// trainer decodes them batched (left-padded, cached) in fp32: the same
// greedy tokens, for the base model and with the reference's PEFT adapter
// (read by LoadAdapter). The adapter merged into the weights (MergeModel)
// gives them too.
TEST(GenerateReferenceTest, GreedyTokensMatchTheFloat64Reference) {
  ftune::testing::TempDir tmp;
  const std::vector<std::vector<int32_t>> prompts = {{5, 9, 2},
                                                     {7, 8, 9, 10, 3, 1}};
  const int64_t n = 6;  // 6 + 6 = 12 > 8: LongRoPE's long factors
  json jobs = json::array();
  for (size_t i = 0; i < std::size(kRefCases); ++i) {
    const std::string d = tmp.Sub(absl::StrCat("case", i));
    jobs.push_back({{"make", kRefCases[i].args},
                    {"model", d + "/model"},
                    {"rows",
                     {{{"input_ids", {1, 2}},
                       {"labels", {2, -100}},
                       {"position_ids", {0, 1}},
                       {"segment_ids", {0, 0}}}}},
                    {"adapter",
                     {{"dir", d + "/adapter"},
                      {"rank", 2},
                      {"alpha", kRefCases[i].alpha},
                      {"seed", 7 + i}}},
                    {"generate", {{"prompts", prompts}, {"max_new_tokens", n}}},
                    {"out", d + "/ref.json"}});
  }
  ASSERT_OK(WriteFileAtomically(tmp.Sub("jobs.json"), jobs.dump()));
  ASSERT_EQ(std::system((std::string("/usr/bin/python3 ") + FTUNE_SOURCE_DIR +
                         "/scripts/reference/reference_forward.py --jobs " +
                         tmp.Sub("jobs.json"))
                            .c_str()),
            0);
  for (size_t i = 0; i < std::size(kRefCases); ++i) {
    SCOPED_TRACE(kRefCases[i].name);
    const json& job = jobs[i];
    ASSERT_OK_AND_ASSIGN(std::string text,
                         ReadFile(job["out"].get<std::string>()));
    const json ref = json::parse(text);
    const auto want_base =
        ref["base"]["generated"].get<std::vector<std::vector<int32_t>>>();
    const auto want_adapter =
        ref["adapter"]["generated"].get<std::vector<std::vector<int32_t>>>();
    EXPECT_NE(want_base, want_adapter) << "the adapter must matter";

    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> model,
                         Model::Load(job["model"], ModelOptions()));
    ASSERT_OK_AND_ASSIGN(
        auto base, Generate(*model, prompts, Greedy(n), NoStops(), 2, nullptr));
    EXPECT_EQ(Ids(base), want_base);

    ASSERT_OK(LoadAdapter(*model, job["adapter"]["dir"]));
    ASSERT_OK_AND_ASSIGN(auto unmerged, Generate(*model, prompts, Greedy(n),
                                                 NoStops(), 2, nullptr));
    EXPECT_EQ(Ids(unmerged), want_adapter);

    ASSERT_OK(MergeModel(*model, tmp.Sub(absl::StrCat("merged", i))));
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<Model> merged,
        Model::Load(tmp.Sub(absl::StrCat("merged", i)), ModelOptions()));
    ASSERT_OK_AND_ASSIGN(
        auto m, Generate(*merged, prompts, Greedy(n), NoStops(), 2, nullptr));
    EXPECT_EQ(Ids(m), want_adapter);
  }
}

// --- Ending, settings, refusals --------------------------------------------

// (Sampled, so that the tiny random model's tokens vary; a seeded run draws
// the same tokens until it ends.)
TEST(GenerateTest, EndTokensAndStopSequencesEndACompletion) {
  std::unique_ptr<Model> model = Random("llama", torch::kFloat32);
  const std::vector<std::vector<int32_t>> prompts = {{5, 9, 2}};
  contract::GenerationSpec sampled = Greedy(10);
  sampled.temperature = 1;
  sampled.seed = 3;
  ASSERT_OK_AND_ASSIGN(
      auto free_run, Generate(*model, prompts, sampled, NoStops(), 1, nullptr));
  const std::vector<int32_t> ids = free_run[0].ids;
  ASSERT_EQ(ids.size(), 10u);
  // The first token that did not occur before it ends the completion there.
  size_t k = 1;
  while (k < ids.size() &&
         std::find(ids.begin(), ids.begin() + k, ids[k]) != ids.begin() + k)
    ++k;
  ASSERT_LT(k, ids.size());
  StopConditions stop = NoStops();
  stop.end_tokens = {ids[k]};
  ASSERT_OK_AND_ASSIGN(auto ended,
                       Generate(*model, prompts, sampled, stop, 1, nullptr));
  EXPECT_EQ(ended[0].ids, std::vector<int32_t>(ids.begin(), ids.begin() + k));
  EXPECT_EQ(ended[0].finish_reason, "end");

  // A stop sequence spanning tokens 2 and 3: the text is cut before it.
  const std::string text = NoStops().decode(ids);
  contract::GenerationSpec g = sampled;
  g.stop = {text.substr(2, 2)};
  ASSERT_OK_AND_ASSIGN(auto stopped,
                       Generate(*model, prompts, g, NoStops(), 1, nullptr));
  EXPECT_EQ(stopped[0].finish_reason, "stop");
  EXPECT_EQ(stopped[0].text, text.substr(0, text.find(g.stop[0])));
  EXPECT_LE(stopped[0].ids.size(), 4u);
}

TEST(GenerateTest, SeededSamplingIsReproducibleAndIndependentOfBatching) {
  std::unique_ptr<Model> model = Random("qwen3", torch::kFloat32);
  const std::vector<std::vector<int32_t>> prompts = {{5, 9, 2}, {7, 8}, {1}};
  contract::GenerationSpec g = Greedy(12);
  g.temperature = 1.5;
  g.top_k = 20;
  g.top_p = 0.9;
  g.repetition_penalty = 1.3;
  g.seed = 99;
  ASSERT_OK_AND_ASSIGN(auto a,
                       Generate(*model, prompts, g, NoStops(), 3, nullptr));
  ASSERT_OK_AND_ASSIGN(auto b,
                       Generate(*model, prompts, g, NoStops(), 1, nullptr));
  EXPECT_EQ(Ids(a), Ids(b));
  g.seed = 100;
  ASSERT_OK_AND_ASSIGN(auto c,
                       Generate(*model, prompts, g, NoStops(), 3, nullptr));
  EXPECT_NE(Ids(a), Ids(c));
  ASSERT_OK_AND_ASSIGN(auto greedy, Generate(*model, prompts, Greedy(12),
                                             NoStops(), 3, nullptr));
  EXPECT_NE(Ids(a), Ids(greedy));
}

TEST(GenerateTest, RefusesBadSettingsAndOverlongPrompts) {
  std::unique_ptr<Model> model = Random("gpt2", torch::kFloat32);
  const std::vector<std::vector<int32_t>> ok = {{1, 2}};
  contract::GenerationSpec g = Greedy(4);
  g.temperature = -0.5;
  EXPECT_THAT(Generate(*model, ok, g, NoStops(), 1, nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"temperature\": must be in [0, 100]")));
  g = Greedy(4);
  g.top_p = 0;
  EXPECT_THAT(Generate(*model, ok, g, NoStops(), 1, nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"top_p\": must be in (0, 1]")));
  EXPECT_THAT(
      Generate(*model, ok, Greedy(5000), NoStops(), 1, nullptr).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("\"max_new_tokens\": must be in [1, 4096]")));
  std::vector<std::vector<int32_t>> longp = {{1}, std::vector<int32_t>(128, 3)};
  EXPECT_THAT(
      Generate(*model, longp, Greedy(4), NoStops(), 1, nullptr).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("prompt 2 is 128 tokens long; the model's "
                         "context is 128 tokens")));
  EXPECT_THAT(Generate(*model, {{}}, Greedy(4), NoStops(), 1, nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(
      Generate(*model, {{64}}, Greedy(4), NoStops(), 1, nullptr).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("outside the model's vocabulary")));
  // A prompt that fills all but 3 positions gets 3 tokens ("length").
  ASSERT_OK_AND_ASSIGN(auto near_end,
                       Generate(*model, {std::vector<int32_t>(125, 3)},
                                Greedy(10), NoStops(), 1, nullptr));
  EXPECT_EQ(near_end[0].ids.size(), 3u);
  EXPECT_EQ(near_end[0].finish_reason, "length");
}

// --- The sampler -------------------------------------------------------------

TEST(TokenSamplerTest, GreedyTopKTopPAndPenalty) {
  contract::GenerationSpec g;
  TokenSampler greedy(g, 0);
  std::vector<float> l = {0.5f, 2.0f, 2.0f, -1.0f};
  EXPECT_EQ(greedy.Next(absl::MakeSpan(l), {}), 1) << "the first maximum";
  // The repetition penalty divides a positive logit, multiplies a negative.
  g.repetition_penalty = 2.0;
  TokenSampler penalised(g, 0);
  l = {0.5f, 2.0f, 1.5f, -1.0f};
  EXPECT_EQ(penalised.Next(absl::MakeSpan(l), std::vector<int32_t>{1, 1, 3}),
            2);
  EXPECT_FLOAT_EQ(l[1], 1.0f);
  EXPECT_FLOAT_EQ(l[3], -2.0f);
  // top_k = 1 and a tiny top_p are greedy whatever the temperature.
  for (auto [k, p] : {std::pair<int64_t, double>{1, 1.0}, {0, 1e-6}}) {
    contract::GenerationSpec s;
    s.temperature = 5;
    s.top_k = k;
    s.top_p = p;
    TokenSampler t(s, 3);
    for (int i = 0; i < 20; ++i) {
      std::vector<float> x = {0.1f, 0.3f, 0.2f};
      EXPECT_EQ(t.Next(absl::MakeSpan(x), {}), 1);
    }
  }
  // Temperature 1 draws by the softmax: frequencies within 0.02 over 20000.
  contract::GenerationSpec s;
  s.temperature = 1;
  s.seed = 4;
  TokenSampler t(s, 0);
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f};
  std::vector<int> counts(3);
  for (int i = 0; i < 20000; ++i) {
    std::vector<float> x = logits;
    ++counts[t.Next(absl::MakeSpan(x), {})];
  }
  const double z = 1 + std::exp(1.0) + std::exp(2.0);
  for (int i = 0; i < 3; ++i)
    EXPECT_NEAR(counts[i] / 20000.0, std::exp(static_cast<double>(i)) / z,
                0.02);
  // top_p 0.7 keeps {2} (0.665) and {1} (0.245): token 0 is never drawn.
  s.top_p = 0.7;
  TokenSampler tp(s, 0);
  for (int i = 0; i < 2000; ++i) {
    std::vector<float> x = logits;
    EXPECT_NE(tp.Next(absl::MakeSpan(x), {}), 0);
  }
}

}  // namespace
}  // namespace ftune::train
