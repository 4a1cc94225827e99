// A progress line as the worker agent reads it from ftune-train's stdout
// (contract::ParseProgressLine): an event or INVALID_ARGUMENT, never a
// crash; an event writes back to a line that parses to the same line.
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/contract/progress.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view line(reinterpret_cast<const char*>(data), size);
  auto event = ftune::contract::ParseProgressLine(line);
  FUZZ_CHECK(event.ok() || absl::IsInvalidArgument(event.status()));
  if (event.ok() &&
      !std::holds_alternative<ftune::contract::UnknownEvent>(*event)) {
    const std::string once = ftune::contract::ToJsonLine(*event);
    auto again = ftune::contract::ParseProgressLine(once);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(ftune::contract::ToJsonLine(*again) == once);
  }
  return 0;
}
