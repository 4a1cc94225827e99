// Runs real child processes (/bin/sh scripts standing in for ftune-train).
#include "worker/agent/trainer_process.h"

#include <signal.h>

#include <fstream>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace ftune::agent {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class Lines {
 public:
  void Add(const std::string& l) {
    absl::MutexLock lock(&mu_);
    lines_.push_back(l);
  }
  std::vector<std::string> Get() {
    absl::MutexLock lock(&mu_);
    return lines_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> lines_;
};

TrainerProcessOptions Script(const std::string& script, Lines* lines,
                             const std::string& log = "") {
  TrainerProcessOptions o;
  o.argv = {"/bin/sh", "-c", script};
  o.log_path = log;
  o.on_stdout_line = [lines](const std::string& l) { lines->Add(l); };
  return o;
}

TEST(TrainerProcessTest, DeliversStdoutLinesInOrderAndLogsStderr) {
  testing::TempDir dir;
  Lines lines;
  TrainerProcess p;
  ASSERT_OK(p.Start(
      Script("echo '{\"type\":\"metrics\",\"step\":1}'; echo 'to log' >&2; "
             "printf 'second\\nno-newline-at-end'",
             &lines, dir.Sub("train.log"))));
  TrainerExit e = p.Wait();
  EXPECT_EQ(e.exit_class, ExitClass::kSuccess);
  EXPECT_THAT(lines.Get(), ElementsAre("{\"type\":\"metrics\",\"step\":1}",
                                       "second", "no-newline-at-end"));
  ASSERT_OK_AND_ASSIGN(std::string log, ReadFile(dir.Sub("train.log")));
  EXPECT_EQ(log, "to log\n");
}

TEST(TrainerProcessTest, ExitCodesAreClassified) {
  struct Case {
    int code;
    ExitClass want;
  } cases[] = {{0, ExitClass::kSuccess},
               {kTrainerExitBadInput, ExitClass::kBadInput},
               {kTrainerExitOutOfMemory, ExitClass::kOutOfMemory},
               {kTrainerExitRetryable, ExitClass::kRetryable},
               {kTrainerExitStopped, ExitClass::kStopped},
               {kTrainerExitDiverged, ExitClass::kDiverged},
               {42, ExitClass::kRetryable}};
  for (const Case& c : cases) {
    Lines lines;
    TrainerProcess p;
    ASSERT_OK(p.Start(Script("exit " + std::to_string(c.code), &lines)));
    TrainerExit e = p.Wait();
    EXPECT_EQ(e.exit_code, c.code);
    EXPECT_EQ(e.exit_class, c.want) << "exit code " << c.code;
  }
}

TEST(TrainerProcessTest, CrashBySignalIsRetryable) {
  Lines lines;
  TrainerProcess p;
  ASSERT_OK(p.Start(Script("kill -SEGV $$", &lines)));
  TrainerExit e = p.Wait();
  EXPECT_EQ(e.signal, SIGSEGV);
  EXPECT_EQ(e.exit_class, ExitClass::kRetryable);
  EXPECT_THAT(e.Describe(), HasSubstr("signal"));
}

TEST(TrainerProcessTest, StopSendsSigtermWhichTheTrainerHandles) {
  Lines lines;
  TrainerProcess p;
  // Stand-in trainer: on SIGTERM, "checkpoint" and exit with the stop code.
  ASSERT_OK(
      p.Start(Script("trap 'echo checkpointed; exit 4' TERM; echo ready; "
                     "while true; do sleep 0.05; done",
                     &lines)));
  while (lines.Get().empty()) absl::SleepFor(absl::Milliseconds(10));
  p.Stop(absl::Seconds(30));
  TrainerExit e = p.Wait();
  EXPECT_TRUE(e.stop_requested);
  EXPECT_EQ(e.exit_code, kTrainerExitStopped);
  EXPECT_EQ(e.exit_class, ExitClass::kStopped);
  EXPECT_THAT(lines.Get(), ElementsAre("ready", "checkpointed"));
}

TEST(TrainerProcessTest, StopEscalatesToSigkillAfterGrace) {
  Lines lines;
  TrainerProcess p;
  ASSERT_OK(p.Start(Script(
      "trap '' TERM; echo ready; while true; do sleep 0.05; done", &lines)));
  while (lines.Get().empty()) absl::SleepFor(absl::Milliseconds(10));
  p.Stop(absl::Milliseconds(200));
  TrainerExit e = p.Wait();
  EXPECT_EQ(e.signal, SIGKILL);
  EXPECT_EQ(e.exit_class, ExitClass::kStopped);
}

TEST(TrainerProcessTest, StopReachesGrandchildren) {
  testing::TempDir dir;
  Lines lines;
  TrainerProcess p;
  // The grandchild writes its pid, then sleeps; after Stop it must be gone.
  ASSERT_OK(p.Start(Script(
      "sleep 1000 & echo $! > " + dir.Sub("gc.pid") + "; echo ready; wait",
      &lines)));
  while (lines.Get().empty()) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_OK_AND_ASSIGN(std::string pid_text, ReadFile(dir.Sub("gc.pid")));
  const pid_t grandchild = std::stoi(pid_text);
  p.Stop(absl::Seconds(5));
  p.Wait();
  // Reaped by init eventually; poll until kill(0) says it is gone.
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = ::kill(grandchild, 0) != 0;
    if (!gone) absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(gone) << "grandchild " << grandchild << " survived Stop()";
}

TEST(TrainerProcessTest, EnvironmentIsPassed) {
  Lines lines;
  TrainerProcess p;
  TrainerProcessOptions o = Script("echo gpus=$CUDA_VISIBLE_DEVICES", &lines);
  o.env["CUDA_VISIBLE_DEVICES"] = "2,3";
  ASSERT_OK(p.Start(std::move(o)));
  p.Wait();
  EXPECT_THAT(lines.Get(), ElementsAre("gpus=2,3"));
}

TEST(TrainerProcessTest, MissingBinaryIsNotFound) {
  TrainerProcess p;
  TrainerProcessOptions o;
  o.argv = {"/nonexistent/ftune-train", "--spec", "x"};
  EXPECT_THAT(p.Start(std::move(o)),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("/nonexistent/ftune-train")));
}

TEST(TrainerProcessTest, DestructorKillsARunningChild) {
  Lines lines;
  pid_t pid;
  {
    TrainerProcess p;
    ASSERT_OK(p.Start(Script("echo ready; sleep 1000", &lines)));
    pid = p.pid();
    while (lines.Get().empty()) absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_NE(::kill(pid, 0), 0);
}

}  // namespace
}  // namespace ftune::agent
