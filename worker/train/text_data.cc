// Raw JSONL -> rows through ftune_text. The pipeline itself (validation,
// split, shuffle, templates, truncation, packing) lives in
// text/dataset_builder; this file adds what the trainer needs around it: the
// model's tokenizer, file hashes, error messages that name the file, and a
// check that every id fits the model's embedding.
#include "worker/train/text_data.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status.h"
#include "worker/train/text/tokenizer.h"

namespace ftune::train {
namespace {

LoadedData ToLoaded(std::vector<PackedSequence> rows, const DatasetStats& s,
                    std::string sha256) {
  LoadedData out;
  out.rows = std::move(rows);
  out.sha256 = std::move(sha256);
  out.num_examples = s.examples;
  out.num_target_tokens = s.trained_tokens;
  out.stats.examples = s.examples;
  out.stats.truncated = s.truncated;
  out.stats.dropped_overlength = s.dropped_overlength;
  out.stats.dropped_no_target = s.dropped_no_target;
  out.stats.rows = s.rows;
  out.stats.total_tokens = s.total_tokens;
  out.stats.trained_tokens = s.trained_tokens;
  return out;
}

absl::Status CheckVocab(const std::vector<PackedSequence>& rows,
                        int64_t vocab_size, const std::string& model_dir) {
  if (vocab_size <= 0) return absl::OkStatus();
  for (const PackedSequence& r : rows) {
    for (int32_t id : r.input_ids) {
      if (id < 0 || id >= vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat(model_dir, ": the tokenizer produced id ", id,
                         ", outside the model's vocab_size ", vocab_size));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TrainingData> TextJsonlSource::Load(
    const std::string& train_path, const std::string& validation_path,
    const DataOptions& options) {
  // Read the data first: a missing file is the more likely mistake and its
  // message should not wait for the tokenizer.
  FTUNE_ASSIGN_OR_RETURN(std::string train_text, ReadFile(train_path));
  std::string validation_text;
  if (!validation_path.empty()) {
    FTUNE_ASSIGN_OR_RETURN(validation_text, ReadFile(validation_path));
    if (validation_text.find_first_not_of(" \t\r\n") == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(validation_path, ": no examples"));
    }
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizer(options_.model_dir);
  if (!tokenizer.ok()) return tokenizer.status();

  DatasetOptions d;
  d.chat_template = options_.chat_template;
  d.max_seq_length = static_cast<int32_t>(
      std::min<int64_t>(options.max_seq_length, INT32_MAX));
  d.packing = options.packing;
  d.overlength = options_.overlength;
  d.seed = options.seed;
  d.validation_split = options.validation_split;
  absl::StatusOr<Dataset> ds =
      BuildDatasetFromText(train_text, validation_text, **tokenizer, d);
  if (!ds.ok()) {
    // The builder says which split; name the file the user has to fix.
    const absl::string_view msg = ds.status().message();
    if (absl::StartsWith(msg, "validation file") && !validation_path.empty())
      return Annotate(ds.status(), validation_path);
    return Annotate(ds.status(), train_path);
  }
  FTUNE_RETURN_IF_ERROR(
      CheckVocab(ds->train, options.vocab_size, options_.model_dir));
  FTUNE_RETURN_IF_ERROR(
      CheckVocab(ds->validation, options.vocab_size, options_.model_dir));

  TrainingData out;
  out.train =
      ToLoaded(std::move(ds->train), ds->train_stats, Sha256Hex(train_text));
  out.validation =
      ToLoaded(std::move(ds->validation), ds->validation_stats,
               validation_path.empty() ? "" : Sha256Hex(validation_text));
  out.train.pairs = out.validation.pairs = ds->pairs;
  out.validation_examples = std::move(ds->validation_examples);
  const bool has_tokenizer_json =
      access(JoinPath(options_.model_dir, "tokenizer.json").c_str(), F_OK) == 0;
  out.description = {
      {"format", std::string(DatasetFormatName(ds->format))},
      {"tokenizer", has_tokenizer_json ? "tokenizer.json" : "tokenizer.model"}};
  if (ds->format == DatasetFormat::kMessages ||
      ds->format == DatasetFormat::kChatPreference) {
    out.description.emplace_back(
        "chat_template", std::string(ChatTemplateName(ds->chat_template)));
  }
  return out;
}

std::unique_ptr<DataSource> NewDataSource(const contract::TrainSpec& spec) {
  if (spec.data.format == contract::DataFormat::kPretokenized)
    return std::make_unique<PretokenizedJsonlSource>();
  TextDataOptions o;
  o.model_dir = spec.model_dir;
  o.chat_template = spec.data.chat_template;
  o.overlength = spec.data.overlength == contract::Overlength::kDrop
                     ? OverlengthPolicy::kDrop
                     : OverlengthPolicy::kTruncate;
  return std::make_unique<TextJsonlSource>(std::move(o));
}

}  // namespace ftune::train
