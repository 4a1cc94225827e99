// AdamW with decoupled weight decay (Loshchilov & Hutter) over named LoRA
// tensors, PyTorch's update order:
//   p *= 1 - lr*wd; m, v moments; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps).
// Its state (both moments, by parameter name) goes into checkpoints; the step
// count comes back from the checkpoint's step.
//
// Mixed precision (full fine-tuning in bf16/fp16): a half-precision
// parameter gets an fp32 master copy; the moments are fp32, the update is
// applied to the master (the gradient upcast), and the parameter is then
// the master rounded to its dtype. The masters are part of State()
// ("<name>.master"). fp32 and fp64 parameters are their own masters.
//
// Holds the parameters by handle (the model's tensors are updated in place).
// Thread-compatible.
#ifndef FTUNE_WORKER_TRAIN_OPTIMIZER_H_
#define FTUNE_WORKER_TRAIN_OPTIMIZER_H_

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "worker/train/adapter.h"

namespace ftune::train {

class AdamW {
 public:
  AdamW(NamedTensors params, double weight_decay);
  // One update of every parameter that has a gradient.
  void Step(double lr);
  // "<name>.exp_avg" and "<name>.exp_avg_sq" for every parameter.
  NamedTensors State() const;
  // Restores State()'s tensors and the step count. INVALID_ARGUMENT names a
  // missing or mis-shaped tensor.
  absl::Status LoadState(const NamedTensors& state, int64_t step);

 private:
  static constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
  NamedTensors params_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;
  std::vector<torch::Tensor> master_;  // undefined: the parameter itself
  double weight_decay_;
  int64_t step_ = 0;
};

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_OPTIMIZER_H_
