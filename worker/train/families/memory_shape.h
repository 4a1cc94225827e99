// A ModelConfig as the memory planner (common/contract/memory_plan.h) sees
// it: sizes and the family quirks that change what training allocates.
//
// Plain C++. Thread-safe: a pure function.
#ifndef FTUNE_WORKER_TRAIN_FAMILIES_MEMORY_SHAPE_H_
#define FTUNE_WORKER_TRAIN_FAMILIES_MEMORY_SHAPE_H_

#include "common/contract/memory_plan.h"
#include "worker/train/families/model_config.h"

namespace ftune::train {

contract::ModelShape MemoryShapeOf(const ModelConfig& config);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_FAMILIES_MEMORY_SHAPE_H_
