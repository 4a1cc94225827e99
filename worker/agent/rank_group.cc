#include "worker/agent/rank_group.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"

namespace ftune::agent {
namespace {

// One write(2) per line with O_APPEND: lines of several ranks interleave
// whole.
void AppendLine(const std::string& path, const std::string& line) {
  if (path.empty()) return;
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  const std::string out = line + "\n";
  ssize_t ignored = ::write(fd, out.data(), out.size());
  (void)ignored;
  ::close(fd);
}

// Whether `pid` (our child, not yet reaped) has already ended; it stays a
// zombie for the thread that waits for it.
bool AlreadyEnded(pid_t pid) {
  siginfo_t info;
  std::memset(&info, 0, sizeof(info));
  if (::waitid(P_PID, static_cast<id_t>(pid), &info,
               WEXITED | WNOHANG | WNOWAIT) != 0) {
    return true;  // Reaped meanwhile.
  }
  return info.si_pid != 0;
}

}  // namespace

std::string RankGroupExit::Describe() const {
  if (exits.size() <= 1) return Cause().Describe();
  return absl::StrCat("rank ", cause, " of ", exits.size(), " ",
                      Cause().Describe());
}

std::string RankGroupExit::DescribeOthers() const {
  std::vector<std::string> parts;
  for (size_t r = 0; r < exits.size(); ++r) {
    if (static_cast<int>(r) == cause) continue;
    parts.push_back(absl::StrCat("rank ", r, " ", exits[r].Describe()));
  }
  return absl::StrJoin(parts, ", ");
}

absl::StatusOr<int> PickFreeLocalPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  }
  sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::InternalError(
        absl::StrCat("binding a local port: ", std::strerror(err)));
  }
  ::close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

RankGroup::~RankGroup() {
  bool pending;
  {
    absl::MutexLock lock(&mu_);
    pending = !ranks_.empty() && !waited_;
  }
  if (pending) {
    Kill();
    Wait();
  }
}

absl::Status RankGroup::Start(RankGroupOptions options) {
  if (options.ranks < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("ranks must be >= 1, got ", options.ranks));
  }
  if (!options.gpu_indices.empty() &&
      static_cast<int>(options.gpu_indices.size()) != options.ranks) {
    return absl::InvalidArgumentError(absl::StrCat(options.gpu_indices.size(),
                                                   " GPUs for ", options.ranks,
                                                   " ranks: one GPU per rank"));
  }
  if (!ranks_.empty()) return absl::FailedPreconditionError("already started");
  options_ = std::move(options);
  const int n = options_.ranks;
  if (n > 1) {
    absl::StatusOr<int> port = PickFreeLocalPort();
    if (!port.ok()) return port.status();
    master_port_ = *port;
  }
  for (int r = 0; r < n; ++r) {
    TrainerProcessOptions to;
    to.argv = options_.argv;
    to.env = options_.env;
    to.log_path = options_.log_path;
    if (n == 1) {
      // Exactly as before data-parallel training: no launcher variables.
      to.env["CUDA_VISIBLE_DEVICES"] = absl::StrJoin(options_.gpu_indices, ",");
      to.on_stdout_line = options_.on_stdout_line;
    } else {
      to.env["WORLD_SIZE"] = absl::StrCat(n);
      to.env["RANK"] = absl::StrCat(r);
      to.env["LOCAL_WORLD_SIZE"] = absl::StrCat(n);
      to.env["LOCAL_RANK"] = absl::StrCat(r);
      to.env["MASTER_ADDR"] = "127.0.0.1";
      to.env["MASTER_PORT"] = absl::StrCat(master_port_);
      to.env["CUDA_VISIBLE_DEVICES"] =
          options_.gpu_indices.empty()
              ? std::string()
              : absl::StrCat(options_.gpu_indices[static_cast<size_t>(r)]);
      const std::string prefix = absl::StrCat("[rank ", r, "] ");
      to.stderr_prefix = prefix;
      if (r == 0) {
        to.on_stdout_line = options_.on_stdout_line;
      } else {
        // Only rank 0 reports progress; the others print error lines only.
        to.on_stdout_line = [path = options_.log_path,
                             prefix](const std::string& line) {
          AppendLine(path, prefix + line);
        };
      }
    }
    auto process = std::make_unique<TrainerProcess>();
    if (absl::Status s = process->Start(std::move(to)); !s.ok()) {
      // The ranks already running would wait for this one at the
      // rendezvous: end them (their destructors kill and reap them).
      ranks_.clear();
      return n == 1 ? s
                    : absl::Status(s.code(), absl::StrCat("starting rank ", r,
                                                          ": ", s.message()));
    }
    ranks_.push_back(std::move(process));
  }
  {
    absl::MutexLock lock(&mu_);
    exited_.assign(static_cast<size_t>(n), false);
    exits_.assign(static_cast<size_t>(n), TrainerExit());
    signalled_.assign(static_cast<size_t>(n), false);
    running_ = n;
  }
  for (int r = 0; r < n; ++r) {
    waiters_.emplace_back([this, r] { WaitRank(r); });
  }
  return absl::OkStatus();
}

std::vector<pid_t> RankGroup::pids() const {
  std::vector<pid_t> out;
  for (const auto& p : ranks_) out.push_back(p->pid());
  return out;
}

void RankGroup::WaitRank(int rank) {
  TrainerExit e = ranks_[static_cast<size_t>(rank)]->Wait();
  absl::MutexLock lock(&mu_);
  exited_[static_cast<size_t>(rank)] = true;
  exits_[static_cast<size_t>(rank)] = e;
  exit_order_.push_back(rank);
  --running_;
  if (ranks_.size() > 1 && !stop_requested_ && !failing_ &&
      e.exit_class != ExitClass::kSuccess) {
    FTUNE_LOG(WARNING) << "trainer rank " << rank << " of " << ranks_.size()
                       << " (pid " << ranks_[static_cast<size_t>(rank)]->pid()
                       << ") " << e.Describe() << "; stopping the other ranks";
    failing_ = true;
    StopSurvivors();
  }
}

void RankGroup::StopSurvivors() {
  for (size_t r = 0; r < ranks_.size(); ++r) {
    if (exited_[r]) continue;
    const pid_t pid = ranks_[r]->pid();
    // A rank that died on its own just now keeps its own exit as a cause.
    if (AlreadyEnded(pid)) continue;
    signalled_[r] = true;
    ::kill(-pid, SIGTERM);
  }
  const absl::Duration grace = options_.failure_grace;
  failure_killer_ = std::thread([this, grace] {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return running_ == 0;
    };
    if (mu_.AwaitWithTimeout(absl::Condition(&done), grace)) return;
    for (size_t r = 0; r < ranks_.size(); ++r) {
      if (exited_[r]) continue;
      FTUNE_LOG(WARNING) << "trainer rank " << r << " still running "
                         << absl::FormatDuration(grace)
                         << " after SIGTERM; sending SIGKILL";
      signalled_[r] = true;
      ::kill(-ranks_[r]->pid(), SIGKILL);
    }
  });
}

void RankGroup::Stop(absl::Duration grace) {
  absl::MutexLock lock(&mu_);
  if (stop_requested_) return;
  stop_requested_ = true;
  for (size_t r = 0; r < exited_.size(); ++r) {
    if (!exited_[r]) ranks_[r]->Stop(grace);
  }
}

void RankGroup::Kill() {
  absl::MutexLock lock(&mu_);
  for (size_t r = 0; r < exited_.size(); ++r) {
    if (!exited_[r] && ranks_[r]->pid() > 0) {
      ::kill(-ranks_[r]->pid(), SIGKILL);
    }
  }
}

RankGroupExit RankGroup::Wait() {
  absl::MutexLock join(&join_mu_);
  for (std::thread& t : waiters_) {
    if (t.joinable()) t.join();
  }
  if (failure_killer_.joinable()) failure_killer_.join();
  absl::MutexLock lock(&mu_);
  waited_ = true;
  RankGroupExit out;
  out.exits = exits_;
  out.rank_failed = failing_;
  // The rank that failed on its own decides: first one that did not just
  // lose its peer (exit 6), then one that did, in the order they ended.
  auto failed = [&](int r) {
    const TrainerExit& e = exits_[static_cast<size_t>(r)];
    return e.exit_class != ExitClass::kSuccess &&
           e.exit_class != ExitClass::kStopped &&
           !signalled_[static_cast<size_t>(r)];
  };
  for (bool allow_peer_lost : {false, true}) {
    for (int r : exit_order_) {
      if (!failed(r)) continue;
      const TrainerExit& e = exits_[static_cast<size_t>(r)];
      const bool peer_lost =
          e.signal == 0 && e.exit_code == train::kExitPeerLost;
      if (peer_lost && !allow_peer_lost) continue;
      out.cause = r;
      return out;
    }
  }
  out.cause = 0;
  return out;
}

}  // namespace ftune::agent
