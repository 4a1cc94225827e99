// The frozen and trainable parts of a projection: a frozen base weight
// (dense, or 4-bit NF4/FP4 for QLoRA, dequantised on the fly) plus an
// optional LoRA branch. Every linear module of every family is a Linear;
// fused modules (Phi-3's qkv_proj, GPT-2's c_attn) are one Linear whose
// output the decoder splits, so LoRA on them is one A/B pair, as in PEFT.
//
// Thread-compatible. Methods that run tensor ops may throw c10::Error.
#ifndef FTUNE_WORKER_TRAIN_NN_LINEAR_H_
#define FTUNE_WORKER_TRAIN_NN_LINEAR_H_

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/contract/train_spec.h"
#include "worker/train/nf4.h"

namespace ftune::train {

// The job's LoRA settings (declared once, in the contract; target_modules
// are PEFT module names of the model's family, "all-linear" expanding to
// ModelConfig::LoraModuleNames) plus what the family decides.
struct LoraOptions : contract::LoraSpec {
  LoraOptions() = default;
  explicit LoraOptions(const contract::LoraSpec& spec)
      : contract::LoraSpec(spec) {}
  // PEFT's fan_in_fan_out (the family stores Conv1D weights). Set by
  // Model::ApplyLora from the family; adapter_config.json carries it.
  bool fan_in_fan_out = false;
};

// The dtype of LoRA weights (and so of their gradients and optimizer state)
// for a compute dtype: fp32 for fp32/bf16/fp16 compute (mixed precision),
// fp64 for fp64 (reference tests).
torch::Dtype MasterDtype(torch::Dtype compute);

// The frozen part of a projection: y = x W^T (+ b). Implementations must not
// require gradients for their own storage.
class FrozenWeight {
 public:
  virtual ~FrozenWeight() = default;
  virtual torch::Tensor Forward(const torch::Tensor& x) const = 0;
  // The weight as a dense [out, in] tensor (for merging/export).
  virtual torch::Tensor Dense() const = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  virtual torch::Device device() const = 0;
  // Undefined when there is none. Never quantised.
  virtual const torch::Tensor& bias() const = 0;
};

class DenseWeight : public FrozenWeight {
 public:
  DenseWeight(torch::Tensor weight, torch::Tensor bias);
  torch::Tensor Forward(const torch::Tensor& x) const override;
  torch::Tensor Dense() const override { return weight_; }
  int64_t in_features() const override { return weight_.size(1); }
  int64_t out_features() const override { return weight_.size(0); }
  torch::Device device() const override { return weight_.device(); }
  const torch::Tensor& bias() const override { return bias_; }

 private:
  torch::Tensor weight_, bias_;
};

// A 4-bit quantised weight (nf4.h): holds only the quantised form (and the
// unquantised bias). Forward dequantises on the fly to `compute_dtype`, also
// in backward, and keeps no dense copy; Dense() dequantises (merge/export).
class Nf4Weight : public FrozenWeight {
 public:
  Nf4Weight(QuantizedWeight weight, torch::Tensor bias,
            torch::Dtype compute_dtype);
  torch::Tensor Forward(const torch::Tensor& x) const override;
  torch::Tensor Dense() const override;
  int64_t in_features() const override { return q_.shape[1]; }
  int64_t out_features() const override { return q_.shape[0]; }
  torch::Device device() const override { return q_.codes.device(); }
  const torch::Tensor& bias() const override { return bias_; }
  const QuantizedWeight& quantized() const { return q_; }

 private:
  QuantizedWeight q_;
  torch::Tensor bias_;
  torch::Dtype compute_dtype_;
};

// A projection: frozen base plus an optional LoRA branch
//   y = base(x) + scaling * B(A(dropout(x))),  scaling = alpha / r.
class Linear {
 public:
  explicit Linear(std::unique_ptr<FrozenWeight> base)
      : base_(std::move(base)) {}
  torch::Tensor Forward(const torch::Tensor& x, bool training) const;
  // A ~ kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(in)), B = 0 (PEFT's init),
  // drawn from the default CPU generator.
  void AddLora(const LoraOptions& options, torch::Dtype dtype);
  bool has_lora() const { return lora_a_.defined(); }
  // Off: Forward is the frozen base alone (the reference model of DPO);
  // the LoRA weights stay as they are.
  void set_lora_enabled(bool on) { lora_enabled_ = on; }
  torch::Tensor& lora_a() { return lora_a_; }
  torch::Tensor& lora_b() { return lora_b_; }
  double scaling() const { return scaling_; }
  const FrozenWeight& base() const { return *base_; }
  // W + scaling * B @ A (W when there is no LoRA).
  torch::Tensor MergedWeight() const;

 private:
  std::unique_ptr<FrozenWeight> base_;
  torch::Tensor lora_a_, lora_b_;  // [r, in], [out, r]
  double scaling_ = 0;
  double dropout_ = 0;
  bool lora_enabled_ = true;
};

// A dense weight, or its quantised form when `quantization` is set (then
// `w`, which should be fp32, is released once quantised). `bias` may be
// undefined. INVALID_ARGUMENT (naming `name`) if quantisation fails.
absl::StatusOr<std::unique_ptr<FrozenWeight>> MakeFrozen(
    torch::Tensor w, torch::Tensor bias,
    const std::optional<QuantOptions>& quantization, torch::Dtype compute_dtype,
    const std::string& name);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_NN_LINEAR_H_
