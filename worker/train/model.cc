// The decoder forward in LibTorch, composed from the family's ModelConfig.
// The reference semantics are Hugging Face's modeling files of each family;
// scripts/reference/ holds an independent float64 implementation that the
// tests compare against. For the Llama family the sequence of tensor ops is
// the one this file had before families existed (bit-identical results).
#include "worker/train/model.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "worker/train/nn/attention.h"
#include "worker/train/nn/blocked_attention.h"
#include "worker/train/nn/lm_head_loss.h"
#include "worker/train/nn/rope.h"
#include "worker/train/nn/weights.h"
#include "worker/train/torch_compat.h"

namespace ftune::train {
namespace {

using torch::Tensor;

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

Tensor Activate(const Tensor& x, Activation a) {
  switch (a) {
    case Activation::kSilu:
      return torch::silu(x);
    case Activation::kGeluTanh:
      return torch::gelu(x, "tanh");
    case Activation::kGelu:
      return torch::gelu(x);
  }
  return x;
}

}  // namespace

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

std::unique_ptr<Linear>& DecoderLayer::Slot(ProjRole role) {
  switch (role) {
    case ProjRole::kQ:
      return q_proj;
    case ProjRole::kK:
      return k_proj;
    case ProjRole::kV:
      return v_proj;
    case ProjRole::kQkv:
      return qkv_proj;
    case ProjRole::kO:
      return o_proj;
    case ProjRole::kGate:
      return gate_proj;
    case ProjRole::kUp:
      return up_proj;
    case ProjRole::kGateUp:
      return gate_up_proj;
    case ProjRole::kDown:
      break;
  }
  return down_proj;
}

Linear* DecoderLayer::Module(const std::string& name) {
  for (auto& [n, linear] : modules)
    if (n == name) return linear;
  return nullptr;
}

// ---------------------------------------------------------------------------
// Model

Model::Model(ModelConfig config, ModelOptions options)
    : config_(std::move(config)), options_(std::move(options)) {
  if (config_.arch.positions == PositionKind::kRope)
    rope_ = std::make_unique<Rope>(config_);
}

Model::~Model() = default;

torch::Device Model::device() const {
  return compat::ParseDevice(options_.device);
}

std::pair<int64_t, int64_t> Model::ProjShape(ProjRole role) const {
  const ModelConfig& c = config_;
  const int64_t d = c.hidden_size, q = c.num_attention_heads * c.head_dim,
                kv = c.num_key_value_heads * c.head_dim,
                ff = c.intermediate_size;
  switch (role) {
    case ProjRole::kQ:
      return {q, d};
    case ProjRole::kK:
    case ProjRole::kV:
      return {kv, d};
    case ProjRole::kQkv:
      return {q + 2 * kv, d};
    case ProjRole::kO:
      return {d, q};
    case ProjRole::kGate:
    case ProjRole::kUp:
      return {ff, d};
    case ProjRole::kGateUp:
      return {2 * ff, d};
    case ProjRole::kDown:
      break;
  }
  return {d, ff};
}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(
    const std::string& dir, const ModelOptions& options) {
  FTUNE_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  FTUNE_ASSIGN_OR_RETURN(auto ckpt, SafetensorsCheckpoint::Open(dir));
  std::unique_ptr<Model> m(new Model(config, options));
  const ModelConfig& c = m->config_;
  const Architecture& a = c.arch;
  const WeightNames& names = a.names;
  const int64_t d = c.hidden_size;
  const torch::Device dev = m->device();
  WeightReader reader(*ckpt, names.optional_prefix);
  torch::NoGradGuard no_grad;
  auto load = [&](const std::string& name, std::vector<int64_t> shape) {
    return reader.Read(name, shape, options.dtype, dev);
  };
  // A norm's weight (and LayerNorm's bias) of `size`.
  auto load_norm = [&](const std::string& name,
                       int64_t size) -> absl::StatusOr<NormWeights> {
    NormWeights w;
    FTUNE_ASSIGN_OR_RETURN(w.weight, load(name + ".weight", {size}));
    if (a.norm == NormKind::kLayerNorm) {
      FTUNE_ASSIGN_OR_RETURN(w.bias, load(name + ".bias", {size}));
    }
    return w;
  };
  FTUNE_ASSIGN_OR_RETURN(m->embed_, load(names.embed, {c.vocab_size, d}));
  if (a.positions == PositionKind::kLearned) {
    FTUNE_ASSIGN_OR_RETURN(
        m->positions_, load(names.positions, {c.max_position_embeddings, d}));
  }
  FTUNE_ASSIGN_OR_RETURN(m->final_norm_, load_norm(names.final_norm, d));
  if (!c.tie_word_embeddings) {
    FTUNE_ASSIGN_OR_RETURN(m->lm_head_, load(names.lm_head, {c.vocab_size, d}));
  }
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat(names.layer_prefix, i, ".");
    DecoderLayer layer;
    layer.sliding_window = c.sliding_window(i);
    FTUNE_ASSIGN_OR_RETURN(layer.attn_norm, load_norm(p + names.attn_norm, d));
    if (!names.post_attn_norm.empty()) {
      FTUNE_ASSIGN_OR_RETURN(layer.post_attn_norm,
                             load_norm(p + names.post_attn_norm, d));
    }
    FTUNE_ASSIGN_OR_RETURN(layer.mlp_norm, load_norm(p + names.mlp_norm, d));
    if (!names.post_mlp_norm.empty()) {
      FTUNE_ASSIGN_OR_RETURN(layer.post_mlp_norm,
                             load_norm(p + names.post_mlp_norm, d));
    }
    if (a.qk_norm) {
      FTUNE_ASSIGN_OR_RETURN(layer.q_norm,
                             load_norm(p + names.q_norm, c.head_dim));
      FTUNE_ASSIGN_OR_RETURN(layer.k_norm,
                             load_norm(p + names.k_norm, c.head_dim));
    }
    for (const LinearModule& mod : a.modules) {
      const std::string base = p + mod.path;
      const auto [out, in] = m->ProjShape(mod.role);
      // A weight to be quantised is read in fp32 (not via the compute dtype)
      // so that bf16 compute does not round it twice.
      const torch::Dtype wdtype =
          options.quantization ? torch::kFloat32 : options.dtype;
      FTUNE_ASSIGN_OR_RETURN(
          Tensor w, reader.Read(base + ".weight",
                                mod.conv1d ? std::vector<int64_t>{in, out}
                                           : std::vector<int64_t>{out, in},
                                wdtype, dev));
      if (mod.conv1d) w = w.t().contiguous();  // Conv1D: y = x W + b
      Tensor b;
      if (mod.bias) {
        FTUNE_ASSIGN_OR_RETURN(b, load(base + ".bias", {out}));
      }
      FTUNE_ASSIGN_OR_RETURN(
          std::unique_ptr<FrozenWeight> frozen,
          MakeFrozen(std::move(w), std::move(b), options.quantization,
                     options.dtype, base + ".weight"));
      std::unique_ptr<Linear>& slot = layer.Slot(mod.role);
      slot = std::make_unique<Linear>(std::move(frozen));
      layer.modules.emplace_back(mod.name, slot.get());
    }
    m->layers_.push_back(std::move(layer));
  }
  return m;
}

std::unique_ptr<Model> Model::RandomInit(const ModelConfig& config,
                                         const ModelOptions& options) {
  std::unique_ptr<Model> m(new Model(config, options));
  const ModelConfig& c = m->config_;
  const Architecture& a = c.arch;
  torch::NoGradGuard no_grad;
  auto opts = torch::TensorOptions().dtype(options.dtype).device(m->device());
  auto randn = [&](std::vector<int64_t> shape) {
    return (torch::randn(shape, torch::kFloat32) * 0.02).to(opts);
  };
  // Norms that act as the identity: w = 1 (w = 0 for 1 + w), b = 0.
  auto unit_norm = [&](int64_t size) {
    NormWeights w;
    w.weight = a.norm == NormKind::kRmsOnePlus ? torch::zeros({size}, opts)
                                               : torch::ones({size}, opts);
    if (a.norm == NormKind::kLayerNorm) w.bias = torch::zeros({size}, opts);
    return w;
  };
  const int64_t d = c.hidden_size;
  m->embed_ = randn({c.vocab_size, d});
  if (a.positions == PositionKind::kLearned)
    m->positions_ = randn({c.max_position_embeddings, d});
  m->final_norm_ = unit_norm(d);
  if (!c.tie_word_embeddings) m->lm_head_ = randn({c.vocab_size, d});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    DecoderLayer l;
    l.sliding_window = c.sliding_window(i);
    l.attn_norm = unit_norm(d);
    l.mlp_norm = unit_norm(d);
    if (a.sandwich_norms) {
      l.post_attn_norm = unit_norm(d);
      l.post_mlp_norm = unit_norm(d);
    }
    if (a.qk_norm) {
      l.q_norm = unit_norm(c.head_dim);
      l.k_norm = unit_norm(c.head_dim);
    }
    for (const LinearModule& mod : a.modules) {
      const auto [out, in] = m->ProjShape(mod.role);
      Tensor w = randn({out, in});
      Tensor b = mod.bias ? randn({out}) : Tensor();
      // Random finite weights always quantise.
      std::unique_ptr<Linear>& slot = l.Slot(mod.role);
      slot = std::make_unique<Linear>(*MakeFrozen(std::move(w), std::move(b),
                                                  options.quantization,
                                                  options.dtype, "random"));
      l.modules.emplace_back(mod.name, slot.get());
    }
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
  FTUNE_ASSIGN_OR_RETURN(
      std::vector<std::string> targets,
      ResolveTargetModules(options.target_modules, config_.LoraModuleNames()));
  lora_ = options;
  lora_.target_modules = targets;
  lora_.fan_in_fan_out = config_.fan_in_fan_out();
  torch::NoGradGuard no_grad;
  // Layer by layer, modules in the family's order: the order the A
  // matrices are drawn in.
  for (DecoderLayer& layer : layers_) {
    for (auto& [name, linear] : layer.modules) {
      if (std::find(targets.begin(), targets.end(), name) != targets.end())
        linear->AddLora(options, MasterDtype(options_.dtype));
    }
  }
  has_lora_ = true;
  return absl::OkStatus();
}

Tensor Model::LmHeadWeight() const {
  return config_.tie_word_embeddings ? embed_ : lm_head_;
}

Tensor Model::Hidden(const Batch& batch, bool training, KvCache* cache) {
  const ModelConfig& c = config_;
  const Architecture& a = c.arch;
  const int64_t b = batch.input_ids.size(0), t = batch.input_ids.size(1);
  const auto dtype = options_.dtype;
  Tensor x = embed_.index_select(0, batch.input_ids.reshape({-1}))
                 .view({b, t, c.hidden_size});
  if (a.scale_embeddings) {
    // sqrt(hidden) rounded to the compute dtype first, as HF does.
    x = x * torch::full({}, std::sqrt(static_cast<double>(c.hidden_size)),
                        x.options());
  }
  if (a.positions == PositionKind::kLearned) {
    x = x + positions_.index_select(0, batch.position_ids.reshape({-1}))
                .view({b, t, c.hidden_size});
  }
  // RoPE tables from the position ids: [B, 1, T, rotary_dim].
  // (Empty, not undefined, without RoPE: they are inputs of the
  // checkpointing autograd function, which needs a device for each.)
  Tensor cos = torch::empty({0}, x.options()), sin = cos;
  if (rope_ != nullptr)
    std::tie(cos, sin) = rope_->Tables(batch.position_ids, dtype,
                                       cache ? cache->rope_length() : 0);

  // One additive mask per sliding-window size in use (0: none); with a
  // cache, over every cached key too. Blocked attention builds only the
  // blocks it computes, from the segment ids.
  if (cache != nullptr) cache->BeginForward(batch.segment_ids);
  bool blocked = cache == nullptr && options_.blocked_attention;
  if (blocked && x.device().is_cpu() &&
      !options_.blocked_attention_single_documents) {
    // Padding is segment -1, documents 0, 1, ...: a row packs several
    // documents where some segment id is above 0.
    blocked = batch.segment_ids.max().item<int64_t>() > 0;
  }
  std::map<int64_t, Tensor> masks;
  for (const DecoderLayer& layer : layers_) {
    Tensor& mask = masks[layer.sliding_window];
    if (!mask.defined())
      mask = blocked ? batch.segment_ids.to(torch::kInt64)
             : cache != nullptr
                 ? cache->Mask(layer.sliding_window, x.options())
                 : AttentionMask(batch.segment_ids, layer.sliding_window,
                                 x.options());
  }

  const bool checkpoint = options_.gradient_checkpointing && training &&
                          torch::GradMode::is_enabled();
  // A checkpointed layer's output needs a graph only if an input requires
  // grad, and the LoRA weights are not inputs: so the (frozen) embedding
  // output must require it (as PEFT's enable_input_require_grads does).
  if (checkpoint && !x.requires_grad()) x = x.detach().requires_grad_(true);
  for (size_t i = 0; i < layers_.size(); ++i) {
    DecoderLayer& layer = layers_[i];
    const Tensor& mask = masks[layer.sliding_window];
    x = checkpoint ? CheckpointedLayer::apply(x, cos, sin, mask, this, &layer)
                   : LayerForward(layer, x, cos, sin, mask, training, cache,
                                  static_cast<int64_t>(i));
  }
  return ApplyNorm(x, final_norm_, a.norm, c.rms_norm_eps);
}

Tensor Model::LayerForward(DecoderLayer& layer, const Tensor& x_in,
                           const Tensor& cos, const Tensor& sin,
                           const Tensor& mask, bool training, KvCache* cache,
                           int64_t cache_layer) {
  const ModelConfig& c = config_;
  const Architecture& a = c.arch;
  Tensor x = x_in;
  Tensor hn = ApplyNorm(x, layer.attn_norm, a.norm, c.rms_norm_eps);
  Tensor attn =
      Attention(layer, hn, cos, sin, mask, training, cache, cache_layer);
  if (a.sandwich_norms)
    attn = ApplyNorm(attn, layer.post_attn_norm, a.norm, c.rms_norm_eps);
  x = x + attn;

  hn = ApplyNorm(x, layer.mlp_norm, a.norm, c.rms_norm_eps);
  Tensor mlp = Mlp(layer, hn, training);
  if (a.sandwich_norms)
    mlp = ApplyNorm(mlp, layer.post_mlp_norm, a.norm, c.rms_norm_eps);
  x = x + mlp;
  return x;
}

Tensor Model::Attention(DecoderLayer& layer, const Tensor& hn,
                        const Tensor& cos, const Tensor& sin,
                        const Tensor& mask, bool training, KvCache* cache,
                        int64_t cache_layer) {
  const ModelConfig& c = config_;
  const Architecture& a = c.arch;
  const int64_t b = hn.size(0), t = hn.size(1);
  const int64_t h = c.num_attention_heads, kv = c.num_key_value_heads,
                hd = c.head_dim;
  const auto dtype = options_.dtype;
  const double scale = a.query_scale > 0
                           ? a.query_scale
                           : 1.0 / std::sqrt(static_cast<double>(hd));
  Tensor q, k, v;
  if (layer.qkv_proj != nullptr) {
    // Fused [q | k | v] outputs.
    Tensor qkv = layer.qkv_proj->Forward(hn, training);
    q = qkv.narrow(-1, 0, h * hd);
    k = qkv.narrow(-1, h * hd, kv * hd);
    v = qkv.narrow(-1, (h + kv) * hd, kv * hd);
  } else {
    q = layer.q_proj->Forward(hn, training);
    k = layer.k_proj->Forward(hn, training);
    v = layer.v_proj->Forward(hn, training);
  }
  q = q.view({b, t, h, hd});
  k = k.view({b, t, kv, hd});
  v = v.view({b, t, kv, hd});
  if (a.qk_norm) {
    q = ApplyNorm(q, layer.q_norm, NormKind::kRms, c.rms_norm_eps);
    k = ApplyNorm(k, layer.k_norm, NormKind::kRms, c.rms_norm_eps);
  }
  q = q.transpose(1, 2);
  k = k.transpose(1, 2);
  v = v.transpose(1, 2);
  if (cos.numel() > 0) {
    // The softmax scale goes into q's copy of the RoPE tables ([B, 1, T,
    // rotary_dim], small) instead of a pass over the [B, h, T, T] scores
    // and its backward.
    Tensor qcos = (cos.to(torch::kFloat64) * scale).to(dtype);
    Tensor qsin = (sin.to(torch::kFloat64) * scale).to(dtype);
    if (cos.size(-1) < hd) {
      // Partial rotary: the pass-through dims need the scale too.
      q = q * torch::full({}, scale, q.options());
      qcos = cos;
      qsin = sin;
    }
    q = ApplyRope(q, qcos, qsin);
    k = ApplyRope(k, cos, sin);
  } else if (scale != 1.0) {
    q = q * torch::full({}, scale, q.options());
  }
  // Decoding: attend over every cached key and value, these included.
  if (cache != nullptr) std::tie(k, v) = cache->Append(cache_layer, k, v);
  Tensor attn = mask.scalar_type() == torch::kInt64
                    ? SegmentAttention(q, k, v, mask, layer.sliding_window,
                                       a.attn_softcap, options_.attention_block)
                    : Attend(q, k, v, mask, a.attn_softcap);
  attn = attn.transpose(1, 2).reshape({b, t, h * hd});
  return layer.o_proj->Forward(attn, training);
}

Tensor Model::Mlp(DecoderLayer& layer, const Tensor& hn, bool training) {
  const Architecture& a = config_.arch;
  if (layer.gate_up_proj != nullptr) {
    // Fused [gate | up] outputs.
    const int64_t ff = config_.intermediate_size;
    Tensor gu = layer.gate_up_proj->Forward(hn, training);
    return layer.down_proj->Forward(
        Activate(gu.narrow(-1, 0, ff), a.activation) * gu.narrow(-1, ff, ff),
        training);
  }
  if (!a.gated_mlp) {
    return layer.down_proj->Forward(
        Activate(layer.up_proj->Forward(hn, training), a.activation), training);
  }
  Tensor g = layer.gate_proj->Forward(hn, training);
  Tensor u = layer.up_proj->Forward(hn, training);
  return layer.down_proj->Forward(Activate(g, a.activation) * u, training);
}

Tensor Model::Loss(const Batch& batch, bool training) {
  Tensor x = Hidden(batch, training);
  Tensor labels = batch.labels.reshape({-1});
  Tensor rows = labels.ne(kIgnoreLabel).nonzero().squeeze(1);
  if (rows.size(0) == 0) return (x.sum() * 0);
  Tensor hsel = x.reshape({-1, x.size(-1)}).index_select(0, rows);
  Tensor targets = labels.index_select(0, rows);
  const bool need_grad = torch::GradMode::is_enabled() && hsel.requires_grad();
  return LmHeadLoss(hsel, LmHeadWeight(), targets, options_.loss_chunk_rows,
                    config_.arch.final_softcap, need_grad);
}

Tensor Model::SequenceLogps(const Batch& batch, bool training) {
  Tensor x = Hidden(batch, training);
  const int64_t rows = x.size(0), width = x.size(1);
  const torch::Dtype acc =
      x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  Tensor sums = torch::zeros({rows}, x.options().dtype(acc));
  Tensor labels = batch.labels.reshape({-1});
  Tensor pos = labels.ne(kIgnoreLabel).nonzero().squeeze(1);
  if (pos.size(0) == 0) return sums + x.sum().to(acc) * 0;
  Tensor hsel = x.reshape({-1, x.size(-1)}).index_select(0, pos);
  Tensor targets = labels.index_select(0, pos);
  const Tensor w = LmHeadWeight();
  const int64_t n = hsel.size(0);
  const int64_t chunk = std::max<int64_t>(1, options_.loss_chunk_rows);
  std::vector<Tensor> parts;
  for (int64_t c = 0; c < n; c += chunk) {
    const int64_t len = std::min(chunk, n - c);
    Tensor logits = SoftCap(torch::matmul(hsel.narrow(0, c, len), w.t()),
                            config_.arch.final_softcap)
                        .to(acc);
    parts.push_back(torch::log_softmax(logits, -1)
                        .gather(1, targets.narrow(0, c, len).unsqueeze(1))
                        .squeeze(1));
  }
  return sums.index_add(0, torch::div(pos, width, "floor"), torch::cat(parts));
}

void Model::set_lora_enabled(bool on) {
  for (DecoderLayer& layer : layers_) {
    for (auto& [name, linear] : layer.modules) linear->set_lora_enabled(on);
  }
}

Tensor Model::Logits(const Batch& batch) {
  Tensor x = Hidden(batch, /*training=*/false);
  return SoftCap(torch::matmul(x, LmHeadWeight().t()),
                 config_.arch.final_softcap);
}

Tensor Model::ForwardCached(const Batch& batch, KvCache& cache,
                            bool last_only) {
  torch::NoGradGuard no_grad;
  Tensor x = Hidden(batch, /*training=*/false, &cache);
  if (last_only) x = x.narrow(1, x.size(1) - 1, 1);
  Tensor logits =
      SoftCap(torch::matmul(x, LmHeadWeight().t()), config_.arch.final_softcap);
  return logits.scalar_type() == torch::kFloat64 ? logits
                                                 : logits.to(torch::kFloat32);
}

KvCache Model::NewKvCache(int64_t batch, int64_t capacity,
                          int64_t rope_length) const {
  return KvCache(static_cast<int64_t>(layers_.size()), batch,
                 config_.num_key_value_heads, capacity, config_.head_dim,
                 torch::TensorOptions().dtype(options_.dtype).device(device()),
                 rope_length);
}

std::vector<std::pair<std::string, Tensor>> Model::LoraParameters() {
  std::vector<std::pair<std::string, Tensor>> out;
  const Architecture& a = config_.arch;
  for (size_t i = 0; i < layers_.size(); ++i) {
    for (size_t j = 0; j < a.modules.size(); ++j) {
      Linear* l = layers_[i].modules[j].second;
      if (!l->has_lora()) continue;
      const std::string p = absl::StrCat(
          "base_model.model.", a.names.layer_prefix, i, ".", a.modules[j].path);
      out.emplace_back(p + ".lora_A.weight", l->lora_a());
      out.emplace_back(p + ".lora_B.weight", l->lora_b());
    }
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> Model::StateDict(
    bool merged) const {
  std::vector<std::pair<std::string, Tensor>> out;
  const Architecture& a = config_.arch;
  const WeightNames& names = a.names;
  auto norm = [&](const std::string& name, const NormWeights& w) {
    if (!w.defined()) return;
    out.emplace_back(name + ".weight", w.weight);
    if (w.bias.defined()) out.emplace_back(name + ".bias", w.bias);
  };
  out.emplace_back(names.embed, embed_);
  if (positions_.defined()) out.emplace_back(names.positions, positions_);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::string p = absl::StrCat(names.layer_prefix, i, ".");
    const DecoderLayer& layer = layers_[i];
    norm(p + names.attn_norm, layer.attn_norm);
    norm(p + names.post_attn_norm, layer.post_attn_norm);
    norm(p + names.mlp_norm, layer.mlp_norm);
    norm(p + names.post_mlp_norm, layer.post_mlp_norm);
    norm(p + names.q_norm, layer.q_norm);
    norm(p + names.k_norm, layer.k_norm);
    for (size_t j = 0; j < a.modules.size(); ++j) {
      const Linear* l = layer.modules[j].second;
      const std::string base = p + a.modules[j].path;
      if (merged) {
        Tensor w = l->MergedWeight();
        if (a.modules[j].conv1d) w = w.t().contiguous();
        out.emplace_back(base + ".weight", w);
      } else {
        // Dense() and bias() share the frozen weight's storage.
        out.emplace_back(base + ".weight", l->base().Dense());
      }
      if (l->base().bias().defined())
        out.emplace_back(base + ".bias", l->base().bias());
    }
  }
  norm(names.final_norm, final_norm_);
  if (!config_.tie_word_embeddings) out.emplace_back(names.lm_head, lm_head_);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Model::BaseParameters() {
  return StateDict(/*merged=*/false);
}

absl::Status Model::EnableFullTraining() {
  if (has_lora_)
    return absl::FailedPreconditionError(
        "full fine-tuning of a model with LoRA applied");
  if (quantized_size().parameters > 0)
    return absl::FailedPreconditionError(
        "full fine-tuning of a quantised model");
  for (auto& [name, t] : BaseParameters()) t.requires_grad_(true);
  return absl::OkStatus();
}

Model::QuantizedSize Model::quantized_size() const {
  QuantizedSize size;
  for (const DecoderLayer& layer : layers_) {
    for (const auto& [name, l] : layer.modules) {
      const auto* q = dynamic_cast<const Nf4Weight*>(&l->base());
      if (q == nullptr) continue;
      size.parameters += q->quantized().numel;
      size.bytes += StorageBytes(q->quantized());
    }
  }
  return size;
}

std::vector<std::pair<std::string, Tensor>> Model::MergedStateDict() const {
  return StateDict(/*merged=*/true);
}

}  // namespace ftune::train
