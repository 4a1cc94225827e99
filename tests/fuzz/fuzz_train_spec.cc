// The trainer's spec (ParseTrainSpec), which the worker writes from the
// scheduler's assignment and ftune-train reads: a spec or INVALID_ARGUMENT.
// Kept to the parse call so it follows the parser when it moves.
#include <cstdint>

#include "absl/strings/string_view.h"
#include "tests/fuzz/fuzz_check.h"
#include "worker/train/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto spec = ftune::train::ParseTrainSpec(text);
  FUZZ_CHECK(spec.ok() || absl::IsInvalidArgument(spec.status()));
  return 0;
}
