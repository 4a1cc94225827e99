// ftune-train: runs one training spec, or the throughput benchmark. The
// usage (kUsage below, printed by --help) lists every flag; docs/trainer.md
// has the spec and the progress lines.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include <torch/cuda.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/contract/capabilities.h"
#include "common/contract/progress.h"
#include "common/contract/train_spec.h"
#include "common/contract/try_spec.h"
#include "common/file_util.h"
#include "common/fs_faults.h"
#include "common/logging.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/train/bench.h"
#include "worker/train/distributed.h"
#include "worker/train/exit_codes.h"
#include "worker/train/families/model_config.h"
#include "worker/train/generate_command.h"
#include "worker/train/plan_command.h"
#include "worker/train/runtime.h"
#include "worker/train/text_data.h"
#include "worker/train/torch_compat.h"
#include "worker/train/trainer.h"
#include "worker/train/try_model.h"

namespace {

using namespace ftune::train;  // NOLINT: a main file
namespace contract = ftune::contract;

constexpr char kUsage[] = R"(usage:
  ftune-train --spec FILE [--threads N]
  ftune-train bench [--config config.json | --dim D --layers L --heads H
                    --kv-heads K --hidden F --vocab V] [--seq 256]
                    [--batch 8] [--rank 8] [--steps 5] [--warmup 1]
                    [--threads N] [--targets all-linear|q_proj,v_proj]
                    [--loss-chunk 256] [--dtype fp32|bf16|fp16]
                    [--device cpu|cuda[:N]] [--gradient-checkpointing]
                    [--method lora|full]
                    [--qlora [--quant-type nf4|fp4] [--block-size 64]
                             [--double-quant 1|0]]
                    [--attention blocked|dense] [--attention-block 128]
  ftune-train generate --model DIR [--adapter DIR] [--tokenizer DIR]
                    (--prompt TEXT [--chat] | --prompts FILE.jsonl)
                    [--max-new-tokens 128] [--temperature 0] [--top-k 0]
                    [--top-p 1] [--repetition-penalty 1] [--seed 0]
                    [--stop TEXT]... [--chat-template auto]
                    [--batch-size 8] [--dtype fp32|bf16|fp16]
                    [--device cpu|cuda[:N]] [--threads N]
                    [--qlora [--quant-type nf4|fp4] [--block-size 64]
                             [--double-quant 1|0]]
  ftune-train plan --config config.json [--method lora|qlora|full]
                    [--dtype fp32|bf16|fp16] [--batch 1] [--seq 2048]
                    [--rank 16] [--targets all-linear] [--dropout 0]
                    [--loss-chunk 256] [--gradient-checkpointing]
                    [--device cpu|cuda] [--capacity 24,48,80]
  ftune-train capabilities
  ftune-train --help

--spec runs one training job (docs/trainer.md): progress as one JSON object
per line on stdout, logs on stderr, exit codes 0 done, 1 retryable, 2 bad
input, 3 out of memory, 4 interrupted (SIGTERM/SIGINT: the current step
finishes and is checkpointed), 5 diverged, 6 a peer rank was lost
(retryable). With WORLD_SIZE, RANK, MASTER_ADDR and MASTER_PORT set (torchrun
--no-python, Slurm, Kubeflow) it runs as one data-parallel rank
(docs/distributed.md).
capabilities prints what this trainer runs as one JSON object (methods,
architectures, dtypes, cuda, max_gpus_per_job, chat_templates, version);
the worker agent reports it when it registers.
bench trains a random-initialised model of the given shape (default
stories15M: dim 288, 6 layers, 6 heads, hidden 768, vocab 32000) on
synthetic tokens and prints tokens_per_s and peak_memory_bytes; --method
full trains every weight instead of LoRA adapters.
plan prints the memory planner's predicted peak and its terms for a
model's config.json (docs/memory.md), or with --capacity the longest
sequence (a multiple of 64) that fits each memory size in GB (1e9 bytes).
generate prints one JSON object per completion on stdout ("prompt",
"completion", "finish_reason", "prompt_tokens", "completion_tokens", and
"expected" when the prompt has one), in the order of the prompts, and the
decode speed on stderr; exit 2 names a bad flag or prompt.
)";

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

void EmitLine(const contract::ProgressEvent& event) {
  std::string line = contract::ToJsonLine(event) + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

const char* Reason(int code) {
  switch (code) {
    case kExitBadInput:
      return contract::kReasonBadInput;
    case kExitOutOfMemory:
      return contract::kReasonOutOfMemory;
    case kExitDiverged:
      return contract::kReasonDiverged;
    case kExitPeerLost:
      return contract::kReasonPeerLost;
    default:
      return contract::kReasonRetryable;
  }
}

int Fail(const absl::Status& st) {
  int code = ExitCodeFor(st);
  EmitLine(contract::ErrorEvent{Reason(code), std::string(st.message())});
  FTUNE_LOG(ERROR) << st;
  return code;
}

// --name value pairs; INVALID_ARGUMENT for a dangling flag.
// Boolean flags (no value) are given as `switches`.
absl::StatusOr<std::map<std::string, std::string>> ParseFlags(
    int argc, char** argv, int first,
    const std::vector<std::string>& switches = {}) {
  std::map<std::string, std::string> flags;
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) == 0 && std::find(switches.begin(), switches.end(),
                                           a.substr(2)) != switches.end()) {
      flags[a.substr(2)] = "1";
      continue;
    }
    if (a.rfind("--", 0) != 0)
      return absl::InvalidArgumentError("unexpected argument \"" + a + "\"");
    auto eq = a.find('=');
    if (eq != std::string::npos) {
      flags[a.substr(2, eq - 2)] = a.substr(eq + 1);
    } else if (i + 1 < argc) {
      flags[a.substr(2)] = argv[++i];
    } else {
      return absl::InvalidArgumentError("flag " + a + " needs a value");
    }
  }
  return flags;
}

absl::Status IntFlag(const std::map<std::string, std::string>& f,
                     const std::string& name, int64_t* out) {
  auto it = f.find(name);
  if (it == f.end()) return absl::OkStatus();
  if (!absl::SimpleAtoi(it->second, out) || *out < 0)
    return absl::InvalidArgumentError("--" + name +
                                      " must be a non-negative integer");
  return absl::OkStatus();
}

int RunBenchCommand(int argc, char** argv) {
  auto flags = ParseFlags(argc, argv, 2, {"qlora", "gradient-checkpointing"});
  if (!flags.ok()) return Fail(flags.status());
  static const char* const kBenchFlags[] = {
      "config",         "dim",
      "layers",         "heads",
      "kv-heads",       "hidden",
      "vocab",          "seq",
      "batch",          "rank",
      "steps",          "warmup",
      "threads",        "loss-chunk",
      "qlora",          "quant-type",
      "block-size",     "double-quant",
      "targets",        "dtype",
      "device",         "gradient-checkpointing",
      "method",         "attention",
      "attention-block"};
  for (const auto& [name, value] : *flags) {
    if (std::find(std::begin(kBenchFlags), std::end(kBenchFlags), name) ==
        std::end(kBenchFlags))
      return Fail(absl::InvalidArgumentError("bench: unknown flag --" + name));
  }
  BenchOptions o;
  absl::Status st;
  if (flags->count("config")) {
    auto text = ftune::ReadFile(flags->at("config"));
    if (!text.ok()) return Fail(text.status());
    auto cfg = ParseModelConfig(*text, flags->at("config"));
    if (!cfg.ok()) return Fail(cfg.status());
    o.config = *cfg;
  } else {
    // Default shape: stories15M (llama2.c).
    int64_t dim = 288, layers = 6, heads = 6, kv = 0, hidden = 768,
            vocab = 32000;
    for (auto [n, p] : {std::pair<const char*, int64_t*>{"dim", &dim},
                        {"layers", &layers},
                        {"heads", &heads},
                        {"kv-heads", &kv},
                        {"hidden", &hidden},
                        {"vocab", &vocab}}) {
      if (!(st = IntFlag(*flags, n, p)).ok()) return Fail(st);
    }
    nlohmann::json c = {{"architectures", {"LlamaForCausalLM"}},
                        {"hidden_size", dim},
                        {"num_hidden_layers", layers},
                        {"num_attention_heads", heads},
                        {"num_key_value_heads", kv > 0 ? kv : heads},
                        {"intermediate_size", hidden},
                        {"vocab_size", vocab},
                        {"rms_norm_eps", 1e-5}};
    auto cfg = ParseModelConfig(c.dump(), "bench flags");
    if (!cfg.ok()) return Fail(cfg.status());
    o.config = *cfg;
  }
  int64_t threads = 0;
  for (auto [n, p] : {std::pair<const char*, int64_t*>{"seq", &o.seq},
                      {"batch", &o.batch},
                      {"rank", &o.rank},
                      {"steps", &o.steps},
                      {"warmup", &o.warmup},
                      {"threads", &threads},
                      {"loss-chunk", &o.loss_chunk_rows},
                      {"attention-block", &o.attention_block}}) {
    if (!(st = IntFlag(*flags, n, p)).ok()) return Fail(st);
  }
  o.threads = static_cast<int>(threads);
  o.qlora = flags->count("qlora") > 0;
  if (flags->count("method")) {
    const std::string& m = flags->at("method");
    if (m == "full") {
      o.full = true;
    } else if (m == "qlora") {
      o.qlora = true;
    } else if (m != "lora") {
      return Fail(absl::InvalidArgumentError(
          "--method must be lora, qlora or full, got \"" + m + "\""));
    }
  }
  o.gradient_checkpointing = flags->count("gradient-checkpointing") > 0;
  if (flags->count("quant-type")) {
    auto t = contract::FromName<contract::QuantType>(flags->at("quant-type"));
    if (!t)
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "--quant-type must be ", contract::AllNames<contract::QuantType>())));
    o.quantization.quant_type = *t;
  }
  if (!(st = IntFlag(*flags, "block-size", &o.quantization.block_size)).ok())
    return Fail(st);
  const int64_t bs = o.quantization.block_size;
  if (bs < 32 || bs > 4096 || (bs & (bs - 1)) != 0)
    return Fail(absl::InvalidArgumentError(
        "--block-size must be a power of two in [32, 4096]"));
  if (flags->count("double-quant"))
    o.quantization.double_quant = flags->at("double-quant") != "0";
  if ((flags->count("quant-type") || flags->count("block-size") ||
       flags->count("double-quant")) &&
      !o.qlora)
    return Fail(absl::InvalidArgumentError(
        "--quant-type, --block-size, --double-quant need --qlora"));
  if (flags->count("attention")) {
    const std::string& a = flags->at("attention");
    if (a != "blocked" && a != "dense")
      return Fail(absl::InvalidArgumentError(
          "--attention must be blocked or dense, got \"" + a + "\""));
    o.blocked_attention = a == "blocked";
    o.blocked_attention_single_documents = a == "blocked";
  }
  if (o.attention_block < 1)
    return Fail(absl::InvalidArgumentError("--attention-block must be >= 1"));
  if (flags->count("dtype")) o.dtype = flags->at("dtype");
  if (flags->count("device")) o.device = flags->at("device");
  if (flags->count("targets"))
    o.targets = absl::StrSplit(flags->at("targets"), ',', absl::SkipEmpty());
  if (o.seq < 2 || o.batch < 1 || o.rank < 1 || o.steps < 1 ||
      o.loss_chunk_rows < 1)
    return Fail(
        absl::InvalidArgumentError("--seq >= 2, --batch, --rank, --steps, "
                                   "--loss-chunk >= 1"));
  // Under a launcher (torchrun --no-python ... ftune-train bench): every
  // rank trains `--batch` rows and the gradients are all-reduced.
  auto launch =
      ReadLaunchEnv([](const char* name) { return std::getenv(name); });
  if (!launch.ok()) return Fail(launch.status());
  auto dist = Distributed::Connect(*launch, o.device);
  if (!dist.ok()) return Fail(dist.status());
  auto r = RunBench(
      o, [](const std::string& line) { std::cerr << line << std::endl; },
      dist->get());
  if (!r.ok()) return Fail(r.status());
  if (!(*dist)->is_main()) return kExitOk;  // rank 0 prints the figures
  std::printf("device=%s dtype=%s\n", o.device.c_str(), o.dtype.c_str());
  std::printf("method=%s\n", o.full ? "full" : o.qlora ? "qlora" : "lora");
  std::printf("trainable_parameters=%lld\n",
              static_cast<long long>(r->trainable_parameters));
  std::printf("world_size=%d\n", r->world_size);
  std::printf("seconds_per_step=%.4f\n", r->seconds_per_step);
  std::printf("tokens_per_s=%.1f\n", r->tokens_per_s);
  if (r->world_size > 1 || (*dist)->active()) {
    std::printf("allreduce_seconds_per_step=%.5f\n",
                r->allreduce_seconds_per_step);
    std::printf("allreduce_share=%.4f\n", r->allreduce_share);
  }
  if (o.qlora) {
    std::printf("quant_type=%s double_quant=%d block_size=%lld\n",
                contract::Name(o.quantization.quant_type),
                o.quantization.double_quant ? 1 : 0,
                static_cast<long long>(o.quantization.block_size));
    std::printf("quantized_parameters=%lld\n",
                static_cast<long long>(r->quantized_parameters));
    std::printf("quantized_bytes=%lld\n",
                static_cast<long long>(r->quantized_bytes));
    std::printf("bits_per_parameter=%.4f\n", r->bits_per_parameter);
  }
  std::printf("gradient_checkpointing=%d\n", o.gradient_checkpointing ? 1 : 0);
  std::printf("peak_memory_bytes=%lld\n",
              static_cast<long long>(r->peak_memory_bytes));
  // The planner's prediction next to the measured tensor peak.
  std::printf("tensor_peak_bytes=%lld\n",
              static_cast<long long>(r->tensor_peak_bytes));
  if (auto plan = contract::PlanMemory(MemoryPlanInputOf(o)); plan.ok()) {
    std::printf("predicted_peak_bytes=%lld\n",
                static_cast<long long>(plan->total));
    std::printf("predicted_breakdown=%s\n", plan->Breakdown().c_str());
  }
  return kExitOk;
}

// A try job's spec (common/contract/try_spec.h): generate, do not train.
int RunTrySpec(const std::string& path, const std::string& text,
               const std::map<std::string, std::string>& flags) {
  auto spec = contract::ParseTrySpec(text);
  if (!spec.ok()) return Fail(ftune::Annotate(spec.status(), path));
  int64_t threads = -1;
  absl::Status st = IntFlag(flags, "threads", &threads);
  if (!st.ok()) return Fail(st);
  if (threads >= 0) spec->train.threads = static_cast<int>(threads);
  TrainerHooks hooks;
  hooks.emit = EmitLine;
  try {
    st = RunTryModel(*spec, hooks);
  } catch (const c10::Error& e) {
    st = compat::IsOutOfMemory(e)
             ? absl::ResourceExhaustedError(e.what_without_backtrace())
             : absl::InternalError(absl::StrCat("LibTorch error: ",
                                                e.what_without_backtrace()));
  }
  return st.ok() ? kExitOk : Fail(st);
}

int RunSpecCommand(int argc, char** argv) {
  auto flags = ParseFlags(argc, argv, 1);
  if (!flags.ok()) return Fail(flags.status());
  if (!flags->count("spec"))
    return Fail(absl::InvalidArgumentError(
        "usage: ftune-train --spec FILE | bench ... (ftune-train --help)"));
  if (auto text = ftune::ReadFile(flags->at("spec"));
      text.ok() && contract::IsTrySpec(*text)) {
    return RunTrySpec(flags->at("spec"), *text, *flags);
  }
  auto spec = contract::LoadTrainSpec(flags->at("spec"));
  if (!spec.ok()) return Fail(spec.status());
  int64_t threads = -1;
  absl::Status st = IntFlag(*flags, "threads", &threads);
  if (!st.ok()) return Fail(st);
  if (threads >= 0) spec->threads = static_cast<int>(threads);
  // One rank of a process group under torchrun, Slurm, Kubeflow or
  // ftune-worker; one process without the launcher's variables.
  auto launch =
      ReadLaunchEnv([](const char* name) { return std::getenv(name); });
  if (!launch.ok()) return Fail(launch.status());
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  auto dist = Distributed::Connect(*launch, spec->device);
  if (!dist.ok()) return Fail(dist.status());
  TrainerHooks hooks;
  hooks.emit = EmitLine;
  hooks.stop = &g_stop;
  std::unique_ptr<DataSource> data = NewDataSource(*spec);
  auto result = RunTraining(*spec, *data, hooks, **dist);
  if (!result.ok()) return Fail(result.status());
  return result->interrupted ? kExitInterrupted : kExitOk;
}

// Injected storage faults, for tests (common/fs_faults.h): kExitOk, or
// the exit code of a bad plan.
int InstallInjectedFaults() {
  const char* plan = std::getenv("FTUNE_FS_FAULTS");
  if (plan == nullptr) return kExitOk;
  if (absl::Status st = ftune::fsfault::Install(plan); !st.ok()) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("FTUNE_FS_FAULTS: ", st.message())));
  }
  return kExitOk;
}

}  // namespace

// What this build runs (common/contract/capabilities.h). The lists come
// from the code that runs them: the families' architectures, the
// contract's methods and chat templates, the devices LibTorch sees.
int RunCapabilitiesCommand() {
  contract::TrainerCapabilities caps;
  caps.version = FTUNE_VERSION;
  caps.methods = {contract::Name(contract::Method::kLora),
                  contract::Name(contract::Method::kQlora),
                  contract::Name(contract::Method::kFull)};
  caps.architectures = SupportedArchitectures();
  std::string why;
  caps.cuda = compat::DeviceAvailable(torch::Device(torch::kCUDA), &why);
  caps.dtypes = {contract::Name(contract::Dtype::kFp32),
                 contract::Name(contract::Dtype::kBf16),
                 contract::Name(contract::Dtype::kFp64)};
  // fp16 needs a CUDA device (the spec parser refuses it on CPU).
  if (caps.cuda) caps.dtypes.push_back(contract::Name(contract::Dtype::kFp16));
  // One process per GPU (the worker agent starts them; docs/distributed.md).
  caps.max_gpus_per_job =
      caps.cuda ? static_cast<int32_t>(torch::cuda::device_count()) : 0;
  caps.max_ranks_per_job = static_cast<int32_t>(contract::range::kProcesses.hi);
  caps.chat_templates = contract::ChatTemplateNames();
  caps.objectives = {contract::Name(contract::Objective::kSft),
                     contract::Name(contract::Objective::kDpo),
                     contract::Name(contract::Objective::kOrpo)};
  std::cout << contract::CapabilitiesToJson(caps) << std::endl;
  return kExitOk;
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return kExitOk;
    }
  }
  ftune::train::ReexecWithOpenMpSpinPolicy(argv);
  ftune::train::KeepFreedMemoryInProcess();
  if (int code = InstallInjectedFaults(); code != kExitOk) return code;
  if (argc >= 2 && std::string(argv[1]) == "bench")
    return RunBenchCommand(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "generate")
    return ftune::train::RunGenerateCommand(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "plan")
    return ftune::train::RunPlanCommand(argc, argv);
  if (argc == 2 && std::string(argv[1]) == "capabilities")
    return RunCapabilitiesCommand();
  return RunSpecCommand(argc, argv);
}
