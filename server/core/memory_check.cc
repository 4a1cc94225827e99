#include "server/core/memory_check.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/contract/limits.h"

namespace ftune::core {
namespace {

using contract::FormatBytes;
using contract::MemoryPlan;
using contract::MemoryPlanInput;

int64_t Total(const MemoryPlanInput& in) {
  absl::StatusOr<MemoryPlan> p = contract::PlanMemory(in);
  return p.ok() ? p->total : INT64_MAX;
}

// The changes that would make `in` fit in `budget`, each with its
// prediction; the cheapest in training quality first.
std::vector<std::string> Suggestions(const MemoryPlanInput& in,
                                     const v1::JobSpec& spec, int64_t budget) {
  std::vector<std::string> out;
  const int64_t accumulation =
      std::max(1, spec.hyperparameters().gradient_accumulation_steps());
  // A smaller micro-batch with more accumulation: the same effective batch.
  for (int64_t mb = in.micro_batch / 2; mb >= 1; mb /= 2) {
    MemoryPlanInput s = in;
    s.micro_batch = mb;
    s.gradient_accumulation = accumulation * ((in.micro_batch + mb - 1) / mb);
    if (const int64_t t = Total(s); t <= budget) {
      out.push_back(absl::StrCat("hyperparameters.batch_size ", mb,
                                 " with gradient_accumulation_steps ",
                                 s.gradient_accumulation,
                                 " (same effective batch): ", FormatBytes(t)));
      break;
    }
  }
  if (!in.gradient_checkpointing) {
    MemoryPlanInput s = in;
    s.gradient_checkpointing = true;
    if (const int64_t t = Total(s); t <= budget)
      out.push_back(absl::StrCat(
          "hyperparameters.gradient_checkpointing true: ", FormatBytes(t)));
  }
  if (in.method == "lora") {
    MemoryPlanInput s = in;
    s.method = "qlora";
    if (const int64_t t = Total(s); t <= budget)
      out.push_back(absl::StrCat("method QLORA: ", FormatBytes(t)));
  }
  if (in.method == "full") {
    // An adapter instead of every weight (the default rank and targets).
    MemoryPlanInput s = in;
    s.method = "lora";
    s.lora_rank = contract::defaults::kLoraRank;
    s.target_modules = {std::string(contract::defaults::kAllLinear)};
    if (const int64_t t = Total(s); t <= budget)
      out.push_back(absl::StrCat("method LORA: ", FormatBytes(t)));
  }
  if (out.empty()) {
    // All of them together.
    MemoryPlanInput s = in;
    s.micro_batch = 1;
    s.gradient_checkpointing = true;
    if (s.method == "lora") s.method = "qlora";
    if (const int64_t t = Total(s); t <= budget)
      out.push_back(absl::StrCat("batch_size 1, gradient_checkpointing true",
                                 in.method == "lora" ? " and method QLORA" : "",
                                 ": ", FormatBytes(t)));
  }
  // A shorter max_seq_length with the current settings.
  const int64_t seq =
      contract::LongestFittingSequence(in, budget, 16, in.seq_len - 1);
  if (seq > 0) {
    MemoryPlanInput s = in;
    s.seq_len = seq;
    out.push_back(absl::StrCat("hyperparameters.max_seq_length ", seq, ": ",
                               FormatBytes(Total(s))));
  }
  return out;
}

}  // namespace

contract::MemoryPlanInput MemoryPlanInputOf(const v1::JobSpec& resolved,
                                            const contract::ModelShape& shape) {
  MemoryPlanInput in;
  in.model = shape;
  switch (resolved.method()) {
    case v1::TRAINING_METHOD_QLORA:
      in.method = "qlora";
      break;
    case v1::TRAINING_METHOD_FULL:
      // Weights, gradients, fp32 masters (16-bit compute) and AdamW's two
      // fp32 moments for every parameter: contract::PlanMemory's "full".
      in.method = "full";
      break;
    default:
      in.method = "lora";
  }
  const bool gpu = resolved.resources().gpus() > 0;
  switch (resolved.quantization().compute_dtype()) {
    case v1::COMPUTE_DTYPE_FP32:
      in.dtype = "fp32";
      break;
    case v1::COMPUTE_DTYPE_BF16:
      in.dtype = "bf16";
      break;
    case v1::COMPUTE_DTYPE_FP16:
      in.dtype = "fp16";
      break;
    default:
      in.dtype = gpu ? "bf16" : "fp32";
  }
  const v1::QuantizationConfig& q = resolved.quantization();
  if (q.block_size() > 0) in.quant_block_size = q.block_size();
  if (q.has_double_quant()) in.double_quant = q.double_quant();
  const v1::LoraConfig& l = resolved.lora();
  if (l.rank() > 0) in.lora_rank = l.rank();
  in.lora_dropout = l.dropout();
  if (l.target_modules_size() > 0)
    in.target_modules.assign(l.target_modules().begin(),
                             l.target_modules().end());
  const v1::Hyperparameters& h = resolved.hyperparameters();
  in.micro_batch = std::max(1, h.batch_size());
  in.seq_len = std::max(1, h.max_seq_length());
  in.gradient_checkpointing = h.gradient_checkpointing();
  in.packing = h.packing();
  in.gradient_accumulation = std::max(1, h.gradient_accumulation_steps());
  in.cuda = gpu;
  return in;
}

DeviceMemory DeviceMemoryFor(const v1::JobSpec& resolved,
                             const std::vector<Worker>& workers) {
  DeviceMemory out;
  const v1::Resources& r = resolved.resources();
  if (r.gpus() <= 0) {
    if (r.memory_bytes() > 0) {
      out.bytes = r.memory_bytes();
      out.device = "resources.memory_bytes";
    }
    return out;
  }
  const std::string want = absl::AsciiStrToLower(r.gpu_type());
  for (const Worker& w : workers) {
    const WorkerCapabilities& c = w.capabilities;
    if (w.state == WorkerState::kLost || c.gpus < r.gpus() ||
        c.gpu_memory_bytes <= out.bytes)
      continue;
    if (!want.empty() &&
        !absl::StrContains(absl::AsciiStrToLower(c.gpu_type), want))
      continue;
    out.bytes = c.gpu_memory_bytes;
    out.device = absl::StrCat(c.gpu_type, " (worker ", w.id, ")");
  }
  if (out.bytes == 0) {
    out.bytes = contract::KnownGpuMemoryBytes(r.gpu_type());
    if (out.bytes > 0) out.device = absl::StrCat("a ", r.gpu_type(), " GPU");
  }
  return out;
}

absl::StatusOr<MemoryVerdict> CheckMemory(const v1::JobSpec& resolved,
                                          const contract::ModelShape& shape,
                                          const DeviceMemory& device) {
  const MemoryPlanInput in = MemoryPlanInputOf(resolved, shape);
  MemoryVerdict v;
  absl::StatusOr<MemoryPlan> plan = contract::PlanMemory(in);
  if (!plan.ok()) return plan.status();
  v.plan = *plan;
  v.device = device;
  if (device.bytes <= 0) return v;
  const int64_t total = plan->total;
  const bool gpu = resolved.resources().gpus() > 0;
  if (total > device.bytes) {
    const std::string head = absl::StrCat(
        "predicted peak memory ", FormatBytes(total), " per ",
        gpu ? "GPU" : "process", " exceeds the ", FormatBytes(device.bytes),
        " of ", device.device, " (", plan->Breakdown(), ")");
    if (!gpu) {
      // A CPU job's reservation is the tenant's to set: a note, not a
      // refusal.
      v.warning = absl::StrCat(head, "; the job may run out of memory");
      return v;
    }
    v.fits = false;
    const std::vector<std::string> s = Suggestions(in, resolved, device.bytes);
    v.refusal = absl::StrCat(
        head, s.empty()
                  ? "; no single change fits: a GPU with more memory "
                    "(resources.gpu_type) is needed"
                  : absl::StrCat("; would fit: ", absl::StrJoin(s, "; ")));
    return v;
  }
  if (static_cast<double>(total) >
      kMemoryCloseShare * static_cast<double>(device.bytes)) {
    v.warning =
        absl::StrCat("predicted peak memory ", FormatBytes(total),
                     " is within 10% of the ", FormatBytes(device.bytes),
                     " of ", device.device, ": the job may run out of memory");
  }
  return v;
}

void AddMemoryEstimate(const MemoryVerdict& v, v1::JobEstimate* est) {
  v1::MemoryEstimate* m = est->mutable_memory();
  m->set_peak_bytes(v.plan.total);
  m->set_weights_bytes(v.plan.weights);
  m->set_trainable_bytes(v.plan.trainable);
  m->set_activations_bytes(v.plan.activations);
  m->set_attention_bytes(v.plan.attention);
  m->set_logits_loss_bytes(v.plan.logits_loss);
  m->set_workspace_bytes(v.plan.workspace);
  m->set_device_memory_bytes(v.device.bytes);
  m->set_device(v.device.device);
  m->set_trainable_parameters(v.plan.trainable_parameters);
  if (!v.warning.empty()) est->add_warnings(v.warning);
}

}  // namespace ftune::core
