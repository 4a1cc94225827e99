// SHA-256 (FIPS 180-4), streaming. Used for file checksums, dataset and
// adapter manifests, and API-key hashes.
//
// Not thread-safe: one Sha256 object per stream.
#ifndef FTUNE_COMMON_SHA256_H_
#define FTUNE_COMMON_SHA256_H_

#include <array>
#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace ftune {

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t size);
  void Update(absl::string_view data) { Update(data.data(), data.size()); }
  // Returns the 32-byte digest. The object must not be updated afterwards.
  std::array<uint8_t, 32> Finish();
  // Finish() as 64 lowercase hex chars.
  std::string FinishHex();

 private:
  void Block(const uint8_t* block);
  std::array<uint32_t, 8> state_;
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

// Hex digest of `data`.
std::string Sha256Hex(absl::string_view data);
// Hex digest of a file's contents; NOT_FOUND / INTERNAL with the path on error.
absl::StatusOr<std::string> Sha256File(const std::string& path);

// Lowercase hex encoding of raw bytes.
std::string HexEncode(const void* data, size_t size);

}  // namespace ftune

#endif  // FTUNE_COMMON_SHA256_H_
