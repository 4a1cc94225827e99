// TextJsonlSource (raw JSONL -> rows through ftune_text) and the spec's
// "data" section. Plain C++: no LibTorch headers.
#include "worker/train/text_data.h"

#include <fstream>

#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/worker/train/text/test_tokenizers.h"

namespace ftune::train {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::HasSubstr;

TEST(DataSpecTest, DefaultsAndErrorsNameTheField) {
  const std::string base =
      R"({"model_dir":"m","train_data":"t.jsonl","output_dir":"o")";
  ASSERT_OK_AND_ASSIGN(TrainSpec s, ParseTrainSpec(base + "}"));
  EXPECT_EQ(s.data.format, "text");
  EXPECT_EQ(s.data.chat_template, "auto");
  EXPECT_EQ(s.data.overlength, "truncate");
  EXPECT_EQ(s.data.validation_split, 0);
  ASSERT_OK_AND_ASSIGN(
      s, ParseTrainSpec(base +
                        R"(,"data":{"format":"pretokenized",)"
                        R"("chat_template":"llama3","overlength":"drop"}})"));
  EXPECT_EQ(s.data.format, "pretokenized");
  EXPECT_EQ(s.data.chat_template, "llama3");
  EXPECT_EQ(s.data.overlength, "drop");

  struct Case {
    std::string data;
    std::string want;
  } cases[] = {
      {R"("data":{"format":"csv"})", "data.format"},
      {R"("data":{"chat_template":"vicuna"})", "data.chat_template"},
      {R"("data":{"overlength":"wrap"})", "data.overlength"},
      {R"("data":{"validation_split":1.0})", "data.validation_split"},
      {R"("data":{"shuffle":true})", "data.shuffle"},
      {R"("data":{"validation_split":0.1},"validation_data":"v.jsonl")",
       "data.validation_split"},
      {R"("data":{"validation_split":0.1,"format":"pretokenized"})",
       "data.validation_split"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParseTrainSpec(base + "," + c.data + "}"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.want)))
        << c.data;
  }
  // eval_every_steps is satisfied by a split as well as by a file.
  EXPECT_OK(ParseTrainSpec(base +
                           R"(,"data":{"validation_split":0.25},)"
                           R"("hyperparameters":{"eval_every_steps":5}})")
                .status());
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
