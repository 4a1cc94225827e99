// Chat templates (worker/train/text/chat_template.h): the template named by
// a tokenizer_config.json, and every template rendering a dataset line
// with a byte-level tokenizer that has the templates' special tokens.
// Input: tokenizer_config.json NUL one JSONL line. Properties: no crash;
// ids and loss mask have the same length, ids are in the vocabulary, the
// mask is 0/1.
#include <cstdint>
#include <string>
#include <vector>

#include "common/dataset.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_split.h"
#include "tests/worker/train/text/test_tokenizers.h"
#include "worker/train/text/chat_template.h"

namespace {

using ftune::train::ChatTemplate;

const ftune::train::BpeTokenizer& Tokenizer() {
  static const auto* t =
      ftune::train::BpeTokenizer::Create(
          ftune::train::testing::ByteLevelJson({{"h", "e"}, {"l", "l"}}),
          R"({"bos_token": "<s>", "eos_token": "</s>"})")
          ->release();
  return *t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string> parts = ftune::fuzz::SplitInput(data, size, 2);
  auto config = ftune::train::ParseTokenizerConfig(parts[0]);
  if (config.ok()) {
    (void)ftune::train::ResolveChatTemplate("auto", *config);
  }
  auto example = ftune::ParseExampleLine(parts[1], 1);
  if (!example.ok()) return 0;
  for (ChatTemplate t : {ChatTemplate::kChatML, ChatTemplate::kLlama3,
                         ChatTemplate::kLlama2, ChatTemplate::kAlpaca}) {
    auto tokens = ftune::train::TokenizeExample(*example, t, Tokenizer());
    if (!tokens.ok()) continue;
    FUZZ_CHECK(tokens->ids.size() == tokens->loss_mask.size());
    for (size_t i = 0; i < tokens->ids.size(); ++i) {
      FUZZ_CHECK(tokens->ids[i] >= 0 &&
                 tokens->ids[i] < Tokenizer().vocab_size());
      FUZZ_CHECK(tokens->loss_mask[i] <= 1);
    }
  }
  return 0;
}
