#include "worker/train/nn/weights.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace ftune::train {
namespace {

absl::StatusOr<torch::Dtype> TorchDtype(StDType d, const std::string& name) {
  switch (d) {
    case StDType::kF32:
      return torch::kFloat32;
    case StDType::kF16:
      return torch::kFloat16;
    case StDType::kBF16:
      return torch::kBFloat16;
    case StDType::kF64:
      return torch::kFloat64;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", name, "\": dtype ", StDTypeName(d),
                       " is not a floating-point weight type"));
  }
}

}  // namespace

absl::StatusOr<torch::Tensor> WeightReader::Read(
    const std::string& name, const std::vector<int64_t>& shape,
    torch::Dtype dtype, const torch::Device& device) const {
  std::string stored = name;
  if (!optional_prefix_.empty() && !ckpt_.Contains(name) &&
      absl::StartsWith(name, optional_prefix_) &&
      ckpt_.Contains(name.substr(optional_prefix_.size())))
    stored = name.substr(optional_prefix_.size());
  FTUNE_ASSIGN_OR_RETURN(StTensorView v, ckpt_.Get(stored));
  if (v.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor \"", stored, "\" has shape [", absl::StrJoin(v.shape, ", "),
        "], the config implies [", absl::StrJoin(shape, ", "), "]"));
  }
  FTUNE_ASSIGN_OR_RETURN(torch::Dtype src, TorchDtype(v.dtype, stored));
  torch::Tensor t = torch::from_blob(const_cast<uint8_t*>(v.data), v.shape,
                                     torch::TensorOptions().dtype(src));
  return t.to(device, dtype, /*non_blocking=*/false, /*copy=*/true);
}

}  // namespace ftune::train
