// StatePool: fixed-size recurrent state for layers that keep one (S4), one slot per running
// sequence, plus state checkpoints that give hybrid models prefix-cache hits.
//
// A paged block can be shared by any sequence whose prefix matches, but a recurrent layer has no
// per-token memory to share: its state after token t summarises the whole prefix. So when a
// sequence finishes a full block, the engine may save the state under that block's prefix hash;
// a later sequence that hits the block in the prefix cache restores the state from there instead of
// recomputing the prefix. Checkpoints are bounded by a count and evicted least recently used first.
//
// Layout: slots [num_slots][floats_per_slot]; checkpoints [num_checkpoints][floats_per_slot].
// Thread-safety: none; owned by the engine thread.
#ifndef KVSERVE_CACHE_STATE_POOL_H_
#define KVSERVE_CACHE_STATE_POOL_H_

#include <cstdint>
#include <list>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "cache/prefix_hash.h"

namespace kvserve::cache {

class StatePool {
 public:
  StatePool(int32_t num_slots, int64_t floats_per_slot, int32_t num_checkpoints);

  int32_t num_slots() const { return num_slots_; }
  int32_t num_free_slots() const { return static_cast<int32_t>(free_slots_.size()); }
  int64_t floats_per_slot() const { return floats_per_slot_; }

  // A zeroed slot, or nullopt when all are taken (nothing changes).
  std::optional<int32_t> AllocateSlot();
  // REQUIRES: `slot` is allocated.
  void FreeSlot(int32_t slot);
  float* Slot(int32_t slot);

  int32_t num_checkpoints() const { return static_cast<int32_t>(checkpoint_of_.size()); }
  int32_t max_checkpoints() const { return max_checkpoints_; }
  int64_t num_checkpoint_evictions() const { return num_checkpoint_evictions_; }
  // Stores a copy of `slot`'s state under `hash`, replacing an older copy; evicts the least
  // recently used checkpoint when full. No-op when max_checkpoints() == 0.
  void SaveCheckpoint(BlockHash hash, int32_t slot);
  // Copies the checkpoint for `hash` into `slot` and marks it recently used; false if absent.
  bool RestoreCheckpoint(BlockHash hash, int32_t slot);
  bool HasCheckpoint(BlockHash hash) const { return checkpoint_of_.contains(hash); }

 private:
  int32_t num_slots_;
  int64_t floats_per_slot_;
  int32_t max_checkpoints_;
  std::vector<float> slots_;  // [num_slots][floats_per_slot]
  std::vector<bool> slot_in_use_;
  std::vector<int32_t> free_slots_;  // a stack; lowest ids handed out first
  std::vector<float> checkpoints_;   // [max_checkpoints][floats_per_slot]
  std::vector<int32_t> free_checkpoints_;
  std::list<BlockHash> lru_;  // front = least recently used
  struct Entry {
    int32_t index;
    std::list<BlockHash>::iterator lru_position;
  };
  absl::flat_hash_map<BlockHash, Entry> checkpoint_of_;
  int64_t num_checkpoint_evictions_ = 0;
};

}  // namespace kvserve::cache

#endif  // KVSERVE_CACHE_STATE_POOL_H_
