// Multi-rank jobs end to end with the real trainer: ftune-scheduler, one
// CPU ftune-worker with two CPU slots, and `ftune-train` started by the
// agent as two ranks of one Gloo process group over loopback
// (worker/agent/rank_group.h), on a tiny random-weights Llama.
//
// What the trainer's own distributed test (tests/worker/train/
// distributed_test.cc) already proves, rank for rank, is not repeated here;
// these tests check what the agent adds: that a job with
// resources.processes = 2 trains what one process trains, that a rank
// killed mid-run fails the attempt as a whole (no process left), which is
// retried from its checkpoint and published once, that a cancel stops every
// rank, that a job no worker could hold is refused at create, and that a
// DPO job of two ranks publishes and reports its reward statistics (and one
// with a prompt too long for max_seq_length fails before its first step).
// About 70 s on the 2-core development machine, the DPO test about 27 s of
// it (most of it trainer start-up: four ranks of two jobs).
#include <dirent.h>
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/worker/train/tiny_model.h"

namespace ftune::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

const std::string kTrainer = std::string(FTUNE_BIN_DIR) + "/ftune-train";

std::string ChatJsonl(int n) { return ReversedWordChats(n, 11); }

// A trainer process of `job_id` (its --spec lies in the attempt's work
// dir, named after the job) and its RANK.
struct TrainerPid {
  pid_t pid;
  int rank;
};

std::string ReadProcFile(pid_t pid, const char* name) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/", name), std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<TrainerPid> TrainersOf(const std::string& job_id) {
  std::vector<TrainerPid> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    int pid;
    if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
    std::string cmdline = ReadProcFile(pid, "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (!absl::StrContains(cmdline, "ftune-train") ||
        !absl::StrContains(cmdline, job_id + "-attempt-")) {
      continue;
    }
    // A zombie (exited, not yet reaped) is not running.
    const std::string stat = ReadProcFile(pid, "stat");
    const size_t paren = stat.rfind(')');
    if (paren != std::string::npos && paren + 2 < stat.size() &&
        stat[paren + 2] == 'Z') {
      continue;
    }
    std::string env = ReadProcFile(pid, "environ");
    int rank = -1;
    for (size_t at = 0; at < env.size();) {
      const size_t end = env.find('\0', at);
      const std::string kv = env.substr(at, end - at);
      if (absl::StartsWith(kv, "RANK=")) {
        (void)absl::SimpleAtoi(kv.substr(5), &rank);
      }
      if (end == std::string::npos) break;
      at = end + 1;
    }
    out.push_back({pid, rank});
  }
  ::closedir(d);
  return out;
}

std::map<std::string, std::vector<float>> AdapterWeights(
    const std::string& dir) {
  std::map<std::string, std::vector<float>> out;
  auto st = SafetensorsFile::Open(JoinPath(dir, "adapter_model.safetensors"));
  EXPECT_TRUE(st.ok()) << st.status();
  if (!st.ok()) return out;
  for (const std::string& name : (*st)->Names()) {
    auto v = (*st)->Get(name);
    EXPECT_TRUE(v.ok());
    EXPECT_EQ(v->dtype, StDType::kF32) << name;
    std::vector<float> values(static_cast<size_t>(v->numel()));
    std::memcpy(values.data(), v->data, values.size() * sizeof(float));
    out[name] = values;
  }
  return out;
}

bool Ended(const v1::Job& j) {
  return j.state() == v1::JOB_STATE_SUCCEEDED ||
         j.state() == v1::JOB_STATE_FAILED ||
         j.state() == v1::JOB_STATE_CANCELLED;
}

class MultiRankTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterOptions options;
    options.model_name = "tiny-llama";
    options.write_model = [](const std::string& dir) -> absl::Status {
      FTUNE_RETURN_IF_ERROR(WriteTinyLlama(dir, /*vocab=*/320, /*seed=*/3));
      return WriteChatTokenizer(dir);
    };
    cluster_ = std::make_unique<Cluster>(options);
    ASSERT_OK(cluster_->StartScheduler());
    ASSERT_OK_AND_ASSIGN(tenant_, cluster_->CreateTenant("acme"));
    ASSERT_OK_AND_ASSIGN(
        file_, cluster_->UploadFile(tenant_, "chat.jsonl", ChatJsonl(32)));
    WorkerOptions w;
    w.trainer = kTrainer;
    w.cpu_slots = 2;
    ASSERT_OK(cluster_->StartWorker(w).status());
  }

  // `processes` ranks of `batch_size` rows, accumulating `accumulation`.
  v1::JobSpec Spec(int processes, int max_steps, int checkpoint_every,
                   int batch_size, int accumulation) {
    v1::JobSpec spec = StepsSpec("tiny-llama", file_, max_steps,
                                 checkpoint_every, /*max_restarts=*/2);
    v1::Hyperparameters* h = spec.mutable_hyperparameters();
    h->set_learning_rate(2e-2);
    h->set_warmup_steps(0);
    h->set_seed(7);
    h->set_batch_size(batch_size);
    h->set_gradient_accumulation_steps(accumulation);
    h->set_gradient_checkpointing(false);
    spec.mutable_lora()->set_rank(4);
    spec.mutable_lora()->set_alpha(8);
    spec.mutable_lora()->add_target_modules("q_proj");
    spec.mutable_lora()->add_target_modules("v_proj");
    spec.mutable_resources()->set_processes(processes);
    spec.mutable_resources()->set_cpu_threads(processes);
    return spec;
  }

  std::string AdapterDir(const std::string& job_id) {
    return cluster_->StoragePath(
        absl::StrCat("jobs/", tenant_.id, "/", job_id, "/adapter"));
  }

  std::vector<std::string> Events(const std::string& job_id,
                                  v1::JobEventType type) {
    std::vector<std::string> out;
    absl::StatusOr<std::vector<v1::JobEvent>> events =
        cluster_->ListEvents(tenant_, job_id);
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) return out;
    for (const v1::JobEvent& e : *events) {
      if (e.type() == type) out.push_back(e.message());
    }
    return out;
  }

  std::unique_ptr<Cluster> cluster_;
  TenantHandle tenant_;
  std::string file_;
};

TEST_F(MultiRankTest, RefusesWhatNoWorkerHoldsAndTwoRanksTrainWhatOneTrains) {
  // First what no worker could hold is refused at create (this worker has
  // two CPU slots).
  absl::StatusOr<v1::Job> refused =
      cluster_->CreateJob(tenant_, Spec(3, 4, 0, 2, 1));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("spec.resources.processes"));
  EXPECT_THAT(refused.status().message(), HasSubstr("3 CPU slots"));
  // A preference objective on two ranks passes the rank rules (a step's
  // pairs are split whole between ranks); only its chat file is refused.
  v1::JobSpec dpo = Spec(2, 4, 0, 2, 1);
  dpo.set_objective(v1::TRAINING_OBJECTIVE_DPO);
  refused = cluster_->CreateJob(tenant_, dpo);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("spec.training_file"));
  EXPECT_THAT(refused.status().message(),
              ::testing::Not(HasSubstr("spec.resources")));

  // Two ranks of batch 2 against one of batch 2 accumulating twice: the
  // same four rows a step, so the trainer runs the same global batch.
  ASSERT_OK_AND_ASSIGN(v1::Job two,
                       cluster_->CreateJob(tenant_, Spec(2, 6, 0, 2, 1)));
  ASSERT_OK_AND_ASSIGN(v1::Job one,
                       cluster_->CreateJob(tenant_, Spec(1, 6, 0, 2, 2)));
  ASSERT_OK_AND_ASSIGN(
      v1::Job two_done,
      cluster_->WaitForJob(tenant_, two.id(), Ended, absl::Seconds(240)));
  ASSERT_OK_AND_ASSIGN(
      v1::Job one_done,
      cluster_->WaitForJob(tenant_, one.id(), Ended, absl::Seconds(240)));
  ASSERT_EQ(two_done.state(), v1::JOB_STATE_SUCCEEDED)
      << two_done.ShortDebugString();
  ASSERT_EQ(one_done.state(), v1::JOB_STATE_SUCCEEDED)
      << one_done.ShortDebugString();
  EXPECT_EQ(two_done.progress().step(), 6);

  // The agent said how it ran the job.
  bool started = false, rendezvous = false;
  for (const std::string& m : Events(two.id(), v1::JOB_EVENT_TYPE_LOG)) {
    started |= absl::StrContains(m, "2 trainer ranks started");
    rendezvous |= absl::StrContains(m, "rendezvous done");
  }
  EXPECT_TRUE(started);
  EXPECT_TRUE(rendezvous);

  // Every LoRA weight within 1e-5 of the largest of its tensor (fp32; the
  // sums over ranks are only reordered).
  const auto wa = AdapterWeights(AdapterDir(one.id()));
  const auto wb = AdapterWeights(AdapterDir(two.id()));
  ASSERT_FALSE(wa.empty());
  ASSERT_EQ(wa.size(), wb.size());
  bool any_trained = false;
  for (const auto& [name, va] : wa) {
    ASSERT_TRUE(wb.count(name)) << name;
    const std::vector<float>& vb = wb.at(name);
    ASSERT_EQ(va.size(), vb.size());
    double diff = 0, scale = 0;
    for (size_t i = 0; i < va.size(); ++i) {
      diff = std::max(diff, std::abs(static_cast<double>(va[i]) - vb[i]));
      scale = std::max(scale, std::abs(static_cast<double>(va[i])));
    }
    EXPECT_LE(diff, 1e-5 * scale) << name;
    // lora_B starts at zero: trained weights are not.
    if (absl::StrContains(name, "lora_B") && scale > 0) any_trained = true;
  }
  EXPECT_TRUE(any_trained);

  // Only rank 0's stdout is progress; every rank's stderr is in the log.
  ASSERT_OK_AND_ASSIGN(
      std::string log,
      ReadFile(cluster_->StoragePath(absl::StrCat(
          "jobs/", tenant_.id, "/", two.id(), "/logs/attempt-1.log"))));
  EXPECT_THAT(log, HasSubstr("x 2 ranks"));
  EXPECT_THAT(log, HasSubstr("[rank 1] "));
  EXPECT_TRUE(TrainersOf(two.id()).empty());
}

// A DPO job of two ranks through the whole system: the pairs uploaded as a
// preference file, the agent starting two ftune-train ranks, the job
// SUCCEEDED with a published adapter and the reward statistics of training
// and evaluation readable through ListJobMetrics. Then a pair whose prompt
// leaves no room for an answer at max_seq_length fails the job before its
// first step, once (not retried), naming the line and the lengths.
TEST_F(MultiRankTest,
       DpoOnTwoRanksPublishesAndReportsRewardsAndTooLongPromptFails) {
  ASSERT_OK(WritePreferencePairs(cluster_->Path("pairs.jsonl"), 32, 11));
  ASSERT_OK_AND_ASSIGN(std::string text,
                       ReadFile(cluster_->Path("pairs.jsonl")));
  ASSERT_OK_AND_ASSIGN(std::string pairs,
                       cluster_->UploadFile(tenant_, "pairs.jsonl", text));
  v1::JobSpec spec = Spec(2, 6, 0, 2, 1);
  spec.set_training_file(pairs);
  spec.set_objective(v1::TRAINING_OBJECTIVE_DPO);
  spec.mutable_preference()->set_beta(0.5);
  spec.set_validation_split(0.25);
  spec.mutable_hyperparameters()->set_eval_every_steps(6);
  ASSERT_OK_AND_ASSIGN(v1::Job job, cluster_->CreateJob(tenant_, spec));
  ASSERT_OK_AND_ASSIGN(
      v1::Job done,
      cluster_->WaitForJob(tenant_, job.id(), Ended, absl::Seconds(240)));
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  EXPECT_EQ(done.progress().step(), 6);
  EXPECT_GE(done.adapter().files_size(), 3);
  EXPECT_TRUE(std::filesystem::exists(
      JoinPath(AdapterDir(job.id()), "adapter_model.safetensors")));
  bool started = false;
  for (const std::string& m : Events(job.id(), v1::JOB_EVENT_TYPE_LOG)) {
    started |= absl::StrContains(m, "2 trainer ranks started");
  }
  EXPECT_TRUE(started);

  grpc::ClientContext ctx;
  Authorize(ctx, tenant_.key);
  v1::ListJobMetricsRequest req;
  req.set_job_id(job.id());
  req.set_page_size(1000);
  v1::ListJobMetricsResponse resp;
  ASSERT_TRUE(cluster_->jobs().ListJobMetrics(&ctx, req, &resp).ok());
  int train_points = 0, eval_points = 0;
  for (const v1::MetricPoint& p : resp.metrics()) {
    if (p.has_train_loss()) {
      ++train_points;
      ASSERT_TRUE(p.has_preference()) << p.ShortDebugString();
      EXPECT_GE(p.preference().reward_accuracy(), 0);
      EXPECT_LE(p.preference().reward_accuracy(), 1);
      EXPECT_NEAR(
          p.preference().reward_margin(),
          p.preference().rewards_chosen() - p.preference().rewards_rejected(),
          1e-9);
      EXPECT_LT(p.preference().logps_chosen(), 0);
      EXPECT_LT(p.preference().logps_rejected(), 0);
    }
    if (p.has_eval_loss()) {
      ++eval_points;
      ASSERT_TRUE(p.has_eval_preference()) << p.ShortDebugString();
      // Six steps at 2e-2 already order most held-out pairs.
      EXPECT_GT(p.eval_preference().reward_margin(), 0);
      EXPECT_GT(p.eval_preference().reward_accuracy(), 0.5);
    }
  }
  EXPECT_GE(train_points, 1);
  EXPECT_EQ(eval_points, 1);
  // The first step starts at the reference: DPO's loss is log 2.
  ASSERT_GT(resp.metrics_size(), 0);
  EXPECT_NEAR(resp.metrics(0).train_loss(), std::log(2.0), 1e-5);

  // Line 33: a prompt of 80 bytes, 80 tokens for this byte-level tokenizer,
  // against max_seq_length 64.
  text += json{{"prompt", std::string(80, 'p')},
               {"chosen", " abc"},
               {"rejected", " xyz"}}
              .dump() +
          "\n";
  ASSERT_OK_AND_ASSIGN(std::string long_pairs,
                       cluster_->UploadFile(tenant_, "long.jsonl", text));
  spec.set_training_file(long_pairs);
  spec.set_max_restarts(2);
  ASSERT_OK_AND_ASSIGN(v1::Job bad, cluster_->CreateJob(tenant_, spec));
  ASSERT_OK_AND_ASSIGN(
      v1::Job failed,
      cluster_->WaitForJob(tenant_, bad.id(), Ended, absl::Seconds(240)));
  ASSERT_EQ(failed.state(), v1::JOB_STATE_FAILED) << failed.ShortDebugString();
  EXPECT_EQ(failed.error().reason(), v1::ERROR_REASON_INVALID_INPUT);
  EXPECT_FALSE(failed.error().retryable());
  EXPECT_EQ(failed.attempt(), 1);
  // The file by its id, not by its place on shared storage.
  EXPECT_THAT(failed.error().message(),
              HasSubstr(absl::StrCat(long_pairs, ": training file: line 33")));
  EXPECT_THAT(failed.error().message(),
              ::testing::Not(HasSubstr(cluster_->StoragePath("files"))));
  EXPECT_THAT(failed.error().message(), HasSubstr("the prompt is 80 tokens"));
  EXPECT_THAT(failed.error().message(),
              HasSubstr("max_seq_length 64 leaves no room"));
  EXPECT_EQ(failed.progress().step(), 0);
  grpc::ClientContext bctx;
  Authorize(bctx, tenant_.key);
  req.set_job_id(bad.id());
  ASSERT_TRUE(cluster_->jobs().ListJobMetrics(&bctx, req, &resp).ok());
  EXPECT_EQ(resp.metrics_size(), 0);
}

TEST_F(MultiRankTest, RankKilledMidRunFailsTheAttemptWhichResumesOnce) {
  ASSERT_OK_AND_ASSIGN(v1::Job job,
                       cluster_->CreateJob(tenant_, Spec(2, 60, 5, 2, 1)));
  // SIGKILL rank 1 as soon as the first checkpoint is on storage.
  const std::string first_checkpoint = cluster_->StoragePath(absl::StrCat(
      "jobs/", tenant_.id, "/", job.id(), "/checkpoints/step-00000005"));
  const absl::Time deadline = absl::Now() + absl::Seconds(240);
  std::vector<TrainerPid> first;
  while (absl::Now() < deadline) {
    // Checkpoints are published by rename: the directory is complete.
    if (std::filesystem::exists(first_checkpoint)) {
      first = TrainersOf(job.id());
      if (first.size() == 2) break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(first.size(), 2u) << "the attempt's two ranks";
  pid_t rank1 = -1;
  for (const TrainerPid& t : first) {
    if (t.rank == 1) rank1 = t.pid;
  }
  ASSERT_GT(rank1, 0);
  ASSERT_EQ(::kill(rank1, SIGKILL), 0);

  ASSERT_OK_AND_ASSIGN(
      v1::Job done,
      cluster_->WaitForJob(tenant_, job.id(), Ended, absl::Seconds(240)));
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  EXPECT_EQ(done.progress().step(), 60);
  EXPECT_EQ(done.attempt(), 2);
  // The first attempt failed as one, naming the killed rank (the state
  // change back to QUEUED carries the error).
  const std::vector<std::string> requeued =
      Events(job.id(), v1::JOB_EVENT_TYPE_STATE_CHANGED);
  EXPECT_EQ(std::count_if(requeued.begin(), requeued.end(),
                          [](const std::string& m) {
                            return absl::StrContains(
                                m, "rank 1 of 2 killed by signal 9");
                          }),
            1)
      << ::testing::PrintToString(requeued);
  const std::vector<std::string> lost =
      Events(job.id(), v1::JOB_EVENT_TYPE_WARNING);
  EXPECT_TRUE(std::any_of(lost.begin(), lost.end(), [](const std::string& m) {
    return absl::StrContains(m, "rank 1 of 2 lost: killed by signal 9");
  }));
  // The retry resumed from a checkpoint (not from scratch), and published
  // once: by attempt 2's rank 0, not found already there.
  int resumed = 0, already = 0;
  for (const std::string& m : Events(job.id(), v1::JOB_EVENT_TYPE_LOG)) {
    resumed += absl::StrContains(m, "resumed from checkpoint");
    already += absl::StrContains(m, "already published");
  }
  EXPECT_EQ(resumed, 1);
  EXPECT_EQ(already, 0);
  std::ifstream manifest_in(
      JoinPath(AdapterDir(job.id()), "ftune_manifest.json"));
  const json manifest = json::parse(manifest_in, nullptr, false);
  ASSERT_FALSE(manifest.is_discarded());
  EXPECT_EQ(manifest["metrics"].value("steps", 0), 60);
  int adapter_dirs = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(cluster_->StoragePath(
           absl::StrCat("jobs/", tenant_.id, "/", job.id())))) {
    adapter_dirs += absl::StartsWith(e.path().filename().string(), "adapter");
  }
  EXPECT_EQ(adapter_dirs, 1);
  // No trainer process of the job is left: neither attempt's ranks.
  for (const TrainerPid& t : first) {
    EXPECT_NE(::kill(t.pid, 0), 0) << "pid " << t.pid << " rank " << t.rank;
  }
  EXPECT_TRUE(TrainersOf(job.id()).empty());
}

TEST_F(MultiRankTest, CancelStopsEveryRank) {
  ASSERT_OK_AND_ASSIGN(v1::Job job,
                       cluster_->CreateJob(tenant_, Spec(2, 100000, 0, 2, 1)));
  ASSERT_OK(cluster_
                ->WaitForJob(
                    tenant_, job.id(),
                    [](const v1::Job& j) { return j.progress().step() >= 2; },
                    absl::Seconds(240))
                .status());
  const std::vector<TrainerPid> ranks = TrainersOf(job.id());
  ASSERT_EQ(ranks.size(), 2u);
  ASSERT_OK(cluster_->CancelJob(tenant_, job.id()).status());
  ASSERT_OK_AND_ASSIGN(
      v1::Job done,
      cluster_->WaitForJob(tenant_, job.id(), Ended, absl::Seconds(60)));
  EXPECT_EQ(done.state(), v1::JOB_STATE_CANCELLED);
  for (const TrainerPid& t : ranks) {
    EXPECT_NE(::kill(t.pid, 0), 0) << "pid " << t.pid << " rank " << t.rank;
  }
  EXPECT_TRUE(TrainersOf(job.id()).empty());
}

}  // namespace
}  // namespace ftune::testing
