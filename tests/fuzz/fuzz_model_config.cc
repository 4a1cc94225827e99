// The trainer's config.json parser (worker/train/families/model_config.h): a
// valid configuration or INVALID_ARGUMENT, never a crash, for any bytes.
#include <cstdint>

#include "absl/strings/string_view.h"
#include "tests/fuzz/fuzz_check.h"
#include "worker/train/families/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = ftune::train::ParseModelConfig(text, "fuzz/config.json");
  if (!config.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(config.status()));
    return 0;
  }
  // What parses serialises and parses again.
  FUZZ_CHECK(
      ftune::train::ParseModelConfig(config->ToJson(), "round trip").ok());
  return 0;
}
