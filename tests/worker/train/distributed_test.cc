// ftune-train as ranks of a c10d process group (Gloo on loopback): two
// ranks under torchrun train exactly what one process trains (per-step
// loss, eval loss and final LoRA weights; for DPO's pairs too), a SIGKILLed
// rank makes its peer exit with the typed peer-lost failure instead of hanging,
// and launcher variables that contradict each other are bad input naming the
// variable.
//
// The real binary and the real launcher: no LibTorch in this process.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"
#include "tests/worker/train/tiny_model.h"
#include "worker/train/exit_codes.h"

namespace ftune::train {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

const std::string kTrain = std::string(FTUNE_BIN_DIR) + "/ftune-train";
constexpr char kTorchrun[] = "/usr/bin/torchrun";

// A port nobody listens on right now (the kernel's choice for port 0).
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    return -1;
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

void WriteChatData(const std::string& path, int n, uint64_t seed) {
  static const char* kWords[] = {"cat", "dog", "bird", "fish", "cow", "owl"};
  std::mt19937_64 rng(seed);
  std::ofstream f(path);
  for (int i = 0; i < n; ++i) {
    const std::string w = kWords[rng() % 6];
    f << json{{"messages",
               {{{"role", "user"}, {"content", w}},
                {{"role", "assistant"},
                 {"content", std::string(w.rbegin(), w.rend())}}}}}
             .dump()
      << "\n";
  }
}

struct RunOutput {
  int exit_code = -1;
  std::vector<json> lines;  // progress lines on stdout
  std::vector<json> Of(const std::string& type) const {
    std::vector<json> out;
    for (const json& j : lines)
      if (j.value("type", "") == type) out.push_back(j);
    return out;
  }
};

// Starts `argv`, collects its JSON lines until stdout closes (or, with
// `on_line`, until it returns true) and waits for the exit.
RunOutput Collect(testing::Subprocess& p,
                  const std::function<bool(const json&)>& on_line = nullptr) {
  RunOutput r;
  while (true) {
    absl::StatusOr<std::string> line =
        p.ReadLineWithPrefix("{", absl::Seconds(240));
    if (!line.ok()) break;
    json j = json::parse("{" + *line, nullptr, false);
    if (j.is_discarded()) continue;
    r.lines.push_back(j);
    if (on_line && on_line(j)) break;
  }
  return r;
}

// The JSON lines of a file (a rank's stdout that torchrun captured).
RunOutput ParseLines(const std::string& path) {
  RunOutput r;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) {
    json j = json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object()) r.lines.push_back(j);
  }
  return r;
}

// torchrun --log_dir D keeps local rank i's stdout in
// D/<run id>_<random>/attempt_0/i/stdout.log.
std::string TorchrunStdout(const std::string& log_dir, int local_rank) {
  for (const auto& run : std::filesystem::directory_iterator(log_dir)) {
    const std::string path =
        JoinPath(run.path().string(),
                 absl::StrCat("attempt_0/", local_rank, "/stdout.log"));
    if (std::filesystem::exists(path)) return path;
  }
  return "";
}

int ExitCode(testing::Subprocess& p) {
  absl::StatusOr<int> status = p.Wait(absl::Seconds(120));
  EXPECT_TRUE(status.ok()) << "still running: " << status.status();
  if (!status.ok() || !WIFEXITED(*status)) return -1;
  return WEXITSTATUS(*status);
}

class DistributedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(testing::WriteTinyLlama(dir_.Sub("model"), /*vocab=*/320,
                                      /*seed=*/5));
    ASSERT_OK(testing::WriteChatTokenizer(dir_.Sub("model")));
    WriteChatData(dir_.Sub("train.jsonl"), 40, 1);
    WriteChatData(dir_.Sub("val.jsonl"), 7, 2);
  }
  // Global batch 4 (batch_size 4 x accumulation 1). No LoRA dropout: with
  // it, ranks draw their own masks (docs/distributed.md), so the runs would
  // be equal in distribution only.
  std::string WriteSpec(const std::string& run, int64_t max_steps) {
    json spec = {
        {"model_dir", dir_.Sub("model")},
        {"base_model_name", "tiny-llama"},
        {"train_data", dir_.Sub("train.jsonl")},
        {"validation_data", dir_.Sub("val.jsonl")},
        {"data", {{"format", "text"}, {"chat_template", "auto"}}},
        {"lora",
         {{"rank", 4},
          {"alpha", 8},
          {"dropout", 0.0},
          {"target_modules", {"all-linear"}}}},
        {"hyperparameters",
         {{"max_steps", max_steps},
          {"learning_rate", 1e-2},
          {"warmup_steps", 1},
          {"batch_size", 4},
          {"max_seq_length", 48},
          {"max_grad_norm", 0.05},  // small: the global-norm clip is used
          {"seed", 11},
          {"eval_every_steps", 3}}},
        {"output_dir", dir_.Sub(run + "/adapter")},
        {"checkpoint_dir", dir_.Sub(run + "/ckpt")},
        {"threads", 1}};
    const std::string path = dir_.Sub(run + ".json");
    EXPECT_OK(WriteFileAtomically(path, spec.dump()));
    return path;
  }
  // The adapter's tensors (F32, or F64 from a float64 run) as doubles.
  std::map<std::string, std::vector<double>> Adapter(const std::string& run) {
    std::map<std::string, std::vector<double>> out;
    auto st = SafetensorsFile::Open(
        JoinPath(dir_.Sub(run + "/adapter"), "adapter_model.safetensors"));
    EXPECT_TRUE(st.ok()) << st.status();
    if (!st.ok()) return out;
    for (const std::string& name : (*st)->Names()) {
      auto v = (*st)->Get(name);
      EXPECT_TRUE(v.ok());
      std::vector<double>& values = out[name];
      if (v->dtype == StDType::kF64) {
        values.resize(v->numel());
        std::memcpy(values.data(), v->data, values.size() * sizeof(double));
        continue;
      }
      EXPECT_EQ(v->dtype, StDType::kF32) << name;
      std::vector<float> f(v->numel());
      std::memcpy(f.data(), v->data, f.size() * sizeof(float));
      values.assign(f.begin(), f.end());
    }
    return out;
  }
  // Starts `spec` as ranks 0 and 1 of a world of 2, plain child processes
  // with the launcher's variables (rank 0 hosts the TCPStore on a free
  // port) plus `env`; rank r's stderr goes to <log>r.log.
  absl::Status StartTwoRanks(testing::Subprocess (&ranks)[2],
                             const std::string& spec, const std::string& log,
                             std::map<std::string, std::string> env = {}) {
    env["WORLD_SIZE"] = "2";
    env["MASTER_ADDR"] = "127.0.0.1";
    env["MASTER_PORT"] = std::to_string(FreePort());
    for (int r = 0; r < 2; ++r) {
      env["RANK"] = std::to_string(r);
      absl::Status started =
          ranks[r].Start({kTrain, "--spec", spec}, env,
                         dir_.Sub(absl::StrCat(log, r, ".log")));
      if (!started.ok()) return started;
    }
    return absl::OkStatus();
  }
  testing::TempDir dir_;
};

double Relative(double a, double b) {
  return std::abs(a - b) / std::max(std::abs(b), 1e-12);
}

TEST_F(DistributedTest, TwoRanksUnderTorchrunTrainWhatOneProcessTrains) {
  constexpr int64_t kSteps = 6;
  testing::Subprocess single;
  ASSERT_OK(single.Start({kTrain, "--spec", WriteSpec("single", kSteps)}, {},
                         dir_.Sub("single.log")));
  RunOutput one = Collect(single);
  ASSERT_EQ(ExitCode(single), kExitOk);

  // torchrun's static rendezvous: its agent hosts the TCPStore, the ranks
  // are its clients (TORCHELASTIC_USE_AGENT_STORE). Debian 12's torchrun
  // (1.13 on Python 3.11) fails on its default "-r 0 -t 0" (IntFlag
  // iteration skips the 0 member), so the ranks' stdout goes to files.
  ASSERT_EQ(::access(kTorchrun, X_OK), 0) << "python3-torch's torchrun";
  const std::string logs = dir_.Sub("torchrun");
  testing::Subprocess launcher;
  ASSERT_OK(launcher.Start(
      {kTorchrun, "--nnodes", "1", "--nproc_per_node", "2", "--master_addr",
       "127.0.0.1", "--master_port", std::to_string(FreePort()), "--log_dir",
       logs, "--redirects", "1", "--tee", "2", "--no_python", kTrain, "--spec",
       WriteSpec("ranks", kSteps)},
      {{"OMP_NUM_THREADS", "1"}}, dir_.Sub("ranks.log")));
  (void)Collect(launcher);
  ASSERT_EQ(ExitCode(launcher), kExitOk)
      << ReadFile(dir_.Sub("ranks.log")).value_or("");
  const RunOutput two = ParseLines(TorchrunStdout(logs, 0));

  // One voice: rank 0 reports (one start, one done), rank 1 prints nothing.
  EXPECT_EQ(two.Of("start").size(), 1u);
  EXPECT_EQ(two.Of("done").size(), 1u);
  EXPECT_TRUE(ParseLines(TorchrunStdout(logs, 1)).lines.empty());
  const std::vector<json> a = one.Of("metrics"), b = two.Of("metrics");
  ASSERT_EQ(a.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("step ", i + 1));
    EXPECT_LT(Relative(b[i]["loss"], a[i]["loss"]), 1e-5)
        << b[i]["loss"] << " vs " << a[i]["loss"];
    EXPECT_LT(Relative(b[i]["grad_norm"], a[i]["grad_norm"]), 1e-5);
  }
  // The clip was active, so the global norm decided the update.
  EXPECT_GT(a.back()["grad_norm"].get<double>(), 0.05);
  const std::vector<json> ea = one.Of("eval"), eb = two.Of("eval");
  ASSERT_EQ(ea.size(), 2u);
  ASSERT_EQ(eb.size(), ea.size());
  for (size_t i = 0; i < ea.size(); ++i)
    EXPECT_LT(Relative(eb[i]["eval_loss"], ea[i]["eval_loss"]), 1e-5);
  // Task metrics (on by default): each rank completes its share of the 7
  // validation examples (3 and 4) and the counts are summed.
  for (const std::vector<json>* evals : {&ea, &eb}) {
    for (const json& e : *evals) {
      ASSERT_TRUE(e.contains("task")) << e.dump();
      EXPECT_EQ(e["task"]["examples"], 7) << e.dump();
      EXPECT_GE(e["task"]["token_f1"].get<double>(), 0);
      EXPECT_LE(e["task"]["token_f1"].get<double>(), 1);
    }
  }

  const auto wa = Adapter("single"), wb = Adapter("ranks");
  ASSERT_FALSE(wa.empty());
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [name, va] : wa) {
    ASSERT_TRUE(wb.count(name)) << name;
    const std::vector<double>& vb = wb.at(name);
    ASSERT_EQ(va.size(), vb.size());
    double diff = 0, scale = 0;
    for (size_t i = 0; i < va.size(); ++i) {
      diff = std::max(diff, std::abs(va[i] - vb[i]));
      scale = std::max(scale, std::abs(va[i]));
    }
    EXPECT_LE(diff, 1e-5 * scale) << name;
  }
}

// DPO over pairs: a pair's two rows stay on one rank and each rank's share
// is weighted by pairs, so 2 ranks (plain child processes with the
// launcher's variables) train what one process trains: losses, preference
// statistics, evaluation and adapter. 3 pairs a step and 7 validation pairs
// split unevenly (1/2 and 3/4), so the weighting is what makes them agree.
TEST_F(DistributedTest, DpoOverTwoRanksTrainsWhatOneProcessTrains) {
  ASSERT_OK(testing::WritePreferencePairs(dir_.Sub("pairs.jsonl"), 12, 3));
  ASSERT_OK(testing::WritePreferencePairs(dir_.Sub("pairs-val.jsonl"), 7, 4));
  auto spec_for = [&](const std::string& run) {
    const std::string path = WriteSpec(run, /*max_steps=*/4);
    // 3 pairs a step, in one micro-batch (one process) or 1 + 2 (ranks).
    json s = json::parse(ReadFile(path).value_or("{}"));
    s["train_data"] = dir_.Sub("pairs.jsonl");
    s["validation_data"] = dir_.Sub("pairs-val.jsonl");
    s["objective"] = "dpo";
    s["preference"] = {{"beta", 0.5}};
    // In float64: DPO's gradient starts as a difference of two near-equal
    // ones, and Adam turns the float32 rounding of such a near-zero
    // element (summed in another order over ranks) into a visible step;
    // in float64 that rounding stays far below the tolerance, so the
    // comparison checks the sharding and weighting, not float32 noise.
    s["dtype"] = "fp64";
    s["hyperparameters"]["batch_size"] = 3;
    s["hyperparameters"]["packing"] = false;
    s["hyperparameters"]["eval_every_steps"] = 2;
    EXPECT_OK(WriteFileAtomically(path, s.dump()));
    return path;
  };
  testing::Subprocess single;
  ASSERT_OK(single.Start({kTrain, "--spec", spec_for("dpo1")}, {},
                         dir_.Sub("dpo1.log")));
  const RunOutput one = Collect(single);
  ASSERT_EQ(ExitCode(single), kExitOk)
      << ReadFile(dir_.Sub("dpo1.log"))->c_str();

  const std::string spec = spec_for("dpo2");
  testing::Subprocess ranks[2];
  ASSERT_OK(StartTwoRanks(ranks, spec, "dpo2-"));
  const RunOutput two = Collect(ranks[0]);
  ASSERT_EQ(ExitCode(ranks[0]), kExitOk)
      << ReadFile(dir_.Sub("dpo2-0.log"))->c_str();
  ASSERT_EQ(ExitCode(ranks[1]), kExitOk)
      << ReadFile(dir_.Sub("dpo2-1.log"))->c_str();

  auto expect_same = [](const json& a, const json& b, const char* key) {
    EXPECT_LT(Relative(b[key].get<double>(), a[key].get<double>()), 1e-5)
        << key << ": " << b[key] << " vs " << a[key];
  };
  // Rewards are differences of log-probabilities (float32 sums over the
  // answer's tokens, batched differently): an absolute floor as well.
  auto expect_same_preference = [&](const json& a, const json& b) {
    ASSERT_TRUE(a.contains("preference") && b.contains("preference"));
    for (const char* key :
         {"rewards_chosen", "rewards_rejected", "reward_accuracy",
          "reward_margin", "logps_chosen", "logps_rejected"}) {
      const double x = a["preference"][key], y = b["preference"][key];
      EXPECT_LE(std::abs(x - y), 1e-5 * std::abs(x) + 1e-5)
          << key << ": " << y << " vs " << x;
    }
  };
  const std::vector<json> a = one.Of("metrics"), b = two.Of("metrics");
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("step ", i + 1));
    expect_same(a[i], b[i], "loss");
    expect_same(a[i], b[i], "grad_norm");
    expect_same_preference(a[i], b[i]);
  }
  // Learning happened: the later steps' rewards are not the reference's.
  EXPECT_GT(std::abs(a.back()["preference"]["reward_margin"].get<double>()),
            1e-4);
  const std::vector<json> ea = one.Of("eval"), eb = two.Of("eval");
  ASSERT_EQ(ea.size(), 2u);
  ASSERT_EQ(eb.size(), ea.size());
  for (size_t i = 0; i < ea.size(); ++i) {
    expect_same(ea[i], eb[i], "eval_loss");
    expect_same_preference(ea[i], eb[i]);
  }
  const auto wa = Adapter("dpo1"), wb = Adapter("dpo2");
  ASSERT_FALSE(wa.empty());
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [name, va] : wa) {
    const std::vector<double>& vb = wb.at(name);
    ASSERT_EQ(va.size(), vb.size());
    double diff = 0, scale = 0;
    for (size_t i = 0; i < va.size(); ++i) {
      diff = std::max(diff, std::abs(va[i] - vb[i]));
      scale = std::max(scale, std::abs(va[i]));
    }
    EXPECT_LE(diff, 1e-5 * scale) << name;
  }
}

// Two ranks as plain child processes with the launcher's variables (rank 0
// hosts the TCPStore); `victim` is SIGKILLed after the first step.
class PeerLostTest : public DistributedTest,
                     public ::testing::WithParamInterface<int> {};

TEST_P(PeerLostTest, SurvivorExitsWithThePeerLostFailure) {
  const int victim = GetParam(), survivor = 1 - victim;
  const std::string spec = WriteSpec("lost", /*max_steps=*/400);
  testing::Subprocess ranks[2];
  ASSERT_OK(StartTwoRanks(
      ranks, spec, "lost",
      {{"LOCAL_WORLD_SIZE", "2"}, {"FTUNE_COLLECTIVE_TIMEOUT_S", "120"}}));
  // Rank 0 prints the progress; once a step is done, kill the victim.
  RunOutput head = Collect(
      ranks[0], [](const json& j) { return j.value("type", "") == "metrics"; });
  ASSERT_FALSE(head.Of("metrics").empty());
  ASSERT_OK(ranks[victim].Signal(SIGKILL));
  (void)ranks[victim].Wait(absl::Seconds(30));
  RunOutput rest = Collect(ranks[survivor]);
  EXPECT_EQ(ExitCode(ranks[survivor]), kExitPeerLost);
  const std::vector<json> errors = rest.Of("error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0]["reason"], "peer_lost");
  EXPECT_THAT(errors[0]["message"].get<std::string>(),
              HasSubstr(absl::StrCat("rank ", survivor, " of 2")));
  // Nothing was published.
  EXPECT_FALSE(std::filesystem::exists(
      JoinPath(dir_.Sub("lost/adapter"), "adapter_config.json")));
}

INSTANTIATE_TEST_SUITE_P(EitherRank, PeerLostTest, ::testing::Values(0, 1));

// SIGTERM reaching one rank only (here rank 1) stops both after the same
// step: rank 0 writes the one checkpoint, and both exit "interrupted".
TEST_F(DistributedTest, SigtermOnOneRankStopsEveryRankWithOneCheckpoint) {
  const std::string spec = WriteSpec("term", /*max_steps=*/400);
  testing::Subprocess ranks[2];
  ASSERT_OK(StartTwoRanks(ranks, spec, "term"));
  RunOutput head = Collect(
      ranks[0], [](const json& j) { return j.value("type", "") == "metrics"; });
  ASSERT_FALSE(head.Of("metrics").empty());
  ASSERT_OK(ranks[1].Signal(SIGTERM));
  RunOutput rest = Collect(ranks[0]);
  EXPECT_EQ(ExitCode(ranks[0]), kExitInterrupted);
  EXPECT_EQ(ExitCode(ranks[1]), kExitInterrupted);
  const std::vector<json> stopped = rest.Of("interrupted");
  ASSERT_EQ(stopped.size(), 1u);
  const std::string checkpoint = stopped[0]["path"];
  EXPECT_TRUE(std::filesystem::exists(checkpoint)) << checkpoint;
  EXPECT_EQ(rest.Of("checkpoint").size(), 1u);
  int checkpoints = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(dir_.Sub("term/ckpt")))
    checkpoints += e.path().filename().string().rfind("step-", 0) == 0;
  EXPECT_EQ(checkpoints, 1);

  // The checkpoint records its world size, and one process resumes it: the
  // data position and the global batch do not depend on the world size.
  std::ifstream state_in(JoinPath(checkpoint, "trainer_state.json"));
  const json state = json::parse(state_in, nullptr, false);
  ASSERT_FALSE(state.is_discarded());
  EXPECT_EQ(state.value("world_size", 0), 2);
  const int64_t step = state.value("step", int64_t{0});
  const int64_t consumed = state.value("consumed_rows", int64_t{0});
  EXPECT_EQ(consumed, step * 4);  // global batch 4 a step
  std::ifstream spec_in(spec);
  json resumed = json::parse(spec_in, nullptr, false);
  ASSERT_FALSE(resumed.is_discarded());
  resumed["hyperparameters"]["max_steps"] = step + 2;
  resumed["output_dir"] = dir_.Sub("resumed/adapter");
  resumed["checkpoint_dir"] = dir_.Sub("resumed/ckpt");
  resumed["resume_from"] = checkpoint;
  const std::string resumed_spec = dir_.Sub("resumed.json");
  ASSERT_OK(WriteFileAtomically(resumed_spec, resumed.dump()));
  testing::Subprocess one;
  ASSERT_OK(
      one.Start({kTrain, "--spec", resumed_spec}, {}, dir_.Sub("resumed.log")));
  RunOutput after = Collect(one);
  ASSERT_EQ(ExitCode(one), kExitOk);
  ASSERT_EQ(after.Of("resumed").size(), 1u);
  EXPECT_EQ(after.Of("resumed")[0].value("step", int64_t{-1}), step);
  const std::vector<json> metrics = after.Of("metrics");
  ASSERT_EQ(metrics.size(), 2u);
  EXPECT_EQ(metrics[0].value("step", int64_t{0}), step + 1);
  ASSERT_OK_AND_ASSIGN(std::string log, ReadFile(dir_.Sub("resumed.log")));
  EXPECT_THAT(log, HasSubstr("was written by 2 rank(s); resuming on 1"));
}

// Runs ftune-train with `env` and returns its exit code and error line.
std::pair<int, std::string> BadLaunch(
    const std::string& spec, const std::map<std::string, std::string>& env,
    const std::string& log) {
  testing::Subprocess p;
  EXPECT_OK(p.Start({kTrain, "--spec", spec}, env, log));
  RunOutput r = Collect(p);
  const int code = ExitCode(p);
  const std::vector<json> errors = r.Of("error");
  return {code, errors.empty() ? "" : errors[0].value("message", "")};
}

TEST_F(DistributedTest, ContradictoryLauncherVariablesAreBadInput) {
  const std::string spec = WriteSpec("bad", 2);
  const std::string log = dir_.Sub("bad.log");
  auto [code, message] = BadLaunch(spec,
                                   {{"WORLD_SIZE", "2"},
                                    {"RANK", "2"},
                                    {"MASTER_ADDR", "127.0.0.1"},
                                    {"MASTER_PORT", "29500"}},
                                   log);
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_THAT(message, HasSubstr("RANK=2 must be below WORLD_SIZE=2"));

  std::tie(code, message) = BadLaunch(
      spec, {{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_PORT", "29500"}},
      log);
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_THAT(message, HasSubstr("MASTER_ADDR is missing"));

  std::tie(code, message) = BadLaunch(spec,
                                      {{"WORLD_SIZE", "two"},
                                       {"RANK", "0"},
                                       {"MASTER_ADDR", "127.0.0.1"},
                                       {"MASTER_PORT", "29500"}},
                                      log);
  EXPECT_EQ(code, kExitBadInput);
  EXPECT_THAT(message, HasSubstr("WORLD_SIZE=\"two\""));
}

// Rank 1 of 2 whose rank 0 never comes: the rendezvous times out into the
// typed, retryable failure.
TEST_F(DistributedTest, RendezvousThatNeverCompletesIsPeerLost) {
  auto [code, message] = BadLaunch(WriteSpec("alone", 2),
                                   {{"WORLD_SIZE", "2"},
                                    {"RANK", "1"},
                                    {"MASTER_ADDR", "127.0.0.1"},
                                    {"MASTER_PORT", std::to_string(FreePort())},
                                    {"FTUNE_RENDEZVOUS_TIMEOUT_S", "2"}},
                                   dir_.Sub("alone.log"));
  EXPECT_EQ(code, kExitPeerLost);
  EXPECT_THAT(message, HasSubstr("rendezvous"));
}

}  // namespace
}  // namespace ftune::train
