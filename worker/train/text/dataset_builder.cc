// Dataset building: split, shuffle, tokenize, truncate/drop, pack, batch.
#include "worker/train/text/dataset_builder.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace ftune::train {
namespace {

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Uniform in [0, bound) without modulo bias (rejection sampling).
uint64_t Below(uint64_t bound, uint64_t* state) {
  const uint64_t limit = ~uint64_t{0} - (~uint64_t{0} % bound);
  uint64_t x;
  do {
    x = SplitMix64(state);
  } while (x >= limit);
  return x % bound;
}

void AppendExample(const TokenizedExample& ex, size_t len, PackedSequence* row,
                   int32_t segment, DatasetStats* stats) {
  for (size_t i = 0; i < len; ++i) {
    row->input_ids.push_back(ex.ids[i]);
    const bool target = i + 1 < len && ex.loss_mask[i + 1] != 0;
    row->labels.push_back(target ? ex.ids[i + 1] : kIgnoreLabel);
    row->position_ids.push_back(static_cast<int32_t>(i));
    row->segment_ids.push_back(segment);
    if (target) ++stats->trained_tokens;
  }
  stats->total_tokens += static_cast<int64_t>(len);
}

absl::StatusOr<std::vector<TokenizedExample>> TokenizeAll(
    const std::vector<Example>& examples, const std::vector<size_t>& order,
    ChatTemplate tmpl, const Tokenizer& tokenizer) {
  std::vector<TokenizedExample> out;
  out.reserve(order.size());
  for (size_t i : order) {
    FTUNE_ASSIGN_OR_RETURN(TokenizedExample t,
                           TokenizeExample(examples[i], tmpl, tokenizer));
    out.push_back(std::move(t));
  }
  return out;
}

// One side of a preference pair as an example of the supervised format its
// answer has: prompt/completion, or the input messages (not trained on)
// followed by the answer's assistant messages.
Example PairSide(const Example& pair, bool chosen) {
  Example side;
  side.line_number = pair.line_number;
  if (pair.format == DatasetFormat::kPreference) {
    side.format = DatasetFormat::kPromptCompletion;
    side.prompt = pair.prompt;
    side.completion = chosen ? pair.chosen : pair.rejected;
    return side;
  }
  side.format = DatasetFormat::kMessages;
  side.messages = pair.messages;
  for (Message& m : side.messages) m.trainable = false;
  for (const Message& m :
       chosen ? pair.chosen_messages : pair.rejected_messages) {
    side.messages.push_back(m);
    side.messages.back().trainable = true;
  }
  return side;
}

// Rows 2i and 2i+1: pair i's chosen and rejected sides (see the header).
absl::StatusOr<std::vector<PackedSequence>> PairRows(
    const std::vector<Example>& examples, const std::vector<size_t>& order,
    ChatTemplate tmpl, const Tokenizer& tokenizer,
    const DatasetOptions& options, DatasetStats* stats) {
  std::vector<PackedSequence> rows;
  const size_t max_len = static_cast<size_t>(options.max_seq_length);
  for (size_t i : order) {
    const Example& pair = examples[i];
    ++stats->examples;
    TokenizedExample sides[2];
    for (int s = 0; s < 2; ++s) {
      FTUNE_ASSIGN_OR_RETURN(
          sides[s], TokenizeExample(PairSide(pair, s == 0), tmpl, tokenizer));
    }
    // The prompt is every token before the first target.
    size_t prompt = 0;
    while (prompt < sides[0].ids.size() && sides[0].loss_mask[prompt] == 0) {
      ++prompt;
    }
    if (prompt + 1 > max_len) {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", pair.line_number, ": the prompt is ", prompt,
          " tokens; max_seq_length ", max_len,
          " leaves no room for the answers (raise max_seq_length or "
          "shorten the prompt)"));
    }
    const bool over =
        sides[0].ids.size() > max_len || sides[1].ids.size() > max_len;
    if (over && options.overlength == OverlengthPolicy::kDrop) {
      ++stats->dropped_overlength;
      continue;
    }
    if (over) ++stats->truncated;
    for (const TokenizedExample& side : sides) {
      PackedSequence row;
      AppendExample(side, std::min(side.ids.size(), max_len), &row, 0, stats);
      rows.push_back(std::move(row));
    }
  }
  stats->rows += static_cast<int64_t>(rows.size());
  return rows;
}

}  // namespace

std::vector<size_t> SeededPermutation(size_t n, uint64_t seed) {
  std::vector<size_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = i;
  uint64_t state = seed;
  for (size_t i = n; i > 1; --i) {
    std::swap(p[i - 1], p[Below(i, &state)]);
  }
  return p;
}

std::vector<PackedSequence> PackExamples(
    const std::vector<TokenizedExample>& examples, int32_t max_seq_length,
    bool packing, OverlengthPolicy overlength, DatasetStats* stats) {
  std::vector<PackedSequence> rows;
  PackedSequence row;
  int32_t segment = 0;
  const size_t max_len = static_cast<size_t>(max_seq_length);
  for (const TokenizedExample& ex : examples) {
    size_t len = ex.ids.size();
    if (len > max_len) {
      if (overlength == OverlengthPolicy::kDrop) {
        ++stats->dropped_overlength;
        continue;
      }
      ++stats->truncated;
      len = max_len;
    }
    // A target exists if some token at position >= 1 is masked in.
    bool has_target = false;
    for (size_t i = 1; i < len && !has_target; ++i)
      has_target = ex.loss_mask[i] != 0;
    if (!has_target) {
      ++stats->dropped_no_target;
      continue;
    }
    if (!row.input_ids.empty() &&
        (!packing || row.input_ids.size() + len > max_len)) {
      rows.push_back(std::move(row));
      row = PackedSequence();
      segment = 0;
    }
    AppendExample(ex, len, &row, segment++, stats);
  }
  if (!row.input_ids.empty()) rows.push_back(std::move(row));
  stats->rows += static_cast<int64_t>(rows.size());
  return rows;
}

absl::StatusOr<Dataset> BuildDatasetFromText(absl::string_view train_jsonl,
                                             absl::string_view validation_jsonl,
                                             const Tokenizer& tokenizer,
                                             const DatasetOptions& options) {
  if (options.max_seq_length < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_seq_length: ", options.max_seq_length, " (must be >= 2)"));
  }
  if (!(options.validation_split >= 0 && options.validation_split < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("validation_split: ", options.validation_split,
                     " (must be in [0, 1))"));
  }
  if (options.validation_split > 0 && !validation_jsonl.empty()) {
    return absl::InvalidArgumentError(
        "validation_split and a validation file are mutually exclusive");
  }
  Dataset out;
  absl::StatusOr<ParsedDataset> train =
      ParseDataset(train_jsonl, options.limits);
  if (!train.ok()) return Annotate(train.status(), "training file");
  out.format = train->format;
  out.pairs = IsPreferenceFormat(out.format);
  if (out.format == DatasetFormat::kMessages ||
      out.format == DatasetFormat::kChatPreference) {
    FTUNE_ASSIGN_OR_RETURN(
        out.chat_template,
        ResolveChatTemplate(options.chat_template, tokenizer.config()));
  }
  std::vector<Example> val_examples;
  std::vector<size_t> train_order =
      SeededPermutation(train->examples.size(), options.seed);
  if (!validation_jsonl.empty()) {
    absl::StatusOr<ParsedDataset> val =
        ParseDataset(validation_jsonl, options.limits);
    if (!val.ok()) return Annotate(val.status(), "validation file");
    if (val->format != out.format) {
      return absl::InvalidArgumentError(absl::StrCat(
          "validation file: format \"", DatasetFormatName(val->format),
          "\" differs from the training file's \"",
          DatasetFormatName(out.format), "\""));
    }
    val_examples = std::move(val->examples);
  } else if (options.validation_split > 0 && train->examples.size() >= 2) {
    size_t n_val = static_cast<size_t>(
        std::llround(options.validation_split *
                     static_cast<double>(train->examples.size())));
    n_val = std::clamp<size_t>(n_val, 1, train->examples.size() - 1);
    // The first n_val of the shuffled order are held out, in file order.
    std::vector<size_t> held(train_order.begin(), train_order.begin() + n_val);
    std::sort(held.begin(), held.end());
    for (size_t i : held) val_examples.push_back(train->examples[i]);
    train_order.erase(train_order.begin(), train_order.begin() + n_val);
  }
  if (!out.pairs) {
    out.validation_examples.assign(
        val_examples.begin(),
        val_examples.begin() +
            std::min(val_examples.size(), kMaxValidationExamplesKept));
  }
  std::vector<size_t> val_order(val_examples.size());
  for (size_t i = 0; i < val_order.size(); ++i) val_order[i] = i;
  if (out.pairs) {
    absl::StatusOr<std::vector<PackedSequence>> rows =
        PairRows(train->examples, train_order, out.chat_template, tokenizer,
                 options, &out.train_stats);
    if (!rows.ok()) return Annotate(rows.status(), "training file");
    out.train = std::move(*rows);
    rows = PairRows(val_examples, val_order, out.chat_template, tokenizer,
                    options, &out.validation_stats);
    if (!rows.ok()) {
      return Annotate(rows.status(), validation_jsonl.empty()
                                         ? "training file"
                                         : "validation file");
    }
    out.validation = std::move(*rows);
    if (out.train.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "training file: no pair left to train on (", out.train_stats.examples,
          " pairs, ", out.train_stats.dropped_overlength,
          " dropped as longer than ", options.max_seq_length, " tokens)"));
    }
    return out;
  }

  absl::StatusOr<std::vector<TokenizedExample>> train_tok =
      TokenizeAll(train->examples, train_order, out.chat_template, tokenizer);
  if (!train_tok.ok()) return Annotate(train_tok.status(), "training file");
  absl::StatusOr<std::vector<TokenizedExample>> val_tok =
      TokenizeAll(val_examples, val_order, out.chat_template, tokenizer);
  if (!val_tok.ok()) {
    return Annotate(val_tok.status(), validation_jsonl.empty()
                                          ? "training file"
                                          : "validation file");
  }
  out.train_stats.examples = static_cast<int64_t>(train_tok->size());
  out.validation_stats.examples = static_cast<int64_t>(val_tok->size());
  out.train = PackExamples(*train_tok, options.max_seq_length, options.packing,
                           options.overlength, &out.train_stats);
  out.validation =
      PackExamples(*val_tok, options.max_seq_length, options.packing,
                   options.overlength, &out.validation_stats);
  if (out.train.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "training file: no example left to train on (",
        out.train_stats.examples, " examples, ",
        out.train_stats.dropped_overlength, " dropped as longer than ",
        options.max_seq_length, " tokens, ", out.train_stats.dropped_no_target,
        " without a target)"));
  }
  return out;
}

absl::StatusOr<Dataset> BuildDataset(const std::string& train_path,
                                     const std::string& validation_path,
                                     const Tokenizer& tokenizer,
                                     const DatasetOptions& options) {
  FTUNE_ASSIGN_OR_RETURN(std::string train, ReadFile(train_path));
  std::string validation;
  if (!validation_path.empty()) {
    FTUNE_ASSIGN_OR_RETURN(validation, ReadFile(validation_path));
    if (validation.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(validation_path, ": empty file"));
    }
  }
  absl::StatusOr<Dataset> d =
      BuildDatasetFromText(train, validation, tokenizer, options);
  if (!d.ok()) return Annotate(d.status(), train_path);
  return d;
}

TokenBatch MakeTokenBatch(absl::Span<const PackedSequence> rows,
                          int32_t pad_id) {
  TokenBatch b;
  b.batch_size = static_cast<int32_t>(rows.size());
  for (const PackedSequence& r : rows) {
    b.seq_len = std::max(b.seq_len, static_cast<int32_t>(r.input_ids.size()));
  }
  const size_t total =
      static_cast<size_t>(b.batch_size) * static_cast<size_t>(b.seq_len);
  b.input_ids.assign(total, pad_id);
  b.labels.assign(total, kIgnoreLabel);
  b.position_ids.assign(total, 0);
  b.segment_ids.assign(total, kPadSegment);
  for (size_t r = 0; r < rows.size(); ++r) {
    const size_t off = r * static_cast<size_t>(b.seq_len);
    std::copy(rows[r].input_ids.begin(), rows[r].input_ids.end(),
              b.input_ids.begin() + off);
    std::copy(rows[r].labels.begin(), rows[r].labels.end(),
              b.labels.begin() + off);
    std::copy(rows[r].position_ids.begin(), rows[r].position_ids.end(),
              b.position_ids.begin() + off);
    std::copy(rows[r].segment_ids.begin(), rows[r].segment_ids.end(),
              b.segment_ids.begin() + off);
  }
  return b;
}

int32_t PadIdFor(const Tokenizer& tokenizer) {
  if (tokenizer.pad_id() >= 0) return tokenizer.pad_id();
  if (tokenizer.eos_id() >= 0) return tokenizer.eos_id();
  return 0;
}

}  // namespace ftune::train
