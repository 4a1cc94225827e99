// WatchJob over a real gRPC server and SQLite store: records are written by
// other threads through the Store, as the worker service would.
#include "server/rpc/job_watch.h"

#include <atomic>
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/ids.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/rpc/stream_fixture.h"

namespace ftune::server::rpc::testing {
namespace {

class JobWatchTest : public RpcTest {
 protected:
  void SetUp() override {
    RpcTest::SetUp();
    alice_ = MakeTenant("alice");
    bob_ = MakeTenant("bob");
    core::FileRecord f;
    f.tenant_id = alice_.id;
    f.filename = "train.jsonl";
    f.purpose = "fine-tune-train";
    f.status = core::FileStatus::kReady;
    f.storage_path = "files/" + alice_.id + "/x";
    auto file = store_->CreateFile(f);
    ASSERT_OK(file);
    file_id_ = file->id;
    core::Worker w;
    w.hostname = "host";
    w.capabilities.gpus = 8;
    auto worker = store_->RegisterWorker(w, absl::Now() + absl::Hours(1));
    ASSERT_OK(worker);
    worker_id_ = worker->id;
  }

  core::Job NewJob() {
    core::Job j;
    j.tenant_id = alice_.id;
    j.model = "tiny";
    j.training_file_id = file_id_;
    auto r = store_->CreateJob(j);
    EXPECT_TRUE(r.ok()) << r.status();
    return r->job;
  }

  core::Job RunningJob() {
    core::Job j = NewJob();
    auto r =
        store_->GrantLease(j.id, 1, worker_id_, absl::Now() + absl::Hours(1));
    EXPECT_TRUE(r.ok()) << r.status();
    return *r;
  }

  void AppendMetric(const std::string& job_id, int64_t step) {
    core::MetricPoint p;
    p.step = step;
    p.train_loss = 1.0 / static_cast<double>(step + 1);
    ASSERT_OK(store_->AppendMetrics(job_id, 1, {p}));
  }

  void Succeed(const std::string& job_id) {
    core::AttemptEnd end;
    end.outcome = core::AttemptOutcome::kSucceeded;
    end.adapter.path = "jobs/x/adapter";
    ASSERT_OK(store_->EndAttempt(job_id, 1, worker_id_, end));
  }

  struct Watch {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::WatchJobResponse>> reader;
  };
  std::unique_ptr<Watch> StartWatch(const std::string& job_id,
                                    std::optional<int64_t> after,
                                    bool exclude_metrics = false,
                                    const TestTenant* who = nullptr) {
    auto w = std::make_unique<Watch>();
    Authorize(&w->ctx, who ? *who : alice_);
    v1::WatchJobRequest req;
    req.set_job_id(job_id);
    if (after) req.set_after_sequence(*after);
    req.set_exclude_metrics(exclude_metrics);
    w->reader = jobs_->WatchJob(&w->ctx, req);
    return w;
  }

  TestTenant alice_, bob_;
  std::string file_id_;
  std::string worker_id_;
};

TEST_F(JobWatchTest, SnapshotFirstThenLiveRecordsInOrderThenEndsOnTerminal) {
  core::Job job = RunningJob();
  auto w = StartWatch(job.id, job.last_sequence);
  v1::WatchJobResponse msg;
  ASSERT_TRUE(w->reader->Read(&msg));
  ASSERT_TRUE(msg.has_job());
  EXPECT_EQ(msg.job().id(), job.id);
  EXPECT_EQ(msg.job().state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(msg.sequence(), job.last_sequence);

  constexpr int kSteps = 100;
  std::thread writer([&] {
    for (int i = 1; i <= kSteps; ++i) {
      AppendMetric(job.id, i);
      if (i % 10 == 0) {
        ASSERT_OK(store_->AppendJobMessage(job.id, 1, absl::StrCat("at ", i)));
      }
    }
    Succeed(job.id);
  });
  int64_t last = job.last_sequence;
  int metrics = 0, messages = 0, snapshots = 0;
  bool saw_state_change = false;
  v1::WatchJobResponse final_msg;
  while (w->reader->Read(&msg)) {
    if (msg.has_job()) {
      ++snapshots;
      EXPECT_EQ(msg.sequence(), last);
      final_msg = msg;
      continue;
    }
    EXPECT_EQ(msg.sequence(), last + 1) << msg.DebugString();
    last = msg.sequence();
    if (msg.has_metric()) {
      ++metrics;
      EXPECT_EQ(msg.metric().step(), metrics);
    } else if (msg.event().type() == v1::JOB_EVENT_TYPE_LOG) {
      ++messages;
    } else if (msg.event().type() == v1::JOB_EVENT_TYPE_STATE_CHANGED) {
      saw_state_change = true;
      EXPECT_EQ(msg.event().to_state(), v1::JOB_STATE_SUCCEEDED);
    }
  }
  writer.join();
  grpc::Status s = w->reader->Finish();
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(metrics, kSteps);
  EXPECT_EQ(messages, kSteps / 10);
  EXPECT_TRUE(saw_state_change);
  EXPECT_EQ(snapshots, 1);  // The one after the STATE_CHANGED.
  EXPECT_EQ(final_msg.job().state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_OK_AND_ASSIGN(core::Job done, store_->GetJob(alice_.id, job.id));
  EXPECT_EQ(last, done.last_sequence);
}

TEST_F(JobWatchTest, ReplaysHistoryOfFinishedJob) {
  core::Job job = RunningJob();
  for (int i = 1; i <= 700; ++i) AppendMetric(job.id, i);  // Several pages.
  Succeed(job.id);
  ASSERT_OK_AND_ASSIGN(core::Job done, store_->GetJob(alice_.id, job.id));

  // From the start: snapshot, every record 1..last, final snapshot, OK.
  auto w = StartWatch(job.id, 0);
  std::vector<v1::WatchJobResponse> got;
  v1::WatchJobResponse msg;
  while (w->reader->Read(&msg)) got.push_back(msg);
  ASSERT_TRUE(w->reader->Finish().ok());
  ASSERT_EQ(got.size(), static_cast<size_t>(done.last_sequence) + 2);
  EXPECT_TRUE(got.front().has_job());
  EXPECT_TRUE(got.back().has_job());
  EXPECT_EQ(got.back().job().state(), v1::JOB_STATE_SUCCEEDED);
  for (int64_t i = 1; i <= done.last_sequence; ++i) {
    EXPECT_EQ(got[i].sequence(), i);
  }

  // Without a cursor: only the (terminal) snapshot.
  auto w2 = StartWatch(job.id, std::nullopt);
  got.clear();
  while (w2->reader->Read(&msg)) got.push_back(msg);
  ASSERT_TRUE(w2->reader->Finish().ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].job().state(), v1::JOB_STATE_SUCCEEDED);

  // exclude_metrics: only events (CREATED, RUNNING, SUCCEEDED) + snapshots.
  auto w3 = StartWatch(job.id, 0, /*exclude_metrics=*/true);
  got.clear();
  while (w3->reader->Read(&msg)) got.push_back(msg);
  ASSERT_TRUE(w3->reader->Finish().ok());
  int events = 0;
  for (const auto& m : got) {
    EXPECT_FALSE(m.has_metric());
    events += m.has_event();
  }
  EXPECT_EQ(events, 3);
}

TEST_F(JobWatchTest, BatchedMetricsCarryEveryRecordOnceInFewerMessages) {
  core::Job job = RunningJob();
  for (int i = 1; i <= 700; ++i) AppendMetric(job.id, i);
  Succeed(job.id);
  ASSERT_OK_AND_ASSIGN(core::Job done, store_->GetJob(alice_.id, job.id));

  grpc::ClientContext ctx;
  Authorize(&ctx, alice_);
  v1::WatchJobRequest req;
  req.set_job_id(job.id);
  req.set_after_sequence(0);
  req.set_batch_metrics(true);
  auto reader = jobs_->WatchJob(&ctx, req);
  std::vector<int64_t> sequences;
  std::vector<int64_t> steps;
  int messages = 0;
  v1::WatchJobResponse msg;
  while (reader->Read(&msg)) {
    ++messages;
    EXPECT_FALSE(msg.has_metric());  // Batched mode never sends singles.
    if (msg.has_event()) sequences.push_back(msg.sequence());
    if (msg.has_metrics()) {
      ASSERT_GT(msg.metrics().points_size(), 0);
      EXPECT_LE(msg.metrics().points_size(), 512);
      EXPECT_EQ(msg.sequence(), msg.metrics().points().rbegin()->sequence());
      for (const v1::MetricPoint& p : msg.metrics().points()) {
        sequences.push_back(p.sequence());
        steps.push_back(p.step());
      }
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_EQ(static_cast<int64_t>(sequences.size()), done.last_sequence);
  for (size_t i = 0; i < sequences.size(); ++i) {
    EXPECT_EQ(sequences[i], static_cast<int64_t>(i) + 1);
  }
  ASSERT_EQ(steps.size(), 700u);
  for (int i = 0; i < 700; ++i) EXPECT_EQ(steps[i], i + 1);
  EXPECT_LT(messages, 100);  // 700 points + a few events and snapshots.
}

TEST_F(JobWatchTest, RejectsBadRequests) {
  core::Job job = RunningJob();
  auto expect_code = [&](std::unique_ptr<Watch> w, grpc::StatusCode code) {
    v1::WatchJobResponse msg;
    EXPECT_FALSE(w->reader->Read(&msg));
    EXPECT_EQ(w->reader->Finish().error_code(), code);
  };
  expect_code(StartWatch(job.id, job.last_sequence + 1),
              grpc::StatusCode::OUT_OF_RANGE);
  expect_code(StartWatch(job.id, -1), grpc::StatusCode::INVALID_ARGUMENT);
  expect_code(StartWatch("job-x", 0), grpc::StatusCode::INVALID_ARGUMENT);
  expect_code(StartWatch(NewId("job"), 0), grpc::StatusCode::NOT_FOUND);
  expect_code(StartWatch(job.id, 0, false, &bob_), grpc::StatusCode::NOT_FOUND);
  TestTenant nobody{"", "ftk_nope"};
  expect_code(StartWatch(job.id, 0, false, &nobody),
              grpc::StatusCode::UNAUTHENTICATED);
}

// Many writers; the client drops its stream every few records and
// reconnects with the last sequence it saw. Across all streams every
// record arrives exactly once, in order.
TEST_F(JobWatchTest, ReconnectFromCursorHasNoGapsOrDuplicates) {
  core::Job job = RunningJob();
  constexpr int kWriters = 4;
  constexpr int kPerWriter = 300;
  std::atomic<bool> go{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < kWriters; ++t) {
    writers.emplace_back([&, t] {
      while (!go) std::this_thread::yield();
      for (int i = 0; i < kPerWriter; ++i) {
        if (i % 7 == 0) {
          ASSERT_OK(
              store_->AppendJobMessage(job.id, 1, absl::StrCat(t, ":", i)));
        } else {
          AppendMetric(job.id, t * kPerWriter + i);
        }
      }
    });
  }
  std::vector<int64_t> seen;
  int64_t cursor = job.last_sequence;
  const int64_t expected_last = job.last_sequence + kWriters * kPerWriter;
  int streams = 0;
  while (cursor < expected_last && streams < 2000) {
    ++streams;
    auto w = StartWatch(job.id, cursor);
    v1::WatchJobResponse msg;
    ASSERT_TRUE(w->reader->Read(&msg));
    ASSERT_TRUE(msg.has_job());
    if (streams == 1) go = true;
    int taken = 0;
    const int drop_after = 1 + (streams * 37) % 50;
    while (taken < drop_after && cursor < expected_last &&
           w->reader->Read(&msg)) {
      if (msg.has_job()) continue;
      if (msg.has_truncated()) {  // Fell behind: resume the same way.
        EXPECT_EQ(msg.truncated().resume_after_sequence(), cursor);
        break;
      }
      seen.push_back(msg.sequence());
      cursor = msg.sequence();
      ++taken;
    }
    w->ctx.TryCancel();
    while (w->reader->Read(&msg)) {
    }
    w->reader->Finish();
  }
  for (auto& t : writers) t.join();
  ASSERT_EQ(static_cast<int64_t>(seen.size()), kWriters * kPerWriter);
  for (size_t i = 0; i < seen.size(); ++i) {
    ASSERT_EQ(seen[i], job.last_sequence + 1 + static_cast<int64_t>(i));
  }
  EXPECT_GT(streams, 10);
}

class SlowReaderTest : public JobWatchTest {
 protected:
  void SetUp() override {
    watch_options_.max_buffered_messages = 64;
    JobWatchTest::SetUp();
  }
};

TEST_F(SlowReaderTest, SlowReaderIsBoundedAndToldItFellBehind) {
  core::Job job = RunningJob();
  auto w = StartWatch(job.id, job.last_sequence);
  v1::WatchJobResponse msg;
  ASSERT_TRUE(w->reader->Read(&msg));  // Snapshot; then stop reading.
  // Write big events until the server's queue for this stream is full and
  // the stream is cut: 64 queued + the truncation notice = 65 (gRPC's
  // flow-control windows absorb the first few MB; a burst of one delivery
  // round can fill the queue for a moment without cutting it).
  const std::string blob(8 << 10, 'x');
  int written = 0;
  while (hub_.peak_buffered() < 65 && written < 20000) {
    ASSERT_OK(store_->AppendJobMessage(job.id, 1, blob));
    ++written;
  }
  for (int i = 0; i < 10; ++i) {
    ASSERT_OK(store_->AppendJobMessage(job.id, 1, blob));
    ++written;
  }
  EXPECT_LE(hub_.peak_buffered(), 65);  // 64 + the truncation notice.

  int64_t last = job.last_sequence;
  std::optional<v1::WatchTruncated> truncated;
  while (w->reader->Read(&msg)) {
    ASSERT_FALSE(truncated.has_value()) << "truncated must be last";
    if (msg.has_truncated()) {
      truncated = msg.truncated();
      continue;
    }
    if (msg.has_job()) continue;
    ASSERT_EQ(msg.sequence(), last + 1);
    last = msg.sequence();
  }
  EXPECT_TRUE(w->reader->Finish().ok());
  ASSERT_TRUE(truncated.has_value());
  EXPECT_EQ(truncated->resume_after_sequence(), last);
  EXPECT_GT(truncated->skipped_records(), 0);

  // Resume from there: the rest, without gap.
  ASSERT_OK_AND_ASSIGN(core::Job now, store_->GetJob(alice_.id, job.id));
  auto w2 = StartWatch(job.id, truncated->resume_after_sequence());
  ASSERT_TRUE(w2->reader->Read(&msg));
  ASSERT_TRUE(msg.has_job());
  while (last < now.last_sequence && w2->reader->Read(&msg)) {
    if (msg.has_job()) continue;
    ASSERT_FALSE(msg.has_truncated());
    ASSERT_EQ(msg.sequence(), last + 1);
    last = msg.sequence();
  }
  EXPECT_EQ(last, now.last_sequence);
  EXPECT_EQ(last, job.last_sequence + written);
  w2->ctx.TryCancel();
  while (w2->reader->Read(&msg)) {
  }
  w2->reader->Finish();
}

// A stream whose client stops reading holds up neither the store's
// commits nor the other streams (of the same job and of another): they get
// every record in order while it is cut with `truncated`, and its resume
// from there has no gap and no repeat.
TEST_F(SlowReaderTest, SlowConsumerDoesNotHoldUpOthersAndResumesWithoutGaps) {
  core::Job job = RunningJob();
  core::Job other = RunningJob();
  auto slow = StartWatch(job.id, job.last_sequence);
  v1::WatchJobResponse msg;
  ASSERT_TRUE(slow->reader->Read(&msg));  // Snapshot; then stop reading.

  // Fast readers on their own connection (the slow one's is stalled by
  // flow control), each checking that records come densely, once.
  auto channel =
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port_),
                                grpc::InsecureChannelCredentials(), [] {
                                  grpc::ChannelArguments args;
                                  args.SetInt("ftune.test_fast_readers", 1);
                                  return args;
                                }());
  auto stub = v1::JobService::NewStub(channel);
  std::atomic<int64_t> target{-1};
  // Reads `j` from its creation until `target`; a `truncated` (its own
  // queue was full) is resumed from resume_after_sequence, as clients do.
  auto read_all = [&](const core::Job& j, int64_t* last, bool* clean) {
    *last = j.last_sequence;
    *clean = true;
    bool done = false;
    while (!done) {
      grpc::ClientContext ctx;
      Authorize(&ctx, alice_);
      v1::WatchJobRequest req;
      req.set_job_id(j.id);
      req.set_after_sequence(*last);
      auto reader = stub->WatchJob(&ctx, req);
      v1::WatchJobResponse m;
      bool truncated = false;
      while (!done && reader->Read(&m)) {
        if (m.has_job()) continue;
        if (m.has_truncated()) {
          truncated = true;
          if (m.truncated().resume_after_sequence() != *last) *clean = false;
          continue;
        }
        if (m.sequence() != *last + 1) *clean = false;
        *last = m.sequence();
        const int64_t t = target.load();
        done = t >= 0 && *last >= t;
      }
      ctx.TryCancel();
      while (reader->Read(&m)) {
      }
      grpc::Status end = reader->Finish();
      if (!done && !truncated) {
        ADD_FAILURE() << "stream ended: " << end.error_message();
        return;
      }
    }
  };
  int64_t fast_last = 0, other_last = 0;
  bool fast_clean = false, other_clean = false;
  // First the slow stream alone, until its queue is full and it is cut:
  // 64 queued + the truncation notice = 65 (peak_buffered is the hub's;
  // only this stream is open yet).
  const std::string blob(8 << 10, 'x');
  int written = 0;
  while (hub_.peak_buffered() < 65 && written < 20000) {
    ASSERT_OK(store_->AppendJobMessage(job.id, 1, blob));  // Never waits.
    ASSERT_OK(store_->AppendJobMessage(other.id, 1, "other"));
    ++written;
  }
  for (int i = 0; i < 10; ++i) {
    ASSERT_OK(store_->AppendJobMessage(job.id, 1, blob));
    ++written;
  }
  // Then, while its client still reads nothing, a fast reader of the same
  // job replays everything and follows live records.
  std::thread fast([&] { read_all(job, &fast_last, &fast_clean); });
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK(store_->AppendJobMessage(job.id, 1, "live"));
    ASSERT_OK(store_->AppendJobMessage(other.id, 1, "other"));
  }
  // The fast reader stops at the record after the last one written: it
  // cannot have read it before the target was set.
  ASSERT_OK_AND_ASSIGN(core::Job before_last,
                       store_->GetJob(alice_.id, job.id));
  target = before_last.last_sequence + 1;
  ASSERT_OK(store_->AppendJobMessage(job.id, 1, "last"));
  ASSERT_OK_AND_ASSIGN(core::Job now, store_->GetJob(alice_.id, job.id));
  ASSERT_EQ(now.last_sequence, target.load());
  ASSERT_OK_AND_ASSIGN(core::Job other_now,
                       store_->GetJob(alice_.id, other.id));
  fast.join();
  EXPECT_TRUE(fast_clean);
  EXPECT_EQ(fast_last, now.last_sequence);
  // A stream opened now on the other job replays and follows as usual.
  target = other_now.last_sequence;
  read_all(other, &other_last, &other_clean);
  EXPECT_TRUE(other_clean);
  EXPECT_EQ(other_last, other_now.last_sequence);

  // The slow stream: in order up to the cut, `truncated` last, then OK.
  int64_t last = job.last_sequence;
  std::optional<v1::WatchTruncated> truncated;
  while (slow->reader->Read(&msg)) {
    ASSERT_FALSE(truncated.has_value()) << "truncated must be last";
    if (msg.has_truncated()) {
      truncated = msg.truncated();
      continue;
    }
    if (msg.has_job()) continue;
    ASSERT_EQ(msg.sequence(), last + 1);
    last = msg.sequence();
  }
  EXPECT_TRUE(slow->reader->Finish().ok());
  ASSERT_TRUE(truncated.has_value());
  EXPECT_EQ(truncated->resume_after_sequence(), last);
  EXPECT_LT(last, now.last_sequence);

  // Resumed from the cut: exactly the rest.
  auto resumed = StartWatch(job.id, truncated->resume_after_sequence());
  while (last < now.last_sequence && resumed->reader->Read(&msg)) {
    if (msg.has_job()) continue;
    ASSERT_FALSE(msg.has_truncated());
    ASSERT_EQ(msg.sequence(), last + 1);
    last = msg.sequence();
  }
  EXPECT_EQ(last, now.last_sequence);
  resumed->ctx.TryCancel();
  while (resumed->reader->Read(&msg)) {
  }
  resumed->reader->Finish();
}

// When the hub falls behind a job, it keeps only the job's newest state
// (WatchHub::kMaxPendingRecordsPerJob); watchers read what was dropped from
// the store: every record still arrives once, in order.
TEST_F(JobWatchTest, CoalescedFanOutStillDeliversEveryRecordOnce) {
  core::Job job = RunningJob();
  auto w = StartWatch(job.id, job.last_sequence, /*exclude_metrics=*/false);
  v1::WatchJobResponse msg;
  ASSERT_TRUE(w->reader->Read(&msg));
  // Hold the hub's thread so that changes pile up beyond the bound.
  absl::Notification release;
  absl::Notification held;
  ASSERT_TRUE(hub_.Post([&] {
    held.Notify();
    release.WaitForNotification();
  }));
  held.WaitForNotification();
  const int kPoints =
      static_cast<int>(engine::WatchHub::kMaxPendingRecordsPerJob) + 100;
  std::vector<core::MetricPoint> points(kPoints);
  for (int i = 0; i < kPoints; ++i) points[i].step = i + 1;
  ASSERT_OK(store_->AppendMetrics(job.id, 1, points));
  ASSERT_OK(store_->AppendJobMessage(job.id, 1, "after"));
  release.Notify();
  EXPECT_GE(hub_.coalesced_records(), kPoints);
  ASSERT_OK_AND_ASSIGN(core::Job now, store_->GetJob(alice_.id, job.id));
  int64_t last = job.last_sequence;
  while (last < now.last_sequence && w->reader->Read(&msg)) {
    if (msg.has_job()) continue;
    ASSERT_FALSE(msg.has_truncated());
    ASSERT_EQ(msg.sequence(), last + 1);
    last = msg.sequence();
  }
  EXPECT_EQ(last, now.last_sequence);
  w->ctx.TryCancel();
  while (w->reader->Read(&msg)) {
  }
  w->reader->Finish();
}

TEST_F(JobWatchTest, ClientCancelEndsStream) {
  core::Job job = RunningJob();
  auto w = StartWatch(job.id, std::nullopt);
  v1::WatchJobResponse msg;
  ASSERT_TRUE(w->reader->Read(&msg));
  EXPECT_EQ(hub_.subscriber_count(), 1);
  w->ctx.TryCancel();
  while (w->reader->Read(&msg)) {
  }
  EXPECT_EQ(w->reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  for (int i = 0; i < 500 && hub_.subscriber_count() > 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(hub_.subscriber_count(), 0);
  AppendMetric(job.id, 1);  // Nobody to deliver to; must not crash.
}

TEST_F(JobWatchTest, ServerShutdownEndsAllWatchesPromptly) {
  core::Job job = RunningJob();
  std::vector<std::unique_ptr<Watch>> watches;
  for (int i = 0; i < 3; ++i) {
    watches.push_back(StartWatch(job.id, job.last_sequence));
    v1::WatchJobResponse msg;
    ASSERT_TRUE(watches.back()->reader->Read(&msg));
  }
  // One of them stops reading while big records pile up.
  const std::string blob(8 << 10, 'y');
  for (int i = 0; i < 300; ++i) {
    ASSERT_OK(store_->AppendJobMessage(job.id, 1, blob));
  }
  const absl::Time start = absl::Now();
  StopServer();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  for (auto& w : watches) {
    v1::WatchJobResponse msg;
    while (w->reader->Read(&msg)) {
    }
    grpc::Status s = w->reader->Finish();
    EXPECT_THAT(s.error_code(), ::testing::AnyOf(grpc::StatusCode::UNAVAILABLE,
                                                 grpc::StatusCode::CANCELLED))
        << s.error_message();
  }
}

}  // namespace
}  // namespace ftune::server::rpc::testing
