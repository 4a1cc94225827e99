#include "worker/train/bench.h"

#include <chrono>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "worker/train/distributed.h"
#include "worker/train/dtype.h"
#include "worker/train/families/memory_shape.h"
#include "worker/train/model.h"
#include "worker/train/optimizer.h"
#include "worker/train/runtime.h"
#include "worker/train/torch_compat.h"

namespace ftune::train {
namespace {

using torch::Tensor;

absl::StatusOr<BenchResult> Bench(
    const BenchOptions& o, const std::function<void(const std::string&)>& log,
    Distributed* dist) {
  const int threads = compat::SetThreads(o.threads);
  if (log)
    log(absl::StrCat("threads=", threads, " blas=", compat::BlasLibrary(),
                     " openmp=", OpenMpSpinPolicy(), " attention=",
                     o.blocked_attention_single_documents
                         ? absl::StrCat("blocked/", o.attention_block)
                         : std::string("dense")));
  torch::manual_seed(o.seed);
  // Count tensor bytes from here on (the planner's measure).
  compat::TrackCpuTensorMemory();
  ModelOptions mopts;
  mopts.loss_chunk_rows = o.loss_chunk_rows;
  const std::optional<contract::Dtype> dtype =
      contract::FromName<contract::Dtype>(o.dtype);
  if (!dtype || *dtype == contract::Dtype::kFp64)
    return absl::InvalidArgumentError("--dtype must be fp32, bf16 or fp16");
  if (!contract::IsDeviceName(o.device))
    return absl::InvalidArgumentError(
        "--device must be cpu, cuda or cuda:N, got \"" + o.device + "\"");
  const torch::Device device = compat::ParseDevice(o.device);
  if (std::string why; !compat::DeviceAvailable(device, &why))
    return absl::FailedPreconditionError(
        absl::StrCat("--device ", o.device, ": ", why));
  if (o.dtype == "fp16" && !device.is_cuda())
    return absl::InvalidArgumentError("--dtype fp16 needs --device cuda");
  mopts.dtype = TorchDtype(*dtype);
  mopts.device = o.device;
  mopts.gradient_checkpointing = o.gradient_checkpointing;
  mopts.blocked_attention = o.blocked_attention;
  mopts.blocked_attention_single_documents =
      o.blocked_attention_single_documents;
  mopts.attention_block = o.attention_block;
  if (o.qlora) {
    QuantOptions q;
    q.type = o.quantization.quant_type;
    q.block_size = o.quantization.block_size;
    q.double_quant = o.quantization.double_quant;
    mopts.quantization = q;
  }
  std::unique_ptr<Model> model = Model::RandomInit(o.config, mopts);
  BenchResult result;
  if (o.qlora) {
    const Model::QuantizedSize qs = model->quantized_size();
    result.quantized_parameters = qs.parameters;
    result.quantized_bytes = qs.bytes;
    result.bits_per_parameter = 8.0 * static_cast<double>(qs.bytes) /
                                static_cast<double>(qs.parameters);
  }
  if (o.full && o.qlora)
    return absl::InvalidArgumentError("--method full does not take --qlora");
  if (o.full) {
    FTUNE_RETURN_IF_ERROR(model->EnableFullTraining());
  } else {
    LoraOptions lopts;
    lopts.rank = o.rank;
    lopts.alpha = 2.0 * o.rank;
    lopts.target_modules = o.targets;
    FTUNE_RETURN_IF_ERROR(model->ApplyLora(lopts));
  }
  NamedTensors params =
      o.full ? model->BaseParameters() : model->LoraParameters();
  for (const auto& [n, p] : params) result.trainable_parameters += p.numel();
  const int world = dist != nullptr ? dist->world_size() : 1;
  result.world_size = world;
  if (dist != nullptr) FTUNE_RETURN_IF_ERROR(dist->BroadcastFromMain(params));
  AdamW opt(params, 0.0);
  // Synthetic data: uniform tokens, every position a target.
  std::vector<PackedSequence> rows(o.batch);
  std::mt19937_64 rng(o.seed);
  for (auto& r : rows) {
    for (int64_t t = 0; t <= o.seq; ++t)
      r.input_ids.push_back(static_cast<int32_t>(rng() % o.config.vocab_size));
    r.labels.assign(r.input_ids.begin() + 1, r.input_ids.end());
    r.input_ids.pop_back();
    for (int64_t t = 0; t < o.seq; ++t) {
      r.position_ids.push_back(static_cast<int32_t>(t));
      r.segment_ids.push_back(0);
    }
  }
  std::vector<const PackedSequence*> ptrs;
  for (auto& r : rows) ptrs.push_back(&r);
  Batch batch = MakeBatch(ptrs, model->device());
  // The training steps' peak: setup transients (random init in fp32 before
  // the cast, quantising) are not part of it.
  compat::ResetTensorPeak(model->device());
  double timed = 0, timed_allreduce = 0;
  for (int64_t s = 0; s < o.warmup + o.steps; ++s) {
    auto t0 = std::chrono::steady_clock::now();
    for (auto& [n, p] : params) p.mutable_grad() = Tensor();
    Tensor loss = model->Loss(batch, /*training=*/true);
    (loss / world).backward();
    result.last_loss = loss.item<double>() / world;
    if (dist != nullptr) {
      int64_t tokens = o.batch * o.seq;
      FTUNE_RETURN_IF_ERROR(
          dist->ReduceStep(params, &result.last_loss, &tokens));
      if (s >= o.warmup) timed_allreduce += dist->last_allreduce_seconds();
    }
    opt.Step(1e-4);
    double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    if (s >= o.warmup) timed += secs;
    if (log)
      log(absl::StrFormat("step %d%s loss=%.4f %.3fs tokens_per_s=%.1f", s + 1,
                          s < o.warmup ? " (warmup)" : "", result.last_loss,
                          secs, world * o.batch * o.seq / secs));
  }
  result.seconds_per_step = timed / std::max<int64_t>(1, o.steps);
  result.tokens_per_s = world * o.batch * o.seq / result.seconds_per_step;
  result.allreduce_seconds_per_step =
      timed_allreduce / std::max<int64_t>(1, o.steps);
  result.allreduce_share =
      result.allreduce_seconds_per_step / result.seconds_per_step;
  result.peak_memory_bytes = compat::PeakMemoryBytes(model->device());
  result.tensor_peak_bytes = compat::TensorPeakBytes(model->device());
  return result;
}

}  // namespace

contract::MemoryPlanInput MemoryPlanInputOf(const BenchOptions& o) {
  contract::MemoryPlanInput in;
  in.model = MemoryShapeOf(o.config);
  in.method = o.qlora ? "qlora" : "lora";
  in.dtype = o.dtype;
  in.quant_block_size = o.quantization.block_size;
  in.double_quant = o.quantization.double_quant;
  in.lora_rank = o.rank;
  in.lora_dropout = 0;
  in.target_modules = o.targets;
  in.micro_batch = o.batch;
  in.seq_len = o.seq;
  in.gradient_checkpointing = o.gradient_checkpointing;
  in.loss_chunk_rows = o.loss_chunk_rows;
  in.cuda = o.device.rfind("cuda", 0) == 0;
  return in;
}

absl::StatusOr<BenchResult> RunBench(
    const BenchOptions& options,
    const std::function<void(const std::string&)>& log, Distributed* dist) {
  try {
    return Bench(options, log, dist);
  } catch (const c10::Error& e) {
    if (compat::IsOutOfMemory(e))
      return absl::ResourceExhaustedError(
          absl::StrCat("out of memory: ", e.what_without_backtrace()));
    return absl::InternalError(
        absl::StrCat("LibTorch error: ", e.what_without_backtrace()));
  }
}

}  // namespace ftune::train
