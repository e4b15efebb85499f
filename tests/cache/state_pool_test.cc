#include "cache/state_pool.h"

#include "gtest/gtest.h"

namespace kvserve::cache {
namespace {

TEST(StatePoolTest, SlotsAreZeroedAndBounded) {
  StatePool pool(2, 3, 0);
  auto a = pool.AllocateSlot();
  auto b = pool.AllocateSlot();
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(*a, 0);
  EXPECT_EQ(*b, 1);
  EXPECT_FALSE(pool.AllocateSlot().has_value());
  pool.Slot(*a)[1] = 5.0f;
  pool.FreeSlot(*a);
  auto c = pool.AllocateSlot();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(*c, 0);
  EXPECT_EQ(pool.Slot(*c)[1], 0.0f);
}

TEST(StatePoolTest, CheckpointRoundTripsAndEvictsLeastRecentlyUsed) {
  StatePool pool(1, 2, 2);
  const int32_t slot = *pool.AllocateSlot();
  auto save = [&](BlockHash h, float v) {
    pool.Slot(slot)[0] = v;
    pool.Slot(slot)[1] = -v;
    pool.SaveCheckpoint(h, slot);
  };
  save(1, 1.0f);
  save(2, 2.0f);
  ASSERT_TRUE(pool.RestoreCheckpoint(1, slot));  // 1 is now most recently used
  EXPECT_EQ(pool.Slot(slot)[0], 1.0f);
  EXPECT_EQ(pool.Slot(slot)[1], -1.0f);
  save(3, 3.0f);  // evicts 2
  EXPECT_TRUE(pool.HasCheckpoint(1));
  EXPECT_FALSE(pool.HasCheckpoint(2));
  EXPECT_TRUE(pool.HasCheckpoint(3));
  EXPECT_EQ(pool.num_checkpoint_evictions(), 1);
  EXPECT_FALSE(pool.RestoreCheckpoint(2, slot));
}

TEST(StatePoolTest, ZeroCheckpointBudgetStoresNothing) {
  StatePool pool(1, 2, 0);
  const int32_t slot = *pool.AllocateSlot();
  pool.SaveCheckpoint(7, slot);
  EXPECT_FALSE(pool.HasCheckpoint(7));
}

}  // namespace
}  // namespace kvserve::cache
