// The page walks every List* rpc shares (server/rpc/pagination.h): walking
// all pages returns every item once, in order, whatever the page size and
// filter, and a token only fits the filters it was made for.
#include "server/rpc/pagination.h"

#include <optional>
#include <string>
#include <vector>

#include "ftune/v1/model.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace ftune::server::rpc {
namespace {

using ::testing::ElementsAreArray;

// Walks every page of `names` (sorted), keeping those `keep` accepts.
std::vector<std::string> WalkKeyset(const std::vector<std::string>& names,
                                    int page_size, bool (*keep)(int)) {
  std::vector<std::string> seen;
  std::optional<std::string> after;
  for (int pages = 0; pages < 100; ++pages) {
    google::protobuf::RepeatedPtrField<v1::Model> page;
    absl::StatusOr<std::optional<std::string>> next = KeysetPage(
        names, after, page_size, [](const std::string& n) { return n; },
        [&](const std::string& n) -> absl::StatusOr<std::optional<v1::Model>> {
          if (!keep(static_cast<int>(n.back() - '0'))) return std::nullopt;
          v1::Model m;
          m.set_name(n);
          return m;
        },
        &page);
    EXPECT_TRUE(next.ok()) << next.status();
    EXPECT_LE(page.size(), page_size);
    for (const v1::Model& m : page) seen.push_back(m.name());
    if (!next.ok() || !next->has_value()) return seen;
    EXPECT_FALSE(page.empty());
    after = **next;
  }
  ADD_FAILURE() << "no last page";
  return seen;
}

TEST(KeysetPageTest, WalkingAllPagesReturnsEveryKeptItemOnceInOrder) {
  const std::vector<std::string> names = {"m0", "m1", "m2", "m3", "m4",
                                          "m5", "m6", "m7", "m8", "m9"};
  auto all = [](int) { return true; };
  auto even = [](int i) { return i % 2 == 0; };
  for (int size : {1, 2, 3, 9, 10, 11}) {
    EXPECT_THAT(WalkKeyset(names, size, all), ElementsAreArray(names))
        << "page size " << size;
    EXPECT_THAT(WalkKeyset(names, size, even),
                ElementsAreArray({"m0", "m2", "m4", "m6", "m8"}))
        << "page size " << size;
  }
}

TEST(KeysetPageTest, NoNextPageWhenOnlyFilteredItemsFollow) {
  const std::vector<std::string> names = {"m0", "m1", "m3"};
  google::protobuf::RepeatedPtrField<v1::Model> page;
  absl::StatusOr<std::optional<std::string>> next = KeysetPage(
      names, std::optional<std::string>(), /*page_size=*/1,
      [](const std::string& n) { return n; },
      [](const std::string& n) -> absl::StatusOr<std::optional<v1::Model>> {
        if (n != "m0") return std::nullopt;
        v1::Model m;
        m.set_name(n);
        return m;
      },
      &page);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(page.size(), 1);
  EXPECT_FALSE(next->has_value());
}

TEST(KeysetPageTest, AConversionErrorEndsTheWalk) {
  const std::vector<std::string> names = {"m0", "m1"};
  google::protobuf::RepeatedPtrField<v1::Model> page;
  absl::StatusOr<std::optional<std::string>> next = KeysetPage(
      names, std::optional<std::string>(), /*page_size=*/10,
      [](const std::string& n) { return n; },
      [](const std::string&) -> absl::StatusOr<std::optional<v1::Model>> {
        return absl::InternalError("broken row");
      },
      &page);
  EXPECT_EQ(next.status().code(), absl::StatusCode::kInternal);
}

struct Record {
  int64_t sequence = 0;
};

// A store of records with sequences 1..n, read as the store does: up to
// `limit` after a sequence.
absl::StatusOr<std::vector<Record>> ReadAfter(int64_t n, int64_t after,
                                              int limit) {
  std::vector<Record> out;
  for (int64_t s = after + 1; s <= n && static_cast<int>(out.size()) < limit;
       ++s) {
    out.push_back({s});
  }
  return out;
}

TEST(SequencePageTest, WalkingAllPagesReturnsEveryKeptRecordOnceInOrder) {
  for (int size : {1, 2, 3, 10, 11}) {
    for (int max_batch : {1, 4, 100}) {
      std::vector<int64_t> seen;
      std::string token;
      for (int pages = 0; pages < 50; ++pages) {
        absl::StatusOr<std::string> cursor = DecodePageToken(token, "seq");
        ASSERT_TRUE(cursor.ok()) << cursor.status();
        absl::StatusOr<int64_t> after =
            SequenceCursor(*cursor, /*after_sequence=*/2);
        ASSERT_TRUE(after.ok()) << after.status();
        google::protobuf::RepeatedPtrField<v1::Model> page;
        absl::StatusOr<std::string> next = SequencePage(
            *after, size, max_batch, "seq",
            [](int64_t from, int limit) { return ReadAfter(10, from, limit); },
            [](const Record& r) -> std::optional<v1::Model> {
              if (r.sequence % 3 == 0) return std::nullopt;
              v1::Model m;
              m.set_name(absl::StrCat(r.sequence));
              return m;
            },
            &page);
        ASSERT_TRUE(next.ok()) << next.status();
        EXPECT_LE(page.size(), size);
        for (const v1::Model& m : page) {
          seen.push_back(std::stoll(m.name()));
        }
        if (next->empty()) break;
        token = *next;
      }
      EXPECT_THAT(seen, ElementsAreArray({4, 5, 7, 8, 10}))
          << "page size " << size << ", batches of " << max_batch;
    }
  }
}

TEST(SequencePageTest, AMalformedCursorIsRefused) {
  EXPECT_EQ(SequenceCursor("x", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(OffsetPageTest, WalkingAllPagesReturnsEveryItemOnce) {
  const std::vector<int> items = {5, 3, 8, 1, 9, 2, 7};
  for (int size : {1, 2, 3, 7, 8}) {
    std::vector<int> seen;
    std::string token;
    for (int pages = 0; pages < 20; ++pages) {
      std::string next;
      ASSERT_OK(OffsetPage(items, size, token, "ints", &next,
                           [&](int i) { seen.push_back(i); }));
      if (next.empty()) break;
      token = next;
    }
    EXPECT_THAT(seen, ElementsAreArray(items)) << "page size " << size;
  }
}

TEST(OffsetPageTest, ATokenFitsOnlyItsOwnFilters) {
  const std::vector<int> items = {1, 2, 3};
  std::string next;
  ASSERT_OK(OffsetPage(items, 1, "", "ints;odd", &next, [](int) {}));
  ASSERT_FALSE(next.empty());
  std::string unused;
  EXPECT_EQ(OffsetPage(items, 1, next, "ints;even", &unused, [](int) {}).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ftune::server::rpc
