#include "server/core/labels.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/quote.h"

namespace ftune::core {
namespace {

bool IsKeyChar(char c) {
  return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '_' ||
         c == '-';
}
bool IsValueChar(char c) {
  return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-';
}

}  // namespace

std::vector<LabelError> CheckLabels(
    const std::map<std::string, std::string>& labels, absl::string_view field) {
  std::vector<LabelError> out;
  if (labels.size() > kMaxLabels) {
    out.push_back(
        {std::string(field),
         absl::StrCat("at most ", kMaxLabels, " labels, got ", labels.size())});
  }
  for (const auto& [key, value] : labels) {
    const std::string f = absl::StrCat(field, "[", QuoteValue(key), "]");
    if (key.empty() || key.size() > kMaxLabelKeyChars ||
        !absl::ascii_islower(key[0]) ||
        !std::all_of(key.begin(), key.end(), IsKeyChar)) {
      out.push_back(
          {f,
           absl::StrCat("key must be 1-", kMaxLabelKeyChars,
                        " characters of [a-z0-9_-] starting with a letter")});
    } else if (value.size() > kMaxLabelValueChars ||
               !std::all_of(value.begin(), value.end(), IsValueChar)) {
      out.push_back({f, absl::StrCat("value must be 0-", kMaxLabelValueChars,
                                     " characters of [A-Za-z0-9_.-], got ",
                                     QuoteValue(value))});
    }
  }
  return out;
}

}  // namespace ftune::core
