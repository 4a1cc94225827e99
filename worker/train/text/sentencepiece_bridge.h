// A thin layer over libsentencepiece that uses only std types.
//
// Why a separate layer: sentencepiece_processor.h declares
// `namespace absl { using std::string_view; }`, which collides with Debian's
// Abseil (where absl::string_view is its own class). So no translation unit
// may include both; this header and its .cc include only std and
// sentencepiece, and the rest of ftune talks to SentencePiece through it.
//
// Thread-safety: a loaded SpModel is immutable; its const methods may run
// concurrently (libsentencepiece's Encode/Decode are const).
#ifndef FTUNE_WORKER_TRAIN_TEXT_SENTENCEPIECE_BRIDGE_H_
#define FTUNE_WORKER_TRAIN_TEXT_SENTENCEPIECE_BRIDGE_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ftune::train::sp {

enum class PieceType {
  kNormal,
  kUnknown,
  kControl,
  kUserDefined,
  kByte,
  kUnused
};

struct Piece {
  std::string text;
  float score = 0;
  PieceType type = PieceType::kNormal;
};

class SpModel {
 public:
  // Loads a serialized ModelProto (the bytes of a tokenizer.model). Returns
  // null and sets *error on failure.
  static std::unique_ptr<SpModel> Load(const std::string& serialized,
                                       std::string* error);
  ~SpModel();

  // Encodes with the model's own normalizer; with add_dummy_prefix=false
  // the "▁" that sentencepiece prepends to the text is left out (for text
  // that continues earlier text).
  std::vector<int> Encode(std::string_view text, bool add_dummy_prefix) const;
  std::string Decode(const std::vector<int>& ids) const;

  int size() const;
  Piece piece(int id) const;
  int PieceToId(std::string_view piece) const;  // -1 when absent
  int bos_id() const;
  int eos_id() const;
  int unk_id() const;
  int pad_id() const;

 private:
  SpModel();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Runs SentencePieceTrainer with a command line such as
// "--input=f.txt --model_prefix=/tmp/m --vocab_size=300 --model_type=bpe".
// Returns "" on success, else the error.
std::string TrainSentencePiece(const std::string& args);

}  // namespace ftune::train::sp

#endif  // FTUNE_WORKER_TRAIN_TEXT_SENTENCEPIECE_BRIDGE_H_
