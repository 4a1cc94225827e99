// Splits a fuzz input into NUL-separated parts (JSON text never holds a raw
// NUL, so a JSON document and the text fed to it can share one input).
#ifndef FTUNE_TESTS_FUZZ_FUZZ_SPLIT_H_
#define FTUNE_TESTS_FUZZ_FUZZ_SPLIT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ftune::fuzz {

// Exactly `n` parts; missing ones are empty, the last takes the rest.
inline std::vector<std::string> SplitInput(const uint8_t* data, size_t size,
                                           size_t n) {
  std::vector<std::string> parts(n);
  size_t part = 0;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0 && part + 1 < n) {
      ++part;
    } else {
      parts[part].push_back(static_cast<char>(data[i]));
    }
  }
  return parts;
}

}  // namespace ftune::fuzz

#endif  // FTUNE_TESTS_FUZZ_FUZZ_SPLIT_H_
