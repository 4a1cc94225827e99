// The OpenAI <-> ftune translation of server/http/openai_json.h: request
// bodies into CreateJobRequests (and the param named for what is wrong),
// ftune field paths into OpenAI params, statuses into HTTP errors.
#include "server/http/openai_json.h"

#include "common/contract/limits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/engine/error_info.h"
#include "tests/testing/status_matchers.h"

namespace ftune::server::http {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// The param a refused body names.
std::string ParamOf(const json& body) {
  absl::StatusOr<v1::CreateJobRequest> r = ParseCreateJob(body);
  EXPECT_FALSE(r.ok()) << body.dump();
  if (r.ok()) return "<accepted>";
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  return ErrorFromStatus(r.status()).param;
}

json Minimal() { return {{"model", "tiny"}, {"training_file", "file-1"}}; }

TEST(ParseCreateJobTest, MapsOpenAiFieldsOntoTheSpec) {
  json body = Minimal();
  body["validation_file"] = "file-2";
  body["suffix"] = "mine";
  body["seed"] = 7;
  body["metadata"] = {{"team", "search"}};
  body["method"] = {{"type", "supervised"},
                    {"supervised",
                     {{"hyperparameters",
                       {{"n_epochs", 2},
                        {"batch_size", "auto"},
                        {"learning_rate_multiplier", 0.5}}}}}};
  ASSERT_OK_AND_ASSIGN(v1::CreateJobRequest r, ParseCreateJob(body));
  const v1::JobSpec& s = r.spec();
  EXPECT_EQ(s.model(), "tiny");
  EXPECT_EQ(s.training_file(), "file-1");
  EXPECT_EQ(s.validation_file(), "file-2");
  EXPECT_EQ(s.suffix(), "mine");
  EXPECT_EQ(s.hyperparameters().seed(), 7);
  EXPECT_EQ(s.labels().at("team"), "search");
  EXPECT_EQ(s.hyperparameters().epochs(), 2);
  EXPECT_EQ(s.hyperparameters().batch_size(), 0);  // "auto": the default.
  EXPECT_DOUBLE_EQ(s.hyperparameters().learning_rate(),
                   0.5 * contract::defaults::kLearningRate);
}

TEST(ParseCreateJobTest, ExtensionObjectCarriesFtuneSpecFields) {
  json body = Minimal();
  body["ftune"] = {{"lora", {{"rank", 8}}},
                   {"hyperparameters", {{"max_steps", 40}}}};
  ASSERT_OK_AND_ASSIGN(v1::CreateJobRequest r, ParseCreateJob(body));
  EXPECT_EQ(r.spec().lora().rank(), 8);
  EXPECT_EQ(r.spec().hyperparameters().max_steps(), 40);
  EXPECT_EQ(r.spec().model(), "tiny");
}

TEST(ParseCreateJobTest, RefusalsNameTheParam) {
  EXPECT_EQ(ParamOf(json::array()), "");
  EXPECT_EQ(ParamOf({{"training_file", "file-1"}}), "model");
  EXPECT_EQ(ParamOf({{"model", "tiny"}}), "training_file");
  json unknown = Minimal();
  unknown["temperature"] = 1;
  EXPECT_EQ(ParamOf(unknown), "temperature");
  json model_type = Minimal();
  model_type["model"] = 3;
  EXPECT_EQ(ParamOf(model_type), "model");
  json seed = Minimal();
  seed["seed"] = "x";
  EXPECT_EQ(ParamOf(seed), "seed");
  json epochs = Minimal();
  epochs["method"] = {
      {"type", "supervised"},
      {"supervised", {{"hyperparameters", {{"n_epochs", "many"}}}}}};
  EXPECT_EQ(ParamOf(epochs), "method.supervised.hyperparameters.n_epochs");
  json frac = Minimal();
  frac["hyperparameters"] = {{"batch_size", 2.5}};
  EXPECT_EQ(ParamOf(frac), "hyperparameters.batch_size");
  json hp_unknown = Minimal();
  hp_unknown["method"] = {
      {"type", "supervised"},
      {"supervised", {{"hyperparameters", {{"beta", 0.1}}}}}};
  EXPECT_EQ(ParamOf(hp_unknown), "method.supervised.hyperparameters.beta");
  json meta = Minimal();
  meta["metadata"] = {{"k", 1}};
  EXPECT_EQ(ParamOf(meta), "metadata.k");
  json integrations = Minimal();
  integrations["integrations"] = {{{"type", "wandb"}}};
  EXPECT_EQ(ParamOf(integrations), "integrations");
  json ext = Minimal();
  ext["ftune"] = {{"no_such_field", 1}};
  EXPECT_EQ(ParamOf(ext), "ftune");
  json ext_model = Minimal();
  ext_model["ftune"] = {{"model", "other"}};
  EXPECT_EQ(ParamOf(ext_model), "ftune.model");
}

// method.type dpo is TRAINING_OBJECTIVE_DPO, with beta from
// method.dpo.hyperparameters; reinforcement stays refused.
TEST(ParseCreateJobTest, DpoIsThePreferenceObjective) {
  json body = Minimal();
  body["method"] = {
      {"type", "dpo"},
      {"dpo", {{"hyperparameters", {{"beta", 0.25}, {"n_epochs", 2}}}}}};
  absl::StatusOr<v1::CreateJobRequest> r = ParseCreateJob(body);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->spec().objective(), v1::TRAINING_OBJECTIVE_DPO);
  EXPECT_EQ(r->spec().preference().beta(), 0.25);
  EXPECT_EQ(r->spec().hyperparameters().epochs(), 2);
  body["method"]["dpo"]["hyperparameters"]["beta"] = "auto";
  r = ParseCreateJob(body);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->spec().preference().has_beta());
  body["method"]["dpo"]["hyperparameters"]["beta"] = -1;
  EXPECT_EQ(ParamOf(body), "method.dpo.hyperparameters.beta");
  body["method"] = {{"type", "dpo"}, {"supervised", json::object()}};
  EXPECT_EQ(ParamOf(body), "method.supervised");
  EXPECT_EQ(ParamForField("spec.preference.beta"),
            "method.dpo.hyperparameters.beta");
  body["method"] = {{"type", "reinforcement"}};
  EXPECT_EQ(ParamOf(body), "method.type");
}

TEST(ParamForFieldTest, EngineFieldsBecomeOpenAiParams) {
  EXPECT_EQ(ParamForField("spec.model"), "model");
  EXPECT_EQ(ParamForField("spec.training_file"), "training_file");
  EXPECT_EQ(ParamForField("spec.hyperparameters.epochs"),
            "method.supervised.hyperparameters.n_epochs");
  EXPECT_EQ(ParamForField("spec.hyperparameters.learning_rate"),
            "method.supervised.hyperparameters.learning_rate_multiplier");
  EXPECT_EQ(ParamForField("spec.hyperparameters.seed"), "seed");
  EXPECT_EQ(ParamForField("spec.labels[\"a b\"]"), "metadata[\"a b\"]");
  EXPECT_EQ(ParamForField("spec.lora.rank"), "ftune.lora.rank");
  EXPECT_EQ(ParamForField("request_id"), "Idempotency-Key");
  EXPECT_EQ(ParamForField("after"), "after");
}

TEST(ErrorFromStatusTest, HttpStatusesAndShapes) {
  EXPECT_EQ(ErrorFromStatus(absl::UnauthenticatedError("x")).http_status, 401);
  EXPECT_EQ(ErrorFromStatus(absl::PermissionDeniedError("x")).http_status, 403);
  EXPECT_EQ(ErrorFromStatus(absl::NotFoundError("x")).http_status, 404);
  EXPECT_EQ(ErrorFromStatus(absl::AlreadyExistsError("x")).http_status, 409);
  EXPECT_EQ(ErrorFromStatus(absl::FailedPreconditionError("x")).http_status,
            400);
  EXPECT_EQ(ErrorFromStatus(engine::QuotaExceeded("x", "max_queued_jobs", 1))
                .http_status,
            429);
  EXPECT_EQ(
      ErrorFromStatus(engine::QuotaExceeded("x", "max_file_size_bytes", 1))
          .http_status,
      413);
  EXPECT_EQ(ErrorFromStatus(absl::UnavailableError("x")).http_status, 503);
  EXPECT_EQ(ErrorFromStatus(absl::InternalError("x")).http_status, 500);
  ApiError e = ErrorFromStatus(engine::InvalidField("spec.model", "no model"));
  EXPECT_EQ(e.http_status, 400);
  json body = e.Body();
  EXPECT_EQ(body["error"]["message"], "no model");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_EQ(body["error"]["param"], "model");
  EXPECT_EQ(body["error"]["code"], "invalid_argument");
  EXPECT_TRUE(ErrorFromStatus(absl::NotFoundError("x"))
                  .Body()["error"]["param"]
                  .is_null());
}

TEST(ObjectsTest, JobInOpenAiShape) {
  v1::Job job;
  job.set_id("job-1");
  job.set_tenant_id("tenant-1");
  job.set_state(v1::JOB_STATE_CANCELLING);
  job.mutable_spec()->set_model("tiny");
  job.mutable_spec()->set_training_file("file-1");
  job.mutable_spec()->mutable_hyperparameters()->set_epochs(3);
  job.mutable_spec()->mutable_hyperparameters()->set_batch_size(4);
  job.mutable_spec()->mutable_hyperparameters()->set_learning_rate(
      2 * contract::defaults::kLearningRate);
  job.mutable_create_time()->set_seconds(100);
  json j = JobJson(job);
  EXPECT_EQ(j["object"], "fine_tuning.job");
  EXPECT_EQ(j["status"], "running");
  EXPECT_EQ(j["ftune"]["state"], "JOB_STATE_CANCELLING");
  EXPECT_EQ(j["created_at"], 100);
  EXPECT_TRUE(j["finished_at"].is_null());
  EXPECT_TRUE(j["fine_tuned_model"].is_null());
  EXPECT_TRUE(j["validation_file"].is_null());
  EXPECT_EQ(j["hyperparameters"]["n_epochs"], 3.0);
  EXPECT_DOUBLE_EQ(j["hyperparameters"]["learning_rate_multiplier"], 2.0);
  EXPECT_EQ(j["method"]["type"], "supervised");
  for (auto [state, name] : {std::pair{v1::JOB_STATE_QUEUED, "queued"},
                             {v1::JOB_STATE_PAUSED, "paused"},
                             {v1::JOB_STATE_SUCCEEDED, "succeeded"},
                             {v1::JOB_STATE_FAILED, "failed"},
                             {v1::JOB_STATE_CANCELLED, "cancelled"}}) {
    EXPECT_EQ(JobStatusName(state), name);
  }
}

TEST(ObjectsTest, EventIdsRoundTripAndRefuseOthers) {
  v1::MetricPoint m;
  m.set_sequence(42);
  m.set_step(3);
  m.set_train_loss(1.5);
  json e = MetricEventJson("job-1", m, 10);
  EXPECT_EQ(e["type"], "metrics");
  EXPECT_EQ(e["data"]["step"], 3);
  EXPECT_EQ(e["data"]["train_loss"], 1.5);
  EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("Step 3/10"));
  ASSERT_OK_AND_ASSIGN(int64_t seq,
                       EventSequence("job-1", e["id"].get<std::string>()));
  EXPECT_EQ(seq, 42);
  EXPECT_FALSE(EventSequence("job-2", e["id"].get<std::string>()).ok());
  EXPECT_FALSE(EventSequence("job-1", "ftevent-job-1-x").ok());
}

// An evaluation's task metrics are in the metrics event's data under
// ftune's names; pattern_match only when the job has a pattern.
TEST(ObjectsTest, MetricEventsCarryTaskMetrics) {
  v1::MetricPoint m;
  m.set_sequence(7);
  m.set_step(20);
  m.set_eval_loss(0.5);
  v1::TaskMetrics* t = m.mutable_eval_task();
  t->set_examples(8);
  t->set_exact_match(0.25);
  t->set_normalized_match(0.5);
  t->set_token_f1(0.75);
  json e = MetricEventJson("job-1", m, 20);
  EXPECT_EQ(e["data"]["valid_loss"], 0.5);
  EXPECT_EQ(e["data"]["eval_exact_match"], 0.25);
  EXPECT_EQ(e["data"]["eval_normalized_match"], 0.5);
  EXPECT_EQ(e["data"]["eval_token_f1"], 0.75);
  EXPECT_FALSE(e["data"].contains("eval_pattern_match"));
  EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("exact match=0.25"));
  t->set_pattern_match(1);
  EXPECT_EQ(MetricEventJson("job-1", m, 20)["data"]["eval_pattern_match"], 1);
  EXPECT_FALSE(MetricEventJson("job-1", v1::MetricPoint(), 20)["data"].contains(
      "eval_exact_match"));
}

}  // namespace
}  // namespace ftune::server::http
