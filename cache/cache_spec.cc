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

std::string_view KvDtypeName(KvDtype dtype) { return dtype == KvDtype::kBf16 ? "bf16" : "f32"; }

std::optional<KvDtype> ParseKvDtype(std::string_view name) {
  for (KvDtype dtype : {KvDtype::kF32, KvDtype::kBf16}) {
    if (name == KvDtypeName(dtype)) return dtype;
  }
  return std::nullopt;
}

int64_t CacheSpec::PagedBytesPerToken(MemoryKind kind) const {
  int64_t bytes = 0;
  for (const LayerMemory& layer : layers) {
    if (layer.kind == kind && IsPaged(kind)) bytes += layer.num_elements * layer.element_bytes();
  }
  return bytes;
}

int64_t CacheSpec::PagedBytesPerToken() const {
  return PagedBytesPerToken(MemoryKind::kAttentionKv) + PagedBytesPerToken(MemoryKind::kMlaLatent);
}

int64_t CacheSpec::StateBytesPerSequence() const {
  int64_t floats = 0;
  for (const LayerMemory& layer : layers) {
    if (layer.kind == MemoryKind::kRecurrentState) floats += layer.num_elements;
  }
  return floats * static_cast<int64_t>(sizeof(float));
}

}  // namespace kvserve::cache
