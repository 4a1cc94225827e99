// TextJsonlSource (raw JSONL -> rows through ftune_text), and the chat
// templates the contract names. Plain C++: no LibTorch headers.
#include "worker/train/text_data.h"

#include <fstream>

#include "common/contract/train_spec.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/worker/train/text/test_tokenizers.h"
#include "worker/train/text/chat_template.h"

namespace ftune::train {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

// The scheduler and the trainer's spec parser accept the chat templates the
// contract lists; the text pipeline must implement every one of them.
TEST(ChatTemplateNamesTest, EveryNameTheContractListsIsImplemented) {
  ASSERT_FALSE(contract::ChatTemplateNames().empty());
  for (const std::string& name : contract::ChatTemplateNames()) {
    EXPECT_OK(ResolveChatTemplate(name, TokenizerConfig()).status()) << name;
  }
  EXPECT_FALSE(ResolveChatTemplate("vicuna", TokenizerConfig()).ok());
}

class TextJsonlSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(MakeDirs(dir_.Sub("model")));
    ASSERT_OK(WriteFileAtomically(dir_.Sub("model/tokenizer.json"),
                                  testing::ByteLevelJson({})));
    ASSERT_OK(WriteFileAtomically(dir_.Sub("model/tokenizer_config.json"),
                                  R"({"eos_token":"<|endoftext|>"})"));
    std::ofstream f(dir_.Sub("train.jsonl"));
    for (int i = 0; i < 20; ++i)
      f << nlohmann::json{{"prompt", "q" + std::to_string(i)},
                          {"completion", " a" + std::to_string(i)}}
               .dump()
        << "\n";
  }
  TextJsonlSource Source() {
    TextDataOptions o;
    o.model_dir = dir_.Sub("model");
    return TextJsonlSource(o);
  }
  ftune::testing::TempDir dir_;
};

TEST_F(TextJsonlSourceTest, ValidationSplitIsSeededAndDeterministic) {
  DataOptions o;
  o.max_seq_length = 16;
  o.packing = false;
  o.seed = 3;
  o.validation_split = 0.25;
  TextJsonlSource src = Source();
  ASSERT_OK_AND_ASSIGN(TrainingData a,
                       src.Load(dir_.Sub("train.jsonl"), "", o));
  EXPECT_EQ(a.train.stats.examples, 15);
  EXPECT_EQ(a.validation.stats.examples, 5);
  EXPECT_EQ(a.train.rows.size(), 15u);
  EXPECT_EQ(a.train.sha256.size(), 64u);
  ASSERT_OK_AND_ASSIGN(TrainingData b,
                       src.Load(dir_.Sub("train.jsonl"), "", o));
  ASSERT_EQ(a.train.rows.size(), b.train.rows.size());
  for (size_t i = 0; i < a.train.rows.size(); ++i)
    EXPECT_EQ(a.train.rows[i].input_ids, b.train.rows[i].input_ids);
  o.seed = 4;
  ASSERT_OK_AND_ASSIGN(TrainingData c,
                       src.Load(dir_.Sub("train.jsonl"), "", o));
  bool same = true;
  for (size_t i = 0; i < a.train.rows.size(); ++i)
    same = same && a.train.rows[i].input_ids == c.train.rows[i].input_ids;
  EXPECT_FALSE(same) << "another seed, another order";
}

TEST_F(TextJsonlSourceTest, ErrorsNameWhatToFix) {
  DataOptions o;
  o.max_seq_length = 64;
  TextJsonlSource src = Source();
  // Ids beyond the model's embedding.
  o.vocab_size = 100;
  EXPECT_THAT(src.Load(dir_.Sub("train.jsonl"), "", o),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("outside the model's vocab_size 100")));
  o.vocab_size = 0;
  EXPECT_THAT(
      src.Load(dir_.Sub("missing.jsonl"), "", o),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.jsonl")));
  ASSERT_OK(WriteFileAtomically(dir_.Sub("val.jsonl"),
                                "{\"prompt\":\"a\",\"completion\":\"b\"}\n"
                                "{\"prompt\":\"a\"}\n"));
  EXPECT_THAT(src.Load(dir_.Sub("train.jsonl"), dir_.Sub("val.jsonl"), o),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("val.jsonl: validation file: line 2")));
  TextDataOptions none;
  none.model_dir = dir_.Sub("no-model");
  TextJsonlSource no_tokenizer(none);
  EXPECT_THAT(no_tokenizer.Load(dir_.Sub("train.jsonl"), "", o),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-model")));
}

}  // namespace
}  // namespace ftune::train
