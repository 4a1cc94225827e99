// The decoder (Llama / Mistral / Qwen2 family) with LoRA adapters, in
// LibTorch. Weights come from a Hugging Face directory (safetensors, fp32 /
// fp16 / bf16, converted to the chosen dtype) or are random (bench, tests).
//
// Forward takes a Batch built from PackedSequence rows: padded to the longest
// row, attention is causal AND confined to tokens of the same segment, RoPE
// uses each token's position id. Loss() is the mean cross-entropy over
// labels != kIgnoreLabel, computed chunk by chunk over rows so the full
// [tokens, vocab] logits (and their gradient) never exist at once.
//
// Every frozen projection is a Linear whose base is a `FrozenWeight`: a dense
// tensor, or for QLoRA (ModelOptions.quantization) a 4-bit NF4/FP4 weight
// (nf4.h) that is dequantised on the fly. Embeddings, norms and the LM head
// are never quantised.
//
// Thread-compatible: one thread drives a Model; LibTorch parallelises inside
// ops. Methods that run tensor ops may throw c10::Error (callers at the
// trainer's public boundary turn it into a Status).
#ifndef FTUNE_WORKER_TRAIN_MODEL_H_
#define FTUNE_WORKER_TRAIN_MODEL_H_

#include <torch/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <optional>

#include "absl/status/statusor.h"
#include "worker/train/model_config.h"
#include "worker/train/nf4.h"
#include "worker/train/text/sequence.h"

namespace ftune::train {

// Module names LoRA can target, in PEFT's (HF's) spelling.
inline constexpr const char* kLoraModuleNames[] = {
    "q_proj",    "k_proj",  "v_proj",   "o_proj",
    "gate_proj", "up_proj", "down_proj"};

struct LoraOptions {
  int64_t rank = 8;
  double alpha = 16.0;
  double dropout = 0.0;
  // Subset of kLoraModuleNames; "all-linear" expands to all of them.
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};
};

// Expands "all-linear" and checks names; INVALID_ARGUMENT names a bad one.
absl::StatusOr<std::vector<std::string>> ResolveTargetModules(
    const std::vector<std::string>& names);

// The dtype of LoRA weights (and so of their gradients and optimizer state)
// for a compute dtype: fp32 for fp32/bf16/fp16 compute (mixed precision),
// fp64 for fp64 (reference tests).
torch::Dtype MasterDtype(torch::Dtype compute);

struct ModelOptions {
  // Compute dtype: frozen weights, activations. LoRA weights are held in
  // MasterDtype(dtype) and cast for each matmul.
  torch::Dtype dtype = torch::kFloat32;
  std::string device = "cpu";
  // Rows of the LM-head/cross-entropy chunk.
  int64_t loss_chunk_rows = 256;
  // QLoRA: quantise every frozen projection (q, k, v, o, gate, up, down),
  // with or without LoRA, as it is loaded. `dtype` is the compute dtype.
  std::optional<QuantOptions> quantization;
  // Gradient checkpointing: while training with autograd on, each decoder
  // layer keeps only its input; backward runs the layer again (same RNG
  // state, so LoRA dropout draws the same mask) and backpropagates through
  // the recomputation. Same gradients, activation memory of one layer
  // instead of all of them, ~1/3 more compute.
  bool gradient_checkpointing = false;
};

// A batch on the model's device. Shapes [B, T]; int64.
struct Batch {
  torch::Tensor input_ids, labels, position_ids, segment_ids;
  int64_t num_targets = 0;  // labels != kIgnoreLabel
  int64_t num_tokens = 0;   // non-padding tokens
};
// Pads rows to the longest (pad: id 0, label ignored, segment -1).
Batch MakeBatch(const std::vector<const PackedSequence*>& rows,
                const torch::Device& device);

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
};

struct DecoderLayer {
  torch::Tensor attn_norm, mlp_norm;
  std::unique_ptr<Linear> q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
      down_proj;
  // By PEFT module name ("q_proj"...); nullptr if unknown.
  Linear* Module(const std::string& name);
};

class Model {
 public:
  // Loads config.json and the safetensors weights of `dir`. Errors name the
  // missing tensor or the shape mismatch.
  static absl::StatusOr<std::unique_ptr<Model>> Load(
      const std::string& dir, const ModelOptions& options);
  // Random N(0, 0.02) weights, unit norms; uses the default CPU generator.
  static std::unique_ptr<Model> RandomInit(const ModelConfig& config,
                                           const ModelOptions& options);

  // Adds LoRA to the targeted modules of every layer. Once only.
  absl::Status ApplyLora(const LoraOptions& options);

  // Mean cross-entropy over the batch's targets (0 with no targets).
  // training=true enables LoRA dropout. Differentiable w.r.t. LoRA params.
  torch::Tensor Loss(const Batch& batch, bool training);
  // Full logits [B, T, vocab] (tests, small inputs).
  torch::Tensor Logits(const Batch& batch);
  void set_gradient_checkpointing(bool on) {
    options_.gradient_checkpointing = on;
  }

  // One decoder layer: x [B, T, D] -> [B, T, D]. cos/sin: RoPE tables
  // [B, 1, T, head_dim]; mask: additive [B, 1, T, T]. Public for the
  // checkpointing autograd function.
  torch::Tensor LayerForward(DecoderLayer& layer, const torch::Tensor& x,
                             const torch::Tensor& cos, const torch::Tensor& sin,
                             const torch::Tensor& mask, bool training);

  // LoRA tensors with PEFT key names
  // ("base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight"),
  // layer by layer, modules in kLoraModuleNames order, A before B.
  std::vector<std::pair<std::string, torch::Tensor>> LoraParameters();
  // Every base tensor with its HF name, LoRA merged into the projections.
  std::vector<std::pair<std::string, torch::Tensor>> MergedStateDict() const;

  const ModelConfig& config() const { return config_; }
  const LoraOptions& lora_options() const { return lora_; }
  const ModelOptions& options() const { return options_; }
  torch::Device device() const;
  std::vector<DecoderLayer>& layers() { return layers_; }
  // Parameters held by quantised projections and the bytes of their stored
  // form (0 and 0 without quantisation).
  struct QuantizedSize {
    int64_t parameters = 0;
    int64_t bytes = 0;
  };
  QuantizedSize quantized_size() const;

 private:
  Model(ModelConfig config, ModelOptions options);
  torch::Tensor Hidden(const Batch& batch, bool training);
  torch::Tensor LmHeadWeight() const;

  ModelConfig config_;
  ModelOptions options_;
  LoraOptions lora_;
  bool has_lora_ = false;
  torch::Tensor embed_, final_norm_, lm_head_;  // lm_head_ undefined if tied
  torch::Tensor inv_freq_;                      // [head_dim / 2], float64
  std::vector<DecoderLayer> layers_;
};

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_MODEL_H_
