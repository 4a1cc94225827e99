// Full-parameter fine-tuning (method "full"): a few AdamW steps of every
// weight against an independent float64 reference
// (scripts/reference/full_finetune_reference.py: PyTorch's own AdamW and
// clip_grad_norm_), a tied embedding staying tied, bf16 masters and exact
// resume, out-of-memory retry, and the published Hugging Face directory
// (sharded above the shard size, loading back, manifest sha256s).
#include "worker/train/full_finetune.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <variant>
#include <vector>

#include "common/file_util.h"
#include "common/safetensors.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "worker/train/adapter.h"
#include "worker/train/model.h"
#include "worker/train/trainer.h"

namespace ftune::train {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

std::string Script(const std::string& name) {
  return std::string(FTUNE_SOURCE_DIR) + "/scripts/reference/" + name;
}

// Pretokenized rows of a learnable pattern (t[i+1] = 3 t[i] + 1 mod 64);
// also returned as the reference's PackedSequence rows (one example each).
nlohmann::json MakeData(const std::string& path, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::ofstream f(path);
  nlohmann::json rows = nlohmann::json::array();
  for (int i = 0; i < n; ++i) {
    const int len = 4 + static_cast<int>(rng() % 9);
    std::vector<int> toks{static_cast<int>(rng() % 64)};
    for (int k = 1; k <= len; ++k) toks.push_back((toks.back() * 3 + 1) % 64);
    nlohmann::json ids = nlohmann::json::array(),
                   labels = nlohmann::json::array(),
                   pos = nlohmann::json::array(), seg = nlohmann::json::array();
    for (int k = 0; k < len; ++k) {
      ids.push_back(toks[k]);
      labels.push_back(k == 0 ? -100 : toks[k + 1]);
      pos.push_back(k);
      seg.push_back(0);
    }
    f << nlohmann::json{{"input_ids", ids}, {"labels", labels}}.dump() << "\n";
    rows.push_back({{"input_ids", ids},
                    {"labels", labels},
                    {"position_ids", pos},
                    {"segment_ids", seg}});
  }
  return rows;
}

std::map<std::string, torch::Tensor> ByName(const NamedTensors& t) {
  return std::map<std::string, torch::Tensor>(t.begin(), t.end());
}

class FullFinetuneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A tied Llama with GQA: the embedding is also the LM head.
    const std::string cmd = "/usr/bin/python3 " + Script("make_tiny_model.py") +
                            " --out " + dir_.Sub("model") +
                            " --arch llama --gqa --tied " + "--seed 11";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    rows_ = MakeData(dir_.Sub("train.jsonl"), 4, 1);
    MakeData(dir_.Sub("val.jsonl"), 4, 2);
  }
  nlohmann::json SpecJson(const std::string& run) {
    return {{"model_dir", dir_.Sub("model")},
            {"base_model_name", "tiny-llama"},
            {"train_data", dir_.Sub("train.jsonl")},
            {"data", {{"format", "pretokenized"}}},
            {"method", "full"},
            {"job_id", "job-" + run},
            {"hyperparameters",
             {{"max_steps", 3},
              {"learning_rate", 1e-2},
              {"lr_scheduler", "constant"},
              {"warmup_ratio", 0},
              {"batch_size", 4},
              {"gradient_accumulation_steps", 1},
              {"max_seq_length", 32},
              {"weight_decay", 0.01},
              {"max_grad_norm", 0.5},
              {"seed", 5},
              {"checkpoint_every_steps", 0},
              {"gradient_checkpointing", false}}},
            {"output_dir", dir_.Sub(run + "/model")},
            {"checkpoint_dir", dir_.Sub(run + "/ckpt")},
            {"threads", 1}};
  }
  TrainSpec Spec(const nlohmann::json& j) {
    auto spec = contract::ParseTrainSpec(j.dump());
    EXPECT_TRUE(spec.ok()) << spec.status();
    return *spec;
  }
  ftune::testing::TempDir dir_;
  nlohmann::json rows_;
  PretokenizedJsonlSource data_;
};

TEST_F(FullFinetuneTest, AdamWStepsMatchTheFloat64Reference) {
  nlohmann::json j = SpecJson("fp64");
  j["dtype"] = "fp64";
  ASSERT_OK_AND_ASSIGN(TrainResult r, RunTraining(Spec(j), data_, {}));
  ASSERT_EQ(r.losses.size(), 3u);

  const std::string out = dir_.Sub("reference.json");
  nlohmann::json job = {{"model", dir_.Sub("model")},
                        {"rows", rows_},
                        {"steps", 3},
                        {"lr", {1e-2, 1e-2, 1e-2}},
                        {"weight_decay", 0.01},
                        {"max_grad_norm", 0.5},
                        {"out", out}};
  ASSERT_OK(WriteFileAtomically(dir_.Sub("job.json"), job.dump()));
  const std::string cmd = "/usr/bin/python3 " +
                          Script("full_finetune_reference.py") + " --job " +
                          dir_.Sub("job.json");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  ASSERT_OK_AND_ASSIGN(std::string text, ReadFile(out));
  const nlohmann::json ref = nlohmann::json::parse(text);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_NEAR(r.losses[i], ref["losses"][i].get<double>(), 1e-10)
        << "step " << i + 1;
  EXPECT_LT(r.losses[2], r.losses[0]);

  // Every weight after 3 updates, as published.
  ASSERT_OK_AND_ASSIGN(NamedTensors got,
                       ReadTensors(dir_.Sub("fp64/model/model.safetensors")));
  ASSERT_OK_AND_ASSIGN(NamedTensors want, ReadTensors(out + ".safetensors"));
  ASSERT_OK_AND_ASSIGN(NamedTensors base,
                       ReadTensors(dir_.Sub("model/model.safetensors")));
  auto g = ByName(got), w = ByName(want), b = ByName(base);
  // Tied: one embedding, no separate LM head.
  EXPECT_EQ(g.count("lm_head.weight"), 0u);
  ASSERT_EQ(g.size(), w.size());
  for (const auto& [name, t] : w) {
    ASSERT_TRUE(g.count(name)) << name;
    ASSERT_TRUE(g[name].sizes().equals(t.sizes())) << name;
    EXPECT_LT((g[name] - t).abs().max().item<double>(), 1e-10) << name;
    // Every weight moved (learning rate 1e-2, three steps).
    EXPECT_GT((t - b[name].to(torch::kFloat64)).abs().max().item<double>(),
              1e-4)
        << name;
  }
}

TEST_F(FullFinetuneTest, Bf16MastersResumeBitForBitAndCheckpointsHoldThem) {
  auto spec = [&](const std::string& run) {
    nlohmann::json j = SpecJson(run);
    j["dtype"] = "bf16";
    j["validation_data"] = dir_.Sub("val.jsonl");
    j["hyperparameters"]["max_steps"] = 6;
    j["hyperparameters"]["batch_size"] = 2;
    j["hyperparameters"]["lr_scheduler"] = "cosine";
    j["hyperparameters"]["warmup_steps"] = 2;
    j["hyperparameters"]["eval_every_steps"] = 2;
    j["hyperparameters"]["checkpoint_every_steps"] = 2;
    j["hyperparameters"]["gradient_checkpointing"] = true;
    return Spec(j);
  };
  ASSERT_OK_AND_ASSIGN(TrainResult a, RunTraining(spec("a"), data_, {}));
  ASSERT_EQ(a.losses.size(), 6u);
  EXPECT_LT(a.losses.back(), a.losses.front());

  TrainerHooks stop;
  stop.stop_after_steps = 3;
  ASSERT_OK_AND_ASSIGN(TrainResult b, RunTraining(spec("b"), data_, stop));
  ASSERT_TRUE(b.interrupted);
  // The checkpoint: bf16 weights, fp32 masters and moments, best weights.
  ASSERT_OK_AND_ASSIGN(
      NamedTensors weights,
      ReadTensors(JoinPath(b.last_checkpoint, "model.safetensors")));
  ASSERT_OK_AND_ASSIGN(
      NamedTensors opt,
      ReadTensors(JoinPath(b.last_checkpoint, "optimizer.safetensors")));
  auto o = ByName(opt);
  int64_t params = 0;
  for (const auto& [name, t] : weights) {
    EXPECT_EQ(t.scalar_type(), torch::kBFloat16) << name;
    params += t.numel();
    for (const char* s : {".master", ".exp_avg", ".exp_avg_sq"}) {
      ASSERT_TRUE(o.count(name + s)) << name << s;
      EXPECT_EQ(o[name + s].scalar_type(), torch::kFloat32) << name << s;
    }
    // The bf16 weight is its master rounded.
    EXPECT_TRUE(torch::equal(o[name + ".master"].to(torch::kBFloat16), t))
        << name;
  }
  EXPECT_EQ(o.count("lm_head.weight.master"), 0u);  // tied
  // docs/trainer.md: 14 bytes per parameter in bf16 (2 weight, 4 master,
  // 8 moments), besides the RNG state.
  int64_t bytes = 0;
  for (const auto& [name, t] : weights) bytes += t.numel() * t.element_size();
  for (const auto& [name, t] : opt)
    if (name != "rng.cpu_state") bytes += t.numel() * t.element_size();
  EXPECT_EQ(bytes, 14 * params);
  EXPECT_EQ(
      access(JoinPath(b.last_checkpoint, "best_model.safetensors").c_str(),
             F_OK),
      0);
  // A LoRA run cannot resume it.
  {
    nlohmann::json lora = SpecJson("b");
    lora.erase("method");
    lora["resume_from"] = b.last_checkpoint;
    EXPECT_THAT(RunTraining(Spec(lora), data_, {}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("a checkpoint of a full fine-tune cannot "
                                   "resume a LoRA one")));
  }
  TrainSpec resume = spec("b");
  resume.resume_from = "auto";
  ASSERT_OK_AND_ASSIGN(TrainResult c, RunTraining(resume, data_, {}));
  std::vector<double> curve = b.losses;
  curve.insert(curve.end(), c.losses.begin(), c.losses.end());
  EXPECT_EQ(curve, a.losses);
  EXPECT_EQ(c.best_step, a.best_step);
  EXPECT_EQ(c.best_eval_loss, a.best_eval_loss);
  ASSERT_OK_AND_ASSIGN(std::string sa,
                       Sha256File(dir_.Sub("a/model/model.safetensors")));
  ASSERT_OK_AND_ASSIGN(std::string sc,
                       Sha256File(dir_.Sub("b/model/model.safetensors")));
  EXPECT_EQ(sa, sc);
  EXPECT_GT(params, 0);
}

TEST_F(FullFinetuneTest, OomRetryAndGradientCheckpointingKeepTheCurve) {
  auto spec = [&](const std::string& run, bool gc) {
    nlohmann::json j = SpecJson(run);
    j["hyperparameters"]["gradient_checkpointing"] = gc;
    return Spec(j);
  };
  ASSERT_OK_AND_ASSIGN(TrainResult a, RunTraining(spec("a", false), data_, {}));
  ASSERT_OK_AND_ASSIGN(TrainResult gc,
                       RunTraining(spec("gc", true), data_, {}));
  EXPECT_EQ(gc.losses, a.losses);
  TrainerHooks faulty;
  int retries = 0;
  faulty.emit = [&](const contract::ProgressEvent& e) {
    retries += std::holds_alternative<contract::OomRetryEvent>(e);
  };
  faulty.before_micro_batch = [](int64_t rows) {
    TORCH_CHECK_WITH(OutOfMemoryError, rows <= 1,
                     "injected: out of memory for ", rows, " rows");
  };
  ASSERT_OK_AND_ASSIGN(TrainResult b,
                       RunTraining(spec("b", true), data_, faulty));
  EXPECT_EQ(retries, 2);  // 4 -> 2 -> 1 rows
  ASSERT_EQ(b.losses.size(), a.losses.size());
  for (size_t i = 0; i < a.losses.size(); ++i)
    EXPECT_NEAR(b.losses[i], a.losses[i], 1e-5 * std::abs(a.losses[i]))
        << "step " << i + 1;
}

TEST_F(FullFinetuneTest, PublishesAShardedHfDirectoryThatLoadsBack) {
  const std::string base = dir_.Sub("model");
  ASSERT_OK(WriteFileAtomically(JoinPath(base, "tokenizer.json"), "{}"));
  ASSERT_OK(WriteFileAtomically(JoinPath(base, "generation_config.json"),
                                R"({"eos_token_id": 2})"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> model,
                       Model::Load(base, ModelOptions()));
  const std::string out = dir_.Sub("published");
  // 16 KiB shards: the tiny model's ~50 KiB of fp32 weights take several.
  ASSERT_OK(PublishFullModel(base, out, *model, {{"lineage", "x"}}, 16384));
  ASSERT_OK_AND_ASSIGN(std::string index_text,
                       ReadFile(JoinPath(out, "model.safetensors.index.json")));
  const nlohmann::json index = nlohmann::json::parse(index_text);
  std::set<std::string> shards;
  for (const auto& [name, file] : index["weight_map"].items())
    shards.insert(file.get<std::string>());
  ASSERT_GE(shards.size(), 2u);
  const std::string n = std::to_string(shards.size());
  EXPECT_TRUE(shards.count("model-00001-of-0000" + n + ".safetensors"))
      << index_text;
  EXPECT_NE(access(JoinPath(out, "model.safetensors").c_str(), F_OK), 0);
  // The manifest's sha256 of every file, tokenizer and generation config
  // among them.
  ASSERT_OK_AND_ASSIGN(std::string mtext,
                       ReadFile(JoinPath(out, "ftune_manifest.json")));
  const nlohmann::json manifest = nlohmann::json::parse(mtext);
  EXPECT_EQ(manifest["format"], "ftune-model");
  EXPECT_EQ(manifest["lineage"], "x");
  for (const std::string& f : std::vector<std::string>{
           "config.json", "tokenizer.json", "generation_config.json",
           "model.safetensors.index.json", *shards.begin()}) {
    ASSERT_TRUE(manifest["files"].contains(f)) << f << " " << mtext;
    ASSERT_OK_AND_ASSIGN(std::string sha, Sha256File(JoinPath(out, f)));
    EXPECT_EQ(manifest["files"][f]["sha256"], sha) << f;
  }
  EXPECT_EQ(manifest["files"].size(), shards.size() + 4);
  // Loads back with the same weights.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Model> back,
                       Model::Load(out, ModelOptions()));
  auto want = ByName(model->MergedStateDict());
  auto got = ByName(back->MergedStateDict());
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, t] : want)
    EXPECT_TRUE(torch::equal(got[name], t)) << name;
  EXPECT_THAT(PublishFullModel(base, out, *model, {}),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(out)));
}

}  // namespace
}  // namespace ftune::train
