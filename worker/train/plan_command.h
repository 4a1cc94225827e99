// `ftune-train plan`: the memory planner (common/contract/memory_plan.h)
// for a model's config.json and training settings, without LibTorch or a
// GPU: the predicted peak and its terms, or with --capacity the longest
// sequence that fits each memory size (docs/memory.md). Flags are in
// ftune-train's usage (worker/train_main.cc kUsage); exit 2 names a bad
// flag.
#ifndef FTUNE_WORKER_TRAIN_PLAN_COMMAND_H_
#define FTUNE_WORKER_TRAIN_PLAN_COMMAND_H_

namespace ftune::train {

// argv[1] is "plan". Returns the exit code (exit_codes.h).
int RunPlanCommand(int argc, char** argv);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_PLAN_COMMAND_H_
