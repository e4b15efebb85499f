// KvCacheManager: one model's paged KV / state cache — storage, block tables, prefix reuse.
//
// Storage is allocated once, from a byte budget, when the manager is created:
//
//   paged layer l:  arena_l  [num_blocks][block_size][spec.layers[l].num_elements] of the layer's
//                   KvDtype (f32 or bf16)
//   recurrent l:    StatePool slots (one per running sequence) + prefix checkpoints
//
// A sequence holds a SequenceCache: its block table (logical block i -> physical block id, shared
// by every paged layer) and its state slot. Position p of a sequence lives in slot
// blocks[p / block_size] * block_size + p % block_size of every paged layer's arena.
//
// Life of a sequence (vLLM's two-step "does it fit, then commit" discipline):
//   Begin               → an empty SequenceCache (and a state slot, if the model has
//                         recurrent layers)
//   AttachCachedPrefix  → reuse the longest run of cached full blocks of the prompt
//   AllocateSlots(n)    → make positions [0, n) writable; false = does not fit, nothing changed
//   ... the model writes K/V of the new positions ...
//   Commit              → register blocks that became full in the prefix cache
//   Free                → release blocks tail first (so tails are evicted before shared heads)
//
// Thread-safety: none; owned by the engine thread.
#ifndef KVSERVE_CACHE_KV_CACHE_MANAGER_H_
#define KVSERVE_CACHE_KV_CACHE_MANAGER_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "cache/block_pool.h"
#include "cache/cache_spec.h"
#include "cache/prefix_hash.h"
#include "cache/state_pool.h"

namespace kvserve::cache {

struct CacheOptions {
  // Bytes for everything: paged blocks, state slots and state checkpoints.
  int64_t budget_bytes = 0;
  int32_t block_size = 16;
  // State slots, i.e. how many sequences with recurrent layers may hold state at once.
  int32_t max_sequences = 64;
  // State checkpoints kept for prefix reuse by recurrent layers (0 = none).
  int32_t max_state_checkpoints = 0;
  bool enable_prefix_caching = true;
};

// What the whole cache can ever hold: fixed when the manager is created, so a copy answers from
// any thread (the engine's Submit checks requests against it while the cache itself belongs to the
// engine thread).
struct CacheCapacity {
  int32_t block_size = 0;  // tokens per block; 0 when the model has no paged layers
  int32_t num_blocks = 0;
  bool has_state_slots = true;  // false only for a recurrent model with no state slot

  int32_t BlocksForTokens(int64_t num_tokens) const {
    return block_size == 0 ? 0 : static_cast<int32_t>((num_tokens + block_size - 1) / block_size);
  }
  // Whether a sequence of `num_tokens` could fit if it had the whole cache to itself.
  bool CanEverFit(int64_t num_tokens) const {
    return BlocksForTokens(num_tokens) <= num_blocks && has_state_slots;
  }
};

// One sequence's view of the cache. Plain data, owned by the engine's sequence; only the manager
// changes it.
struct SequenceCache {
  std::vector<BlockId> blocks;       // the block table
  int32_t num_slots = 0;             // positions [0, num_slots) have a slot
  int32_t num_committed_blocks = 0;  // leading full blocks already offered to the prefix cache
  BlockHash root = 0;                // the hash chain's seed (model id, cache salt)
  BlockHash last_hash = 0;           // hash of the last committed block (root when none)
  int32_t state_slot = -1;           // StatePool slot, -1 when the model has no recurrent layers
};

struct CacheStats {
  int32_t block_size = 0;
  int32_t num_blocks = 0;
  int32_t num_used_blocks = 0;    // referenced by at least one sequence
  int32_t num_cached_blocks = 0;  // findable by prefix hash (in use or free)
  int32_t num_free_blocks = 0;    // not referenced (includes free cached blocks)
  // Indexed by MemoryKind.
  std::array<int64_t, kNumMemoryKinds> total_bytes{};
  std::array<int64_t, kNumMemoryKinds> used_bytes{};
  int32_t num_state_slots = 0;
  int32_t num_used_state_slots = 0;
  int32_t num_state_checkpoints = 0;
  int64_t prefix_query_tokens = 0;  // prompt tokens looked up
  int64_t prefix_hit_tokens = 0;    // of which found in the cache
  int64_t num_evictions = 0;        // cached blocks reused for other data
  int64_t num_copy_on_writes = 0;
};

class KvCacheManager {
 public:
  // Errors: INVALID_ARGUMENT when the budget cannot hold one block (or one state slot per
  // sequence for recurrent models).
  static absl::StatusOr<std::unique_ptr<KvCacheManager>> Create(const CacheSpec& spec,
                                                                const CacheOptions& options);

  const CacheSpec& spec() const { return spec_; }
  const CacheOptions& options() const { return options_; }
  int32_t block_size() const { return spec_.block_size; }
  int32_t num_blocks() const { return pool_.num_blocks(); }
  const BlockPool& pool() const { return pool_; }
  CacheCapacity capacity() const {
    return CacheCapacity{spec_.HasPagedLayers() ? spec_.block_size : 0, pool_.num_blocks(),
                         !spec_.HasRecurrentLayers() || state_.num_slots() > 0};
  }
  int32_t BlocksForTokens(int64_t num_tokens) const {
    return capacity().BlocksForTokens(num_tokens);
  }
  bool CanEverFit(int64_t num_tokens) const { return capacity().CanEverFit(num_tokens); }
  // Whether AllocateSlots(seq, num_tokens) would succeed now.
  bool CanAllocate(const SequenceCache& seq, int32_t num_tokens) const;

  // A new, empty sequence whose prefix hashes are seeded by `root` (see PrefixRootHash). Returns
  // nullopt when the model has recurrent layers and no state slot is free.
  std::optional<SequenceCache> Begin(BlockHash root);

  // Reuses the longest run of cached full blocks at the start of `tokens`, covering at most
  // `max_tokens` tokens (callers pass prompt length - 1: the last prompt token must be computed to
  // get logits). Returns the number of tokens now covered, a multiple of block_size. Counts
  // prefix_query_tokens += tokens.size() and prefix_hit_tokens += the result.
  // REQUIRES: seq is empty (fresh from Begin).
  int32_t AttachCachedPrefix(SequenceCache& seq, absl::Span<const int32_t> tokens,
                             int32_t max_tokens);

  // What AttachCachedPrefix would reuse, without taking anything: the tokens it would cover, and in
  // *num_free_blocks how many of those blocks sit in the free queue now (attaching takes them out
  // of it, so they no longer count as free for the sequence's next allocation). Changes nothing.
  int32_t PeekCachedPrefix(const SequenceCache& seq, absl::Span<const int32_t> tokens,
                           int32_t max_tokens, int32_t* num_free_blocks) const;

  // Makes positions [0, num_tokens) writable: appends blocks, and first copies a partially filled
  // last block that other sequences share (copy-on-write). Returns false and changes nothing when
  // the free blocks do not suffice.
  bool AllocateSlots(SequenceCache& seq, int32_t num_tokens);

  // Registers the blocks that tokens[0, num_computed) filled completely in the prefix cache.
  // REQUIRES: the K/V (and state) of those tokens are written; num_computed <= seq.num_slots.
  void Commit(SequenceCache& seq, absl::Span<const int32_t> tokens, int32_t num_computed);

  // Releases the sequence's blocks (tail first) and its state slot; seq becomes empty.
  void Free(SequenceCache& seq);

  // A second sequence sharing every block of `seq` (parallel sampling); a shared partial block is
  // copied when either writes to it. Copies the state slot. nullopt if no state slot is free.
  std::optional<SequenceCache> Fork(const SequenceCache& seq);

  // Slot index of position `pos` in every paged layer. REQUIRES: pos < seq.num_slots.
  int64_t SlotOf(const SequenceCache& seq, int32_t pos) const {
    return int64_t{seq.blocks[pos / spec_.block_size]} * spec_.block_size + pos % spec_.block_size;
  }
  // Paged layer storage: [num_blocks * block_size][spec().layers[layer].num_elements].
  // REQUIRES: the layer is paged and stored as f32 (LayerData) or bf16 (LayerDataBf16, values as
  // the upper 16 bits of an IEEE float).
  float* LayerData(int32_t layer);
  const float* LayerData(int32_t layer) const;
  uint16_t* LayerDataBf16(int32_t layer);
  // Recurrent layer state of one sequence: [spec().layers[layer].num_elements].
  float* StateData(int32_t layer, const SequenceCache& seq);
  StatePool& state_pool() { return state_; }

  CacheStats stats() const;

 private:
  KvCacheManager(const CacheSpec& spec, const CacheOptions& options, int32_t num_blocks,
                 int32_t num_state_slots);
  void CopyBlock(BlockId from, BlockId to, int32_t num_tokens);
  struct PrefixMatch {
    std::vector<BlockId> blocks;  // the usable cached prefix, in order
    BlockHash last_hash = 0;      // hash of its last block (the root when empty)
    int32_t num_free_blocks = 0;  // of `blocks`, those with no reference now
  };
  PrefixMatch FindPrefix(BlockHash root, absl::Span<const int32_t> tokens,
                         int32_t max_tokens) const;

  CacheSpec spec_;
  CacheOptions options_;
  BlockPool pool_;
  StatePool state_;
  // Per layer; null for recurrent layers. Reserved at start but not written: the kernel hands out
  // zero pages as the cache fills, so start-up does not touch (or wait for) the whole budget.
  // 2 MiB-aligned and advised for transparent huge pages (MADV_HUGEPAGE; "madvise" is Debian's
  // default THP mode), so that filling the cache takes one page fault per 2 MiB instead of one per
  // 4 KiB: on a fresh server those faults were ~10 % of a 512-token prefill of the SmolLM-135M
  // shape (docs/benchmarks.md).
  struct ArenaDeleter {
    void operator()(std::byte* p) const;
  };
  std::vector<std::unique_ptr<std::byte[], ArenaDeleter>> arenas_;
  std::vector<int64_t> state_offset_;  // per layer: offset inside a state slot
  int64_t prefix_query_tokens_ = 0;
  int64_t prefix_hit_tokens_ = 0;
  int64_t num_copy_on_writes_ = 0;
};

}  // namespace kvserve::cache

#endif  // KVSERVE_CACHE_KV_CACHE_MANAGER_H_
