#include "worker/agent/attempt_runner.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace ftune::agent {
namespace {

bool IsFenced(const absl::Status& s) {
  return s.code() == absl::StatusCode::kFailedPrecondition ||
         s.code() == absl::StatusCode::kNotFound;
}

std::string Dirname(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// Peak resident memory (VmHWM) of a process, 0 if unknown.
int64_t PeakRss(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "VmHWM:")) {
      std::istringstream ss(line.substr(6));
      int64_t kb = 0;
      ss >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

int64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

// "step-00000120" -> 120; -1 when the name is not a finished step dir.
int64_t StepOfDirName(absl::string_view name) {
  int64_t step;
  if (!absl::StartsWith(name, "step-") || absl::StrContains(name, ".tmp") ||
      !absl::SimpleAtoi(name.substr(5), &step)) {
    return -1;
  }
  return step;
}

}  // namespace

absl::StatusOr<v1::Adapter> DescribeAdapter(const std::string& absolute_dir,
                                            const std::string& relative_dir,
                                            const std::string& name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(absolute_dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("adapter directory ", absolute_dir, " does not exist"));
  }
  v1::Adapter a;
  a.set_name(name);
  a.set_path(relative_dir);
  std::vector<std::string> files;
  for (fs::recursive_directory_iterator it(absolute_dir, ec), end;
       !ec && it != end; it.increment(ec)) {
    std::error_code fec;
    if (it->is_regular_file(fec)) {
      files.push_back(fs::relative(it->path(), absolute_dir, fec).string());
    }
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat("listing ", absolute_dir, ": ", ec.message()));
  }
  std::sort(files.begin(), files.end());
  std::map<std::string, std::string> sha_of;
  for (const std::string& f : files) {
    const std::string full = JoinPath(absolute_dir, f);
    FTUNE_ASSIGN_OR_RETURN(std::string sha, Sha256File(full));
    v1::AdapterFile* af = a.add_files();
    af->set_path(f);
    af->set_size_bytes(FileSize(full));
    af->set_sha256(sha);
    sha_of[f] = sha;
  }
  auto manifest_sha = sha_of.find("ftune_manifest.json");
  if (manifest_sha == sha_of.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat(absolute_dir, " has no ftune_manifest.json"));
  }
  a.set_manifest_sha256(manifest_sha->second);
  FTUNE_ASSIGN_OR_RETURN(
      std::string text,
      ReadFile(JoinPath(absolute_dir, "ftune_manifest.json")));
  nlohmann::json m = nlohmann::json::parse(text, nullptr, false);
  if (m.is_discarded() || !m.is_object()) {
    return absl::FailedPreconditionError(
        absl::StrCat(absolute_dir, "/ftune_manifest.json is not JSON"));
  }
  if (m.contains("files") && m["files"].is_object()) {
    for (auto it = m["files"].begin(); it != m["files"].end(); ++it) {
      const std::string want =
          it.value().is_object() ? it.value().value("sha256", "") : "";
      auto have = sha_of.find(it.key());
      if (have == sha_of.end()) {
        return absl::FailedPreconditionError(
            absl::StrCat(absolute_dir, ": ", it.key(),
                         " is listed in ftune_manifest.json but missing"));
      }
      if (have->second != want) {
        return absl::FailedPreconditionError(
            absl::StrCat(absolute_dir, ": ", it.key(), " has sha256 ",
                         have->second, ", the manifest says ", want));
      }
    }
  }
  if (m.contains("metrics") && m["metrics"].is_object()) {
    const nlohmann::json& mm = m["metrics"];
    if (mm.contains("best_step") && mm["best_step"].is_number()) {
      a.set_step(mm["best_step"].get<int64_t>());
    } else if (mm.contains("steps") && mm["steps"].is_number()) {
      a.set_step(mm["steps"].get<int64_t>());
    }
  }
  struct stat st;
  if (::stat(absolute_dir.c_str(), &st) == 0) {
    SetTime(absl::TimeFromTimespec(st.st_mtim), a.mutable_publish_time());
  }
  return a;
}

AttemptRunner::AttemptRunner(v1::AssignJobCommand command,
                             AttemptRunnerOptions options,
                             AttemptReporter* reporter)
    : command_(std::move(command)),
      options_(std::move(options)),
      reporter_(reporter) {
  // The checkpoint this attempt resumes from is the scheduler's record.
  const std::string& resume = command_.resume_checkpoint_path();
  if (!resume.empty()) {
    acked_checkpoint_step_.store(
        StepOfDirName(resume.substr(resume.rfind('/') + 1)));
  }
}

AttemptRunner::~AttemptRunner() {
  Kill();
  Wait();
}

void AttemptRunner::Start(std::shared_ptr<AttemptRunner> predecessor) {
  {
    absl::MutexLock lock(&mu_);
    if (started_) return;
    started_ = true;
  }
  // Under join_mu_, so a Wait() that sees done_ also sees thread_.
  absl::MutexLock lock(&join_mu_);
  thread_ = std::thread([this, predecessor] { Run(predecessor); });
}

AttemptEnd AttemptRunner::Wait() {
  {
    absl::MutexLock lock(&mu_);
    if (!started_) return end_;
    mu_.Await(absl::Condition(&done_));
  }
  {
    // Several callers may Wait(); one joins.
    absl::MutexLock lock(&join_mu_);
    if (thread_.joinable()) thread_.join();
  }
  absl::MutexLock lock(&mu_);
  return end_;
}

bool AttemptRunner::done() const {
  absl::MutexLock lock(&mu_);
  return done_;
}

std::optional<v1::FinishAttemptRequest> AttemptRunner::finished_request()
    const {
  absl::MutexLock lock(&mu_);
  return finished_;
}

bool AttemptRunner::killed() const {
  absl::MutexLock lock(&mu_);
  return killed_;
}

void AttemptRunner::Cancel(absl::Duration grace) {
  absl::MutexLock lock(&mu_);
  if (stop_ == StopKind::kCancel || killed_) return;
  stop_ = StopKind::kCancel;
  cancel_grace_ = grace > absl::ZeroDuration() ? grace : options_.stop_grace;
  if (trainer_ != nullptr) trainer_->Stop(cancel_grace_);
}

void AttemptRunner::Pause() {
  absl::MutexLock lock(&mu_);
  if (stop_ != StopKind::kNone || killed_) return;
  stop_ = StopKind::kPause;
  if (trainer_ != nullptr) trainer_->Stop(options_.stop_grace);
}

void AttemptRunner::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (stop_ != StopKind::kNone || killed_) return;
  stop_ = StopKind::kShutdown;
  if (trainer_ != nullptr) trainer_->Stop(options_.stop_grace);
}

void AttemptRunner::Kill() {
  absl::MutexLock lock(&mu_);
  if (killed_) return;
  killed_ = true;
  if (trainer_ != nullptr) trainer_->Kill();
}

bool AttemptRunner::Sleep(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&killed_), d);
  return !killed_;
}

void AttemptRunner::AppendToLog(const std::string& text) {
  if (log_path_.empty()) return;
  const int fd = ::open(log_path_.c_str(),
                        O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  const std::string line = absl::StrCat("[ftune-worker] ", text, "\n");
  ssize_t ignored = ::write(fd, line.data(), line.size());
  (void)ignored;
  ::close(fd);
}

v1::FinishAttemptRequest AttemptRunner::Failed(v1::ErrorReason reason,
                                               std::string message,
                                               bool retryable) {
  v1::FinishAttemptRequest r;
  r.set_outcome(v1::ATTEMPT_OUTCOME_FAILED);
  v1::JobError* e = r.mutable_error();
  e->set_reason(reason);
  // The trainer names a data file by its path on shared storage; the tenant
  // knows it by its id (and is not shown the storage layout).
  const std::vector<std::pair<std::string, std::string>> files = {
      {command_.training_file_path(), command_.spec().training_file()},
      {command_.validation_file_path(), command_.spec().validation_file()}};
  for (const auto& [path, id] : files) {
    absl::StatusOr<std::string> full =
        ResolveStoragePath(options_.storage_root, path, "path");
    if (full.ok() && !id.empty()) {
      message = absl::StrReplaceAll(message, {{*full, id}});
    }
  }
  e->set_message(std::move(message));
  e->set_retryable(retryable);
  e->set_attempt(command_.attempt());
  SetTime(options_.clock->Now(), e->mutable_time());
  return r;
}

void AttemptRunner::Run(std::shared_ptr<AttemptRunner> predecessor) {
  if (predecessor != nullptr) predecessor->Wait();
  std::optional<v1::FinishAttemptRequest> request = Execute();
  if (request.has_value() && !killed()) {
    request->set_job_id(command_.job_id());
    request->set_attempt(command_.attempt());
    Finish(std::move(*request));
  } else {
    absl::MutexLock lock(&mu_);
    end_ = AttemptEnd::kFenced;
  }
  absl::MutexLock lock(&mu_);
  done_ = true;
}

bool AttemptRunner::Flush(bool drain) {
  bool stripped = false;
  while (true) {
    if (killed()) return false;
    if (in_flight_.has_value() && !drain && options_.clock->Now() < retry_at_) {
      return true;  // backing off; the trainer keeps running
    }
    if (!in_flight_.has_value()) {
      absl::MutexLock lock(&mu_);
      const absl::Time now = options_.clock->Now();
      tracker_->SetLogSize(FileSize(log_path_));
      if (!tracker_->FlushDue(now) && !(drain && tracker_->HasPending())) {
        return true;
      }
      in_flight_ = tracker_->TakeBatch(now);
      stripped = false;
    }
    absl::StatusOr<v1::ReportProgressResponse> r =
        reporter_->ReportProgress(*in_flight_);
    if (r.ok()) {
      for (const v1::Checkpoint& c : in_flight_->checkpoints()) {
        if (c.step() > acked_checkpoint_step_.load()) {
          acked_checkpoint_step_.store(c.step());
        }
      }
      in_flight_.reset();
      backoff_ = options_.retry_initial;
      if (r->cancel_requested()) Cancel(absl::ZeroDuration());
      if (r->pause_requested()) Pause();
      continue;
    }
    if (IsFenced(r.status())) {
      FTUNE_LOG(WARNING) << "job " << command_.job_id() << " attempt "
                         << command_.attempt()
                         << " fenced by the scheduler: " << r.status();
      AppendToLog(absl::StrCat("the scheduler fenced this attempt (",
                               r.status().message(), "); trainer killed"));
      Kill();
      return false;
    }
    if (r.status().code() == absl::StatusCode::kInvalidArgument) {
      // A batch the scheduler will never accept. Its number is resent with
      // only the progress summary so later batches do not leave a gap.
      FTUNE_LOG(ERROR) << "job " << command_.job_id()
                       << ": scheduler refused progress batch "
                       << in_flight_->batch_number() << ": " << r.status();
      if (stripped) {
        AppendToLog("the scheduler refused progress reports; trainer killed");
        Kill();
        return false;
      }
      v1::ReportProgressRequest minimal;
      minimal.set_job_id(in_flight_->job_id());
      minimal.set_attempt(in_flight_->attempt());
      minimal.set_batch_number(in_flight_->batch_number());
      minimal.set_log_size_bytes(in_flight_->log_size_bytes());
      *minimal.mutable_progress() = in_flight_->progress();
      in_flight_ = std::move(minimal);
      stripped = true;
      continue;
    }
    // Transient (scheduler restarting, network): the same batch again later.
    FTUNE_LOG(WARNING) << "job " << command_.job_id() << ": progress batch "
                       << in_flight_->batch_number()
                       << " not delivered: " << r.status();
    retry_at_ = options_.clock->Now() + backoff_;
    const absl::Duration wait = backoff_;
    backoff_ = std::min(backoff_ * 2, options_.retry_max);
    if (!drain) return true;
    if (!Sleep(wait)) return false;
  }
}

void AttemptRunner::Finish(v1::FinishAttemptRequest request) {
  absl::Duration backoff = options_.retry_initial;
  while (true) {
    if (killed()) {
      absl::MutexLock lock(&mu_);
      end_ = AttemptEnd::kFenced;
      return;
    }
    absl::StatusOr<v1::FinishAttemptResponse> r =
        reporter_->FinishAttempt(request);
    if (r.ok()) {
      FTUNE_LOG(INFO) << "job " << command_.job_id() << " attempt "
                      << command_.attempt() << " finished: "
                      << v1::AttemptOutcome_Name(request.outcome())
                      << (request.has_error()
                              ? absl::StrCat(" (", request.error().message(),
                                             ")")
                              : "");
      absl::MutexLock lock(&mu_);
      finished_ = std::move(request);
      end_ = AttemptEnd::kFinished;
      return;
    }
    if (IsFenced(r.status())) {
      FTUNE_LOG(WARNING) << "job " << command_.job_id()
                         << ": FinishAttempt fenced: " << r.status();
      absl::MutexLock lock(&mu_);
      end_ = AttemptEnd::kFenced;
      return;
    }
    if (r.status().code() == absl::StatusCode::kInvalidArgument) {
      FTUNE_LOG(ERROR) << "job " << command_.job_id()
                       << ": FinishAttempt refused: " << r.status();
      absl::MutexLock lock(&mu_);
      end_ = AttemptEnd::kFinishFailed;
      return;
    }
    FTUNE_LOG(WARNING) << "job " << command_.job_id()
                       << ": FinishAttempt not delivered: " << r.status();
    if (!Sleep(backoff)) continue;
    backoff = std::min(backoff * 2, options_.retry_max);
  }
}

std::optional<v1::FinishAttemptRequest> AttemptRunner::Execute() {
  {
    absl::MutexLock lock(&mu_);
    ProgressOptions po;
    po.job_id = command_.job_id();
    po.attempt = command_.attempt();
    po.storage_root = options_.storage_root;
    po.flush_interval = options_.flush_interval;
    po.max_batch_points = options_.max_batch_points;
    tracker_.emplace(po);
  }
  absl::StatusOr<TrainerSpec> spec =
      TranslateAssignment(command_, options_.storage_root);
  if (!spec.ok()) {
    if (absl::StatusOr<std::string> log = ResolveStoragePath(
            options_.storage_root, command_.log_path(), "log_path");
        log.ok() && MakeDirs(Dirname(*log)).ok()) {
      log_path_ = *log;
      AppendToLog(absl::StrCat("attempt ", command_.attempt(),
                               " not started: ", spec.status().message()));
    }
    return Failed(v1::ERROR_REASON_INVALID_INPUT,
                  std::string(spec.status().message()), /*retryable=*/false);
  }
  log_path_ = spec->log_path;
  {
    absl::MutexLock lock(&mu_);
    ProgressOptions po;
    po.job_id = command_.job_id();
    po.attempt = command_.attempt();
    po.storage_root = options_.storage_root;
    po.flush_interval = options_.flush_interval;
    po.max_batch_points = options_.max_batch_points;
    po.log_every_steps = spec->log_every_steps;
    tracker_.emplace(po);
    if (stop_ == StopKind::kCancel) {
      v1::FinishAttemptRequest r;
      r.set_outcome(v1::ATTEMPT_OUTCOME_CANCELLED);
      return r;
    }
    if (stop_ == StopKind::kShutdown) {
      return Failed(v1::ERROR_REASON_WORKER_LOST,
                    "the worker shut down before the attempt started",
                    /*retryable=*/true);
    }
  }
  if (absl::Status s = MakeDirs(Dirname(log_path_)); !s.ok()) {
    return Failed(v1::ERROR_REASON_STORAGE_ERROR,
                  absl::StrCat("creating the log directory: ", s.message()),
                  /*retryable=*/true);
  }

  // An earlier attempt may have published the adapter and died before
  // FinishAttempt: publishing is atomic, so a directory there is complete.
  absl::StatusOr<v1::Adapter> existing = DescribeAdapter(
      spec->adapter_dir, command_.adapter_dir(), command_.adapter_name());
  if (existing.ok()) {
    {
      absl::MutexLock lock(&mu_);
      tracker_->AddEvent(v1::JOB_EVENT_TYPE_LOG,
                         "the adapter was already published by an earlier "
                         "attempt; not training again",
                         existing->step(), options_.clock->Now());
    }
    AppendToLog(absl::StrCat("attempt ", command_.attempt(), ": adapter ",
                             command_.adapter_dir(),
                             " already published; reporting it"));
    if (!Flush(/*drain=*/true)) return std::nullopt;
    v1::FinishAttemptRequest r;
    r.set_outcome(v1::ATTEMPT_OUTCOME_SUCCEEDED);
    *r.mutable_adapter() = *existing;
    return r;
  }
  if (existing.status().code() != absl::StatusCode::kNotFound) {
    return Failed(v1::ERROR_REASON_STORAGE_ERROR,
                  absl::StrCat("adapter_dir exists but is not a complete "
                               "adapter: ",
                               existing.status().message()),
                  /*retryable=*/false);
  }
  return RunTrainer(*spec);
}

void AttemptRunner::ReportRendezvous(int ranks) {
  if (!ranks_started_reported_ || !rendezvous_seen_ || rendezvous_reported_) {
    return;
  }
  rendezvous_reported_ = true;
  tracker_->AddEvent(v1::JOB_EVENT_TYPE_LOG,
                     absl::StrCat("rendezvous done: ", ranks,
                                  " trainer ranks formed one process group"),
                     tracker_->progress().step(), options_.clock->Now());
}

void AttemptRunner::DeleteOldCheckpoints(const TrainerSpec& spec) {
  std::vector<std::pair<int64_t, std::string>> steps;
  DIR* d = ::opendir(spec.checkpoint_dir.c_str());
  if (d == nullptr) return;
  while (dirent* e = ::readdir(d)) {
    const int64_t step = StepOfDirName(e->d_name);
    if (step >= 0) steps.emplace_back(step, e->d_name);
  }
  ::closedir(d);
  std::sort(steps.rbegin(), steps.rend());  // newest first
  int64_t best;
  {
    absl::MutexLock lock(&mu_);
    best = tracker_->best_step();
  }
  // The scheduler resumes later attempts from the newest checkpoint it
  // has recorded: until a newer one is acknowledged, that one (and every
  // newer one, possibly another attempt's) stays, whatever
  // checkpoints_to_keep says.
  const int64_t acked = acked_checkpoint_step_.load();
  for (size_t i = static_cast<size_t>(spec.checkpoints_to_keep);
       i < steps.size(); ++i) {
    if (steps[i].first == best) continue;
    if (acked < 0 || steps[i].first >= acked) continue;
    const std::string rel =
        absl::StrCat(command_.checkpoint_dir(), "/", steps[i].second);
    if (absl::Status s =
            RemoveAll(JoinPath(spec.checkpoint_dir, steps[i].second));
        !s.ok()) {
      FTUNE_LOG(WARNING) << "deleting old checkpoint " << rel << ": " << s;
      continue;
    }
    absl::MutexLock lock(&mu_);
    tracker_->AddDeletedCheckpoint(rel);
  }
}

std::optional<v1::FinishAttemptRequest> AttemptRunner::RunTrainer(
    TrainerSpec& spec) {
  const std::string attempt_dir = JoinPath(
      options_.work_dir,
      absl::StrCat(command_.job_id(), "-attempt-", command_.attempt()));
  const std::string spec_path = JoinPath(attempt_dir, "spec.json");
  const std::string cuda_devices = absl::StrJoin(command_.gpu_indices(), ",");
  const int ranks = spec.ranks;
  while (true) {
    if (absl::Status s = MakeDirs(attempt_dir); !s.ok()) {
      return Failed(v1::ERROR_REASON_INTERNAL,
                    absl::StrCat("work dir: ", s.message()), true);
    }
    if (absl::Status s = WriteFileAtomically(
            spec_path, spec.generate
                           ? contract::TrySpecToJson(
                                 contract::TrySpec{spec.spec, *spec.generate})
                           : contract::TrainSpecToJson(spec.spec));
        !s.ok()) {
      return Failed(v1::ERROR_REASON_INTERNAL,
                    absl::StrCat("writing the trainer spec: ", s.message()),
                    true);
    }
    RankGroup trainer;
    RankGroupOptions to;
    to.argv = {options_.trainer_path, "--spec", spec_path};
    to.env = options_.env;
    to.ranks = ranks;
    to.gpu_indices.assign(command_.gpu_indices().begin(),
                          command_.gpu_indices().end());
    to.log_path = log_path_;
    to.failure_grace = options_.rank_failure_grace;
    {
      absl::MutexLock lock(&mu_);
      ranks_started_reported_ = false;
      rendezvous_seen_ = false;
      rendezvous_reported_ = false;
    }
    to.on_stdout_line = [this, ranks](const std::string& line) {
      absl::MutexLock lock(&mu_);
      // Rank 0 prints only after the process group formed (every rank
      // joined the rendezvous): its first line other than an error says so.
      if (ranks > 1 && !rendezvous_seen_) {
        const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_object() && j.value("type", "") != "error") {
          rendezvous_seen_ = true;
          ReportRendezvous(ranks);
        }
      }
      tracker_->OnLine(line, options_.clock->Now());
    };
    AppendToLog(absl::StrCat(
        "attempt ", command_.attempt(), " of ", command_.job_id(), ": ",
        options_.trainer_path, " --spec ", spec_path,
        ranks > 1 ? absl::StrCat(" x ", ranks, " ranks") : std::string(),
        " (CUDA_VISIBLE_DEVICES=\"", cuda_devices, "\"",
        ranks > 1 && !cuda_devices.empty() ? ", one GPU per rank" : "", ")"));
    if (absl::Status s = trainer.Start(std::move(to)); !s.ok()) {
      AppendToLog(absl::StrCat("could not start the trainer: ", s.message()));
      return Failed(v1::ERROR_REASON_INTERNAL,
                    absl::StrCat("starting the trainer: ", s.message()),
                    /*retryable=*/true);
    }
    if (options_.on_trainer_start) options_.on_trainer_start();
    {
      absl::MutexLock lock(&mu_);
      trainer_ = &trainer;
      if (killed_) {
        trainer.Kill();
      } else if (stop_ == StopKind::kCancel) {
        trainer.Stop(cancel_grace_);
      } else if (stop_ != StopKind::kNone) {
        trainer.Stop(options_.stop_grace);
      }
      if (ranks > 1) {
        const std::string msg =
            absl::StrCat(ranks, " trainer ranks started (pids ",
                         absl::StrJoin(trainer.pids(), ", "),
                         "), rendezvous on 127.0.0.1:", trainer.master_port());
        tracker_->AddEvent(v1::JOB_EVENT_TYPE_LOG, msg,
                           tracker_->progress().step(), options_.clock->Now());
        ranks_started_reported_ = true;
        ReportRendezvous(ranks);
      }
    }
    FTUNE_LOG(INFO) << "job " << command_.job_id() << " attempt "
                    << command_.attempt() << ": trainer pid(s) "
                    << absl::StrJoin(trainer.pids(), ", ");
    absl::Mutex exit_mu;
    bool exited = false;
    RankGroupExit group_exit;
    std::thread waiter([&] {
      RankGroupExit e = trainer.Wait();
      absl::MutexLock lock(&exit_mu);
      group_exit = std::move(e);
      exited = true;
    });
    size_t seen_checkpoints = 0;
    bool fenced = false;
    while (true) {
      {
        absl::MutexLock lock(&exit_mu);
        exit_mu.AwaitWithTimeout(absl::Condition(&exited), options_.poll);
        if (exited) break;
      }
      int64_t rss = 0;  // the ranks together
      for (pid_t pid : trainer.pids()) rss += PeakRss(pid);
      size_t checkpoints;
      {
        absl::MutexLock lock(&mu_);
        if (command_.gpu_indices().empty()) tracker_->SetPeakMemory(rss);
        checkpoints = tracker_->checkpoints().size();
      }
      if (checkpoints != seen_checkpoints) {
        seen_checkpoints = checkpoints;
        DeleteOldCheckpoints(spec);
      }
      if (!Flush(/*drain=*/false)) {
        fenced = true;
        break;
      }
    }
    waiter.join();
    {
      absl::MutexLock lock(&mu_);
      trainer_ = nullptr;
    }
    const TrainerExit exit = group_exit.Cause();
    if (options_.on_trainer_exit) {
      options_.on_trainer_exit(exit.exit_class, fenced || killed());
    }
    if (fenced || killed()) {
      AppendToLog("trainer killed (attempt fenced)");
      return std::nullopt;
    }
    if (ranks > 1) {
      AppendToLog(absl::StrCat("trainer ", group_exit.Describe(), " (",
                               group_exit.DescribeOthers(), ")"));
    } else {
      AppendToLog(absl::StrCat("trainer ", exit.Describe()));
    }
    if (group_exit.rank_failed) {
      const std::string msg = absl::StrCat(
          "rank ", group_exit.cause, " of ", ranks, " lost: ", exit.Describe(),
          "; the other ranks were stopped (", group_exit.DescribeOthers(), ")");
      absl::MutexLock lock(&mu_);
      tracker_->AddEvent(v1::JOB_EVENT_TYPE_WARNING, msg,
                         tracker_->progress().step(), options_.clock->Now());
    }
    // Report the last checkpoints first: only acknowledged ones let older
    // ones go. Then report what was deleted.
    if (!Flush(/*drain=*/true)) return std::nullopt;
    DeleteOldCheckpoints(spec);
    if (!Flush(/*drain=*/true)) return std::nullopt;

    StopKind stop;
    TrainerOutcome outcome;
    std::vector<v1::Checkpoint> checkpoints;
    v1::JobMetrics final_metrics;
    {
      absl::MutexLock lock(&mu_);
      stop = stop_;
      outcome = tracker_->outcome();
      checkpoints = tracker_->checkpoints();
      final_metrics = tracker_->FinalMetrics();
    }
    // A failed rank is named first: rank 0's error line (the one voice) may
    // only say that it lost a peer.
    const std::string described = group_exit.Describe();
    std::string why =
        outcome.error_message.empty()
            ? absl::StrCat("trainer ", described)
            : absl::StrCat(outcome.error_message, " (trainer ", described, ")");
    if (group_exit.rank_failed && group_exit.cause != 0) {
      why = absl::StrCat("trainer ", described, "; rank 0: ",
                         outcome.error_message.empty()
                             ? group_exit.exits[0].Describe()
                             : outcome.error_message);
    }
    v1::FinishAttemptRequest r;
    *r.mutable_final_metrics() = final_metrics;
    switch (exit.exit_class) {
      case ExitClass::kSuccess: {
        if (spec.generate) {  // a try job publishes nothing
          r.set_outcome(v1::ATTEMPT_OUTCOME_SUCCEEDED);
          return r;
        }
        absl::StatusOr<v1::Adapter> adapter = DescribeAdapter(
            spec.adapter_dir, command_.adapter_dir(), command_.adapter_name());
        if (!adapter.ok()) {
          return Failed(v1::ERROR_REASON_INTERNAL,
                        absl::StrCat("the trainer exited 0 but the adapter is "
                                     "not there: ",
                                     adapter.status().message()),
                        /*retryable=*/true);
        }
        if (adapter->step() == 0) adapter->set_step(outcome.done_step);
        r.set_outcome(v1::ATTEMPT_OUTCOME_SUCCEEDED);
        *r.mutable_adapter() = *adapter;
        return r;
      }
      case ExitClass::kBadInput:
        return Failed(v1::ERROR_REASON_INVALID_INPUT, why, false);
      case ExitClass::kDiverged:
        return Failed(v1::ERROR_REASON_NUMERIC_ERROR, why, false);
      default:
        break;
    }
    if (stop == StopKind::kCancel) {
      r.set_outcome(v1::ATTEMPT_OUTCOME_CANCELLED);
      return r;
    }
    if (stop == StopKind::kPause) {
      // The checkpoint the trainer wrote for the pause, else the latest one
      // this attempt wrote, else the one it resumed from.
      std::optional<v1::Checkpoint> cp;
      for (auto it = checkpoints.rbegin(); it != checkpoints.rend(); ++it) {
        if (!outcome.interrupted_path.empty() &&
            absl::EndsWith(outcome.interrupted_path, it->path())) {
          cp = *it;
          break;
        }
      }
      if (!cp.has_value() && !checkpoints.empty()) cp = checkpoints.back();
      if (!cp.has_value() && !command_.resume_checkpoint_path().empty()) {
        v1::Checkpoint c;
        c.set_path(command_.resume_checkpoint_path());
        const std::string& p = command_.resume_checkpoint_path();
        c.set_step(
            std::max<int64_t>(0, StepOfDirName(p.substr(p.rfind('/') + 1))));
        c.set_attempt(command_.attempt());
        cp = c;
      }
      if (cp.has_value()) {
        r.set_outcome(v1::ATTEMPT_OUTCOME_PAUSED);
        *r.mutable_checkpoint() = *cp;
        return r;
      }
      return Failed(
          v1::ERROR_REASON_TRAINER_CRASHED,
          absl::StrCat("paused, but the trainer wrote no checkpoint (", why,
                       ")"),
          /*retryable=*/true);
    }
    if (stop == StopKind::kShutdown) {
      return Failed(
          v1::ERROR_REASON_WORKER_LOST,
          absl::StrCat("the worker shut down; the trainer stopped at step ",
                       outcome.interrupted ? outcome.interrupted_step : 0,
                       checkpoints.empty()
                           ? ""
                           : absl::StrCat(" after checkpoint ",
                                          checkpoints.back().path())),
          /*retryable=*/true);
    }
    switch (exit.exit_class) {
      case ExitClass::kOutOfMemory: {
        contract::HyperParameters& hp = spec.spec.hp;
        const int64_t batch = hp.batch_size;
        const int64_t accum = hp.gradient_accumulation_steps;
        if (spec.auto_reduce_batch_on_oom && batch > 1) {
          hp.batch_size = batch / 2;
          hp.gradient_accumulation_steps = accum * 2;
          spec.spec.resume_from = "auto";
          const std::string msg = absl::StrCat(
              "out of memory with batch_size ", batch,
              "; continuing from the latest checkpoint with batch_size ",
              batch / 2, " and gradient_accumulation_steps ", accum * 2);
          AppendToLog(msg);
          {
            absl::MutexLock lock(&mu_);
            tracker_->AddEvent(v1::JOB_EVENT_TYPE_BATCH_SIZE_REDUCED, msg,
                               tracker_->progress().step(),
                               options_.clock->Now());
            tracker_->ResetOutcome();
          }
          if (!Flush(/*drain=*/true)) return std::nullopt;
          continue;
        }
        return Failed(v1::ERROR_REASON_OUT_OF_MEMORY,
                      absl::StrCat(why, " at batch_size ", batch),
                      /*retryable=*/true);
      }
      case ExitClass::kStopped:
        return Failed(v1::ERROR_REASON_TRAINER_CRASHED,
                      absl::StrCat("the trainer was stopped by a signal the "
                                   "agent did not send (",
                                   why, ")"),
                      /*retryable=*/true);
      default:
        if (exit.signal == 0 && exit.exit_code == kTrainerExitRetryable) {
          return Failed(v1::ERROR_REASON_INTERNAL, why, /*retryable=*/true);
        }
        return Failed(v1::ERROR_REASON_TRAINER_CRASHED, why,
                      /*retryable=*/true);
    }
  }
}

}  // namespace ftune::agent
