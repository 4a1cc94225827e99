// ftune-stand-in-trainer: a scripted stand-in for ftune-train in tests. It
// reads the same spec JSON (--spec FILE), prints the same progress lines,
// writes checkpoints and publishes an adapter the same way (atomically), but
// trains nothing: each step sleeps FTUNE_STAND_IN_STEP_MS (default 50) and
// the loss is 2 / (1 + 0.1 * step) + 0.5.
//
// The spec is read with ftune-train's own parser (common/contract), so it
// refuses what the trainer refuses, with the same message and exit code 2.
// Steps: hyperparameters.max_steps, else ceil(10 * hyperparameters.epochs).
// Checkpoints: checkpoint_dir/step-NNNNNNNN/ every
// checkpoint_every_steps (not at the last step), with trainer_state.json
// {"format":"ftune-stand-in-checkpoint","step":N}. resume_from: "auto" =
// latest step dir in checkpoint_dir (none: from scratch), or a step dir.
// Evaluation with a validation source, every eval_every_steps (0: a tenth
// of max_steps, or every 10 steps) and at the last step: eval_loss = loss +
// 0.25, or the next of FTUNE_STAND_IN_EVAL_LOSSES ("1.9,1.4,1.6": the
// first evaluation's, the second's, ...; the last repeats). As the real
// trainer, the published manifest names the best evaluation's step.
// Sample completions as the real trainer makes them (samples.eval_samples
// with a validation source, sft): a samples line at step 0 (not when
// resumed past it) and after every evaluation, sample i being prompt
// "prompt i", expected "expected i" (none for an odd i), completion
// "completion i at step S".
// SIGTERM/SIGINT: finish the step, checkpoint, print "interrupted", exit 4.
//
// FTUNE_STAND_IN_MODE:
//   succeed (default)  publish output_dir, print "done", exit 0
//   fail_retryable     exit 1 after the first step
//   fail_bad_input     exit 2 before the first step
//   oom                exit 3 after the first step while
//                      hyperparameters.batch_size > 1 (then like succeed)
//   diverge            exit 5 after the first step
//   crash              abort() after the first step
//   hang               ignore SIGTERM after "start"; only SIGKILL ends it
// `capabilities`: prints what ftune-train prints (every family's
// architecture, both methods, every dtype) but as a CUDA trainer running up
// to 16 GPUs a job, since the stand-in runs anything; or, verbatim, the
// JSON in FTUNE_STAND_IN_CAPABILITIES (a trainer that runs less).
// Under the launcher variables (WORLD_SIZE > 1, RANK) as the worker agent
// sets them for a multi-rank job: rank 0 behaves as above; the others print
// only error lines, write no checkpoint and publish nothing (like the real
// trainer's ranks) and run every step from 0 (no resume), and there is no
// process group: a rank does not notice that a peer died (the agent must
// stop it). FTUNE_STAND_IN_FAIL_RANK=R:
// only rank R follows FTUNE_STAND_IN_MODE, the others succeed. Each rank
// writes "rank R of W MASTER_PORT=P" to stderr at start.
// FTUNE_STAND_IN_RECORD=FILE: appends "<output_dir> start_step=<N> pid=<P>"
// when a run starts and "<output_dir> step=<N> pid=<P>" after each step (one
// write(2) each, so concurrent runs interleave whole lines).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/contract/capabilities.h"
#include "common/contract/progress.h"
#include "common/contract/train_spec.h"
#include "common/sha256.h"
#include "nlohmann/json.hpp"
#include "worker/train/families/model_config.h"

namespace {

namespace fs = std::filesystem;
namespace contract = ftune::contract;
using nlohmann::json;

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }
// Rank 0 (or no launcher): the one voice.
bool g_main = true;

void Emit(const contract::ProgressEvent& event) {
  if (!g_main && !std::holds_alternative<contract::ErrorEvent>(event)) return;
  const std::string line = contract::ToJsonLine(event) + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

int Error(int code, const char* reason, const std::string& message) {
  Emit(contract::ErrorEvent{reason, message});
  std::cerr << "stand-in trainer: " << message << std::endl;
  return code;
}

void Record(const std::string& text) {
  const char* path = std::getenv("FTUNE_STAND_IN_RECORD");
  if (path == nullptr || *path == '\0') return;
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  const std::string line = text + "\n";
  ssize_t ignored = ::write(fd, line.data(), line.size());
  (void)ignored;
  ::close(fd);
}

bool WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
  out.close();
  return static_cast<bool>(out);
}

double Loss(int64_t step) { return 2.0 / (1.0 + 0.1 * step) + 0.5; }

std::string StepDir(const std::string& dir, int64_t step) {
  return dir + absl::StrFormat("/step-%08d", step);
}

// Latest complete step dir under `dir`, or "".
std::string Latest(const std::string& dir) {
  std::error_code ec;
  std::string best;
  int64_t best_step = -1;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string n = it->path().filename().string();
    int64_t step;
    if (n.rfind("step-", 0) == 0 && n.find(".tmp") == std::string::npos &&
        absl::SimpleAtoi(n.substr(5), &step) && step > best_step &&
        fs::exists(it->path() / "trainer_state.json")) {
      best_step = step;
      best = it->path().string();
    }
  }
  return best;
}

// Publishes `final_dir` from a staging dir filled by `fill`: temp + rename.
bool Publish(const std::string& final_dir,
             const std::function<bool(const std::string&)>& fill) {
  const std::string staging = absl::StrCat(final_dir, ".tmp-", ::getpid());
  std::error_code ec;
  fs::remove_all(staging, ec);
  fs::create_directories(staging, ec);
  if (ec || !fill(staging)) return false;
  fs::remove_all(final_dir, ec);
  return ::rename(staging.c_str(), final_dir.c_str()) == 0;
}

// A valid safetensors file with one 1x2 float32 tensor.
std::string TinySafetensors(int64_t step) {
  const std::string header =
      "{\"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight\":"
      "{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]}}";
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(n >> (8 * i)));
  out += header;
  const float values[2] = {static_cast<float>(step), 0.5f};
  out.append(reinterpret_cast<const char*>(values), sizeof(values));
  return out;
}

}  // namespace

int PrintCapabilities() {
  if (const char* c = std::getenv("FTUNE_STAND_IN_CAPABILITIES")) {
    std::cout << c << std::endl;
    return 0;
  }
  contract::TrainerCapabilities caps;
  caps.version = "stand-in";
  caps.methods = {"lora", "qlora"};
  caps.architectures = ftune::train::SupportedArchitectures();
  caps.dtypes = {"fp32", "bf16", "fp16", "fp64"};
  caps.cuda = true;
  caps.max_gpus_per_job = 16;
  caps.max_ranks_per_job = 16;
  caps.chat_templates = contract::ChatTemplateNames();
  caps.objectives = {"sft", "dpo", "orpo"};
  std::cout << contract::CapabilitiesToJson(caps) << std::endl;
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "capabilities") {
    return PrintCapabilities();
  }
  std::string spec_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--spec" && i + 1 < argc) {
      spec_path = argv[++i];
    } else if (a.rfind("--spec=", 0) == 0) {
      spec_path = a.substr(7);
    }
  }
  if (spec_path.empty())
    return Error(2, contract::kReasonBadInput, "usage: --spec FILE");
  // The same parser as ftune-train: what one refuses, both refuse.
  absl::StatusOr<contract::TrainSpec> parsed =
      contract::LoadTrainSpec(spec_path);
  if (!parsed.ok()) {
    return Error(2, contract::kReasonBadInput,
                 std::string(parsed.status().message()));
  }
  const contract::TrainSpec& spec = *parsed;
  int64_t rank = 0, world = 1;
  if (const char* w = std::getenv("WORLD_SIZE")) {
    if (!absl::SimpleAtoi(w, &world) || world < 1) world = 1;
  }
  if (const char* r = std::getenv("RANK")) {
    if (!absl::SimpleAtoi(r, &rank) || rank < 0) rank = 0;
  }
  g_main = rank == 0;
  std::string mode = [] {
    const char* m = std::getenv("FTUNE_STAND_IN_MODE");
    return std::string(m != nullptr && *m ? m : "succeed");
  }();
  if (const char* f = std::getenv("FTUNE_STAND_IN_FAIL_RANK");
      f != nullptr && *f != '\0' && absl::StrCat(rank) != f) {
    mode = "succeed";
  }
  int64_t step_ms = 50;
  if (const char* s = std::getenv("FTUNE_STAND_IN_STEP_MS")) {
    if (!absl::SimpleAtoi(s, &step_ms) || step_ms < 0) step_ms = 50;
  }
  const std::string& output_dir = spec.output_dir;
  const std::string& checkpoint_dir = spec.checkpoint_dir;
  const std::string& train_data = spec.train_data;
  const contract::HyperParameters& hp = spec.hp;
  // Ten steps an epoch, like a small data set.
  const int64_t total =
      hp.max_steps > 0 ? hp.max_steps
                       : static_cast<int64_t>(std::ceil(10 * hp.epochs - 1e-9));
  const int64_t every =
      spec.checkpoint_dir.empty() ? 0 : hp.checkpoint_every_steps;
  const bool validates =
      !spec.validation_data.empty() || spec.data.validation_split > 0;
  const int64_t eval_every =
      !validates ? 0
      : hp.eval_every_steps > 0
          ? hp.eval_every_steps
          : contract::DefaultEvalEverySteps(hp.max_steps, 10);
  const int64_t batch = hp.batch_size;
  std::vector<double> eval_losses;
  if (const char* e = std::getenv("FTUNE_STAND_IN_EVAL_LOSSES")) {
    for (absl::string_view part : absl::StrSplit(e, ',', absl::SkipEmpty())) {
      double v;
      if (absl::SimpleAtod(part, &v)) eval_losses.push_back(v);
    }
  }

  if (!fs::exists(train_data)) {
    return Error(2, contract::kReasonBadInput,
                 "train_data " + train_data + " not found");
  }
  // Ranks other than 0 neither publish nor resume: without a process group
  // they cannot follow rank 0 (which may have published or checkpointed
  // already when they start); each runs the steps from 0.
  if (g_main && fs::exists(output_dir)) {
    return Error(2, contract::kReasonBadInput,
                 "output_dir " + output_dir + " already exists");
  }

  // Resume.
  int64_t step = 0;
  const std::string& resume_from = spec.resume_from;
  if (!resume_from.empty() && g_main) {
    std::string dir = resume_from == "auto" ? Latest(checkpoint_dir)
                      : fs::exists(resume_from + "/trainer_state.json")
                          ? resume_from
                          : Latest(resume_from);
    if (dir.empty() && resume_from != "auto") {
      return Error(2, contract::kReasonBadInput,
                   "resume_from " + resume_from + ": none");
    }
    if (!dir.empty()) {
      std::ifstream st(dir + "/trainer_state.json");
      std::stringstream sst;
      sst << st.rdbuf();
      const json state = json::parse(sst.str(), nullptr, false);
      if (state.is_discarded() || !state.contains("step")) {
        return Error(2, contract::kReasonBadInput,
                     dir + ": not a stand-in checkpoint");
      }
      step = state["step"].get<int64_t>();
      Emit(contract::ResumedEvent{step, dir});
    }
  }
  Record(absl::StrCat(output_dir, " start_step=", step, " pid=", ::getpid(),
                      world > 1 ? absl::StrCat(" rank=", rank) : ""));
  if (world > 1) {
    const char* port = std::getenv("MASTER_PORT");
    std::cerr << "rank " << rank << " of " << world
              << " MASTER_PORT=" << (port == nullptr ? "<unset>" : port)
              << std::endl;
  }
  if (mode == "fail_bad_input") {
    return Error(2, contract::kReasonBadInput,
                 "FTUNE_STAND_IN_MODE=fail_bad_input");
  }
  // Before the line below, so that a test that saw the line knows a
  // SIGTERM now reaches OnSignal.
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  // On stderr (the attempt's log), so tests can see what the agent set.
  const char* cuda = std::getenv("CUDA_VISIBLE_DEVICES");
  std::cerr << "stand-in trainer: pid " << ::getpid() << " start_step " << step
            << " CUDA_VISIBLE_DEVICES="
            << (cuda == nullptr ? "<unset>" : absl::StrCat("\"", cuda, "\""))
            << std::endl;
  Emit(contract::DataEvent{"train", 8, 4, 512, 256, 0, 0, 0, {}});
  Emit(contract::StartEvent{total, 4, 8, 0, 2, spec.threads});
  if (mode == "hang") {
    std::signal(SIGTERM, SIG_IGN);
    std::signal(SIGINT, SIG_IGN);
    while (true) ::pause();
  }

  auto checkpoint = [&](int64_t s) -> std::string {
    const std::string dir = StepDir(checkpoint_dir, s);
    std::error_code ec;
    fs::create_directories(checkpoint_dir, ec);
    const bool ok = Publish(dir, [&](const std::string& d) {
      return WriteFile(d + "/adapter_model.safetensors", TinySafetensors(s)) &&
             WriteFile(
                 d + "/trainer_state.json",
                 json({{"format", "ftune-stand-in-checkpoint"}, {"step", s}})
                     .dump());
    });
    if (!ok) return "";
    Emit(contract::CheckpointEvent{s, dir});
    return dir;
  };

  const int32_t samples =
      validates && spec.objective == contract::Objective::kSft
          ? spec.samples.eval_samples
          : 0;
  auto emit_samples = [&](int64_t s) {
    if (samples <= 0) return;
    contract::SamplesEvent e;
    e.step = s;
    for (int32_t i = 0; i < samples; ++i) {
      e.samples.push_back(
          {absl::StrCat("prompt ", i),
           i % 2 == 0 ? std::optional(absl::StrCat("expected ", i))
                      : std::nullopt,
           absl::StrCat("completion ", i, " at step ", s), "end"});
    }
    Emit(e);
  };
  if (step == 0) emit_samples(0);

  std::string last_checkpoint;
  double best_eval = 1e30;
  int64_t best_step = 0;
  size_t evals = 0;
  while (step < total) {
    ::usleep(static_cast<useconds_t>(step_ms * 1000));
    ++step;
    Record(absl::StrCat(output_dir, " step=", step, " pid=", ::getpid(),
                        world > 1 ? absl::StrCat(" rank=", rank) : ""));
    contract::MetricsEvent metrics;
    metrics.step = step;
    metrics.total_steps = total;
    metrics.epoch = static_cast<double>(step) / 10.0;
    metrics.loss = Loss(step);
    metrics.lr = 1e-4;
    metrics.grad_norm = 1.0;
    metrics.tokens_per_s = 1000.0;
    // A preference job's statistics, as the real trainer reports them:
    // accuracy rising from 0.5 by 0.05 a step (to 1), margin 0.1 a step.
    const bool preference = spec.objective != contract::Objective::kSft;
    auto preference_at = [](int64_t s, double shift) {
      const double acc = std::min(1.0, 0.5 + 0.05 * static_cast<double>(s));
      const double margin = 0.1 * static_cast<double>(s) + shift;
      return contract::PreferenceMetrics{margin / 2, -margin / 2,   acc, margin,
                                         -10.0,      -10.0 - margin};
    };
    if (preference) metrics.preference = preference_at(step, 0);
    Emit(metrics);
    if (mode == "fail_retryable") {
      return Error(1, contract::kReasonRetryable,
                   "FTUNE_STAND_IN_MODE=fail_retryable");
    }
    if (mode == "oom" && batch > 1) {
      return Error(
          3, contract::kReasonOutOfMemory,
          absl::StrCat("FTUNE_STAND_IN_MODE=oom at batch_size ", batch));
    }
    if (mode == "diverge") {
      return Error(5, contract::kReasonDiverged, "loss is nan");
    }
    if (mode == "crash") std::abort();
    if (eval_every > 0 && (step % eval_every == 0 || step == total)) {
      const double e =
          eval_losses.empty()
              ? Loss(step) + 0.25
              : eval_losses[std::min(evals, eval_losses.size() - 1)];
      ++evals;
      if (e < best_eval) {
        best_eval = e;
        best_step = step;
      }
      Emit(contract::EvalEvent{step, e, best_eval, best_step,
                               preference
                                   ? std::optional(preference_at(step, -0.05))
                                   : std::nullopt});
      emit_samples(step);
    }
    const bool last = step == total;
    const bool stop = g_stop.load();
    if (((every > 0 && step % every == 0) || stop) && !last &&
        !checkpoint_dir.empty() && g_main) {
      last_checkpoint = checkpoint(step);
    }
    if (stop && !last) {
      Emit(contract::InterruptedEvent{step, last_checkpoint});
      return 4;
    }
  }

  if (!g_main) return 0;  // rank 0 publishes
  const bool published = Publish(output_dir, [&](const std::string& d) {
    const json config = {{"peft_type", "LORA"},
                         {"base_model_name_or_path", spec.base_model_name},
                         {"r", spec.lora.rank},
                         {"task_type", "CAUSAL_LM"}};
    if (!WriteFile(d + "/adapter_config.json", config.dump(2)) ||
        !WriteFile(d + "/adapter_model.safetensors", TinySafetensors(step))) {
      return false;
    }
    json files = json::object();
    for (const char* f : {"adapter_config.json", "adapter_model.safetensors"}) {
      auto sha = ftune::Sha256File(d + "/" + f);
      if (!sha.ok()) return false;
      files[f] = {{"sha256", *sha}};
    }
    const json manifest = {
        {"format", "ftune-adapter"},
        {"format_version", 1},
        {"stand_in", true},
        {"files", files},
        {"spec", json::parse(spec.source_json, nullptr, false)},
        {"metrics", best_step > 0 ? json{{"steps", step},
                                         {"final_train_loss", Loss(step)},
                                         {"best_eval_loss", best_eval},
                                         {"best_step", best_step}}
                                  : json{{"steps", step},
                                         {"final_train_loss", Loss(step)}}}};
    return WriteFile(d + "/ftune_manifest.json", manifest.dump(2));
  });
  if (!published) {
    return Error(1, contract::kReasonRetryable,
                 "publishing " + output_dir + " failed");
  }
  Emit(contract::DoneEvent{
      step, output_dir, Loss(step),
      best_step > 0 ? std::optional<double>(best_eval) : std::nullopt});
  return 0;
}
