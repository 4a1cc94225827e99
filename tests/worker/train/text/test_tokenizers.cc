#include "tests/worker/train/text/test_tokenizers.h"

#include "common/logging.h"
#include "nlohmann/json.hpp"
#include "worker/train/text/utf8.h"

namespace ftune::train::testing {

using nlohmann::json;

std::string ByteLevelSpelling(const std::string& bytes) {
  // GPT-2's map, written out independently of the implementation: printable
  // bytes stand for themselves, the other 68 bytes map to U+0100.. in order.
  std::string out;
  for (unsigned char b : bytes) {
    int n = 0;
    uint32_t cp = b;
    const auto printable = [](int x) {
      return (x >= 33 && x <= 126) || (x >= 161 && x <= 172) ||
             (x >= 174 && x <= 255);
    };
    if (!printable(b)) {
      for (int x = 0; x < b; ++x) n += printable(x) ? 0 : 1;
      cp = 256 + n;
    }
    out += EncodeUtf8(cp);
  }
  return out;
}

std::vector<int32_t> Bytes(const std::string& s) {
  std::vector<int32_t> out;
  for (unsigned char c : s) out.push_back(c);
  return out;
}

std::string ByteLevelJson(
    const std::vector<std::pair<std::string, std::string>>& merges,
    const std::string& pre_tokenizer, bool ignore_merges,
    const std::vector<std::string>& extra_vocab) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b)
    vocab[ByteLevelSpelling(std::string(1, static_cast<char>(b)))] = b;
  json merge_list = json::array();
  int next = 256;
  for (const auto& [a, b] : merges) {
    vocab[a + b] = next++;
    // Alternate the two spellings that tokenizer.json files use.
    if (merge_list.size() % 2 == 0) {
      merge_list.push_back(a + " " + b);
    } else {
      merge_list.push_back(json::array({a, b}));
    }
  }
  for (const std::string& v : extra_vocab) vocab[v] = next++;
  FTUNE_CHECK(next <= 300);
  json added = json::array();
  const char* specials[] = {"<|endoftext|>",
                            "<|im_start|>",
                            "<|im_end|>",
                            "<|begin_of_text|>",
                            "<|start_header_id|>",
                            "<|end_header_id|>",
                            "<|eot_id|>",
                            "<s>",
                            "</s>"};
  for (int i = 0; i < 9; ++i) {
    added.push_back(
        {{"id", 300 + i}, {"content", specials[i]}, {"special", true}});
  }
  json root = {{"added_tokens", added},
               {"normalizer", nullptr},
               {"pre_tokenizer", pre_tokenizer.empty()
                                     ? json{{"type", "ByteLevel"},
                                            {"add_prefix_space", false},
                                            {"use_regex", true}}
                                     : json::parse(pre_tokenizer)},
               {"decoder", {{"type", "ByteLevel"}}},
               {"model",
                {{"type", "BPE"},
                 {"vocab", vocab},
                 {"merges", merge_list},
                 {"ignore_merges", ignore_merges}}}};
  return root.dump();
}

std::unique_ptr<BpeTokenizer> ByteLevelTokenizer(
    const std::string& config_json,
    const std::vector<std::pair<std::string, std::string>>& merges) {
  auto t = BpeTokenizer::Create(ByteLevelJson(merges), config_json);
  FTUNE_CHECK(t.ok()) << t.status();
  return *std::move(t);
}

}  // namespace ftune::train::testing
