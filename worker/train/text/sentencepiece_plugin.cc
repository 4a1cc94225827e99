// libftune_spm.so: the only code that calls libsentencepiece. Opened by
// sentencepiece_bridge.cc in a link-map namespace of its own (see
// sentencepiece_bridge.h for why); exports only the C ABI declared there.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <cstring>
#include <exception>

#include "worker/train/text/sentencepiece_bridge.h"

namespace {

using ftune::train::sp::PieceType;

struct Model {
  sentencepiece::SentencePieceProcessor with_prefix;
  sentencepiece::SentencePieceProcessor without_prefix;
};

void CopyOut(const std::string& s, char* out, size_t cap) {
  if (cap == 0) return;
  const size_t n = std::min(s.size(), cap - 1);
  std::memcpy(out, s.data(), n);
  out[n] = '\0';
}

size_t FillText(const std::string& s, char* out, size_t cap) {
  if (s.size() <= cap) std::memcpy(out, s.data(), s.size());
  return s.size();
}

const Model& M(const void* m) { return *static_cast<const Model*>(m); }

}  // namespace

#define FTUNE_SPM_EXPORT extern "C" __attribute__((visibility("default")))

FTUNE_SPM_EXPORT void* ftune_spm_load(const char* data, size_t size,
                                      char* error, size_t error_cap) {
  try {
    auto m = std::make_unique<Model>();
    const std::string serialized(data, size);
    auto status = m->with_prefix.LoadFromSerializedProto(serialized);
    if (!status.ok()) {
      CopyOut(status.ToString(), error, error_cap);
      return nullptr;
    }
    // ModelProto field 3 is normalizer_spec; NormalizerSpec field 3 is
    // add_dummy_prefix. Protobuf merges repeated occurrences of a message
    // field, so appending {3: {3: false}} to the serialized model turns the
    // dummy prefix off and keeps the rest of the normalizer.
    std::string no_prefix = serialized;
    no_prefix.append("\x1A\x02\x18\x00", 4);
    status = m->without_prefix.LoadFromSerializedProto(no_prefix);
    if (!status.ok()) {
      CopyOut(status.ToString(), error, error_cap);
      return nullptr;
    }
    return m.release();
  } catch (const std::exception& e) {
    CopyOut(e.what(), error, error_cap);
    return nullptr;
  }
}

FTUNE_SPM_EXPORT void ftune_spm_free(void* model) {
  delete static_cast<Model*>(model);
}

FTUNE_SPM_EXPORT size_t ftune_spm_encode(const void* model, const char* text,
                                         size_t size, int add_dummy_prefix,
                                         int* ids, size_t ids_cap) {
  std::vector<int> out;
  const auto& m = M(model);
  (add_dummy_prefix ? m.with_prefix : m.without_prefix)
      .Encode(std::string_view(text, size), &out)
      .IgnoreError();  // only fails when no model is loaded
  if (out.size() <= ids_cap) std::copy(out.begin(), out.end(), ids);
  return out.size();
}

FTUNE_SPM_EXPORT size_t ftune_spm_decode(const void* model, const int* ids,
                                         size_t n, char* text,
                                         size_t text_cap) {
  std::string out;
  M(model)
      .with_prefix.Decode(std::vector<int>(ids, ids + n), &out)
      .IgnoreError();
  return FillText(out, text, text_cap);
}

FTUNE_SPM_EXPORT int ftune_spm_size(const void* model) {
  return M(model).with_prefix.GetPieceSize();
}

FTUNE_SPM_EXPORT size_t ftune_spm_piece(const void* model, int id, char* text,
                                        size_t text_cap, float* score,
                                        int* type) {
  const auto& p = M(model).with_prefix;
  *score = p.GetScore(id);
  PieceType t = PieceType::kNormal;
  if (p.IsUnknown(id))
    t = PieceType::kUnknown;
  else if (p.IsControl(id))
    t = PieceType::kControl;
  else if (p.IsByte(id))
    t = PieceType::kByte;
  else if (p.IsUnused(id))
    t = PieceType::kUnused;
  *type = static_cast<int>(t);
  return FillText(p.IdToPiece(id), text, text_cap);
}

FTUNE_SPM_EXPORT int ftune_spm_piece_to_id(const void* model, const char* piece,
                                           size_t size) {
  const auto& p = M(model).with_prefix;
  const std::string_view want(piece, size);
  const int id = p.PieceToId(want);
  if (id == p.unk_id() && p.IdToPiece(id) != want) return -1;
  return id;
}

FTUNE_SPM_EXPORT void ftune_spm_special_ids(const void* model, int* ids4) {
  const auto& p = M(model).with_prefix;
  ids4[0] = p.bos_id();
  ids4[1] = p.eos_id();
  ids4[2] = p.unk_id();
  ids4[3] = p.pad_id();
}

FTUNE_SPM_EXPORT int ftune_spm_train(const char* args, char* error,
                                     size_t error_cap) {
  try {
    auto status = sentencepiece::SentencePieceTrainer::Train(args);
    if (status.ok()) return 0;
    CopyOut(status.ToString(), error, error_cap);
  } catch (const std::exception& e) {
    CopyOut(e.what(), error, error_cap);
  }
  return 1;
}
