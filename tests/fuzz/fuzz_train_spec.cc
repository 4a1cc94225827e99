// The trainer's spec (contract::ParseTrainSpec), which the worker writes from
// the scheduler's assignment and ftune-train reads: a spec or
// INVALID_ARGUMENT; a spec that parses writes back to the same spec.
#include <cstdint>

#include "absl/strings/string_view.h"
#include "common/contract/train_spec.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto spec = ftune::contract::ParseTrainSpec(text);
  FUZZ_CHECK(spec.ok() || absl::IsInvalidArgument(spec.status()));
  if (spec.ok()) {
    const std::string once = ftune::contract::TrainSpecToJson(*spec);
    auto again = ftune::contract::ParseTrainSpec(once);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(ftune::contract::TrainSpecToJson(*again) == once);
  }
  return 0;
}
