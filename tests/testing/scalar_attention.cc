#include "tests/testing/scalar_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/kernels/bf16_matmul.h"
#include "engine/kernels/ops.h"

namespace kvserve::engine {
namespace {

// Calls fn(s, row_offset) for positions s in [begin, end) in order, walking the block table once
// per block instead of dividing per position.
template <typename Fn>
inline void ForEachRow(const KvView& kv, int64_t begin, int64_t end, Fn fn) {
  for (int64_t b = begin / kv.block_size, first = b * kv.block_size; first < end;
       first += kv.block_size, ++b) {
    const int64_t base = int64_t{kv.block_table[b]} * kv.block_size;
    const int64_t stop = std::min(end - first, kv.block_size);
    for (int64_t j = std::max<int64_t>(begin - first, 0); j < stop; ++j) {
      fn(first + j, (base + j) * kv.row_stride);
    }
  }
}

// A K or V head row widened to f32 (a copy only for bf16).
const float* Row(const void* base, cache::KvDtype dtype, int64_t offset, int64_t d, float* buf) {
  if (dtype == cache::KvDtype::kF32) return static_cast<const float*>(base) + offset;
  const uint16_t* bits = static_cast<const uint16_t*>(base) + offset;
  for (int64_t x = 0; x < d; ++x) buf[x] = Bf16ToFloat(bits[x]);
  return buf;
}

}  // namespace

void ScalarGqaAttention(const float* q, const KvView& kv, int64_t start_pos, int64_t n,
                        const AttentionShape& shape, float* scratch, float* out) {
  const int64_t d = shape.head_dim;
  const int64_t group = shape.num_heads / shape.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<float> buf(d);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t num_visible = start_pos + i + 1;  // causal: positions [0, start_pos + i]
    // Sliding window: only the last `window` of them.
    const int64_t first = shape.window > 0 ? std::max<int64_t>(0, num_visible - shape.window) : 0;
    for (int64_t h = 0; h < shape.num_heads; ++h) {
      const int64_t head_offset = (h / group) * d;
      const float* qh = q + (i * shape.num_heads + h) * d;  // [d]
      float max_score = -std::numeric_limits<float>::infinity();
      ForEachRow(kv, first, num_visible, [&](int64_t s, int64_t row) {
        const float* k = Row(kv.keys, kv.dtype, row + head_offset, d, buf.data());  // [d]
        scratch[s] = Dot(qh, k, d) * scale;
        max_score = std::max(max_score, scratch[s]);
      });
      double denom = 0.0;
      for (int64_t s = first; s < num_visible; ++s) {
        scratch[s] = std::exp(scratch[s] - max_score);
        denom += scratch[s];
      }
      const float inv_denom = static_cast<float>(1.0 / denom);
      float* o = out + (i * shape.num_heads + h) * d;  // [d]
      std::fill(o, o + d, 0.0f);
      ForEachRow(kv, first, num_visible, [&](int64_t s, int64_t row) {
        const float p = scratch[s] * inv_denom;
        const float* v = Row(kv.values, kv.dtype, row + head_offset, d, buf.data());  // [d]
        for (int64_t x = 0; x < d; ++x) o[x] += p * v[x];
      });
    }
  }
}

}  // namespace kvserve::engine
