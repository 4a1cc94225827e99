// BPE tokenizers read from Hugging Face tokenizer.json.
//
// Supported pipeline pieces (anything else is refused at load, by name):
//  - normalizer: null, Sequence, Prepend, Replace (String pattern), NFC
//    (accepted but applied as identity: text that is not already NFC may
//    tokenize differently from Hugging Face; a warning is logged at load).
//  - pre_tokenizer: null, Sequence, ByteLevel (add_prefix_space, use_regex
//    with GPT-2's pattern), Split (Regex or String pattern, behavior Isolated
//    or Removed, invert false), Digits (individual_digits), Metaspace
//    (replacement, prepend_scheme always/first/never or legacy
//    add_prefix_space, split).
//  - model: BPE with vocab, merges as "a b" strings or ["a","b"] lists,
//    byte_fallback, unk_token, fuse_unk, ignore_merges; no dropout,
//    continuing_subword_prefix or end_of_word_suffix.
//  - added_tokens: matched on the raw text, longest first (lstrip/rstrip
//    and single_word are not applied); "special" ones only with
//    EncodeOptions::parse_special.
//  - decoder: null, Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip,
//    Metaspace. Added tokens decode to their content, outside the decoder.
//  - post_processor: TemplateProcessing is read only to learn whether the
//    model adds BOS/EOS (defaults for TokenizerConfig).
//
// Merging is a priority queue over a linked list of symbols (lowest merge
// rank first, leftmost on ties): O(n log n) per pre-tokenized word, so long
// unsplit inputs (SentencePiece-style BPE sees a whole text as one word)
// stay fast.
//
// Thread-safety: immutable after creation; all methods may run concurrently.
#ifndef FTUNE_WORKER_TRAIN_TEXT_BPE_TOKENIZER_H_
#define FTUNE_WORKER_TRAIN_TEXT_BPE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "worker/train/text/tokenizer.h"

namespace ftune::train {

namespace internal {
class Regex;  // regex.h
}

class BpeTokenizer : public Tokenizer {
 public:
  // `tokenizer_json`: the text of tokenizer.json. `tokenizer_config_json`:
  // the text of tokenizer_config.json or "" when the model has none; its
  // fields override what tokenizer.json implies. INVALID_ARGUMENT naming the
  // field for malformed or unsupported content.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> Create(
      absl::string_view tokenizer_json,
      absl::string_view tokenizer_config_json);

  ~BpeTokenizer() override;

  std::vector<int32_t> Encode(absl::string_view text,
                              const EncodeOptions& options = {}) const override;
  std::string Decode(absl::Span<const int32_t> ids,
                     bool skip_special = false) const override;
  int32_t vocab_size() const override {
    return static_cast<int32_t>(id_to_token_.size());
  }
  std::optional<int32_t> TokenToId(absl::string_view token) const override;
  std::string IdToToken(int32_t id) const override;
  bool IsSpecial(int32_t id) const override;

  // True for byte-level models (a ByteLevel pre-tokenizer is present).
  bool byte_level() const { return byte_level_; }

  struct NormStep;
  struct PreStep;
  struct DecStep;
  struct AddedToken {
    int32_t id;
    std::string content;
    bool special;
  };

 private:
  BpeTokenizer();
  absl::Status Load(absl::string_view tokenizer_json,
                    absl::string_view tokenizer_config_json);
  void EncodeSegment(absl::string_view text, bool allow_prefix, bool first,
                     std::vector<int32_t>* out) const;
  void EncodeWord(absl::string_view word, std::vector<int32_t>* out) const;
  void DecodeRun(const std::vector<std::string>& tokens,
                 std::string* out) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;  // model vocab + added
  std::vector<std::string> id_to_token_;
  std::vector<bool> special_;
  // key: (left id << 32) | right id.
  struct Merge {
    int32_t rank;
    int32_t merged;
  };
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::vector<AddedToken> added_;  // sorted longest first
  // Indexes into added_: by first byte (longest first), and by id.
  std::vector<std::vector<int32_t>> added_by_first_byte_;
  absl::flat_hash_map<int32_t, int32_t> added_by_id_;
  std::vector<NormStep> normalizers_;
  std::vector<PreStep> pre_tokenizers_;
  std::vector<DecStep> decoders_;
  bool byte_level_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;
  int32_t byte_ids_[256];        // <0xNN> tokens (byte_fallback), -1 if absent
  int32_t byte_level_ids_[256];  // byte-level: id of each byte's char
};

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_TEXT_BPE_TOKENIZER_H_
