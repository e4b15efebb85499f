#include "cache/block_pool.h"

#include <algorithm>

#include "base/logging.h"

namespace kvserve::cache {

BlockPool::BlockPool(int32_t num_blocks, int32_t block_size)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      ref_count_(num_blocks, 0),
      hash_(num_blocks),
      parent_(num_blocks, 0),
      tokens_(static_cast<size_t>(num_blocks) * block_size, 0),
      free_(num_blocks) {
  KV_CHECK(num_blocks >= 0 && block_size > 0);
}

std::optional<std::vector<BlockId>> BlockPool::Allocate(int32_t n) {
  KV_CHECK(n >= 0);
  if (n > free_.size()) return std::nullopt;
  std::vector<BlockId> ids;
  ids.reserve(n);
  for (int32_t i = 0; i < n; ++i) {
    const BlockId id = free_.PopFront();
    if (hash_[id].has_value()) Evict(id);
    ref_count_[id] = 1;
    ids.push_back(id);
  }
  return ids;
}

void BlockPool::Evict(BlockId id) {
  auto it = cached_.find(*hash_[id]);
  if (it != cached_.end() && it->second == id) cached_.erase(it);
  hash_[id].reset();
  ++num_evictions_;
}

std::optional<BlockId> BlockPool::FindCached(BlockHash hash, BlockHash parent,
                                             absl::Span<const int32_t> tokens) const {
  auto it = cached_.find(hash);
  if (it == cached_.end()) return std::nullopt;
  const BlockId id = it->second;
  if (parent_[id] != parent || tokens.size() != static_cast<size_t>(block_size_) ||
      !std::equal(tokens.begin(), tokens.end(), tokens_.begin() + int64_t{id} * block_size_)) {
    return std::nullopt;  // a 64-bit collision: never serve another prefix's K/V
  }
  return id;
}

void BlockPool::Ref(BlockId id) {
  if (ref_count_[id] == 0) free_.Remove(id);
  ++ref_count_[id];
}

void BlockPool::Unref(absl::Span<const BlockId> ids) {
  for (BlockId id : ids) {
    KV_CHECK(ref_count_[id] > 0) << "block " << id << " freed twice";
    if (--ref_count_[id] == 0) free_.PushBack(id);
  }
}

void BlockPool::MarkCached(BlockId id, BlockHash hash, BlockHash parent,
                           absl::Span<const int32_t> tokens) {
  KV_CHECK(ref_count_[id] > 0) << "caching unreferenced block " << id;
  KV_CHECK(tokens.size() == static_cast<size_t>(block_size_));
  if (hash_[id].has_value()) return;              // already registered (e.g. a prefix hit)
  if (!cached_.emplace(hash, id).second) return;  // the same prefix lives in another block
  hash_[id] = hash;
  parent_[id] = parent;
  std::copy(tokens.begin(), tokens.end(), tokens_.begin() + int64_t{id} * block_size_);
}

}  // namespace kvserve::cache
