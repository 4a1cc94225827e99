// Decoder forward in LibTorch. The reference semantics are Hugging Face's
// modeling_llama / modeling_qwen2 (rotate-half RoPE, RMSNorm with the weight
// applied after normalising, SwiGLU); scripts/reference/ holds an independent
// float64 implementation that the tests compare against.
#include "worker/train/model.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "worker/train/cross_entropy.h"
#include "worker/train/torch_compat.h"

namespace ftune::train {
namespace {

using torch::Tensor;
using torch::indexing::Slice;

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

// Copies a safetensors tensor into a new tensor of `dtype` on `device`,
// checking its shape.
absl::StatusOr<Tensor> LoadTensor(const SafetensorsCheckpoint& ckpt,
                                  const std::string& name,
                                  std::vector<int64_t> shape,
                                  const ModelOptions& opts) {
  FTUNE_ASSIGN_OR_RETURN(StTensorView v, ckpt.Get(name));
  if (v.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor \"", name, "\" has shape [", absl::StrJoin(v.shape, ", "),
        "], the config implies [", absl::StrJoin(shape, ", "), "]"));
  }
  FTUNE_ASSIGN_OR_RETURN(torch::Dtype src, TorchDtype(v.dtype, name));
  Tensor t = torch::from_blob(const_cast<uint8_t*>(v.data), v.shape,
                              torch::TensorOptions().dtype(src));
  return t.to(compat::ParseDevice(opts.device), opts.dtype,
              /*non_blocking=*/false,
              /*copy=*/true);
}

Tensor RmsNorm(const Tensor& x, const Tensor& weight, double eps) {
  // HF normalises in fp32 even for half-precision activations.
  Tensor xf = x.to(x.scalar_type() == torch::kFloat64 ? torch::kFloat64
                                                      : torch::kFloat32);
  Tensor normed = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

Tensor RotateHalf(const Tensor& x) {
  int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// Llama-3 frequency scaling (HF's _compute_llama3_parameters).
Tensor ScaleInvFreq(const Tensor& inv_freq, const RopeScaling& s) {
  if (s.type != "llama3") return inv_freq;
  const double old_ctx =
      static_cast<double>(s.original_max_position_embeddings);
  const double low_wavelen = old_ctx / s.low_freq_factor;
  const double high_wavelen = old_ctx / s.high_freq_factor;
  Tensor out = inv_freq.clone();
  auto acc = out.accessor<double, 1>();
  for (int64_t i = 0; i < out.size(0); ++i) {
    double f = acc[i];
    double wavelen = 2 * M_PI / f;
    if (wavelen < high_wavelen) continue;
    if (wavelen > low_wavelen) {
      acc[i] = f / s.factor;
    } else {
      double smooth = (old_ctx / wavelen - s.low_freq_factor) /
                      (s.high_freq_factor - s.low_freq_factor);
      acc[i] = (1 - smooth) * f / s.factor + smooth * f;
    }
  }
  return out;
}

// Mean cross-entropy of logits = h @ w^T against targets, chunk by chunk.
// The gradient w.r.t. h is computed during the forward pass, chunk by chunk,
// so neither the logits nor their gradient exist for all rows at once;
// backward only scales it. `w` must be frozen.
//
// On CPU (fp32 logits, also for bf16 activations, upcast), one logits buffer
// serves every chunk and the fused row kernel of cross_entropy.h turns it into
// the loss and softmax - onehot with one pass over memory; elsewhere (CUDA,
// fp64) the same is done with tensor ops.
class ChunkedLmHeadLoss : public torch::autograd::Function<ChunkedLmHeadLoss> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, Tensor h,
                        Tensor w, Tensor targets, int64_t chunk,
                        bool need_grad) {
    const int64_t n = h.size(0);
    const bool upcast = h.scalar_type() != torch::kFloat64 &&
                        h.scalar_type() != torch::kFloat32;
    Tensor grad_h = need_grad ? torch::empty_like(h) : Tensor();
    const double total =
        h.device().is_cpu() && h.scalar_type() != torch::kFloat64
            ? FusedCpu(h, w, targets, chunk, grad_h)
            : WithTensorOps(h, w, targets, chunk, grad_h);
    ctx->saved_data["n"] = n;
    if (need_grad) ctx->save_for_backward({grad_h});
    // The loss itself is fp32 for half-precision activations.
    return torch::tensor(
        total / static_cast<double>(n),
        h.options().dtype(upcast ? torch::kFloat32 : h.scalar_type()));
  }

  // Sum of the rows' losses; fills grad_h (if defined) with softmax - onehot
  // times w, row by row.
  static double FusedCpu(const Tensor& h, const Tensor& w,
                         const Tensor& targets, int64_t chunk,
                         const Tensor& grad_h) {
    const int64_t n = h.size(0);
    const int64_t vocab = w.size(0);
    const bool upcast = h.scalar_type() != torch::kFloat32;
    Tensor tgt = targets.to(torch::kLong).contiguous();
    TORCH_CHECK(
        tgt.min().item<int64_t>() >= 0 && tgt.max().item<int64_t>() < vocab,
        "target token id outside the vocabulary (", vocab, ")");
    const int64_t* tgt_data = tgt.data_ptr<int64_t>();
    const int64_t rows_max = std::min(chunk, n);
    Tensor buf = torch::empty({rows_max, vocab}, h.options());
    Tensor buf32 = upcast ? torch::empty({rows_max, vocab},
                                         h.options().dtype(torch::kFloat32))
                          : buf;
    std::vector<double> row_loss(static_cast<size_t>(n));
    for (int64_t s = 0; s < n; s += chunk) {
      const int64_t c = std::min(chunk, n - s);
      Tensor logits = buf.narrow(0, 0, c);
      torch::mm_out(logits, h.narrow(0, s, c), w.t());
      Tensor logits32 = buf32.narrow(0, 0, c);
      if (upcast) logits32.copy_(logits);
      float* base = logits32.data_ptr<float>();
      at::parallel_for(0, c, /*grain_size=*/8, [&](int64_t b, int64_t e) {
        SoftmaxCrossEntropyRows(base + b * vocab, e - b, vocab, vocab,
                                tgt_data + s + b, grad_h.defined(),
                                row_loss.data() + s + b);
      });
      if (grad_h.defined()) {
        if (upcast) logits.copy_(logits32);
        Tensor g = grad_h.narrow(0, s, c);
        torch::mm_out(g, logits, w);
      }
    }
    // In row order, so the sum does not depend on the thread count.
    double total = 0;
    for (double l : row_loss) total += l;
    return total;
  }

  static double WithTensorOps(const Tensor& h, const Tensor& w,
                              const Tensor& targets, int64_t chunk,
                              const Tensor& grad_h) {
    const int64_t n = h.size(0);
    const bool upcast = h.scalar_type() != torch::kFloat64 &&
                        h.scalar_type() != torch::kFloat32;
    Tensor total = torch::zeros({}, h.options().dtype(torch::kFloat64));
    for (int64_t s = 0; s < n; s += chunk) {
      const int64_t c = std::min(chunk, n - s);
      Tensor hc = h.narrow(0, s, c);
      Tensor tc = targets.narrow(0, s, c).unsqueeze(1);
      Tensor logits = torch::mm(hc, w.t());
      if (upcast) logits = logits.to(torch::kFloat32);
      Tensor lse = logits.logsumexp(1, /*keepdim=*/true);
      Tensor picked = logits.gather(1, tc);
      total += (lse - picked).sum().to(torch::kFloat64);
      if (grad_h.defined()) {
        // softmax - onehot, in place over the chunk's logits.
        logits.sub_(lse).exp_();
        logits.scatter_add_(1, tc, -torch::ones_like(picked));
        Tensor g = grad_h.narrow(0, s, c);
        torch::mm_out(g, logits.to(h.scalar_type()), w);
      }
    }
    return total.item<double>();
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grad_out) {
    const double n = static_cast<double>(ctx->saved_data["n"].toInt());
    Tensor grad_h = ctx->get_saved_variables()[0];
    return {grad_h * (grad_out[0] / n).to(grad_h.scalar_type()), Tensor(),
            Tensor(), Tensor(), Tensor()};
  }
};

// Gradient checkpointing of one decoder layer (ModelOptions). Forward runs
// the layer without building a graph and keeps its input (and the CPU RNG
// state of its device); backward runs it again with autograd on, from the same
// RNG state so that LoRA dropout draws the same mask, and backpropagates the
// incoming gradient through that recomputation (a reentrant backward: LoRA
// weights get their gradients from it directly). The model and the layer travel
// as integers in saved_data; both outlive the graph (the Model owns its layers,
// and the graph lives only from Loss() to backward()).
class CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, Tensor x,
                        Tensor cos, Tensor sin, Tensor mask, Model* model,
                        DecoderLayer* layer) {
    ctx->saved_data["model"] = reinterpret_cast<int64_t>(model);
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    ctx->saved_data["rng"] = compat::GetRngState(x.device());
    ctx->save_for_backward({x, cos, sin, mask});
    return model->LayerForward(*layer, x, cos, sin, mask, /*training=*/true);
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grad_out) {
    auto* model = reinterpret_cast<Model*>(ctx->saved_data["model"].toInt());
    auto* layer =
        reinterpret_cast<DecoderLayer*>(ctx->saved_data["layer"].toInt());
    torch::autograd::variable_list saved = ctx->get_saved_variables();
    Tensor x = saved[0].detach().requires_grad_(true);
    const Tensor rng_now = compat::GetRngState(x.device());
    compat::SetRngState(x.device(), ctx->saved_data["rng"].toTensor());
    Tensor y;
    {
      torch::AutoGradMode grad_mode(true);
      y = model->LayerForward(*layer, x, saved[1], saved[2], saved[3],
                              /*training=*/true);
    }
    compat::SetRngState(x.device(), rng_now);
    torch::autograd::backward({y}, {grad_out[0]});
    return {x.grad(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

torch::Dtype MasterDtype(torch::Dtype compute) {
  return compute == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

absl::StatusOr<std::vector<std::string>> ResolveTargetModules(
    const std::vector<std::string>& names) {
  std::vector<std::string> out;
  if (names.empty())
    return absl::InvalidArgumentError("target_modules is empty");
  for (const std::string& n : names) {
    if (n == "all-linear") {
      if (names.size() != 1)
        return absl::InvalidArgumentError(
            "target_modules: \"all-linear\" must be the only entry");
      return std::vector<std::string>(std::begin(kLoraModuleNames),
                                      std::end(kLoraModuleNames));
    }
  }
  // Keep the canonical order so key names and configs are stable.
  for (const char* known : kLoraModuleNames) {
    if (std::find(names.begin(), names.end(), known) != names.end())
      out.push_back(known);
  }
  for (const std::string& n : names) {
    if (std::find(out.begin(), out.end(), n) == out.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "target_modules: unknown module \"", n, "\" (known: ",
          absl::StrJoin(kLoraModuleNames, ", "), ", or all-linear)"));
    }
  }
  if (out.size() != names.size())
    return absl::InvalidArgumentError("target_modules: duplicate entry");
  return out;
}

Batch MakeBatch(const std::vector<const PackedSequence*>& rows,
                const torch::Device& device) {
  int64_t t = 1;
  for (const PackedSequence* r : rows)
    t = std::max<int64_t>(t, static_cast<int64_t>(r->input_ids.size()));
  const int64_t b = static_cast<int64_t>(rows.size());
  auto opts = torch::TensorOptions().dtype(torch::kInt64);
  Tensor ids = torch::zeros({b, t}, opts);
  Tensor labels = torch::full({b, t}, kIgnoreLabel, opts);
  Tensor pos = torch::zeros({b, t}, opts);
  Tensor seg = torch::full({b, t}, -1, opts);
  auto ai = ids.accessor<int64_t, 2>();
  auto al = labels.accessor<int64_t, 2>();
  auto ap = pos.accessor<int64_t, 2>();
  auto as = seg.accessor<int64_t, 2>();
  Batch batch;
  for (int64_t i = 0; i < b; ++i) {
    const PackedSequence& r = *rows[i];
    for (size_t j = 0; j < r.input_ids.size(); ++j) {
      ai[i][j] = r.input_ids[j];
      al[i][j] = r.labels[j];
      ap[i][j] = r.position_ids[j];
      as[i][j] = r.segment_ids[j];
      if (r.labels[j] != kIgnoreLabel) ++batch.num_targets;
      ++batch.num_tokens;
    }
  }
  batch.input_ids = ids.to(device);
  batch.labels = labels.to(device);
  batch.position_ids = pos.to(device);
  batch.segment_ids = seg.to(device);
  return batch;
}

// ---------------------------------------------------------------------------
// Linear

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
  if (!has_lora()) return base_->Forward(x);
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

Linear* DecoderLayer::Module(const std::string& name) {
  if (name == "q_proj") return q_proj.get();
  if (name == "k_proj") return k_proj.get();
  if (name == "v_proj") return v_proj.get();
  if (name == "o_proj") return o_proj.get();
  if (name == "gate_proj") return gate_proj.get();
  if (name == "up_proj") return up_proj.get();
  if (name == "down_proj") return down_proj.get();
  return nullptr;
}

namespace {
// A dense weight, or its quantised form when the options ask for QLoRA.
absl::StatusOr<std::unique_ptr<FrozenWeight>> MakeFrozen(
    Tensor w, Tensor b, const ModelOptions& options, const std::string& name) {
  if (!options.quantization)
    return std::unique_ptr<FrozenWeight>(
        std::make_unique<DenseWeight>(std::move(w), std::move(b)));
  absl::StatusOr<QuantizedWeight> q = Quantize(w, *options.quantization);
  if (!q.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("quantising \"", name, "\": ", q.status().message()));
  w = Tensor();  // the dense copy goes before the next one is loaded
  return std::unique_ptr<FrozenWeight>(
      std::make_unique<Nf4Weight>(*std::move(q), std::move(b), options.dtype));
}

std::string ModulePath(const std::string& name) {
  bool attn = name == "q_proj" || name == "k_proj" || name == "v_proj" ||
              name == "o_proj";
  return absl::StrCat(attn ? "self_attn." : "mlp.", name);
}
}  // namespace

// ---------------------------------------------------------------------------
// Model

Model::Model(ModelConfig config, ModelOptions options)
    : config_(std::move(config)), options_(std::move(options)) {
  const int64_t hd = config_.head_dim;
  Tensor inv = 1.0 / torch::pow(config_.rope_theta,
                                torch::arange(0, hd, 2, torch::kFloat64) /
                                    static_cast<double>(hd));
  inv_freq_ = ScaleInvFreq(inv, config_.rope_scaling);
}

torch::Device Model::device() const {
  return compat::ParseDevice(options_.device);
}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(
    const std::string& dir, const ModelOptions& options) {
  FTUNE_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  FTUNE_ASSIGN_OR_RETURN(auto ckpt, SafetensorsCheckpoint::Open(dir));
  std::unique_ptr<Model> m(new Model(config, options));
  const ModelConfig& c = m->config_;
  const int64_t d = c.hidden_size, q_out = c.num_attention_heads * c.head_dim,
                kv_out = c.num_key_value_heads * c.head_dim,
                ff = c.intermediate_size;
  torch::NoGradGuard no_grad;
  auto load = [&](const std::string& name, std::vector<int64_t> shape) {
    return LoadTensor(*ckpt, name, std::move(shape), options);
  };
  FTUNE_ASSIGN_OR_RETURN(m->embed_,
                         load("model.embed_tokens.weight", {c.vocab_size, d}));
  FTUNE_ASSIGN_OR_RETURN(m->final_norm_, load("model.norm.weight", {d}));
  if (!c.tie_word_embeddings) {
    FTUNE_ASSIGN_OR_RETURN(m->lm_head_,
                           load("lm_head.weight", {c.vocab_size, d}));
  }
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    DecoderLayer layer;
    FTUNE_ASSIGN_OR_RETURN(layer.attn_norm,
                           load(p + "input_layernorm.weight", {d}));
    FTUNE_ASSIGN_OR_RETURN(layer.mlp_norm,
                           load(p + "post_attention_layernorm.weight", {d}));
    struct Spec {
      std::unique_ptr<Linear>* slot;
      const char* name;
      int64_t out, in;
      bool bias;
    };
    const Spec specs[] = {
        {&layer.q_proj, "q_proj", q_out, d, c.qkv_bias},
        {&layer.k_proj, "k_proj", kv_out, d, c.qkv_bias},
        {&layer.v_proj, "v_proj", kv_out, d, c.qkv_bias},
        {&layer.o_proj, "o_proj", d, q_out, c.o_bias},
        {&layer.gate_proj, "gate_proj", ff, d, false},
        {&layer.up_proj, "up_proj", ff, d, false},
        {&layer.down_proj, "down_proj", d, ff, false},
    };
    for (const Spec& s : specs) {
      const std::string base = p + ModulePath(s.name);
      // A weight to be quantised is read in fp32 (not via the compute dtype)
      // so that bf16 compute does not round it twice.
      ModelOptions wopts = options;
      if (options.quantization) wopts.dtype = torch::kFloat32;
      FTUNE_ASSIGN_OR_RETURN(
          Tensor w, LoadTensor(*ckpt, base + ".weight", {s.out, s.in}, wopts));
      Tensor b;
      if (s.bias) {
        FTUNE_ASSIGN_OR_RETURN(b, load(base + ".bias", {s.out}));
      }
      FTUNE_ASSIGN_OR_RETURN(
          std::unique_ptr<FrozenWeight> frozen,
          MakeFrozen(std::move(w), std::move(b), options, base + ".weight"));
      *s.slot = std::make_unique<Linear>(std::move(frozen));
    }
    m->layers_.push_back(std::move(layer));
  }
  return m;
}

std::unique_ptr<Model> Model::RandomInit(const ModelConfig& config,
                                         const ModelOptions& options) {
  std::unique_ptr<Model> m(new Model(config, options));
  const ModelConfig& c = m->config_;
  torch::NoGradGuard no_grad;
  auto opts = torch::TensorOptions().dtype(options.dtype).device(m->device());
  auto randn = [&](std::vector<int64_t> shape) {
    return (torch::randn(shape, torch::kFloat32) * 0.02).to(opts);
  };
  const int64_t d = c.hidden_size, q_out = c.num_attention_heads * c.head_dim,
                kv_out = c.num_key_value_heads * c.head_dim,
                ff = c.intermediate_size;
  m->embed_ = randn({c.vocab_size, d});
  m->final_norm_ = torch::ones({d}, opts);
  if (!c.tie_word_embeddings) m->lm_head_ = randn({c.vocab_size, d});
  auto lin = [&](int64_t out, int64_t in, bool bias) {
    // Random finite weights always quantise.
    return std::make_unique<Linear>(*MakeFrozen(
        randn({out, in}), bias ? randn({out}) : Tensor(), options, "random"));
  };
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    DecoderLayer l;
    l.attn_norm = torch::ones({d}, opts);
    l.mlp_norm = torch::ones({d}, opts);
    l.q_proj = lin(q_out, d, c.qkv_bias);
    l.k_proj = lin(kv_out, d, c.qkv_bias);
    l.v_proj = lin(kv_out, d, c.qkv_bias);
    l.o_proj = lin(d, q_out, c.o_bias);
    l.gate_proj = lin(ff, d, false);
    l.up_proj = lin(ff, d, false);
    l.down_proj = lin(d, ff, false);
    m->layers_.push_back(std::move(l));
  }
  return m;
}

absl::Status Model::ApplyLora(const LoraOptions& options) {
  if (has_lora_) return absl::FailedPreconditionError("LoRA already applied");
  if (options.rank <= 0)
    return absl::InvalidArgumentError("lora.rank must be positive");
  if (options.alpha <= 0)
    return absl::InvalidArgumentError("lora.alpha must be positive");
  if (options.dropout < 0 || options.dropout >= 1)
    return absl::InvalidArgumentError("lora.dropout must be in [0, 1)");
  FTUNE_ASSIGN_OR_RETURN(std::vector<std::string> targets,
                         ResolveTargetModules(options.target_modules));
  lora_ = options;
  lora_.target_modules = targets;
  torch::NoGradGuard no_grad;
  for (DecoderLayer& layer : layers_) {
    for (const std::string& name : targets)
      layer.Module(name)->AddLora(options, MasterDtype(options_.dtype));
  }
  has_lora_ = true;
  return absl::OkStatus();
}

Tensor Model::LmHeadWeight() const {
  return config_.tie_word_embeddings ? embed_ : lm_head_;
}

Tensor Model::Hidden(const Batch& batch, bool training) {
  const ModelConfig& c = config_;
  const int64_t b = batch.input_ids.size(0), t = batch.input_ids.size(1);
  const auto dtype = options_.dtype;
  Tensor x = embed_.index_select(0, batch.input_ids.reshape({-1}))
                 .view({b, t, c.hidden_size});

  // RoPE tables from the position ids: [B, 1, T, hd].
  Tensor angles = batch.position_ids.to(torch::kFloat64).unsqueeze(-1) *
                  inv_freq_.to(x.device());
  Tensor emb = torch::cat({angles, angles}, -1).unsqueeze(1);
  Tensor cos = emb.cos().to(dtype), sin = emb.sin().to(dtype);

  // Additive mask: causal AND same segment. Padding (segment -1) attends to
  // padding only, which keeps every row of the softmax finite.
  Tensor seg = batch.segment_ids;
  Tensor allowed =
      seg.unsqueeze(2).eq(seg.unsqueeze(1)) &
      torch::ones({t, t}, seg.options().dtype(torch::kBool)).tril();
  Tensor mask = torch::zeros({b, 1, t, t}, x.options())
                    .masked_fill_(allowed.logical_not().unsqueeze(1),
                                  -std::numeric_limits<double>::infinity());

  const bool checkpoint = options_.gradient_checkpointing && training &&
                          torch::GradMode::is_enabled();
  // A checkpointed layer's output needs a graph only if an input requires
  // grad, and the LoRA weights are not inputs: so the (frozen) embedding
  // output must require it (as PEFT's enable_input_require_grads does).
  if (checkpoint && !x.requires_grad()) x = x.detach().requires_grad_(true);
  for (DecoderLayer& layer : layers_) {
    x = checkpoint ? CheckpointedLayer::apply(x, cos, sin, mask, this, &layer)
                   : LayerForward(layer, x, cos, sin, mask, training);
  }
  return RmsNorm(x, final_norm_, c.rms_norm_eps);
}

Tensor Model::LayerForward(DecoderLayer& layer, const Tensor& x_in,
                           const Tensor& cos, const Tensor& sin,
                           const Tensor& mask, bool training) {
  const ModelConfig& c = config_;
  const int64_t b = x_in.size(0), t = x_in.size(1);
  const int64_t h = c.num_attention_heads, kv = c.num_key_value_heads,
                hd = c.head_dim;
  const auto dtype = options_.dtype;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  Tensor x = x_in;
  Tensor hn = RmsNorm(x, layer.attn_norm, c.rms_norm_eps);
  Tensor q =
      layer.q_proj->Forward(hn, training).view({b, t, h, hd}).transpose(1, 2);
  Tensor k =
      layer.k_proj->Forward(hn, training).view({b, t, kv, hd}).transpose(1, 2);
  Tensor v =
      layer.v_proj->Forward(hn, training).view({b, t, kv, hd}).transpose(1, 2);
  // The softmax scale goes into q's copy of the RoPE tables ([B, 1, T, hd],
  // small) instead of a pass over the [B, h, T, T] scores and its backward.
  Tensor qcos = (cos.to(torch::kFloat64) * scale).to(dtype);
  Tensor qsin = (sin.to(torch::kFloat64) * scale).to(dtype);
  q = q * qcos + RotateHalf(q) * qsin;
  k = k * cos + RotateHalf(k) * sin;
  if (kv != h) {
    k = k.repeat_interleave(h / kv, 1);
    v = v.repeat_interleave(h / kv, 1);
  }
  Tensor scores = torch::matmul(q, k.transpose(-2, -1)).add_(mask);
  // Softmax in fp32 for half-precision activations, as HF does.
  Tensor probs = dtype == torch::kFloat32 || dtype == torch::kFloat64
                     ? torch::softmax(scores, -1)
                     : torch::softmax(scores, -1, torch::kFloat32).to(dtype);
  Tensor attn = torch::matmul(probs, v);
  attn = attn.transpose(1, 2).reshape({b, t, h * hd});
  x = x + layer.o_proj->Forward(attn, training);

  hn = RmsNorm(x, layer.mlp_norm, c.rms_norm_eps);
  Tensor g = layer.gate_proj->Forward(hn, training);
  Tensor u = layer.up_proj->Forward(hn, training);
  x = x + layer.down_proj->Forward(torch::silu(g) * u, training);
  return x;
}

Tensor Model::Loss(const Batch& batch, bool training) {
  Tensor x = Hidden(batch, training);
  Tensor labels = batch.labels.reshape({-1});
  Tensor rows = labels.ne(kIgnoreLabel).nonzero().squeeze(1);
  if (rows.size(0) == 0) return (x.sum() * 0);
  Tensor hsel = x.reshape({-1, x.size(-1)}).index_select(0, rows);
  Tensor targets = labels.index_select(0, rows);
  const bool need_grad = torch::GradMode::is_enabled() && hsel.requires_grad();
  return ChunkedLmHeadLoss::apply(hsel, LmHeadWeight(), targets,
                                  options_.loss_chunk_rows, need_grad);
}

Tensor Model::Logits(const Batch& batch) {
  Tensor x = Hidden(batch, /*training=*/false);
  return torch::matmul(x, LmHeadWeight().t());
}

std::vector<std::pair<std::string, Tensor>> Model::LoraParameters() {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t i = 0; i < layers_.size(); ++i) {
    for (const char* name : kLoraModuleNames) {
      Linear* l = layers_[i].Module(name);
      if (!l->has_lora()) continue;
      const std::string p = absl::StrCat("base_model.model.model.layers.", i,
                                         ".", ModulePath(name));
      out.emplace_back(p + ".lora_A.weight", l->lora_a());
      out.emplace_back(p + ".lora_B.weight", l->lora_b());
    }
  }
  return out;
}

Model::QuantizedSize Model::quantized_size() const {
  QuantizedSize size;
  for (const DecoderLayer& layer : layers_) {
    for (const char* name : kLoraModuleNames) {
      const Linear* l = const_cast<DecoderLayer&>(layer).Module(name);
      const auto* q = dynamic_cast<const Nf4Weight*>(&l->base());
      if (q == nullptr) continue;
      size.parameters += q->quantized().numel;
      size.bytes += StorageBytes(q->quantized());
    }
  }
  return size;
}

std::vector<std::pair<std::string, Tensor>> Model::MergedStateDict() const {
  std::vector<std::pair<std::string, Tensor>> out;
  out.emplace_back("model.embed_tokens.weight", embed_);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    DecoderLayer& layer = const_cast<DecoderLayer&>(layers_[i]);
    out.emplace_back(p + "input_layernorm.weight", layer.attn_norm);
    out.emplace_back(p + "post_attention_layernorm.weight", layer.mlp_norm);
    for (const char* name : kLoraModuleNames) {
      Linear* l = layer.Module(name);
      const std::string base = p + ModulePath(name);
      out.emplace_back(base + ".weight", l->MergedWeight());
      if (l->base().bias().defined())
        out.emplace_back(base + ".bias", l->base().bias());
    }
  }
  out.emplace_back("model.norm.weight", final_norm_);
  if (!config_.tie_word_embeddings)
    out.emplace_back("lm_head.weight", lm_head_);
  return out;
}

}  // namespace ftune::train
