#include "worker/train/data.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace ftune::train {
namespace {

absl::Status LineError(const std::string& path, int line,
                       absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(path, ":", line, ": ", why));
}

absl::Status IntList(const nlohmann::json& j, const char* field,
                     const std::string& path, int line, bool required,
                     std::vector<int32_t>* out) {
  auto it = j.find(field);
  if (it == j.end()) {
    return required
               ? LineError(path, line,
                           absl::StrCat("field \"", field, "\" is missing"))
               : absl::OkStatus();
  }
  if (!it->is_array())
    return LineError(path, line,
                     absl::StrCat("field \"", field, "\" must be a list"));
  for (const auto& v : *it) {
    if (!v.is_number_integer())
      return LineError(
          path, line, absl::StrCat("field \"", field, "\" must hold integers"));
    out->push_back(v.get<int32_t>());
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<PackedSequence> PackGreedy(
    const std::vector<PackedSequence>& examples, int64_t max_seq_length) {
  std::vector<PackedSequence> rows;
  PackedSequence cur;
  int32_t seg = 0;
  for (const PackedSequence& e : examples) {
    if (!cur.input_ids.empty() &&
        static_cast<int64_t>(cur.input_ids.size() + e.input_ids.size()) >
            max_seq_length) {
      rows.push_back(std::move(cur));
      cur = PackedSequence();
      seg = 0;
    }
    cur.input_ids.insert(cur.input_ids.end(), e.input_ids.begin(),
                         e.input_ids.end());
    cur.labels.insert(cur.labels.end(), e.labels.begin(), e.labels.end());
    cur.position_ids.insert(cur.position_ids.end(), e.position_ids.begin(),
                            e.position_ids.end());
    cur.segment_ids.insert(cur.segment_ids.end(), e.input_ids.size(), seg++);
  }
  if (!cur.input_ids.empty()) rows.push_back(std::move(cur));
  return rows;
}

absl::StatusOr<TrainingData> PretokenizedJsonlSource::Load(
    const std::string& train_path, const std::string& validation_path,
    const DataOptions& options) {
  if (options.validation_split > 0)
    return absl::InvalidArgumentError(
        "data.validation_split needs a text dataset; pre-tokenized data takes "
        "a validation file");
  TrainingData out;
  FTUNE_ASSIGN_OR_RETURN(out.train, LoadFile(train_path, options));
  if (!validation_path.empty()) {
    FTUNE_ASSIGN_OR_RETURN(out.validation, LoadFile(validation_path, options));
  }
  out.description = {{"format", "pretokenized"}};
  return out;
}

absl::StatusOr<LoadedData> PretokenizedJsonlSource::LoadFile(
    const std::string& path, const DataOptions& options) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  LoadedData out;
  out.sha256 = Sha256Hex(*text);
  std::vector<PackedSequence> examples;
  bool any_packed = false;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == absl::string_view::npos) continue;
    nlohmann::json j =
        nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return LineError(path, line_no, "not a JSON object");
    PackedSequence s;
    absl::Status st;
    if (!(st = IntList(j, "input_ids", path, line_no, true, &s.input_ids))
             .ok() ||
        !(st = IntList(j, "labels", path, line_no, true, &s.labels)).ok() ||
        !(st =
              IntList(j, "position_ids", path, line_no, false, &s.position_ids))
             .ok() ||
        !(st = IntList(j, "segment_ids", path, line_no, false, &s.segment_ids))
             .ok())
      return st;
    const size_t n = s.input_ids.size();
    if (n == 0) return LineError(path, line_no, "\"input_ids\" is empty");
    if (static_cast<int64_t>(n) > options.max_seq_length)
      return LineError(path, line_no,
                       absl::StrCat(n, " tokens exceed max_seq_length ",
                                    options.max_seq_length));
    if (s.labels.size() != n)
      return LineError(path, line_no,
                       "\"labels\" and \"input_ids\" differ in length");
    if (s.position_ids.empty() != s.segment_ids.empty())
      return LineError(path, line_no,
                       "\"position_ids\" and \"segment_ids\" come together");
    if (s.position_ids.empty()) {
      for (size_t i = 0; i < n; ++i) {
        s.position_ids.push_back(static_cast<int32_t>(i));
        s.segment_ids.push_back(0);
      }
    } else {
      any_packed = true;
      if (s.position_ids.size() != n || s.segment_ids.size() != n)
        return LineError(
            path, line_no,
            "\"position_ids\"/\"segment_ids\" length differs from input_ids");
    }
    for (size_t i = 0; i < n; ++i) {
      if (s.input_ids[i] < 0 ||
          (options.vocab_size > 0 && s.input_ids[i] >= options.vocab_size))
        return LineError(path, line_no,
                         absl::StrCat("input_ids[", i, "] = ", s.input_ids[i],
                                      " is outside the vocabulary"));
      if (s.labels[i] != kIgnoreLabel &&
          (s.labels[i] < 0 ||
           (options.vocab_size > 0 && s.labels[i] >= options.vocab_size)))
        return LineError(path, line_no,
                         absl::StrCat("labels[", i, "] = ", s.labels[i],
                                      " is outside the vocabulary"));
      if (s.labels[i] != kIgnoreLabel) ++out.num_target_tokens;
    }
    ++out.num_examples;
    examples.push_back(std::move(s));
  }
  if (examples.empty())
    return absl::InvalidArgumentError(absl::StrCat(path, ": no examples"));
  out.rows = (options.packing && !any_packed)
                 ? PackGreedy(examples, options.max_seq_length)
                 : std::move(examples);
  out.stats.examples = out.num_examples;
  out.stats.rows = static_cast<int64_t>(out.rows.size());
  out.stats.trained_tokens = out.num_target_tokens;
  for (const PackedSequence& r : out.rows)
    out.stats.total_tokens += static_cast<int64_t>(r.input_ids.size());
  return out;
}

}  // namespace ftune::train
