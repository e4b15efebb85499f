// Causal grouped-query attention over one sequence's cached keys and values.
//
// MHA, MQA and GQA are one code path: query head h reads K/V head h / group_size, where
// group_size = num_heads / num_kv_heads (1 = MHA, num_heads = MQA).
//
// Thread-safety: stateless apart from the caller-provided scratch; safe to call concurrently with
// distinct scratch buffers.
#ifndef KVSERVE_ENGINE_GQA_ATTENTION_H_
#define KVSERVE_ENGINE_GQA_ATTENTION_H_

#include <cstdint>

namespace kvserve::engine {

struct AttentionShape {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
};

// Attention for n new query tokens at positions [start_pos, start_pos + n), each attending to
// cached positions [0, its own position].
//   q:      [n, num_heads, head_dim]
//   keys:   [>= start_pos + n, num_kv_heads, head_dim]  (already holding the new tokens' K)
//   values: [>= start_pos + n, num_kv_heads, head_dim]
//   out:    [n, num_heads, head_dim]
//   scratch: >= start_pos + n floats
// Scores are scaled by 1/sqrt(head_dim); softmax is max-subtracted and accumulated in double so the
// result does not depend on how the sequence was split into chunks.
void GqaAttention(const float* q, const float* keys, const float* values, int64_t start_pos,
                  int64_t n, const AttentionShape& shape, float* scratch, float* out);

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_GQA_ATTENTION_H_
