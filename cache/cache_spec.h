// CacheSpec: what memory each layer of a model needs, declared once per layer.
//
// Three kinds exist, and a model mixes them freely (hybrids are just specs with several kinds):
//   kAttentionKv      paged, per token: K and V, 2 * num_kv_heads * head_dim floats
//   kMlaLatent        paged, per token: [c_KV | RoPE(k_R)], kv_lora_rank + qk_rope_head_dim floats
//   kRecurrentState   per sequence: a fixed-size state (e.g. an S4 layer's), in a StatePool slot
// All paged layers of a sequence cover the same tokens, so they share one block table: a block id
// names the same token range in every paged layer's arena.
#ifndef KVSERVE_CACHE_CACHE_SPEC_H_
#define KVSERVE_CACHE_CACHE_SPEC_H_

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

namespace kvserve::cache {

enum class MemoryKind { kAttentionKv = 0, kMlaLatent = 1, kRecurrentState = 2 };
inline constexpr int kNumMemoryKinds = 3;
// "attention_kv", "mla_latent", "recurrent_state": the `kind` label of cache metrics.
std::string_view MemoryKindName(MemoryKind kind);
inline bool IsPaged(MemoryKind kind) { return kind != MemoryKind::kRecurrentState; }

struct LayerMemory {
  MemoryKind kind = MemoryKind::kAttentionKv;
  // Paged kinds: floats one token occupies in this layer. Recurrent: floats of one sequence's
  // state.
  int64_t num_floats = 0;

  static LayerMemory AttentionKv(int64_t num_kv_heads, int64_t head_dim) {
    return {MemoryKind::kAttentionKv, 2 * num_kv_heads * head_dim};
  }
  static LayerMemory MlaLatent(int64_t kv_lora_rank, int64_t qk_rope_head_dim) {
    return {MemoryKind::kMlaLatent, kv_lora_rank + qk_rope_head_dim};
  }
  static LayerMemory RecurrentState(int64_t state_floats) {
    return {MemoryKind::kRecurrentState, state_floats};
  }
};

struct CacheSpec {
  std::vector<LayerMemory> layers;  // one entry per model layer, in order
  int32_t block_size = 16;          // tokens per block

  // Bytes one token occupies across all paged layers of `kind` (f32).
  int64_t PagedBytesPerToken(MemoryKind kind) const;
  // Bytes one token occupies across all paged layers.
  int64_t PagedBytesPerToken() const;
  // Bytes of one sequence's recurrent state across all recurrent layers.
  int64_t StateBytesPerSequence() const;
  bool HasPagedLayers() const { return PagedBytesPerToken() > 0; }
  bool HasRecurrentLayers() const { return StateBytesPerSequence() > 0; }
};

}  // namespace kvserve::cache

#endif  // KVSERVE_CACHE_CACHE_SPEC_H_
