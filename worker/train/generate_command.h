// `ftune-train generate`: completions of text prompts with a model
// directory, optionally a PEFT adapter applied unmerged (docs/trainer.md
// "Generation"). One JSON object per completion on stdout, in the order of
// the prompts; the decode speed on stderr; exit 2 (naming the flag) for bad
// settings or input. Its flags are in ftune-train's usage
// (worker/train_main.cc kUsage).
#ifndef FTUNE_WORKER_TRAIN_GENERATE_COMMAND_H_
#define FTUNE_WORKER_TRAIN_GENERATE_COMMAND_H_

namespace ftune::train {

// argv[1] is "generate". Returns the exit code (exit_codes.h).
int RunGenerateCommand(int argc, char** argv);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_GENERATE_COMMAND_H_
