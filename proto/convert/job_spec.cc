#include "proto/convert/job_spec.h"

#include "absl/strings/str_cat.h"

namespace ftune {

absl::StatusOr<contract::Method> MethodFromProto(v1::TrainingMethod method) {
  switch (method) {
    case v1::TRAINING_METHOD_UNSPECIFIED:
    case v1::TRAINING_METHOD_LORA:
      return contract::Method::kLora;
    case v1::TRAINING_METHOD_QLORA:
      return contract::Method::kQlora;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("spec.method: unknown value ", method));
  }
}

absl::StatusOr<std::optional<contract::Dtype>> ComputeDtypeFromProto(
    v1::ComputeDtype dtype) {
  switch (dtype) {
    case v1::COMPUTE_DTYPE_UNSPECIFIED:
      return std::optional<contract::Dtype>();
    case v1::COMPUTE_DTYPE_FP32:
      return contract::Dtype::kFp32;
    case v1::COMPUTE_DTYPE_BF16:
      return contract::Dtype::kBf16;
    case v1::COMPUTE_DTYPE_FP16:
      return contract::Dtype::kFp16;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.quantization.compute_dtype: unknown value ", dtype));
  }
}

}  // namespace ftune
