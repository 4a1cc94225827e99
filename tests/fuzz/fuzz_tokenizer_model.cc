// A SentencePiece tokenizer.model (protobuf bytes, parsed by
// libsentencepiece in its plugin) as the trainer loads it
// (worker/train/text/sentencepiece_tokenizer.h), then a text encoded and
// decoded with it. Input: tokenizer.model NUL text.
#include <cstdint>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_split.h"
#include "worker/train/text/sentencepiece_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The model's bytes may hold NULs: the text is what follows the last one.
  std::string model(reinterpret_cast<const char*>(data), size);
  std::string text;
  if (const size_t nul = model.rfind('\0'); nul != std::string::npos) {
    text = model.substr(nul + 1);
    model.resize(nul);
  }
  auto tok = ftune::train::SentencePieceTokenizer::Create(model, "");
  if (!tok.ok()) return 0;
  const std::vector<int32_t> ids = (*tok)->Encode(text);
  for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < (*tok)->vocab_size());
  (void)(*tok)->Decode(ids);
  return 0;
}
