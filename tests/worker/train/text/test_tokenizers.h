// Tiny tokenizer.json files whose encodings can be derived by hand.
#ifndef FTUNE_TESTS_WORKER_TRAIN_TEXT_TEST_TOKENIZERS_H_
#define FTUNE_TESTS_WORKER_TRAIN_TEXT_TEST_TOKENIZERS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "worker/train/text/bpe_tokenizer.h"

namespace ftune::train::testing {

// Special tokens of ByteLevelJson, with their ids.
inline constexpr int32_t kEndOfText = 300;    // <|endoftext|>
inline constexpr int32_t kImStart = 301;      // <|im_start|>
inline constexpr int32_t kImEnd = 302;        // <|im_end|>
inline constexpr int32_t kBeginOfText = 303;  // <|begin_of_text|>
inline constexpr int32_t kStartHeader = 304;  // <|start_header_id|>
inline constexpr int32_t kEndHeader = 305;    // <|end_header_id|>
inline constexpr int32_t kEotId = 306;        // <|eot_id|>
inline constexpr int32_t kBos = 307;          // <s>
inline constexpr int32_t kEos = 308;          // </s>

// A GPT-2 style byte-level BPE whose id for every single byte is the byte's
// value (token = GPT-2's printable character for that byte), so that text
// without merges encodes to its UTF-8 bytes. `merges` are (left, right)
// token strings; merge i produces id 256 + i. `pre_tokenizer` is the JSON of
// the pre_tokenizer ("" = ByteLevel with GPT-2's regex).
std::string ByteLevelJson(
    const std::vector<std::pair<std::string, std::string>>& merges,
    const std::string& pre_tokenizer = "", bool ignore_merges = false,
    const std::vector<std::string>& extra_vocab = {});

// The GPT-2 byte-level spelling of raw bytes (" " -> "Ġ").
std::string ByteLevelSpelling(const std::string& bytes);

// ByteLevelJson(merges) loaded with this tokenizer_config.json text.
std::unique_ptr<BpeTokenizer> ByteLevelTokenizer(
    const std::string& config_json,
    const std::vector<std::pair<std::string, std::string>>& merges = {});

// The bytes of `s` as ids (what ByteLevelJson gives for unmerged text).
std::vector<int32_t> Bytes(const std::string& s);

}  // namespace ftune::train::testing

#endif  // FTUNE_TESTS_WORKER_TRAIN_TEXT_TEST_TOKENIZERS_H_
