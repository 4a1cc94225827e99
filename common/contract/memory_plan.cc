#include "common/contract/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <type_traits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace ftune::contract {
namespace {

struct Projection {
  const char* name;  // PEFT name
  int64_t in, out;
};

// The frozen projections of one layer, as the trainer builds them
// (Model::ProjShape): fused families hold [q|k|v] and [gate|up] as one.
std::vector<Projection> Projections(const ModelShape& m, int64_t hd,
                                    int64_t kv) {
  const int64_t d = m.hidden_size, f = m.intermediate_size;
  std::vector<Projection> p;
  if (m.fused_qkv) {
    p.push_back({"qkv_proj", d, (m.num_heads + 2 * kv) * hd});
  } else {
    p.push_back({"q_proj", d, m.num_heads * hd});
    p.push_back({"k_proj", d, kv * hd});
    p.push_back({"v_proj", d, kv * hd});
  }
  p.push_back({"o_proj", m.num_heads * hd, d});
  if (!m.gated_mlp) {
    p.push_back({"up_proj", d, f});
  } else if (m.fused_gate_up) {
    p.push_back({"gate_up_proj", d, 2 * f});
  } else {
    p.push_back({"gate_proj", d, f});
    p.push_back({"up_proj", d, f});
  }
  p.push_back({"down_proj", f, d});
  return p;
}

bool Targeted(const std::vector<std::string>& targets, const char* name) {
  if (targets.empty()) return true;
  for (const std::string& t : targets)
    if (t == "all-linear" || t == name) return true;
  return false;
}

// Stored bytes of an NF4/FP4 weight of `n` parameters (nf4.h): two codes a
// byte, one absmax per block (fp32, or int8 plus an fp32 scale per
// double-quantisation block).
int64_t QuantizedBytes(int64_t n, const MemoryPlanInput& in) {
  const int64_t blocks = (n + in.quant_block_size - 1) / in.quant_block_size;
  const int64_t codes = (blocks * in.quant_block_size + 1) / 2;
  if (!in.double_quant) return codes + 4 * blocks;
  const int64_t dq =
      (blocks + in.double_quant_block_size - 1) / in.double_quant_block_size;
  return codes + blocks + 4 * dq;
}

// Every field of ModelShape with its name in EncodeModelShape's text.
template <typename F>
void ShapeFields(ModelShape& s, F&& f) {
  f("vocab_size", s.vocab_size);
  f("hidden_size", s.hidden_size);
  f("intermediate_size", s.intermediate_size);
  f("num_layers", s.num_layers);
  f("num_heads", s.num_heads);
  f("num_kv_heads", s.num_kv_heads);
  f("head_dim", s.head_dim);
  f("tie_word_embeddings", s.tie_word_embeddings);
  f("gated_mlp", s.gated_mlp);
  f("fused_qkv", s.fused_qkv);
  f("fused_gate_up", s.fused_gate_up);
  f("learned_positions", s.learned_positions);
  f("attn_softcap", s.attn_softcap);
  f("sliding_window_kinds", s.sliding_window_kinds);
}

}  // namespace

std::string EncodeModelShape(const ModelShape& shape) {
  ModelShape s = shape;
  std::string out;
  ShapeFields(s, [&](const char* name, auto& v) {
    absl::StrAppend(&out, out.empty() ? "" : ",", name, "=",
                    static_cast<int64_t>(v));
  });
  return out;
}

absl::StatusOr<ModelShape> DecodeModelShape(absl::string_view text) {
  ModelShape s;
  for (absl::string_view entry : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    const std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(entry, absl::MaxSplits('=', 1));
    int64_t value = 0;
    if (!absl::SimpleAtoi(kv.second, &value))
      return absl::InvalidArgumentError(
          absl::StrCat("model shape entry \"", entry, "\" is not key=integer"));
    ShapeFields(s, [&](const char* name, auto& field) {
      if (kv.first == name)
        field = static_cast<std::remove_reference_t<decltype(field)>>(value);
    });
  }
  return s;
}

int64_t KnownGpuMemoryBytes(absl::string_view gpu_type) {
  constexpr int64_t kMiB = 1 << 20;
  // Names and totals as nvidia-smi / cudaMemGetInfo report them.
  static constexpr std::pair<const char*, int64_t> kGpus[] = {
      {"NVIDIA H200", 143771 * kMiB},
      {"NVIDIA H100 NVL", 95830 * kMiB},
      {"NVIDIA H100 80GB HBM3", 81559 * kMiB},
      {"NVIDIA A100-SXM4-80GB", 81920 * kMiB},
      {"NVIDIA A100-SXM4-40GB", 40960 * kMiB},
      {"NVIDIA RTX A6000", 49140 * kMiB},
      {"NVIDIA L40S", 46068 * kMiB},
      {"NVIDIA L4", 23034 * kMiB},
      {"NVIDIA A10G", 23028 * kMiB},
      {"NVIDIA GeForce RTX 4090", 24564 * kMiB},
      {"NVIDIA GeForce RTX 3090", 24576 * kMiB},
      {"Tesla V100-SXM2-32GB", 32768 * kMiB},
      {"Tesla T4", 15360 * kMiB},
  };
  if (gpu_type.empty()) return 0;
  const std::string want = absl::AsciiStrToLower(gpu_type);
  int64_t best = 0;
  for (const auto& [name, bytes] : kGpus) {
    if (absl::StrContains(absl::AsciiStrToLower(name), want))
      best = std::max(best, bytes);
  }
  return best;
}

std::string FormatBytes(int64_t bytes) {
  if (bytes >= 1000000000) return absl::StrFormat("%.2f GB", bytes / 1e9);
  if (bytes >= 1000000) return absl::StrFormat("%.1f MB", bytes / 1e6);
  if (bytes >= 1000) return absl::StrFormat("%.1f kB", bytes / 1e3);
  return absl::StrCat(bytes, " B");
}

std::string MemoryPlan::Breakdown() const {
  return absl::StrCat(
      "weights ", FormatBytes(weights), ", trainable + gradients + AdamW ",
      FormatBytes(trainable), ", activations ", FormatBytes(activations),
      ", attention scores ", FormatBytes(attention), ", logits/loss ",
      FormatBytes(logits_loss), ", workspace ", FormatBytes(workspace));
}

absl::StatusOr<MemoryPlan> PlanMemory(const MemoryPlanInput& in) {
  const ModelShape& m = in.model;
  auto positive = [](int64_t v, const char* field) -> absl::Status {
    if (v > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be positive, got ", v));
  };
  for (auto [v, f] :
       {std::pair<int64_t, const char*>{m.vocab_size, "model.vocab_size"},
        {m.hidden_size, "model.hidden_size"},
        {m.intermediate_size, "model.intermediate_size"},
        {m.num_layers, "model.num_hidden_layers"},
        {m.num_heads, "model.num_attention_heads"},
        {in.micro_batch, "micro_batch"},
        {in.seq_len, "seq_len"},
        {in.loss_chunk_rows, "loss_chunk_rows"}}) {
    if (absl::Status s = positive(v, f); !s.ok()) return s;
  }
  const bool full = in.method == "full";
  const bool qlora = in.method == "qlora";
  if (!full && !qlora && in.method != "lora")
    return absl::InvalidArgumentError(absl::StrCat(
        "method must be lora, qlora or full, got \"", in.method, "\""));
  int64_t e = 0;  // bytes per element of the compute dtype
  if (in.dtype == "fp32") e = 4;
  if (in.dtype == "bf16" || in.dtype == "fp16") e = 2;
  if (e == 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "dtype must be fp32, bf16 or fp16, got \"", in.dtype, "\""));
  if (!full && in.lora_rank <= 0)
    return absl::InvalidArgumentError(
        absl::StrCat("lora.rank must be positive, got ", in.lora_rank));
  if (qlora && (in.quant_block_size <= 0 || in.double_quant_block_size <= 0))
    return absl::InvalidArgumentError(
        "quantization block sizes must be positive");

  const int64_t d = m.hidden_size, f = m.intermediate_size, L = m.num_layers;
  const int64_t h = m.num_heads;
  const int64_t kv = m.num_kv_heads > 0 ? m.num_kv_heads : h;
  const int64_t hd = m.head_dim > 0 ? m.head_dim : d / h;
  const int64_t b = in.micro_batch, t = in.seq_len, n = b * t;
  const int64_t r = in.lora_rank;
  const std::vector<Projection> projs = Projections(m, hd, kv);

  MemoryPlan p;
  // Weights. Embedding, LM head (unless tied), position table, norms: in
  // the compute dtype, never quantised.
  int64_t other_params = m.vocab_size * d * (m.tie_word_embeddings ? 1 : 2) +
                         m.learned_positions * d + (2 * L + 1) * d;
  int64_t proj_params = 0, largest_proj = 0;
  for (const Projection& pr : projs) {
    proj_params += pr.in * pr.out;
    largest_proj = std::max(largest_proj, pr.in * pr.out);
  }
  auto targeted = [&](std::initializer_list<const char*> names) {
    if (full) return true;
    for (const char* name : names)
      if (Targeted(in.target_modules, name)) return true;
    return false;
  };
  if (full) {
    // fp32 master weights are trainable; a half-precision run also keeps
    // compute-dtype copies of them.
    p.trainable_parameters = other_params + L * proj_params;
    p.weights = e == 4 ? 0 : e * p.trainable_parameters;
  } else {
    p.weights = e * other_params;
    for (const Projection& pr : projs) {
      p.weights +=
          L * (qlora ? QuantizedBytes(pr.in * pr.out, in) : e * pr.in * pr.out);
      if (Targeted(in.target_modules, pr.name))
        p.trainable_parameters += L * r * (pr.in + pr.out);
    }
  }
  // fp32 master weights and two fp32 AdamW moments, always; the fp32
  // gradients exist from the first backward of a step to the optimizer
  // step (gradients are dropped before each step, optimizer.h), so they
  // count at the forward peak only when micro-batches accumulate.
  const int64_t grads = 4 * p.trainable_parameters;
  const bool accumulating = in.gradient_accumulation > 1;
  p.trainable = 12 * p.trainable_parameters + (accumulating ? grads : 0);

  // What autograd keeps per decoder layer (model.cc: LayerForward). Each
  // RMSNorm keeps its fp32 input, its fp32 normalised value and a
  // per-token rsqrt; its output only where a LoRA reads it. Attention keeps
  // q, k, v (after RoPE; GQA heads repeated, so h heads each) and q's
  // scaled RoPE tables; its output only when o_proj has LoRA. The gated
  // MLP keeps gate, up and act(gate); their product only when down_proj
  // has LoRA. Each LoRA keeps its rank-wide intermediate (and with
  // dropout its dropped input and mask; for half precision its A and B
  // cast to the compute dtype).
  const int64_t norm_in = 8 * n * d + 4 * n;
  const int64_t norm_out = e * n * d;
  int64_t layer = 2 * norm_in + 2 * e * n * hd + 3 * e * n * h * hd;
  if (targeted({"q_proj", "k_proj", "v_proj", "qkv_proj"})) layer += norm_out;
  if (targeted({"o_proj"})) layer += e * n * h * hd;
  if (m.gated_mlp) {
    layer += 3 * e * n * f;
    if (targeted({"gate_proj", "up_proj", "gate_up_proj"})) layer += norm_out;
  } else {
    layer += 2 * e * n * f;
    if (targeted({"up_proj"})) layer += norm_out;
  }
  if (targeted({"down_proj"})) layer += e * n * f;
  for (const Projection& pr : projs) {
    if (full || !Targeted(in.target_modules, pr.name)) continue;
    layer += e * n * r;
    if (in.lora_dropout > 0) layer += (e + 1) * n * pr.in;
    if (e != 4) layer += e * r * (pr.in + pr.out);
  }
  if (full) layer += e * n * (d + f);  // every projection's input
  // Attention (dense path, nn/attention.cc): the probabilities of every
  // head in fp32 (plus their compute-dtype copy for half precision); with a
  // soft-cap also the tanh. The additive masks, one per window kind.
  const int64_t scores = b * h * t * t;
  int64_t attn_layer = (e == 4 ? 4 : 4 + e) * scores;
  if (m.attn_softcap) attn_layer += e * scores;
  const int64_t masks =
      e * b * t * t * std::max<int64_t>(1, m.sliding_window_kinds);
  const int64_t final_norm = norm_in + norm_out;

  // The fused chunked loss (nn/lm_head_loss.cc), at the end of the forward
  // pass: one [chunk, vocab] logits buffer (and its fp32 copy for half
  // precision), the selected hidden rows and their gradient.
  const int64_t chunk = std::min(in.loss_chunk_rows, n);
  const int64_t loss_forward =
      chunk * m.vocab_size * (e == 4 ? 4 : e + 4) + 2 * e * n * d;
  // The backward of the last layer: the gradients of the trainable
  // weights, the incoming [tokens, hidden] gradient, and the largest of
  // the MLP's three [tokens, intermediate] gradients, the attention's two
  // fp32 score-sized gradients (by then the MLP's saved tensors are
  // freed), or a dequantised NF4 weight (on CPU its unpacking peaks at 20
  // bytes a weight; CUDA's kernel writes the e bytes directly).
  const int64_t mlp_saved = (m.gated_mlp ? 4 : 3) * e * n * f;
  const int64_t dequant =
      qlora ? (in.cuda ? e : 20) * largest_proj : int64_t{0};
  int64_t backward =
      (accumulating ? 0 : grads) + e * n * d +
      std::max({3 * e * n * f,
                std::max<int64_t>(0, 8 * scores - mlp_saved - final_norm),
                dequant});

  int64_t forward;
  if (in.gradient_checkpointing) {
    // Each layer keeps its input; backward recomputes one layer at a time,
    // whose activations and attention exist with the backward's
    // transients.
    p.activations = L * e * n * d;
    p.attention = masks;
    forward = final_norm + loss_forward;
    backward += layer + attn_layer;
  } else {
    // The first layer's input needs no gradient: its first norm keeps
    // only its output.
    p.activations = L * layer - norm_in + final_norm;
    p.attention = L * attn_layer + masks;
    forward = loss_forward;
  }
  // The peak is at the end of the forward pass (the loss term) or in the
  // backward of the last layer (the workspace: what it needs beyond the
  // forward peak), whichever is larger. With checkpointing the recomputed
  // layer is shown under activations and attention.
  if (in.gradient_checkpointing && backward > forward) {
    p.activations += layer;
    p.attention += attn_layer;
    backward -= layer + attn_layer;
    forward = std::min(forward - final_norm, backward);
  } else if (in.gradient_checkpointing) {
    p.activations += final_norm;
    forward -= final_norm;
  }
  p.logits_loss = forward;
  p.workspace = std::max<int64_t>(0, backward - forward);
  p.total = p.weights + p.trainable + p.activations + p.attention +
            p.logits_loss + p.workspace;
  return p;
}

int64_t LongestFittingSequence(MemoryPlanInput input, int64_t budget_bytes,
                               int64_t step, int64_t max_seq) {
  // The plan grows with seq_len: binary search over multiples of step.
  int64_t lo = 0, hi = max_seq / step;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    input.seq_len = mid * step;
    absl::StatusOr<MemoryPlan> p = PlanMemory(input);
    if (p.ok() && p->total <= budget_bytes) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo * step;
}

}  // namespace ftune::contract
