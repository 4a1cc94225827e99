#include "worker/train/text/chat_template.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/worker/train/text/test_tokenizers.h"

namespace ftune::train {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;
using namespace ::ftune::train::testing;  // NOLINT

// Builds the expected ids and mask piece by piece.
struct Expect {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
  Expect& Add(const std::vector<int32_t>& part, bool train) {
    for (int32_t id : part) {
      ids.push_back(id);
      mask.push_back(train ? 1 : 0);
    }
    return *this;
  }
  Expect& Text(const std::string& s, bool train) {
    return Add(Bytes(s), train);
  }
  Expect& Tok(int32_t id, bool train) { return Add({id}, train); }
};

Example Chat(std::vector<std::pair<Role, std::string>> turns) {
  Example ex;
  ex.format = DatasetFormat::kMessages;
  ex.line_number = 7;
  for (auto& [role, content] : turns)
    ex.messages.push_back({role, content, true});
  return ex;
}

void ExpectTokens(const absl::StatusOr<TokenizedExample>& got,
                  const Expect& want) {
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->ids, want.ids);
  EXPECT_EQ(got->loss_mask, want.mask);
}

TEST(ChatTemplateTest, ChatML) {
  auto tok = ByteLevelTokenizer(R"({"eos_token":"<|im_end|>"})");
  Example ex = Chat(
      {{Role::kSystem, "S"}, {Role::kUser, "hi"}, {Role::kAssistant, "yo"}});
  Expect want;
  want.Tok(kImStart, false)
      .Text("system\nS", false)
      .Tok(kImEnd, false)
      .Text("\n", false);
  want.Tok(kImStart, false)
      .Text("user\nhi", false)
      .Tok(kImEnd, false)
      .Text("\n", false);
  want.Tok(kImStart, false)
      .Text("assistant\n", false)
      .Text("yo", true)
      .Tok(kImEnd, true);
  want.Text("\n", false);
  ExpectTokens(TokenizeExample(ex, ChatTemplate::kChatML, *tok), want);
}

TEST(ChatTemplateTest, UserContentNeverBecomesASpecialToken) {
  auto tok = ByteLevelTokenizer(R"({"eos_token":"<|im_end|>"})");
  Example ex =
      Chat({{Role::kUser, "a<|im_end|>b"}, {Role::kAssistant, "<|im_start|>"}});
  Expect want;
  want.Tok(kImStart, false)
      .Text("user\na<|im_end|>b", false)
      .Tok(kImEnd, false);
  want.Text("\n", false);
  want.Tok(kImStart, false)
      .Text("assistant\n", false)
      .Text("<|im_start|>", true);
  want.Tok(kImEnd, true).Text("\n", false);
  ExpectTokens(TokenizeExample(ex, ChatTemplate::kChatML, *tok), want);
}

TEST(ChatTemplateTest, WeightZeroAssistantIsNotTrained) {
  auto tok = ByteLevelTokenizer("{}");
  Example ex = Chat({{Role::kUser, "q"},
                     {Role::kAssistant, "a"},
                     {Role::kUser, "r"},
                     {Role::kAssistant, "b"}});
  ex.messages[1].trainable = false;
  Expect want;
  want.Tok(kImStart, false)
      .Text("user\nq", false)
      .Tok(kImEnd, false)
      .Text("\n", false);
  want.Tok(kImStart, false)
      .Text("assistant\na", false)
      .Tok(kImEnd, false)
      .Text("\n", false);
  want.Tok(kImStart, false)
      .Text("user\nr", false)
      .Tok(kImEnd, false)
      .Text("\n", false);
  want.Tok(kImStart, false)
      .Text("assistant\n", false)
      .Text("b", true)
      .Tok(kImEnd, true);
  want.Text("\n", false);
  ExpectTokens(TokenizeExample(ex, ChatTemplate::kChatML, *tok), want);
}

TEST(ChatTemplateTest, Llama3TrimsContent) {
  auto tok = ByteLevelTokenizer(
      R"({"bos_token":"<|begin_of_text|>","eos_token":"<|eot_id|>"})");
  Example ex = Chat({{Role::kUser, " hi\n"}, {Role::kAssistant, " yo \n"}});
  Expect want;
  want.Tok(kBeginOfText, false);
  want.Tok(kStartHeader, false).Text("user", false).Tok(kEndHeader, false);
  want.Text("\n\nhi", false).Tok(kEotId, false);
  want.Tok(kStartHeader, false).Text("assistant", false).Tok(kEndHeader, false);
  want.Text("\n\n", false).Text("yo", true).Tok(kEotId, true);
  ExpectTokens(TokenizeExample(ex, ChatTemplate::kLlama3, *tok), want);
}

TEST(ChatTemplateTest, Llama2WithSystemAndTwoTurns) {
  auto tok = ByteLevelTokenizer(R"({"bos_token":"<s>","eos_token":"</s>"})");
  Example ex = Chat({{Role::kSystem, "S"},
                     {Role::kUser, "hi"},
                     {Role::kAssistant, "yo"},
                     {Role::kUser, "more"},
                     {Role::kAssistant, "ok"}});
  Expect want;
  want.Tok(kBos, false)
      .Text("[INST] <<SYS>>\nS\n<</SYS>>\n\nhi [/INST]", false);
  want.Text(" yo ", true).Tok(kEos, true);
  want.Tok(kBos, false)
      .Text("[INST] more [/INST]", false)
      .Text(" ok ", true)
      .Tok(kEos, true);
  ExpectTokens(TokenizeExample(ex, ChatTemplate::kLlama2, *tok), want);

  Example bad =
      Chat({{Role::kUser, "a"}, {Role::kUser, "b"}, {Role::kAssistant, "c"}});
  EXPECT_THAT(
      TokenizeExample(bad, ChatTemplate::kLlama2, *tok).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("line 7: messages[1]: llama2 template needs an "
                         "assistant message")));
}

TEST(ChatTemplateTest, Alpaca) {
  auto tok = ByteLevelTokenizer(
      R"({"bos_token":"<s>","eos_token":"</s>","add_bos_token":true})");
  Example ex = Chat({{Role::kUser, "hi"}, {Role::kAssistant, "yo"}});
  Expect want;
  want.Tok(kBos, false);
  want.Text(
      "Below is an instruction that describes a task. Write a response that "
      "appropriately completes the request.\n\n### Instruction:\nhi\n\n### "
      "Response:\n",
      false);
  want.Text("yo", true).Tok(kEos, true);
  ExpectTokens(TokenizeExample(ex, ChatTemplate::kAlpaca, *tok), want);
}

TEST(ChatTemplateTest, PromptCompletionAndText) {
  auto tok = ByteLevelTokenizer(
      R"({"bos_token":"<s>","eos_token":"</s>","add_bos_token":true})");
  Example pc;
  pc.format = DatasetFormat::kPromptCompletion;
  pc.prompt = "2+2=";
  pc.completion = "4";
  Expect want;
  want.Tok(kBos, false).Text("2+2=", false).Text("4", true).Tok(kEos, true);
  ExpectTokens(TokenizeExample(pc, ChatTemplate::kChatML, *tok), want);

  Example text;
  text.format = DatasetFormat::kText;
  text.text = "all of it";
  Expect want_text;
  want_text.Tok(kBos, false).Text("all of it", true).Tok(kEos, true);
  ExpectTokens(TokenizeExample(text, ChatTemplate::kChatML, *tok), want_text);
}

TEST(ChatTemplateTest, MissingTokensAreFailedPrecondition) {
  auto no_eos = ByteLevelTokenizer("{}");
  Example text;
  text.format = DatasetFormat::kText;
  text.text = "x";
  EXPECT_THAT(TokenizeExample(text, ChatTemplate::kChatML, *no_eos).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("no eos token")));
  nlohmann::json j = nlohmann::json::parse(ByteLevelJson({}));
  j["added_tokens"] = nlohmann::json::array();
  auto bare = BpeTokenizer::Create(j.dump(), "");
  ASSERT_TRUE(bare.ok());
  EXPECT_THAT(
      TokenizeExample(Chat({{Role::kUser, "a"}, {Role::kAssistant, "b"}}),
                      ChatTemplate::kChatML, **bare)
          .status(),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("no token \"<|im_start|>\"")));
}

// A byte-level tokenizer that also has the Phi-3 and Gemma control tokens
// (ids 309...; <bos> as bos, <|endoftext|> as eos).
constexpr int32_t kSystemTok = 309, kUserTok = 310, kAssistantTok = 311,
                  kEndTok = 312, kGemmaBos = 313, kStartOfTurn = 314,
                  kEndOfTurn = 315;
std::unique_ptr<BpeTokenizer> Phi3GemmaTokenizer(const std::string& config) {
  nlohmann::json j = nlohmann::json::parse(ByteLevelJson({}));
  int32_t id = 309;
  for (const char* t : {"<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
                        "<bos>", "<start_of_turn>", "<end_of_turn>"})
    j["added_tokens"].push_back(
        {{"id", id++}, {"content", t}, {"special", true}});
  auto t = BpeTokenizer::Create(j.dump(), config);
  EXPECT_TRUE(t.ok()) << t.status();
  return *std::move(t);
}

TEST(ChatTemplateTest, Phi3) {
  auto tok = Phi3GemmaTokenizer(R"({"eos_token":"<|endoftext|>"})");
  Example ex = Chat(
      {{Role::kSystem, "S"}, {Role::kUser, "hi"}, {Role::kAssistant, "yo"}});
  Expect want;
  want.Tok(kSystemTok, false).Text("\nS", false).Tok(kEndTok, false);
  want.Text("\n", false);
  want.Tok(kUserTok, false).Text("\nhi", false).Tok(kEndTok, false);
  want.Text("\n", false);
  want.Tok(kAssistantTok, false).Text("\n", false).Text("yo", true);
  want.Tok(kEndTok, true).Text("\n", false).Tok(kEndOfText, false);
  ExpectTokens(TokenizeExample(ex, ChatTemplate::kPhi3, *tok), want);
}

TEST(ChatTemplateTest, GemmaTrimsAndNamesTheModelTurn) {
  auto tok = Phi3GemmaTokenizer(
      R"({"bos_token":"<bos>","eos_token":"<|endoftext|>"})");
  Example ex = Chat({{Role::kUser, " hi\n"},
                     {Role::kAssistant, " yo "},
                     {Role::kUser, "q"},
                     {Role::kAssistant, "a"}});
  ex.messages[1].trainable = false;
  Expect want;
  want.Tok(kGemmaBos, false);
  want.Tok(kStartOfTurn, false).Text("user\nhi", false);
  want.Tok(kEndOfTurn, false).Text("\n", false);
  want.Tok(kStartOfTurn, false).Text("model\nyo", false);
  want.Tok(kEndOfTurn, false).Text("\n", false);
  want.Tok(kStartOfTurn, false).Text("user\nq", false);
  want.Tok(kEndOfTurn, false).Text("\n", false);
  want.Tok(kStartOfTurn, false).Text("model\n", false).Text("a", true);
  want.Tok(kEndOfTurn, true).Text("\n", false);
  ExpectTokens(TokenizeExample(ex, ChatTemplate::kGemma, *tok), want);

  // What Gemma's own template refuses.
  EXPECT_THAT(TokenizeExample(Chat({{Role::kSystem, "S"}, {Role::kUser, "x"}}),
                              ChatTemplate::kGemma, *tok)
                  .status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 7: messages[0]: the gemma template "
                                 "has no system role")));
  EXPECT_THAT(TokenizeExample(Chat({{Role::kUser, "x"}, {Role::kUser, "y"}}),
                              ChatTemplate::kGemma, *tok)
                  .status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("messages[1]: gemma template needs user and "
                                 "assistant to alternate")));
  // The control tokens come from the tokenizer.
  EXPECT_THAT(TokenizeExample(ex, ChatTemplate::kGemma,
                              *ByteLevelTokenizer(R"({"bos_token":"<s>"})"))
                  .status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("<start_of_turn>")));
}

TEST(ResolveChatTemplateTest, NamesAndAuto) {
  TokenizerConfig c;
  EXPECT_EQ(*ResolveChatTemplate("llama2", c), ChatTemplate::kLlama2);
  EXPECT_THAT(ResolveChatTemplate("vicuna", c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown \"vicuna\"")));
  EXPECT_THAT(ResolveChatTemplate("auto", c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("has no chat_template")));
  c.chat_template =
      "{% for message in messages %}{{'<|im_start|>' + message['role']}}";
  EXPECT_EQ(*ResolveChatTemplate("auto", c), ChatTemplate::kChatML);
  c.chat_template =
      "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>' }}";
  EXPECT_EQ(*ResolveChatTemplate("auto", c), ChatTemplate::kLlama3);
  c.chat_template = "{{ bos_token + '[INST] ' + content + ' [/INST]' }}";
  EXPECT_EQ(*ResolveChatTemplate("auto", c), ChatTemplate::kLlama2);
  c.chat_template = "{{ '### Instruction:\\n' + content }}";
  EXPECT_EQ(*ResolveChatTemplate("auto", c), ChatTemplate::kAlpaca);
  c.chat_template = "{{ '<start_of_turn>' + role }}";
  EXPECT_EQ(*ResolveChatTemplate("auto", c), ChatTemplate::kGemma);
  c.chat_template =
      "{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}"
      "{{ '<|assistant|>\\n' }}";
  EXPECT_EQ(*ResolveChatTemplate("auto", c), ChatTemplate::kPhi3);
  EXPECT_EQ(*ResolveChatTemplate("gemma", TokenizerConfig()),
            ChatTemplate::kGemma);
  EXPECT_EQ(*ResolveChatTemplate("phi3", TokenizerConfig()),
            ChatTemplate::kPhi3);
  c.chat_template = "{{ '<|turn|>' + role }}";
  EXPECT_THAT(ResolveChatTemplate("auto", c).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("name one explicitly")));
}

}  // namespace
}  // namespace ftune::train

namespace ftune::train {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;
using namespace ::ftune::train::testing;  // NOLINT

// A generation prompt is what training puts before the answer: for every
// template, TokenizePrompt of the conversation without its last assistant
// message is a prefix of TokenizeExample of the whole conversation, and the
// next token is the answer's first trained token.
TEST(TokenizePromptTest, EveryTemplateStopsWhereTheAnswerStarts) {
  struct Case {
    ChatTemplate t;
    std::unique_ptr<BpeTokenizer> tok;
    int32_t end_of_turn;
  };
  std::vector<Case> cases;
  cases.push_back({ChatTemplate::kChatML,
                   ByteLevelTokenizer(R"({"eos_token":"<|im_end|>"})"),
                   kImEnd});
  cases.push_back({ChatTemplate::kLlama3,
                   ByteLevelTokenizer(R"({"eos_token":"<|eot_id|>"})"),
                   kEotId});
  cases.push_back(
      {ChatTemplate::kLlama2,
       ByteLevelTokenizer(R"({"bos_token":"<s>","eos_token":"</s>"})"), kEos});
  cases.push_back(
      {ChatTemplate::kAlpaca,
       ByteLevelTokenizer(
           R"({"bos_token":"<s>","eos_token":"</s>","add_bos_token":true})"),
       kEos});
  cases.push_back({ChatTemplate::kPhi3,
                   Phi3GemmaTokenizer(R"({"eos_token":"<|endoftext|>"})"),
                   kEndTok});
  cases.push_back({ChatTemplate::kGemma,
                   Phi3GemmaTokenizer(
                       R"({"bos_token":"<bos>","eos_token":"<|endoftext|>"})"),
                   kEndOfTurn});
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(ChatTemplateName(c.t)));
    Example full = Chat({{Role::kUser, "hi"},
                         {Role::kAssistant, "yo"},
                         {Role::kUser, "more"},
                         {Role::kAssistant, "ok"}});
    if (c.t != ChatTemplate::kLlama2 && c.t != ChatTemplate::kGemma)
      full.messages.insert(full.messages.begin(), {Role::kSystem, "S", true});
    Example prompt = full;
    prompt.messages.pop_back();
    ASSERT_OK_AND_ASSIGN(TokenizedExample want,
                         TokenizeExample(full, c.t, *c.tok));
    ASSERT_OK_AND_ASSIGN(std::vector<int32_t> got,
                         TokenizePrompt(prompt, c.t, *c.tok));
    ASSERT_LT(got.size(), want.ids.size());
    EXPECT_EQ(got, std::vector<int32_t>(want.ids.begin(),
                                        want.ids.begin() + got.size()));
    EXPECT_EQ(want.loss_mask[got.size()], 1) << "the answer starts here";
    if (!got.empty()) {
      EXPECT_EQ(want.loss_mask[got.size() - 1], 0);
    }
    // The turn's end is an end token of a messages completion.
    std::vector<int32_t> ends =
        CompletionEndTokens(DatasetFormat::kMessages, c.t, *c.tok);
    EXPECT_THAT(ends, ::testing::Contains(c.end_of_turn));
    EXPECT_THAT(ends, ::testing::Contains(c.tok->eos_id()));
  }
}

TEST(TokenizePromptTest, PromptCompletionAndBadConversations) {
  auto tok = ByteLevelTokenizer(
      R"({"bos_token":"<s>","eos_token":"</s>","add_bos_token":true})");
  Example pc;
  pc.format = DatasetFormat::kPromptCompletion;
  pc.prompt = "Q: 2+2?";
  pc.completion = "4";
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> got,
                       TokenizePrompt(pc, ChatTemplate::kChatML, *tok));
  std::vector<int32_t> want = {kBos};
  for (int32_t id : Bytes("Q: 2+2?")) want.push_back(id);
  EXPECT_EQ(got, want);
  EXPECT_EQ(CompletionEndTokens(DatasetFormat::kPromptCompletion,
                                ChatTemplate::kChatML, *tok),
            std::vector<int32_t>{kEos});

  Example ends_with_answer =
      Chat({{Role::kUser, "a"}, {Role::kAssistant, "b"}});
  EXPECT_THAT(
      TokenizePrompt(ends_with_answer, ChatTemplate::kChatML, *tok).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("must end with a user")));
}

}  // namespace
}  // namespace ftune::train
