// CacheSpec: what memory each layer of a model needs, declared once per layer.
//
// Three kinds exist, and a model mixes them freely (hybrids are just specs with several kinds):
//   kAttentionKv      paged, per token: K and V, 2 * num_kv_heads * head_dim values
//   kMlaLatent        paged, per token: [c_KV | RoPE(k_R)], kv_lora_rank + qk_rope_head_dim values
//   kRecurrentState   per sequence: a fixed-size state (e.g. an S4 layer's), in a StatePool slot
// Paged values are stored as the layer's KvDtype (f32, or bf16 for attention K/V with
// --kv-cache-dtype=bf16); recurrent state is always f32. Byte sizes follow the element size.
// All paged layers of a sequence cover the same tokens, so they share one block table: a block id
// names the same token range in every paged layer's arena.
#ifndef KVSERVE_CACHE_CACHE_SPEC_H_
#define KVSERVE_CACHE_CACHE_SPEC_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace kvserve::cache {

// Element type of a paged layer's storage.
enum class KvDtype { kF32 = 0, kBf16 = 1 };
inline int64_t KvDtypeBytes(KvDtype dtype) { return dtype == KvDtype::kBf16 ? 2 : 4; }
// "f32", "bf16": the flag's spelling (--kv-cache-dtype). ParseKvDtype is its inverse; nullopt
// for anything else.
std::string_view KvDtypeName(KvDtype dtype);
std::optional<KvDtype> ParseKvDtype(std::string_view name);

enum class MemoryKind { kAttentionKv = 0, kMlaLatent = 1, kRecurrentState = 2 };
inline constexpr int kNumMemoryKinds = 3;
// "attention_kv", "mla_latent", "recurrent_state": the `kind` label of cache metrics.
std::string_view MemoryKindName(MemoryKind kind);
inline bool IsPaged(MemoryKind kind) { return kind != MemoryKind::kRecurrentState; }

struct LayerMemory {
  MemoryKind kind = MemoryKind::kAttentionKv;
  // Paged kinds: values one token occupies in this layer. Recurrent: floats of one sequence's
  // state.
  int64_t num_elements = 0;
  // Storage type of the values; always kF32 for recurrent state.
  KvDtype dtype = KvDtype::kF32;

  int64_t element_bytes() const { return KvDtypeBytes(dtype); }

  static LayerMemory AttentionKv(int64_t num_kv_heads, int64_t head_dim,
                                 KvDtype dtype = KvDtype::kF32) {
    return {MemoryKind::kAttentionKv, 2 * num_kv_heads * head_dim, dtype};
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

  // Bytes one token occupies across all paged layers of `kind` (at each layer's element size).
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
