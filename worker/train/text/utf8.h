// Small UTF-8 helpers for the tokenizers. Invalid bytes count as one-byte
// characters, so every input can be walked. Thread-safe (pure functions).
#ifndef FTUNE_WORKER_TRAIN_TEXT_UTF8_H_
#define FTUNE_WORKER_TRAIN_TEXT_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/dataset.h"

namespace ftune::train {

// Length of the UTF-8 character starting at byte `i` of `s`: 1..4, or 1 for
// a byte that does not start a complete, valid sequence.
inline size_t Utf8CharLen(absl::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t len = c < 0x80   ? 1
               : c < 0xC2 ? 0
               : c < 0xE0 ? 2
               : c < 0xF0 ? 3
               : c < 0xF5 ? 4
                          : 0;
  if (len <= 1) return 1;
  if (i + len > s.size()) return 1;
  if (FindInvalidUtf8(s.substr(i, len)) >= 0) return 1;
  return len;
}

// The code point at byte `i` (the byte's value for an invalid sequence).
inline uint32_t DecodeUtf8At(absl::string_view s, size_t i) {
  const size_t len = Utf8CharLen(s, i);
  const auto c = static_cast<unsigned char>(s[i]);
  if (len == 1) return c;
  uint32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < len; ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

inline std::string EncodeUtf8(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return out;
}

inline int64_t FindInvalidUtf8Offset(absl::string_view s) {
  return ::ftune::FindInvalidUtf8(s);
}

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_TEXT_UTF8_H_
