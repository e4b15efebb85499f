#include "cache/cache_spec.h"

namespace kvserve::cache {

std::string_view MemoryKindName(MemoryKind kind) {
  switch (kind) {
    case MemoryKind::kAttentionKv:
      return "attention_kv";
    case MemoryKind::kMlaLatent:
      return "mla_latent";
    case MemoryKind::kRecurrentState:
      return "recurrent_state";
  }
  return "unknown";
}

int64_t CacheSpec::PagedBytesPerToken(MemoryKind kind) const {
  int64_t floats = 0;
  for (const LayerMemory& layer : layers) {
    if (layer.kind == kind && IsPaged(kind)) floats += layer.num_floats;
  }
  return floats * static_cast<int64_t>(sizeof(float));
}

int64_t CacheSpec::PagedBytesPerToken() const {
  return PagedBytesPerToken(MemoryKind::kAttentionKv) + PagedBytesPerToken(MemoryKind::kMlaLatent);
}

int64_t CacheSpec::StateBytesPerSequence() const {
  int64_t floats = 0;
  for (const LayerMemory& layer : layers) {
    if (layer.kind == MemoryKind::kRecurrentState) floats += layer.num_floats;
  }
  return floats * static_cast<int64_t>(sizeof(float));
}

}  // namespace kvserve::cache
