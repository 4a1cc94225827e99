// The example clients (examples/python/ftune_example.py and
// examples/node/ftune_example.js) run as a user runs them: child processes
// given FTUNE_ADDRESS and FTUNE_API_KEY, against a real cluster (scheduler on
// SQLite, a worker with the stand-in trainer; tests/integration/cluster.h).
// Each client must upload, create, watch to the end and exit 0; print the
// server's message and ErrorInfo and exit 1 on a refused call or a failed
// job; and resume its watch without gaps or duplicates across a scheduler
// restart. A last test uses only server reflection, as grpcurl does.
#include <grpcpp/generic/generic_stub.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/descriptor_database.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/testing/http_client.h"
#include "tests/testing/status_matchers.h"

namespace ftune::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kSourceDir = FTUNE_SOURCE_DIR;
const std::string kStandIn =
    std::string(FTUNE_BIN_DIR) + "/ftune-stand-in-trainer";

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A valid chat dataset of `n` examples.
std::string ChatJsonl(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    absl::StrAppend(&out, R"({"messages": [{"role": "user", "content": "add )",
                    i, R"( and 1"}, {"role": "assistant", "content": ")", i + 1,
                    "\"}]}\n");
  }
  return out;
}

// What one run of an example printed, and how it ended.
struct ClientRun {
  int exit_code = -1;
  std::vector<std::string> lines;  // stdout
  std::string stderr_text;

  std::string Stdout() const { return absl::StrJoin(lines, "\n"); }
  // The rest of the first stdout line that starts with `prefix` ("" if none).
  std::string After(absl::string_view prefix) const {
    for (absl::string_view line : lines) {
      if (absl::ConsumePrefix(&line, prefix)) return std::string(line);
    }
    return "";
  }
  // Steps of the "step N ..." lines, in order.
  std::vector<int> Steps() const {
    std::vector<int> steps;
    for (absl::string_view line : lines) {
      if (!absl::ConsumePrefix(&line, "step ")) continue;
      std::vector<absl::string_view> words = absl::StrSplit(line, ' ');
      int step = 0;
      if (absl::SimpleAtoi(words[0].substr(0, words[0].find('/')), &step)) {
        steps.push_back(step);
      }
    }
    return steps;
  }
  std::string Describe() const {
    return absl::StrCat("exit code ", exit_code, "\n--- stdout\n", Stdout(),
                        "\n--- stderr\n", stderr_text);
  }
};

// One example client, parameterized by language: "python" or "node".
class ClientTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "node") {
      ASSERT_TRUE(fs::exists(kSourceDir + "/examples/node/node_modules"))
          << "examples/node/node_modules is missing: run "
             "scripts/install-deps.sh (it runs `npm ci` in examples/node)";
    }
    ASSERT_OK(cluster_.StartScheduler());
    ASSERT_OK_AND_ASSIGN(tenant_, cluster_.CreateTenant("acme"));
  }

  absl::Status StartWorker(const std::string& mode, int step_ms) {
    WorkerOptions w;
    w.trainer = kStandIn;
    w.env = {{"FTUNE_STAND_IN_STEP_MS", absl::StrCat(step_ms)},
             {"FTUNE_STAND_IN_MODE", mode}};
    return cluster_.StartWorker(w).status();
  }

  std::string WriteDataset(const std::string& jsonl) {
    const std::string path = cluster_.Path("train.jsonl");
    std::ofstream(path) << jsonl;
    return path;
  }

  // The flags a CPU job of `max_steps` on `model` needs (see README.md).
  static std::vector<std::string> JobFlags(const std::string& model,
                                           int max_steps) {
    return {"--model",         model,    "--max-steps", absl::StrCat(max_steps),
            "--chat-template", "chatml", "--gpus",      "0",
            "--cpu-threads",   "1"};
  }

  // Starts the example on `dataset` with `flags`.
  absl::Status Start(Subprocess& process, const std::vector<std::string>& flags,
                     const std::string& dataset) {
    std::vector<std::string> argv;
    if (GetParam() == "python") {
      argv = {"/usr/bin/python3",
              kSourceDir + "/examples/python/ftune_example.py", "--stubs",
              FTUNE_PYTHON_STUBS_DIR};
    } else {
      argv = {FTUNE_NODE, kSourceDir + "/examples/node/ftune_example.js"};
    }
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back(dataset);
    return process.Start(argv,
                         {{"FTUNE_ADDRESS", cluster_.address()},
                          {"FTUNE_API_KEY", tenant_.key},
                          {"FTUNE_TLS_CA", ""},
                          {"PYTHONDONTWRITEBYTECODE", "1"}},
                         stderr_path_);
  }

  // Reads the rest of the output and waits for the exit.
  ClientRun Finish(Subprocess& process) {
    ClientRun run;
    absl::Status read = process.ReadAll(absl::Seconds(120));
    EXPECT_OK(read);
    absl::StatusOr<int> status = process.Wait(absl::Seconds(10));
    EXPECT_OK(status.status());
    if (status.ok() && WIFEXITED(*status)) run.exit_code = WEXITSTATUS(*status);
    run.lines = process.lines();
    run.stderr_text = ReadText(stderr_path_);
    return run;
  }

  ClientRun RunExample(const std::vector<std::string>& flags,
                       const std::string& dataset) {
    Subprocess process;
    absl::Status started = Start(process, flags, dataset);
    EXPECT_OK(started);
    if (!started.ok()) return ClientRun{};
    return Finish(process);
  }

  Cluster cluster_;
  TenantHandle tenant_;
  std::string stderr_path_ = cluster_.Path("client-stderr.txt");
};

TEST_P(ClientTest, UploadsCreatesAndWatchesToSuccess) {
  ASSERT_OK(StartWorker("succeed", 20));
  const ClientRun run =
      RunExample(JobFlags("tiny", 6), WriteDataset(ChatJsonl(8)));
  ASSERT_EQ(run.exit_code, 0) << run.Describe();

  EXPECT_THAT(run.After("file: "), StartsWith("file-")) << run.Describe();
  const std::string job_line = run.After("job: ");
  ASSERT_THAT(job_line, StartsWith("job-")) << run.Describe();
  const std::string job_id = job_line.substr(0, job_line.find(' '));
  EXPECT_THAT(run.lines, Contains(StartsWith("state: QUEUED")));
  EXPECT_THAT(run.lines, Contains(StartsWith("state: RUNNING")));
  EXPECT_THAT(run.lines, Contains(StartsWith("state: SUCCEEDED")));
  EXPECT_THAT(run.lines,
              Contains(AllOf(StartsWith("step "), HasSubstr("  loss "))));
  // Watched from the start: every step once, in order.
  EXPECT_EQ(run.Steps(), std::vector<int>({1, 2, 3, 4, 5, 6}))
      << run.Describe();

  // The server agrees.
  ASSERT_OK_AND_ASSIGN(v1::Job job, cluster_.GetJob(tenant_, job_id));
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.progress().step(), 6);
  EXPECT_EQ(run.After("adapter: "), job.adapter().name()) << run.Describe();
  ASSERT_FALSE(job.adapter().files().empty());
  for (const v1::AdapterFile& f : job.adapter().files()) {
    EXPECT_THAT(run.lines,
                Contains(AllOf(HasSubstr(f.path()), HasSubstr(f.sha256()))));
  }
}

TEST_P(ClientTest, InvalidDatasetLinePrintsServerErrorAndExitsOne) {
  ASSERT_OK(StartWorker("succeed", 20));
  const std::string bad = ChatJsonl(1) +
                          R"({"messages": [{"role": "bot", "content": "x"}]})" +
                          "\n";
  const ClientRun run = RunExample(JobFlags("tiny", 6), WriteDataset(bad));
  EXPECT_EQ(run.exit_code, 1) << run.Describe();
  EXPECT_THAT(
      run.stderr_text,
      AllOf(HasSubstr("UploadFile: INVALID_ARGUMENT: "),
            HasSubstr("line 2: messages[0].role: unknown role"),
            HasSubstr("  field: messages[0].role\n"), HasSubstr("  line: 2\n")))
      << run.Describe();
  EXPECT_EQ(run.After("job: "), "") << run.Describe();
}

TEST_P(ClientTest, UnknownModelPrintsFieldAndExitsOne) {
  ASSERT_OK(StartWorker("succeed", 20));
  const ClientRun run =
      RunExample(JobFlags("no-such-model", 6), WriteDataset(ChatJsonl(4)));
  EXPECT_EQ(run.exit_code, 1) << run.Describe();
  EXPECT_THAT(run.stderr_text,
              AllOf(HasSubstr("CreateJob: INVALID_ARGUMENT: "),
                    HasSubstr("unknown model \"no-such-model\""),
                    HasSubstr("  field: spec.model\n")))
      << run.Describe();
  EXPECT_EQ(run.After("job: "), "") << run.Describe();
}

TEST_P(ClientTest, FailedJobExitsOneWithTheJobError) {
  ASSERT_OK(StartWorker("fail_bad_input", 20));
  const ClientRun run =
      RunExample(JobFlags("tiny", 6), WriteDataset(ChatJsonl(4)));
  EXPECT_EQ(run.exit_code, 1) << run.Describe();
  EXPECT_THAT(run.lines, Contains(StartsWith("state: FAILED")))
      << run.Describe();
  EXPECT_THAT(run.lines, Contains(StartsWith("error: ERROR_REASON_")))
      << run.Describe();
  const std::string job_line = run.After("job: ");
  ASSERT_THAT(job_line, StartsWith("job-")) << run.Describe();
  ASSERT_OK_AND_ASSIGN(
      v1::Job job,
      cluster_.GetJob(tenant_, job_line.substr(0, job_line.find(' '))));
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
}

TEST_P(ClientTest, WatchResumesAfterSchedulerRestartWithoutGapsOrRepeats) {
  constexpr int kSteps = 30;
  ASSERT_OK(StartWorker("succeed", 100));
  Subprocess process;
  ASSERT_OK(
      Start(process, JobFlags("tiny", kSteps), WriteDataset(ChatJsonl(8))));
  // Training is under way and being watched: take the scheduler away.
  ASSERT_OK(process.ReadLineWithPrefix("step ", absl::Seconds(60)).status());
  ASSERT_OK(cluster_.KillScheduler());
  ASSERT_OK(cluster_.StartScheduler());
  const ClientRun run = Finish(process);

  ASSERT_EQ(run.exit_code, 0) << run.Describe();
  EXPECT_THAT(run.stderr_text, HasSubstr("reconnecting after sequence"))
      << run.Describe();
  std::vector<int> expected;
  for (int i = 1; i <= kSteps; ++i) expected.push_back(i);
  EXPECT_EQ(run.Steps(), expected) << run.Describe();
  EXPECT_THAT(run.lines, Contains(StartsWith("state: SUCCEEDED")));
}

// The Python example's preference flags: a DPO job on a preference file,
// its settings resolved by the server, and the trainer's preference
// statistics carried through the agent, the store and the watch stream to
// the client (the stand-in trainer reports them as ftune-train does).
using PreferenceClientTest = ClientTest;
TEST_P(PreferenceClientTest, DpoJobReportsRewardsThroughTheWholeSystem) {
  ASSERT_OK(StartWorker("succeed", 20));
  std::string pairs;
  for (int i = 0; i < 6; ++i) {
    absl::StrAppend(&pairs, R"({"prompt": "add )", i,
                    R"( and 1", "chosen": " )", i + 1, R"(", "rejected": " )",
                    i + 2, "\"}\n");
  }
  std::vector<std::string> flags = JobFlags("tiny", 6);
  flags.insert(flags.end(), {"--objective", "dpo", "--beta", "0.25"});
  const ClientRun run = RunExample(flags, WriteDataset(pairs));
  ASSERT_EQ(run.exit_code, 0) << run.Describe();
  // Step 4 of the stand-in: accuracy 0.5 + 4 x 0.05.
  EXPECT_THAT(run.lines, Contains(AllOf(StartsWith("step 4"),
                                        HasSubstr("reward_acc 0.70"))))
      << run.Describe();
  const std::string job_line = run.After("job: ");
  ASSERT_THAT(job_line, StartsWith("job-")) << run.Describe();
  const std::string job_id = job_line.substr(0, job_line.find(' '));
  ASSERT_OK_AND_ASSIGN(v1::Job job, cluster_.GetJob(tenant_, job_id));
  EXPECT_EQ(job.spec().objective(), v1::TRAINING_OBJECTIVE_DPO);
  EXPECT_EQ(job.spec().preference().beta(), 0.25);
  EXPECT_EQ(job.spec().preference().loss(), v1::PREFERENCE_LOSS_SIGMOID);

  // Stored: ListJobMetrics returns them for every step.
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + tenant_.key);
  v1::ListJobMetricsRequest req;
  req.set_job_id(job_id);
  v1::ListJobMetricsResponse resp;
  ASSERT_TRUE(cluster_.jobs().ListJobMetrics(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.metrics_size(), 6);
  for (const v1::MetricPoint& p : resp.metrics()) {
    ASSERT_TRUE(p.has_preference()) << p.DebugString();
    EXPECT_DOUBLE_EQ(p.preference().reward_accuracy(),
                     std::min(1.0, 0.5 + 0.05 * static_cast<double>(p.step())));
    EXPECT_DOUBLE_EQ(p.preference().reward_margin(),
                     0.1 * static_cast<double>(p.step()));
  }

  // An SFT file in a DPO job is refused at CreateJob, naming the file.
  const ClientRun wrong = RunExample(flags, WriteDataset(ChatJsonl(4)));
  EXPECT_EQ(wrong.exit_code, 1) << wrong.Describe();
  EXPECT_THAT(wrong.stderr_text,
              AllOf(HasSubstr("CreateJob: INVALID_ARGUMENT: "),
                    HasSubstr("trains on preference pairs"),
                    HasSubstr("  field: spec.training_file\n")))
      << wrong.Describe();
}
INSTANTIATE_TEST_SUITE_P(Python, PreferenceClientTest,
                         ::testing::Values("python"));

INSTANTIATE_TEST_SUITE_P(Examples, ClientTest,
                         ::testing::Values("python", "node"),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           return p.param;
                         });

// --- The official OpenAI SDK (npm `openai`) against the HTTP API. ---

// tests/clients/openai_sdk_test.js drives files and jobs through ftune's
// OpenAI-compatible HTTP API with the `openai` package from
// examples/node/package-lock.json: upload, create, list, retrieve, events,
// checkpoints, pause, resume, cancel and typed errors, against a real
// scheduler and a worker with the stand-in trainer.
TEST(OpenAiSdkTest, DrivesFilesAndJobsThroughTheHttpApi) {
  ASSERT_TRUE(fs::exists(kSourceDir + "/examples/node/node_modules/openai"))
      << "examples/node/node_modules/openai is missing: run "
         "scripts/install-deps.sh (it runs `npm ci` in examples/node)";
  ClusterOptions options;
  options.http_api = true;
  Cluster cluster(options);
  ASSERT_OK(cluster.StartScheduler());
  ASSERT_OK_AND_ASSIGN(TenantHandle tenant, cluster.CreateTenant("acme"));
  WorkerOptions w;
  w.trainer = kStandIn;
  w.env = {{"FTUNE_STAND_IN_STEP_MS", "20"}};
  ASSERT_OK(cluster.StartWorker(w).status());

  Subprocess node;
  const std::string stderr_path = cluster.Path("openai-sdk-stderr.txt");
  ASSERT_OK(node.Start(
      {FTUNE_NODE, kSourceDir + "/tests/clients/openai_sdk_test.js"},
      {{"OPENAI_BASE_URL", "http://" + cluster.http_address() + "/v1"},
       {"OPENAI_API_KEY", tenant.key},
       {"FTUNE_MODEL", "tiny"},
       {"FTUNE_NODE_EXAMPLE_DIR", kSourceDir + "/examples/node"}},
      stderr_path));
  EXPECT_OK(node.ReadAll(absl::Seconds(120)));
  absl::StatusOr<int> status = node.Wait(absl::Seconds(10));
  ASSERT_OK(status.status());
  const std::string out = absl::StrJoin(node.lines(), "\n");
  ASSERT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "stdout:\n"
      << out << "\n--- stderr\n"
      << ReadText(stderr_path);
  for (const char* step : {"ok: files", "ok: resumed", "ok: cancelled",
                           "ok: list", "ok: errors", "ok: all"}) {
    EXPECT_THAT(node.lines(), Contains(StartsWith(step))) << out;
  }
  // The server agrees with what the SDK saw: the short job succeeded.
  std::string job_id;
  for (absl::string_view line : node.lines()) {
    if (absl::ConsumePrefix(&line, "ok: job ")) {
      job_id = std::string(line.substr(0, line.find(' ')));
    }
  }
  ASSERT_OK_AND_ASSIGN(v1::Job job, cluster.GetJob(tenant, job_id));
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.spec().hyperparameters().seed(), 7);

  // The scheduler counted the API's requests by route and status.
  const std::string& metrics = cluster.metrics_address();
  ASSERT_OK_AND_ASSIGN(
      HttpResponse scrape,
      HttpGet(metrics.substr(0, metrics.rfind(':')),
              std::stoi(metrics.substr(metrics.rfind(':') + 1)), "/metrics"));
  EXPECT_THAT(scrape.body, HasSubstr("ftune_http_requests_total{route=\"POST "
                                     "/v1/fine_tuning/jobs\",code=\"400\"} 3"));
  EXPECT_THAT(scrape.body, HasSubstr("ftune_http_requests_total{route=\"POST "
                                     "/v1/fine_tuning/jobs/{id}/pause\","
                                     "code=\"200\"} 1"));
}

// --- Server reflection, as generic tools (grpcurl, Postman, ...) use it. ---

namespace refl = grpc::reflection::v1alpha;

// One request on its own reflection stream.
absl::StatusOr<refl::ServerReflectionResponse> Reflect(
    refl::ServerReflection::Stub& stub,
    const refl::ServerReflectionRequest& request) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub.ServerReflectionInfo(&ctx);
  refl::ServerReflectionResponse response;
  const bool answered =
      stream->Write(request) && stream->WritesDone() && stream->Read(&response);
  const grpc::Status status = stream->Finish();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  if (!answered) return absl::InternalError("no reflection response");
  if (response.has_error_response()) {
    return absl::Status(
        static_cast<absl::StatusCode>(response.error_response().error_code()),
        response.error_response().error_message());
  }
  return response;
}

// Everything a tool learns about `symbol` through reflection: the file
// that declares it and, transitively, every file that one imports.
absl::Status FetchFiles(refl::ServerReflection::Stub& stub,
                        const std::string& symbol,
                        google::protobuf::SimpleDescriptorDatabase& db) {
  std::set<std::string> have;
  std::vector<std::string> wanted;
  auto add = [&](const refl::ServerReflectionResponse& response) {
    for (const std::string& bytes :
         response.file_descriptor_response().file_descriptor_proto()) {
      google::protobuf::FileDescriptorProto file;
      if (!file.ParseFromString(bytes)) return false;
      if (!have.insert(file.name()).second) continue;
      for (const std::string& dep : file.dependency()) wanted.push_back(dep);
      if (!db.Add(file)) return false;
    }
    return true;
  };
  refl::ServerReflectionRequest request;
  request.set_file_containing_symbol(symbol);
  absl::StatusOr<refl::ServerReflectionResponse> response =
      Reflect(stub, request);
  if (!response.ok()) return response.status();
  if (!add(*response)) return absl::DataLossError("bad FileDescriptorProto");
  // Servers may send imports along or leave them to be asked for by name.
  while (!wanted.empty()) {
    const std::string name = wanted.back();
    wanted.pop_back();
    if (have.count(name) > 0) continue;
    request.set_file_by_filename(name);
    response = Reflect(stub, request);
    if (!response.ok()) return response.status();
    if (!add(*response)) return absl::DataLossError("bad FileDescriptorProto");
  }
  return absl::OkStatus();
}

TEST(ReflectionTest, ToolsDiscoverDescribeAndCallTheApi) {
  Cluster cluster;
  ASSERT_OK(cluster.StartScheduler());
  auto channel = grpc::CreateChannel(cluster.address(),
                                     grpc::InsecureChannelCredentials());
  auto stub = refl::ServerReflection::NewStub(channel);

  // `grpcurl list`
  refl::ServerReflectionRequest list;
  list.set_list_services("*");
  ASSERT_OK_AND_ASSIGN(refl::ServerReflectionResponse listed,
                       Reflect(*stub, list));
  std::vector<std::string> services;
  for (const auto& s : listed.list_services_response().service()) {
    services.push_back(s.name());
  }
  for (const char* name : {"ftune.v1.JobService", "ftune.v1.FileService",
                           "ftune.v1.ModelService", "ftune.v1.AdminService"}) {
    EXPECT_THAT(services, Contains(name));
  }

  // `grpcurl describe ftune.v1.JobService.CreateJob`: the served files
  // describe the method exactly as the compiled-in API does.
  google::protobuf::SimpleDescriptorDatabase db;
  ASSERT_OK(FetchFiles(*stub, "ftune.v1.JobService.CreateJob", db));
  google::protobuf::DescriptorPool pool(&db);
  const google::protobuf::MethodDescriptor* create =
      pool.FindMethodByName("ftune.v1.JobService.CreateJob");
  ASSERT_NE(create, nullptr);
  EXPECT_EQ(create->input_type()->full_name(), "ftune.v1.CreateJobRequest");
  EXPECT_EQ(create->output_type()->full_name(), "ftune.v1.CreateJobResponse");
  const google::protobuf::FieldDescriptor* spec =
      create->input_type()->FindFieldByName("spec");
  ASSERT_NE(spec, nullptr);
  EXPECT_EQ(spec->message_type()->full_name(), "ftune.v1.JobSpec");
  const google::protobuf::ServiceDescriptor* compiled =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          "ftune.v1.JobService");
  ASSERT_NE(compiled, nullptr);
  EXPECT_EQ(create->service()->DebugString(), compiled->DebugString());
  EXPECT_EQ(spec->message_type()->DebugString(),
            v1::JobSpec::descriptor()->DebugString());

  // `grpcurl -d '{}' ... ftune.v1.ModelService/ListModels`: a call built
  // from reflected descriptors alone, answered in JSON.
  google::protobuf::SimpleDescriptorDatabase model_db;
  ASSERT_OK(FetchFiles(*stub, "ftune.v1.ModelService", model_db));
  google::protobuf::DescriptorPool model_pool(&model_db);
  const google::protobuf::MethodDescriptor* list_models =
      model_pool.FindMethodByName("ftune.v1.ModelService.ListModels");
  ASSERT_NE(list_models, nullptr);
  google::protobuf::DynamicMessageFactory factory(&model_pool);
  std::unique_ptr<google::protobuf::Message> request(
      factory.GetPrototype(list_models->input_type())->New());
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage("{}", request.get()).ok());
  std::string request_bytes;
  ASSERT_TRUE(request->SerializeToString(&request_bytes));
  grpc::Slice request_slice(request_bytes);
  grpc::ByteBuffer request_buffer(&request_slice, 1);
  grpc::ByteBuffer response_buffer;
  grpc::ClientContext ctx;
  Authorize(ctx, kClusterAdminKey);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  std::promise<grpc::Status> done;
  grpc::GenericStub generic(channel);
  generic.UnaryCall(&ctx,
                    absl::StrCat("/", list_models->service()->full_name(), "/",
                                 list_models->name()),
                    grpc::StubOptions(), &request_buffer, &response_buffer,
                    [&done](grpc::Status s) { done.set_value(std::move(s)); });
  const grpc::Status status = done.get_future().get();
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response_buffer.Dump(&slices).ok());
  std::string response_bytes;
  for (const grpc::Slice& s : slices) {
    response_bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  std::unique_ptr<google::protobuf::Message> response(
      factory.GetPrototype(list_models->output_type())->New());
  ASSERT_TRUE(response->ParseFromString(response_bytes));
  std::string json;
  ASSERT_TRUE(
      google::protobuf::util::MessageToJsonString(*response, &json).ok());
  EXPECT_THAT(json, HasSubstr(R"("name":"tiny")"));
}

}  // namespace
}  // namespace ftune::testing
