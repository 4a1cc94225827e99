// Reader and writer for the safetensors format (Hugging Face), and for
// checkpoints sharded with `model.safetensors.index.json`.
//
// File layout: 8-byte little-endian header length N, N bytes of JSON
//   {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//    "__metadata__": {"<key>": "<string>"}}
// then the data buffer; offsets are relative to its start.
//
// The reader memory-maps the file and validates the whole header before
// returning: every entry has a known dtype, a shape of non-negative dims, and
// offsets inside the buffer whose length equals numel * element size; entries
// do not overlap and leave no holes. Errors are INVALID_ARGUMENT (or
// NOT_FOUND for a missing file/tensor) and name the file, the tensor and the
// problem.
//
// Thread-safety: a SafetensorsFile / SafetensorsCheckpoint is immutable after
// Open() and safe to read from many threads. SafetensorsWriter is not
// thread-safe.
#ifndef FTUNE_COMMON_SAFETENSORS_H_
#define FTUNE_COMMON_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftune {

enum class StDType {
  kF64,
  kF32,
  kF16,
  kBF16,
  kI64,
  kI32,
  kI16,
  kI8,
  kU8,
  kBool
};

// "F32" etc. as written in the header.
absl::string_view StDTypeName(StDType dtype);
absl::StatusOr<StDType> ParseStDType(absl::string_view name);
size_t StDTypeSize(StDType dtype);

// A tensor inside a mapped file. `data` stays valid while the file object
// that produced it lives. Data is little-endian, row-major, unaligned.
struct StTensorView {
  std::string name;
  StDType dtype = StDType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t size_bytes = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path);
  // Parses an in-memory image (for tests and small files); copies `bytes`.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(
      std::string bytes, const std::string& label);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  // Tensor names, sorted.
  std::vector<std::string> Names() const;
  bool Contains(const std::string& name) const;
  // NOT_FOUND naming the tensor and the file if absent.
  absl::StatusOr<StTensorView> Get(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }
  const std::string& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  absl::Status Parse();

  std::string path_;
  const uint8_t* base_ = nullptr;  // whole file
  size_t size_ = 0;
  void* mapping_ = nullptr;  // mmap'ed region, or nullptr
  std::string owned_;        // FromBytes() storage
  std::map<std::string, StTensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A model directory's weights: `model.safetensors.index.json` (weight_map
// name -> shard file) if present, else every `*.safetensors` file in the
// directory (names must be unique across them).
class SafetensorsCheckpoint {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(
      const std::string& dir);
  std::vector<std::string> Names() const;
  bool Contains(const std::string& name) const;
  absl::StatusOr<StTensorView> Get(const std::string& name) const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> index_;
};

// Collects tensors (copying their bytes) and serialises them. Names must be
// unique; shape * element size must match the byte count.
class SafetensorsWriter {
 public:
  absl::Status Add(const std::string& name, StDType dtype,
                   std::vector<int64_t> shape, const void* data,
                   size_t size_bytes);
  void SetMetadata(const std::string& key, const std::string& value) {
    metadata_[key] = value;
  }
  // The complete file image (header padded with spaces to 8 bytes).
  std::string Serialize() const;
  // Serialize() written with WriteFileAtomically().
  absl::Status WriteAtomically(const std::string& path) const;
  size_t size() const { return tensors_.size(); }
  std::vector<std::string> Names() const;
  // Sum of the tensors' byte sizes.
  size_t data_bytes() const;

 private:
  struct Entry {
    StDType dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::map<std::string, Entry> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes `shards` into `dir` as `model-0000i-of-0000n.safetensors` plus
// `model.safetensors.index.json` (weight_map and metadata.total_size), or as
// a single `model.safetensors` when there is one shard. Each file is written
// atomically. A tensor name present in two shards is INVALID_ARGUMENT.
absl::Status WriteShardedSafetensors(
    const std::string& dir, const std::vector<SafetensorsWriter>& shards);

}  // namespace ftune

#endif  // FTUNE_COMMON_SAFETENSORS_H_
