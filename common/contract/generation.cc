#include "common/contract/generation.h"

#include "absl/strings/str_cat.h"

namespace ftune::contract {

std::optional<FieldViolation> CheckGeneration(const GenerationSpec& g) {
  const std::pair<const char*, std::pair<Range, double>> kNumbers[] = {
      {"max_new_tokens",
       {range::kMaxNewTokens, static_cast<double>(g.max_new_tokens)}},
      {"temperature", {range::kTemperature, g.temperature}},
      {"top_k", {range::kTopK, static_cast<double>(g.top_k)}},
      {"top_p", {range::kTopP, g.top_p}},
      {"repetition_penalty", {range::kRepetitionPenalty, g.repetition_penalty}},
      {"seed", {range::kGenerationSeed, static_cast<double>(g.seed)}},
      {"stop", {range::kStopSequences, static_cast<double>(g.stop.size())}},
  };
  for (const auto& [field, check] : kNumbers) {
    if (auto why = RangeViolation(check.first, check.second)) {
      if (std::string(field) == "stop")
        return FieldViolation{
            field, absl::StrCat("at most ",
                                static_cast<int64_t>(range::kStopSequences.hi),
                                " stop sequences, got ", g.stop.size())};
      return FieldViolation{field, *why};
    }
  }
  for (size_t i = 0; i < g.stop.size(); ++i) {
    if (auto why = RangeViolation(range::kStopSequenceBytes,
                                  static_cast<double>(g.stop[i].size()))) {
      return FieldViolation{absl::StrCat("stop[", i, "]"),
                            absl::StrCat("length in bytes ", *why)};
    }
  }
  return std::nullopt;
}

std::string TruncateText(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  const std::string marker = defaults::kTruncationMarker;
  size_t keep = max_bytes > marker.size() ? max_bytes - marker.size() : 0;
  // Back to the start of a character (not a continuation byte 10xxxxxx).
  while (keep > 0 && (static_cast<unsigned char>(text[keep]) & 0xC0) == 0x80)
    --keep;
  return text.substr(0, keep) + marker;
}

}  // namespace ftune::contract
