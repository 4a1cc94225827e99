// The DataSource for raw JSONL datasets (DESIGN.md "Datasets": chat
// "messages", "prompt"/"completion", "text"), over the text pipeline in
// worker/train/text: the model directory's tokenizer (tokenizer.json, else
// tokenizer.model), the chat template the spec names ("auto": the one in
// tokenizer_config.json when it is a known one), loss only on assistant /
// completion tokens, the over-length policy, seeded shuffling, the
// validation file or split, and packing (positions restart and attention is
// confined to each example; see text/dataset_builder.h).
//
// Load() is deterministic: the same files, tokenizer and options give the
// same rows in the same order, which is what makes a resumed run continue
// exactly where the checkpoint left it (the checkpoint stores the number of
// rows consumed).
//
// Plain C++ (no LibTorch). Thread-compatible.
#ifndef FTUNE_WORKER_TRAIN_TEXT_DATA_H_
#define FTUNE_WORKER_TRAIN_TEXT_DATA_H_

#include <memory>
#include <string>

#include "common/contract/train_spec.h"
#include "worker/train/data.h"
#include "worker/train/text/dataset_builder.h"

namespace ftune::train {

struct TextDataOptions {
  std::string model_dir;               // its tokenizer is used
  std::string chat_template = "auto";  // chatml|llama3|llama2|alpaca|auto
  OverlengthPolicy overlength = OverlengthPolicy::kTruncate;
};

class TextJsonlSource : public DataSource {
 public:
  explicit TextJsonlSource(TextDataOptions options)
      : options_(std::move(options)) {}
  // Errors: NOT_FOUND for a missing data file or a model directory without a
  // tokenizer; INVALID_ARGUMENT naming the file, line and field of a bad line,
  // an unknown chat template, a split left with nothing to train on, or a
  // token id the model's vocabulary does not have.
  absl::StatusOr<TrainingData> Load(const std::string& train_path,
                                    const std::string& validation_path,
                                    const DataOptions& options) override;

 private:
  TextDataOptions options_;
};

// The source a spec asks for (spec.data.format: "text" or "pretokenized").
std::unique_ptr<DataSource> NewDataSource(const contract::TrainSpec& spec);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_TEXT_DATA_H_
