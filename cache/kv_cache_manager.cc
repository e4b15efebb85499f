#include "cache/kv_cache_manager.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/logging.h"

namespace kvserve::cache {

namespace {
// A transparent huge page (x86-64).
constexpr std::align_val_t kArenaAlignment{size_t{2} << 20};
}  // namespace

absl::StatusOr<std::unique_ptr<KvCacheManager>> KvCacheManager::Create(
    const CacheSpec& spec, const CacheOptions& options) {
  if (spec.block_size <= 0 || spec.block_size != options.block_size) {
    return absl::InvalidArgumentError(absl::StrCat("block size must be positive and agree: spec ",
                                                   spec.block_size, ", options ",
                                                   options.block_size));
  }
  const int64_t state_bytes = spec.StateBytesPerSequence();
  const int32_t num_state_slots = state_bytes > 0 ? options.max_sequences : 0;
  const int32_t num_checkpoints = state_bytes > 0 ? options.max_state_checkpoints : 0;
  const int64_t state_total = state_bytes * (num_state_slots + int64_t{num_checkpoints});
  const int64_t block_bytes = spec.PagedBytesPerToken() * spec.block_size;
  if (state_total > options.budget_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv-cache-bytes: ", options.budget_bytes, " bytes cannot hold ", num_state_slots,
        " state slots and ", num_checkpoints, " checkpoints of ", state_bytes, " bytes"));
  }
  int64_t num_blocks = 0;
  if (block_bytes > 0) {
    num_blocks = (options.budget_bytes - state_total) / block_bytes;
    if (num_blocks < 1) {
      return absl::InvalidArgumentError(absl::StrCat("--kv-cache-bytes: ", options.budget_bytes,
                                                     " bytes cannot hold one block of ",
                                                     block_bytes, " bytes"));
    }
    num_blocks = std::min<int64_t>(num_blocks, INT32_MAX / spec.block_size);
  }
  return std::unique_ptr<KvCacheManager>(
      new KvCacheManager(spec, options, static_cast<int32_t>(num_blocks), num_state_slots));
}

void KvCacheManager::ArenaDeleter::operator()(std::byte* p) const {
  ::operator delete[](p, kArenaAlignment);
}

KvCacheManager::KvCacheManager(const CacheSpec& spec, const CacheOptions& options,
                               int32_t num_blocks, int32_t num_state_slots)
    : spec_(spec),
      options_(options),
      pool_(num_blocks, spec.block_size),
      state_(num_state_slots, spec.StateBytesPerSequence() / int64_t{sizeof(float)},
             spec.HasRecurrentLayers() ? options.max_state_checkpoints : 0) {
  int64_t state_offset = 0;
  for (const LayerMemory& layer : spec_.layers) {
    if (IsPaged(layer.kind)) {
      // Not value-initialized: nothing is read before the model writes it, and pages nobody has
      // touched cost no memory yet.
      const size_t bytes = static_cast<size_t>(num_blocks) * spec_.block_size * layer.num_elements *
                           layer.element_bytes();
      auto* arena = static_cast<std::byte*>(::operator new[](bytes, kArenaAlignment));
      // Advice only: without THP the arena simply keeps 4 KiB pages.
      (void)madvise(arena, bytes, MADV_HUGEPAGE);
      arenas_.emplace_back(arena);
      state_offset_.push_back(-1);
    } else {
      arenas_.emplace_back();
      state_offset_.push_back(state_offset);
      state_offset += layer.num_elements;
    }
  }
}

std::optional<SequenceCache> KvCacheManager::Begin(BlockHash root) {
  SequenceCache seq;
  seq.root = root;
  seq.last_hash = root;
  if (spec_.HasRecurrentLayers()) {
    std::optional<int32_t> slot = state_.AllocateSlot();
    if (!slot.has_value()) return std::nullopt;
    seq.state_slot = *slot;
  }
  return seq;
}

KvCacheManager::PrefixMatch KvCacheManager::FindPrefix(BlockHash root,
                                                       absl::Span<const int32_t> tokens,
                                                       int32_t max_tokens) const {
  PrefixMatch match;
  match.last_hash = root;
  if (!options_.enable_prefix_caching || !spec_.HasPagedLayers()) return match;
  const int32_t bs = spec_.block_size;
  const int32_t max_blocks =
      std::min<int32_t>(std::max(max_tokens, 0), static_cast<int32_t>(tokens.size())) / bs;
  // Walk the cached chain; with recurrent layers the usable prefix ends at the last block whose
  // state checkpoint exists (checkpoints are saved where steps end, not at every block).
  BlockHash parent = root;
  std::vector<BlockId> chain;
  for (int32_t i = 0; i < max_blocks; ++i) {
    absl::Span<const int32_t> block_tokens = tokens.subspan(int64_t{i} * bs, bs);
    const BlockHash hash = HashBlock(parent, block_tokens);
    std::optional<BlockId> hit = pool_.FindCached(hash, parent, block_tokens);
    if (!hit.has_value()) break;
    chain.push_back(*hit);
    if (!spec_.HasRecurrentLayers() || state_.HasCheckpoint(hash)) {
      match.blocks.assign(chain.begin(), chain.end());
      match.last_hash = hash;
    }
    parent = hash;
  }
  for (BlockId id : match.blocks) {
    if (pool_.ref_count(id) == 0) ++match.num_free_blocks;
  }
  return match;
}

int32_t KvCacheManager::PeekCachedPrefix(const SequenceCache& seq, absl::Span<const int32_t> tokens,
                                         int32_t max_tokens, int32_t* num_free_blocks) const {
  const PrefixMatch match = FindPrefix(seq.root, tokens, max_tokens);
  if (num_free_blocks != nullptr) *num_free_blocks = match.num_free_blocks;
  return static_cast<int32_t>(match.blocks.size()) * spec_.block_size;
}

int32_t KvCacheManager::AttachCachedPrefix(SequenceCache& seq, absl::Span<const int32_t> tokens,
                                           int32_t max_tokens) {
  KV_CHECK(seq.blocks.empty() && seq.num_slots == 0) << "prefix attach on a non-empty sequence";
  prefix_query_tokens_ += static_cast<int64_t>(tokens.size());
  const PrefixMatch match = FindPrefix(seq.root, tokens, max_tokens);
  for (BlockId id : match.blocks) {
    pool_.Ref(id);
    seq.blocks.push_back(id);
  }
  const int32_t num_hit_blocks = static_cast<int32_t>(match.blocks.size());
  seq.num_slots = num_hit_blocks * spec_.block_size;
  seq.num_committed_blocks = num_hit_blocks;
  seq.last_hash = match.last_hash;
  if (spec_.HasRecurrentLayers() && num_hit_blocks > 0) {
    KV_CHECK(state_.RestoreCheckpoint(seq.last_hash, seq.state_slot));
  }
  prefix_hit_tokens_ += seq.num_slots;
  return seq.num_slots;
}

bool KvCacheManager::CanAllocate(const SequenceCache& seq, int32_t num_tokens) const {
  if (num_tokens <= seq.num_slots) return true;
  const int32_t bs = spec_.block_size;
  const bool cow = seq.num_slots % bs != 0 && pool_.ref_count(seq.blocks.back()) > 1;
  const int32_t needed =
      BlocksForTokens(num_tokens) - static_cast<int32_t>(seq.blocks.size()) + (cow ? 1 : 0);
  return needed <= pool_.num_free();
}

bool KvCacheManager::AllocateSlots(SequenceCache& seq, int32_t num_tokens) {
  if (num_tokens <= seq.num_slots) return true;
  if (!spec_.HasPagedLayers()) {
    seq.num_slots = num_tokens;
    return true;
  }
  const int32_t bs = spec_.block_size;
  const int32_t partial = seq.num_slots % bs;
  const bool cow = partial != 0 && pool_.ref_count(seq.blocks.back()) > 1;
  const int32_t grow = BlocksForTokens(num_tokens) - static_cast<int32_t>(seq.blocks.size());
  std::optional<std::vector<BlockId>> fresh = pool_.Allocate(grow + (cow ? 1 : 0));
  if (!fresh.has_value()) return false;  // transactional: nothing changed
  size_t next = 0;
  if (cow) {
    // The shared partial block is about to receive new tokens: give this sequence its own copy.
    const BlockId copy = (*fresh)[next++];
    CopyBlock(seq.blocks.back(), copy, partial);
    pool_.Unref({seq.blocks.back()});
    seq.blocks.back() = copy;
    ++num_copy_on_writes_;
  }
  for (; next < fresh->size(); ++next) seq.blocks.push_back((*fresh)[next]);
  seq.num_slots = num_tokens;
  return true;
}

void KvCacheManager::CopyBlock(BlockId from, BlockId to, int32_t num_tokens) {
  for (size_t l = 0; l < arenas_.size(); ++l) {
    if (arenas_[l] == nullptr) continue;
    const int64_t token_bytes = spec_.layers[l].num_elements * spec_.layers[l].element_bytes();
    const int64_t per_block = int64_t{spec_.block_size} * token_bytes;
    std::memcpy(arenas_[l].get() + to * per_block, arenas_[l].get() + from * per_block,
                static_cast<size_t>(int64_t{num_tokens} * token_bytes));
  }
}

void KvCacheManager::Commit(SequenceCache& seq, absl::Span<const int32_t> tokens,
                            int32_t num_computed) {
  KV_CHECK(num_computed <= seq.num_slots && num_computed <= static_cast<int32_t>(tokens.size()));
  if (!options_.enable_prefix_caching || !spec_.HasPagedLayers()) return;
  const int32_t bs = spec_.block_size;
  const int32_t num_full = num_computed / bs;
  for (int32_t i = seq.num_committed_blocks; i < num_full; ++i) {
    absl::Span<const int32_t> block_tokens = tokens.subspan(int64_t{i} * bs, bs);
    const BlockHash hash = HashBlock(seq.last_hash, block_tokens);
    pool_.MarkCached(seq.blocks[i], hash, seq.last_hash, block_tokens);
    seq.last_hash = hash;
  }
  // The recurrent state is the state after exactly num_computed tokens; it is a valid checkpoint
  // only when that is a block boundary.
  if (spec_.HasRecurrentLayers() && num_full > seq.num_committed_blocks &&
      num_computed == num_full * bs) {
    state_.SaveCheckpoint(seq.last_hash, seq.state_slot);
  }
  seq.num_committed_blocks = std::max(seq.num_committed_blocks, num_full);
}

void KvCacheManager::Free(SequenceCache& seq) {
  // Tail first: the tail reaches the free queue first and is therefore evicted first.
  std::vector<BlockId> reversed(seq.blocks.rbegin(), seq.blocks.rend());
  pool_.Unref(reversed);
  if (seq.state_slot >= 0) state_.FreeSlot(seq.state_slot);
  seq = SequenceCache{};
}

std::optional<SequenceCache> KvCacheManager::Fork(const SequenceCache& seq) {
  SequenceCache child = seq;
  if (seq.state_slot >= 0) {
    std::optional<int32_t> slot = state_.AllocateSlot();
    if (!slot.has_value()) return std::nullopt;
    std::copy_n(state_.Slot(seq.state_slot), state_.floats_per_slot(), state_.Slot(*slot));
    child.state_slot = *slot;
  }
  for (BlockId id : seq.blocks) pool_.Ref(id);
  return child;
}

float* KvCacheManager::LayerData(int32_t layer) {
  KV_CHECK(arenas_[layer] != nullptr) << "layer " << layer << " is not paged";
  KV_CHECK(spec_.layers[layer].dtype == KvDtype::kF32) << "layer " << layer << " is not f32";
  return reinterpret_cast<float*>(arenas_[layer].get());
}

uint16_t* KvCacheManager::LayerDataBf16(int32_t layer) {
  KV_CHECK(arenas_[layer] != nullptr) << "layer " << layer << " is not paged";
  KV_CHECK(spec_.layers[layer].dtype == KvDtype::kBf16) << "layer " << layer << " is not bf16";
  return reinterpret_cast<uint16_t*>(arenas_[layer].get());
}

const float* KvCacheManager::LayerData(int32_t layer) const {
  return const_cast<KvCacheManager*>(this)->LayerData(layer);
}

float* KvCacheManager::StateData(int32_t layer, const SequenceCache& seq) {
  KV_CHECK(state_offset_[layer] >= 0 && seq.state_slot >= 0)
      << "layer " << layer << " has no state";
  return state_.Slot(seq.state_slot) + state_offset_[layer];
}

CacheStats KvCacheManager::stats() const {
  CacheStats s;
  s.block_size = spec_.block_size;
  s.num_blocks = pool_.num_blocks();
  s.num_used_blocks = pool_.num_used();
  s.num_cached_blocks = pool_.num_cached();
  s.num_free_blocks = pool_.num_free();
  for (MemoryKind kind : {MemoryKind::kAttentionKv, MemoryKind::kMlaLatent}) {
    const int64_t per_block = spec_.PagedBytesPerToken(kind) * spec_.block_size;
    s.total_bytes[static_cast<int>(kind)] = per_block * s.num_blocks;
    s.used_bytes[static_cast<int>(kind)] = per_block * s.num_used_blocks;
  }
  const int64_t state_bytes = spec_.StateBytesPerSequence();
  s.num_state_slots = state_.num_slots();
  s.num_used_state_slots = state_.num_slots() - state_.num_free_slots();
  s.num_state_checkpoints = state_.num_checkpoints();
  s.total_bytes[static_cast<int>(MemoryKind::kRecurrentState)] =
      state_bytes * (state_.num_slots() + int64_t{state_.max_checkpoints()});
  s.used_bytes[static_cast<int>(MemoryKind::kRecurrentState)] =
      state_bytes * (s.num_used_state_slots + int64_t{s.num_state_checkpoints});
  s.prefix_query_tokens = prefix_query_tokens_;
  s.prefix_hit_tokens = prefix_hit_tokens_;
  s.num_evictions = pool_.num_evictions();
  s.num_copy_on_writes = num_copy_on_writes_;
  return s;
}

}  // namespace kvserve::cache
