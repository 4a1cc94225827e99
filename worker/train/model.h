// The decoder of every supported family (worker/train/families/) with LoRA
// adapters, in LibTorch. The family's ModelConfig describes the block (norm
// kind, activation, positions, fused projections, soft-caps, sliding
// windows, weight names); this class composes the shared pieces in
// worker/train/nn/ accordingly, so a family adds no code here. Weights come
// from a Hugging Face directory (safetensors, fp32 / fp16 / bf16, converted
// to the chosen dtype) or are random (bench, tests).
//
// Forward takes a Batch built from PackedSequence rows: padded to the longest
// row, attention is causal AND confined to tokens of the same segment (and
// to the layer's sliding window, if any); positions (RoPE or learned) use
// each token's position id. Loss() is the mean cross-entropy over labels !=
// kIgnoreLabel, computed chunk by chunk over rows so the full [tokens,
// vocab] logits (and their gradient) never exist at once.
//
// Every frozen projection is a Linear (nn/linear.h) whose base is a dense
// tensor or, for QLoRA (ModelOptions.quantization), a 4-bit NF4/FP4 weight
// dequantised on the fly. Embeddings, norms and the LM head are never
// quantised. Fused projections (Phi-3's qkv_proj and gate_up_proj, GPT-2's
// c_attn) are one Linear each, split after the matmul: LoRA on them is one
// A/B pair, as PEFT puts it.
//
// Thread-compatible: one thread drives a Model; LibTorch parallelises inside
// ops. Methods that run tensor ops may throw c10::Error (callers at the
// trainer's public boundary turn it into a Status).
#ifndef FTUNE_WORKER_TRAIN_MODEL_H_
#define FTUNE_WORKER_TRAIN_MODEL_H_

#include <torch/types.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/train/families/model_config.h"
#include "worker/train/nf4.h"
#include "worker/train/nn/linear.h"
#include "worker/train/nn/norm.h"
#include "worker/train/text/sequence.h"

namespace ftune::train {

class KvCache;
class Rope;

// The Llama family's LoRA module names in PEFT's (HF's) spelling; a model's
// own are config().LoraModuleNames().
inline constexpr const char* kLoraModuleNames[] = {
    "q_proj",    "k_proj",  "v_proj",   "o_proj",
    "gate_proj", "up_proj", "down_proj"};

struct ModelOptions {
  // Compute dtype: frozen weights, activations. LoRA weights are held in
  // MasterDtype(dtype) and cast for each matmul.
  torch::Dtype dtype = torch::kFloat32;
  std::string device = "cpu";
  // Rows of the LM-head/cross-entropy chunk.
  int64_t loss_chunk_rows = 256;
  // QLoRA: quantise every frozen projection of every layer, with or without
  // LoRA, as it is loaded. `dtype` is the compute dtype.
  std::optional<QuantOptions> quantization;
  // Gradient checkpointing: while training with autograd on, each decoder
  // layer keeps only its input; backward runs the layer again (same RNG
  // state, so LoRA dropout draws the same mask) and backpropagates through
  // the recomputation. Same gradients, activation memory of one layer
  // instead of all of them, ~1/3 more compute.
  bool gradient_checkpointing = false;
  // Training forwards (no KV cache) attend block by block over only the
  // keys the causal, per-segment mask lets through
  // (nn/blocked_attention.h); false: the dense [B, 1, T, T] mask and the
  // full T x T scores (the bench's --attention dense). Decoding with a
  // cache is always dense.
  bool blocked_attention = true;
  // On CPU the blocked path is used only for batches that pack several
  // documents into a row, where it skips most of the scores: with one
  // document per row the dense products ran faster on CPU (docs/trainer.md
  // "Attention at long sequences"). True: blocked for those too (the
  // bench's --attention blocked). On CUDA the blocked branch (with
  // scaled_dot_product_attention for one document per row) is always used.
  bool blocked_attention_single_documents = false;
  int64_t attention_block = 128;  // query block of the blocked path
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

// One decoder layer's weights. A projection sits in the slot of its role
// (ProjRole): q_proj ... down_proj, or the fused qkv_proj / gate_up_proj;
// GPT-2's c_attn is qkv_proj, attn.c_proj o_proj, c_fc up_proj and
// mlp.c_proj down_proj. Norms the family lacks stay undefined.
struct DecoderLayer {
  NormWeights attn_norm, mlp_norm, post_attn_norm, post_mlp_norm;
  NormWeights q_norm, k_norm;  // over head_dim (Qwen3)
  std::unique_ptr<Linear> q_proj, k_proj, v_proj, qkv_proj, o_proj, gate_proj,
      up_proj, gate_up_proj, down_proj;
  int64_t sliding_window = 0;  // 0: every earlier token of the segment
  // (PEFT module name, projection), parallel to config().arch.modules.
  std::vector<std::pair<std::string, Linear*>> modules;

  std::unique_ptr<Linear>& Slot(ProjRole role);
  // The first module named `name` ("q_proj"...); nullptr if none.
  Linear* Module(const std::string& name);
};

class Model {
 public:
  ~Model();
  // Loads config.json (its family parses it) and the safetensors weights of
  // `dir`. Errors name the missing tensor or the shape mismatch.
  static absl::StatusOr<std::unique_ptr<Model>> Load(
      const std::string& dir, const ModelOptions& options);
  // Random N(0, 0.02) weights, unit norms; uses the default CPU generator.
  static std::unique_ptr<Model> RandomInit(const ModelConfig& config,
                                           const ModelOptions& options);

  // Adds LoRA to the targeted modules of every layer (the family's PEFT
  // names; "all-linear" is all of them). Once only.
  absl::Status ApplyLora(const LoraOptions& options);

  // Mean cross-entropy over the batch's targets (0 with no targets).
  // training=true enables LoRA dropout. Differentiable w.r.t. LoRA params.
  torch::Tensor Loss(const Batch& batch, bool training);
  // Per row, the sum over its targets of log p(target) ([B], fp32; fp64 for
  // an fp64 model): the log-likelihood of each row's answer, for the
  // preference objectives. Differentiable w.r.t. LoRA params. The logits of
  // `loss_chunk_rows` target rows at a time are kept for backward (unlike
  // Loss, which fuses their gradient), so this costs targets x vocab x 4
  // bytes of activations.
  torch::Tensor SequenceLogps(const Batch& batch, bool training);
  // Every LoRA branch on or off (off: the frozen base model, DPO's
  // reference, without a second copy of the weights).
  void set_lora_enabled(bool on);
  // Full logits [B, T, vocab] (tests, small inputs), soft-capped as the
  // loss sees them.
  torch::Tensor Logits(const Batch& batch);
  // Incremental decoding (generate.h): runs the tokens of `batch`
  // (input_ids, position_ids, segment_ids: 0 for a real token, -1 for
  // left padding; labels unused) after the ones already in `cache`, appends
  // their keys and values to it, and returns their soft-capped logits
  // [B, T, vocab] in fp32 (fp64 for an fp64 model), or [B, 1, vocab] of the
  // last token with
  // `last_only`. No LoRA dropout, no autograd.
  torch::Tensor ForwardCached(const Batch& batch, KvCache& cache,
                              bool last_only);
  // An empty cache for `batch` rows of up to `capacity` tokens (see
  // KvCache for rope_length).
  KvCache NewKvCache(int64_t batch, int64_t capacity,
                     int64_t rope_length) const;
  void set_gradient_checkpointing(bool on) {
    options_.gradient_checkpointing = on;
  }

  // One decoder layer: x [B, T, D] -> [B, T, D]. cos/sin: RoPE tables
  // [B, 1, T, rotary_dim] (empty with learned positions); mask: the
  // layer's additive [B, 1, T, T], or with blocked attention the segment
  // ids [B, T] (int64) from which the blocks are planned. Public for the
  // checkpointing autograd function.
  // `cache` (decoding only): layer `cache_layer`'s keys and values are
  // appended to it and attention covers all of them.
  torch::Tensor LayerForward(DecoderLayer& layer, const torch::Tensor& x,
                             const torch::Tensor& cos, const torch::Tensor& sin,
                             const torch::Tensor& mask, bool training,
                             KvCache* cache = nullptr, int64_t cache_layer = 0);

  // LoRA tensors with PEFT key names
  // ("base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight"),
  // layer by layer, modules in the family's order, A before B.
  std::vector<std::pair<std::string, torch::Tensor>> LoraParameters();
  // Full fine-tuning (method "full"): every base tensor, by handle, with
  // its HF name, in MergedStateDict's order; a tied embedding once (so it
  // stays tied). Projections are [out, in] here, also Conv1D ones.
  std::vector<std::pair<std::string, torch::Tensor>> BaseParameters();
  // Makes every base tensor require grad. FAILED_PRECONDITION with LoRA
  // applied or quantised weights.
  absl::Status EnableFullTraining();
  // Every base tensor with its HF name (as the family stores it: Conv1D
  // weights [in, out]), LoRA merged into the projections.
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
  // BaseParameters (merged = false: the frozen tensors themselves,
  // projections [out, in]) and MergedStateDict (true) share this walk.
  std::vector<std::pair<std::string, torch::Tensor>> StateDict(
      bool merged) const;
  Model(ModelConfig config, ModelOptions options);
  torch::Tensor Hidden(const Batch& batch, bool training,
                       KvCache* cache = nullptr);
  torch::Tensor Attention(DecoderLayer& layer, const torch::Tensor& x,
                          const torch::Tensor& cos, const torch::Tensor& sin,
                          const torch::Tensor& mask, bool training,
                          KvCache* cache, int64_t cache_layer);
  torch::Tensor Mlp(DecoderLayer& layer, const torch::Tensor& x, bool training);
  torch::Tensor LmHeadWeight() const;
  // [out, in] of a projection of `role`.
  std::pair<int64_t, int64_t> ProjShape(ProjRole role) const;

  ModelConfig config_;
  ModelOptions options_;
  LoraOptions lora_;
  bool has_lora_ = false;
  torch::Tensor embed_, positions_, lm_head_;  // lm_head_ undefined if tied
  NormWeights final_norm_;
  std::unique_ptr<Rope> rope_;  // RoPE families only
  std::vector<DecoderLayer> layers_;
};

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_MODEL_H_
