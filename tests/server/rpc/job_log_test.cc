// StreamJobLog over the real in-process SchedulerServer (rpc_fixture.h):
// log files are written where the worker agent writes them
// (core::AttemptLogPath under the storage root) and attempts start and end
// through the store's transitions, as the worker service drives them.
#include "server/rpc/job_log.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/storage_layout.h"
#include "tests/server/rpc/rpc_fixture.h"

namespace ftune::server::testing {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// A deterministic, non-repeating text of `n` bytes (so a misplaced chunk
// cannot compare equal).
std::string LogText(size_t n, int seed = 0) {
  std::string out;
  int line = 0;
  while (out.size() < n) {
    absl::StrAppend(&out, "[seed ", seed, "] step ", line, " loss ",
                    1000 - (line % 997), " some trainer output\n");
    ++line;
  }
  out.resize(n);
  return out;
}

struct Received {
  absl::Status status;
  std::vector<v1::StreamJobLogResponse> chunks;
  std::string Data() const {
    std::string out;
    for (const auto& c : chunks) out += c.data();
    return out;
  }
};

class JobLogTest : public RpcTest {
 protected:
  JobLogTest() { dispatch_ = false; }  // Leases are granted by hand.

 protected:
  void SetUp() override {
    RpcTest::SetUp();
    alice_ = MakeTenant("alice");
    bob_ = MakeTenant("bob");
    core::Worker w;
    w.hostname = "host";
    w.capabilities.gpus = 8;
    auto worker = store().RegisterWorker(w, absl::Now() + absl::Hours(1));
    ASSERT_OK(worker);
    worker_id_ = worker->id;
  }

  std::string NewJob() {
    v1::CreateJobRequest req = JobRequest(alice_);
    req.mutable_spec()->set_max_restarts(3);
    auto job = CreateJob(alice_, req);
    EXPECT_OK(job);
    return job.ok() ? job->id() : "";
  }

  // QUEUED -> RUNNING for the job's current attempt, as the dispatcher does.
  void Start(const std::string& job_id, int64_t attempt) {
    ASSERT_OK(store().GrantLease(job_id, attempt, worker_id_,
                                 absl::Now() + absl::Hours(1)));
  }
  void End(const std::string& job_id, int64_t attempt,
           core::AttemptOutcome outcome = core::AttemptOutcome::kSucceeded) {
    core::AttemptEnd end;
    end.outcome = outcome;
    if (outcome == core::AttemptOutcome::kSucceeded) {
      end.adapter.path = "jobs/x/adapter";
    } else {
      end.error.reason = core::JobErrorReason::kTrainerError;
      end.error.message = "trainer crashed";
      end.error.retryable = true;
    }
    ASSERT_OK(store().EndAttempt(job_id, attempt, worker_id_, end));
  }

  std::string LogPath(const std::string& job_id, int64_t attempt,
                      const std::string& tenant_id = "") {
    return dir_.Sub("storage") + "/" +
           core::AttemptLogPath(
               tenant_id.empty() ? alice_.tenant_id : tenant_id, job_id,
               attempt);
  }
  void Append(const std::string& path, const std::string& bytes) {
    std::filesystem::create_directories(
        std::filesystem::path(path).parent_path());
    std::ofstream out(path, std::ios::app | std::ios::binary);
    out << bytes;
  }

  Received Read(const std::string& key, const v1::StreamJobLogRequest& req) {
    Received r;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + key);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(60));
    auto reader = jobs_->StreamJobLog(&ctx, req);
    v1::StreamJobLogResponse msg;
    while (reader->Read(&msg)) r.chunks.push_back(msg);
    r.status = rpc::FromGrpcStatus(reader->Finish(), &ctx);
    return r;
  }

  static v1::StreamJobLogRequest Req(const std::string& job_id,
                                     int32_t attempt = 0, int64_t offset = 0,
                                     bool follow = false) {
    v1::StreamJobLogRequest req;
    req.set_job_id(job_id);
    req.set_attempt(attempt);
    req.set_offset(offset);
    req.set_follow(follow);
    return req;
  }

  // Chunks are 1 byte..64 KiB, of `attempt`, contiguous from `start`.
  static void ExpectContiguous(const Received& r, int64_t start,
                               int32_t attempt) {
    int64_t next = start;
    for (const auto& c : r.chunks) {
      EXPECT_EQ(c.attempt(), attempt);
      EXPECT_EQ(c.offset(), next);
      EXPECT_GE(c.data().size(), 1u);
      EXPECT_LE(c.data().size(), 64u << 10);
      next += static_cast<int64_t>(c.data().size());
    }
  }

  TenantKey alice_;
  TenantKey bob_;
  std::string worker_id_;
};

TEST_F(JobLogTest, ReadsTheWholeLogOfAFinishedAttemptInBoundedChunks) {
  const std::string job = NewJob();
  Start(job, 1);
  const std::string text = LogText(150 * 1024 + 17);
  Append(LogPath(job, 1), text);
  End(job, 1);

  Received r = Read(alice_.key, Req(job));
  ASSERT_OK(r.status);
  EXPECT_EQ(r.Data(), text);
  // 150 KiB + 17 bytes: at least three chunks of at most 64 KiB.
  EXPECT_GE(r.chunks.size(), 3u);
  ExpectContiguous(r, 0, 1);
}

TEST_F(JobLogTest, OffsetAndTail) {
  const std::string job = NewJob();
  Start(job, 1);
  const std::string text = LogText(5000);
  Append(LogPath(job, 1), text);
  End(job, 1);
  const int64_t size = static_cast<int64_t>(text.size());

  Received from = Read(alice_.key, Req(job, 0, 1234));
  ASSERT_OK(from.status);
  EXPECT_EQ(from.Data(), text.substr(1234));
  ExpectContiguous(from, 1234, 1);

  Received tail = Read(alice_.key, Req(job, 0, -500));
  ASSERT_OK(tail.status);
  EXPECT_EQ(tail.Data(), text.substr(text.size() - 500));
  ExpectContiguous(tail, size - 500, 1);

  // A tail longer than the log is clamped to the beginning.
  Received all = Read(alice_.key, Req(job, 0, -(size + 100)));
  ASSERT_OK(all.status);
  EXPECT_EQ(all.Data(), text);

  // At the end: nothing, OK. Beyond the end of a finished log: OUT_OF_RANGE.
  Received at_end = Read(alice_.key, Req(job, 0, size));
  ASSERT_OK(at_end.status);
  EXPECT_THAT(at_end.chunks, SizeIs(0));
  Received beyond = Read(alice_.key, Req(job, 0, size + 1));
  EXPECT_THAT(beyond.status,
              StatusIs(absl::StatusCode::kOutOfRange, ::testing::_));
  EXPECT_THAT(beyond.chunks, SizeIs(0));
}

TEST_F(JobLogTest, PicksTheRequestedOrTheLatestAttempt) {
  const std::string job = NewJob();
  Start(job, 1);
  const std::string first = LogText(3000, 1);
  Append(LogPath(job, 1), first);
  // A retryable failure re-queues the job as attempt 2, which then runs.
  End(job, 1, core::AttemptOutcome::kRetryableFailure);
  {
    // Between attempts the latest one that ran is attempt 1.
    Received r = Read(alice_.key, Req(job));
    ASSERT_OK(r.status);
    EXPECT_EQ(r.Data(), first);
    ASSERT_FALSE(r.chunks.empty());
    EXPECT_EQ(r.chunks[0].attempt(), 1);
  }
  // Attempt 2 exists (Job.attempt) but has not run: no log for it.
  EXPECT_THAT(Read(alice_.key, Req(job, 2)).status,
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  Start(job, 2);
  const std::string second = LogText(2000, 2);
  Append(LogPath(job, 2), second);

  Received latest = Read(alice_.key, Req(job));
  ASSERT_OK(latest.status);
  EXPECT_EQ(latest.Data(), second);
  ExpectContiguous(latest, 0, 2);

  Received one = Read(alice_.key, Req(job, 1));
  ASSERT_OK(one.status);
  EXPECT_EQ(one.Data(), first);
  ExpectContiguous(one, 0, 1);

  absl::Status too_big = Read(alice_.key, Req(job, 3)).status;
  EXPECT_THAT(too_big,
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_EQ(InfoOf(too_big).field(), "attempt");
}

TEST_F(JobLogTest, FollowStreamsAppendedBytesUntilTheAttemptEnds) {
  const std::string job = NewJob();
  Start(job, 1);
  const std::string path = LogPath(job, 1);
  const std::vector<std::string> parts = {
      LogText(100, 1), LogText(70 * 1024, 2), LogText(10, 3), LogText(999, 4)};
  Append(path, parts[0]);

  absl::Mutex mu;
  std::string got;
  Received r;
  std::thread reader([&] {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + alice_.key);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(60));
    auto stream = jobs_->StreamJobLog(&ctx, Req(job, 0, 0, /*follow=*/true));
    v1::StreamJobLogResponse msg;
    while (stream->Read(&msg)) {
      absl::MutexLock lock(&mu);
      got += msg.data();
      r.chunks.push_back(msg);
    }
    r.status = rpc::FromGrpcStatus(stream->Finish(), &ctx);
  });
  std::string expected = parts[0];
  auto wait_for = [&](size_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      {
        absl::MutexLock lock(&mu);
        if (got.size() >= n) return true;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  };
  // Each part is sent only after the reader has everything before it, so
  // the stream must really pick up growth of a file it already read.
  ASSERT_TRUE(wait_for(expected.size()));
  for (size_t i = 1; i < parts.size(); ++i) {
    Append(path, parts[i]);
    expected += parts[i];
    if (i + 1 < parts.size()) {
      ASSERT_TRUE(wait_for(expected.size()));
    }
  }
  // The last part is written just before the attempt ends: the stream must
  // still deliver it, then end with OK.
  End(job, 1);
  reader.join();
  ASSERT_OK(r.status);
  EXPECT_EQ(got, expected);
  ExpectContiguous(r, 0, 1);
}

TEST_F(JobLogTest, FollowWaitsForTheFirstAttempt) {
  const std::string job = NewJob();
  Received r;
  std::thread reader([&] { r = Read(alice_.key, Req(job, 0, 0, true)); });
  // The job is still QUEUED; it starts a moment later, writes and ends.
  absl::SleepFor(absl::Milliseconds(100));
  Start(job, 1);
  const std::string text = LogText(4000);
  Append(LogPath(job, 1), text);
  End(job, 1);
  reader.join();
  ASSERT_OK(r.status);
  EXPECT_EQ(r.Data(), text);
  ExpectContiguous(r, 0, 1);
}

TEST_F(JobLogTest, FollowOfAJobCancelledBeforeItRanFails) {
  const std::string job = NewJob();
  Received r;
  std::thread reader([&] { r = Read(alice_.key, Req(job, 0, 0, true)); });
  absl::SleepFor(absl::Milliseconds(100));
  ASSERT_OK(store().CancelJob(alice_.tenant_id, job, "test"));
  reader.join();
  EXPECT_THAT(r.status,
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  EXPECT_EQ(InfoOf(r.status).current_state(), "JOB_STATE_CANCELLED");
}

TEST_F(JobLogTest, JobThatNeverRanAnswersFailedPrecondition) {
  const std::string job = NewJob();
  Received r = Read(alice_.key, Req(job));
  EXPECT_THAT(r.status,
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  EXPECT_EQ(InfoOf(r.status).current_state(), "JOB_STATE_QUEUED");
  EXPECT_THAT(r.chunks, SizeIs(0));
}

TEST_F(JobLogTest, RunningAttemptWithoutALogYetIsEmpty) {
  const std::string job = NewJob();
  Start(job, 1);
  Received r = Read(alice_.key, Req(job));
  ASSERT_OK(r.status);
  EXPECT_THAT(r.chunks, SizeIs(0));
}

TEST_F(JobLogTest, RemovedLogOfAFinishedAttemptIsNotFound) {
  const std::string job = NewJob();
  Start(job, 1);
  Append(LogPath(job, 1), "gone soon\n");
  End(job, 1);
  std::filesystem::remove(LogPath(job, 1));
  Received r = Read(alice_.key, Req(job));
  EXPECT_THAT(r.status, StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(r.status.message(), HasSubstr("not on storage"));
}

TEST_F(JobLogTest, AnotherTenantsJobIsAnsweredLikeAnUnknownOne) {
  const std::string job = NewJob();
  Start(job, 1);
  Append(LogPath(job, 1), "alice's secrets\n");
  End(job, 1);
  Received foreign = Read(bob_.key, Req(job));
  EXPECT_THAT(foreign.status,
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(foreign.chunks, SizeIs(0));
  const std::string unknown_id =
      "job-" + std::string(job.substr(4, 3)) + std::string(job.size() - 7, 'a');
  Received unknown = Read(bob_.key, Req(unknown_id));
  EXPECT_THAT(unknown.status,
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  // Same words, only the id differs.
  std::string normalized(foreign.status.message());
  normalized.replace(normalized.find(job), job.size(), unknown_id);
  EXPECT_EQ(normalized, unknown.status.message());
  // Following does not help either.
  EXPECT_THAT(Read(bob_.key, Req(job, 0, 0, true)).status,
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

// A log that is not a regular file of the job's logs/ directory is bad
// storage state, not a bug: DATA_LOSS, never INTERNAL, nothing sent.
TEST_F(JobLogTest, RefusesSymlinksOutOfTheLogDirectory) {
  const std::string job = NewJob();
  Start(job, 1);
  WriteFile(dir_.Sub("outside/secret.txt"), "do not read me\n");
  const std::string path = LogPath(job, 1);
  std::filesystem::create_directories(
      std::filesystem::path(path).parent_path());
  std::filesystem::create_symlink(dir_.Sub("outside/secret.txt"), path);
  End(job, 1);
  Received r = Read(alice_.key, Req(job));
  EXPECT_THAT(r.status, StatusIs(absl::StatusCode::kDataLoss,
                                 HasSubstr("symbolic link")));
  EXPECT_EQ(r.Data(), "");
  // Following it is refused the same way.
  EXPECT_EQ(Read(alice_.key, Req(job, 0, 0, true)).status.code(),
            absl::StatusCode::kDataLoss);

  // A symlinked directory on the way is refused too.
  const std::string job2 = NewJob();
  Start(job2, 1);
  const std::filesystem::path logs =
      std::filesystem::path(LogPath(job2, 1)).parent_path();
  std::filesystem::create_directories(logs.parent_path());
  WriteFile(dir_.Sub("outside/attempt-1.log"), "do not read me either\n");
  std::filesystem::create_directory_symlink(dir_.Sub("outside"), logs);
  End(job2, 1);
  Received r2 = Read(alice_.key, Req(job2));
  EXPECT_EQ(r2.status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(r2.Data(), "");

  // A FIFO or a directory where the log should be: refused at once (the
  // FIFO must not block the stream's thread).
  const std::string job3 = NewJob();
  Start(job3, 1);
  std::filesystem::create_directories(
      std::filesystem::path(LogPath(job3, 1)).parent_path());
  ASSERT_EQ(::mkfifo(LogPath(job3, 1).c_str(), 0644), 0);
  End(job3, 1);
  EXPECT_EQ(Read(alice_.key, Req(job3)).status.code(),
            absl::StatusCode::kDataLoss);
  const std::string job4 = NewJob();
  Start(job4, 1);
  std::filesystem::create_directories(LogPath(job4, 1));
  End(job4, 1);
  EXPECT_EQ(Read(alice_.key, Req(job4)).status.code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(JobLogTest, ClientCancellationEndsAFollow) {
  const std::string job = NewJob();
  Start(job, 1);
  Append(LogPath(job, 1), "first line\n");
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + alice_.key);
  auto stream = jobs_->StreamJobLog(&ctx, Req(job, 0, 0, true));
  v1::StreamJobLogResponse msg;
  ASSERT_TRUE(stream->Read(&msg));
  EXPECT_EQ(msg.data(), "first line\n");
  ctx.TryCancel();
  while (stream->Read(&msg)) {
  }
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(JobLogTest, RejectsBadRequestsAndNonTenants) {
  const std::string job = NewJob();
  absl::Status bad_id = Read(alice_.key, Req("nope")).status;
  EXPECT_THAT(bad_id,
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_EQ(InfoOf(bad_id).field(), "job_id");
  absl::Status negative = Read(alice_.key, Req(job, -1)).status;
  EXPECT_THAT(negative,
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_EQ(InfoOf(negative).field(), "attempt");
  EXPECT_THAT(Read(kAdminKey, Req(job)).status,
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  EXPECT_THAT(Read("", Req(job)).status,
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
}

}  // namespace
}  // namespace ftune::server::testing
