// The end-to-end job with the real trainer: ftune-scheduler, one CPU
// ftune-worker and `ftune-train` as its child, on a tiny random-weights
// Llama written by the test. A tenant uploads chat data, submits a LoRA job
// and the published adapter is a complete PEFT directory whose manifest
// names the job's dataset; the loss the worker reported went down; sample
// completions of validation prompts made by the trainer at step 0 and at
// each evaluation reach the tenant through ListJobSamples and WatchJob.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/worker/train/tiny_model.h"

namespace ftune::testing {
namespace {

using nlohmann::json;

const std::string kTrainer = std::string(FTUNE_BIN_DIR) + "/ftune-train";

// The assistant spells the user's word backwards: learnable in a few steps.
std::string ChatJsonl(int n) { return ReversedWordChats(n, 11); }

// A cluster whose one model, "tiny-llama", is a tiny random-weights Llama
// with a chat tokenizer.
ClusterOptions TinyLlama() {
  ClusterOptions options;
  options.model_name = "tiny-llama";
  options.write_model = [](const std::string& dir) -> absl::Status {
    FTUNE_RETURN_IF_ERROR(WriteTinyLlama(dir, /*vocab=*/320, /*seed=*/3));
    return WriteChatTokenizer(dir);
  };
  return options;
}

TEST(RealTrainerTest, LoraJobRunsToAPublishedAdapter) {
  Cluster cluster(TinyLlama());
  ASSERT_OK(cluster.StartScheduler());
  ASSERT_OK_AND_ASSIGN(TenantHandle tenant, cluster.CreateTenant("acme"));
  ASSERT_OK_AND_ASSIGN(std::string file,
                       cluster.UploadFile(tenant, "chat.jsonl", ChatJsonl(32)));
  WorkerOptions w;
  w.trainer = kTrainer;
  ASSERT_OK(cluster.StartWorker(w).status());

  v1::JobSpec spec = StepsSpec("tiny-llama", file, /*max_steps=*/24,
                               /*checkpoint_every=*/8, /*max_restarts=*/0);
  spec.mutable_hyperparameters()->set_learning_rate(2e-2);
  // Fixed (the API picks a random seed otherwise): the same batches each run.
  spec.mutable_hyperparameters()->set_seed(7);
  spec.mutable_lora()->set_rank(4);
  spec.mutable_lora()->set_alpha(8);
  spec.mutable_lora()->add_target_modules("q_proj");
  spec.mutable_lora()->add_target_modules("v_proj");
  // Evaluations at steps 12 and 24, each with 2 short samples.
  spec.set_validation_split(0.25);
  spec.mutable_hyperparameters()->set_eval_every_steps(12);
  spec.mutable_samples()->set_eval_samples(2);
  spec.mutable_samples()->set_max_new_tokens(6);
  // And task metrics over 4 held-out examples, with a format pattern.
  spec.mutable_task_metrics()->set_eval_task_examples(4);
  spec.mutable_task_metrics()->set_max_new_tokens(6);
  spec.mutable_task_metrics()->set_eval_pattern("^[a-z]*$");
  ASSERT_OK_AND_ASSIGN(v1::Job job, cluster.CreateJob(tenant, spec));
  // Watched from the start: the SAMPLES events arrive as they are stored.
  grpc::ClientContext wctx;
  Authorize(wctx, tenant.key);
  v1::WatchJobRequest wreq;
  wreq.set_job_id(job.id());
  auto watch = cluster.jobs().WatchJob(&wctx, wreq);
  ASSERT_OK_AND_ASSIGN(v1::Job done,
                       cluster.WaitForJob(
                           tenant, job.id(),
                           [](const v1::Job& j) {
                             return j.state() == v1::JOB_STATE_SUCCEEDED ||
                                    j.state() == v1::JOB_STATE_FAILED ||
                                    j.state() == v1::JOB_STATE_CANCELLED;
                           },
                           absl::Seconds(240)));
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  EXPECT_EQ(done.progress().step(), 24);

  const std::string adapter = cluster.StoragePath(
      absl::StrCat("jobs/", tenant.id, "/", job.id(), "/adapter"));
  for (const char* name : {"adapter_config.json", "adapter_model.safetensors",
                           "ftune_manifest.json"}) {
    EXPECT_TRUE(std::filesystem::exists(JoinPath(adapter, name))) << name;
  }
  std::ifstream in(JoinPath(adapter, "adapter_config.json"));
  const json config = json::parse(in, nullptr, false);
  ASSERT_FALSE(config.is_discarded());
  EXPECT_EQ(config.value("r", 0), 4);
  EXPECT_EQ(config.value("peft_type", ""), "LORA");
  // The job's Adapter lists the published files with their sizes.
  EXPECT_GE(done.adapter().files_size(), 3);

  // The loss the worker forwarded fell: the mean of the last four steps
  // against the first four (single steps see different batches).
  grpc::ClientContext ctx;
  Authorize(ctx, tenant.key);
  v1::ListJobMetricsRequest req;
  req.set_job_id(job.id());
  req.set_page_size(1000);
  v1::ListJobMetricsResponse resp;
  ASSERT_TRUE(cluster.jobs().ListJobMetrics(&ctx, req, &resp).ok());
  std::vector<double> losses;
  std::vector<int64_t> task_steps;
  for (const v1::MetricPoint& p : resp.metrics()) {
    if (p.has_train_loss()) losses.push_back(p.train_loss());
    // Every evaluation, and only evaluations, carries the task metrics.
    EXPECT_EQ(p.has_eval_task(), p.has_eval_loss()) << p.ShortDebugString();
    if (!p.has_eval_task()) continue;
    task_steps.push_back(p.step());
    EXPECT_EQ(p.eval_task().examples(), 4);
    EXPECT_TRUE(p.eval_task().has_pattern_match());
    for (double share :
         {p.eval_task().exact_match(), p.eval_task().normalized_match(),
          p.eval_task().token_f1(), p.eval_task().pattern_match()}) {
      EXPECT_GE(share, 0);
      EXPECT_LE(share, 1);
    }
  }
  EXPECT_THAT(task_steps, ::testing::ElementsAre(12, 24));
  ASSERT_GE(losses.size(), 24u);
  const double first = (losses[0] + losses[1] + losses[2] + losses[3]) / 4.0;
  const size_t n = losses.size();
  const double last =
      (losses[n - 1] + losses[n - 2] + losses[n - 3] + losses[n - 4]) / 4.0;
  EXPECT_LT(last, first - 0.05) << "first " << first << ", last " << last;

  // The watch saw one SAMPLES event per sampled step; the stream ends after
  // the terminal snapshot.
  std::vector<int64_t> sample_steps;
  v1::WatchJobResponse msg;
  while (watch->Read(&msg)) {
    if (msg.has_event() && msg.event().type() == v1::JOB_EVENT_TYPE_SAMPLES) {
      sample_steps.push_back(msg.event().step());
    }
  }
  EXPECT_TRUE(watch->Finish().ok());
  EXPECT_THAT(sample_steps, ::testing::ElementsAre(0, 12, 24));

  // The samples themselves: 2 per step, the prompt a user word, the
  // expected completion its reverse (the held-out example's answer).
  grpc::ClientContext sctx;
  Authorize(sctx, tenant.key);
  v1::ListJobSamplesRequest sreq;
  sreq.set_job_id(job.id());
  v1::ListJobSamplesResponse samples;
  ASSERT_TRUE(cluster.jobs().ListJobSamples(&sctx, sreq, &samples).ok());
  ASSERT_EQ(samples.samples_size(), 6);
  for (int i = 0; i < 6; ++i) {
    const v1::JobSample& s = samples.samples(i);
    EXPECT_EQ(s.step(), std::vector<int64_t>({0, 12, 24})[i / 2]);
    EXPECT_EQ(s.index(), i % 2);
    EXPECT_EQ(s.attempt(), 1);
    EXPECT_EQ(s.expected_completion(),
              std::string(s.prompt().rbegin(), s.prompt().rend()));
    EXPECT_THAT(s.finish_reason(), ::testing::AnyOf("end", "length"));
    // The same prompt at every step.
    EXPECT_EQ(s.prompt(), samples.samples(i % 2).prompt());
  }
}

// Full fine-tuning through the system (TRAINING_METHOD_FULL): LoRA-only
// fields are refused at create naming the field; a full job publishes a
// whole Hugging Face model directory with its lineage, which becomes the
// tenant's model "ft:<job id>" (Job.fine_tuned_model): listed for that
// tenant only (another tenant gets NOT_FOUND and cannot train on it), kept
// across a scheduler restart, and the base of a LoRA job that runs to its
// adapter.
TEST(RealTrainerTest, FullFineTuneBecomesTheTenantsModel) {
  Cluster cluster(TinyLlama());
  ASSERT_OK(cluster.StartScheduler());
  ASSERT_OK_AND_ASSIGN(TenantHandle tenant, cluster.CreateTenant("acme"));
  ASSERT_OK_AND_ASSIGN(TenantHandle other, cluster.CreateTenant("globex"));
  ASSERT_OK_AND_ASSIGN(std::string file,
                       cluster.UploadFile(tenant, "chat.jsonl", ChatJsonl(16)));
  ASSERT_OK_AND_ASSIGN(std::string other_file,
                       cluster.UploadFile(other, "chat.jsonl", ChatJsonl(16)));
  WorkerOptions w;
  w.trainer = kTrainer;
  ASSERT_OK(cluster.StartWorker(w).status());

  v1::JobSpec spec = StepsSpec("tiny-llama", file, /*max_steps=*/4,
                               /*checkpoint_every=*/0, /*max_restarts=*/0);
  spec.set_method(v1::TRAINING_METHOD_FULL);
  spec.mutable_hyperparameters()->set_learning_rate(1e-2);
  spec.mutable_hyperparameters()->set_seed(7);
  {
    v1::JobSpec bad = spec;
    bad.mutable_lora()->set_rank(8);
    EXPECT_THAT(cluster.CreateJob(tenant, bad),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::HasSubstr("spec.lora.rank")));
    bad = spec;
    bad.mutable_quantization()->set_block_size(64);
    EXPECT_THAT(cluster.CreateJob(tenant, bad),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::HasSubstr("spec.quantization")));
  }
  auto finished = [](const v1::Job& j) {
    return j.state() == v1::JOB_STATE_SUCCEEDED ||
           j.state() == v1::JOB_STATE_FAILED ||
           j.state() == v1::JOB_STATE_CANCELLED;
  };
  ASSERT_OK_AND_ASSIGN(v1::Job job, cluster.CreateJob(tenant, spec));
  EXPECT_FALSE(job.spec().has_lora());
  ASSERT_OK_AND_ASSIGN(
      v1::Job done,
      cluster.WaitForJob(tenant, job.id(), finished, absl::Seconds(240)));
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.ShortDebugString();
  const std::string model_name = "ft:" + job.id();
  EXPECT_EQ(done.fine_tuned_model(), model_name);
  const std::string relative =
      absl::StrCat("jobs/", tenant.id, "/", job.id(), "/adapter");
  const std::string out = cluster.StoragePath(relative);
  for (const char* name : {"config.json", "model.safetensors", "tokenizer.json",
                           "ftune_manifest.json"}) {
    EXPECT_TRUE(std::filesystem::exists(JoinPath(out, name))) << name;
  }
  EXPECT_FALSE(std::filesystem::exists(JoinPath(out, "adapter_config.json")));
  std::ifstream in(JoinPath(out, "ftune_manifest.json"));
  const json manifest = json::parse(in, nullptr, false);
  ASSERT_FALSE(manifest.is_discarded());
  EXPECT_EQ(manifest["format"], "ftune-model");
  EXPECT_EQ(manifest["lineage"]["job_id"], job.id());
  EXPECT_EQ(manifest["lineage"]["base_model"], "tiny-llama");
  // Every file is listed (and downloadable) like an adapter's.
  EXPECT_EQ(done.adapter().files_size(),
            static_cast<int>(manifest["files"].size()) + 1);

  // The owner's ListModels and GetModel show it; another tenant's do not.
  auto list = [&](const TenantHandle& t) -> std::vector<std::string> {
    grpc::ClientContext ctx;
    Authorize(ctx, t.key);
    v1::ListModelsResponse resp;
    grpc::Status st =
        cluster.models().ListModels(&ctx, v1::ListModelsRequest(), &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    std::vector<std::string> names;
    for (const v1::Model& m : resp.models()) names.push_back(m.name());
    return names;
  };
  auto get = [&](const TenantHandle& t, v1::Model* m) {
    grpc::ClientContext ctx;
    Authorize(ctx, t.key);
    v1::GetModelRequest req;
    req.set_name(model_name);
    return cluster.models().GetModel(&ctx, req, m);
  };
  auto check_visibility = [&] {
    EXPECT_THAT(list(tenant), ::testing::ElementsAre(model_name, "tiny-llama"));
    EXPECT_THAT(list(other), ::testing::ElementsAre("tiny-llama"));
    v1::Model m;
    grpc::Status st = get(tenant, &m);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(m.owner_tenant_id(), tenant.id);
    EXPECT_EQ(m.base_model(), "tiny-llama");
    EXPECT_EQ(m.job_id(), job.id());
    EXPECT_EQ(m.architecture(), "LlamaForCausalLM");
    EXPECT_GT(m.parameter_count(), 0);
    EXPECT_THAT(m.supported_methods(),
                ::testing::Contains(v1::TRAINING_METHOD_LORA));
    v1::Model hidden;
    EXPECT_EQ(get(other, &hidden).error_code(), grpc::StatusCode::NOT_FOUND);
  };
  check_visibility();

  // Survives a scheduler restart.
  ASSERT_OK(cluster.KillScheduler());
  ASSERT_OK(cluster.StartScheduler());
  check_visibility();

  // Another tenant cannot train on it: the same answer as an unknown name.
  {
    v1::JobSpec theirs = StepsSpec(model_name, other_file, /*max_steps=*/2,
                                   /*checkpoint_every=*/0, /*max_restarts=*/0);
    EXPECT_THAT(cluster.CreateJob(other, theirs),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::HasSubstr("unknown model")));
  }

  // The owner's LoRA job on it runs to an adapter whose manifest names it.
  v1::JobSpec lora = StepsSpec(model_name, file, /*max_steps=*/2,
                               /*checkpoint_every=*/0, /*max_restarts=*/0);
  lora.mutable_lora()->set_rank(4);
  ASSERT_OK_AND_ASSIGN(v1::Job job2, cluster.CreateJob(tenant, lora));
  ASSERT_OK_AND_ASSIGN(
      v1::Job done2,
      cluster.WaitForJob(tenant, job2.id(), finished, absl::Seconds(240)));
  ASSERT_EQ(done2.state(), v1::JOB_STATE_SUCCEEDED) << done2.ShortDebugString();
  EXPECT_TRUE(done2.fine_tuned_model().empty());
  std::ifstream in2(cluster.StoragePath(absl::StrCat(
      "jobs/", tenant.id, "/", job2.id(), "/adapter/ftune_manifest.json")));
  const json manifest2 = json::parse(in2, nullptr, false);
  ASSERT_FALSE(manifest2.is_discarded());
  EXPECT_EQ(manifest2["base_model"]["name"], model_name);
  EXPECT_EQ(manifest2["base_model"]["path"], out);

  // Trying the full job's result generates with its model (greedy), as
  // `ftune-train generate --model` on the published directory does; its
  // checkpoints cannot be tried (they hold every weight).
  v1::TryModelRequest try_req;
  try_req.set_job_id(job.id());
  try_req.set_source(v1::TRY_SOURCE_ADAPTER);
  try_req.add_prompts()->set_prompt("stressed");
  try_req.mutable_generation()->set_max_new_tokens(6);
  {
    grpc::ClientContext ctx;
    Authorize(ctx, tenant.key);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(120));
    auto reader = cluster.jobs().TryModel(&ctx, try_req);
    std::vector<v1::JobSample> samples;
    v1::TryModelResponse msg;
    v1::Job last;
    while (reader->Read(&msg)) {
      if (msg.has_sample()) samples.push_back(msg.sample());
      if (msg.has_job()) last = msg.job();
    }
    grpc::Status st = reader->Finish();
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(last.state(), v1::JOB_STATE_SUCCEEDED) << last.ShortDebugString();
    ASSERT_EQ(samples.size(), 1u);
    Subprocess gen;
    ASSERT_OK(gen.Start({kTrainer, "generate", "--model", out, "--prompt",
                         "stressed", "--max-new-tokens", "6"}));
    ASSERT_OK(gen.ReadAll(absl::Seconds(60)));
    ASSERT_OK(gen.Wait(absl::Seconds(10)).status());
    ASSERT_FALSE(gen.lines().empty());
    const json want = json::parse(gen.lines().front(), nullptr, false);
    ASSERT_TRUE(want.is_object()) << gen.lines().front();
    EXPECT_EQ(samples[0].completion(), want.value("completion", "?"));
  }
  try_req.set_source(v1::TRY_SOURCE_CHECKPOINT);
  try_req.set_checkpoint_step(4);
  {
    grpc::ClientContext ctx;
    Authorize(ctx, tenant.key);
    auto reader = cluster.jobs().TryModel(&ctx, try_req);
    v1::TryModelResponse msg;
    while (reader->Read(&msg)) {
    }
    grpc::Status st = reader->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(st.error_message(), ::testing::HasSubstr("full fine-tune"));
  }
}

// A full disk under the adapter (injected into every trainer process of the
// worker, common/fs_faults.h): each attempt fails retryably naming the file,
// the second resumes from the first's checkpoint, the job ends FAILED with
// that cause and no adapter, nothing half-written is left, and the
// scheduler goes on serving.
TEST(RealTrainerTest, FullDiskAtPublishFailsTheJobNamingItAndPublishesNothing) {
  Cluster cluster(TinyLlama());
  ASSERT_OK(cluster.StartScheduler());
  ASSERT_OK_AND_ASSIGN(TenantHandle tenant, cluster.CreateTenant("acme"));
  ASSERT_OK_AND_ASSIGN(std::string file,
                       cluster.UploadFile(tenant, "chat.jsonl", ChatJsonl(16)));
  WorkerOptions w;
  w.trainer = kTrainer;
  // The first write into the adapter's staging directory (a LoRA
  // checkpoint also holds an adapter_model.safetensors: not that one).
  w.env["FTUNE_FS_FAULTS"] = "write:/adapter.tmp-:1=ENOSPC";
  ASSERT_OK(cluster.StartWorker(w).status());

  v1::JobSpec spec = StepsSpec("tiny-llama", file, /*max_steps=*/8,
                               /*checkpoint_every=*/4, /*max_restarts=*/1);
  spec.mutable_lora()->set_rank(4);
  ASSERT_OK_AND_ASSIGN(v1::Job job, cluster.CreateJob(tenant, spec));
  ASSERT_OK_AND_ASSIGN(v1::Job done,
                       cluster.WaitForJob(
                           tenant, job.id(),
                           [](const v1::Job& j) {
                             return j.state() == v1::JOB_STATE_SUCCEEDED ||
                                    j.state() == v1::JOB_STATE_FAILED ||
                                    j.state() == v1::JOB_STATE_CANCELLED;
                           },
                           absl::Seconds(240)));
  ASSERT_EQ(done.state(), v1::JOB_STATE_FAILED) << done.ShortDebugString();
  EXPECT_EQ(done.attempt(), 2);
  EXPECT_THAT(done.error().message(),
              ::testing::AllOf(::testing::HasSubstr("No space left on device"),
                               ::testing::HasSubstr("/adapter.tmp-")));
  EXPECT_EQ(done.adapter().files_size(), 0);
  const std::string job_dir =
      cluster.StoragePath(absl::StrCat("jobs/", tenant.id, "/", job.id()));
  for (const auto& e : std::filesystem::directory_iterator(job_dir)) {
    const std::string name = e.path().filename().string();
    EXPECT_EQ(name.find("adapter"), std::string::npos) << name;
  }
  // The second attempt resumed from the first's step-4 checkpoint.
  ASSERT_OK_AND_ASSIGN(std::string log2,
                       ReadFile(JoinPath(job_dir, "logs/attempt-2.log")));
  EXPECT_THAT(log2, ::testing::HasSubstr("at step 4"));
  grpc::ClientContext gctx;
  Authorize(gctx, tenant.key);
  v1::GetJobRequest greq;
  greq.set_job_id(job.id());
  v1::Job again;
  EXPECT_TRUE(cluster.jobs().GetJob(&gctx, greq, &again).ok());
  EXPECT_EQ(again.state(), v1::JOB_STATE_FAILED);
}

}  // namespace
}  // namespace ftune::testing
