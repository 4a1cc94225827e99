// ftunectl against a whole cluster (tests/integration/cluster.h): the real
// scheduler, a real ftune-worker and the stand-in trainer, so jobs really
// run to SUCCEEDED, store metric points and publish an adapter. Checks what
// needs a finished job: `jobs watch` with the live progress line (in
// process, with a pretend terminal), `jobs metrics --format csv`, and
// `adapters download` (byte-for-byte copies, SHA-256 checks, resuming).
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/commands.h"
#include "client/progress.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/testing/status_matchers.h"

namespace ftune::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kCtl = std::string(FTUNE_BIN_DIR) + "/ftunectl";
const std::string kStandIn =
    std::string(FTUNE_BIN_DIR) + "/ftune-stand-in-trainer";
constexpr int kSteps = 12;

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream data;
  data << in.rdbuf();
  return data.str();
}

void WriteBytes(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

struct CtlResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

class FtunectlClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(cluster_.StartScheduler());
    ASSERT_OK_AND_ASSIGN(tenant_, cluster_.CreateTenant("cli"));
    std::ofstream(cluster_.Path("tenant.key")) << tenant_.key << "\n";
    std::string jsonl;
    for (int i = 0; i < 8; ++i) {
      absl::StrAppend(&jsonl, R"({"prompt": "count to )", i,
                      R"(", "completion": " done"})", "\n");
    }
    ASSERT_OK_AND_ASSIGN(file_,
                         cluster_.UploadFile(tenant_, "train.jsonl", jsonl));
    WorkerOptions worker;
    worker.trainer = kStandIn;
    // Jobs with a validation source evaluate with these losses in turn
    // (the others never evaluate).
    worker.env = {{"FTUNE_STAND_IN_STEP_MS", "20"},
                  {"FTUNE_STAND_IN_EVAL_LOSSES", "1.9,1.4,1.6,1.5"}};
    ASSERT_OK(cluster_.StartWorker(worker).status());
  }

  // A job of kSteps steps, run to SUCCEEDED.
  v1::Job RunJob() {
    absl::StatusOr<v1::Job> job = cluster_.CreateJob(
        tenant_, StepsSpec("tiny", file_, kSteps, /*checkpoint_every=*/5,
                           /*max_restarts=*/0));
    EXPECT_OK(job.status());
    if (!job.ok()) return {};
    absl::StatusOr<v1::Job> done = cluster_.WaitForState(
        tenant_, job->id(), v1::JOB_STATE_SUCCEEDED, absl::Seconds(60));
    EXPECT_OK(done.status());
    return done.ok() ? *done : v1::Job();
  }

  // Runs the ftunectl binary as the tenant; `cwd` non-empty runs it there.
  CtlResult Ctl(const std::vector<std::string>& args,
                const std::string& cwd = "") {
    std::vector<std::string> argv = {kCtl, "--address", cluster_.address(),
                                     "--api-key-file",
                                     cluster_.Path("tenant.key")};
    argv.insert(argv.end(), args.begin(), args.end());
    if (!cwd.empty()) {
      // Subprocess has no working directory of its own: a shell sets it.
      std::vector<std::string> quoted;
      for (const std::string& a : argv) quoted.push_back("'" + a + "'");
      argv = {
          "/bin/sh", "-c",
          absl::StrCat("cd '", cwd, "' && exec ", absl::StrJoin(quoted, " "))};
    }
    std::map<std::string, std::string> env = {
        {"FTUNE_API_KEY", ""},
        {"FTUNE_CONFIG", ""},
        {"FTUNE_OUTPUT", ""},
        {"XDG_CONFIG_HOME", cluster_.Path("xdg")}};
    const std::string err_path = cluster_.Path("ctl.stderr");
    CtlResult result;
    Subprocess ctl;
    absl::Status started = ctl.Start(argv, env, err_path);
    EXPECT_OK(started);
    if (!started.ok()) return result;
    EXPECT_OK(ctl.ReadAll(absl::Seconds(60)));
    absl::StatusOr<int> status = ctl.Wait(absl::Seconds(30));
    EXPECT_OK(status.status());
    if (status.ok() && WIFEXITED(*status)) {
      result.exit_code = WEXITSTATUS(*status);
    }
    result.out = absl::StrJoin(ctl.lines(), "\n");
    result.err = ReadBytes(err_path);
    return result;
  }

  std::string StoredAdapterFile(const v1::Job& job, const std::string& path) {
    return cluster_.StoragePath(absl::StrCat(job.adapter().path(), "/", path));
  }

  Cluster cluster_;
  TenantHandle tenant_;
  std::string file_;
};

TEST_F(FtunectlClusterTest, WatchDrawsOneLiveProgressLineOnATerminal) {
  v1::Job job = RunJob();
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);

  // In process, so stdout can pretend to be an 100-column terminal; the
  // whole history is replayed from sequence 0.
  std::ostringstream out, err;
  client::TerminalInfo terminal;
  terminal.stdout_is_tty = true;
  terminal.stderr_is_tty = true;
  terminal.columns = [] { return 100; };
  const int rc =
      client::RunFtunectl({"--address", cluster_.address(), "jobs", "watch",
                           job.id(), "--after", "0"},
                          {{"FTUNE_API_KEY", tenant_.key}}, out, err, terminal);
  EXPECT_EQ(rc, 0) << err.str();
  const std::string text = out.str();
  // Redrawn in place: carriage returns and erase-to-end, no line per point.
  EXPECT_THAT(text, HasSubstr("\r"));
  EXPECT_THAT(text, HasSubstr("\033[K"));
  EXPECT_THAT(text, Not(HasSubstr("  lr ")));
  EXPECT_THAT(text,
              HasSubstr(absl::StrCat("100.0%  step ", kSteps, "/", kSteps)));
  EXPECT_THAT(text, HasSubstr("STATE_CHANGED RUNNING -> SUCCEEDED"));
  EXPECT_THAT(text, HasSubstr(job.id() + " SUCCEEDED\nAdapter: "));
  // Every drawn progress line ("\r" LINE "\033[K") leaves the terminal's
  // last column free; event lines above it are printed whole.
  int drawn = 0;
  for (size_t at = text.find('\r'); at != std::string::npos;
       at = text.find('\r', at + 1)) {
    const size_t end = text.find("\033[K", at);
    ASSERT_NE(end, std::string::npos);
    EXPECT_LE(client::DisplayWidth(text.substr(at + 1, end - at - 1)), 99u);
    ++drawn;
  }
  EXPECT_GT(drawn, 0);

  // Not a terminal (a pipe), or --no-progress: a line per point as before.
  CtlResult lines = Ctl({"jobs", "watch", job.id(), "--after", "0"});
  EXPECT_EQ(lines.exit_code, 0) << lines.err;
  EXPECT_THAT(lines.out, Not(HasSubstr("\r")));
  EXPECT_THAT(lines.out, HasSubstr(absl::StrCat("step 1/", kSteps, "  loss ")));
  std::ostringstream plain, plain_err;
  EXPECT_EQ(client::RunFtunectl(
                {"--address", cluster_.address(), "jobs", "watch", job.id(),
                 "--after", "0", "--no-progress"},
                {{"FTUNE_API_KEY", tenant_.key}}, plain, plain_err, terminal),
            0);
  EXPECT_THAT(plain.str(), Not(HasSubstr("\r")));
  EXPECT_THAT(plain.str(), HasSubstr("  lr "));
}

TEST_F(FtunectlClusterTest, MetricsCsvHasEveryStoredPoint) {
  v1::Job job = RunJob();
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  // The stored points, straight from the API.
  grpc::ClientContext ctx;
  Authorize(ctx, tenant_.key);
  v1::ListJobMetricsRequest req;
  req.set_job_id(job.id());
  req.set_page_size(1000);
  v1::ListJobMetricsResponse stored;
  ASSERT_TRUE(cluster_.jobs().ListJobMetrics(&ctx, req, &stored).ok());
  ASSERT_GE(stored.metrics_size(), kSteps);

  // Small pages: the CSV still holds every page.
  const std::string path = cluster_.Path("metrics.csv");
  CtlResult csv = Ctl({"jobs", "metrics", job.id(), "--format", "csv",
                       "--page-size", "5", "-o", path});
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  EXPECT_EQ(csv.out, "");
  EXPECT_THAT(csv.err, HasSubstr(absl::StrCat(stored.metrics_size(),
                                              " points written to ", path)));
  std::vector<std::string> rows =
      absl::StrSplit(ReadBytes(path), '\n', absl::SkipEmpty());
  ASSERT_EQ(rows.size(), static_cast<size_t>(stored.metrics_size()) + 1);
  EXPECT_EQ(rows[0],
            "attempt,step,epoch,time,train_loss,eval_loss,learning_rate,"
            "tokens_per_second,grad_norm,peak_memory_bytes,sequence,"
            "eval_exact_match,eval_normalized_match,eval_token_f1,"
            "eval_pattern_match");
  for (int i = 0; i < stored.metrics_size(); ++i) {
    const v1::MetricPoint& p = stored.metrics(i);
    std::vector<std::string> cells = absl::StrSplit(rows[i + 1], ',');
    ASSERT_EQ(cells.size(), 15u) << rows[i + 1];
    EXPECT_EQ(cells[0], absl::StrCat(p.attempt()));
    EXPECT_EQ(cells[1], absl::StrCat(p.step()));
    EXPECT_THAT(cells[3], ::testing::EndsWith("Z"));
    if (p.has_train_loss()) {
      EXPECT_NEAR(std::stod(cells[4]), p.train_loss(), 1e-9);
    } else {
      EXPECT_EQ(cells[4], "");
    }
    EXPECT_EQ(cells[10], absl::StrCat(p.sequence()));
    if (p.has_eval_task()) {
      EXPECT_NEAR(std::stod(cells[11]), p.eval_task().exact_match(), 1e-9);
      EXPECT_NEAR(std::stod(cells[13]), p.eval_task().token_f1(), 1e-9);
    } else {
      EXPECT_EQ(cells[11], "");
      EXPECT_EQ(cells[14], "");
    }
  }
  // On stdout without -o.
  CtlResult out = Ctl({"jobs", "metrics", job.id(), "--format", "csv"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(out.out + "\n", ReadBytes(path));
}

TEST_F(FtunectlClusterTest, AdapterDownloadCopiesAndChecksEveryFile) {
  v1::Job job = RunJob();
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_FALSE(job.adapter().files().empty());

  const std::string dir = cluster_.Path("downloaded");
  CtlResult got = Ctl({"adapters", "download", job.id(), "-o", dir});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(got.out, dir);
  EXPECT_THAT(got.err, HasSubstr("SHA-256 checked"));
  for (const v1::AdapterFile& f : job.adapter().files()) {
    const std::string copy = ReadBytes(dir + "/" + f.path());
    EXPECT_EQ(copy, ReadBytes(StoredAdapterFile(job, f.path()))) << f.path();
    EXPECT_EQ(static_cast<int64_t>(copy.size()), f.size_bytes());
    EXPECT_FALSE(std::filesystem::exists(dir + "/" + f.path() + ".partial"));
  }
  // Again into the same directory: the complete files are kept.
  EXPECT_EQ(Ctl({"adapters", "download", job.id(), "-o", dir}).exit_code, 0);

  // Without -o: ./<adapter name>.
  const std::string cwd = cluster_.Path("cwd");
  std::filesystem::create_directories(cwd);
  CtlResult default_dir = Ctl({"adapters", "download", job.id()}, cwd);
  ASSERT_EQ(default_dir.exit_code, 0) << default_dir.err;
  EXPECT_EQ(default_dir.out, job.adapter().name());
  EXPECT_TRUE(std::filesystem::exists(cwd + "/" + job.adapter().name() + "/" +
                                      job.adapter().files(0).path()));

  // A partial file left by an interrupted run is continued from its size.
  const v1::AdapterFile& first = job.adapter().files(0);
  const std::string original = ReadBytes(StoredAdapterFile(job, first.path()));
  const std::string resumed = cluster_.Path("resumed");
  std::filesystem::create_directories(resumed);
  WriteBytes(resumed + "/" + first.path() + ".partial",
             original.substr(0, original.size() / 2));
  CtlResult resume = Ctl({"adapters", "download", job.id(), "-o", resumed});
  ASSERT_EQ(resume.exit_code, 0) << resume.err;
  EXPECT_EQ(ReadBytes(resumed + "/" + first.path()), original);
  EXPECT_FALSE(
      std::filesystem::exists(resumed + "/" + first.path() + ".partial"));

  // A partial file with wrong bytes fails the SHA-256 check and is removed.
  const std::string spoiled = cluster_.Path("spoiled");
  std::filesystem::create_directories(spoiled);
  WriteBytes(spoiled + "/" + first.path() + ".partial",
             std::string(original.size() / 2, 'x'));
  CtlResult mismatch = Ctl({"adapters", "download", job.id(), "-o", spoiled});
  EXPECT_EQ(mismatch.exit_code, 1);
  EXPECT_THAT(mismatch.err, HasSubstr(first.path() + ": SHA-256 mismatch"));
  EXPECT_FALSE(
      std::filesystem::exists(spoiled + "/" + first.path() + ".partial"));
  EXPECT_FALSE(std::filesystem::exists(spoiled + "/" + first.path()));
}

TEST_F(FtunectlClusterTest, CorruptStoredAdapterFileFailsTheCheck) {
  v1::Job job = RunJob();
  ASSERT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  const v1::AdapterFile& target = job.adapter().files(0);
  const std::string stored = StoredAdapterFile(job, target.path());
  // Same size, other bytes: the server streams them; the client's SHA-256
  // check refuses them.
  std::string bytes = ReadBytes(stored);
  ASSERT_FALSE(bytes.empty());
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x5a);
  WriteBytes(stored, bytes);

  const std::string dir = cluster_.Path("corrupt");
  CtlResult got = Ctl({"adapters", "download", job.id(), "-o", dir});
  EXPECT_EQ(got.exit_code, 1);
  EXPECT_THAT(got.err, HasSubstr(target.path() + ": SHA-256 mismatch"));
  EXPECT_THAT(got.err, HasSubstr(target.sha256()));
  EXPECT_FALSE(std::filesystem::exists(dir + "/" + target.path()));
  EXPECT_FALSE(std::filesystem::exists(dir + "/" + target.path() + ".partial"));

  // A different size is the server's DATA_LOSS: exit 1 too.
  WriteBytes(stored, bytes + "more");
  CtlResult longer = Ctl({"adapters", "download", job.id(), "-o", dir});
  EXPECT_EQ(longer.exit_code, 1);
  EXPECT_THAT(longer.err, HasSubstr("ftunectl: DATA_LOSS"));
}

TEST_F(FtunectlClusterTest, AdapterDownloadOfCancelledJobExits1) {
  ASSERT_OK_AND_ASSIGN(
      v1::Job job,
      cluster_.CreateJob(tenant_, StepsSpec("tiny", file_, 100000, 0, 0)));
  ASSERT_OK(cluster_.CancelJob(tenant_, job.id()).status());
  ASSERT_OK(cluster_
                .WaitForState(tenant_, job.id(), v1::JOB_STATE_CANCELLED,
                              absl::Seconds(30))
                .status());
  CtlResult got =
      Ctl({"adapters", "download", job.id(), "-o", cluster_.Path("none")});
  EXPECT_EQ(got.exit_code, 1);
  EXPECT_THAT(got.err, HasSubstr(job.id() + " is CANCELLED; only a SUCCEEDED "
                                            "job has an adapter"));
  EXPECT_FALSE(std::filesystem::exists(cluster_.Path("none")));
}

// Defect 6 of issue 16, end to end: trainer lines -> the agent's progress
// tracker -> WorkerService -> the store -> JobService (GetJob, ListJob*,
// WatchJob) -> ftunectl. Evaluations every 3 steps (1.9, 1.4, 1.6, 1.5 at
// steps 3, 6, 9, 12) and training points every 2 steps, so steps 3 and 9
// are evaluation-only points; checkpoints at 5 and 10.
TEST_F(FtunectlClusterTest, MetricsAfterEvaluationsAreHonestEndToEnd) {
  v1::JobSpec spec = StepsSpec("tiny", file_, kSteps, /*checkpoint_every=*/5,
                               /*max_restarts=*/0);
  spec.set_validation_split(0.25);
  spec.mutable_hyperparameters()->set_eval_every_steps(3);
  spec.mutable_hyperparameters()->set_log_every_steps(2);
  ASSERT_OK_AND_ASSIGN(v1::Job created, cluster_.CreateJob(tenant_, spec));
  ASSERT_OK_AND_ASSIGN(
      v1::Job job,
      cluster_.WaitForState(tenant_, created.id(), v1::JOB_STATE_SUCCEEDED,
                            absl::Seconds(60)));

  // The recorded points.
  grpc::ClientContext ctx;
  Authorize(ctx, tenant_.key);
  v1::ListJobMetricsRequest req;
  req.set_job_id(job.id());
  req.set_page_size(1000);
  v1::ListJobMetricsResponse stored;
  ASSERT_TRUE(cluster_.jobs().ListJobMetrics(&ctx, req, &stored).ok());
  std::map<int64_t, double> evals;  // step -> eval_loss
  const v1::MetricPoint* last_train = nullptr;
  for (const v1::MetricPoint& p : stored.metrics()) {
    // Absent is absent: a point has a train loss or an evaluation, never
    // a made-up 0.
    EXPECT_TRUE(p.has_train_loss() || p.has_eval_loss()) << p.DebugString();
    if (p.has_train_loss()) {
      EXPECT_GT(p.train_loss(), 0.5) << p.DebugString();
      last_train = &p;
    }
    if (p.has_eval_loss()) evals[p.step()] = p.eval_loss();
  }
  EXPECT_THAT(evals, ::testing::ElementsAre(
                         std::make_pair(3, 1.9), std::make_pair(6, 1.4),
                         std::make_pair(9, 1.6), std::make_pair(12, 1.5)));
  ASSERT_NE(last_train, nullptr);

  // The job's summary is the points': latest training values, latest and
  // best evaluation; the published adapter is the best evaluation's.
  const v1::JobMetrics& m = job.metrics();
  ASSERT_TRUE(m.has_train_loss());
  EXPECT_EQ(m.step(), kSteps);
  EXPECT_EQ(m.step(), last_train->step());
  EXPECT_DOUBLE_EQ(m.train_loss(), last_train->train_loss());
  EXPECT_DOUBLE_EQ(m.eval_loss(), 1.5);
  EXPECT_EQ(m.eval_step(), 12);
  ASSERT_TRUE(m.has_best_eval_loss());
  EXPECT_DOUBLE_EQ(m.best_eval_loss(), 1.4);
  EXPECT_EQ(m.best_eval_step(), 6);
  EXPECT_EQ(job.adapter().step(), 6);

  // Events carry their step: one EVAL per evaluation, one CHECKPOINT_SAVED
  // per checkpoint.
  ASSERT_OK_AND_ASSIGN(std::vector<v1::JobEvent> events,
                       cluster_.ListEvents(tenant_, job.id()));
  std::vector<int64_t> eval_steps, checkpoint_steps;
  for (const v1::JobEvent& e : events) {
    if (e.type() == v1::JOB_EVENT_TYPE_EVAL) eval_steps.push_back(e.step());
    if (e.type() == v1::JOB_EVENT_TYPE_CHECKPOINT_SAVED) {
      checkpoint_steps.push_back(e.step());
    }
  }
  EXPECT_THAT(eval_steps, ::testing::ElementsAre(3, 6, 9, 12));
  EXPECT_THAT(checkpoint_steps, ::testing::ElementsAre(5, 10));

  // ftunectl (WatchJob replays the same records) never prints a loss that
  // was not measured, and shows the summary and the steps.
  CtlResult watch = Ctl({"jobs", "watch", job.id(), "--after", "0"});
  EXPECT_EQ(watch.exit_code, 0) << watch.err;
  EXPECT_THAT(watch.out, Not(HasSubstr("loss 0.0000")));
  EXPECT_THAT(watch.out, HasSubstr("step 3/12  eval_loss 1.9000"));
  EXPECT_THAT(watch.out, HasSubstr("EVAL step 6"));
  EXPECT_THAT(watch.out, HasSubstr("CHECKPOINT_SAVED step 10"));
  CtlResult get = Ctl({"jobs", "get", job.id()});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_THAT(get.out, HasSubstr("eval_loss 1.5 at step 12 (best 1.4 at "
                                 "step 6)"));
  EXPECT_THAT(get.out, HasSubstr(absl::StrCat("at step ", kSteps, ", lr")));
  CtlResult table = Ctl({"jobs", "metrics", job.id()});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, Not(HasSubstr("0.0000")));

  // Sample completions (4 by default with a validation source) at step 0
  // and after every evaluation: watch points at them, `jobs samples` shows
  // step 0 next to the latest for every prompt, or one step.
  EXPECT_THAT(watch.out,
              HasSubstr(absl::StrCat("SAMPLES step 6: 4 sample completions at "
                                     "step 6 (ftunectl jobs samples ",
                                     job.id(), " --step 6)")));
  CtlResult samples = Ctl({"jobs", "samples", job.id()});
  EXPECT_EQ(samples.exit_code, 0) << samples.err;
  EXPECT_THAT(samples.out,
              HasSubstr("samples at steps 0, 3, 6, 9, 12; showing step 0 next "
                        "to step 12"));
  EXPECT_THAT(samples.out, HasSubstr("[2/4]\n"
                                     "  prompt:\n"
                                     "    prompt 1\n"
                                     "  step 0 (end):\n"
                                     "    completion 1 at step 0\n"
                                     "  step 12 (end):\n"
                                     "    completion 1 at step 12"));
  EXPECT_THAT(samples.out, HasSubstr("  expected:\n    expected 0\n"));
  EXPECT_THAT(samples.out, Not(HasSubstr("at step 6")));
  CtlResult one = Ctl({"jobs", "samples", job.id(), "--step", "6"});
  EXPECT_EQ(one.exit_code, 0) << one.err;
  EXPECT_THAT(one.out, HasSubstr("samples at step 6\n"));
  EXPECT_THAT(one.out, HasSubstr("completion 3 at step 6"));
  EXPECT_THAT(one.out, Not(HasSubstr("at step 12")));
  CtlResult none = Ctl({"jobs", "samples", job.id(), "--step", "5"});
  EXPECT_EQ(none.exit_code, 0) << none.err;
  EXPECT_THAT(none.out, HasSubstr("(no samples at this step"));
  CtlResult json_out =
      Ctl({"--output", "json", "jobs", "samples", job.id(), "--step", "0"});
  EXPECT_EQ(json_out.exit_code, 0) << json_out.err;
  EXPECT_THAT(json_out.out, HasSubstr("expectedCompletion"));
  EXPECT_THAT(json_out.out, HasSubstr("expected 2"));
}

}  // namespace
}  // namespace ftune::testing
