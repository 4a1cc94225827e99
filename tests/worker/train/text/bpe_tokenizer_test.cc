#include "worker/train/text/bpe_tokenizer.h"

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/worker/train/text/test_tokenizers.h"

namespace ftune::train {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using namespace ::ftune::train::testing;  // NOLINT
using nlohmann::json;

const std::vector<std::string> kTricky = {
    "Hello, world!",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew\r\nlines\n\n\n",
    "digits 1234567890 3.14159 -42",
    "emoji \xF0\x9F\x8E\x89\xF0\x9F\x99\x82 and CJK \xE4\xB8\xAD\xE6\x96\x87",
    "\xC3\xBCn\xC3\xAF"
    "c\xC3\xB6"
    "d\xC3\xA9 caf\xC3\xA9",
    "a    b     c",
    "it's we'll they'RE",
    "<|im_end|> inside user text",
    "",
};

std::unique_ptr<BpeTokenizer> MustCreate(const std::string& json_text,
                                         const std::string& config = "") {
  auto t = BpeTokenizer::Create(json_text, config);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

TEST(ByteLevelBpeTest, UnmergedTextIsItsBytesAndRoundTrips) {
  auto tok = MustCreate(ByteLevelJson({}));
  for (const std::string& s : kTricky) {
    EXPECT_EQ(tok->Encode(s), Bytes(s)) << s;
    EXPECT_EQ(tok->Decode(tok->Encode(s)), s);
  }
}

TEST(ByteLevelBpeTest, MergesApplyInRankOrder) {
  // ids: Ġt=256 he=257 lo=258 ll=259 Ġthe=260.
  auto tok = MustCreate(ByteLevelJson({{"\xC4\xA0", "t"},
                                       {"h", "e"},
                                       {"l", "o"},
                                       {"l", "l"},
                                       {"\xC4\xA0t", "he"}}));
  // " the": Ġt (rank 0) before he (1), then Ġt+he (4).
  // " hello": he (1), then lo (2) beats ll (3) and leaves l alone.
  EXPECT_THAT(tok->Encode(" the hello"), ElementsAre(260, 32, 257, 108, 258));
  EXPECT_THAT(tok->Encode("the"), ElementsAre(116, 257));
  EXPECT_EQ(tok->Decode({260, 32, 257, 108, 258}), " the hello");
  EXPECT_EQ(tok->TokenToId("\xC4\xA0the"), 260);
  EXPECT_EQ(tok->IdToToken(258), "lo");
}

TEST(ByteLevelBpeTest, Gpt2RegexKeepsWhitespaceRunsApart) {
  // Merge ĠĠ=256. GPT-2 splits "a  b" into "a", " ", " b" (so no merge);
  // a trailing run "   \n" is one piece: the leftmost ĠĠ merges first.
  auto tok = MustCreate(ByteLevelJson({{"\xC4\xA0", "\xC4\xA0"}}));
  EXPECT_THAT(tok->Encode("a  b"), ElementsAre(97, 32, 32, 98));
  EXPECT_THAT(tok->Encode("a   \n"), ElementsAre(97, 256, 32, 10));
}

TEST(ByteLevelBpeTest, Llama3SplitRegexGroupsDigitsInThrees) {
  // 12=256 34=257 123=258.
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"1", "2"}, {"3", "4"}, {"12", "3"}};
  auto gpt2 = MustCreate(ByteLevelJson(merges));
  EXPECT_THAT(gpt2->Encode("1234"), ElementsAre(256, 257));  // one piece
  const std::string llama3_pre = json{
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern",
          {{"Regex",
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{"
            "1,3}| "
            "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"},
         {"add_prefix_space", false},
         {"use_regex", false}}}}}.dump();
  auto llama3 = MustCreate(ByteLevelJson(merges, llama3_pre));
  EXPECT_THAT(llama3->Encode("1234"), ElementsAre(258, 52));  // "123" "4"
  for (const std::string& s : kTricky) {
    EXPECT_EQ(llama3->Decode(llama3->Encode(s)), s);
  }
  // (?i:'RE) matches case-insensitively and keeps "'RE" one piece; the
  // bytes are unmerged either way, so check the pieces via a merge.
  auto with_re =
      MustCreate(ByteLevelJson({{"'", "R"}, {"'R", "E"}}, llama3_pre));
  EXPECT_THAT(with_re->Encode("'RE"), ElementsAre(257));
}

TEST(ByteLevelBpeTest, DigitsPreTokenizerIsolatesDigits) {
  const std::string pre =
      R"({"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},)"
      R"({"type":"ByteLevel","add_prefix_space":false,"use_regex":true}]})";
  auto tok = MustCreate(ByteLevelJson({{"1", "2"}}, pre));
  EXPECT_THAT(tok->Encode("x12"), ElementsAre(120, 49, 50));
  auto plain = MustCreate(ByteLevelJson({{"1", "2"}}));
  EXPECT_THAT(plain->Encode("x12"), ElementsAre(120, 256));
}

TEST(ByteLevelBpeTest, IgnoreMergesTakesWholeWordsFromVocab) {
  // "hello" is in the vocab (id 256) but no merge builds it.
  auto with =
      MustCreate(ByteLevelJson({}, "", /*ignore_merges=*/true, {"hello"}));
  EXPECT_THAT(with->Encode("hello"), ElementsAre(256));
  auto without =
      MustCreate(ByteLevelJson({}, "", /*ignore_merges=*/false, {"hello"}));
  EXPECT_EQ(without->Encode("hello"), Bytes("hello"));
}

TEST(ByteLevelBpeTest, SpecialTokensOnlyWhenAsked) {
  auto tok = MustCreate(ByteLevelJson({}));
  EncodeOptions special;
  special.parse_special = true;
  EXPECT_THAT(tok->Encode("hi<|im_end|>\n<|im_start|>", special),
              ElementsAre(104, 105, kImEnd, 10, kImStart));
  // As plain text the characters are encoded, never the control token.
  EXPECT_EQ(tok->Encode("hi<|im_end|>"), Bytes("hi<|im_end|>"));
  EXPECT_EQ(tok->Decode({104, kImEnd, 105}), "h<|im_end|>i");
  EXPECT_EQ(tok->Decode({104, kImEnd, 105}, /*skip_special=*/true), "hi");
  EXPECT_TRUE(tok->IsSpecial(kImEnd));
  EXPECT_FALSE(tok->IsSpecial(104));
  EXPECT_EQ(tok->vocab_size(), 309);
}

TEST(ByteLevelBpeTest, NonSpecialAddedTokensAlwaysMatch) {
  json j = json::parse(ByteLevelJson({}));
  j["added_tokens"].push_back(
      {{"id", 309}, {"content", "<tool>"}, {"special", false}});
  auto tok = MustCreate(j.dump());
  EXPECT_THAT(tok->Encode("a<tool>"), ElementsAre(97, 309));
}

// A SentencePiece-style BPE, built by hand:
// <unk>=0 <s>=1 </s>=2 <0x00>..<0xFF>=3..258 ▁=259 a=260 b=261 ▁a=262
// ab=263 ▁ab=264; merges "▁ a", "a b", "▁a b".
std::string SpStyleJson(bool metaspace) {
  const std::string m = "\xE2\x96\x81";
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) vocab[absl::StrFormat("<0x%02X>", b)] = 3 + b;
  vocab[m] = 259;
  vocab["a"] = 260;
  vocab["b"] = 261;
  vocab[m + "a"] = 262;
  vocab["ab"] = 263;
  vocab[m + "ab"] = 264;
  json added = json::array();
  for (int i = 0; i < 3; ++i) {
    added.push_back(
        {{"id", i},
         {"content", std::vector<std::string>{"<unk>", "<s>", "</s>"}[i]},
         {"special", true}});
  }
  json root = {{"added_tokens", added},
               {"model",
                {{"type", "BPE"},
                 {"vocab", vocab},
                 {"merges", {m + " a", "a b", m + "a b"}},
                 {"byte_fallback", true},
                 {"fuse_unk", true},
                 {"unk_token", "<unk>"}}}};
  root["post_processor"] = json::parse(
      R"({"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},)"
      R"({"Sequence":{"id":"A","type_id":0}}]})");
  if (metaspace) {
    root["normalizer"] = nullptr;
    root["pre_tokenizer"] = {{"type", "Metaspace"},
                             {"replacement", m},
                             {"prepend_scheme", "first"},
                             {"split", false}};
    root["decoder"] = {{"type", "Sequence"},
                       {"decoders",
                        {{{"type", "ByteFallback"}},
                         {{"type", "Metaspace"},
                          {"replacement", m},
                          {"prepend_scheme", "first"}}}}};
  } else {
    root["normalizer"] = {{"type", "Sequence"},
                          {"normalizers",
                           {{{"type", "Prepend"}, {"prepend", m}},
                            {{"type", "Replace"},
                             {"pattern", {{"String", " "}}},
                             {"content", m}}}}};
    root["pre_tokenizer"] = nullptr;
    root["decoder"] = {
        {"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", m}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  }
  return root.dump();
}

class SpStyleBpeTest : public ::testing::TestWithParam<bool> {};

TEST_P(SpStyleBpeTest, HandDerivedEncodings) {
  auto tok = MustCreate(SpStyleJson(GetParam()));
  // "▁ab▁ab": ▁a (rank 0) twice, then a b (1) is gone, ▁a b (2) twice.
  EXPECT_THAT(tok->Encode("ab ab"), ElementsAre(264, 264));
  // "c" is not in the vocab: byte fallback <0x63>.
  EXPECT_THAT(tok->Encode("ac"), ElementsAre(262, 3 + 0x63));
  // Emoji: 4 byte tokens after the lone ▁.
  EXPECT_THAT(tok->Encode("\xF0\x9F\x8E\x89"),
              ElementsAre(259, 3 + 0xF0, 3 + 0x9F, 3 + 0x8E, 3 + 0x89));
  EncodeOptions cont;
  cont.add_prefix_space = false;
  EXPECT_THAT(tok->Encode("ab", cont), ElementsAre(263));
  EncodeOptions special;
  special.parse_special = true;
  // After a special token the legacy Prepend normalizer prefixes again;
  // Metaspace with prepend_scheme "first" only prefixes the first segment.
  EXPECT_THAT(tok->Encode("<s>ab", special),
              ElementsAre(1, GetParam() ? 263 : 264));
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_TRUE(tok->config().add_bos_token);
  for (const std::string& s :
       {std::string("ab ab"), std::string("a  b\n\xE4\xB8\xAD 12"),
        std::string("\xF0\x9F\x8E\x89!")}) {
    EXPECT_EQ(tok->Decode(tok->Encode(s)), s) << s;
  }
}

INSTANTIATE_TEST_SUITE_P(NormalizerOrMetaspace, SpStyleBpeTest,
                         ::testing::Bool());

// Gemma's tokenizer.json: the Replace normalizer alone, no dummy prefix.
TEST(SpStyleBpeTest, GemmaStyleReplaceOnlyNormalizer) {
  json j = json::parse(SpStyleJson(false));
  j["normalizer"] = {{"type", "Replace"},
                     {"pattern", {{"String", " "}}},
                     {"content", "\xE2\x96\x81"}};
  auto tok = MustCreate(j.dump());
  // "ab▁ab": ab (rank 1), then ▁a b (2).
  EXPECT_THAT(tok->Encode("ab ab"), ElementsAre(263, 264));
  EXPECT_EQ(tok->Decode(tok->Encode("ab ab")), "ab ab");
}

TEST(SpStyleBpeTest, LongUnsplitInputIsNotQuadratic) {
  auto tok = MustCreate(SpStyleJson(false));
  // One 400k-character "word": a quadratic merge loop would take minutes.
  const int n = 200000;
  std::string text;
  for (int i = 0; i < n; ++i) text += "ab";
  std::vector<int32_t> ids = tok->Encode(text);
  ASSERT_EQ(ids.size(), static_cast<size_t>(n));
  EXPECT_EQ(ids[0], 264);  // ▁ab
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 263), n - 1);
}

TEST(BpeTokenizerTest, RejectsBadFilesByField) {
  json base = json::parse(ByteLevelJson({}));
  auto expect_bad = [](const json& j, const std::string& what) {
    EXPECT_THAT(BpeTokenizer::Create(j.dump(), "").status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(what)));
  };
  json j = base;
  j["model"]["type"] = "WordPiece";
  expect_bad(j, "model.type: unsupported \"WordPiece\"");
  j = base;
  j["model"]["merges"] = {"x zz"};
  expect_bad(j, "model.merges[0]: token \"zz\" is not in the vocab");
  j = base;
  j["model"]["merges"] = {"a b c"};
  expect_bad(j, "model.merges[0]: expected \"a b\"");
  j = base;
  j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  expect_bad(j, "pre_tokenizer: unsupported type \"BertPreTokenizer\"");
  j = base;
  j["model"]["byte_fallback"] = true;
  expect_bad(j, "byte token <0x00> is missing");
  j = base;
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "(unclosed"}}},
                        {"behavior", "Isolated"}};
  expect_bad(j, "regex \"(unclosed\"");
  EXPECT_THAT(
      BpeTokenizer::Create("{not json", "").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid JSON")));
}

TEST(LoadTokenizerTest, ReadsTokenizerJsonAndConfig) {
  ftune::testing::TempDir dir;
  std::ofstream(dir.Sub("tokenizer.json")) << ByteLevelJson({});
  std::ofstream(dir.Sub("tokenizer_config.json"))
      << R"({"bos_token":{"content":"<|begin_of_text|>","special":true},)"
         R"("eos_token":"<|eot_id|>","pad_token":null,"add_bos_token":true,)"
         R"("chat_template":"{% for m in messages %}<|start_header_id|>{% endfor %}"})";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Tokenizer> tok,
                       LoadTokenizer(dir.path()));
  EXPECT_EQ(tok->bos_id(), kBeginOfText);
  EXPECT_EQ(tok->eos_id(), kEotId);
  EXPECT_EQ(tok->pad_id(), -1);
  EXPECT_TRUE(tok->config().add_bos_token);
  EXPECT_THAT(tok->config().chat_template, HasSubstr("<|start_header_id|>"));

  ftune::testing::TempDir empty;
  EXPECT_THAT(LoadTokenizer(empty.path()).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("neither tokenizer.json")));
  std::ofstream(dir.Sub("tokenizer_config.json"))
      << R"({"add_bos_token":"yes"})";
  EXPECT_THAT(LoadTokenizer(dir.path()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("add_bos_token: expected a boolean")));
}

TEST(BpeTokenizerTest, BosDefaultsFromPostProcessorSequence) {
  // Llama-3 layout: the BOS comes from a TemplateProcessing inside a
  // Sequence post-processor; tokenizer_config.json does not say add_bos.
  json j = json::parse(ByteLevelJson({}));
  j["post_processor"] = json::parse(
      R"({"type":"Sequence","processors":[{"type":"ByteLevel","trim_offsets":false},)"
      R"({"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|begin_of_text|>",)"
      R"("type_id":0}},{"Sequence":{"id":"A","type_id":0}}]}]})");
  auto tok = MustCreate(j.dump(), R"({"eos_token":"<|eot_id|>"})");
  EXPECT_EQ(tok->bos_id(), kBeginOfText);
  EXPECT_TRUE(tok->config().add_bos_token);
  EXPECT_EQ(tok->eos_id(), kEotId);
  // An explicit null in tokenizer_config.json removes the token.
  auto none =
      MustCreate(j.dump(), R"({"bos_token":null,"add_bos_token":false})");
  EXPECT_EQ(none->bos_id(), -1);
  EXPECT_FALSE(none->config().add_bos_token);
}

TEST(ParseTokenizerConfigTest, ChatTemplateList) {
  ASSERT_OK_AND_ASSIGN(
      TokenizerConfig c,
      ParseTokenizerConfig(
          R"({"chat_template":[{"name":"tool_use","template":"x"},)"
          R"({"name":"default","template":"<|im_start|>"}]})"));
  EXPECT_EQ(c.chat_template, "<|im_start|>");
}

}  // namespace
}  // namespace ftune::train
