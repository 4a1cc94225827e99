#include "worker/train/generate_command.h"

#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/contract/generation.h"
#include "common/contract/train_spec.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/train/adapter.h"
#include "worker/train/dtype.h"
#include "worker/train/exit_codes.h"
#include "worker/train/text_generation.h"
#include "worker/train/torch_compat.h"
#include "worker/train/trainer.h"

namespace ftune::train {

namespace {

using contract::GenerationSpec;

struct Flags {
  std::map<std::string, std::string> values;
  std::vector<std::string> stop;
  bool chat = false, qlora = false;
};

absl::Status BadFlag(absl::string_view flag, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", why));
}

absl::StatusOr<Flags> Parse(int argc, char** argv) {
  static const char* const kValued[] = {"model",         "adapter",
                                        "tokenizer",     "prompt",
                                        "prompts",       "max-new-tokens",
                                        "temperature",   "top-k",
                                        "top-p",         "repetition-penalty",
                                        "seed",          "stop",
                                        "chat-template", "batch-size",
                                        "dtype",         "device",
                                        "threads",       "quant-type",
                                        "block-size",    "double-quant"};
  Flags f;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0)
      return absl::InvalidArgumentError(
          absl::StrCat("generate: unexpected argument \"", a, "\""));
    a = a.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    if (a == "chat" || a == "qlora") {
      if (has_value) return BadFlag(a, "takes no value");
      (a == "chat" ? f.chat : f.qlora) = true;
      continue;
    }
    if (std::find(std::begin(kValued), std::end(kValued), a) ==
        std::end(kValued))
      return absl::InvalidArgumentError(
          absl::StrCat("generate: unknown flag --", a));
    if (!has_value) {
      if (i + 1 >= argc) return BadFlag(a, "needs a value");
      value = argv[++i];
    }
    if (a == "stop") {
      f.stop.push_back(value);
    } else {
      f.values[a] = value;
    }
  }
  return f;
}

template <typename T>
absl::Status Number(const Flags& f, const char* flag, T* out) {
  auto it = f.values.find(flag);
  if (it == f.values.end()) return absl::OkStatus();
  bool ok;
  if constexpr (std::is_floating_point_v<T>) {
    ok = absl::SimpleAtod(it->second, out);
  } else {
    ok = absl::SimpleAtoi(it->second, out);
  }
  if (!ok)
    return BadFlag(flag, absl::StrCat("not a number: \"", it->second, "\""));
  return absl::OkStatus();
}

// The flag spelling of a GenerationSpec field.
std::string FlagOf(std::string field) {
  for (char& c : field)
    if (c == '_') c = '-';
  return field;
}

absl::StatusOr<GenerationSpec> ReadGeneration(const Flags& f) {
  GenerationSpec g;
  FTUNE_RETURN_IF_ERROR(Number(f, "max-new-tokens", &g.max_new_tokens));
  FTUNE_RETURN_IF_ERROR(Number(f, "temperature", &g.temperature));
  FTUNE_RETURN_IF_ERROR(Number(f, "top-k", &g.top_k));
  FTUNE_RETURN_IF_ERROR(Number(f, "top-p", &g.top_p));
  FTUNE_RETURN_IF_ERROR(Number(f, "repetition-penalty", &g.repetition_penalty));
  int64_t seed = 0;
  FTUNE_RETURN_IF_ERROR(Number(f, "seed", &seed));
  if (seed < 0)
    return BadFlag("seed", absl::StrCat("must be >= 0, got ", seed));
  g.seed = static_cast<uint64_t>(seed);
  g.stop = f.stop;
  if (auto bad = contract::CheckGeneration(g)) {
    std::string flag = FlagOf(bad->field);
    if (flag.rfind("stop[", 0) == 0) flag = "stop";
    return BadFlag(flag, bad->why);
  }
  return g;
}

absl::StatusOr<std::vector<GenerationPrompt>> ReadPrompts(const Flags& f) {
  const bool one = f.values.count("prompt") > 0,
             file = f.values.count("prompts") > 0;
  if (one == file)
    return absl::InvalidArgumentError(
        "generate: give exactly one of --prompt TEXT or --prompts FILE");
  if (file) {
    if (f.chat) return BadFlag("chat", "only with --prompt");
    const std::string& path = f.values.at("prompts");
    FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    auto prompts = ParsePrompts(text);
    if (!prompts.ok()) return Annotate(prompts.status(), path);
    return prompts;
  }
  Example ex;
  if (f.chat) {
    ex.format = DatasetFormat::kMessages;
    ex.messages.push_back(Message{Role::kUser, f.values.at("prompt"), true});
  } else {
    ex.format = DatasetFormat::kPromptCompletion;
    ex.prompt = f.values.at("prompt");
  }
  return std::vector<GenerationPrompt>{PromptFromExample(ex)};
}

absl::StatusOr<ModelOptions> ReadModelOptions(const Flags& f) {
  ModelOptions o;
  if (f.values.count("device")) o.device = f.values.at("device");
  if (!contract::IsDeviceName(o.device))
    return BadFlag("device", "must be cpu, cuda or cuda:N");
  contract::Dtype dtype = contract::DefaultDtype(o.device);
  if (f.values.count("dtype")) {
    auto d = contract::FromName<contract::Dtype>(f.values.at("dtype"));
    if (!d)
      return BadFlag(
          "dtype",
          absl::StrCat("must be ", contract::AllNames<contract::Dtype>()));
    dtype = *d;
  }
  if (dtype == contract::Dtype::kFp16 && o.device == "cpu")
    return BadFlag("dtype", "fp16 needs a CUDA device");
  o.dtype = TorchDtype(dtype);
  std::string why;
  if (!compat::DeviceAvailable(compat::ParseDevice(o.device), &why))
    return BadFlag("device", why);
  const bool quant_flags = f.values.count("quant-type") ||
                           f.values.count("block-size") ||
                           f.values.count("double-quant");
  if (quant_flags && !f.qlora)
    return absl::InvalidArgumentError(
        "--quant-type, --block-size, --double-quant need --qlora");
  if (f.qlora) {
    QuantOptions q;
    if (f.values.count("quant-type")) {
      auto t =
          contract::FromName<contract::QuantType>(f.values.at("quant-type"));
      if (!t)
        return BadFlag("quant-type",
                       absl::StrCat("must be ",
                                    contract::AllNames<contract::QuantType>()));
      q.type = *t;
    }
    FTUNE_RETURN_IF_ERROR(Number(f, "block-size", &q.block_size));
    if (auto why = contract::RangeViolation(contract::range::kQuantBlockSize,
                                            static_cast<double>(q.block_size));
        why || (q.block_size & (q.block_size - 1)) != 0)
      return BadFlag("block-size", "must be a power of two in [32, 4096]");
    if (f.values.count("double-quant"))
      q.double_quant = f.values.at("double-quant") != "0";
    o.quantization = q;
  }
  return o;
}

int Fail(const absl::Status& st) {
  std::cerr << "ftune-train generate: " << st.message() << std::endl;
  return ExitCodeFor(st);
}

absl::Status Run(const Flags& f) {
  if (!f.values.count("model"))
    return absl::InvalidArgumentError("generate: --model DIR is required");
  FTUNE_ASSIGN_OR_RETURN(GenerationSpec spec, ReadGeneration(f));
  int64_t batch_size = contract::defaults::kGenerateBatchSize, threads = 0;
  FTUNE_RETURN_IF_ERROR(Number(f, "batch-size", &batch_size));
  if (auto why = contract::RangeViolation(contract::range::kGenerateBatchSize,
                                          static_cast<double>(batch_size)))
    return BadFlag("batch-size", *why);
  FTUNE_RETURN_IF_ERROR(Number(f, "threads", &threads));
  if (threads < 0) return BadFlag("threads", "must be >= 0");
  FTUNE_ASSIGN_OR_RETURN(std::vector<GenerationPrompt> prompts, ReadPrompts(f));
  FTUNE_ASSIGN_OR_RETURN(ModelOptions mopts, ReadModelOptions(f));
  const std::string model_dir = f.values.at("model");
  const std::string tokenizer_dir =
      f.values.count("tokenizer") ? f.values.at("tokenizer") : model_dir;
  const std::string chat_template =
      f.values.count("chat-template") ? f.values.at("chat-template") : "auto";
  compat::SetThreads(static_cast<int>(threads));
  FTUNE_ASSIGN_OR_RETURN(
      std::unique_ptr<TextGenerator> gen,
      TextGenerator::Create(tokenizer_dir, model_dir, chat_template));
  FTUNE_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                         Model::Load(model_dir, mopts));
  if (f.values.count("adapter"))
    FTUNE_RETURN_IF_ERROR(LoadAdapter(*model, f.values.at("adapter")));
  GenerationStats stats;
  FTUNE_ASSIGN_OR_RETURN(std::vector<Completion> out,
                         gen->Run(*model, prompts, spec, batch_size, &stats));
  for (size_t i = 0; i < out.size(); ++i) {
    const GenerationPrompt& p = prompts[i];
    nlohmann::json j = {{"prompt", p.display},
                        {"completion", out[i].text},
                        {"finish_reason", out[i].finish_reason},
                        {"prompt_tokens", out[i].prompt_tokens},
                        {"completion_tokens", out[i].ids.size()}};
    if (p.expected) j["expected"] = *p.expected;
    // Invalid UTF-8 (a completion cut inside a character) is replaced.
    std::cout << j.dump(-1, ' ', false,
                        nlohmann::json::error_handler_t::replace)
              << "\n";
  }
  std::cout.flush();
  std::fprintf(stderr,
               "generate: %zu prompts, %lld prompt tokens (prefill %.3f s), "
               "%lld tokens decoded in %.3f s: %.1f tokens/s\n",
               out.size(), static_cast<long long>(stats.prompt_tokens),
               stats.prefill_seconds,
               static_cast<long long>(stats.generated_tokens),
               stats.decode_seconds, stats.decode_tokens_per_s());
  return absl::OkStatus();
}

}  // namespace

int RunGenerateCommand(int argc, char** argv) {
  absl::StatusOr<Flags> f = Parse(argc, argv);
  if (!f.ok()) return Fail(f.status());
  try {
    absl::Status st = Run(*f);
    if (!st.ok()) return Fail(st);
  } catch (const c10::Error& e) {
    if (compat::IsOutOfMemory(e))
      return Fail(absl::ResourceExhaustedError(e.what_without_backtrace()));
    return Fail(absl::InternalError(
        absl::StrCat("LibTorch error: ", e.what_without_backtrace())));
  }
  return kExitOk;
}

}  // namespace ftune::train
