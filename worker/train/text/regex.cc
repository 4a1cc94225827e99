// PCRE2 wrapper for the pre-tokenizer regexes.
#include "worker/train/text/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "worker/train/text/utf8.h"

namespace ftune::train::internal {

absl::StatusOr<std::shared_ptr<Regex>> Regex::Compile(
    const std::string& pattern) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(
      reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
      PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    return absl::InvalidArgumentError(
        absl::StrCat("regex \"", pattern, "\" at offset ", offset, ": ",
                     reinterpret_cast<const char*>(buf)));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter
  return std::shared_ptr<Regex>(new Regex(code));
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void Regex::FindAll(absl::string_view text,
                    std::vector<std::pair<size_t, size_t>>* out) const {
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    // A failed match (including a JIT stack overflow on a huge piece) ends
    // the scan; the caller keeps the rest of the text as one piece.
    const int rc =
        pcre2_match(code, subject, text.size(), start, 0, md, nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e == b) {  // empty match: move on by one character
      if (b >= text.size()) break;
      start = b + std::max<size_t>(1, Utf8CharLen(text, b));
      continue;
    }
    out->emplace_back(b, e);
    start = e;
  }
  pcre2_match_data_free(md);
}

}  // namespace ftune::train::internal
