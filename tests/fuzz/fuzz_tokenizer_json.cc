// Hugging Face tokenizer.json (+ tokenizer_config.json) as the trainer
// loads it (worker/train/text/bpe_tokenizer.h), then encoding and decoding
// a text with it. Input: tokenizer.json NUL tokenizer_config.json NUL text.
// Properties: no crash or hang; every id is inside the vocabulary.
#include <cstdint>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_split.h"
#include "worker/train/text/bpe_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string> parts = ftune::fuzz::SplitInput(data, size, 3);
  auto tok = ftune::train::BpeTokenizer::Create(parts[0], parts[1]);
  if (!tok.ok()) return 0;
  for (bool special : {false, true}) {
    ftune::train::EncodeOptions options;
    options.parse_special = special;
    options.add_prefix_space = !special;
    const std::vector<int32_t> ids = (*tok)->Encode(parts[2], options);
    for (int32_t id : ids) {
      FUZZ_CHECK(id >= 0 && id < (*tok)->vocab_size());
    }
    (void)(*tok)->Decode(ids, /*skip_special=*/special);
  }
  return 0;
}
