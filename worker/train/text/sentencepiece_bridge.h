// A thin layer over libsentencepiece that uses only std types.
//
// Why a separate layer: sentencepiece_processor.h declares
// `namespace absl { using std::string_view; }`, which collides with Debian's
// Abseil (where absl::string_view is its own class). So no translation unit
// may include both; this header and its .cc include only std and
// sentencepiece, and the rest of ftune talks to SentencePiece through it.
//
// libsentencepiece also carries its own copy of protobuf-lite with exported
// symbols. Loaded next to the libprotobuf that LibTorch links, the two
// interpose each other and the process crashes at start-up. So the code that
// calls libsentencepiece lives in a plugin, libftune_spm.so
// (sentencepiece_plugin.cc), opened with dlmopen() into a link-map namespace
// of its own, where it has its own libstdc++ and sees no other protobuf.
// Across the namespace boundary only C types pass (the C ABI below); no
// allocation made on one side is freed on the other.
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
  // null and sets *error on failure (including when the plugin that holds
  // libsentencepiece cannot be loaded).
  static std::unique_ptr<SpModel> Load(const std::string& serialized,
                                       std::string* error);
  virtual ~SpModel() = default;

  // Encodes with the model's own normalizer; with add_dummy_prefix=false
  // the "▁" that sentencepiece prepends to the text is left out (for text
  // that continues earlier text).
  virtual std::vector<int> Encode(std::string_view text,
                                  bool add_dummy_prefix) const = 0;
  virtual std::string Decode(const std::vector<int>& ids) const = 0;

  virtual int size() const = 0;
  virtual Piece piece(int id) const = 0;
  virtual int PieceToId(std::string_view piece) const = 0;  // -1 when absent
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
  virtual int unk_id() const = 0;
  virtual int pad_id() const = 0;
};

// Runs SentencePieceTrainer with a command line such as
// "--input=f.txt --model_prefix=/tmp/m --vocab_size=300 --model_type=bpe".
// Returns "" on success, else the error.
std::string TrainSentencePiece(const std::string& args);

}  // namespace ftune::train::sp

// The plugin's C ABI. Functions that fill a caller's buffer return the size
// the full answer needs (the caller retries with a larger buffer when that
// exceeds its capacity); error text is truncated to the buffer.
extern "C" {
void* ftune_spm_load(const char* data, size_t size, char* error,
                     size_t error_cap);
void ftune_spm_free(void* model);
size_t ftune_spm_encode(const void* model, const char* text, size_t size,
                        int add_dummy_prefix, int* ids, size_t ids_cap);
size_t ftune_spm_decode(const void* model, const int* ids, size_t n, char* text,
                        size_t text_cap);
int ftune_spm_size(const void* model);
// Piece text into `text`, its score and type (a PieceType value).
size_t ftune_spm_piece(const void* model, int id, char* text, size_t text_cap,
                       float* score, int* type);
int ftune_spm_piece_to_id(const void* model, const char* piece, size_t size);
// bos, eos, unk, pad.
void ftune_spm_special_ids(const void* model, int* ids4);
// 0 on success, else error text in `error`.
int ftune_spm_train(const char* args, char* error, size_t error_cap);
}

#endif  // FTUNE_WORKER_TRAIN_TEXT_SENTENCEPIECE_BRIDGE_H_
