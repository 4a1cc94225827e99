// SentencePiece tokenizer.model support and the tokenizer.json converter.
#include "worker/train/text/sentencepiece_tokenizer.h"

#include <algorithm>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/train/text/sentencepiece_bridge.h"
#include "worker/train/text/utf8.h"

namespace ftune::train {

using nlohmann::json;

SentencePieceTokenizer::SentencePieceTokenizer() = default;
SentencePieceTokenizer::~SentencePieceTokenizer() = default;

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>>
SentencePieceTokenizer::Create(const std::string& model_bytes,
                               absl::string_view tokenizer_config_json) {
  std::unique_ptr<SentencePieceTokenizer> t(new SentencePieceTokenizer());
  std::string error;
  t->model_ = sp::SpModel::Load(model_bytes, &error);
  if (t->model_ == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.model: ", error));
  }
  const int n = t->model_->size();
  t->special_.assign(n, false);
  for (int id = 0; id < n; ++id) {
    const sp::Piece p = t->model_->piece(id);
    if (p.type == sp::PieceType::kControl ||
        p.type == sp::PieceType::kUnknown) {
      t->special_[id] = true;
      if (!p.text.empty()) t->specials_.emplace_back(p.text, id);
    }
  }
  std::stable_sort(t->specials_.begin(), t->specials_.end(),
                   [](const auto& a, const auto& b) {
                     return a.first.size() > b.first.size();
                   });
  TokenizerConfig config;
  auto piece_or_empty = [&](int id) {
    return id >= 0 && id < n ? t->model_->piece(id).text : std::string();
  };
  config.bos_token = piece_or_empty(t->model_->bos_id());
  config.eos_token = piece_or_empty(t->model_->eos_id());
  config.unk_token = piece_or_empty(t->model_->unk_id());
  config.pad_token = piece_or_empty(t->model_->pad_id());
  config.add_bos_token = true;
  FTUNE_RETURN_IF_ERROR(ApplyTokenizerConfig(tokenizer_config_json, &config));
  t->SetConfig(std::move(config));
  return t;
}

std::vector<int32_t> SentencePieceTokenizer::Encode(
    absl::string_view text, const EncodeOptions& options) const {
  std::vector<int32_t> out;
  auto encode = [&](absl::string_view seg, bool prefix) {
    if (seg.empty()) return;
    for (int id :
         model_->Encode(std::string_view(seg.data(), seg.size()), prefix)) {
      out.push_back(id);
    }
  };
  if (!options.parse_special) {
    encode(text, options.add_prefix_space);
    return out;
  }
  size_t start = 0;
  bool first = true;
  for (size_t i = 0; i < text.size();) {
    const std::pair<std::string, int32_t>* match = nullptr;
    for (const auto& s : specials_) {
      if (absl::StartsWith(text.substr(i), s.first)) {
        match = &s;
        break;
      }
    }
    if (match == nullptr) {
      ++i;
      continue;
    }
    encode(text.substr(start, i - start), !first || options.add_prefix_space);
    first = false;
    out.push_back(match->second);
    i += match->first.size();
    start = i;
  }
  encode(text.substr(start), !first || options.add_prefix_space);
  return out;
}

std::string SentencePieceTokenizer::Decode(absl::Span<const int32_t> ids,
                                           bool skip_special) const {
  std::string out;
  std::vector<int> run;
  auto flush = [&] {
    if (!run.empty()) out += model_->Decode(run);
    run.clear();
  };
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    if (!special_[id]) {
      run.push_back(id);
      continue;
    }
    flush();
    if (!skip_special) out += model_->piece(id).text;
  }
  flush();
  return out;
}

int32_t SentencePieceTokenizer::vocab_size() const { return model_->size(); }

std::optional<int32_t> SentencePieceTokenizer::TokenToId(
    absl::string_view token) const {
  const int id =
      model_->PieceToId(std::string_view(token.data(), token.size()));
  if (id < 0) return std::nullopt;
  return id;
}

std::string SentencePieceTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return "";
  return model_->piece(id).text;
}

bool SentencePieceTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && special_[id];
}

absl::StatusOr<std::string> SentencePieceModelToTokenizerJson(
    const sp::SpModel& model) {
  const int n = model.size();
  json vocab = json::object();
  json added = json::array();
  absl::flat_hash_map<std::string, int> normal;  // pieces that BPE may build
  std::vector<sp::Piece> pieces(n);
  std::string unk;
  int bytes = 0;
  for (int id = 0; id < n; ++id) {
    pieces[id] = model.piece(id);
    const sp::Piece& p = pieces[id];
    vocab[p.text] = id;
    switch (p.type) {
      case sp::PieceType::kControl:
      case sp::PieceType::kUnknown:
        added.push_back({{"id", id},
                         {"content", p.text},
                         {"single_word", false},
                         {"lstrip", false},
                         {"rstrip", false},
                         {"normalized", false},
                         {"special", true}});
        if (p.type == sp::PieceType::kUnknown) unk = p.text;
        break;
      case sp::PieceType::kByte:
        ++bytes;
        break;
      case sp::PieceType::kNormal:
      case sp::PieceType::kUserDefined:
        normal[p.text] = id;
        break;
      case sp::PieceType::kUnused:
        break;
    }
  }
  if (bytes != 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.model: has ", bytes,
                     " byte pieces, expected 256 (byte_fallback)"));
  }
  // (score of merged piece, its id, split offset, left, right)
  std::vector<std::tuple<float, int, size_t, std::string, std::string>> merges;
  for (const auto& [text, id] : normal) {
    for (size_t k = Utf8CharLen(text, 0); k < text.size();
         k += Utf8CharLen(text, k)) {
      auto l = normal.find(text.substr(0, k));
      auto r = normal.find(text.substr(k));
      if (l != normal.end() && r != normal.end()) {
        merges.emplace_back(pieces[id].score, id, k, l->first, r->first);
      }
    }
  }
  std::sort(merges.begin(), merges.end(), [](const auto& a, const auto& b) {
    if (std::get<0>(a) != std::get<0>(b))
      return std::get<0>(a) > std::get<0>(b);
    if (std::get<1>(a) != std::get<1>(b))
      return std::get<1>(a) < std::get<1>(b);
    return std::get<2>(a) < std::get<2>(b);
  });
  json merge_list = json::array();
  for (const auto& m : merges)
    merge_list.push_back({std::get<3>(m), std::get<4>(m)});
  const std::string meta = "\xE2\x96\x81";
  // Like Llama's tokenizer.json: the post-processor adds BOS (our loader
  // reads this as the add_bos_token default).
  json post = nullptr;
  const int bos = model.bos_id();
  if (bos >= 0 && bos < n) {
    const std::string b = pieces[bos].text;
    post = {{"type", "TemplateProcessing"},
            {"single",
             {{{"SpecialToken", {{"id", b}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"special_tokens",
             {{b, {{"id", b}, {"ids", {bos}}, {"tokens", {b}}}}}}};
  }
  json root = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", meta}},
          {{"type", "Replace"},
           {"pattern", {{"String", " "}}},
           {"content", meta}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor", post},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"},
           {"pattern", {{"String", meta}}},
           {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", unk.empty() ? json(nullptr) : json(unk)},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"vocab", vocab},
        {"merges", merge_list}}}};
  return root.dump();
}

}  // namespace ftune::train
