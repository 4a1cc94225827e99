#include "worker/train/nn/linear.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace ftune::train {

using torch::Tensor;

torch::Dtype MasterDtype(torch::Dtype compute) {
  return compute == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

DenseWeight::DenseWeight(Tensor weight, Tensor bias)
    : weight_(std::move(weight)), bias_(std::move(bias)) {
  weight_.set_requires_grad(false);
  if (bias_.defined()) bias_.set_requires_grad(false);
}

Tensor DenseWeight::Forward(const Tensor& x) const {
  return bias_.defined() ? torch::linear(x, weight_, bias_)
                         : torch::matmul(x, weight_.t());
}

Nf4Weight::Nf4Weight(QuantizedWeight weight, Tensor bias,
                     torch::Dtype compute_dtype)
    : q_(std::move(weight)),
      bias_(std::move(bias)),
      compute_dtype_(compute_dtype) {
  if (bias_.defined()) bias_.set_requires_grad(false);
}

Tensor Nf4Weight::Forward(const Tensor& x) const {
  Tensor y = QuantizedMatmul(x.to(compute_dtype_), q_);
  return bias_.defined() ? y + bias_.to(compute_dtype_) : y;
}

Tensor Nf4Weight::Dense() const { return Dequantize(q_, compute_dtype_); }

Tensor Linear::Forward(const Tensor& x, bool training) const {
  if (!has_lora() || !lora_enabled_) return base_->Forward(x);
  // On rows ([tokens, features]): the LoRA update is then one addmm_ into
  // the base output, whose backward multiplies in the layouts that suit
  // BLAS's skinny (rank-wide) GEMMs; a matmul plus add_ takes about twice as
  // long for those.
  const int64_t in = x.size(-1);
  Tensor x2 = x.reshape({-1, in});
  Tensor y = base_->Forward(x2);
  Tensor xin =
      (training && dropout_ > 0) ? torch::dropout(x2, dropout_, true) : x2;
  // Mixed precision: the fp32 master weights are cast to the compute dtype
  // for the matmuls; their gradients come back in fp32 through the casts.
  const auto dt = x.scalar_type();
  Tensor a = lora_a_.scalar_type() == dt ? lora_a_ : lora_a_.to(dt);
  Tensor b = lora_b_.scalar_type() == dt ? lora_b_ : lora_b_.to(dt);
  Tensor low = torch::mm(xin, a.t());
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = y.size(-1);
  return y.addmm_(low, b.t(), /*beta=*/1, /*alpha=*/scaling_).view(shape);
}

void Linear::AddLora(const LoraOptions& options, torch::Dtype dtype) {
  const int64_t in = base_->in_features();
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  Tensor a = (torch::rand({options.rank, in}, torch::kFloat64) * 2 - 1) * bound;
  auto dev = base_->device();
  lora_a_ = a.to(dev, dtype).set_requires_grad(true);
  lora_b_ = torch::zeros({base_->out_features(), options.rank},
                         torch::TensorOptions().dtype(dtype).device(dev))
                .set_requires_grad(true);
  scaling_ = options.alpha / static_cast<double>(options.rank);
  dropout_ = options.dropout;
}

Tensor Linear::MergedWeight() const {
  torch::NoGradGuard no_grad;
  Tensor w = base_->Dense();
  if (!has_lora()) return w;
  return (w.to(lora_a_.scalar_type()) + scaling_ * torch::mm(lora_b_, lora_a_))
      .to(w.scalar_type());
}

absl::StatusOr<std::unique_ptr<FrozenWeight>> MakeFrozen(
    Tensor w, Tensor b, const std::optional<QuantOptions>& quantization,
    torch::Dtype compute_dtype, const std::string& name) {
  if (!quantization)
    return std::unique_ptr<FrozenWeight>(
        std::make_unique<DenseWeight>(std::move(w), std::move(b)));
  absl::StatusOr<QuantizedWeight> q = Quantize(w, *quantization);
  if (!q.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("quantising \"", name, "\": ", q.status().message()));
  w = Tensor();  // the dense copy goes before the next one is loaded
  return std::unique_ptr<FrozenWeight>(
      std::make_unique<Nf4Weight>(*std::move(q), std::move(b), compute_dtype));
}

}  // namespace ftune::train
