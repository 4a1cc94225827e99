// The path rule every worker-reported path passes (common/confined_path.h,
// issue 16 defect 1), and the quoting of request values in errors
// (common/quote.h, defect 3). Properties: an accepted path, joined to a
// root and normalised lexically, stays below the root; quoting is bounded.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/confined_path.h"
#include "common/quote.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view path(reinterpret_cast<const char*>(data), size);
  FUZZ_CHECK(ftune::QuoteValue(path).size() <= 4 * ftune::kMaxQuotedBytes + 40);
  FUZZ_CHECK(ftune::TruncateMessage(path, 100).size() <= 100 + 30);
  if (!ftune::CheckConfinedPath(path).ok()) return 0;
  // Lexical normalisation of "root/<path>": the depth below the root never
  // goes negative and no component is "." or "..".
  int depth = 0;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    FUZZ_CHECK(!part.empty() && part != "." && part != "..");
    FUZZ_CHECK(part.find('\0') == absl::string_view::npos);
    ++depth;
  }
  FUZZ_CHECK(depth >= 1);
  FUZZ_CHECK(path.front() != '/');
  return 0;
}
