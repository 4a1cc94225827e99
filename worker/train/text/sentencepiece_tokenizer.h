// Tokenizer over a SentencePiece tokenizer.model (libsentencepiece), and a
// converter from such a model to an equivalent tokenizer.json.
//
// Special tokens: the model's control and unknown pieces ("<s>", "</s>",
// "<unk>") are special. With EncodeOptions::parse_special they are split
// out of the text first and the text between them is encoded by
// sentencepiece; otherwise sentencepiece sees the whole text.
// Decode decodes runs of ordinary ids with sentencepiece and writes special
// tokens as their text (unless skip_special).
//
// Thread-safety: immutable after creation.
#ifndef FTUNE_WORKER_TRAIN_TEXT_SENTENCEPIECE_TOKENIZER_H_
#define FTUNE_WORKER_TRAIN_TEXT_SENTENCEPIECE_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/train/text/tokenizer.h"

namespace ftune::train {

namespace sp {
class SpModel;
}

class SentencePieceTokenizer : public Tokenizer {
 public:
  // `model_bytes`: the contents of tokenizer.model. `tokenizer_config_json`:
  // tokenizer_config.json's text or "". Defaults before the config file:
  // bos/eos/unk/pad from the model, add_bos_token true (the Llama convention
  // for sentencepiece models), add_eos_token false.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Create(
      const std::string& model_bytes, absl::string_view tokenizer_config_json);
  ~SentencePieceTokenizer() override;

  std::vector<int32_t> Encode(absl::string_view text,
                              const EncodeOptions& options = {}) const override;
  std::string Decode(absl::Span<const int32_t> ids,
                     bool skip_special = false) const override;
  int32_t vocab_size() const override;
  std::optional<int32_t> TokenToId(absl::string_view token) const override;
  std::string IdToToken(int32_t id) const override;
  bool IsSpecial(int32_t id) const override;

  const sp::SpModel& model() const { return *model_; }

 private:
  SentencePieceTokenizer();
  std::unique_ptr<sp::SpModel> model_;
  std::vector<bool> special_;
  std::vector<std::pair<std::string, int32_t>> specials_;  // longest first
};

// Writes the tokenizer.json that Hugging Face's converter would produce for
// a sentencepiece BPE model (Llama-2 layout): Prepend("▁") + Replace(" ",
// "▁") normalizers, no pre-tokenizer, BPE with byte_fallback, merges for
// every split of every normal piece into two pieces, ranked by the merged
// piece's score (highest first), and the Replace/ByteFallback/Fuse/Strip
// decoder, and a TemplateProcessing post-processor that adds the BOS piece.
// Control and unknown pieces become special added tokens.
// INVALID_ARGUMENT if the model is not BPE-shaped (no byte pieces).
absl::StatusOr<std::string> SentencePieceModelToTokenizerJson(
    const sp::SpModel& model);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_TEXT_SENTENCEPIECE_TOKENIZER_H_
