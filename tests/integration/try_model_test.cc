// Trying a model through the system (JobService.TryModel): ftune-scheduler,
// one CPU ftune-worker and the real `ftune-train` on the tiny Llama. One
// short LoRA job trains; then try jobs generate with its adapter, its base
// model and one of its checkpoints, and their greedy completions are
// exactly what `ftune-train generate` prints for the same weights, prompt
// and settings. Bad requests are refused naming the field and store
// nothing; try jobs stay out of ListJobs unless asked for.
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/worker/train/tiny_model.h"

namespace ftune::testing {
namespace {

using ::testing::HasSubstr;

const std::string kTrainer = std::string(FTUNE_BIN_DIR) + "/ftune-train";

struct TryResult {
  grpc::Status status;
  std::vector<v1::Job> snapshots;
  std::vector<v1::JobSample> samples;
  std::string error_field;  // ErrorInfo.field of a failed call
};

TryResult Try(Cluster& cluster, const TenantHandle& tenant,
              const v1::TryModelRequest& req) {
  grpc::ClientContext ctx;
  Authorize(ctx, tenant.key);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = cluster.jobs().TryModel(&ctx, req);
  TryResult r;
  v1::TryModelResponse msg;
  while (reader->Read(&msg)) {
    if (msg.has_job()) r.snapshots.push_back(msg.job());
    if (msg.has_sample()) r.samples.push_back(msg.sample());
  }
  r.status = reader->Finish();
  if (!r.status.ok()) {
    const auto& trailers = ctx.GetServerTrailingMetadata();
    auto it = trailers.find("ftune-error-bin");
    if (it != trailers.end()) {
      v1::ErrorInfo info;
      if (info.ParseFromString(
              std::string(it->second.data(), it->second.size()))) {
        r.error_field = info.field();
      }
    }
  }
  return r;
}

v1::TryModelRequest Request(const std::string& job_id, v1::TrySource source,
                            const std::vector<std::string>& prompts) {
  v1::TryModelRequest req;
  req.set_job_id(job_id);
  req.set_source(source);
  for (const std::string& p : prompts) req.add_prompts()->set_prompt(p);
  req.mutable_generation()->set_max_new_tokens(6);
  return req;
}

// What `ftune-train generate` completes `prompt` to (greedy, 6 tokens).
std::string Generate(const std::string& model, const std::string& adapter,
                     const std::string& prompt) {
  std::vector<std::string> argv = {
      kTrainer,   "generate", "--model",          model,
      "--prompt", prompt,     "--max-new-tokens", "6"};
  if (!adapter.empty()) {
    argv.push_back("--adapter");
    argv.push_back(adapter);
  }
  Subprocess p;
  EXPECT_OK(p.Start(argv));
  EXPECT_OK(p.ReadAll(absl::Seconds(60)));
  absl::StatusOr<int> status = p.Wait(absl::Seconds(10));
  EXPECT_TRUE(status.ok() && WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  if (p.lines().empty()) return "(no output)";
  const nlohmann::json j =
      nlohmann::json::parse(p.lines().front(), nullptr, false);
  return j.is_object() ? j.value("completion", "(none)") : "(not json)";
}

TEST(TryModelTest, TriesAdapterBaseAndCheckpointLikeGenerate) {
  ClusterOptions options;
  options.model_name = "tiny-llama";
  options.write_model = [](const std::string& dir) -> absl::Status {
    FTUNE_RETURN_IF_ERROR(WriteTinyLlama(dir, /*vocab=*/320, /*seed=*/3));
    return WriteChatTokenizer(dir);
  };
  Cluster cluster(options);
  ASSERT_OK(cluster.StartScheduler());
  ASSERT_OK_AND_ASSIGN(TenantHandle tenant, cluster.CreateTenant("acme"));
  ASSERT_OK_AND_ASSIGN(TenantHandle other, cluster.CreateTenant("other"));
  ASSERT_OK_AND_ASSIGN(
      std::string file,
      cluster.UploadFile(tenant, "chat.jsonl", ReversedWordChats(16, 11)));
  v1::JobSpec spec = StepsSpec("tiny-llama", file, /*max_steps=*/8,
                               /*checkpoint_every=*/4, /*max_restarts=*/0);
  spec.mutable_hyperparameters()->set_learning_rate(5e-2);
  spec.mutable_hyperparameters()->set_seed(7);
  spec.mutable_lora()->set_rank(4);
  spec.mutable_lora()->set_alpha(8);
  spec.mutable_lora()->add_target_modules("q_proj");
  spec.mutable_lora()->add_target_modules("v_proj");
  const std::vector<std::string> prompts = {"hello", "world"};
  {
    // Queued (no worker yet): its adapter cannot be tried,
    // FAILED_PRECONDITION naming the job and its state; nothing is created.
    ASSERT_OK_AND_ASSIGN(v1::Job queued, cluster.CreateJob(tenant, spec));
    TryResult r = Try(cluster, tenant,
                      Request(queued.id(), v1::TRY_SOURCE_ADAPTER, prompts));
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(r.status.error_message(), HasSubstr(queued.id()));
    EXPECT_THAT(r.status.error_message(), HasSubstr("JOB_STATE_QUEUED"));
    ASSERT_OK(cluster.CancelJob(tenant, queued.id()).status());
  }
  WorkerOptions w;
  w.trainer = kTrainer;
  ASSERT_OK(cluster.StartWorker(w).status());
  ASSERT_OK_AND_ASSIGN(v1::Job job, cluster.CreateJob(tenant, spec));
  ASSERT_OK_AND_ASSIGN(
      v1::Job done,
      cluster.WaitForState(tenant, job.id(), v1::JOB_STATE_SUCCEEDED,
                           absl::Seconds(120)));
  const std::string model = cluster.StoragePath("models/tiny-llama");
  const std::string adapter = cluster.StoragePath(
      absl::StrCat("jobs/", tenant.id, "/", job.id(), "/adapter"));

  // The adapter: the stream starts with a snapshot, carries one sample per
  // prompt and ends with the SUCCEEDED snapshot; the completions are
  // ftune-train generate's.
  TryResult r =
      Try(cluster, tenant, Request(job.id(), v1::TRY_SOURCE_ADAPTER, prompts));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_GE(r.snapshots.size(), 1u);
  EXPECT_EQ(r.snapshots.back().state(), v1::JOB_STATE_SUCCEEDED)
      << r.snapshots.back().ShortDebugString();
  ASSERT_EQ(r.samples.size(), 2u);
  const std::string try_id = r.snapshots.back().id();
  EXPECT_NE(try_id, job.id());
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(r.samples[i].index(), i);
    EXPECT_EQ(r.samples[i].prompt(), prompts[i]);
    EXPECT_EQ(r.samples[i].completion(), Generate(model, adapter, prompts[i]))
        << prompts[i];
  }
  const std::string adapter_completion = r.samples[0].completion();

  // The base model: generate without the adapter.
  r = Try(cluster, tenant, Request(job.id(), v1::TRY_SOURCE_BASE, {"hello"}));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_EQ(r.samples.size(), 1u);
  EXPECT_EQ(r.samples[0].completion(), Generate(model, "", "hello"));

  // A recorded checkpoint (step 4; the last step is published, not
  // checkpointed): its LoRA weights load and generate.
  v1::TryModelRequest cp =
      Request(job.id(), v1::TRY_SOURCE_CHECKPOINT, {"hello"});
  cp.set_checkpoint_step(4);
  r = Try(cluster, tenant, cp);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_FALSE(r.snapshots.empty());
  EXPECT_EQ(r.snapshots.back().state(), v1::JOB_STATE_SUCCEEDED)
      << r.snapshots.back().ShortDebugString();
  ASSERT_EQ(r.samples.size(), 1u);
  EXPECT_EQ(r.samples[0].prompt(), "hello");
  // A step without a checkpoint: NOT_FOUND naming the steps there are.
  cp.set_checkpoint_step(5);
  r = Try(cluster, tenant, cp);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(r.status.error_message(), HasSubstr("step 5"));
  EXPECT_THAT(r.status.error_message(), HasSubstr("recorded steps: 4"));

  // Another tenant's job is answered like one that never existed.
  r = Try(cluster, other, Request(job.id(), v1::TRY_SOURCE_ADAPTER, {"x"}));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::NOT_FOUND);
  TryResult missing = Try(
      cluster, tenant,
      Request("job-aaaaaaaaaaaaaaaaaaaaaaaa", v1::TRY_SOURCE_ADAPTER, {"x"}));
  EXPECT_EQ(missing.status.error_code(), grpc::StatusCode::NOT_FOUND);

  // Too many prompts, a bad role: INVALID_ARGUMENT naming the field.
  r = Try(cluster, tenant,
          Request(job.id(), v1::TRY_SOURCE_ADAPTER,
                  std::vector<std::string>(33, "hi")));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(r.error_field, "prompts");
  v1::TryModelRequest bad_role = Request(job.id(), v1::TRY_SOURCE_ADAPTER, {});
  v1::TryMessage* m = bad_role.add_prompts()->add_messages();
  m->set_role("robot");
  m->set_content("hi");
  r = Try(cluster, tenant, bad_role);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(r.error_field, "prompts[0].messages[0].role");

  // A prompt that with max_new_tokens does not fit the context: the try
  // job fails as invalid input naming the prompt and the lengths.
  v1::TryModelRequest too_long =
      Request(job.id(), v1::TRY_SOURCE_ADAPTER, {"ok", "hello there"});
  too_long.mutable_generation()->set_max_new_tokens(4096);
  r = Try(cluster, tenant, too_long);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_FALSE(r.snapshots.empty());
  EXPECT_EQ(r.snapshots.back().state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(r.snapshots.back().error().reason(),
            v1::ERROR_REASON_INVALID_INPUT);
  EXPECT_THAT(r.snapshots.back().error().message(),
              HasSubstr("generate.prompts[0]"));
  EXPECT_THAT(r.snapshots.back().error().message(),
              HasSubstr("max_new_tokens 4096"));

  // The try job is a job: GetJob and ListJobSamples read it; ListJobs
  // shows it only when asked.
  ASSERT_OK_AND_ASSIGN(v1::Job tried, cluster.GetJob(tenant, try_id));
  EXPECT_EQ(tried.spec().try_model().source_job_id(), job.id());
  {
    grpc::ClientContext ctx;
    Authorize(ctx, tenant.key);
    v1::ListJobSamplesRequest req;
    req.set_job_id(try_id);
    v1::ListJobSamplesResponse resp;
    ASSERT_TRUE(cluster.jobs().ListJobSamples(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.samples_size(), 2);
  }
  for (bool include : {false, true}) {
    grpc::ClientContext ctx;
    Authorize(ctx, tenant.key);
    v1::ListJobsRequest req;
    req.set_include_try_jobs(include);
    v1::ListJobsResponse resp;
    ASSERT_TRUE(cluster.jobs().ListJobs(&ctx, req, &resp).ok());
    std::vector<std::string> ids;
    for (const v1::Job& j : resp.jobs()) ids.push_back(j.id());
    EXPECT_THAT(ids, ::testing::Contains(job.id()));
    // Two training jobs (one cancelled); the adapter, base, checkpoint and
    // too-long tries: four try jobs.
    EXPECT_EQ(ids.size(), include ? 6u : 2u);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), try_id), include ? 1 : 0);
  }

  // ftunectl adapters try prints the prompt and the same completion.
  Subprocess ctl;
  ASSERT_OK(ctl.Start({std::string(FTUNE_BIN_DIR) + "/ftunectl", "--endpoint",
                       cluster.address(), "adapters", "try", job.id(),
                       "--prompt", "hello", "--max-new-tokens", "6"},
                      {{"FTUNE_API_KEY", tenant.key}}));
  ASSERT_OK(ctl.ReadAll(absl::Seconds(60)));
  ASSERT_OK_AND_ASSIGN(int ctl_status, ctl.Wait(absl::Seconds(10)));
  EXPECT_TRUE(WIFEXITED(ctl_status) && WEXITSTATUS(ctl_status) == 0);
  std::string printed;
  for (const std::string& line : ctl.lines()) printed += line + "\n";
  EXPECT_THAT(printed, HasSubstr("  prompt:\n    hello\n"));
  const std::string first_line =
      adapter_completion.empty()
          ? "(empty)"
          : adapter_completion.substr(0, adapter_completion.find('\n'));
  EXPECT_THAT(printed, HasSubstr(absl::StrCat("    ", first_line))) << printed;
}

}  // namespace
}  // namespace ftune::testing
