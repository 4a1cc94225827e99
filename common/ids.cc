#include "common/ids.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace ftune {
namespace {

constexpr absl::string_view kAlphabet = "abcdefghijklmnopqrstuvwxyz234567";
constexpr size_t kIdChars = 24;  // 24 * 5 bits = 120 bits.

}  // namespace

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  size_t filled = 0;
  while (filled < n) {
    ssize_t got = getrandom(out.data() + filled, n - filled, 0);
    if (got < 0) {
      FTUNE_CHECK(errno == EINTR) << "getrandom failed, errno " << errno;
      continue;
    }
    filled += static_cast<size_t>(got);
  }
  return out;
}

std::string NewId(absl::string_view prefix) {
  const std::string raw = RandomBytes(kIdChars);
  std::string id = absl::StrCat(prefix, "-");
  for (unsigned char c : raw) id.push_back(kAlphabet[c % kAlphabet.size()]);
  return id;
}

bool IsValidId(absl::string_view id, absl::string_view prefix) {
  if (id.size() != prefix.size() + 1 + kIdChars) return false;
  if (id.substr(0, prefix.size()) != prefix || id[prefix.size()] != '-') {
    return false;
  }
  for (char c : id.substr(prefix.size() + 1)) {
    if (kAlphabet.find(c) == absl::string_view::npos) return false;
  }
  return true;
}

}  // namespace ftune
