// The ftunectl command line on its own: commands, flags, environment
// defaults, the config file, usage errors, the JobSpec built from `jobs
// create` flags and spec files, and YAML output.
#include "client/flags.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "client/config.h"
#include "client/job_spec_flags.h"
#include "client/output.h"
#include "client/spec_file.h"
#include "ftune/v1/job.pb.h"
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
  EXPECT_THAT(Parse({"--output", "xml", "status"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--output: \"xml\" is not text, table, "
                                 "json or yaml")));
}

TEST(FlagsTest, OutputFormats) {
  ASSERT_OK_AND_ASSIGN(Invocation yaml, Parse({"--output", "yaml", "status"}));
  EXPECT_EQ(yaml.global.output, OutputFormat::kYaml);
  // table is another name of text, whose lists are aligned tables.
  ASSERT_OK_AND_ASSIGN(Invocation table, Parse({"--output=table", "status"}));
  EXPECT_EQ(table.global.output, OutputFormat::kText);
  ASSERT_OK_AND_ASSIGN(Invocation env,
                       Parse({"status"}, {{"FTUNE_OUTPUT", "json"}}));
  EXPECT_EQ(env.global.output, OutputFormat::kJson);
  EXPECT_THAT(Parse({"status"}, {{"FTUNE_OUTPUT", "xml"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("$FTUNE_OUTPUT: \"xml\"")));
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
  EXPECT_TRUE(inv.ok()) << inv.status() << " " << absl::StrJoin(args, " ");
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

// Every JobSpec field, found by reflection, has a `jobs create` flag, and
// giving that flag changes the spec: nothing a tenant can ask through the
// API is out of reach of ftunectl.
void SpecLeaves(const google::protobuf::Descriptor* d,
                const std::string& prefix,
                std::vector<const google::protobuf::FieldDescriptor*>* fields,
                std::vector<std::string>* paths) {
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    const std::string path =
        prefix.empty() ? f->name() : prefix + "." + f->name();
    if (f->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE &&
        !f->is_map() && !f->is_repeated()) {
      SpecLeaves(f->message_type(), path, fields, paths);
    } else {
      fields->push_back(f);
      paths->push_back(path);
    }
  }
}

TEST(JobSpecFlagsTest, EveryJobSpecFieldHasAFlagThatSetsIt) {
  using google::protobuf::FieldDescriptor;
  std::vector<const FieldDescriptor*> fields;
  std::vector<std::string> paths;
  SpecLeaves(v1::JobSpec::descriptor(), "", &fields, &paths);
  std::map<std::string, std::string> flag_of(JobSpecFieldFlags().begin(),
                                             JobSpecFieldFlags().end());
  const std::map<std::string, std::string> enum_values = {
      {"method", "qlora"},           {"quantization-type", "fp4"},
      {"compute-dtype", "bf16"},     {"lr-scheduler", "cosine"},
      {"overlength-policy", "drop"}, {"objective", "dpo"},
      {"preference-loss", "ipo"},    {"select-best-by", "exact_match"}};
  const std::vector<std::string> base = {
      "--model", "m", "--training-file", "file-t", "--request-id", "r"};
  ASSERT_OK_AND_ASSIGN(v1::CreateJobRequest plain,
                       BuildCreateJobRequest(JobFlags(base)));
  for (size_t i = 0; i < fields.size(); ++i) {
    const std::string& path = paths[i];
    // A try job's spec is written by the scheduler (JobService.TryModel;
    // `ftunectl adapters try`); CreateJob refuses it.
    if (absl::StartsWith(path, "try_model.")) continue;
    ASSERT_TRUE(flag_of.count(path))
        << "JobSpec field " << path << " has no ftunectl jobs create flag";
    const std::string& flag = flag_of[path];
    // The base's own flags are given once, with the new value.
    std::vector<std::string> args;
    for (size_t a = 0; a < base.size(); a += 2) {
      if (base[a] != "--" + flag) {
        args.insert(args.end(), {base[a], base[a + 1]});
      }
    }
    switch (fields[i]->cpp_type()) {
      case FieldDescriptor::CPPTYPE_BOOL:
        args.push_back("--" + flag + "=true");
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        ASSERT_TRUE(enum_values.count(flag)) << flag;
        args.insert(args.end(), {"--" + flag, enum_values.at(flag)});
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        args.insert(args.end(), {"--" + flag, "0.25"});
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        args.insert(args.end(), {"--" + flag, "other"});
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE:  // labels
        args.insert(args.end(), {"--" + flag, "k=v"});
        break;
      default:
        args.insert(args.end(), {"--" + flag, "3"});
    }
    absl::StatusOr<v1::CreateJobRequest> req =
        BuildCreateJobRequest(JobFlags(args));
    ASSERT_TRUE(req.ok()) << path << ": " << req.status();
    EXPECT_NE(req->spec().SerializeAsString(), plain.spec().SerializeAsString())
        << "--" << flag << " does not set " << path;
  }
  size_t try_fields = 0;
  for (const std::string& path : paths)
    try_fields += absl::StartsWith(path, "try_model.") ? 1 : 0;
  EXPECT_EQ(flag_of.size(), fields.size() - try_fields)
      << "the table lists a stale field";
}

TEST(JobSpecFlagsTest, EnumFlagsAreCheckedAndCaseInsensitive) {
  ASSERT_OK_AND_ASSIGN(
      v1::CreateJobRequest req,
      BuildCreateJobRequest(JobFlags(
          {"--model", "m", "--training-file", "f", "--lr-scheduler", "COSINE",
           "--gradient-checkpointing=false", "--compute-dtype", "bf16"})));
  EXPECT_EQ(req.spec().hyperparameters().lr_scheduler(),
            v1::LR_SCHEDULER_COSINE);
  ASSERT_TRUE(req.spec().hyperparameters().has_gradient_checkpointing());
  EXPECT_FALSE(req.spec().hyperparameters().gradient_checkpointing());
  EXPECT_EQ(req.spec().quantization().compute_dtype(), v1::COMPUTE_DTYPE_BF16);
  EXPECT_THAT(
      BuildCreateJobRequest(JobFlags({"--model", "m", "--training-file", "f",
                                      "--lr-scheduler", "unspecified"})),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("--lr-scheduler: \"unspecified\" is not one "
                         "of linear, cosine, constant")));
  EXPECT_THAT(BuildCreateJobRequest(
                  JobFlags({"--model", "m", "--training-file", "f",
                            "--warmup-steps", "3", "--warmup-ratio", "0.1"})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("exclude each other")));
}

TEST(JobSpecFlagsTest, MethodFull) {
  ASSERT_OK_AND_ASSIGN(v1::CreateJobRequest req,
                       BuildCreateJobRequest(JobFlags(
                           {"--model", "m", "--training-file", "f", "--method",
                            "full", "--learning-rate", "2e-5"})));
  EXPECT_EQ(req.spec().method(), v1::TRAINING_METHOD_FULL);
  // No LoRA field is set for it (the server would refuse each by name).
  EXPECT_EQ(req.spec().lora().rank(), 0);
  EXPECT_TRUE(req.spec().lora().target_modules().empty());
  EXPECT_THAT(BuildCreateJobRequest(JobFlags({"--model", "m", "--training-file",
                                              "f", "--method", "fool"})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--method: \"fool\" is not lora, qlora or "
                                 "full")));
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
          {"--model", "m", "--training-file", "f", "--method", "partial"})),
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
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("unknown field \"modle\"")));
}

// --- config file ----------------------------------------------------------

class FtunectlConfigTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_.Sub(name);
    std::filesystem::create_directories(
        std::filesystem::path(path).parent_path());
    std::ofstream(path) << text;
    return path;
  }

  testing::TempDir dir_;
};

TEST_F(FtunectlConfigTest, SuppliesEverySetting) {
  const std::string path = Write("ftune.yaml", R"(# the team's scheduler
address: sched.internal:50051
api_key_file: keys/team.key
timeout: 2m
output: yaml
tls_ca: /etc/ftune/ca.pem
tls_server_name: sched.internal
)");
  ASSERT_OK_AND_ASSIGN(Invocation inv,
                       Parse({"jobs", "list"}, {{"FTUNE_CONFIG", path}}));
  EXPECT_EQ(inv.global.config_path, path);
  EXPECT_EQ(inv.global.address, "sched.internal:50051");
  // Relative to the config file's directory.
  EXPECT_EQ(inv.global.api_key_file, dir_.Sub("keys/team.key"));
  EXPECT_EQ(inv.global.timeout, absl::Minutes(2));
  // Only --timeout on the command line bounds long streams.
  EXPECT_FALSE(inv.global.timeout_set);
  EXPECT_EQ(inv.global.output, OutputFormat::kYaml);
  EXPECT_TRUE(inv.global.tls);
  EXPECT_EQ(inv.global.tls_ca, "/etc/ftune/ca.pem");
  EXPECT_EQ(inv.global.tls_server_name, "sched.internal");
}

TEST_F(FtunectlConfigTest, FlagBeatsEnvironmentBeatsFileBeatsDefault) {
  const std::string path = Write("config.yaml",
                                 "address: file:1\n"
                                 "output: yaml\n"
                                 "timeout: 5\n"
                                 "api_key_file: /file.key\n");
  const Environment file_only = {{"FTUNE_CONFIG", path}};
  ASSERT_OK_AND_ASSIGN(Invocation file, Parse({"status"}, file_only));
  EXPECT_EQ(file.global.address, "file:1");
  EXPECT_EQ(file.global.output, OutputFormat::kYaml);
  EXPECT_EQ(file.global.timeout, absl::Seconds(5));
  EXPECT_EQ(file.global.api_key_file, "/file.key");

  Environment env = file_only;
  env["FTUNE_ADDRESS"] = "env:1";
  env["FTUNE_OUTPUT"] = "json";
  env["FTUNE_TIMEOUT"] = "7";
  env["FTUNE_API_KEY_FILE"] = "/env.key";
  ASSERT_OK_AND_ASSIGN(Invocation from_env, Parse({"status"}, env));
  EXPECT_EQ(from_env.global.address, "env:1");
  EXPECT_EQ(from_env.global.output, OutputFormat::kJson);
  EXPECT_EQ(from_env.global.timeout, absl::Seconds(7));
  EXPECT_EQ(from_env.global.api_key_file, "/env.key");

  ASSERT_OK_AND_ASSIGN(
      Invocation flag,
      Parse({"--address", "flag:1", "--output", "text", "--timeout", "9",
             "--api-key-file", "/flag.key", "status"},
            env));
  EXPECT_EQ(flag.global.address, "flag:1");
  EXPECT_EQ(flag.global.output, OutputFormat::kText);
  EXPECT_EQ(flag.global.timeout, absl::Seconds(9));
  EXPECT_EQ(flag.global.api_key_file, "/flag.key");

  // $FTUNE_API_KEY (the key itself) beats the file's api_key_file.
  ASSERT_OK_AND_ASSIGN(Invocation key,
                       Parse({"status"}, {{"FTUNE_CONFIG", path},
                                          {"FTUNE_API_KEY", "ftk_env"}}));
  EXPECT_EQ(key.global.api_key, "ftk_env");
  EXPECT_EQ(key.global.api_key_file, "");

  // Nothing anywhere: the defaults.
  ASSERT_OK_AND_ASSIGN(Invocation none, Parse({"status"}));
  EXPECT_EQ(none.global.address, kDefaultAddress);
  EXPECT_EQ(none.global.config_path, "");
}

TEST_F(FtunectlConfigTest, ConfigFlagBeatsEnvironmentAndDefaultPath) {
  const std::string flag_path = Write("flag.yaml", "address: flag-file:1\n");
  const std::string env_path = Write("env.yaml", "address: env-file:1\n");
  Write("xdg/ftune/config.yaml", "address: xdg-file:1\n");
  Write("home/.config/ftune/config.yaml", "address: home-file:1\n");
  Environment env = {{"FTUNE_CONFIG", env_path},
                     {"XDG_CONFIG_HOME", dir_.Sub("xdg")},
                     {"HOME", dir_.Sub("home")}};
  ASSERT_OK_AND_ASSIGN(Invocation flag,
                       Parse({"status", "--config", flag_path}, env));
  EXPECT_EQ(flag.global.address, "flag-file:1");
  ASSERT_OK_AND_ASSIGN(Invocation from_env, Parse({"status"}, env));
  EXPECT_EQ(from_env.global.address, "env-file:1");
  env.erase("FTUNE_CONFIG");
  ASSERT_OK_AND_ASSIGN(Invocation xdg, Parse({"status"}, env));
  EXPECT_EQ(xdg.global.address, "xdg-file:1");
  EXPECT_EQ(xdg.global.config_path, dir_.Sub("xdg/ftune/config.yaml"));
  env.erase("XDG_CONFIG_HOME");
  ASSERT_OK_AND_ASSIGN(Invocation home, Parse({"status"}, env));
  EXPECT_EQ(home.global.address, "home-file:1");
  // A missing default file is no error; a named one is.
  ASSERT_OK_AND_ASSIGN(Invocation missing,
                       Parse({"status"}, {{"HOME", dir_.Sub("nobody")}}));
  EXPECT_EQ(missing.global.address, kDefaultAddress);
  EXPECT_THAT(Parse({"status", "--config", dir_.Sub("nope.yaml")}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("nope.yaml: cannot be read")));
  // Help reads no config at all.
  ASSERT_OK_AND_ASSIGN(Invocation help,
                       Parse({"--config", dir_.Sub("nope.yaml"), "--help"}));
  EXPECT_TRUE(help.help);
}

TEST_F(FtunectlConfigTest, Profiles) {
  const std::string path = Write("config.yaml", R"(address: dev:1
output: table
profiles:
  prod:
    address: prod:1
    tls: true
  staging: {address: staging:1, output: json}
)");
  const Environment env = {{"FTUNE_CONFIG", path}};
  ASSERT_OK_AND_ASSIGN(Invocation base, Parse({"status"}, env));
  EXPECT_EQ(base.global.address, "dev:1");
  EXPECT_EQ(base.global.profile, "");
  ASSERT_OK_AND_ASSIGN(Invocation prod,
                       Parse({"status", "--profile", "prod"}, env));
  EXPECT_EQ(prod.global.address, "prod:1");
  EXPECT_TRUE(prod.global.tls);
  EXPECT_EQ(prod.global.profile, "prod");
  Environment staging_env = env;
  staging_env["FTUNE_PROFILE"] = "staging";
  ASSERT_OK_AND_ASSIGN(Invocation staging, Parse({"status"}, staging_env));
  EXPECT_EQ(staging.global.address, "staging:1");
  EXPECT_EQ(staging.global.output, OutputFormat::kJson);
  // The flag beats $FTUNE_PROFILE.
  ASSERT_OK_AND_ASSIGN(Invocation both,
                       Parse({"status", "--profile=prod"}, staging_env));
  EXPECT_EQ(both.global.address, "prod:1");

  EXPECT_THAT(Parse({"status", "--profile", "qa"}, env),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no profile \"qa\" (profiles: prod, "
                                 "staging)")));
  EXPECT_THAT(Parse({"status", "--profile", "prod"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("there is no config file")));

  // `profile:` names the default one.
  const std::string with_default = Write("default.yaml",
                                         "profile: prod\nprofiles:\n  prod:\n"
                                         "    address: prod:2\n");
  ASSERT_OK_AND_ASSIGN(Invocation chosen,
                       Parse({"status"}, {{"FTUNE_CONFIG", with_default}}));
  EXPECT_EQ(chosen.global.address, "prod:2");
}

TEST_F(FtunectlConfigTest, BadKeysAndValuesNameFileKeyAndLine) {
  const std::string typo = Write("typo.yaml", "address: a:1\nadress: b:1\n");
  EXPECT_THAT(Parse({"status", "--config", typo}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("config ", typo,
                                              ": line 2: unknown key "
                                              "\"adress\""))));
  const std::string nested =
      Write("nested.yaml", "profiles:\n  prod:\n    tls_cetr: c.pem\n");
  EXPECT_THAT(Parse({"status", "--config", nested, "--profile", "prod"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 3: unknown key "
                                 "\"profiles.prod.tls_cetr\"")));
  // The key itself never goes in the file.
  const std::string key = Write("key.yaml", "api_key: ftk_secret\n");
  EXPECT_THAT(Parse({"status", "--config", key}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("name that file with api_key_file")));
  const struct {
    const char* text;
    const char* message;
  } bad_values[] = {
      {"tls: maybe\n", "line 1: \"tls\": \"maybe\" is not true or false"},
      {"\ntimeout: soon\n", "line 2: \"timeout\": \"soon\" is not a positive"},
      {"output: xml\n", "\"output\": \"xml\" is not text, table"},
      {"address: ''\n", "\"address\" is empty"},
      {"\n\naddress:\n", "line 3: \"address\" has no value"},
      {"address: [a, b]\n", "\"address\" needs a single value"},
      {"address: a\n  b: c: d\n", "not valid YAML"},
      {"- address\n", "expected \"key: value\" lines"},
  };
  for (const auto& bad : bad_values) {
    const std::string path = Write("bad.yaml", bad.text);
    EXPECT_THAT(
        Parse({"status", "--config", path}),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(bad.message)))
        << bad.text;
  }
}

TEST_F(FtunectlConfigTest, TlsFromEnvironment) {
  ASSERT_OK_AND_ASSIGN(Invocation inv,
                       Parse({"status"}, {{"FTUNE_TLS_CA", "/ca.pem"},
                                          {"FTUNE_TLS_SERVER_NAME", "s"}}));
  EXPECT_TRUE(inv.global.tls);
  EXPECT_EQ(inv.global.tls_ca, "/ca.pem");
  EXPECT_EQ(inv.global.tls_server_name, "s");
  const std::string path = Write("tls.yaml", "tls: true\n");
  ASSERT_OK_AND_ASSIGN(
      Invocation off,
      Parse({"status"}, {{"FTUNE_CONFIG", path}, {"FTUNE_TLS", "false"}}));
  EXPECT_FALSE(off.global.tls);
  EXPECT_THAT(
      Parse({"status"}, {{"FTUNE_TLS", "sometimes"}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("$FTUNE_TLS")));
}

// --- spec files --------------------------------------------------------------

TEST(JobSpecFlagsTest, YamlSpecFileWithBothFieldNameStyles) {
  testing::TempDir dir;
  const std::string path = dir.Sub("spec.yaml");
  std::ofstream(path) << R"(# a YAML JobSpec
model: tiny
training_file: file-t          # the proto's name
method: TRAINING_METHOD_QLORA
hyperparameters:
  maxSteps: 500                # the JSON name
  learningRate: 1e-4
  gradientCheckpointing: yes
lora:
  rank: 8
  targetModules: [q_proj, v_proj]
labels:
  team: search
  build: 123                   # a string, although it looks like a number
suffix: "007"
)";
  ASSERT_OK_AND_ASSIGN(v1::CreateJobRequest req,
                       BuildCreateJobRequest(JobFlags(
                           {"--spec-file", path, "--label", "stage=prod"})));
  const v1::JobSpec& spec = req.spec();
  EXPECT_EQ(spec.model(), "tiny");
  EXPECT_EQ(spec.training_file(), "file-t");
  EXPECT_EQ(spec.method(), v1::TRAINING_METHOD_QLORA);
  EXPECT_EQ(spec.hyperparameters().max_steps(), 500);
  EXPECT_DOUBLE_EQ(spec.hyperparameters().learning_rate(), 1e-4);
  EXPECT_TRUE(spec.hyperparameters().gradient_checkpointing());
  EXPECT_EQ(spec.lora().rank(), 8);
  EXPECT_THAT(spec.lora().target_modules(), ElementsAre("q_proj", "v_proj"));
  EXPECT_EQ(spec.labels().at("build"), "123");
  EXPECT_EQ(spec.labels().at("stage"), "prod");
  EXPECT_EQ(spec.suffix(), "007");
}

TEST(JobSpecFlagsTest, SpecSyntaxByExtensionElseContent) {
  EXPECT_EQ(DetectSyntax("a.yml", "{}"), SpecSyntax::kYaml);
  EXPECT_EQ(DetectSyntax("a.JSON", "model: x"), SpecSyntax::kJson);
  EXPECT_EQ(DetectSyntax("spec", "  {\"model\": \"x\"}"), SpecSyntax::kJson);
  EXPECT_EQ(DetectSyntax("spec", "model: x"), SpecSyntax::kYaml);

  testing::TempDir dir;
  std::ofstream(dir.Sub("spec")) << "model: m\ntrainingFile: file-t\n";
  ASSERT_OK_AND_ASSIGN(
      v1::CreateJobRequest req,
      BuildCreateJobRequest(JobFlags({"--spec-file", dir.Sub("spec")})));
  EXPECT_EQ(req.spec().training_file(), "file-t");
}

TEST(JobSpecFlagsTest, UnknownFieldsAreNamed) {
  testing::TempDir dir;
  std::ofstream(dir.Sub("typo.yaml"))
      << "model: m\nhyperparameters:\n  maxStep: 5\n";
  EXPECT_THAT(
      BuildCreateJobRequest(JobFlags({"--spec-file", dir.Sub("typo.yaml")})),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("typo.yaml: line 3: unknown field "
                         "\"hyperparameters.maxStep\" (Hyperparameters has "
                         "no \"maxStep\")")));
  std::ofstream(dir.Sub("typo.json"))
      << R"({"model": "m", "lora": {"rank": 4, "alpha2": 8}})";
  EXPECT_THAT(
      BuildCreateJobRequest(JobFlags({"--spec-file", dir.Sub("typo.json")})),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("unknown field \"lora.alpha2\"")));
  std::ofstream(dir.Sub("bad.yaml")) << "model: m\nlora:\n  rank: eight\n";
  EXPECT_THAT(
      BuildCreateJobRequest(JobFlags({"--spec-file", dir.Sub("bad.yaml")})),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("line 3: \"lora.rank\": \"eight\" is not a number")));
  std::ofstream(dir.Sub("enum.yaml")) << "model: m\nmethod: FULL\n";
  EXPECT_THAT(
      BuildCreateJobRequest(JobFlags({"--spec-file", dir.Sub("enum.yaml")})),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("not a JobSpec in protobuf JSON")));
}

TEST(JobSpecFlagsTest, DryRunIsValidateOnly) {
  ASSERT_OK_AND_ASSIGN(
      v1::CreateJobRequest req,
      BuildCreateJobRequest(JobFlags(
          {"--model", "m", "--training-file", "file-t", "--dry-run"})));
  EXPECT_TRUE(req.validate_only());
  ASSERT_OK_AND_ASSIGN(v1::CreateJobRequest plain,
                       BuildCreateJobRequest(
                           JobFlags({"--model", "m", "--training-file", "f"})));
  EXPECT_FALSE(plain.validate_only());
}

// --- YAML output
// ---------------------------------------------------------------

TEST(FtunectlYamlOutputTest, QuotesWhatYamlWouldReadAsAnotherType) {
  ASSERT_OK_AND_ASSIGN(
      std::string yaml,
      JsonToYaml(R"({"id": "job-1", "maxSteps": "500", "flag": "true",
                    "empty": "", "rate": 0.0001, "on": true, "n": -3,
                    "list": ["a", "no"], "nested": {"k": "v"}, "none": {}})"));
  EXPECT_THAT(yaml, ::testing::StartsWith("---\n"));
  YAML::Node doc = YAML::Load(yaml);
  EXPECT_EQ(doc["id"].as<std::string>(), "job-1");
  EXPECT_EQ(doc["maxSteps"].Tag(), "!");  // quoted: a string
  EXPECT_EQ(doc["maxSteps"].as<std::string>(), "500");
  EXPECT_EQ(doc["flag"].Tag(), "!");
  EXPECT_EQ(doc["empty"].as<std::string>(), "");
  EXPECT_DOUBLE_EQ(doc["rate"].as<double>(), 0.0001);
  EXPECT_TRUE(doc["on"].as<bool>());
  EXPECT_EQ(doc["n"].as<int>(), -3);
  EXPECT_EQ(doc["list"][1].as<std::string>(), "no");
  EXPECT_EQ(doc["list"][1].Tag(), "!");
  EXPECT_EQ(doc["nested"]["k"].as<std::string>(), "v");
  EXPECT_TRUE(doc["none"].IsMap());
  EXPECT_EQ(doc["none"].size(), 0u);
  // Keys keep the JSON's order.
  EXPECT_LT(yaml.find("id:"), yaml.find("maxSteps:"));
}

TEST(FtunectlYamlOutputTest, MessageRoundTripsThroughYaml) {
  v1::Job job;
  job.set_id("job-abc");
  job.set_state(v1::JOB_STATE_RUNNING);
  job.mutable_spec()->set_model("tiny");
  job.mutable_spec()->mutable_hyperparameters()->set_max_steps(1234567890123);
  job.mutable_spec()->mutable_hyperparameters()->set_learning_rate(2e-4);
  (*job.mutable_spec()->mutable_labels())["true"] = "null";
  job.mutable_progress()->set_percent(12.5);
  job.mutable_create_time()->set_seconds(1767225600);
  job.mutable_progress()->mutable_eta()->set_seconds(90);

  std::ostringstream out, err;
  Output output(OutputFormat::kYaml, out, err);
  output.Message(job);
  output.Message(job);  // a stream: one document each
  EXPECT_EQ(err.str(), "");
  std::vector<YAML::Node> docs = YAML::LoadAll(out.str());
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0]["state"].as<std::string>(), "JOB_STATE_RUNNING");

  // What `--output yaml` prints reads back, as a spec file would, into the
  // same message.
  const std::string first = out.str().substr(0, out.str().find("---", 3));
  v1::Job back;
  ASSERT_OK(ParseMessageText(first, SpecSyntax::kYaml, "output", &back));
  EXPECT_EQ(back.SerializeAsString(), job.SerializeAsString())
      << back.DebugString();
}

}  // namespace
}  // namespace ftune::client
