// Trainer: schedules, spec and data validation, exact resume, PEFT adapter
// format, merging, divergence detection, and the ftune-train binary.
#include "worker/train/trainer.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>

#include "common/file_util.h"
#include "common/safetensors.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "worker/train/adapter.h"
#include "worker/train/exit_codes.h"
#include "worker/train/model.h"
#include "worker/train/torch_compat.h"

namespace ftune::train {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

void MakeTinyModel(const std::string& dir, const std::string& args = "") {
  std::string cmd = std::string("/usr/bin/python3 ") + FTUNE_SOURCE_DIR +
                    "/scripts/reference/make_tiny_model.py --out " + dir +
                    " --arch llama --gqa --seed 11 " + args;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

// `n` examples of random lengths over a vocabulary of 64, JSONL.
void MakeData(const std::string& path, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::ofstream f(path);
  for (int i = 0; i < n; ++i) {
    int len = 4 + static_cast<int>(rng() % 9);
    nlohmann::json ids = nlohmann::json::array(),
                   labels = nlohmann::json::array();
    std::vector<int> toks;
    // A learnable pattern: t[i+1] = (t[i] * 3 + 1) % 64.
    toks.push_back(static_cast<int>(rng() % 64));
    for (int k = 1; k <= len; ++k) toks.push_back((toks.back() * 3 + 1) % 64);
    for (int k = 0; k < len; ++k) {
      ids.push_back(toks[k]);
      labels.push_back(k == 0 ? -100 : toks[k + 1]);
    }
    f << nlohmann::json{{"input_ids", ids}, {"labels", labels}}.dump() << "\n";
  }
}

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MakeTinyModel(dir_.Sub("model"));
    MakeData(dir_.Sub("train.jsonl"), 24, 1);
    MakeData(dir_.Sub("val.jsonl"), 6, 2);
  }
  TrainSpec Spec(const std::string& run) {
    nlohmann::json j = {{"model_dir", dir_.Sub("model")},
                        {"base_model_name", "tiny-llama"},
                        {"train_data", dir_.Sub("train.jsonl")},
                        {"validation_data", dir_.Sub("val.jsonl")},
                        {"data", {{"format", "pretokenized"}}},
                        {"lora",
                         {{"rank", 4},
                          {"alpha", 8},
                          {"dropout", 0.1},
                          {"target_modules", {"all-linear"}}}},
                        {"hyperparameters",
                         {{"max_steps", 6},
                          {"learning_rate", 5e-3},
                          {"lr_scheduler", "cosine"},
                          {"warmup_steps", 2},
                          {"batch_size", 2},
                          {"gradient_accumulation_steps", 2},
                          {"max_seq_length", 32},
                          {"weight_decay", 0.01},
                          {"max_grad_norm", 0.5},
                          {"seed", 5},
                          {"eval_every_steps", 2},
                          {"checkpoint_every_steps", 2},
                          {"packing", true},
                          // On where a test needs it: a third less compute.
                          {"gradient_checkpointing", false}}},
                        {"output_dir", dir_.Sub(run + "/adapter")},
                        {"checkpoint_dir", dir_.Sub(run + "/ckpt")},
                        {"threads", 1}};
    auto spec = contract::ParseTrainSpec(j.dump());
    EXPECT_TRUE(spec.ok()) << spec.status();
    return *spec;
  }
  ftune::testing::TempDir dir_;
  PretokenizedJsonlSource data_;
};

TEST(LearningRateTest, SchedulesWithWarmup) {
  using contract::LrScheduler;
  EXPECT_DOUBLE_EQ(LearningRate(LrScheduler::kCosine, 1.0, 2, 12, 0), 0.0);
  EXPECT_DOUBLE_EQ(LearningRate(LrScheduler::kCosine, 1.0, 2, 12, 1), 0.5);
  EXPECT_DOUBLE_EQ(LearningRate(LrScheduler::kCosine, 1.0, 2, 12, 2), 1.0);
  EXPECT_NEAR(LearningRate(LrScheduler::kCosine, 1.0, 2, 12, 7), 0.5, 1e-12);
  EXPECT_NEAR(LearningRate(LrScheduler::kCosine, 1.0, 2, 12, 12), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(LearningRate(LrScheduler::kLinear, 2.0, 0, 10, 5), 1.0);
  EXPECT_DOUBLE_EQ(LearningRate(LrScheduler::kConstant, 3.0, 4, 10, 9), 3.0);
}

TEST(DataTest, NamesLineAndFieldAndPacks) {
  ftune::testing::TempDir dir;
  ASSERT_OK(WriteFileAtomically(dir.Sub("bad.jsonl"),
                                "{\"input_ids\":[1,2],\"labels\":[2,-100]}\n"
                                "{\"input_ids\":[1,2,3],\"labels\":[2]}\n"));
  PretokenizedJsonlSource src;
  DataOptions opts;
  opts.max_seq_length = 8;
  EXPECT_THAT(
      src.LoadFile(dir.Sub("bad.jsonl"), opts),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("bad.jsonl:2: \"labels\" and \"input_ids\" differ")));
  ASSERT_OK(WriteFileAtomically(
      dir.Sub("vocab.jsonl"), "{\"input_ids\":[1,99],\"labels\":[99,-100]}\n"));
  opts.vocab_size = 64;
  EXPECT_THAT(
      src.LoadFile(dir.Sub("vocab.jsonl"), opts),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr(
                   "vocab.jsonl:1: labels[0] = 99 is outside the vocabulary")));
  ASSERT_OK(
      WriteFileAtomically(dir.Sub("ok.jsonl"),
                          "{\"input_ids\":[1,2,3],\"labels\":[2,3,-100]}\n"
                          "{\"input_ids\":[4,5,6,7],\"labels\":[5,6,7,-100]}\n"
                          "{\"input_ids\":[8,9],\"labels\":[9,-100]}\n"));
  ASSERT_OK_AND_ASSIGN(LoadedData d, src.LoadFile(dir.Sub("ok.jsonl"), opts));
  ASSERT_EQ(d.rows.size(), 2u);  // [3+4], [2]
  EXPECT_THAT(d.rows[0].segment_ids, ElementsAre(0, 0, 0, 1, 1, 1, 1));
  EXPECT_THAT(d.rows[0].position_ids, ElementsAre(0, 1, 2, 0, 1, 2, 3));
  EXPECT_EQ(d.num_examples, 3);
  EXPECT_EQ(d.sha256.size(), 64u);
}

TEST_F(TrainerTest, ResumeReproducesTheUninterruptedRunBitForBit) {
  std::vector<nlohmann::json> events_a;
  TrainerHooks hooks_a;
  hooks_a.emit = [&](const contract::ProgressEvent& e) {
    events_a.push_back(nlohmann::json::parse(contract::ToJsonLine(e)));
  };
  ASSERT_OK_AND_ASSIGN(TrainResult a, RunTraining(Spec("a"), data_, hooks_a));
  ASSERT_EQ(a.losses.size(), 6u);
  EXPECT_FALSE(a.interrupted);
  EXPECT_LT(a.losses.back(), a.losses.front());  // it learns

  // Stop after 3 steps (as SIGTERM would), then resume from the checkpoint.
  TrainerHooks hooks_b;
  hooks_b.stop_after_steps = 3;
  ASSERT_OK_AND_ASSIGN(TrainResult b, RunTraining(Spec("b"), data_, hooks_b));
  EXPECT_TRUE(b.interrupted);
  EXPECT_THAT(b.last_checkpoint, HasSubstr("step-00000003"));
  TrainSpec resume = Spec("b");
  resume.resume_from = "auto";
  ASSERT_OK_AND_ASSIGN(TrainResult c,
                       RunTraining(resume, data_, TrainerHooks()));
  ASSERT_EQ(c.losses.size(), 3u);
  std::vector<double> curve = b.losses;
  curve.insert(curve.end(), c.losses.begin(), c.losses.end());
  for (size_t i = 0; i < 6; ++i)
    EXPECT_EQ(curve[i], a.losses[i]) << "step " << i + 1;
  EXPECT_EQ(c.best_step, a.best_step);
  EXPECT_EQ(c.best_eval_loss, a.best_eval_loss);
  // The published adapters are identical too.
  ASSERT_OK_AND_ASSIGN(
      std::string sa,
      Sha256File(dir_.Sub("a/adapter/adapter_model.safetensors")));
  ASSERT_OK_AND_ASSIGN(
      std::string sc,
      Sha256File(dir_.Sub("b/adapter/adapter_model.safetensors")));
  EXPECT_EQ(sa, sc);

  // Progress events: metrics every step, eval every 2, checkpoints, done.
  int metrics = 0, evals = 0, ckpts = 0, done = 0;
  for (const auto& e : events_a) {
    std::string t = e["type"];
    metrics += t == "metrics";
    evals += t == "eval";
    ckpts += t == "checkpoint";
    done += t == "done";
    if (t == "metrics") {
      EXPECT_TRUE(e.contains("lr") && e.contains("grad_norm") &&
                  e.contains("tokens_per_s"));
      ASSERT_TRUE(e.contains("padding_share"));
      EXPECT_GE(e["padding_share"].get<double>(), 0.0);
      EXPECT_LT(e["padding_share"].get<double>(), 1.0);
    }
  }
  EXPECT_EQ(metrics, 6);
  EXPECT_EQ(evals, 3);
  EXPECT_EQ(ckpts, 2);  // steps 2 and 4 (the last step publishes instead)
  EXPECT_EQ(done, 1);
}

TEST_F(TrainerTest, PublishesAPeftAdapterAndAMergedModel) {
  TrainSpec spec = Spec("p");
  spec.merge_output_dir = dir_.Sub("p/merged");
  spec.lora.target_modules = {"v_proj", "q_proj", "down_proj"};
  ASSERT_OK(RunTraining(spec, data_, TrainerHooks()));
  ASSERT_OK_AND_ASSIGN(std::string cfg_text,
                       ReadFile(dir_.Sub("p/adapter/adapter_config.json")));
  nlohmann::json cfg = nlohmann::json::parse(cfg_text);
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["task_type"], "CAUSAL_LM");
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["lora_alpha"], 8.0);
  EXPECT_EQ(cfg["lora_dropout"], 0.1);
  EXPECT_EQ(cfg["bias"], "none");
  EXPECT_EQ(cfg["fan_in_fan_out"], false);
  EXPECT_EQ(cfg["inference_mode"], true);
  EXPECT_EQ(cfg["base_model_name_or_path"], "tiny-llama");
  EXPECT_EQ(cfg["target_modules"],
            nlohmann::json({"q_proj", "v_proj", "down_proj"}));

  ASSERT_OK_AND_ASSIGN(
      auto st,
      SafetensorsFile::Open(dir_.Sub("p/adapter/adapter_model.safetensors")));
  // tiny model: hidden 32, 4 heads of 8, 2 kv heads, ffn 72, 2 layers.
  EXPECT_EQ(st->Names().size(), 2u * 3u * 2u);
  ASSERT_OK_AND_ASSIGN(
      auto qa,
      st->Get(
          "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
  EXPECT_THAT(qa.shape, ElementsAre(4, 32));
  ASSERT_OK_AND_ASSIGN(
      auto vb,
      st->Get(
          "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"));
  EXPECT_THAT(vb.shape, ElementsAre(16, 4));
  ASSERT_OK_AND_ASSIGN(
      auto da,
      st->Get("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"));
  EXPECT_THAT(da.shape, ElementsAre(4, 72));
  EXPECT_EQ(da.dtype, StDType::kF32);

  ASSERT_OK_AND_ASSIGN(std::string man_text,
                       ReadFile(dir_.Sub("p/adapter/ftune_manifest.json")));
  nlohmann::json man = nlohmann::json::parse(man_text);
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors"}) {
    ASSERT_OK_AND_ASSIGN(std::string sha,
                         Sha256File(dir_.Sub(std::string("p/adapter/") + f)));
    EXPECT_EQ(man["files"][f]["sha256"], sha) << f;
  }
  ASSERT_OK_AND_ASSIGN(std::string data_sha,
                       Sha256File(dir_.Sub("train.jsonl")));
  EXPECT_EQ(man["dataset"]["train_sha256"], data_sha);
  EXPECT_EQ(man["seed"], 5);
  EXPECT_EQ(man["spec"]["base_model_name"], "tiny-llama");
  EXPECT_TRUE(man["metrics"].contains("best_eval_loss"));

  // Merged weight == W + (alpha/r) * B @ A, computed here from the files.
  ASSERT_OK_AND_ASSIGN(NamedTensors base,
                       ReadTensors(dir_.Sub("model/model.safetensors")));
  ASSERT_OK_AND_ASSIGN(NamedTensors merged,
                       ReadTensors(dir_.Sub("p/merged/model.safetensors")));
  ASSERT_OK_AND_ASSIGN(
      NamedTensors lora,
      ReadTensors(dir_.Sub("p/adapter/adapter_model.safetensors")));
  auto find = [](const NamedTensors& v, const std::string& n) {
    for (auto& [k, t] : v)
      if (k == n) return t;
    ADD_FAILURE() << "missing " << n;
    return torch::Tensor();
  };
  const std::string q = "model.layers.1.self_attn.q_proj";
  torch::Tensor want =
      find(base, q + ".weight").to(torch::kFloat64) +
      2.0 * torch::mm(find(lora, "base_model.model." + q + ".lora_B.weight"),
                      find(lora, "base_model.model." + q + ".lora_A.weight"))
                .to(torch::kFloat64);
  torch::Tensor got = find(merged, q + ".weight").to(torch::kFloat64);
  EXPECT_LT((want - got).abs().max().item<double>(), 1e-6);
  EXPECT_GT(find(lora, "base_model.model." + q + ".lora_B.weight")
                .abs()
                .max()
                .item<double>(),
            0);
  // Untouched projections are copied as they are.
  EXPECT_TRUE(
      torch::equal(find(base, "model.layers.0.self_attn.k_proj.weight"),
                   find(merged, "model.layers.0.self_attn.k_proj.weight")));
  // The merged model loads and gives the LoRA model's loss.
  ASSERT_OK(Model::Load(dir_.Sub("p/merged"), ModelOptions()));

  // Publishing again into the same directory is refused.
  EXPECT_THAT(
      RunTraining(spec, data_, TrainerHooks()),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("already exists")));
}

// Out of memory with oom_retry: the step runs again with half the rows per
// forward pass and twice the accumulation, so the effective batch and the
// loss curve stay those of the run that had the memory. Without the option
// the run fails with the typed out-of-memory error. The fault is injected
// before each forward pass larger than one row.
TEST_F(TrainerTest, OomRetryHalvesTheMicroBatchAndKeepsTheEffectiveBatch) {
  auto spec = [&](const std::string& run, bool retry) {
    TrainSpec s = Spec(run);
    s.lora.dropout = 0;  // dropout masks depend on the micro-batch split
    s.hp.batch_size = 4;
    s.hp.gradient_accumulation_steps = 1;
    s.hp.eval_every_steps = 3;
    s.hp.checkpoint_every_steps = 0;
    s.hp.oom_retry = retry;
    return s;
  };
  auto inject = [](int64_t rows) {
    TORCH_CHECK_WITH(OutOfMemoryError, rows <= 1,
                     "injected: out of memory for ", rows, " rows");
  };
  std::vector<nlohmann::json> events_a;
  TrainerHooks plain;
  plain.emit = [&](const contract::ProgressEvent& e) {
    events_a.push_back(nlohmann::json::parse(contract::ToJsonLine(e)));
  };
  ASSERT_OK_AND_ASSIGN(TrainResult a,
                       RunTraining(spec("a", true), data_, plain));

  std::vector<nlohmann::json> events;
  TrainerHooks faulty;
  faulty.emit = [&](const contract::ProgressEvent& e) {
    events.push_back(nlohmann::json::parse(contract::ToJsonLine(e)));
  };
  faulty.before_micro_batch = inject;
  ASSERT_OK_AND_ASSIGN(TrainResult b,
                       RunTraining(spec("b", true), data_, faulty));
  ASSERT_EQ(b.losses.size(), a.losses.size());
  for (size_t i = 0; i < a.losses.size(); ++i)
    EXPECT_NEAR(b.losses[i], a.losses[i], 1e-5 * std::abs(a.losses[i]))
        << "step " << i + 1;
  EXPECT_NEAR(b.best_eval_loss, a.best_eval_loss,
              1e-5 * std::abs(a.best_eval_loss));
  std::vector<std::pair<int64_t, int64_t>> retries;  // (micro, accumulation)
  for (const auto& e : events) {
    if (e["type"] == "oom_retry") {
      EXPECT_EQ(e["step"], 1);
      EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("injected"));
      retries.emplace_back(e["micro_batch_size"],
                           e["gradient_accumulation_steps"]);
    }
    if (e["type"] == "metrics") {
      EXPECT_GT(e["peak_memory_bytes"].get<int64_t>(), 0);
    }
  }
  EXPECT_THAT(retries, ElementsAre(std::make_pair(int64_t{2}, int64_t{2}),
                                   std::make_pair(int64_t{1}, int64_t{4})));

  absl::StatusOr<TrainResult> c = RunTraining(spec("c", false), data_, faulty);
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kResourceExhausted,
                          HasSubstr("out of memory")));
  EXPECT_EQ(ExitCodeFor(c.status()), kExitOutOfMemory);
}

TEST_F(TrainerTest, UnavailableDeviceIsAPreconditionFailure) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a CUDA device is visible";
  TrainSpec spec = Spec("cuda");
  spec.device = "cuda";
  absl::StatusOr<TrainResult> r = RunTraining(spec, data_, {});
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kFailedPrecondition,
                          HasSubstr("spec field \"device\": \"cuda\"")));
  EXPECT_EQ(ExitCodeFor(r.status()), kExitBadInput);
}

TEST_F(TrainerTest, GradientCheckpointingTrainsTheSameCurve) {
  TrainSpec plain = Spec("plain");
  plain.hp.checkpoint_every_steps = 0;
  TrainSpec ckpt = plain;
  ckpt.output_dir = dir_.Sub("gc/adapter");
  ckpt.hp.gradient_checkpointing = true;
  ASSERT_OK_AND_ASSIGN(TrainResult a, RunTraining(plain, data_, {}));
  ASSERT_OK_AND_ASSIGN(TrainResult b, RunTraining(ckpt, data_, {}));
  // Same dropout masks, same gradients: the same curve, bit for bit.
  EXPECT_EQ(a.losses, b.losses);
  EXPECT_EQ(a.best_eval_loss, b.best_eval_loss);
}

TEST_F(TrainerTest, NonFiniteLossIsATypedFailure) {
  // Poison one norm weight with NaN.
  ASSERT_OK_AND_ASSIGN(
      auto file, SafetensorsFile::Open(dir_.Sub("model/model.safetensors")));
  SafetensorsWriter w;
  for (const std::string& name : file->Names()) {
    ASSERT_OK_AND_ASSIGN(auto v, file->Get(name));
    std::vector<uint8_t> bytes(v.data, v.data + v.size_bytes);
    if (name == "model.norm.weight") {
      float nan = std::nanf("");
      std::memcpy(bytes.data(), &nan, 4);
    }
    ASSERT_OK(w.Add(name, v.dtype, v.shape, bytes.data(), bytes.size()));
  }
  ASSERT_OK(w.WriteAtomically(dir_.Sub("model/model.safetensors")));
  absl::StatusOr<TrainResult> r = RunTraining(Spec("n"), data_, TrainerHooks());
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kDataLoss, HasSubstr("diverged")));
  EXPECT_EQ(ExitCodeFor(r.status()), kExitDiverged);
}

// --- The binary
// -----------------------------------------------------------------
struct ProcResult {
  int exit_code = -1;
  std::vector<nlohmann::json> lines;
};

// Runs ftune-train with `args`; if `term_after_metrics`, sends SIGTERM after
// the first metrics line.
ProcResult RunBinary(const std::string& args, bool term_after_metrics = false) {
  std::string cmd =
      std::string(FTUNE_BIN_DIR) + "/ftune-train " + args + " 2>/dev/null";
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), nullptr);
    _exit(127);
  }
  close(fds[1]);
  FILE* out = fdopen(fds[0], "r");
  ProcResult r;
  char buf[65536];
  bool sent = false;
  while (fgets(buf, sizeof buf, out) != nullptr) {
    auto j = nlohmann::json::parse(buf, nullptr, false);
    if (j.is_discarded()) continue;
    r.lines.push_back(j);
    if (term_after_metrics && !sent && j.value("type", "") == "metrics") {
      kill(pid, SIGTERM);
      sent = true;
    }
  }
  fclose(out);
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST_F(TrainerTest, BinaryRunsASpecAndReportsBadInput) {
  TrainSpec spec = Spec("bin");
  nlohmann::json j = nlohmann::json::parse(spec.source_json);
  ASSERT_OK(WriteFileAtomically(dir_.Sub("spec.json"), j.dump()));
  ProcResult ok = RunBinary("--spec " + dir_.Sub("spec.json"));
  EXPECT_EQ(ok.exit_code, kExitOk);
  ASSERT_FALSE(ok.lines.empty());
  EXPECT_EQ(ok.lines.back()["type"], "done");

  j["hyperparameters"]["batch_size"] = -1;
  ASSERT_OK(WriteFileAtomically(dir_.Sub("bad.json"), j.dump()));
  ProcResult bad = RunBinary("--spec " + dir_.Sub("bad.json"));
  EXPECT_EQ(bad.exit_code, kExitBadInput);
  ASSERT_EQ(bad.lines.size(), 1u);
  EXPECT_EQ(bad.lines[0]["type"], "error");
  EXPECT_EQ(bad.lines[0]["reason"], "bad_input");
  EXPECT_THAT(bad.lines[0]["message"].get<std::string>(),
              HasSubstr("batch_size"));
}

TEST_F(TrainerTest, SigtermCheckpointsAndExitsInterrupted) {
  TrainSpec spec = Spec("sig");
  nlohmann::json j = nlohmann::json::parse(spec.source_json);
  j["hyperparameters"]["max_steps"] = 100000;
  j["hyperparameters"]["checkpoint_every_steps"] = 0;
  j["hyperparameters"]["eval_every_steps"] = 0;
  ASSERT_OK(WriteFileAtomically(dir_.Sub("spec.json"), j.dump()));
  ProcResult r =
      RunBinary("--spec " + dir_.Sub("spec.json"), /*term_after_metrics=*/true);
  EXPECT_EQ(r.exit_code, kExitInterrupted);
  ASSERT_FALSE(r.lines.empty());
  EXPECT_EQ(r.lines.back()["type"], "interrupted");
  std::string path = r.lines.back()["path"];
  EXPECT_TRUE(access((path + "/trainer_state.json").c_str(), F_OK) == 0)
      << path;
}

}  // namespace
}  // namespace ftune::train
