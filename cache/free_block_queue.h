// FreeBlockQueue: the free blocks of a BlockPool in eviction order, least recently used first.
//
// An intrusive doubly linked list over block ids (prev/next arrays indexed by id), so that a cached
// free block that gets reused by a prefix hit leaves the middle of the queue in O(1).
//
//   head ─▶ [LRU] ⇄ [ ] ⇄ ... ⇄ [MRU] ◀─ tail
//   PopFront() takes the LRU block; PushBack() appends a just-freed block.
//
// Thread-safety: none (owned by the engine thread through its BlockPool).
#ifndef KVSERVE_CACHE_FREE_BLOCK_QUEUE_H_
#define KVSERVE_CACHE_FREE_BLOCK_QUEUE_H_

#include <cstdint>
#include <vector>

namespace kvserve::cache {

using BlockId = int32_t;

class FreeBlockQueue {
 public:
  // Starts with blocks 0..num_blocks-1 queued in id order.
  explicit FreeBlockQueue(int32_t num_blocks);

  int32_t size() const { return size_; }
  bool Contains(BlockId id) const { return in_queue_[id]; }
  // REQUIRES: size() > 0.
  BlockId PopFront();
  // REQUIRES: !Contains(id).
  void PushBack(BlockId id);
  // REQUIRES: Contains(id).
  void Remove(BlockId id);
  // The queue from head to tail (for tests and invariant checks; O(size)).
  std::vector<BlockId> ToVector() const;

 private:
  static constexpr BlockId kNone = -1;
  std::vector<BlockId> prev_;
  std::vector<BlockId> next_;
  std::vector<bool> in_queue_;
  BlockId head_ = kNone;
  BlockId tail_ = kNone;
  int32_t size_ = 0;
};

}  // namespace kvserve::cache

#endif  // KVSERVE_CACHE_FREE_BLOCK_QUEUE_H_
