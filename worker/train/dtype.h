// The spec's dtypes (common/contract/train_spec.h) as LibTorch's.
#ifndef FTUNE_WORKER_TRAIN_DTYPE_H_
#define FTUNE_WORKER_TRAIN_DTYPE_H_

#include <torch/types.h>

#include "common/contract/train_spec.h"

namespace ftune::train {

inline torch::Dtype TorchDtype(contract::Dtype dtype) {
  switch (dtype) {
    case contract::Dtype::kFp64:
      return torch::kFloat64;
    case contract::Dtype::kBf16:
      return torch::kBFloat16;
    case contract::Dtype::kFp16:
      return torch::kFloat16;
    case contract::Dtype::kFp32:
      break;
  }
  return torch::kFloat32;
}

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_DTYPE_H_
