// The padding a step's micro-batches carry: MakeBatch (model.h) pads each
// micro-batch to its longest row, and what that adds is computed without
// building the batches, for the `metrics` progress line's padding_share.
//
// Thread-safety: pure function.
#ifndef FTUNE_WORKER_TRAIN_BATCH_PADDING_H_
#define FTUNE_WORKER_TRAIN_BATCH_PADDING_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "worker/train/text/sequence.h"

namespace ftune::train {

struct BatchPadding {
  int64_t padded = 0;  // padding positions
  int64_t total = 0;   // every position, padding included
};

// `rows` in consecutive micro-batches of `micro_rows` (>= 1) rows.
inline BatchPadding PaddingOf(const std::vector<const PackedSequence*>& rows,
                              int64_t micro_rows) {
  BatchPadding out;
  const size_t step = static_cast<size_t>(std::max<int64_t>(1, micro_rows));
  for (size_t s = 0; s < rows.size(); s += step) {
    const size_t end = std::min(rows.size(), s + step);
    int64_t longest = 0, real = 0;
    for (size_t i = s; i < end; ++i) {
      const int64_t n = static_cast<int64_t>(rows[i]->input_ids.size());
      longest = std::max(longest, n);
      real += n;
    }
    const int64_t all = longest * static_cast<int64_t>(end - s);
    out.padded += all - real;
    out.total += all;
  }
  return out;
}

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_BATCH_PADDING_H_
