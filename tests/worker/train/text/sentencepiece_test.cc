// Cross-checks our tokenizer.json BPE (SentencePiece style) against
// libsentencepiece itself: a BPE model is trained here with the library's
// trainer, converted with SentencePieceModelToTokenizerJson, and both must
// give identical ids on tricky strings.
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "worker/train/text/bpe_tokenizer.h"
#include "worker/train/text/chat_template.h"
#include "worker/train/text/sentencepiece_bridge.h"
#include "worker/train/text/sentencepiece_tokenizer.h"

namespace ftune::train {
namespace {

using ::testing::HasSubstr;

const char* const kSentences[] = {
    "The quick brown fox jumps over the lazy dog.",
    "A journey of a thousand miles begins with a single step.",
    "In 1969, 600 million people watched the first Moon landing.",
    "Numbers like 3.14159, 2.71828 and 1234567890 appear in text.",
    "She said: \"don't worry, we'll be there at 10:30!\"",
    "Packages describe themselves: libfoo-dev provides headers for libfoo.",
    "    indented code block with    runs   of spaces",
    "tabs\tseparate\tcolumns and new lines end them",
    "Caf\xC3\xA9 au lait, na\xC3\xAFve r\xC3\xA9sum\xC3\xA9, \xC3\xBC"
    "ber cool.",
    "\xE4\xB8\xAD\xE6\x96\x87\xE6\x96\x87\xE6\x9C\xAC and "
    "\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 world",
    "the theory of the thing is that there are three thousand themes",
    "fine-tuning language models with low-rank adapters saves memory",
};

const std::vector<std::string> kTricky = {
    "Hello world",
    "  two leading spaces",
    "trailing spaces   ",
    "runs    of     whitespace",
    "tab\there and\nnewline",
    "digits 0123456789 and 3.14",
    "emoji \xF0\x9F\x8E\x89\xF0\x9F\x99\x82 fall back to bytes",
    "rare \xE2\x88\x80x \xE2\x88\x83y \xE2\x84\x9D \xC7\x84",
    "Caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87",
    "the the the theory thereof",
    "x",
    " ",
    "",
};

class SentencePieceCrossCheck : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ftune::testing::TempDir();
    const std::string corpus = dir_->Sub("corpus.txt");
    {
      std::ofstream out(corpus);
      // Repetition with variation so BPE has pairs to count.
      for (int r = 0; r < 20; ++r) {
        for (const char* s : kSentences) out << s << " " << r * 7 << "\n";
      }
    }
    const std::string err = sp::TrainSentencePiece(
        "--input=" + corpus + " --model_prefix=" + dir_->Sub("m") +
        " --vocab_size=700 --model_type=bpe --byte_fallback=true"
        " --normalization_rule_name=identity --remove_extra_whitespaces=false"
        " --character_coverage=1.0 --hard_vocab_limit=false --num_threads=1"
        " --minloglevel=2");
    ASSERT_EQ(err, "");
    absl::StatusOr<std::string> bytes = ReadFile(dir_->Sub("m.model"));
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    model_bytes_ = new std::string(*bytes);
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete model_bytes_;
  }

  void SetUp() override {
    std::string error;
    model_ = sp::SpModel::Load(*model_bytes_, &error);
    ASSERT_NE(model_, nullptr) << error;
    absl::StatusOr<std::string> json =
        SentencePieceModelToTokenizerJson(*model_);
    ASSERT_TRUE(json.ok()) << json.status();
    auto bpe = BpeTokenizer::Create(*json, R"({"eos_token":"</s>"})");
    ASSERT_TRUE(bpe.ok()) << bpe.status();
    bpe_ = *std::move(bpe);
    auto spt = SentencePieceTokenizer::Create(*model_bytes_, "");
    ASSERT_TRUE(spt.ok()) << spt.status();
    spt_ = *std::move(spt);
  }

  std::vector<int32_t> Reference(const std::string& s, bool prefix) {
    std::vector<int32_t> out;
    for (int id : model_->Encode(s, prefix)) out.push_back(id);
    return out;
  }

  static ftune::testing::TempDir* dir_;
  static std::string* model_bytes_;
  std::unique_ptr<sp::SpModel> model_;
  std::unique_ptr<BpeTokenizer> bpe_;
  std::unique_ptr<SentencePieceTokenizer> spt_;
};

ftune::testing::TempDir* SentencePieceCrossCheck::dir_ = nullptr;
std::string* SentencePieceCrossCheck::model_bytes_ = nullptr;

TEST_F(SentencePieceCrossCheck, ModelIsNontrivial) {
  // Merges really happen (else the comparison would prove little).
  EXPECT_GT(model_->size(), 400);
  EXPECT_LT(Reference("the theory", true).size(), 6u);
  // Emoji are not in the vocabulary: byte fallback.
  const std::vector<int32_t> emoji = Reference("\xF0\x9F\x8E\x89", false);
  ASSERT_EQ(emoji.size(), 4u);
  EXPECT_EQ(model_->piece(emoji[0]).text, "<0xF0>");
}

TEST_F(SentencePieceCrossCheck, SameIdsAsLibsentencepiece) {
  std::vector<std::string> inputs = kTricky;
  for (const char* s : kSentences) inputs.push_back(s);
  for (const std::string& s : inputs) {
    EXPECT_EQ(bpe_->Encode(s), Reference(s, true)) << "\"" << s << "\"";
    EncodeOptions cont;
    cont.add_prefix_space = false;
    EXPECT_EQ(bpe_->Encode(s, cont), Reference(s, false)) << "\"" << s << "\"";
    EXPECT_EQ(spt_->Encode(s), Reference(s, true));
    EXPECT_EQ(spt_->Encode(s, cont), Reference(s, false));
  }
}

TEST_F(SentencePieceCrossCheck, SameIdsOnRealText) {
  // Real English prose on every Debian system, mostly unseen by the model.
  absl::StatusOr<std::string> gpl =
      ReadFile("/usr/share/common-licenses/GPL-3");
  if (!gpl.ok()) GTEST_SKIP() << "no /usr/share/common-licenses/GPL-3";
  const std::string text = gpl->substr(0, 64 << 10);
  size_t lines = 0, start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    ASSERT_EQ(bpe_->Encode(line), Reference(line, true))
        << "\"" << line << "\"";
    start = end + 1;
    ++lines;
  }
  EXPECT_GT(lines, 500u);
  // And the whole 64 KiB as one input (newlines included).
  EXPECT_EQ(bpe_->Encode(text), Reference(text, true));
  EXPECT_EQ(bpe_->Decode(bpe_->Encode(text)), text);
}

TEST_F(SentencePieceCrossCheck, DecodeInvertsEncode) {
  for (const std::string& s : kTricky) {
    EXPECT_EQ(bpe_->Decode(bpe_->Encode(s)), s) << "\"" << s << "\"";
    EXPECT_EQ(spt_->Decode(spt_->Encode(s)), s) << "\"" << s << "\"";
    EXPECT_EQ(bpe_->Decode(Reference(s, true)),
              model_->Decode(Reference(s, true)));
  }
}

TEST_F(SentencePieceCrossCheck, SpecialTokens) {
  const int bos = model_->bos_id(), eos = model_->eos_id();
  ASSERT_GE(bos, 0);
  ASSERT_GE(eos, 0);
  std::vector<int32_t> want = {bos};
  for (int32_t id : Reference("hello there", true)) want.push_back(id);
  want.push_back(eos);
  for (int32_t id : Reference(" and more", true)) want.push_back(id);
  EncodeOptions special;
  special.parse_special = true;
  const std::string text = "<s>hello there</s> and more";
  EXPECT_EQ(bpe_->Encode(text, special), want);
  EXPECT_EQ(spt_->Encode(text, special), want);
  // Without parse_special "<s>" is text.
  EXPECT_EQ(spt_->Encode(text), Reference(text, true));
  EXPECT_EQ(bpe_->Encode(text), Reference(text, true));
  EXPECT_EQ(spt_->bos_id(), bos);
  EXPECT_EQ(spt_->eos_id(), eos);
  EXPECT_TRUE(spt_->config().add_bos_token);
  EXPECT_EQ(spt_->Decode(spt_->Encode(text, special), /*skip_special=*/true),
            "hello there and more");
}

TEST_F(SentencePieceCrossCheck, Llama2TemplateWithDummyPrefixes) {
  // The assistant reply continues the prompt's text: it must not get a
  // second dummy-prefix space, so the rendering decodes back exactly.
  Example ex;
  ex.format = DatasetFormat::kMessages;
  ex.messages = {{Role::kUser, "hi there", true},
                 {Role::kAssistant, "the theory", true}};
  for (const Tokenizer* tok : {static_cast<const Tokenizer*>(spt_.get()),
                               static_cast<const Tokenizer*>(bpe_.get())}) {
    absl::StatusOr<TokenizedExample> t =
        TokenizeExample(ex, ChatTemplate::kLlama2, *tok);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(tok->Decode(t->ids),
              "<s>[INST] hi there [/INST] the theory </s>");
    std::vector<int32_t> trained;
    for (size_t i = 0; i < t->ids.size(); ++i) {
      if (t->loss_mask[i]) trained.push_back(t->ids[i]);
    }
    EXPECT_EQ(tok->Decode(trained), "the theory </s>");
    EXPECT_EQ(trained.back(), model_->eos_id());
  }
}

TEST_F(SentencePieceCrossCheck, LoadTokenizerPicksTokenizerModel) {
  ftune::testing::TempDir dir;
  ASSERT_OK(WriteFileAtomically(dir.Sub("tokenizer.model"), *model_bytes_));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Tokenizer> tok,
                       LoadTokenizer(dir.path()));
  EXPECT_EQ(tok->Encode("Hello world"), Reference("Hello world", true));
  EXPECT_EQ(tok->vocab_size(), model_->size());
  EXPECT_EQ(tok->TokenToId("<0x41>"), model_->PieceToId("<0x41>"));
  EXPECT_FALSE(tok->TokenToId("no such piece").has_value());
  ASSERT_OK(WriteFileAtomically(dir.Sub("tokenizer.model"), "garbage"));
  EXPECT_THAT(LoadTokenizer(dir.path()).status(),
              ftune::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("tokenizer.model")));
}

}  // namespace
}  // namespace ftune::train
