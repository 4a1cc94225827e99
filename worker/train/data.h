// Where the trainer's rows come from. The trainer sees only DataSource;
// TextJsonlSource (text_data.h, over the text pipeline in worker/train/text)
// implements it for raw JSONL datasets, and PretokenizedJsonlSource reads
// rows that were tokenized elsewhere:
//
//   {"input_ids": [...], "labels": [...]}                 one example
//   {"input_ids","labels","position_ids","segment_ids"}   a packed row
//
// labels are already shifted (labels[i] is the token after input_ids[i]) or
// -100. With packing, consecutive single examples are packed greedily into
// rows of at most max_seq_length tokens.
//
// Thread-compatible.
#ifndef FTUNE_WORKER_TRAIN_DATA_H_
#define FTUNE_WORKER_TRAIN_DATA_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dataset.h"
#include "worker/train/text/sequence.h"

namespace ftune::train {

struct DataOptions {
  int64_t max_seq_length = 512;
  bool packing = true;
  int64_t vocab_size = 0;  // ids must be < vocab_size (0: unchecked)
  // Shuffles examples before packing (text sources); same seed, same rows.
  uint64_t seed = 0;
  // Fraction in [0, 1) of the training examples held out for validation
  // when there is no validation file (text sources only).
  double validation_split = 0;
};

// What happened to one split's examples on the way to rows. Over-length
// examples are never silently changed: the trainer reports these counts in
// its {"type":"data"} progress line and in the manifest.
struct DataStats {
  int64_t examples = 0;            // examples read
  int64_t truncated = 0;           // over-length, cut to max_seq_length
  int64_t dropped_overlength = 0;  // over-length, dropped
  int64_t dropped_no_target = 0;   // no target left after truncation
  int64_t rows = 0;                // rows produced (after packing)
  int64_t total_tokens = 0;        // tokens in the rows
  int64_t trained_tokens = 0;      // labels != kIgnoreLabel
};

struct LoadedData {
  // With `pairs`, rows 2i and 2i+1 are the chosen and rejected sides of
  // preference pair i (text/dataset_builder.h) and num_examples counts
  // pairs.
  std::vector<PackedSequence> rows;
  bool pairs = false;
  std::string sha256;  // of the file's bytes ("" when there is no file)
  int64_t num_examples = 0;
  int64_t num_target_tokens = 0;
  DataStats stats;
};

struct TrainingData {
  LoadedData train;
  LoadedData validation;  // no rows: no validation
  // The first validation examples as read (text sources; not preference
  // pairs), in file order: the prompts of sample completions. Empty for
  // pre-tokenized data.
  std::vector<Example> validation_examples;
  // How the text was turned into tokens, for the progress stream and the
  // manifest: e.g. {"format","tokenizer","chat_template"}; may be empty.
  std::vector<std::pair<std::string, std::string>> description;
};

class DataSource {
 public:
  virtual ~DataSource() = default;
  // Loads the training file and the validation file (`validation_path` ""
  // for none; then options.validation_split may hold some training examples
  // out). The result must be a pure function of the files and options: a
  // resumed run relies on getting the same rows in the same order.
  // INVALID_ARGUMENT names the file, line and field; NOT_FOUND for a missing
  // file; FAILED_PRECONDITION for a model directory that cannot tokenize.
  virtual absl::StatusOr<TrainingData> Load(const std::string& train_path,
                                            const std::string& validation_path,
                                            const DataOptions& options) = 0;
};

// Pre-tokenized rows (see top). validation_split is not supported.
class PretokenizedJsonlSource : public DataSource {
 public:
  absl::StatusOr<TrainingData> Load(const std::string& train_path,
                                    const std::string& validation_path,
                                    const DataOptions& options) override;
  // One file.
  absl::StatusOr<LoadedData> LoadFile(const std::string& path,
                                      const DataOptions& options);
};

// Greedy packing of single examples (segment ids renumbered per row).
std::vector<PackedSequence> PackGreedy(
    const std::vector<PackedSequence>& examples, int64_t max_seq_length);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_DATA_H_
