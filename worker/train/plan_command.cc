#include "worker/train/plan_command.h"

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/contract/memory_plan.h"
#include "common/file_util.h"
#include "worker/train/exit_codes.h"
#include "worker/train/families/memory_shape.h"
#include "worker/train/families/model_config.h"

namespace ftune::train {
namespace {

int Bad(const std::string& why) {
  std::fprintf(stderr, "ftune-train plan: %s\n", why.c_str());
  return kExitBadInput;
}

}  // namespace

int RunPlanCommand(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--", 0) != 0) return Bad("unexpected argument \"" + a + "\"");
    if (a == "--gradient-checkpointing") {
      flags["gradient-checkpointing"] = "1";
    } else if (i + 1 < argc) {
      flags[a.substr(2)] = argv[++i];
    } else {
      return Bad("flag " + a + " needs a value");
    }
  }
  if (!flags.count("config")) return Bad("--config config.json is required");
  absl::StatusOr<std::string> text = ReadFile(flags["config"]);
  if (!text.ok())
    return Bad(absl::StrCat("--config: ", text.status().message()));
  absl::StatusOr<ModelConfig> config = ParseModelConfig(*text, flags["config"]);
  if (!config.ok()) return Bad(std::string(config.status().message()));

  contract::MemoryPlanInput in;
  in.model = MemoryShapeOf(*config);
  in.lora_rank = 16;
  in.micro_batch = 1;
  in.seq_len = 2048;
  for (auto [name, out] :
       {std::pair<const char*, int64_t*>{"batch", &in.micro_batch},
        {"seq", &in.seq_len},
        {"rank", &in.lora_rank},
        {"loss-chunk", &in.loss_chunk_rows}}) {
    if (flags.count(name) && !absl::SimpleAtoi(flags[name], out))
      return Bad(absl::StrCat("--", name, " must be an integer, got \"",
                              flags[name], "\""));
  }
  if (flags.count("dropout") &&
      !absl::SimpleAtod(flags["dropout"], &in.lora_dropout))
    return Bad("--dropout must be a number");
  if (flags.count("method")) in.method = flags["method"];
  if (flags.count("dtype")) in.dtype = flags["dtype"];
  if (flags.count("device")) {
    if (flags["device"] != "cpu" && flags["device"].rfind("cuda", 0) != 0)
      return Bad("--device must be cpu or cuda[:N], got \"" + flags["device"] +
                 "\"");
    in.cuda = flags["device"] != "cpu";
  }
  if (flags.count("targets"))
    in.target_modules =
        absl::StrSplit(flags["targets"], ',', absl::SkipEmpty());
  in.gradient_checkpointing = flags.count("gradient-checkpointing") > 0;
  absl::StatusOr<contract::MemoryPlan> plan = contract::PlanMemory(in);
  if (!plan.ok()) return Bad(std::string(plan.status().message()));

  if (!flags.count("capacity")) {
    std::printf("peak_bytes=%lld\n", static_cast<long long>(plan->total));
    for (auto [name, v] :
         {std::pair<const char*, int64_t>{"weights", plan->weights},
          {"trainable", plan->trainable},
          {"activations", plan->activations},
          {"attention", plan->attention},
          {"logits_loss", plan->logits_loss},
          {"workspace", plan->workspace}}) {
      std::printf("%s_bytes=%lld\n", name, static_cast<long long>(v));
    }
    std::printf("trainable_parameters=%lld\n",
                static_cast<long long>(plan->trainable_parameters));
    std::printf("breakdown=%s\n", plan->Breakdown().c_str());
    return kExitOk;
  }
  // --capacity 24,48,80: memory sizes in GB (1e9 bytes).
  for (absl::string_view gb :
       absl::StrSplit(flags["capacity"], ',', absl::SkipEmpty())) {
    double size = 0;
    if (!absl::SimpleAtod(gb, &size) || size <= 0)
      return Bad(absl::StrCat("--capacity: \"", gb, "\" is not a size in GB"));
    const int64_t seq = contract::LongestFittingSequence(
        in, static_cast<int64_t>(size * 1e9), /*step=*/64,
        /*max_seq=*/int64_t{1} << 22);
    std::printf("capacity_%sGB=%lld\n", std::string(gb).c_str(),
                static_cast<long long>(seq));
  }
  return kExitOk;
}

}  // namespace ftune::train
