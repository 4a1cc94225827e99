// The dispatcher without gRPC: a real SQLite store in a temp dir, a fake
// clock, and recording command streams standing in for the workers'
// StreamCommands calls. Rounds run synchronously (RunRound), so each test
// decides exactly when the dispatcher looks at the world.
#include "server/engine/dispatcher.h"

#include <string>
#include <vector>

#include "ftune/v1/job_spec.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/store/store_fixture.h"

namespace ftune::server::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

class RecordingStream : public CommandStream {
 public:
  void Send(const v1::WorkerCommand& command) override {
    sent.push_back(command);
  }
  void Close(const absl::Status& status) override {
    closed.push_back(status.code());
  }
  // The job ids of the AssignJobCommands sent so far.
  std::vector<std::string> Assigned() const {
    std::vector<std::string> out;
    for (const v1::WorkerCommand& c : sent) {
      if (c.has_assign_job()) out.push_back(c.assign_job().job_id());
    }
    return out;
  }
  std::vector<v1::WorkerCommand> sent;
  std::vector<absl::StatusCode> closed;
};

class DispatcherTest : public store::testing::StoreTest {
 protected:
  static constexpr absl::Duration kLease = absl::Seconds(30);

  void SetUp() override {
    StoreTest::SetUp();
    DispatcherOptions options;
    options.lease_duration = kLease;
    dispatcher_ = std::make_unique<Dispatcher>(store_.get(), &clock_, options);
  }
  void TearDown() override { dispatcher_.reset(); }

  core::Worker RegisterCpuWorker(const std::string& host, int32_t slots) {
    core::Worker w;
    w.hostname = host;
    w.capabilities.cpu_slots = slots;
    w.capabilities.memory_bytes = int64_t{64} << 30;
    absl::StatusOr<core::Worker> r =
        store_->RegisterWorker(w, clock_.Now() + kLease);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.value_or(core::Worker{});
  }

  core::Worker RegisterGpuWorker(const std::string& host, int32_t gpus) {
    core::Worker w;
    w.hostname = host;
    w.capabilities.gpus = gpus;
    w.capabilities.gpu_type = "H100";
    w.capabilities.gpu_memory_bytes = int64_t{80} << 30;
    w.capabilities.memory_bytes = int64_t{512} << 30;
    absl::StatusOr<core::Worker> r =
        store_->RegisterWorker(w, clock_.Now() + kLease);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.value_or(core::Worker{});
  }

  // A queued job of `t` asking for `gpus` GPUs (0: a CPU job), with a spec
  // the dispatcher can turn into an AssignJobCommand. Created a second
  // after the previous one, so FIFO order is creation order.
  core::Job Queue(const TenantSetup& t, int32_t gpus) {
    core::Job j = NewJob(t);
    v1::JobSpec spec;
    spec.set_model("tiny");
    spec.set_training_file(t.file.id);
    j.spec = spec.SerializeAsString();
    j.priority = 0;
    j.resources = core::JobResources{};
    j.resources.gpus = gpus;
    j.resources.memory_bytes = int64_t{1} << 30;
    clock_.Advance(absl::Seconds(1));
    return MustCreate(j);
  }

  core::Job Load(const core::Job& j) {
    absl::StatusOr<core::Job> r = store_->GetJob(j.tenant_id, j.id);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.value_or(core::Job{});
  }

  std::unique_ptr<Dispatcher> dispatcher_;
};

TEST_F(DispatcherTest, PlacesAQueuedJobOnAFittingWorkerAndTellsIt) {
  const TenantSetup t = MakeTenant("acme");
  const core::Worker w = RegisterCpuWorker("cpu-1", /*slots=*/1);
  RecordingStream stream;
  dispatcher_->Attach(w.id, &stream, dispatcher_->NextStreamGeneration());
  const core::Job job = Queue(t, /*gpus=*/0);

  dispatcher_->RunRound();

  const core::Job running = Load(job);
  EXPECT_EQ(running.state, core::JobState::kRunning);
  EXPECT_EQ(running.worker_id, w.id);
  EXPECT_EQ(running.lease_expiry, clock_.Now() + kLease);
  ASSERT_THAT(stream.sent, SizeIs(1));
  const v1::AssignJobCommand& a = stream.sent[0].assign_job();
  EXPECT_EQ(a.job_id(), job.id);
  EXPECT_EQ(a.attempt(), running.attempt);
  EXPECT_EQ(a.tenant_id(), t.tenant.id);
  EXPECT_EQ(a.model_path(), "models/tiny");
  EXPECT_EQ(a.training_file_path(), t.file.storage_path);
  EXPECT_THAT(a.gpu_indices(), IsEmpty());
  dispatcher_->Detach(w.id, &stream);
}

TEST_F(DispatcherTest, DoesNotPlaceAJobOnAWorkerItDoesNotFit) {
  const TenantSetup t = MakeTenant("acme");
  const core::Worker cpu = RegisterCpuWorker("cpu-1", /*slots=*/4);
  RecordingStream cpu_stream;
  dispatcher_->Attach(cpu.id, &cpu_stream, dispatcher_->NextStreamGeneration());
  const core::Job job = Queue(t, /*gpus=*/2);

  dispatcher_->RunRound();
  EXPECT_EQ(Load(job).state, core::JobState::kQueued);
  EXPECT_THAT(cpu_stream.sent, IsEmpty());

  // A worker with the GPUs arrives: the job goes there, on two of them.
  const core::Worker gpu = RegisterGpuWorker("gpu-1", /*gpus=*/4);
  RecordingStream gpu_stream;
  dispatcher_->Attach(gpu.id, &gpu_stream, dispatcher_->NextStreamGeneration());
  dispatcher_->RunRound();
  EXPECT_EQ(Load(job).worker_id, gpu.id);
  EXPECT_THAT(cpu_stream.sent, IsEmpty());
  ASSERT_THAT(gpu_stream.Assigned(), ElementsAre(job.id));
  EXPECT_THAT(gpu_stream.sent[0].assign_job().gpu_indices(), ElementsAre(0, 1));
  dispatcher_->Detach(cpu.id, &cpu_stream);
  dispatcher_->Detach(gpu.id, &gpu_stream);
}

TEST_F(DispatcherTest, GpuJobsGetDisjointGpusAndTheOnesFreedLater) {
  const TenantSetup t = MakeTenant("acme");
  const core::Job a = Queue(t, /*gpus=*/2);
  const core::Job b = Queue(t, /*gpus=*/2);
  const core::Job c = Queue(t, /*gpus=*/2);
  const core::Worker w = RegisterGpuWorker("gpu-1", /*gpus=*/4);
  RecordingStream stream;
  dispatcher_->Attach(w.id, &stream, dispatcher_->NextStreamGeneration());

  dispatcher_->RunRound();

  // Two fit; each holds GPUs the other does not.
  ASSERT_THAT(stream.Assigned(), ElementsAre(a.id, b.id));
  EXPECT_THAT(stream.sent[0].assign_job().gpu_indices(), ElementsAre(0, 1));
  EXPECT_THAT(stream.sent[1].assign_job().gpu_indices(), ElementsAre(2, 3));
  EXPECT_EQ(Load(c).state, core::JobState::kQueued);

  // When one ends, the next job gets exactly the GPUs it freed.
  core::AttemptEnd end;
  end.outcome = core::AttemptOutcome::kSucceeded;
  ASSERT_TRUE(store_->EndAttempt(b.id, Load(b).attempt, w.id, end).ok());
  dispatcher_->RunRound();
  ASSERT_THAT(stream.Assigned(), ElementsAre(a.id, b.id, c.id));
  EXPECT_THAT(stream.sent[2].assign_job().gpu_indices(), ElementsAre(2, 3));
  dispatcher_->Detach(w.id, &stream);
}

TEST_F(DispatcherTest, SharesAWorkerFairlyBetweenTenants) {
  const TenantSetup busy = MakeTenant("busy");
  const TenantSetup quiet = MakeTenant("quiet");
  // The busy tenant queued three jobs before the quiet one queued its only
  // one: FIFO alone would give both slots to the busy tenant.
  const core::Job b1 = Queue(busy, /*gpus=*/0);
  const core::Job b2 = Queue(busy, /*gpus=*/0);
  const core::Job b3 = Queue(busy, /*gpus=*/0);
  const core::Job q1 = Queue(quiet, /*gpus=*/0);
  const core::Worker w = RegisterCpuWorker("cpu-1", /*slots=*/2);
  RecordingStream stream;
  dispatcher_->Attach(w.id, &stream, dispatcher_->NextStreamGeneration());

  dispatcher_->RunRound();

  EXPECT_EQ(Load(b1).state, core::JobState::kRunning);
  EXPECT_EQ(Load(q1).state, core::JobState::kRunning);
  EXPECT_EQ(Load(b2).state, core::JobState::kQueued);
  EXPECT_EQ(Load(b3).state, core::JobState::kQueued);
  EXPECT_THAT(stream.Assigned(), SizeIs(2));
  dispatcher_->Detach(w.id, &stream);
}

TEST_F(DispatcherTest, AnExpiredLeaseRequeuesTheJobAndLosesTheWorker) {
  const TenantSetup t = MakeTenant("acme");
  const core::Job job = Queue(t, /*gpus=*/0);
  // Registered at the grant's time: the worker's and the job's leases end
  // together.
  const core::Worker w = RegisterCpuWorker("cpu-1", /*slots=*/1);
  RecordingStream stream;
  dispatcher_->Attach(w.id, &stream, dispatcher_->NextStreamGeneration());
  dispatcher_->RunRound();
  const core::Job first = Load(job);
  ASSERT_EQ(first.state, core::JobState::kRunning);

  // Just before the lease ends nothing is lost.
  clock_.Advance(kLease - absl::Seconds(1));
  dispatcher_->RunRound();
  EXPECT_EQ(Load(job).state, core::JobState::kRunning);
  EXPECT_THAT(stream.closed, IsEmpty());

  // The worker never heartbeat: past its lease the attempt is lost, the job
  // queued again as the next attempt, and the worker's stream ended.
  clock_.Advance(absl::Seconds(2));
  dispatcher_->RunRound();
  const core::Job requeued = Load(job);
  EXPECT_EQ(requeued.state, core::JobState::kQueued);
  EXPECT_EQ(requeued.attempt, first.attempt + 1);
  EXPECT_THAT(stream.closed,
              ElementsAre(absl::StatusCode::kFailedPrecondition));
  absl::StatusOr<core::Worker> lost = store_->GetWorker(w.id);
  ASSERT_TRUE(lost.ok()) << lost.status();
  EXPECT_EQ(lost->state, core::WorkerState::kLost);
  dispatcher_->Detach(w.id, &stream);

  // A live worker picks up the next attempt.
  const core::Worker next = RegisterCpuWorker("cpu-2", /*slots=*/1);
  RecordingStream next_stream;
  dispatcher_->Attach(next.id, &next_stream,
                      dispatcher_->NextStreamGeneration());
  dispatcher_->RunRound();
  ASSERT_THAT(next_stream.sent, SizeIs(1));
  EXPECT_EQ(next_stream.sent[0].assign_job().attempt(), requeued.attempt);
  EXPECT_EQ(Load(job).worker_id, next.id);
  dispatcher_->Detach(next.id, &next_stream);
}

TEST_F(DispatcherTest, ShutdownEndsEveryStreamAsUnavailable) {
  RecordingStream stream;
  dispatcher_->Attach("w-1", &stream, dispatcher_->NextStreamGeneration());
  dispatcher_->Shutdown();
  EXPECT_THAT(stream.closed, ElementsAre(absl::StatusCode::kUnavailable));
  // Too late to join: ended at once.
  RecordingStream late;
  dispatcher_->Attach("w-2", &late, dispatcher_->NextStreamGeneration());
  EXPECT_THAT(late.closed, ElementsAre(absl::StatusCode::kUnavailable));
}

// Which of a worker's streams is current when
// the set-up tasks of two StreamCommands calls finish out of order.
TEST(DispatcherStreamsTest, TheNewestCallWinsWhateverOrderItsSetUpFinishes) {
  Dispatcher dispatcher(/*store=*/nullptr, /*clock=*/nullptr, {});
  RecordingStream older, newer, newest;
  const uint64_t g_older = dispatcher.NextStreamGeneration();
  const uint64_t g_newer = dispatcher.NextStreamGeneration();
  ASSERT_LT(g_older, g_newer);

  // The newer call's set-up finishes first; the older one's, arriving
  // late, must not replace it.
  dispatcher.Attach("w-1", &newer, g_newer);
  dispatcher.Attach("w-1", &older, g_older);
  EXPECT_THAT(older.closed, ElementsAre(absl::StatusCode::kAborted));
  EXPECT_TRUE(newer.closed.empty());
  // The older stream's OnDone detaches it: no effect on the current one.
  dispatcher.Detach("w-1", &older);
  // In order, a newer call replaces the current stream.
  dispatcher.Attach("w-1", &newest, dispatcher.NextStreamGeneration());
  EXPECT_THAT(newer.closed, ElementsAre(absl::StatusCode::kAborted));
  EXPECT_TRUE(newest.closed.empty());
  dispatcher.Detach("w-1", &newer);
  // Only the current stream is reached.
  dispatcher.CloseStream("w-1", absl::NotFoundError(""));
  EXPECT_THAT(newest.closed, ElementsAre(absl::StatusCode::kNotFound));
  EXPECT_THAT(newer.closed, ElementsAre(absl::StatusCode::kAborted));
  EXPECT_THAT(older.closed, ElementsAre(absl::StatusCode::kAborted));
  dispatcher.Detach("w-1", &newest);
}

}  // namespace
}  // namespace ftune::server::engine
