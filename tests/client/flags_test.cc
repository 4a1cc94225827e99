// The ftunectl command line on its own: commands, flags, environment
// defaults, usage errors and the JobSpec built from `jobs create` flags.
#include "client/flags.h"

#include <fstream>
#include <string>
#include <vector>

#include "client/job_spec_flags.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune::client {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

absl::StatusOr<Invocation> Parse(const std::vector<std::string>& args,
                                 const Environment& env = {}) {
  return ParseCommandLine(args, env);
}

TEST(FlagsTest, ParsesNounVerbArgumentsAndFlags) {
  ASSERT_OK_AND_ASSIGN(Invocation inv,
                       Parse({"jobs", "list", "--state", "queued",
                              "--state=running", "--page-size=5", "--all"}));
  ASSERT_NE(inv.command, nullptr);
  EXPECT_EQ(inv.command->FullName(), "jobs list");
  EXPECT_THAT(inv.args, IsEmpty());
  EXPECT_THAT(inv.flags.GetAll("state"), ElementsAre("queued", "running"));
  EXPECT_EQ(inv.flags.GetInt("page-size"), 5);
  EXPECT_TRUE(inv.flags.GetBool("all"));
  EXPECT_FALSE(inv.flags.Has("page-token"));
}

TEST(FlagsTest, PositionalArgumentsAndCommandWithoutVerb) {
  ASSERT_OK_AND_ASSIGN(Invocation get, Parse({"jobs", "get", "job-abc"}));
  EXPECT_EQ(get.command->FullName(), "jobs get");
  EXPECT_THAT(get.args, ElementsAre("job-abc"));

  ASSERT_OK_AND_ASSIGN(Invocation status, Parse({"status"}));
  EXPECT_EQ(status.command->FullName(), "status");
}

TEST(FlagsTest, GlobalFlagsAnywhere) {
  ASSERT_OK_AND_ASSIGN(Invocation inv,
                       Parse({"--output=json", "files", "--timeout", "2.5",
                              "get", "file-x", "--api-key-file", "/k"}));
  EXPECT_EQ(inv.command->FullName(), "files get");
  EXPECT_EQ(inv.global.output, OutputFormat::kJson);
  EXPECT_EQ(inv.global.timeout, absl::Milliseconds(2500));
  EXPECT_TRUE(inv.global.timeout_set);
  EXPECT_EQ(inv.global.api_key_file, "/k");
}

TEST(FlagsTest, EndpointIsAnAliasOfAddress) {
  ASSERT_OK_AND_ASSIGN(Invocation a, Parse({"--endpoint", "h:1", "status"}));
  EXPECT_EQ(a.global.address, "h:1");
  ASSERT_OK_AND_ASSIGN(Invocation b, Parse({"status", "--endpoint=h:2"}));
  EXPECT_EQ(b.global.address, "h:2");
  ASSERT_OK_AND_ASSIGN(Invocation c, Parse({"--address", "h:3", "status"}));
  EXPECT_EQ(c.global.address, "h:3");
}

TEST(FlagsTest, AddressDefaultsFromEnvironment) {
  ASSERT_OK_AND_ASSIGN(Invocation none, Parse({"status"}));
  EXPECT_EQ(none.global.address, "127.0.0.1:50051");

  ASSERT_OK_AND_ASSIGN(Invocation endpoint,
                       Parse({"status"}, {{"FTUNE_ENDPOINT", "e:1"}}));
  EXPECT_EQ(endpoint.global.address, "e:1");

  // FTUNE_ADDRESS wins over FTUNE_ENDPOINT; the flag wins over both.
  Environment both = {{"FTUNE_ADDRESS", "a:1"}, {"FTUNE_ENDPOINT", "e:1"}};
  ASSERT_OK_AND_ASSIGN(Invocation env, Parse({"status"}, both));
  EXPECT_EQ(env.global.address, "a:1");
  ASSERT_OK_AND_ASSIGN(Invocation flag,
                       Parse({"--endpoint", "f:1", "status"}, both));
  EXPECT_EQ(flag.global.address, "f:1");
}

TEST(FlagsTest, ApiKeyFromEnvironmentUnlessFlagGiven) {
  ASSERT_OK_AND_ASSIGN(Invocation env,
                       Parse({"jobs", "list"}, {{"FTUNE_API_KEY", "ftk_x"}}));
  EXPECT_EQ(env.global.api_key, "ftk_x");
  EXPECT_EQ(env.global.api_key_file, "");

  ASSERT_OK_AND_ASSIGN(Invocation flag,
                       Parse({"jobs", "list", "--api-key-file", "/key"},
                             {{"FTUNE_API_KEY", "ftk_x"}}));
  EXPECT_EQ(flag.global.api_key, "");
  EXPECT_EQ(flag.global.api_key_file, "/key");

  ASSERT_OK_AND_ASSIGN(Invocation file_env,
                       Parse({"jobs", "list"}, {{"FTUNE_API_KEY_FILE", "/f"}}));
  EXPECT_EQ(file_env.global.api_key_file, "/f");
}

TEST(FlagsTest, RepeatedLabelKeepsEveryValue) {
  ASSERT_OK_AND_ASSIGN(
      Invocation inv,
      Parse({"jobs", "create", "--model", "m", "--training-file", "file-a",
             "--label", "team=search", "--label=stage=prod"}));
  EXPECT_THAT(inv.flags.GetAll("label"),
              ElementsAre("team=search", "stage=prod"));
}

TEST(FlagsTest, NonRepeatedFlagTwiceIsAnError) {
  EXPECT_THAT(Parse({"jobs", "create", "--model", "a", "--model", "b"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--model given more than once")));
}

TEST(FlagsTest, UnknownFlagIsNamed) {
  EXPECT_THAT(Parse({"jobs", "create", "--modle", "m"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown flag --modle for \"jobs create\"")));
  EXPECT_THAT(Parse({"--bogus", "status"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown flag --bogus")));
  // A command's flag before the command is not known yet.
  EXPECT_THAT(Parse({"--model", "m", "jobs", "create"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown flag --model")));
}

TEST(FlagsTest, MissingValueIsNamed) {
  EXPECT_THAT(Parse({"jobs", "create", "--model"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("flag --model needs a value")));
  EXPECT_THAT(Parse({"status", "--endpoint"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("flag --address needs a value")));
}

TEST(FlagsTest, BadValuesAreNamed) {
  EXPECT_THAT(Parse({"jobs", "create", "--epochs", "three"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--epochs: \"three\" is not a number")));
  EXPECT_THAT(Parse({"jobs", "list", "--page-size", "1.5"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--page-size: \"1.5\" is not an integer")));
  EXPECT_THAT(Parse({"jobs", "list", "--page-size", "99999999999"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not an integer")));
  EXPECT_THAT(
      Parse({"--timeout", "0", "status"}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--timeout")));
  EXPECT_THAT(Parse({"--output", "yaml", "status"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--output: \"yaml\"")));
}

TEST(FlagsTest, UnknownCommandsAndMissingArguments) {
  EXPECT_THAT(Parse({}), StatusIs(absl::StatusCode::kInvalidArgument,
                                  HasSubstr("no command given")));
  EXPECT_THAT(Parse({"frobnicate"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown command \"frobnicate\"")));
  EXPECT_THAT(Parse({"jobs", "frob"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown command \"jobs frob\"")));
  EXPECT_THAT(Parse({"jobs"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"jobs\" needs a subcommand")));
  EXPECT_THAT(Parse({"jobs", "get"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"jobs get\" needs JOB_ID")));
  EXPECT_THAT(Parse({"jobs", "get", "a", "b"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unexpected argument \"b\"")));
}

TEST(FlagsTest, HelpForEveryLevel) {
  ASSERT_OK_AND_ASSIGN(Invocation top, Parse({"--help"}));
  EXPECT_TRUE(top.help);
  EXPECT_EQ(top.help_topic, "");
  ASSERT_OK_AND_ASSIGN(Invocation word, Parse({"help"}));
  EXPECT_TRUE(word.help);
  ASSERT_OK_AND_ASSIGN(Invocation noun, Parse({"jobs", "--help"}));
  EXPECT_EQ(noun.help_topic, "jobs");
  ASSERT_OK_AND_ASSIGN(Invocation cmd, Parse({"jobs", "create", "-h"}));
  EXPECT_EQ(cmd.help_topic, "jobs create");
  ASSERT_OK_AND_ASSIGN(Invocation help_cmd, Parse({"help", "files", "upload"}));
  EXPECT_EQ(help_cmd.help_topic, "files upload");

  EXPECT_THAT(Usage(""), HasSubstr("jobs watch JOB_ID"));
  EXPECT_THAT(Usage("jobs"), HasSubstr("jobs create"));
  EXPECT_THAT(Usage("jobs"), ::testing::Not(HasSubstr("files upload")));
  EXPECT_THAT(Usage("jobs create"), HasSubstr("--training-file FILE_ID"));
}

TEST(FlagsTest, ShortOutputFileAndDoubleDash) {
  ASSERT_OK_AND_ASSIGN(Invocation inv, Parse({"files", "download", "file-a",
                                              "-o", "out.jsonl"}));
  EXPECT_EQ(inv.flags.Get("output-file"), "out.jsonl");
  // After "--" a name starting with "-" is an argument.
  ASSERT_OK_AND_ASSIGN(Invocation dash,
                       Parse({"tenants", "create", "--", "-odd-name"}));
  EXPECT_THAT(dash.args, ElementsAre("-odd-name"));
}

TEST(FlagsTest, NegativeNumberIsAValue) {
  ASSERT_OK_AND_ASSIGN(Invocation inv,
                       Parse({"jobs", "logs", "job-a", "--offset", "-4096"}));
  EXPECT_EQ(inv.flags.GetInt("offset"), -4096);
}

// --- jobs create -> CreateJobRequest -------------------------------------

FlagValues JobFlags(const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"jobs", "create"};
  args.insert(args.end(), extra.begin(), extra.end());
  absl::StatusOr<Invocation> inv = ParseCommandLine(args, {});
  EXPECT_TRUE(inv.ok()) << inv.status();
  return inv.ok() ? inv->flags : FlagValues();
}

TEST(JobSpecFlagsTest, MapsFlagsOntoSpecFields) {
  ASSERT_OK_AND_ASSIGN(v1::CreateJobRequest req,
                       BuildCreateJobRequest(JobFlags({"--model",
                                                       "tiny",
                                                       "--training-file",
                                                       "file-t",
                                                       "--validation-file",
                                                       "file-v",
                                                       "--method",
                                                       "qlora",
                                                       "--max-steps",
                                                       "20",
                                                       "--learning-rate",
                                                       "1e-3",
                                                       "--batch-size",
                                                       "2",
                                                       "--lora-rank",
                                                       "8",
                                                       "--lora-alpha",
                                                       "16",
                                                       "--target-modules",
                                                       "q_proj,v_proj",
                                                       "--seed",
                                                       "7",
                                                       "--suffix",
                                                       "exp",
                                                       "--priority",
                                                       "5",
                                                       "--max-restarts",
                                                       "0",
                                                       "--gpus",
                                                       "0",
                                                       "--cpu-threads",
                                                       "2",
                                                       "--label",
                                                       "team=search",
                                                       "--label",
                                                       "stage=",
                                                       "--request-id",
                                                       "req-1"})));
  const v1::JobSpec& spec = req.spec();
  EXPECT_EQ(spec.model(), "tiny");
  EXPECT_EQ(spec.training_file(), "file-t");
  EXPECT_EQ(spec.validation_file(), "file-v");
  EXPECT_EQ(spec.method(), v1::TRAINING_METHOD_QLORA);
  EXPECT_EQ(spec.hyperparameters().max_steps(), 20);
  EXPECT_DOUBLE_EQ(spec.hyperparameters().learning_rate(), 1e-3);
  EXPECT_EQ(spec.hyperparameters().batch_size(), 2);
  EXPECT_EQ(spec.hyperparameters().seed(), 7);
  EXPECT_EQ(spec.lora().rank(), 8);
  EXPECT_DOUBLE_EQ(spec.lora().alpha(), 16);
  EXPECT_THAT(spec.lora().target_modules(), ElementsAre("q_proj", "v_proj"));
  EXPECT_EQ(spec.suffix(), "exp");
  EXPECT_EQ(spec.priority(), 5);
  ASSERT_TRUE(spec.has_max_restarts());
  EXPECT_EQ(spec.max_restarts(), 0);
  ASSERT_TRUE(spec.resources().has_gpus());
  EXPECT_EQ(spec.resources().gpus(), 0);
  EXPECT_EQ(spec.resources().cpu_threads(), 2);
  EXPECT_EQ(spec.labels().at("team"), "search");
  EXPECT_EQ(spec.labels().at("stage"), "");
  EXPECT_EQ(req.request_id(), "req-1");
}

TEST(JobSpecFlagsTest, RandomRequestIdWhenNoneGiven) {
  FlagValues flags = JobFlags({"--model", "m", "--training-file", "file-t"});
  ASSERT_OK_AND_ASSIGN(v1::CreateJobRequest a, BuildCreateJobRequest(flags));
  ASSERT_OK_AND_ASSIGN(v1::CreateJobRequest b, BuildCreateJobRequest(flags));
  EXPECT_THAT(a.request_id(), ::testing::StartsWith("ftunectl-"));
  EXPECT_LE(a.request_id().size(), 64u);
  EXPECT_NE(a.request_id(), b.request_id());
  // Nothing set means server defaults: no empty sub-messages are sent.
  EXPECT_FALSE(a.spec().has_hyperparameters());
  EXPECT_FALSE(a.spec().has_lora());
  EXPECT_FALSE(a.spec().has_resources());
}

TEST(JobSpecFlagsTest, FlagsOverrideSpecFile) {
  testing::TempDir dir;
  const std::string path = dir.Sub("spec.json");
  std::ofstream(path) << R"({"model": "from-file", "trainingFile": "file-f",
      "hyperparameters": {"maxSteps": "100", "batchSize": 8},
      "labels": {"a": "1"}})";
  ASSERT_OK_AND_ASSIGN(
      v1::CreateJobRequest req,
      BuildCreateJobRequest(JobFlags({"--spec-file", path, "--model", "flag",
                                      "--epochs", "2", "--label", "b=2"})));
  EXPECT_EQ(req.spec().model(), "flag");
  EXPECT_EQ(req.spec().training_file(), "file-f");
  // --epochs replaces the file's max_steps (one oneof).
  EXPECT_DOUBLE_EQ(req.spec().hyperparameters().epochs(), 2);
  EXPECT_FALSE(req.spec().hyperparameters().has_max_steps());
  EXPECT_EQ(req.spec().hyperparameters().batch_size(), 8);
  EXPECT_EQ(req.spec().labels().size(), 2u);
}

TEST(JobSpecFlagsTest, UsageErrors) {
  EXPECT_THAT(
      BuildCreateJobRequest(JobFlags({"--training-file", "file-t"})),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs --model")));
  EXPECT_THAT(BuildCreateJobRequest(JobFlags({"--model", "m"})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs --training-file")));
  EXPECT_THAT(
      BuildCreateJobRequest(JobFlags(
          {"--model", "m", "--training-file", "f", "--method", "full"})),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--method")));
  EXPECT_THAT(BuildCreateJobRequest(JobFlags(
                  {"--model", "m", "--training-file", "f", "--label", "nokv"})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--label: \"nokv\" is not KEY=VALUE")));
  EXPECT_THAT(BuildCreateJobRequest(JobFlags({"--spec-file", "/nonexistent"})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--spec-file /nonexistent")));

  testing::TempDir dir;
  std::ofstream(dir.Sub("typo.json")) << R"({"modle": "m"})";
  EXPECT_THAT(
      BuildCreateJobRequest(JobFlags({"--spec-file", dir.Sub("typo.json")})),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JobSpec")));
}

}  // namespace
}  // namespace ftune::client
