// The unit of training data handed from the data pipeline (worker/train/text)
// to the trainer. Plain C++ so the pipeline needs no LibTorch.
#ifndef FTUNE_WORKER_TRAIN_TEXT_SEQUENCE_H_
#define FTUNE_WORKER_TRAIN_TEXT_SEQUENCE_H_

#include <cstdint>
#include <vector>

namespace ftune::train {

// Label value for positions that contribute no loss (prompt tokens, padding,
// the last token of an example).
inline constexpr int32_t kIgnoreLabel = -100;

// One row of a batch: one example, or several packed back to back.
// All four vectors have the same length (<= max_seq_len).
struct PackedSequence {
  // Token ids fed to the model.
  std::vector<int32_t> input_ids;
  // Target for position i, already shifted: labels[i] is the token the model
  // must predict after seeing input_ids[0..i] (so labels[i] == input_ids[i+1]
  // within an example), or kIgnoreLabel. Never crosses an example boundary.
  std::vector<int32_t> labels;
  // Position of each token within its own example: restarts at 0 for every
  // packed example (RoPE uses these).
  std::vector<int32_t> position_ids;
  // Index of the example each token belongs to within this row (0, 1, ...).
  // Attention is causal and confined to tokens with the same segment id.
  std::vector<int32_t> segment_ids;
};

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_TEXT_SEQUENCE_H_
