// tokenizer.json BPE: added-token split, normalizers, pre-tokenizers, BPE
// merges with a priority queue, byte fallback, decoders.
#include "worker/train/text/bpe_tokenizer.h"

#include <algorithm>
#include <cstring>
#include <queue>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "common/logging.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/train/text/regex.h"
#include "worker/train/text/utf8.h"

namespace ftune::train {

using nlohmann::json;

namespace {

constexpr absl::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// GPT-2's reversible byte <-> printable-character map.
struct ByteLevelTable {
  std::string byte_to_char[256];
  absl::flat_hash_map<uint32_t, uint8_t> char_to_byte;
  ByteLevelTable() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
                             (b >= 174 && b <= 255);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : 256 + n++;
      byte_to_char[b] = EncodeUtf8(cp);
      char_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};

const ByteLevelTable& ByteTable() {
  static const ByteLevelTable* table = new ByteLevelTable();
  return *table;
}

absl::Status Bad(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer.json: ", field, ": ", why));
}

std::string TypeOf(const json& j) {
  auto it = j.find("type");
  if (it == j.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

}  // namespace

struct BpeTokenizer::NormStep {
  enum Kind { kPrepend, kReplace } kind;
  std::string a, b;
};

struct BpeTokenizer::PreStep {
  enum Kind { kSplitRegex, kSplitString, kDigits, kByteLevel, kMetaspace } kind;
  std::shared_ptr<internal::Regex> regex;  // kSplitRegex, kByteLevel(use_regex)
  std::string literal;  // kSplitString; kMetaspace replacement
  bool remove = false;  // Split behavior Removed
  bool flag = false;    // kDigits individual; kByteLevel/kMetaspace add prefix
  bool first_only = false;  // kMetaspace prepend_scheme first
  bool split = false;       // kMetaspace split
};

struct BpeTokenizer::DecStep {
  enum Kind {
    kByteLevel,
    kReplace,
    kByteFallback,
    kFuse,
    kStrip,
    kMetaspace
  } kind;
  std::string a, b;
  int start = 0, stop = 0;
  bool flag = false;
};

BpeTokenizer::BpeTokenizer() {
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  std::fill(std::begin(byte_level_ids_), std::end(byte_level_ids_), -1);
}
BpeTokenizer::~BpeTokenizer() = default;

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::Create(
    absl::string_view tokenizer_json, absl::string_view tokenizer_config_json) {
  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer());
  FTUNE_RETURN_IF_ERROR(t->Load(tokenizer_json, tokenizer_config_json));
  return t;
}

namespace {

absl::Status ParseNormalizer(const json& j,
                             std::vector<BpeTokenizer::NormStep>* out) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(j);
  if (type == "Sequence") {
    for (const json& n : j.value("normalizers", json::array())) {
      FTUNE_RETURN_IF_ERROR(ParseNormalizer(n, out));
    }
  } else if (type == "Prepend") {
    out->push_back(
        {BpeTokenizer::NormStep::kPrepend, j.value("prepend", ""), ""});
  } else if (type == "Replace") {
    const json& p = j.value("pattern", json::object());
    if (!p.contains("String")) {
      return Bad("normalizer.Replace.pattern",
                 "only String patterns are supported");
    }
    out->push_back({BpeTokenizer::NormStep::kReplace,
                    p["String"].get<std::string>(), j.value("content", "")});
  } else if (type == "NFC") {
    FTUNE_LOG(WARNING) << "tokenizer.json: NFC normalizer applied as identity";
  } else {
    return Bad("normalizer", absl::StrCat("unsupported type \"", type, "\""));
  }
  return absl::OkStatus();
}

absl::Status ParsePreTokenizer(const json& j,
                               std::vector<BpeTokenizer::PreStep>* out,
                               bool* byte_level) {
  using P = BpeTokenizer::PreStep;
  if (j.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(j);
  if (type == "Sequence") {
    for (const json& p : j.value("pretokenizers", json::array())) {
      FTUNE_RETURN_IF_ERROR(ParsePreTokenizer(p, out, byte_level));
    }
    return absl::OkStatus();
  }
  P step{};
  if (type == "ByteLevel") {
    step.kind = P::kByteLevel;
    step.flag = j.value("add_prefix_space", false);
    if (j.value("use_regex", true)) {
      FTUNE_ASSIGN_OR_RETURN(
          step.regex, internal::Regex::Compile(std::string(kGpt2Pattern)));
    }
    *byte_level = true;
  } else if (type == "Split") {
    const json& p = j.value("pattern", json::object());
    const std::string behavior = j.value("behavior", "");
    if (behavior != "Isolated" && behavior != "Removed") {
      return Bad(
          "pre_tokenizer.Split.behavior",
          absl::StrCat("unsupported \"", behavior, "\" (Isolated, Removed)"));
    }
    if (j.value("invert", false))
      return Bad("pre_tokenizer.Split.invert", "unsupported");
    step.remove = behavior == "Removed";
    if (p.contains("Regex")) {
      step.kind = P::kSplitRegex;
      FTUNE_ASSIGN_OR_RETURN(
          step.regex, internal::Regex::Compile(p["Regex"].get<std::string>()));
    } else if (p.contains("String")) {
      step.kind = P::kSplitString;
      step.literal = p["String"].get<std::string>();
      if (step.literal.empty())
        return Bad("pre_tokenizer.Split.pattern", "empty");
    } else {
      return Bad("pre_tokenizer.Split.pattern", "expected Regex or String");
    }
  } else if (type == "Digits") {
    step.kind = P::kDigits;
    step.flag = j.value("individual_digits", false);
  } else if (type == "Metaspace") {
    step.kind = P::kMetaspace;
    step.literal = j.value("replacement", "\xE2\x96\x81");
    std::string scheme = j.value("prepend_scheme", "");
    if (scheme.empty())
      scheme = j.value("add_prefix_space", true) ? "always" : "never";
    if (scheme != "always" && scheme != "first" && scheme != "never") {
      return Bad("pre_tokenizer.Metaspace.prepend_scheme",
                 absl::StrCat("unknown \"", scheme, "\""));
    }
    step.flag = scheme != "never";
    step.first_only = scheme == "first";
    step.split = j.value("split", true);
  } else {
    return Bad("pre_tokenizer",
               absl::StrCat("unsupported type \"", type, "\""));
  }
  out->push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status ParseDecoder(const json& j,
                          std::vector<BpeTokenizer::DecStep>* out) {
  using D = BpeTokenizer::DecStep;
  if (j.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(j);
  if (type == "Sequence") {
    for (const json& d : j.value("decoders", json::array())) {
      FTUNE_RETURN_IF_ERROR(ParseDecoder(d, out));
    }
    return absl::OkStatus();
  }
  D step{};
  if (type == "ByteLevel") {
    step.kind = D::kByteLevel;
  } else if (type == "Replace") {
    const json& p = j.value("pattern", json::object());
    if (!p.contains("String")) {
      return Bad("decoder.Replace.pattern",
                 "only String patterns are supported");
    }
    step.kind = D::kReplace;
    step.a = p["String"].get<std::string>();
    step.b = j.value("content", "");
  } else if (type == "ByteFallback") {
    step.kind = D::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = D::kFuse;
  } else if (type == "Strip") {
    step.kind = D::kStrip;
    step.a = j.value("content", " ");
    step.start = j.value("start", 0);
    step.stop = j.value("stop", 0);
  } else if (type == "Metaspace") {
    step.kind = D::kMetaspace;
    step.a = j.value("replacement", "\xE2\x96\x81");
    std::string scheme = j.value("prepend_scheme", "");
    step.flag =
        scheme.empty() ? j.value("add_prefix_space", true) : scheme != "never";
  } else {
    return Bad("decoder", absl::StrCat("unsupported type \"", type, "\""));
  }
  out->push_back(std::move(step));
  return absl::OkStatus();
}

}  // namespace

absl::Status BpeTokenizer::Load(absl::string_view tokenizer_json,
                                absl::string_view tokenizer_config_json) {
  json root;
  try {
    root = json::parse(tokenizer_json.begin(), tokenizer_json.end());
  } catch (const json::exception& e) {
    return Bad("", absl::StrCat("invalid JSON: ", e.what()));
  }
  if (!root.is_object()) return Bad("", "expected an object");
  try {
    const json& model = root.value("model", json::object());
    const std::string mtype = model.value("type", "BPE");
    if (mtype != "BPE") {
      return Bad("model.type",
                 absl::StrCat("unsupported \"", mtype, "\" (only BPE)"));
    }
    if (model.contains("dropout") && !model["dropout"].is_null()) {
      return Bad("model.dropout", "BPE dropout is not supported");
    }
    for (const char* key :
         {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(key) && !model[key].is_null() &&
          !model[key].get<std::string>().empty()) {
        return Bad(absl::StrCat("model.", key), "not supported");
      }
    }
    byte_fallback_ = model.value("byte_fallback", false);
    fuse_unk_ = model.value("fuse_unk", false);
    ignore_merges_ = model.value("ignore_merges", false);
    const json& vocab = model.value("vocab", json::object());
    if (!vocab.is_object() || vocab.empty())
      return Bad("model.vocab", "missing or empty");
    int32_t max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
          it.value().get<int64_t>() > (1 << 24)) {
        return Bad(absl::StrCat("model.vocab[\"", it.key(), "\"]"), "bad id");
      }
      const int32_t id = it.value().get<int32_t>();
      vocab_[it.key()] = id;
      max_id = std::max(max_id, id);
    }
    const json& added = root.value("added_tokens", json::array());
    for (size_t i = 0; i < added.size(); ++i) {
      const json& a = added[i];
      if (!a.contains("id") || !a.contains("content") ||
          !a["content"].is_string() || !a["id"].is_number_integer() ||
          a["id"].get<int64_t>() < 0 || a["id"].get<int64_t>() > (1 << 24)) {
        return Bad(absl::StrCat("added_tokens[", i, "]"),
                   "needs an id and a content");
      }
      AddedToken t{a["id"].get<int32_t>(), a["content"].get<std::string>(),
                   a.value("special", false)};
      if (t.content.empty())
        return Bad(absl::StrCat("added_tokens[", i, "]"), "empty");
      vocab_[t.content] = t.id;
      max_id = std::max(max_id, t.id);
      added_.push_back(std::move(t));
    }
    std::stable_sort(added_.begin(), added_.end(),
                     [](const AddedToken& x, const AddedToken& y) {
                       return x.content.size() > y.content.size();
                     });
    added_by_first_byte_.assign(256, {});
    for (size_t k = 0; k < added_.size(); ++k) {
      added_by_first_byte_[static_cast<unsigned char>(added_[k].content[0])]
          .push_back(static_cast<int32_t>(k));
      added_by_id_[added_[k].id] = static_cast<int32_t>(k);
    }
    id_to_token_.assign(static_cast<size_t>(max_id) + 1, "");
    special_.assign(id_to_token_.size(), false);
    for (const auto& [tok, id] : vocab_) id_to_token_[id] = tok;
    for (const AddedToken& t : added_) special_[t.id] = t.special;

    const json& merges = model.value("merges", json::array());
    for (size_t i = 0; i < merges.size(); ++i) {
      std::string a, b;
      const json& m = merges[i];
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos ||
            s.find(' ', sp + 1) != std::string::npos) {
          return Bad(absl::StrCat("model.merges[", i, "]"),
                     absl::StrCat("expected \"a b\", got \"", s, "\""));
        }
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() &&
                 m[1].is_string()) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        return Bad(absl::StrCat("model.merges[", i, "]"),
                   "expected \"a b\" or [\"a\", \"b\"]");
      }
      auto ia = vocab_.find(a), ib = vocab_.find(b), iab = vocab_.find(a + b);
      for (auto [it, tok] : {std::pair{ia, &a}, std::pair{ib, &b}}) {
        if (it == vocab_.end()) {
          return Bad(absl::StrCat("model.merges[", i, "]"),
                     absl::StrCat("token \"", *tok, "\" is not in the vocab"));
        }
      }
      if (iab == vocab_.end()) {
        return Bad(
            absl::StrCat("model.merges[", i, "]"),
            absl::StrCat("merged token \"", a + b, "\" is not in the vocab"));
      }
      const uint64_t key = (static_cast<uint64_t>(ia->second) << 32) |
                           static_cast<uint32_t>(ib->second);
      merges_.try_emplace(key, Merge{static_cast<int32_t>(i), iab->second});
    }

    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      auto it = vocab_.find(model["unk_token"].get<std::string>());
      if (it == vocab_.end()) return Bad("model.unk_token", "not in the vocab");
      unk_id_ = it->second;
    }
    for (int b = 0; b < 256; ++b) {
      auto it = vocab_.find(absl::StrFormat("<0x%02X>", b));
      if (it != vocab_.end())
        byte_ids_[b] = it->second;
      else if (byte_fallback_) {
        return Bad("model.byte_fallback",
                   absl::StrFormat("byte token <0x%02X> is missing", b));
      }
    }
    FTUNE_RETURN_IF_ERROR(
        ParseNormalizer(root.value("normalizer", json()), &normalizers_));
    FTUNE_RETURN_IF_ERROR(ParsePreTokenizer(root.value("pre_tokenizer", json()),
                                            &pre_tokenizers_, &byte_level_));
    FTUNE_RETURN_IF_ERROR(
        ParseDecoder(root.value("decoder", json()), &decoders_));
    if (byte_level_) {
      for (int b = 0; b < 256; ++b) {
        auto it = vocab_.find(ByteTable().byte_to_char[b]);
        if (it != vocab_.end()) byte_level_ids_[b] = it->second;
      }
    }

    // Defaults from the post-processor, then tokenizer_config.json on top.
    TokenizerConfig config;
    json post = root.value("post_processor", json());
    if (TypeOf(post) ==
        "Sequence") {  // e.g. Llama-3: ByteLevel, TemplateProcessing
      json found;
      for (const json& p : post.value("processors", json::array())) {
        if (TypeOf(p) == "TemplateProcessing") found = p;
      }
      post = found;
    }
    if (TypeOf(post) == "TemplateProcessing") {
      const json& single = post.value("single", json::array());
      auto special_of = [](const json& item) -> std::string {
        if (item.is_object() && item.contains("SpecialToken")) {
          return item["SpecialToken"].value("id", "");
        }
        return "";
      };
      if (!single.empty()) {
        config.bos_token = special_of(single.front());
        config.add_bos_token = !config.bos_token.empty();
        if (single.size() > 1) {
          config.eos_token = special_of(single.back());
          config.add_eos_token = !config.eos_token.empty();
        }
      }
    }
    if (unk_id_ >= 0) config.unk_token = id_to_token_[unk_id_];
    FTUNE_RETURN_IF_ERROR(ApplyTokenizerConfig(tokenizer_config_json, &config));
    SetConfig(std::move(config));
  } catch (const json::exception& e) {
    return Bad("", absl::StrCat("unexpected structure: ", e.what()));
  }
  return absl::OkStatus();
}

std::optional<int32_t> BpeTokenizer::TokenToId(absl::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

std::string BpeTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return "";
  return id_to_token_[id];
}

bool BpeTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && special_[id];
}

std::vector<int32_t> BpeTokenizer::Encode(absl::string_view text,
                                          const EncodeOptions& options) const {
  std::vector<int32_t> out;
  size_t seg_start = 0;
  bool first = true;
  auto flush = [&](size_t end) {
    if (end > seg_start) {
      EncodeSegment(text.substr(seg_start, end - seg_start),
                    /*allow_prefix=*/!first || options.add_prefix_space, first,
                    &out);
    }
    first = false;
  };
  size_t i = 0;
  while (i < text.size()) {
    const AddedToken* match = nullptr;
    for (int32_t k :
         added_by_first_byte_[static_cast<unsigned char>(text[i])]) {
      const AddedToken& t = added_[k];  // longest first
      if (t.special && !options.parse_special) continue;
      if (absl::StartsWith(text.substr(i), t.content)) {
        match = &t;
        break;
      }
    }
    if (match == nullptr) {
      ++i;
      continue;
    }
    flush(i);
    out.push_back(match->id);
    i += match->content.size();
    seg_start = i;
  }
  if (seg_start < text.size() || first) flush(text.size());
  return out;
}

void BpeTokenizer::EncodeSegment(absl::string_view text, bool allow_prefix,
                                 bool first, std::vector<int32_t>* out) const {
  std::string norm(text);
  for (const NormStep& n : normalizers_) {
    if (n.kind == NormStep::kPrepend) {
      if (allow_prefix && !norm.empty()) norm.insert(0, n.a);
    } else {
      norm = absl::StrReplaceAll(norm, {{n.a, n.b}});
    }
  }
  // Pieces are byte ranges of `norm` (or of rewritten strings we keep alive).
  std::vector<std::string> pieces{std::move(norm)};
  std::vector<std::pair<size_t, size_t>> ranges;
  for (const PreStep& p : pre_tokenizers_) {
    std::vector<std::string> next;
    for (std::string& piece : pieces) {
      switch (p.kind) {
        case PreStep::kByteLevel:
          if (p.flag && allow_prefix && !absl::StartsWith(piece, " ")) {
            piece.insert(0, " ");
          }
          if (p.regex == nullptr) {
            next.push_back(std::move(piece));
            continue;
          }
          [[fallthrough]];
        case PreStep::kSplitRegex: {
          ranges.clear();
          p.regex->FindAll(piece, &ranges);
          size_t prev = 0;
          for (auto [b, e] : ranges) {
            if (b > prev) next.push_back(piece.substr(prev, b - prev));
            if (!p.remove) next.push_back(piece.substr(b, e - b));
            prev = e;
          }
          if (prev < piece.size()) next.push_back(piece.substr(prev));
          break;
        }
        case PreStep::kSplitString: {
          size_t prev = 0, pos;
          while ((pos = piece.find(p.literal, prev)) != std::string::npos) {
            if (pos > prev) next.push_back(piece.substr(prev, pos - prev));
            if (!p.remove) next.push_back(p.literal);
            prev = pos + p.literal.size();
          }
          if (prev < piece.size()) next.push_back(piece.substr(prev));
          break;
        }
        case PreStep::kDigits: {
          size_t k = 0;
          while (k < piece.size()) {
            const bool digit = piece[k] >= '0' && piece[k] <= '9';
            size_t e = k + 1;
            if (!digit || !p.flag) {
              while (e < piece.size() &&
                     ((piece[e] >= '0' && piece[e] <= '9') == digit)) {
                ++e;
              }
            }
            next.push_back(piece.substr(k, e - k));
            k = e;
          }
          break;
        }
        case PreStep::kMetaspace: {
          std::string s = absl::StrReplaceAll(piece, {{" ", p.literal}});
          if (p.flag && allow_prefix && (!p.first_only || first) &&
              !absl::StartsWith(s, p.literal)) {
            s.insert(0, p.literal);
          }
          if (!p.split) {
            next.push_back(std::move(s));
            break;
          }
          size_t start = 0, pos;
          while ((pos = s.find(p.literal, start + 1)) != std::string::npos) {
            next.push_back(s.substr(start, pos - start));
            start = pos;
          }
          if (start < s.size()) next.push_back(s.substr(start));
          break;
        }
      }
    }
    pieces = std::move(next);
  }
  for (const std::string& piece : pieces) {
    if (!piece.empty()) EncodeWord(piece, out);
  }
}

void BpeTokenizer::EncodeWord(absl::string_view word,
                              std::vector<int32_t>* out) const {
  struct Sym {
    int32_t id;  // -1: not in vocab (byte fallback / unk at the end)
    int32_t prev, next;
    uint32_t begin, end;  // bytes of `word` it covers
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  if (byte_level_) {
    if (ignore_merges_) {
      std::string mapped;
      for (unsigned char c : word) mapped += ByteTable().byte_to_char[c];
      auto it = vocab_.find(mapped);
      if (it != vocab_.end()) {
        out->push_back(it->second);
        return;
      }
    }
    for (size_t i = 0; i < word.size(); ++i) {
      syms.push_back({byte_level_ids_[static_cast<unsigned char>(word[i])], 0,
                      0, static_cast<uint32_t>(i),
                      static_cast<uint32_t>(i + 1)});
    }
  } else {
    if (ignore_merges_) {
      auto it = vocab_.find(word);
      if (it != vocab_.end()) {
        out->push_back(it->second);
        return;
      }
    }
    for (size_t i = 0; i < word.size();) {
      const size_t len = std::max<size_t>(1, Utf8CharLen(word, i));
      auto it = vocab_.find(word.substr(i, len));
      syms.push_back({it == vocab_.end() ? -1 : it->second, 0, 0,
                      static_cast<uint32_t>(i),
                      static_cast<uint32_t>(i + len)});
      i += len;
    }
  }
  const int32_t n = static_cast<int32_t>(syms.size());
  for (int32_t i = 0; i < n; ++i) {
    syms[i].prev = i - 1;
    syms[i].next = i + 1 < n ? i + 1 : -1;
  }
  struct Cand {
    int32_t rank, pos, left, right;
    bool operator>(const Cand& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> queue;
  auto consider = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = syms[left].next;
    if (right < 0 || syms[left].id < 0 || syms[right].id < 0) return;
    const uint64_t key = (static_cast<uint64_t>(syms[left].id) << 32) |
                         static_cast<uint32_t>(syms[right].id);
    auto it = merges_.find(key);
    if (it == merges_.end()) return;
    queue.push({it->second.rank, left, syms[left].id, syms[right].id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!queue.empty()) {
    const Cand c = queue.top();
    queue.pop();
    Sym& l = syms[c.pos];
    // Stale entries: the left symbol changed (merged or absorbed: id -2) or
    // its right neighbour changed since the candidate was queued.
    if (l.id != c.left || l.next < 0 || syms[l.next].id != c.right) continue;
    Sym& r = syms[l.next];
    l.id = merges_
               .at((static_cast<uint64_t>(c.left) << 32) |
                   static_cast<uint32_t>(c.right))
               .merged;
    l.end = r.end;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.pos;
    r.id = -2;
    r.next = -1;
    consider(l.prev);
    consider(c.pos);
  }
  bool last_unk = false;
  for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = syms[i].next) {
    const Sym& s = syms[i];
    if (s.id >= 0) {
      out->push_back(s.id);
      last_unk = false;
      continue;
    }
    if (byte_fallback_) {
      for (uint32_t b = s.begin; b < s.end; ++b) {
        out->push_back(byte_ids_[static_cast<unsigned char>(word[b])]);
      }
      last_unk = false;
    } else if (unk_id_ >= 0) {
      if (!(fuse_unk_ && last_unk)) out->push_back(unk_id_);
      last_unk = true;
    }
    // Without byte fallback or an unk token the character cannot be
    // represented; Hugging Face drops it too.
  }
}

void BpeTokenizer::DecodeRun(const std::vector<std::string>& tokens_in,
                             std::string* out) const {
  std::vector<std::string> tokens = tokens_in;
  for (const DecStep& d : decoders_) {
    switch (d.kind) {
      case DecStep::kByteLevel: {
        std::string joined;
        for (const std::string& t : tokens) {
          size_t i = 0;
          while (i < t.size()) {
            const size_t len = std::max<size_t>(1, Utf8CharLen(t, i));
            const uint32_t cp = DecodeUtf8At(t, i);
            auto it = ByteTable().char_to_byte.find(cp);
            if (it != ByteTable().char_to_byte.end() && len > 0) {
              joined.push_back(static_cast<char>(it->second));
            } else {
              joined.append(t, i, len);
            }
            i += len;
          }
        }
        tokens = {std::move(joined)};
        break;
      }
      case DecStep::kReplace:
        for (std::string& t : tokens) t = absl::StrReplaceAll(t, {{d.a, d.b}});
        break;
      case DecStep::kByteFallback: {
        std::vector<std::string> next;
        std::string bytes;
        auto flush = [&] {
          if (bytes.empty()) return;
          if (FindInvalidUtf8Offset(bytes) < 0) {
            next.push_back(bytes);
          } else {
            for (size_t k = 0; k < bytes.size(); ++k)
              next.push_back("\xEF\xBF\xBD");
          }
          bytes.clear();
        };
        for (std::string& t : tokens) {
          unsigned int v;
          if (t.size() == 6 && absl::StartsWith(t, "<0x") && t[5] == '>' &&
              sscanf(t.c_str() + 3, "%2X", &v) == 1) {
            bytes.push_back(static_cast<char>(v));
          } else {
            flush();
            next.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(next);
        break;
      }
      case DecStep::kFuse: {
        std::string joined;
        for (const std::string& t : tokens) joined += t;
        tokens = {std::move(joined)};
        break;
      }
      case DecStep::kStrip:
        for (std::string& t : tokens) {
          int k = 0;
          while (k < d.start && absl::StartsWith(t, d.a)) {
            t.erase(0, d.a.size());
            ++k;
          }
          k = 0;
          while (k < d.stop && absl::EndsWith(t, d.a)) {
            t.erase(t.size() - d.a.size());
            ++k;
          }
        }
        break;
      case DecStep::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          tokens[i] = absl::StrReplaceAll(tokens[i], {{d.a, " "}});
          if (i == 0 && d.flag && absl::StartsWith(tokens[i], " ")) {
            tokens[i].erase(0, 1);
          }
        }
        break;
    }
  }
  for (const std::string& t : tokens) *out += t;
}

std::string BpeTokenizer::Decode(absl::Span<const int32_t> ids,
                                 bool skip_special) const {
  std::string out;
  std::vector<std::string> run;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    auto it = added_by_id_.find(id);
    if (it == added_by_id_.end()) {
      run.push_back(id_to_token_[id]);
      continue;
    }
    DecodeRun(run, &out);
    run.clear();
    const AddedToken& t = added_[it->second];
    if (!(skip_special && t.special)) out += t.content;
  }
  DecodeRun(run, &out);
  return out;
}

}  // namespace ftune::train
