#include "worker/train/optimizer.h"

#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"

namespace ftune::train {

using torch::Tensor;

AdamW::AdamW(NamedTensors params, double weight_decay)
    : params_(std::move(params)), weight_decay_(weight_decay) {
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : params_) {
    const bool half = p.scalar_type() == torch::kBFloat16 ||
                      p.scalar_type() == torch::kFloat16;
    master_.push_back(half ? p.detach().to(torch::kFloat32) : Tensor());
    const Tensor& m = half ? master_.back() : p;
    exp_avg_.push_back(torch::zeros_like(m));
    exp_avg_sq_.push_back(torch::zeros_like(m));
  }
}

void AdamW::Step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1 - std::pow(kBeta1, step_);
  const double bc2 = 1 - std::pow(kBeta2, step_);
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& param = params_[i].second;
    if (!param.grad().defined()) continue;
    const bool has_master = master_[i].defined();
    Tensor& p = has_master ? master_[i] : param;
    const Tensor g =
        has_master ? param.grad().to(p.scalar_type()) : param.grad();
    if (weight_decay_ != 0) p.mul_(1 - lr * weight_decay_);
    exp_avg_[i].mul_(kBeta1).add_(g, 1 - kBeta1);
    exp_avg_sq_[i].mul_(kBeta2).addcmul_(g, g, 1 - kBeta2);
    Tensor denom = (exp_avg_sq_[i].sqrt() / std::sqrt(bc2)).add_(kEps);
    p.addcdiv_(exp_avg_[i], denom, -lr / bc1);
    if (has_master) param.copy_(p);
  }
}

NamedTensors AdamW::State() const {
  NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back(params_[i].first + ".exp_avg", exp_avg_[i]);
    out.emplace_back(params_[i].first + ".exp_avg_sq", exp_avg_sq_[i]);
    if (master_[i].defined())
      out.emplace_back(params_[i].first + ".master", master_[i]);
  }
  return out;
}

absl::Status AdamW::LoadState(const NamedTensors& state, int64_t step) {
  std::map<std::string, Tensor> by_name(state.begin(), state.end());
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto [suffix, slot] :
         {std::pair<const char*, Tensor*>{".exp_avg", &exp_avg_[i]},
          {".exp_avg_sq", &exp_avg_sq_[i]}}) {
      auto it = by_name.find(params_[i].first + suffix);
      if (it == by_name.end() || !it->second.sizes().equals(slot->sizes()))
        return absl::InvalidArgumentError(
            absl::StrCat("checkpoint optimizer state \"", params_[i].first,
                         suffix, "\" is missing or has the wrong shape"));
      slot->copy_(it->second);
    }
    if (!master_[i].defined()) continue;
    auto it = by_name.find(params_[i].first + ".master");
    if (it == by_name.end() || !it->second.sizes().equals(master_[i].sizes()))
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint optimizer state \"", params_[i].first,
                       ".master\" is missing or has the wrong shape"));
    master_[i].copy_(it->second);
    params_[i].second.copy_(master_[i]);
  }
  step_ = step;
  return absl::OkStatus();
}

}  // namespace ftune::train
