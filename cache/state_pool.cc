#include "cache/state_pool.h"

#include <algorithm>

#include "base/logging.h"

namespace kvserve::cache {

StatePool::StatePool(int32_t num_slots, int64_t floats_per_slot, int32_t num_checkpoints)
    : num_slots_(num_slots),
      floats_per_slot_(floats_per_slot),
      max_checkpoints_(num_checkpoints),
      slots_(static_cast<size_t>(num_slots) * floats_per_slot),
      slot_in_use_(num_slots, false),
      checkpoints_(static_cast<size_t>(num_checkpoints) * floats_per_slot) {
  KV_CHECK(num_slots >= 0 && floats_per_slot >= 0 && num_checkpoints >= 0);
  for (int32_t s = num_slots - 1; s >= 0; --s) free_slots_.push_back(s);
  for (int32_t c = num_checkpoints - 1; c >= 0; --c) free_checkpoints_.push_back(c);
}

std::optional<int32_t> StatePool::AllocateSlot() {
  if (free_slots_.empty()) return std::nullopt;
  const int32_t slot = free_slots_.back();
  free_slots_.pop_back();
  slot_in_use_[slot] = true;
  std::fill_n(Slot(slot), floats_per_slot_, 0.0f);
  return slot;
}

void StatePool::FreeSlot(int32_t slot) {
  KV_CHECK(slot >= 0 && slot < num_slots_ && slot_in_use_[slot]) << "bad state slot " << slot;
  slot_in_use_[slot] = false;
  free_slots_.push_back(slot);
}

float* StatePool::Slot(int32_t slot) {
  KV_CHECK(slot >= 0 && slot < num_slots_) << "bad state slot " << slot;
  return slots_.data() + static_cast<size_t>(slot) * floats_per_slot_;
}

void StatePool::SaveCheckpoint(BlockHash hash, int32_t slot) {
  if (max_checkpoints_ == 0) return;
  int32_t index;
  if (auto it = checkpoint_of_.find(hash); it != checkpoint_of_.end()) {
    index = it->second.index;
    lru_.erase(it->second.lru_position);
    checkpoint_of_.erase(it);
  } else if (!free_checkpoints_.empty()) {
    index = free_checkpoints_.back();
    free_checkpoints_.pop_back();
  } else {
    const BlockHash victim = lru_.front();
    lru_.pop_front();
    auto victim_it = checkpoint_of_.find(victim);
    index = victim_it->second.index;
    checkpoint_of_.erase(victim_it);
    ++num_checkpoint_evictions_;
  }
  std::copy_n(Slot(slot), floats_per_slot_,
              checkpoints_.data() + static_cast<size_t>(index) * floats_per_slot_);
  lru_.push_back(hash);
  checkpoint_of_[hash] = Entry{index, std::prev(lru_.end())};
}

bool StatePool::RestoreCheckpoint(BlockHash hash, int32_t slot) {
  auto it = checkpoint_of_.find(hash);
  if (it == checkpoint_of_.end()) return false;
  lru_.splice(lru_.end(), lru_, it->second.lru_position);
  std::copy_n(checkpoints_.data() + static_cast<size_t>(it->second.index) * floats_per_slot_,
              floats_per_slot_, Slot(slot));
  return true;
}

}  // namespace kvserve::cache
