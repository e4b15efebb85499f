#include "cache/free_block_queue.h"

#include "base/logging.h"

namespace kvserve::cache {

FreeBlockQueue::FreeBlockQueue(int32_t num_blocks)
    : prev_(num_blocks, kNone), next_(num_blocks, kNone), in_queue_(num_blocks, false) {
  for (BlockId id = 0; id < num_blocks; ++id) PushBack(id);
}

BlockId FreeBlockQueue::PopFront() {
  KV_CHECK(size_ > 0) << "PopFront on an empty free queue";
  const BlockId id = head_;
  Remove(id);
  return id;
}

void FreeBlockQueue::PushBack(BlockId id) {
  KV_CHECK(!in_queue_[id]) << "block " << id << " is already free";
  prev_[id] = tail_;
  next_[id] = kNone;
  if (tail_ != kNone) next_[tail_] = id;
  tail_ = id;
  if (head_ == kNone) head_ = id;
  in_queue_[id] = true;
  ++size_;
}

void FreeBlockQueue::Remove(BlockId id) {
  KV_CHECK(in_queue_[id]) << "block " << id << " is not in the free queue";
  if (prev_[id] != kNone)
    next_[prev_[id]] = next_[id];
  else
    head_ = next_[id];
  if (next_[id] != kNone)
    prev_[next_[id]] = prev_[id];
  else
    tail_ = prev_[id];
  prev_[id] = next_[id] = kNone;
  in_queue_[id] = false;
  --size_;
}

std::vector<BlockId> FreeBlockQueue::ToVector() const {
  std::vector<BlockId> out;
  out.reserve(size_);
  for (BlockId id = head_; id != kNone; id = next_[id]) out.push_back(id);
  return out;
}

}  // namespace kvserve::cache
