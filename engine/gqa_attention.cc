#include "engine/gqa_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvserve::engine {

void GqaAttention(const float* q, const float* keys, const float* values, int64_t start_pos,
                  int64_t n, const AttentionShape& shape, float* scratch, float* out) {
  const int64_t d = shape.head_dim;
  const int64_t group = shape.num_heads / shape.num_kv_heads;
  const int64_t kv_stride = shape.num_kv_heads * d;  // floats per cached position
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t num_visible = start_pos + i + 1;  // causal: positions [0, start_pos + i]
    for (int64_t h = 0; h < shape.num_heads; ++h) {
      const int64_t g = h / group;
      const float* qh = q + (i * shape.num_heads + h) * d;  // [d]
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t s = 0; s < num_visible; ++s) {
        const float* k = keys + s * kv_stride + g * d;  // [d]
        float dot = 0.0f;
        for (int64_t x = 0; x < d; ++x) dot += qh[x] * k[x];
        scratch[s] = dot * scale;
        max_score = std::max(max_score, scratch[s]);
      }
      double denom = 0.0;
      for (int64_t s = 0; s < num_visible; ++s) {
        scratch[s] = std::exp(scratch[s] - max_score);
        denom += scratch[s];
      }
      const float inv_denom = static_cast<float>(1.0 / denom);
      float* o = out + (i * shape.num_heads + h) * d;  // [d]
      std::fill(o, o + d, 0.0f);
      for (int64_t s = 0; s < num_visible; ++s) {
        const float p = scratch[s] * inv_denom;
        const float* v = values + s * kv_stride + g * d;  // [d]
        for (int64_t x = 0; x < d; ++x) o[x] += p * v[x];
      }
    }
  }
}

}  // namespace kvserve::engine
