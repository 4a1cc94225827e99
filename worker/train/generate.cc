#include "worker/train/generate.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "worker/train/nn/attention.h"
#include "worker/train/sampling.h"
#include "worker/train/torch_compat.h"

namespace ftune::train {
namespace {

using torch::Tensor;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// One row of a batch being decoded.
struct Row {
  size_t out = 0;  // index into the result
  int64_t prompt_tokens = 0;
  int64_t budget = 0;            // most tokens it may generate
  std::vector<int32_t> history;  // prompt, then the completion
  std::unique_ptr<TokenSampler> sampler;
  bool done = false;
};

// The earliest occurrence of any stop sequence in `text`; npos if none.
size_t FindStop(const std::string& text, const std::vector<std::string>& stop) {
  size_t best = std::string::npos;
  for (const std::string& s : stop) best = std::min(best, text.find(s));
  return best;
}

// Chooses each active row's next token from `logits` [n, vocab] (rows in
// `active` order) and updates the rows; returns how many tokens it chose.
int64_t Step(const Tensor& logits, const std::vector<Row*>& active,
             const contract::GenerationSpec& spec, const StopConditions& stop,
             std::vector<Completion>& out) {
  Tensor cpu = logits.reshape({static_cast<int64_t>(active.size()), -1})
                   .to(torch::kCPU, torch::kFloat32)
                   .contiguous();
  const int64_t vocab = cpu.size(1);
  float* data = cpu.data_ptr<float>();
  for (size_t r = 0; r < active.size(); ++r) {
    Row& row = *active[r];
    Completion& c = out[row.out];
    const int32_t token =
        row.sampler->Next(absl::MakeSpan(data + r * vocab, vocab), row.history);
    if (std::find(stop.end_tokens.begin(), stop.end_tokens.end(), token) !=
        stop.end_tokens.end()) {
      row.done = true;
      c.finish_reason = "end";
      continue;
    }
    row.history.push_back(token);
    c.ids.push_back(token);
    if (!spec.stop.empty()) {
      const std::string text = stop.decode(c.ids);
      const size_t at = FindStop(text, spec.stop);
      if (at != std::string::npos) {
        row.done = true;
        c.finish_reason = "stop";
        c.text = text.substr(0, at);
        continue;
      }
    }
    if (static_cast<int64_t>(c.ids.size()) >= row.budget) {
      row.done = true;
      c.finish_reason = "length";
    }
  }
  return static_cast<int64_t>(active.size());
}

void GenerateBatch(Model& model, std::vector<Row>& rows,
                   const contract::GenerationSpec& spec,
                   const StopConditions& stop, std::vector<Completion>& out,
                   GenerationStats& stats) {
  const torch::Device dev = model.device();
  const int64_t b = static_cast<int64_t>(rows.size());
  int64_t longest_prompt = 0, most_new = 0, longest = 0;
  for (const Row& r : rows) {
    longest_prompt = std::max(longest_prompt, r.prompt_tokens);
    most_new = std::max(most_new, r.budget);
    longest = std::max(longest, r.prompt_tokens + r.budget);
  }
  KvCache cache =
      model.NewKvCache(b, longest_prompt + most_new, /*rope_length=*/longest);

  // Prefill: every prompt token, left-padded.
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  Tensor ids = torch::zeros({b, longest_prompt}, i64);
  Tensor pos = torch::zeros({b, longest_prompt}, i64);
  Tensor seg = torch::full({b, longest_prompt}, -1, i64);
  auto ai = ids.accessor<int64_t, 2>();
  auto ap = pos.accessor<int64_t, 2>();
  auto as = seg.accessor<int64_t, 2>();
  for (int64_t i = 0; i < b; ++i) {
    const Row& r = rows[i];
    const int64_t pad = longest_prompt - r.prompt_tokens;
    for (int64_t j = 0; j < r.prompt_tokens; ++j) {
      ai[i][pad + j] = r.history[j];
      ap[i][pad + j] = j;
      as[i][pad + j] = 0;
    }
  }
  Batch batch;
  batch.input_ids = ids.to(dev);
  batch.position_ids = pos.to(dev);
  batch.segment_ids = seg.to(dev);
  const auto t0 = Clock::now();
  Tensor logits = model.ForwardCached(batch, cache, /*last_only=*/true);
  logits = logits.to(torch::kCPU);
  stats.prefill_seconds += Since(t0);

  const auto t1 = Clock::now();
  std::vector<Row*> active;
  for (Row& r : rows) active.push_back(&r);
  for (;;) {
    stats.generated_tokens += Step(logits, active, spec, stop, out);
    std::vector<Row*> next;
    std::vector<int64_t> keep;
    for (size_t r = 0; r < active.size(); ++r) {
      if (active[r]->done) continue;
      next.push_back(active[r]);
      keep.push_back(static_cast<int64_t>(r));
    }
    if (next.empty()) break;
    if (next.size() != active.size())
      cache.SelectRows(torch::tensor(keep, i64).to(dev));
    active = std::move(next);
    const int64_t n = static_cast<int64_t>(active.size());
    Tensor step_ids = torch::empty({n, 1}, i64);
    Tensor step_pos = torch::empty({n, 1}, i64);
    auto si = step_ids.accessor<int64_t, 2>();
    auto sp = step_pos.accessor<int64_t, 2>();
    for (int64_t r = 0; r < n; ++r) {
      const Row& row = *active[r];
      si[r][0] = row.history.back();
      sp[r][0] = static_cast<int64_t>(row.history.size()) - 1;
    }
    Batch step;
    step.input_ids = step_ids.to(dev);
    step.position_ids = step_pos.to(dev);
    step.segment_ids = torch::zeros({n, 1}, i64.device(dev));
    logits = model.ForwardCached(step, cache, /*last_only=*/true);
  }
  stats.decode_seconds += Since(t1);
}

}  // namespace

int64_t ContextLength(const Model& model) {
  return model.config().max_position_embeddings;
}

absl::StatusOr<std::vector<Completion>> Generate(
    Model& model, const std::vector<std::vector<int32_t>>& prompts,
    const contract::GenerationSpec& spec, const StopConditions& stop,
    int64_t batch_size, GenerationStats* stats, uint64_t first_index) {
  if (auto bad = contract::CheckGeneration(spec))
    return absl::InvalidArgumentError(
        absl::StrCat("generation setting \"", bad->field, "\": ", bad->why));
  if (!stop.decode)
    return absl::InvalidArgumentError("Generate: no decode function");
  if (batch_size < 1)
    return absl::InvalidArgumentError("Generate: batch_size must be >= 1");
  const int64_t context = ContextLength(model);
  const int64_t vocab = model.config().vocab_size;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int64_t n = static_cast<int64_t>(prompts[i].size());
    if (n == 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "prompt ", first_index + i + 1, " is empty (no tokens)"));
    if (n >= context)
      return absl::InvalidArgumentError(absl::StrCat(
          "prompt ", first_index + i + 1, " is ", n,
          " tokens long; the model's context is ", context,
          " tokens (max_position_embeddings), which leaves no room for a "
          "completion"));
    for (int32_t id : prompts[i]) {
      if (id < 0 || id >= vocab)
        return absl::InvalidArgumentError(
            absl::StrCat("prompt ", first_index + i + 1, ": token id ", id,
                         " is outside the model's vocabulary of ", vocab));
    }
  }
  torch::NoGradGuard no_grad;
  GenerationStats local;
  std::vector<Completion> out(prompts.size());
  for (size_t s = 0; s < prompts.size(); s += batch_size) {
    std::vector<Row> rows;
    for (size_t i = s; i < std::min(prompts.size(), s + batch_size); ++i) {
      Row r;
      r.out = i;
      r.prompt_tokens = static_cast<int64_t>(prompts[i].size());
      r.budget = std::min(spec.max_new_tokens, context - r.prompt_tokens);
      r.history = prompts[i];
      r.sampler = std::make_unique<TokenSampler>(spec, first_index + i);
      out[i].prompt_tokens = r.prompt_tokens;
      local.prompt_tokens += r.prompt_tokens;
      rows.push_back(std::move(r));
    }
    GenerateBatch(model, rows, spec, stop, out, local);
  }
  for (Completion& c : out)
    if (c.finish_reason != "stop") c.text = stop.decode(c.ids);
  if (stats != nullptr) {
    stats->prompt_tokens += local.prompt_tokens;
    stats->generated_tokens += local.generated_tokens;
    stats->prefill_seconds += local.prefill_seconds;
    stats->decode_seconds += local.decode_seconds;
  }
  return out;
}

}  // namespace ftune::train
