// Tokenizers of Hugging Face model directories.
//
// LoadTokenizer(model_dir) picks, in this order:
//  - tokenizer.json (Hugging Face "tokenizers" format): BPE models, either
//    byte-level (GPT-2, Llama-3, Qwen2, SmolLM: ByteLevel pre-tokenizer,
//    optional Split regex / Digits pre-tokenizers) or SentencePiece-style
//    (Llama-2, TinyLlama: Metaspace pre-tokenizer or Prepend+Replace
//    normalizers, byte_fallback with <0xNN> tokens). See bpe_tokenizer.h.
//  - tokenizer.model (SentencePiece protobuf), through libsentencepiece.
// and reads tokenizer_config.json (when present) for bos/eos/pad tokens,
// add_bos_token/add_eos_token and chat_template.
//
// Encode() never adds BOS/EOS: callers (the chat templates) add them
// according to config().add_bos_token and the format.
//
// Thread-safety: a loaded Tokenizer is immutable; all methods are const and
// may be called concurrently.
#ifndef FTUNE_WORKER_TRAIN_TEXT_TOKENIZER_H_
#define FTUNE_WORKER_TRAIN_TEXT_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace ftune::train {

// What tokenizer_config.json (and the tokenizer file itself) say about the
// special tokens and the chat template. Token strings are empty when unset.
struct TokenizerConfig {
  std::string bos_token;
  std::string eos_token;
  std::string pad_token;
  std::string unk_token;
  bool add_bos_token = false;
  bool add_eos_token = false;
  // The Jinja chat template, verbatim ("" if none). We do not run Jinja; the
  // chat template module recognises well-known templates by their markers.
  std::string chat_template;
};

struct EncodeOptions {
  // When true, occurrences of special added tokens (e.g. "<|im_end|>",
  // "<s>") in the text become their ids. When false they are encoded as
  // ordinary text, which is what user-supplied content needs. Non-special
  // added tokens are always matched (as Hugging Face does).
  bool parse_special = false;
  // SentencePiece-style tokenizers prepend "▁" (a space) to the text, as
  // sentencepiece's add_dummy_prefix does. Set false to encode text that
  // continues a previous piece of text (no dummy prefix). Byte-level
  // tokenizers ignore this unless their ByteLevel add_prefix_space is set.
  bool add_prefix_space = true;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  virtual std::vector<int32_t> Encode(
      absl::string_view text, const EncodeOptions& options = {}) const = 0;
  // Inverse of Encode for any text: Decode(Encode(x)) == x for valid UTF-8 x
  // (SentencePiece-style: with the dummy prefix space removed again).
  // With skip_special, special tokens produce no text. Ids out of range
  // produce no text.
  virtual std::string Decode(absl::Span<const int32_t> ids,
                             bool skip_special = false) const = 0;
  // One past the largest id (model vocabulary plus added tokens).
  virtual int32_t vocab_size() const = 0;
  // The id of a vocabulary entry or added token, spelled as in the
  // tokenizer file (e.g. "<|im_end|>", "<0x0A>", "▁the").
  virtual std::optional<int32_t> TokenToId(absl::string_view token) const = 0;
  // The spelling of an id ("" if out of range).
  virtual std::string IdToToken(int32_t id) const = 0;
  virtual bool IsSpecial(int32_t id) const = 0;

  const TokenizerConfig& config() const { return config_; }
  // Ids of config().bos_token/eos_token/pad_token, or -1 when unset or not
  // in the vocabulary.
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  int32_t pad_id() const { return pad_id_; }

 protected:
  // Sets config_ and resolves the special ids; call at the end of loading.
  void SetConfig(TokenizerConfig config);

 private:
  TokenizerConfig config_;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t pad_id_ = -1;
};

// Loads the tokenizer of a Hugging Face model directory (see top).
// NOT_FOUND if it has neither tokenizer.json nor tokenizer.model;
// INVALID_ARGUMENT naming the file and field for malformed or unsupported
// content (e.g. a WordPiece model, an unknown pre-tokenizer type).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(
    const std::string& model_dir);

// Parses tokenizer_config.json text. Token fields may be strings,
// {"content": ...} objects or null (no such token); chat_template may be a
// string or a list of
// {"name","template"} (the "default" one is used).
absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(
    absl::string_view json_text);
// Overlays the fields that `json_text` (tokenizer_config.json) sets onto
// *config; fields it does not mention keep their values. "" changes nothing.
absl::Status ApplyTokenizerConfig(absl::string_view json_text,
                                  TokenizerConfig* config);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_TEXT_TOKENIZER_H_
