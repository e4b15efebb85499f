#include "cache/block_pool.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::cache {
namespace {

using ::testing::ElementsAre;

std::vector<int32_t> Tokens(int32_t first, int32_t n) {
  std::vector<int32_t> t(n);
  for (int32_t i = 0; i < n; ++i) t[i] = first + i;
  return t;
}

TEST(FreeBlockQueueTest, RemovesFromTheMiddleAndKeepsOrder) {
  FreeBlockQueue q(5);
  EXPECT_THAT(q.ToVector(), ElementsAre(0, 1, 2, 3, 4));
  q.Remove(2);
  q.Remove(0);
  EXPECT_THAT(q.ToVector(), ElementsAre(1, 3, 4));
  q.PushBack(2);
  EXPECT_EQ(q.PopFront(), 1);
  q.Remove(4);
  EXPECT_THAT(q.ToVector(), ElementsAre(3, 2));
  EXPECT_EQ(q.size(), 2);
  EXPECT_FALSE(q.Contains(4));
}

TEST(BlockPoolTest, AllocatesFromTheHeadWithRefCountOne) {
  BlockPool pool(4, 2);
  auto ids = pool.Allocate(3);
  ASSERT_TRUE(ids.has_value());
  EXPECT_THAT(*ids, ElementsAre(0, 1, 2));
  EXPECT_EQ(pool.num_used(), 3);
  EXPECT_EQ(pool.num_free(), 1);
  for (BlockId id : *ids) EXPECT_EQ(pool.ref_count(id), 1);
}

TEST(BlockPoolTest, AllocationThatDoesNotFitChangesNothing) {
  BlockPool pool(4, 2);
  ASSERT_TRUE(pool.Allocate(3).has_value());
  EXPECT_FALSE(pool.Allocate(2).has_value());
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_THAT(pool.free_queue().ToVector(), ElementsAre(3));
}

TEST(BlockPoolTest, FreedBlocksJoinTheTailInTheOrderGiven) {
  BlockPool pool(4, 2);
  auto ids = *pool.Allocate(4);
  pool.Unref({ids[2], ids[0]});
  pool.Unref({ids[3]});
  EXPECT_THAT(pool.free_queue().ToVector(), ElementsAre(2, 0, 3));
  EXPECT_THAT(*pool.Allocate(2), ElementsAre(2, 0));
}

TEST(BlockPoolTest, SharedBlockIsFreeOnlyAfterTheLastReference) {
  BlockPool pool(2, 2);
  auto ids = *pool.Allocate(1);
  pool.Ref(ids[0]);
  EXPECT_EQ(pool.ref_count(ids[0]), 2);
  pool.Unref(ids);
  EXPECT_EQ(pool.num_free(), 1);
  pool.Unref(ids);
  EXPECT_EQ(pool.num_free(), 2);
}

TEST(BlockPoolTest, CachedFreeBlockIsFoundAndLeavesTheMiddleOfTheQueueOnHit) {
  BlockPool pool(4, 2);
  auto ids = *pool.Allocate(4);
  const auto t = Tokens(10, 2);
  pool.MarkCached(ids[1], /*hash=*/77, /*parent=*/5, t);
  pool.Unref({ids[0], ids[1], ids[2]});
  EXPECT_THAT(pool.free_queue().ToVector(), ElementsAre(0, 1, 2));
  auto hit = pool.FindCached(77, 5, t);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(*hit, ids[1]);
  pool.Ref(*hit);
  EXPECT_THAT(pool.free_queue().ToVector(), ElementsAre(0, 2));
  EXPECT_EQ(pool.ref_count(ids[1]), 1);
}

TEST(BlockPoolTest, LookupRejectsWrongTokensOrParentEvenWithTheSameHash) {
  BlockPool pool(2, 2);
  auto ids = *pool.Allocate(1);
  pool.MarkCached(ids[0], 77, 5, Tokens(10, 2));
  EXPECT_TRUE(pool.FindCached(77, 5, Tokens(10, 2)).has_value());
  EXPECT_FALSE(pool.FindCached(77, 6, Tokens(10, 2)).has_value());
  EXPECT_FALSE(pool.FindCached(77, 5, Tokens(11, 2)).has_value());
  EXPECT_FALSE(pool.FindCached(78, 5, Tokens(10, 2)).has_value());
}

TEST(BlockPoolTest, EvictsLeastRecentlyFreedCachedBlockFirst) {
  BlockPool pool(3, 1);
  auto ids = *pool.Allocate(3);
  for (int i = 0; i < 3; ++i) pool.MarkCached(ids[i], 100 + i, 0, {i});
  pool.Unref({ids[2], ids[0], ids[1]});  // free order: 2, 0, 1
  EXPECT_EQ(pool.num_cached(), 3);
  EXPECT_THAT(*pool.Allocate(1), ElementsAre(2));
  EXPECT_EQ(pool.num_evictions(), 1);
  EXPECT_FALSE(pool.FindCached(102, 0, {2}).has_value());
  EXPECT_TRUE(pool.FindCached(100, 0, {0}).has_value());
  EXPECT_TRUE(pool.FindCached(101, 0, {1}).has_value());
}

TEST(BlockPoolTest, SecondBlockWithTheSameHashStaysUncached) {
  BlockPool pool(2, 1);
  auto ids = *pool.Allocate(2);
  pool.MarkCached(ids[0], 9, 0, {4});
  pool.MarkCached(ids[1], 9, 0, {4});
  EXPECT_TRUE(pool.IsCached(ids[0]));
  EXPECT_FALSE(pool.IsCached(ids[1]));
  EXPECT_EQ(*pool.FindCached(9, 0, {4}), ids[0]);
}

}  // namespace
}  // namespace kvserve::cache
