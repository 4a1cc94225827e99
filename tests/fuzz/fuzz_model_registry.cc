// What the scheduler reads from a model directory at start-up
// (server/model_registry.h): config.json, tokenizer_config.json's chat
// template and the *.safetensors headers. The first byte picks the parser,
// the rest is its input. None may throw (an uncaught exception would stop
// the scheduler) or overflow.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/contract/train_spec.h"
#include "server/model_registry.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const absl::string_view text(reinterpret_cast<const char*>(data) + 1,
                               size - 1);
  switch (data[0] % 3) {
    case 0: {
      ftune::core::Model model;
      (void)ftune::server::ReadModelConfigJson(text, model);
      break;
    }
    case 1: {
      const std::string name =
          ftune::server::ChatTemplateOfTokenizerConfig(text);
      // One of the trainer's templates (the list grew with phi3 and gemma).
      const std::vector<std::string>& known =
          ftune::contract::ChatTemplateNames();
      FUZZ_CHECK(name.empty() ||
                 std::find(known.begin(), known.end(), name) != known.end());
      break;
    }
    default:
      FUZZ_CHECK(ftune::server::SafetensorsHeaderParameters(text) >= -1);
      break;
  }
  return 0;
}
