// libsentencepiece behind std-only types (see the header for why).
#include "worker/train/text/sentencepiece_bridge.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

namespace ftune::train::sp {

struct SpModel::Impl {
  sentencepiece::SentencePieceProcessor with_prefix;
  sentencepiece::SentencePieceProcessor without_prefix;
};

SpModel::SpModel() : impl_(new Impl) {}
SpModel::~SpModel() = default;

std::unique_ptr<SpModel> SpModel::Load(const std::string& serialized,
                                       std::string* error) {
  std::unique_ptr<SpModel> m(new SpModel());
  auto status = m->impl_->with_prefix.LoadFromSerializedProto(serialized);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  // ModelProto field 3 is normalizer_spec; NormalizerSpec field 3 is
  // add_dummy_prefix. Protobuf merges repeated occurrences of a message
  // field, so appending {3: {3: false}} to the serialized model turns the
  // dummy prefix off and keeps the rest of the normalizer.
  std::string no_prefix = serialized;
  no_prefix.append("\x1A\x02\x18\x00", 4);
  status = m->impl_->without_prefix.LoadFromSerializedProto(no_prefix);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return m;
}

std::vector<int> SpModel::Encode(std::string_view text,
                                 bool add_dummy_prefix) const {
  std::vector<int> ids;
  (add_dummy_prefix ? impl_->with_prefix : impl_->without_prefix)
      .Encode(text, &ids)
      .IgnoreError();  // only fails when no model is loaded
  return ids;
}

std::string SpModel::Decode(const std::vector<int>& ids) const {
  std::string out;
  impl_->with_prefix.Decode(ids, &out).IgnoreError();
  return out;
}

int SpModel::size() const { return impl_->with_prefix.GetPieceSize(); }

Piece SpModel::piece(int id) const {
  const auto& p = impl_->with_prefix;
  Piece out;
  out.text = p.IdToPiece(id);
  out.score = p.GetScore(id);
  if (p.IsUnknown(id))
    out.type = PieceType::kUnknown;
  else if (p.IsControl(id))
    out.type = PieceType::kControl;
  else if (p.IsByte(id))
    out.type = PieceType::kByte;
  else if (p.IsUnused(id))
    out.type = PieceType::kUnused;
  else
    out.type = PieceType::kNormal;
  return out;
}

int SpModel::PieceToId(std::string_view piece) const {
  const auto& p = impl_->with_prefix;
  const int id = p.PieceToId(piece);
  if (id == p.unk_id() && p.IdToPiece(id) != piece) return -1;
  return id;
}

int SpModel::bos_id() const { return impl_->with_prefix.bos_id(); }
int SpModel::eos_id() const { return impl_->with_prefix.eos_id(); }
int SpModel::unk_id() const { return impl_->with_prefix.unk_id(); }
int SpModel::pad_id() const { return impl_->with_prefix.pad_id(); }

std::string TrainSentencePiece(const std::string& args) {
  auto status = sentencepiece::SentencePieceTrainer::Train(args);
  return status.ok() ? "" : status.ToString();
}

}  // namespace ftune::train::sp
