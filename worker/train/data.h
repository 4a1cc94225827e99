// Where the trainer's rows come from. The trainer sees only DataSource; the
// text pipeline (worker/train/text: tokenizers, chat templates, packing)
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
#include <vector>

#include "absl/status/statusor.h"
#include "worker/train/text/sequence.h"

namespace ftune::train {

struct DataOptions {
  int64_t max_seq_length = 512;
  bool packing = true;
  int64_t vocab_size = 0;  // ids must be < vocab_size (0: unchecked)
};

struct LoadedData {
  std::vector<PackedSequence> rows;
  std::string sha256;  // of the file's bytes
  int64_t num_examples = 0;
  int64_t num_target_tokens = 0;
};

class DataSource {
 public:
  virtual ~DataSource() = default;
  // INVALID_ARGUMENT names the line and field; NOT_FOUND for a missing file.
  virtual absl::StatusOr<LoadedData> Load(const std::string& path,
                                          const DataOptions& options) = 0;
};

class PretokenizedJsonlSource : public DataSource {
 public:
  absl::StatusOr<LoadedData> Load(const std::string& path,
                                  const DataOptions& options) override;
};

// Greedy packing of single examples (segment ids renumbered per row).
std::vector<PackedSequence> PackGreedy(
    const std::vector<PackedSequence>& examples, int64_t max_seq_length);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_DATA_H_
