// Dataset validation (common/dataset.h) as FileService.UploadFile runs it
// on a tenant's upload: the bytes fed in chunks. Properties: no crash; the
// result does not depend on where the chunks break; the error message a
// client gets stays small whatever the lines hold (issue 16, defect 3).
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/dataset.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  ftune::DatasetLimits limits;
  limits.max_line_bytes = 4096;  // Small, so the overlong path is reached.

  ftune::DatasetValidator whole(limits);
  whole.Add(bytes);
  const ftune::ValidationReport a = whole.Finish();

  // The same bytes in chunks whose sizes come from the bytes themselves.
  ftune::DatasetValidator chunked(limits);
  size_t at = 0;
  for (size_t i = 0; at < size; ++i) {
    const size_t n = 1 + (size > 0 ? data[i % size] % 13 : 0);
    chunked.Add(bytes.substr(at, n));
    at += n;
  }
  const ftune::ValidationReport b = chunked.Finish();
  FUZZ_CHECK(a.lines == b.lines);
  FUZZ_CHECK(a.examples == b.examples);
  FUZZ_CHECK(a.error_count == b.error_count);
  FUZZ_CHECK(a.errors == b.errors);
  FUZZ_CHECK(a.format == b.format);

  const absl::Status st = a.ToStatus();
  FUZZ_CHECK(st.ok() == a.ok());
  FUZZ_CHECK(st.message().size() <= 16 * 1024);
  return 0;
}
