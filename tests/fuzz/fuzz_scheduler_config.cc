// The scheduler's --config file (server/model_registry.h,
// ParseSchedulerConfig): either a clean INVALID_ARGUMENT or models whose
// names and directories obey the documented rules.
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/confined_path.h"
#include "server/model_registry.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = ftune::server::ParseSchedulerConfig(text, "fuzz.json");
  if (!config.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(config.status()));
    return 0;
  }
  for (const ftune::core::Model& m : config->models) {
    FUZZ_CHECK(!m.name.empty() && m.name.size() <= 64);
    FUZZ_CHECK(ftune::CheckConfinedPath(m.directory).ok());
  }
  return 0;
}
