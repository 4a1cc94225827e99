// The safetensors reader (common/safetensors.h) on arbitrary bytes: the
// header is validated before any tensor is handed out, so every view it
// returns lies inside the buffer (ASan checks each byte read here).
#include <cstdint>
#include <string>

#include "common/safetensors.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = ftune::SafetensorsFile::FromBytes(
      std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!file.ok()) return 0;
  for (const std::string& name : (*file)->Names()) {
    auto view = (*file)->Get(name);
    FUZZ_CHECK(view.ok());
    FUZZ_CHECK(static_cast<size_t>(view->numel()) *
                   ftune::StDTypeSize(view->dtype) ==
               view->size_bytes);
    unsigned sum = 0;
    for (size_t i = 0; i < view->size_bytes; ++i) sum += view->data[i];
    (void)sum;
  }
  return 0;
}
