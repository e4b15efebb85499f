// BlockPool: the fixed set of KV-cache blocks, their reference counts, and the prefix cache index.
//
// Every block is in exactly one of three states:
//   in use           ref_count > 0, held by one or more block tables (shared prefixes, forks)
//   free, cached     ref_count == 0, in the free queue, still findable by its hash
//   free, empty      ref_count == 0, in the free queue, no hash
// Allocation takes blocks from the head of the free queue (least recently freed first), evicting
// their hashes; a prefix hit takes a cached block out of the middle of the queue. Callers free a
// sequence's blocks tail first, so its tail is evicted before its head, which more requests share.
//
// Thread-safety: none; owned by the engine thread.
#ifndef KVSERVE_CACHE_BLOCK_POOL_H_
#define KVSERVE_CACHE_BLOCK_POOL_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"
#include "cache/free_block_queue.h"
#include "cache/prefix_hash.h"

namespace kvserve::cache {

class BlockPool {
 public:
  BlockPool(int32_t num_blocks, int32_t block_size);

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  int32_t num_free() const { return free_.size(); }
  int32_t num_used() const { return num_blocks_ - free_.size(); }
  int32_t num_cached() const { return static_cast<int32_t>(cached_.size()); }
  int64_t num_evictions() const { return num_evictions_; }
  int32_t ref_count(BlockId id) const { return ref_count_[id]; }
  bool IsCached(BlockId id) const { return hash_[id].has_value(); }
  const FreeBlockQueue& free_queue() const { return free_; }

  // Takes n blocks from the head of the free queue, each with ref_count 1, evicting any cached
  // hash they carried. Returns nullopt and changes nothing when fewer than n blocks are free.
  std::optional<std::vector<BlockId>> Allocate(int32_t n);

  // The cached block registered under `hash`, if its parent hash and tokens match too.
  std::optional<BlockId> FindCached(BlockHash hash, BlockHash parent,
                                    absl::Span<const int32_t> tokens) const;

  // One more reference (a prefix hit or a fork). A free block leaves the free queue.
  void Ref(BlockId id);

  // One reference less for each block, in order; blocks reaching zero join the tail of the free
  // queue in that order. REQUIRES: each ref_count > 0.
  void Unref(absl::Span<const BlockId> ids);

  // Registers a full, written block under `hash` so later sequences can reuse it. If another block
  // already holds the hash (two sequences computed the same prefix), the first stays registered.
  // REQUIRES: ref_count(id) > 0, tokens.size() == block_size().
  void MarkCached(BlockId id, BlockHash hash, BlockHash parent, absl::Span<const int32_t> tokens);

 private:
  void Evict(BlockId id);

  int32_t num_blocks_;
  int32_t block_size_;
  std::vector<int32_t> ref_count_;              // [num_blocks]
  std::vector<std::optional<BlockHash>> hash_;  // [num_blocks]
  std::vector<BlockHash> parent_;               // [num_blocks], valid when hashed
  std::vector<int32_t> tokens_;                 // [num_blocks][block_size], valid when hashed
  FreeBlockQueue free_;
  absl::flat_hash_map<BlockHash, BlockId> cached_;
  int64_t num_evictions_ = 0;
};

}  // namespace kvserve::cache

#endif  // KVSERVE_CACHE_BLOCK_POOL_H_
