// Causal grouped-query attention over one sequence's cached keys and values, read through its
// block table (PagedAttention).
//
// MHA, MQA and GQA are one code path: query head h reads K/V head h / group_size, where
// group_size = num_heads / num_kv_heads (1 = MHA, num_heads = MQA).
//
// Thread-safety: stateless apart from the caller-provided scratch; safe to call concurrently with
// distinct scratch buffers.
#ifndef KVSERVE_ENGINE_LAYERS_GQA_ATTENTION_H_
#define KVSERVE_ENGINE_LAYERS_GQA_ATTENTION_H_

#include <cstdint>

namespace kvserve::engine {

struct AttentionShape {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  // Sliding window (Qwen2 / Mistral style): a query at position p sees keys at positions
  // (p - window, p], i.e. itself and the window - 1 before it. 0: full causal attention.
  int64_t window = 0;
};

// Where a sequence's cached K and V rows live. Position s is cache row
//   slot(s) = block_table[s / block_size] * block_size + s % block_size
// found at keys + slot(s) * row_stride and values + slot(s) * row_stride, each row holding
// [num_kv_heads, head_dim] floats. A contiguous cache is the one-block case: block_table = {0} and
// block_size >= the sequence length.
//
//   paged arena of one layer (row_stride = 2 * kv_dim):
//   block b: | slot b*bs+0: K[kv_dim] V[kv_dim] | slot b*bs+1: K V | ... | slot b*bs+bs-1: K V |
struct KvView {
  const float* keys = nullptr;
  const float* values = nullptr;
  int64_t row_stride = 0;
  const int32_t* block_table = nullptr;
  int64_t block_size = 0;
};

// Attention for n new query tokens at positions [start_pos, start_pos + n), each attending to
// cached positions [0, its own position], or with shape.window > 0 to the last `window` of them.
// Older positions stay in the cache; they are only not read.
//   q:       [n, num_heads, head_dim]
//   kv:      rows for positions [0, start_pos + n), already holding the new tokens' K and V
//   out:     [n, num_heads, head_dim]
//   scratch: >= start_pos + n floats
// Scores are scaled by 1/sqrt(head_dim); softmax is max-subtracted with the sum accumulated in
// double. Positions are visited in order whatever the block layout, so paged and contiguous views
// of the same data give bit-identical results, and so do different splits into chunks.
void GqaAttention(const float* q, const KvView& kv, int64_t start_pos, int64_t n,
                  const AttentionShape& shape, float* scratch, float* out);

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_LAYERS_GQA_ATTENTION_H_
