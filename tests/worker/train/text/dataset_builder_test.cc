#include "worker/train/text/dataset_builder.h"

#include <algorithm>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/worker/train/text/test_tokenizers.h"

namespace ftune::train {
namespace {

using ::ftune::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace ::ftune::train::testing;  // NOLINT

constexpr int32_t X = kIgnoreLabel;

TokenizedExample Ex(std::vector<int32_t> ids, std::vector<uint8_t> mask) {
  TokenizedExample t;
  t.ids = std::move(ids);
  t.loss_mask = std::move(mask);
  return t;
}

TEST(PackExamplesTest, LabelsPositionsSegmentsByHand) {
  std::vector<TokenizedExample> exs = {Ex({10, 11, 12}, {0, 1, 1}),
                                       Ex({20, 21}, {0, 1}),
                                       Ex({30, 31, 32, 33}, {0, 0, 1, 1})};
  DatasetStats stats;
  std::vector<PackedSequence> rows = PackExamples(
      exs, 6, /*packing=*/true, OverlengthPolicy::kTruncate, &stats);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_THAT(rows[0].input_ids, ElementsAre(10, 11, 12, 20, 21));
  EXPECT_THAT(rows[0].labels, ElementsAre(11, 12, X, 21, X));
  EXPECT_THAT(rows[0].position_ids, ElementsAre(0, 1, 2, 0, 1));
  EXPECT_THAT(rows[0].segment_ids, ElementsAre(0, 0, 0, 1, 1));
  EXPECT_THAT(rows[1].input_ids, ElementsAre(30, 31, 32, 33));
  EXPECT_THAT(rows[1].labels, ElementsAre(X, 32, 33, X));
  EXPECT_THAT(rows[1].position_ids, ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(rows[1].segment_ids, ElementsAre(0, 0, 0, 0));
  EXPECT_EQ(stats.rows, 2);
  EXPECT_EQ(stats.total_tokens, 9);
  EXPECT_EQ(stats.trained_tokens, 5);
  EXPECT_EQ(stats.truncated, 0);

  DatasetStats unpacked_stats;
  std::vector<PackedSequence> unpacked = PackExamples(
      exs, 6, /*packing=*/false, OverlengthPolicy::kTruncate, &unpacked_stats);
  ASSERT_EQ(unpacked.size(), 3u);
  EXPECT_THAT(unpacked[1].labels, ElementsAre(21, X));
  EXPECT_THAT(unpacked[1].segment_ids, ElementsAre(0, 0));
}

TEST(PackExamplesTest, PackedSegmentEqualsTheExampleAlone) {
  // What the trainer sees for B (ids, labels, positions) is the same whether
  // B is packed after A or is alone in its row.
  TokenizedExample a = Ex({10, 11, 12}, {0, 1, 1});
  TokenizedExample b = Ex({20, 21, 22, 23}, {0, 0, 1, 1});
  DatasetStats s1, s2;
  std::vector<PackedSequence> packed =
      PackExamples({a, b}, 16, true, OverlengthPolicy::kTruncate, &s1);
  std::vector<PackedSequence> alone =
      PackExamples({b}, 16, true, OverlengthPolicy::kTruncate, &s2);
  ASSERT_EQ(packed.size(), 1u);
  ASSERT_EQ(alone.size(), 1u);
  auto tail = [](const std::vector<int32_t>& v) {
    return std::vector<int32_t>(v.begin() + 3, v.end());
  };
  EXPECT_EQ(tail(packed[0].input_ids), alone[0].input_ids);
  EXPECT_EQ(tail(packed[0].labels), alone[0].labels);
  EXPECT_EQ(tail(packed[0].position_ids), alone[0].position_ids);
  EXPECT_THAT(tail(packed[0].segment_ids), ElementsAre(1, 1, 1, 1));
}

TEST(PackExamplesTest, OverlengthTruncateAndDropAreCounted) {
  std::vector<TokenizedExample> exs = {
      Ex({30, 31, 32, 33}, {0, 0, 1, 1}),  // 4 > 3
      Ex({40, 41, 42, 43}, {0, 0, 0, 1}),  // 4 > 3, only target is cut off
      Ex({50, 51}, {0, 1})};
  DatasetStats t;
  std::vector<PackedSequence> rows =
      PackExamples(exs, 3, true, OverlengthPolicy::kTruncate, &t);
  EXPECT_EQ(t.truncated, 2);
  EXPECT_EQ(t.dropped_no_target, 1);
  EXPECT_EQ(t.dropped_overlength, 0);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_THAT(rows[0].input_ids, ElementsAre(30, 31, 32));
  EXPECT_THAT(rows[0].labels, ElementsAre(X, 32, X));
  EXPECT_THAT(rows[1].input_ids, ElementsAre(50, 51));
  EXPECT_EQ(t.trained_tokens, 2);

  DatasetStats d;
  rows = PackExamples(exs, 3, true, OverlengthPolicy::kDrop, &d);
  EXPECT_EQ(d.dropped_overlength, 2);
  EXPECT_EQ(d.truncated, 0);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_THAT(rows[0].input_ids, ElementsAre(50, 51));
}

TEST(PackExamplesTest, PackingNeverSplitsOrReordersExamples) {
  std::mt19937 rng(123);
  std::vector<TokenizedExample> exs;
  for (int i = 0; i < 300; ++i) {
    const int len = 1 + static_cast<int>(rng() % 40);
    TokenizedExample e;
    for (int k = 0; k < len; ++k) {
      e.ids.push_back(i * 100 + k);
      e.loss_mask.push_back(k > 0 && rng() % 2 ? 1 : 0);
    }
    e.loss_mask.back() = len > 1 ? 1 : 0;
    exs.push_back(e);
  }
  DatasetStats stats;
  const int max_len = 50;
  std::vector<PackedSequence> rows =
      PackExamples(exs, max_len, true, OverlengthPolicy::kTruncate, &stats);
  // Reassemble the examples from the rows' segments.
  std::vector<std::vector<int32_t>> seen;
  for (const PackedSequence& r : rows) {
    ASSERT_LE(r.input_ids.size(), static_cast<size_t>(max_len));
    ASSERT_EQ(r.labels.size(), r.input_ids.size());
    for (size_t i = 0; i < r.input_ids.size(); ++i) {
      if (i == 0 || r.segment_ids[i] != r.segment_ids[i - 1]) {
        EXPECT_EQ(r.segment_ids[i], i == 0 ? 0 : r.segment_ids[i - 1] + 1);
        EXPECT_EQ(r.position_ids[i], 0);
        seen.emplace_back();
      } else {
        EXPECT_EQ(r.position_ids[i], r.position_ids[i - 1] + 1);
      }
      seen.back().push_back(r.input_ids[i]);
      const bool last_of_segment = i + 1 == r.input_ids.size() ||
                                   r.segment_ids[i + 1] != r.segment_ids[i];
      if (last_of_segment) {
        EXPECT_EQ(r.labels[i], X);
      } else if (r.labels[i] != X) {
        EXPECT_EQ(r.labels[i], r.input_ids[i + 1]);
      }
    }
  }
  std::vector<std::vector<int32_t>> want;
  for (const TokenizedExample& e : exs) {
    if (e.ids.size() > 1) want.push_back(e.ids);  // 1-token ones have no target
  }
  EXPECT_EQ(seen, want);
  EXPECT_EQ(stats.dropped_no_target,
            static_cast<int64_t>(exs.size() - want.size()));
  // Greedy: no row could have taken the next row's first example.
  for (size_t r = 0; r + 1 < rows.size(); ++r) {
    const int32_t first_len = static_cast<int32_t>(std::count(
        rows[r + 1].segment_ids.begin(), rows[r + 1].segment_ids.end(), 0));
    EXPECT_GT(static_cast<int32_t>(rows[r].input_ids.size()) + first_len,
              max_len);
  }
}

TEST(SeededPermutationTest, DeterministicPermutation) {
  std::vector<size_t> a = SeededPermutation(100, 42);
  EXPECT_EQ(a, SeededPermutation(100, 42));
  EXPECT_NE(a, SeededPermutation(100, 43));
  std::vector<size_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_TRUE(SeededPermutation(0, 1).empty());
}

std::string TextJsonl(int n) {
  std::string out;
  for (int i = 0; i < n; ++i)
    absl::StrAppend(&out, "{\"text\":\"example ", i, "\"}\n");
  return out;
}

// The first byte-token run of each segment identifies the example: "example N".
std::vector<std::string> RowTexts(const std::vector<PackedSequence>& rows) {
  std::vector<std::string> out;
  for (const PackedSequence& r : rows) {
    std::string cur;
    for (size_t i = 0; i < r.input_ids.size(); ++i) {
      if (r.input_ids[i] == kEos) {
        out.push_back(cur);
        cur.clear();
      } else {
        cur.push_back(static_cast<char>(r.input_ids[i]));
      }
    }
  }
  return out;
}

TEST(BuildDatasetTest, DeterministicShuffleAndValidationSplit) {
  auto tok = ByteLevelTokenizer(R"({"eos_token":"</s>"})");
  DatasetOptions opts;
  opts.max_seq_length = 64;
  opts.seed = 7;
  opts.validation_split = 0.2;
  ASSERT_OK_AND_ASSIGN(Dataset a,
                       BuildDatasetFromText(TextJsonl(50), "", *tok, opts));
  ASSERT_OK_AND_ASSIGN(Dataset b,
                       BuildDatasetFromText(TextJsonl(50), "", *tok, opts));
  EXPECT_EQ(a.format, DatasetFormat::kText);
  EXPECT_EQ(a.train_stats.examples, 40);
  EXPECT_EQ(a.validation_stats.examples, 10);
  EXPECT_EQ(RowTexts(a.train), RowTexts(b.train));
  EXPECT_EQ(RowTexts(a.validation), RowTexts(b.validation));
  // Train and validation are disjoint and together are every example.
  std::set<std::string> all;
  for (const auto& s : RowTexts(a.train)) all.insert(s);
  for (const auto& s : RowTexts(a.validation)) EXPECT_EQ(all.count(s), 0u) << s;
  for (const auto& s : RowTexts(a.validation)) all.insert(s);
  EXPECT_EQ(all.size(), 50u);
  // Shuffled (not file order), and another seed gives another order.
  std::vector<std::string> train_texts = RowTexts(a.train);
  EXPECT_FALSE(std::is_sorted(train_texts.begin(), train_texts.end(),
                              [](const std::string& x, const std::string& y) {
                                return std::stoi(x.substr(8)) <
                                       std::stoi(y.substr(8));
                              }));
  opts.seed = 8;
  ASSERT_OK_AND_ASSIGN(Dataset c,
                       BuildDatasetFromText(TextJsonl(50), "", *tok, opts));
  EXPECT_NE(RowTexts(c.train), train_texts);
  // Every row is packed up to the limit where possible: 40 examples of
  // 10-11 tokens in rows of at most 64 tokens.
  for (const PackedSequence& r : a.train) EXPECT_LE(r.input_ids.size(), 64u);
  EXPECT_LT(a.train.size(), 10u);
}

TEST(BuildDatasetTest, ValidationFileAndErrors) {
  auto tok = ByteLevelTokenizer(R"({"eos_token":"</s>"})");
  DatasetOptions opts;
  opts.max_seq_length = 32;
  ASSERT_OK_AND_ASSIGN(
      Dataset d, BuildDatasetFromText(TextJsonl(5), TextJsonl(3), *tok, opts));
  EXPECT_EQ(d.validation_stats.examples, 3);
  EXPECT_THAT(RowTexts(d.validation),
              ElementsAre("example 0", "example 1", "example 2"));

  EXPECT_THAT(
      BuildDatasetFromText(
          TextJsonl(5), "{\"prompt\":\"a\",\"completion\":\"b\"}\n", *tok, opts)
          .status(),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr("validation file: format \"prompt_completion\" differs")));
  EXPECT_THAT(
      BuildDatasetFromText("{\"text\":\"a\"}\n{\"text\":7}\n", "", *tok, opts)
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("training file: line 2: text: expected a string")));
  opts.validation_split = 0.5;
  EXPECT_THAT(
      BuildDatasetFromText(TextJsonl(5), TextJsonl(3), *tok, opts).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("mutually exclusive")));
  opts.validation_split = 0;
  opts.max_seq_length = 4;
  opts.overlength = OverlengthPolicy::kDrop;
  EXPECT_THAT(BuildDatasetFromText(TextJsonl(5), "", *tok, opts).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("5 dropped as longer than 4 tokens")));
  opts.max_seq_length = 1;
  EXPECT_THAT(BuildDatasetFromText(TextJsonl(5), "", *tok, opts).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("max_seq_length")));
}

TEST(BuildDatasetTest, ChatExamplesUseTheResolvedTemplate) {
  auto tok = ByteLevelTokenizer(
      R"({"eos_token":"<|im_end|>","chat_template":"{{'<|im_start|>'}}"})");
  DatasetOptions opts;
  opts.max_seq_length = 128;
  const std::string jsonl =
      R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]})"
      "\n";
  ASSERT_OK_AND_ASSIGN(Dataset d, BuildDatasetFromText(jsonl, "", *tok, opts));
  EXPECT_EQ(d.chat_template, ChatTemplate::kChatML);
  ASSERT_EQ(d.train.size(), 1u);
  // Targets: "y", "o", <|im_end|> (predicted from the token before each).
  std::vector<int32_t> targets;
  for (int32_t l : d.train[0].labels) {
    if (l != X) targets.push_back(l);
  }
  EXPECT_THAT(targets, ElementsAre('y', 'o', kImEnd));
  EXPECT_EQ(d.train_stats.trained_tokens, 3);

  auto no_template = ByteLevelTokenizer(R"({"eos_token":"<|im_end|>"})");
  opts.chat_template = "auto";
  EXPECT_THAT(BuildDatasetFromText(jsonl, "", *no_template, opts).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no chat_template")));
}

TEST(BuildDatasetTest, ReadsFiles) {
  auto tok = ByteLevelTokenizer(R"({"eos_token":"</s>"})");
  ftune::testing::TempDir dir;
  std::ofstream(dir.Sub("train.jsonl")) << TextJsonl(4);
  DatasetOptions opts;
  opts.max_seq_length = 16;
  opts.packing = false;
  ASSERT_OK_AND_ASSIGN(Dataset d,
                       BuildDataset(dir.Sub("train.jsonl"), "", *tok, opts));
  EXPECT_EQ(d.train.size(), 4u);
  EXPECT_THAT(
      BuildDataset(dir.Sub("missing.jsonl"), "", *tok, opts).status(),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.jsonl")));
}

TEST(MakeTokenBatchTest, PadsToLongestRow) {
  PackedSequence a{{1, 2, 3}, {2, 3, X}, {0, 1, 2}, {0, 0, 0}};
  PackedSequence b{{4}, {X}, {0}, {0}};
  std::vector<PackedSequence> rows = {a, b};
  TokenBatch batch = MakeTokenBatch(rows, /*pad_id=*/9);
  EXPECT_EQ(batch.batch_size, 2);
  EXPECT_EQ(batch.seq_len, 3);
  EXPECT_THAT(batch.input_ids, ElementsAre(1, 2, 3, 4, 9, 9));
  EXPECT_THAT(batch.labels, ElementsAre(2, 3, X, X, X, X));
  EXPECT_THAT(batch.position_ids, ElementsAre(0, 1, 2, 0, 0, 0));
  EXPECT_THAT(batch.segment_ids,
              ElementsAre(0, 0, 0, 0, kPadSegment, kPadSegment));
  auto tok = ByteLevelTokenizer(R"({"eos_token":"</s>"})");
  EXPECT_EQ(PadIdFor(*tok), kEos);
  auto with_pad =
      ByteLevelTokenizer(R"({"eos_token":"</s>","pad_token":"<|endoftext|>"})");
  EXPECT_EQ(PadIdFor(*with_pad), kEndOfText);
}

}  // namespace
}  // namespace ftune::train
