// Reads a model's tensors from its safetensors files by HF name: converted
// to the compute dtype and device, shape-checked against the config.
//
// Thread-compatible; the checkpoint must outlive the reader.
#ifndef FTUNE_WORKER_TRAIN_NN_WEIGHTS_H_
#define FTUNE_WORKER_TRAIN_NN_WEIGHTS_H_

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/safetensors.h"

namespace ftune::train {

class WeightReader {
 public:
  // `optional_prefix`: names that start with it are also looked up without
  // it (GPT-2 files saved from the bare GPT2Model).
  WeightReader(const SafetensorsCheckpoint& ckpt, std::string optional_prefix)
      : ckpt_(ckpt), optional_prefix_(std::move(optional_prefix)) {}

  // A new tensor of `dtype` on `device`. NOT_FOUND names a missing tensor;
  // INVALID_ARGUMENT a shape other than `shape` or a non-float dtype.
  absl::StatusOr<torch::Tensor> Read(const std::string& name,
                                     const std::vector<int64_t>& shape,
                                     torch::Dtype dtype,
                                     const torch::Device& device) const;

 private:
  const SafetensorsCheckpoint& ckpt_;
  std::string optional_prefix_;
};

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_NN_WEIGHTS_H_
