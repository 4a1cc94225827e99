// One training step and one evaluation of a preference objective (DPO, IPO,
// ORPO; preference.h) over (chosen, rejected) row pairs from the text
// pipeline (LoadedData::pairs: rows 2i and 2i+1).
//
// Per micro-batch of pairs: the reference log-probabilities (DPO, IPO) come
// from the same model with every LoRA branch switched off, without grad and
// without dropout, so no second copy of the weights is held; then the
// policy's, with grad; the objective's loss, weighted by the micro-batch's
// share of the step's pairs, is backpropagated. So the step's gradient and
// its reported loss and statistics are the means over all its pairs,
// whatever the micro-batch size.
//
// Thread-compatible. Tensor ops may throw c10::Error (out of memory
// included, which the trainer's retry handles).
#ifndef FTUNE_WORKER_TRAIN_OBJECTIVES_PREFERENCE_STEP_H_
#define FTUNE_WORKER_TRAIN_OBJECTIVES_PREFERENCE_STEP_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "common/contract/train_spec.h"
#include "worker/train/adapter.h"
#include "worker/train/objectives/preference.h"
#include "worker/train/text/sequence.h"

namespace ftune::train {

class Model;

// The objective a spec names (DPO with its loss kind, or ORPO). Call only
// for a preference objective.
PreferenceOptions PreferenceOptionsFor(const contract::TrainSpec& spec);

struct PreferenceStepResult {
  double loss = 0;
  PreferenceStats stats;
  int64_t tokens = 0;  // non-padding tokens of both sides
};

// Forward and backward over `rows` (2 per pair, chosen first) in
// micro-batches of `micro_pairs` pairs; gradients accumulate into `params`
// (cleared first). `before_micro_batch` (may be empty) is called with each
// micro-batch's row count before its forward passes.
//
// Each micro-batch is weighted by its share of `step_pairs`, the pairs of
// the whole step: 0 means those of `rows`; a data-parallel rank passes the
// step's pairs over all ranks, so the sums over ranks of the gradients, the
// loss and the statistics are the one-process step's.
PreferenceStepResult PreferenceForwardBackward(
    Model& model, NamedTensors& params,
    const std::vector<const PackedSequence*>& rows, int64_t micro_pairs,
    const PreferenceOptions& options,
    const std::function<void(int64_t)>& before_micro_batch,
    int64_t step_pairs = 0);

// The objective's loss and statistics over pairs [first_pair, end_pair) of
// `rows` (end_pair -1: to the last), without grad, in micro-batches of
// `micro_pairs` pairs, each weighted by its share of all the pairs of
// `rows` (so that the sums over ranks evaluating disjoint ranges are the
// means over every pair).
PreferenceStepResult PreferenceEvaluate(Model& model,
                                        const std::vector<PackedSequence>& rows,
                                        int64_t micro_pairs,
                                        const PreferenceOptions& options,
                                        int64_t first_pair = 0,
                                        int64_t end_pair = -1);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_OBJECTIVES_PREFERENCE_STEP_H_
