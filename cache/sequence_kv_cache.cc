#include "cache/sequence_kv_cache.h"

#include "base/logging.h"

namespace kvserve::cache {

SequenceKvCache::SequenceKvCache(int32_t num_layers, int32_t capacity_tokens, int32_t kv_dim)
    : num_layers_(num_layers),
      capacity_tokens_(capacity_tokens),
      kv_dim_(kv_dim),
      storage_(static_cast<size_t>(num_layers) * 2 * capacity_tokens * kv_dim) {
  KV_CHECK(num_layers > 0 && capacity_tokens > 0 && kv_dim > 0);
}

float* SequenceKvCache::Keys(int32_t layer) {
  KV_CHECK(layer >= 0 && layer < num_layers_) << "layer " << layer;
  return storage_.data() + (static_cast<size_t>(layer) * 2) * capacity_tokens_ * kv_dim_;
}

float* SequenceKvCache::Values(int32_t layer) {
  KV_CHECK(layer >= 0 && layer < num_layers_) << "layer " << layer;
  return storage_.data() + (static_cast<size_t>(layer) * 2 + 1) * capacity_tokens_ * kv_dim_;
}

}  // namespace kvserve::cache
