#include "cache/kv_cache_manager.h"

#include <map>
#include <random>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::cache {
namespace {

using ::testing::ElementsAre;

constexpr int32_t kBlockSize = 4;
constexpr int64_t kKvFloats = 6;  // one attention layer, 2 * 1 kv head * head_dim 3

CacheSpec AttentionSpec(int num_layers = 1) {
  CacheSpec spec;
  spec.block_size = kBlockSize;
  for (int i = 0; i < num_layers; ++i) spec.layers.push_back(LayerMemory::AttentionKv(1, 3));
  return spec;
}

std::unique_ptr<KvCacheManager> Make(const CacheSpec& spec, int32_t num_blocks,
                                     int32_t max_checkpoints = 0) {
  CacheOptions options;
  options.block_size = spec.block_size;
  options.budget_bytes = spec.PagedBytesPerToken() * spec.block_size * num_blocks +
                         spec.StateBytesPerSequence() * (options.max_sequences + max_checkpoints);
  options.max_state_checkpoints = max_checkpoints;
  auto m = KvCacheManager::Create(spec, options);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(*m);
}

std::vector<int32_t> Tokens(int32_t first, int32_t n) {
  std::vector<int32_t> t(n);
  for (int32_t i = 0; i < n; ++i) t[i] = first + i;
  return t;
}

TEST(KvCacheManagerTest, SizesBlocksFromTheByteBudget) {
  CacheSpec spec = AttentionSpec(2);
  CacheOptions options;
  options.block_size = kBlockSize;
  options.budget_bytes = 2 * kKvFloats * 4 * kBlockSize * 10 + 100;  // 10 blocks and change
  auto m = KvCacheManager::Create(spec, options);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->num_blocks(), 10);
  const CacheStats s = (*m)->stats();
  EXPECT_EQ(s.total_bytes[0], 10 * kBlockSize * 2 * kKvFloats * 4);
  EXPECT_EQ(s.total_bytes[1], 0);
  options.budget_bytes = 10;
  auto tiny = KvCacheManager::Create(spec, options);
  EXPECT_EQ(tiny.status().code(), absl::StatusCode::kInvalidArgument);
}

// A bf16 attention layer stores 2 bytes per value: the same budget holds twice the blocks, and the
// byte stats follow the element size.
TEST(KvCacheManagerTest, Bf16KvHoldsTwiceTheBlocksOfF32InTheSameBytes) {
  CacheSpec f32 = AttentionSpec(2);
  CacheSpec bf16 = f32;
  for (LayerMemory& layer : bf16.layers) layer.dtype = KvDtype::kBf16;
  EXPECT_EQ(f32.PagedBytesPerToken(), 2 * kKvFloats * 4);
  EXPECT_EQ(bf16.PagedBytesPerToken(), 2 * kKvFloats * 2);
  CacheOptions options;
  options.block_size = kBlockSize;
  options.budget_bytes = 2 * kKvFloats * 4 * kBlockSize * 10 + 95;  // 10 f32 blocks and change
  auto m32 = KvCacheManager::Create(f32, options);
  auto m16 = KvCacheManager::Create(bf16, options);
  ASSERT_TRUE(m32.ok() && m16.ok());
  EXPECT_EQ((*m32)->num_blocks(), 10);
  EXPECT_EQ((*m16)->num_blocks(), 20);
  EXPECT_EQ((*m16)->capacity().num_blocks, 20);
  EXPECT_TRUE((*m16)->CanEverFit(20 * kBlockSize));
  EXPECT_FALSE((*m32)->CanEverFit(20 * kBlockSize));
  auto seq = (*m16)->Begin(0);
  ASSERT_TRUE((*m16)->AllocateSlots(*seq, 5));  // 2 blocks
  EXPECT_EQ((*m16)->stats().total_bytes[0], 20 * kBlockSize * 2 * kKvFloats * 2);
  EXPECT_EQ((*m16)->stats().used_bytes[0], 2 * kBlockSize * 2 * kKvFloats * 2);
}

// Copy-on-write copies a bf16 block's bytes, all of them and only them.
TEST(KvCacheManagerTest, Bf16CopyOnWriteCopiesTheValues) {
  CacheSpec spec = AttentionSpec();
  spec.layers[0].dtype = KvDtype::kBf16;
  auto m = Make(spec, 6);
  auto parent = *m->Begin(0);
  ASSERT_TRUE(m->AllocateSlots(parent, 6));  // block 0 full, block 1 half
  for (int32_t p = 0; p < 6; ++p) {
    for (int64_t f = 0; f < kKvFloats; ++f) {
      m->LayerDataBf16(0)[m->SlotOf(parent, p) * kKvFloats + f] = static_cast<uint16_t>(p * 10 + f);
    }
  }
  auto child = *m->Fork(parent);
  ASSERT_TRUE(m->AllocateSlots(child, 7));
  ASSERT_NE(child.blocks[1], parent.blocks[1]);
  for (int32_t p = 4; p < 6; ++p) {
    for (int64_t f = 0; f < kKvFloats; ++f) {
      EXPECT_EQ(m->LayerDataBf16(0)[m->SlotOf(child, p) * kKvFloats + f], p * 10 + f);
    }
  }
  EXPECT_EQ(ParseKvDtype("bf16"), KvDtype::kBf16);
  EXPECT_EQ(ParseKvDtype("f32"), KvDtype::kF32);
  EXPECT_EQ(ParseKvDtype("fp16"), std::nullopt);
}

TEST(KvCacheManagerTest, DeclaredMemoryKindsAreAccountedSeparately) {
  CacheSpec spec;
  spec.block_size = 2;
  spec.layers = {LayerMemory::AttentionKv(2, 4), LayerMemory::MlaLatent(8, 4),
                 LayerMemory::RecurrentState(10)};
  EXPECT_EQ(spec.PagedBytesPerToken(MemoryKind::kAttentionKv), 2 * 2 * 4 * 4);
  EXPECT_EQ(spec.PagedBytesPerToken(MemoryKind::kMlaLatent), (8 + 4) * 4);
  EXPECT_EQ(spec.StateBytesPerSequence(), 10 * 4);
  auto m = Make(spec, 5);
  auto seq = m->Begin(0);
  ASSERT_TRUE(seq.has_value());
  ASSERT_TRUE(m->AllocateSlots(*seq, 3));  // 2 blocks
  const CacheStats s = m->stats();
  EXPECT_EQ(s.used_bytes[0], 2 * 2 * 64);
  EXPECT_EQ(s.used_bytes[1], 2 * 2 * 48);
  EXPECT_EQ(s.num_used_state_slots, 1);
  EXPECT_EQ(s.used_bytes[2], 40);
}

TEST(KvCacheManagerTest, AllocationIsTransactional) {
  auto m = Make(AttentionSpec(), 3);
  auto a = *m->Begin(0);
  ASSERT_TRUE(m->AllocateSlots(a, 9));  // 3 blocks
  auto b = *m->Begin(0);
  EXPECT_FALSE(m->CanAllocate(b, 1));
  EXPECT_FALSE(m->AllocateSlots(b, 1));
  EXPECT_TRUE(b.blocks.empty());
  EXPECT_EQ(b.num_slots, 0);
  EXPECT_FALSE(m->AllocateSlots(a, 13));
  EXPECT_EQ(a.num_slots, 9);
  EXPECT_EQ(a.blocks.size(), 3u);
  EXPECT_EQ(m->stats().num_used_blocks, 3);
}

TEST(KvCacheManagerTest, SlotsFollowTheBlockTable) {
  auto m = Make(AttentionSpec(), 4);
  auto filler = *m->Begin(0);
  ASSERT_TRUE(m->AllocateSlots(filler, 4));  // takes block 0
  auto seq = *m->Begin(0);
  ASSERT_TRUE(m->AllocateSlots(seq, 6));
  EXPECT_THAT(seq.blocks, ElementsAre(1, 2));
  EXPECT_EQ(m->SlotOf(seq, 0), 4);
  EXPECT_EQ(m->SlotOf(seq, 5), 9);
}

TEST(KvCacheManagerTest, ReusesCachedPrefixAndRecomputesTheLastToken) {
  auto m = Make(AttentionSpec(), 8);
  const auto prompt = Tokens(100, 10);  // 2 full blocks + 2
  auto first = *m->Begin(7);
  EXPECT_EQ(m->AttachCachedPrefix(first, prompt, 9), 0);
  ASSERT_TRUE(m->AllocateSlots(first, 10));
  m->Commit(first, prompt, 10);
  EXPECT_EQ(m->stats().num_cached_blocks, 2);

  auto second = *m->Begin(7);
  EXPECT_EQ(m->AttachCachedPrefix(second, prompt, 9), 8);
  EXPECT_THAT(second.blocks, ElementsAre(first.blocks[0], first.blocks[1]));
  EXPECT_EQ(m->pool().ref_count(first.blocks[0]), 2);
  // A prompt of exactly two blocks may reuse only the first: its last token must be computed.
  auto third = *m->Begin(7);
  EXPECT_EQ(m->AttachCachedPrefix(third, Tokens(100, 8), 7), 4);
  // Another root (salt) shares nothing.
  auto other = *m->Begin(8);
  EXPECT_EQ(m->AttachCachedPrefix(other, prompt, 9), 0);
  const CacheStats s = m->stats();
  EXPECT_EQ(s.prefix_query_tokens, 10 + 10 + 8 + 10);
  EXPECT_EQ(s.prefix_hit_tokens, 8 + 4);
}

// Admission looks before it takes: PeekCachedPrefix reports what a hit would reuse and how many of
// those blocks are free now (a hit takes them out of the free queue), and changes nothing.
TEST(KvCacheManagerTest, PeekingAtAPrefixChangesNothingAndCountsFreeHits) {
  auto m = Make(AttentionSpec(), 8);
  const auto prompt = Tokens(0, 13);
  auto first = *m->Begin(0);
  ASSERT_TRUE(m->AllocateSlots(first, 13));
  m->Commit(first, prompt, 13);
  auto holder = *m->Fork(first);  // keeps every block referenced...
  m->Free(first);
  auto second = *m->Begin(0);
  int32_t free_hits = -1;
  EXPECT_EQ(m->PeekCachedPrefix(second, prompt, 12, &free_hits), 12);
  EXPECT_EQ(free_hits, 0);  // ...so none of the hits is in the free queue
  m->Free(holder);          // now all four blocks are free (three of them cached)
  const std::vector<BlockId> free_before = m->pool().free_queue().ToVector();
  EXPECT_EQ(m->PeekCachedPrefix(second, prompt, 12, &free_hits), 12);
  EXPECT_EQ(free_hits, 3);
  EXPECT_EQ(m->pool().free_queue().ToVector(), free_before);
  EXPECT_EQ(m->stats().prefix_query_tokens, 0);
  EXPECT_EQ(m->AttachCachedPrefix(second, prompt, 12), 12);
  EXPECT_EQ(m->pool().num_free(), 8 - 3);
}

TEST(KvCacheManagerTest, FreedBlocksStayFindableUntilEvictedTailFirst) {
  auto m = Make(AttentionSpec(), 3);
  const auto prompt = Tokens(0, 12);
  auto seq = *m->Begin(0);
  ASSERT_TRUE(m->AllocateSlots(seq, 12));
  m->Commit(seq, prompt, 12);
  const std::vector<BlockId> blocks = seq.blocks;
  m->Free(seq);
  EXPECT_EQ(m->stats().num_used_blocks, 0);
  EXPECT_EQ(m->stats().num_cached_blocks, 3);
  // Tail first into the free queue: the tail block is evicted first.
  EXPECT_THAT(m->pool().free_queue().ToVector(), ElementsAre(blocks[2], blocks[1], blocks[0]));
  auto other = *m->Begin(1);
  ASSERT_TRUE(m->AllocateSlots(other, 4));
  EXPECT_THAT(other.blocks, ElementsAre(blocks[2]));
  EXPECT_EQ(m->stats().num_evictions, 1);
  // The head two blocks still serve a prefix hit.
  auto again = *m->Begin(0);
  EXPECT_EQ(m->AttachCachedPrefix(again, prompt, 11), 8);
}

// Fills every slot of a layer with a value derived from (block, position).
void WriteTokens(KvCacheManager& m, const SequenceCache& seq, int32_t from, int32_t to,
                 float base) {
  for (int32_t p = from; p < to; ++p) {
    float* slot = m.LayerData(0) + m.SlotOf(seq, p) * kKvFloats;
    for (int64_t f = 0; f < kKvFloats; ++f) slot[f] = base + p * 10 + f;
  }
}

TEST(KvCacheManagerTest, ForkSharesBlocksAndCopiesOnWriteToASharedPartialBlock) {
  auto m = Make(AttentionSpec(), 6);
  auto parent = *m->Begin(0);
  ASSERT_TRUE(m->AllocateSlots(parent, 6));  // block 0 full, block 1 half
  WriteTokens(*m, parent, 0, 6, 1000);
  auto child = *m->Fork(parent);
  EXPECT_EQ(child.blocks, parent.blocks);
  EXPECT_EQ(m->pool().ref_count(parent.blocks[1]), 2);
  // The child writes position 6, into the shared partial block: it gets a private copy.
  ASSERT_TRUE(m->AllocateSlots(child, 7));
  EXPECT_EQ(child.blocks[0], parent.blocks[0]);
  EXPECT_NE(child.blocks[1], parent.blocks[1]);
  EXPECT_EQ(m->pool().ref_count(parent.blocks[1]), 1);
  EXPECT_EQ(m->stats().num_copy_on_writes, 1);
  for (int32_t p = 4; p < 6; ++p) {
    for (int64_t f = 0; f < kKvFloats; ++f) {
      EXPECT_EQ(m->LayerData(0)[m->SlotOf(child, p) * kKvFloats + f], 1000 + p * 10 + f);
    }
  }
  WriteTokens(*m, child, 6, 7, 5000);
  WriteTokens(*m, parent, 6, 7, 9000);  // parent now owns its block alone: no copy
  ASSERT_TRUE(m->AllocateSlots(parent, 7));
  EXPECT_EQ(m->stats().num_copy_on_writes, 1);
  EXPECT_EQ(m->LayerData(0)[m->SlotOf(child, 6) * kKvFloats], 5000 + 60);
  m->Free(child);
  m->Free(parent);
  EXPECT_EQ(m->stats().num_used_blocks, 0);
}

TEST(KvCacheManagerTest, CopyOnWriteCountsTheCopyInTheTransaction) {
  auto m = Make(AttentionSpec(), 2);
  auto parent = *m->Begin(0);
  ASSERT_TRUE(m->AllocateSlots(parent, 2));
  auto child = *m->Fork(parent);
  auto hog = *m->Begin(0);
  ASSERT_TRUE(m->AllocateSlots(hog, 1));  // no block left for a copy
  EXPECT_FALSE(m->CanAllocate(child, 3));
  EXPECT_FALSE(m->AllocateSlots(child, 3));
  EXPECT_EQ(child.blocks, parent.blocks);
}

TEST(KvCacheManagerTest, RecurrentLayersGetPrefixHitsThroughStateCheckpoints) {
  CacheSpec spec;
  spec.block_size = 2;
  spec.layers = {LayerMemory::AttentionKv(1, 2), LayerMemory::RecurrentState(3)};
  auto m = Make(spec, 8, /*max_checkpoints=*/4);
  const auto prompt = Tokens(50, 5);
  auto first = *m->Begin(0);
  ASSERT_TRUE(m->AllocateSlots(first, 5));
  // Chunked prefill with chunk boundaries on block boundaries: state after 2 and after 4 tokens.
  m->StateData(1, first)[0] = 2.0f;
  m->Commit(first, prompt, 2);
  m->StateData(1, first)[0] = 4.0f;
  m->Commit(first, prompt, 4);
  m->StateData(1, first)[0] = 5.0f;
  m->Commit(first, prompt, 5);  // not a boundary: no checkpoint
  EXPECT_EQ(m->stats().num_state_checkpoints, 2);

  auto second = *m->Begin(0);
  EXPECT_EQ(m->AttachCachedPrefix(second, prompt, 4), 4);
  EXPECT_EQ(m->StateData(1, second)[0], 4.0f);
  EXPECT_NE(second.state_slot, first.state_slot);
}

TEST(KvCacheManagerTest, RecurrentPrefixEndsAtTheLastCheckpointNotTheFirstGap) {
  CacheSpec spec;
  spec.block_size = 2;
  spec.layers = {LayerMemory::AttentionKv(1, 2), LayerMemory::RecurrentState(3)};
  auto m = Make(spec, 8, /*max_checkpoints=*/4);
  const auto prompt = Tokens(50, 9);
  auto first = *m->Begin(0);
  ASSERT_TRUE(m->AllocateSlots(first, 9));
  m->StateData(1, first)[0] = 6.0f;
  m->Commit(first, prompt, 6);  // one chunk of 6: blocks 0-2 full, a checkpoint only after block 2
  m->StateData(1, first)[0] = 9.0f;
  m->Commit(first, prompt, 9);
  auto second = *m->Begin(0);
  EXPECT_EQ(m->AttachCachedPrefix(second, prompt, 8), 6);
  EXPECT_EQ(m->StateData(1, second)[0], 6.0f);
  EXPECT_EQ(second.blocks.size(), 3u);
  m->Free(second);
  m->Free(first);
  EXPECT_EQ(m->stats().num_used_blocks, 0);
}

TEST(KvCacheManagerTest, RecurrentPrefixStopsWhereNoCheckpointExists) {
  CacheSpec spec;
  spec.block_size = 2;
  spec.layers = {LayerMemory::AttentionKv(1, 2), LayerMemory::RecurrentState(3)};
  auto m = Make(spec, 8, /*max_checkpoints=*/4);
  const auto prompt = Tokens(50, 6);
  auto first = *m->Begin(0);
  ASSERT_TRUE(m->AllocateSlots(first, 6));
  m->Commit(first, prompt, 5);  // one step over 5 tokens: blocks 0, 1 full but no checkpoint at 4
  m->StateData(1, first)[0] = 6.0f;
  m->Commit(first, prompt, 6);  // checkpoint at 6 only
  auto second = *m->Begin(0);
  EXPECT_EQ(m->AttachCachedPrefix(second, prompt, 5), 0);
}

// The property test: random allocate / append / fork / prefix-attach / free operations, with the
// pool's invariants checked after every single one.
TEST(KvCacheManagerPropertyTest, InvariantsHoldUnderRandomOperations) {
  constexpr uint32_t kSeed = 20241128;
  SCOPED_TRACE(testing::Message() << "seed " << kSeed);
  std::mt19937 rng(kSeed);
  auto m = Make(AttentionSpec(), 64);
  const BlockPool& pool = m->pool();
  // Sequences with their tokens; a few prompt families make prefix hits common.
  struct Seq {
    SequenceCache cache;
    std::vector<int32_t> tokens;
  };
  std::vector<Seq> live;
  auto random_prompt = [&] {
    std::vector<int32_t> t = Tokens(1000 * (rng() % 4), static_cast<int32_t>(rng() % 12));
    const int32_t extra = 1 + rng() % 10;
    for (int32_t i = 0; i < extra; ++i) t.push_back(rng() % 50);
    return t;
  };
  auto check = [&](int step) {
    std::map<BlockId, int32_t> holders;
    for (const Seq& s : live) {
      EXPECT_EQ(static_cast<int32_t>(s.cache.blocks.size()), m->BlocksForTokens(s.cache.num_slots));
      for (BlockId b : s.cache.blocks) ++holders[b];
    }
    ASSERT_EQ(pool.num_used() + pool.num_free(), pool.num_blocks()) << "step " << step;
    const std::vector<BlockId> free_list = pool.free_queue().ToVector();
    ASSERT_EQ(static_cast<int32_t>(free_list.size()), pool.num_free()) << "step " << step;
    for (BlockId b : free_list) {
      ASSERT_EQ(holders.count(b), 0u) << "free block " << b << " is referenced, step " << step;
      ASSERT_EQ(pool.ref_count(b), 0) << "step " << step;
    }
    for (BlockId b = 0; b < pool.num_blocks(); ++b) {
      const int32_t expected = holders.count(b) ? holders[b] : 0;
      ASSERT_EQ(pool.ref_count(b), expected) << "block " << b << ", step " << step;
    }
  };
  for (int step = 0; step < 100000; ++step) {
    const uint32_t op = rng() % 10;
    if (op < 3 || live.empty()) {  // new sequence, with a prefix lookup
      Seq s{*m->Begin(0), random_prompt()};
      const int32_t n = static_cast<int32_t>(s.tokens.size());
      m->AttachCachedPrefix(s.cache, s.tokens, n - 1);
      if (m->AllocateSlots(s.cache, n)) {
        m->Commit(s.cache, s.tokens, n);
        live.push_back(std::move(s));
      } else {
        m->Free(s.cache);
      }
    } else if (op < 7) {  // append a token
      Seq& s = live[rng() % live.size()];
      const int32_t n = s.cache.num_slots + 1;
      if (m->AllocateSlots(s.cache, n)) {
        s.tokens.resize(n, static_cast<int32_t>(rng() % 50));
        m->Commit(s.cache, s.tokens, n);
      }
    } else if (op < 8) {  // fork
      const Seq& s = live[rng() % live.size()];
      live.push_back(Seq{*m->Fork(s.cache), s.tokens});
    } else {  // free
      const size_t i = rng() % live.size();
      m->Free(live[i].cache);
      live.erase(live.begin() + i);
    }
    ASSERT_NO_FATAL_FAILURE(check(step));
  }
  for (Seq& s : live) m->Free(s.cache);
  live.clear();
  check(-1);
  EXPECT_EQ(pool.num_used(), 0);
  EXPECT_GT(m->stats().prefix_hit_tokens, 0);
  EXPECT_GT(m->stats().num_copy_on_writes, 0);
  EXPECT_GT(m->stats().num_evictions, 0);
}

}  // namespace
}  // namespace kvserve::cache
