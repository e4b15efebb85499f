// SequenceKvCache: one sequence's keys and values for every layer, in contiguous memory.
//
// This is the walking skeleton's cache: sized for prompt + max_tokens when a request starts and
// freed when it ends. The paged BlockPool / BlockTable cache replaces it; the engine only asks it
// for the rows of a layer, so that swap stays local.
//
// Layout per layer (kv_dim = num_kv_heads * head_dim):
//   keys   [capacity_tokens][kv_dim]
//   values [capacity_tokens][kv_dim]
//
// Thread-safety: none; owned by the engine thread.
#ifndef KVSERVE_CACHE_SEQUENCE_KV_CACHE_H_
#define KVSERVE_CACHE_SEQUENCE_KV_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvserve::cache {

class SequenceKvCache {
 public:
  SequenceKvCache(int32_t num_layers, int32_t capacity_tokens, int32_t kv_dim);

  // [capacity_tokens, kv_dim] rows of one layer. REQUIRES: 0 <= layer < num_layers.
  float* Keys(int32_t layer);
  float* Values(int32_t layer);

  int32_t capacity_tokens() const { return capacity_tokens_; }
  int32_t num_layers() const { return num_layers_; }
  size_t bytes() const { return storage_.size() * sizeof(float); }

 private:
  int32_t num_layers_;
  int32_t capacity_tokens_;
  int32_t kv_dim_;
  std::vector<float> storage_;  // [num_layers][2][capacity_tokens][kv_dim]
};

}  // namespace kvserve::cache

#endif  // KVSERVE_CACHE_SEQUENCE_KV_CACHE_H_
