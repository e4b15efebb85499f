#include "cache/prefix_hash.h"

#include <vector>

#include "gtest/gtest.h"

namespace kvserve::cache {
namespace {

TEST(PrefixHashTest, SamePrefixGivesSameHashes) {
  const std::vector<int32_t> a = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::vector<int32_t> b = {1, 2, 3, 4, 5, 6, 7, 8, 100, 101, 102, 103};
  const BlockHash root = PrefixRootHash("m", "");
  const auto ha = HashFullBlocks(root, a, 4);
  const auto hb = HashFullBlocks(root, b, 4);
  ASSERT_EQ(ha.size(), 2u);
  ASSERT_EQ(hb.size(), 3u);
  EXPECT_EQ(ha[0], hb[0]);
  EXPECT_EQ(ha[1], hb[1]);
}

TEST(PrefixHashTest, HashChainsThroughTheParent) {
  const BlockHash root = PrefixRootHash("m", "");
  // Same second block, different first block: the second hashes differ too.
  const auto h1 = HashFullBlocks(root, std::vector<int32_t>{1, 2, 5, 6}, 2);
  const auto h2 = HashFullBlocks(root, std::vector<int32_t>{1, 3, 5, 6}, 2);
  EXPECT_NE(h1[0], h2[0]);
  EXPECT_NE(h1[1], h2[1]);
  EXPECT_EQ(h1[1], HashBlock(h1[0], std::vector<int32_t>{5, 6}));
}

TEST(PrefixHashTest, SaltAndModelSeparateTenants) {
  const std::vector<int32_t> t = {1, 2, 3, 4};
  const BlockHash plain = HashFullBlocks(PrefixRootHash("m", ""), t, 4)[0];
  EXPECT_NE(plain, HashFullBlocks(PrefixRootHash("m", "tenant-a"), t, 4)[0]);
  EXPECT_NE(HashFullBlocks(PrefixRootHash("m", "tenant-a"), t, 4)[0],
            HashFullBlocks(PrefixRootHash("m", "tenant-b"), t, 4)[0]);
  EXPECT_NE(plain, HashFullBlocks(PrefixRootHash("other-model", ""), t, 4)[0]);
  // The boundary between model id and salt is part of the hash.
  EXPECT_NE(PrefixRootHash("ab", "c"), PrefixRootHash("a", "bc"));
}

TEST(PrefixHashTest, OrderOfTokensMatters) {
  const BlockHash root = PrefixRootHash("m", "");
  EXPECT_NE(HashBlock(root, std::vector<int32_t>{1, 2}),
            HashBlock(root, std::vector<int32_t>{2, 1}));
}

}  // namespace
}  // namespace kvserve::cache
