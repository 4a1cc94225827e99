// RankGroup: the trainer processes of one attempt on this host. One rank is
// one `ftune-train` started exactly as before (no launcher variables); N > 1
// ranks form one torch.distributed process group (docs/distributed.md):
//
//   rank i gets RANK=i, WORLD_SIZE=N, LOCAL_RANK=i, LOCAL_WORLD_SIZE=N,
//   MASTER_ADDR=127.0.0.1 and MASTER_PORT = a free local port the group
//   picked (rank 0's trainer hosts the c10d TCPStore there), and
//   CUDA_VISIBLE_DEVICES = the i-th of the job's GPUs (so every rank trains
//   on its own device as cuda:0), or "" for a CPU job.
//
// Rank 0's stdout goes to on_stdout_line (the trainer makes rank 0 the one
// voice); the other ranks' stdout (only error lines) and every rank's stderr
// go to the log, each line prefixed "[rank R] ".
//
// Any rank that ends other than with exit 0 while the group was not asked
// to stop ends the whole group: the other ranks get SIGTERM and, after
// failure_grace, SIGKILL. The exit that decides the attempt (Cause) is the
// failed rank's, not that of a survivor that then lost its peer (exit 6) or
// was stopped by the group.
//
// Thread-safety: Start/Stop/Kill/Wait may be called from different threads;
// Start once, before the others. Callbacks run on reader threads and must
// not call Wait().
#ifndef FTUNE_WORKER_AGENT_RANK_GROUP_H_
#define FTUNE_WORKER_AGENT_RANK_GROUP_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "worker/agent/trainer_process.h"

namespace ftune::agent {

struct RankGroupOptions {
  std::vector<std::string> argv;           // argv[0] is the binary path
  std::map<std::string, std::string> env;  // every rank, on top of the agent's
  int ranks = 1;
  // GPU job: one index per rank (gpu_indices.size() == ranks). Empty: a
  // CPU job (CUDA_VISIBLE_DEVICES="").
  std::vector<int32_t> gpu_indices;
  std::string log_path;
  std::function<void(const std::string& line)> on_stdout_line;  // rank 0
  // SIGTERM -> SIGKILL for the ranks left when one failed.
  absl::Duration failure_grace = absl::Seconds(10);
};

// How every rank ended.
struct RankGroupExit {
  std::vector<TrainerExit> exits;  // by rank
  int cause = 0;                   // the rank whose exit decides the outcome
  // A rank failed on its own (not stopped by the group or the agent) and the
  // group stopped the others.
  bool rank_failed = false;

  const TrainerExit& Cause() const { return exits[cause]; }
  // "killed by signal 9 (Killed)" for one rank; "rank 1 of 2 killed by
  // signal 9 (Killed)" for several.
  std::string Describe() const;
  // The other ranks' exits: "rank 0: exited with code 6"; "" for one rank.
  std::string DescribeOthers() const;
};

// A TCP port on 127.0.0.1 that nothing listens on now (bound, read back and
// released). INTERNAL when no socket can be bound.
absl::StatusOr<int> PickFreeLocalPort();

class RankGroup {
 public:
  RankGroup() = default;
  ~RankGroup();  // Kills ranks still running and reaps them.
  RankGroup(const RankGroup&) = delete;
  RankGroup& operator=(const RankGroup&) = delete;

  // Starts every rank. INVALID_ARGUMENT for ranks < 1 or a GPU list of
  // another size; otherwise TrainerProcess::Start's errors (the ranks
  // already started are then killed and reaped).
  absl::Status Start(RankGroupOptions options);

  // A stop asked for by the agent (cancel, pause, shutdown): SIGTERM to
  // every rank (the trainers agree on one checkpoint by rank 0), SIGKILL
  // after `grace`. Idempotent.
  void Stop(absl::Duration grace);
  // SIGKILL to every rank now.
  void Kill();

  // Blocks until every rank has exited and its output was delivered.
  RankGroupExit Wait();

  int ranks() const { return static_cast<int>(ranks_.size()); }
  int master_port() const { return master_port_; }  // 0 for one rank
  std::vector<pid_t> pids() const;

 private:
  void WaitRank(int rank);
  // Under mu_: SIGTERM the ranks still running, SIGKILL after the grace.
  void StopSurvivors() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  RankGroupOptions options_;
  int master_port_ = 0;
  std::vector<std::unique_ptr<TrainerProcess>> ranks_;
  std::vector<std::thread> waiters_;

  mutable absl::Mutex mu_;
  std::vector<bool> exited_ ABSL_GUARDED_BY(mu_);
  std::vector<TrainerExit> exits_ ABSL_GUARDED_BY(mu_);
  // Ranks the group signalled itself (after another rank failed).
  std::vector<bool> signalled_ ABSL_GUARDED_BY(mu_);
  std::vector<int> exit_order_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool failing_ ABSL_GUARDED_BY(mu_) = false;
  bool waited_ ABSL_GUARDED_BY(mu_) = false;
  std::thread failure_killer_;
  absl::Mutex join_mu_;  // one Wait() joins the threads
};

}  // namespace ftune::agent

#endif  // FTUNE_WORKER_AGENT_RANK_GROUP_H_
