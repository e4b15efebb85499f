// Element-wise and normalisation kernels of the Llama block, f32.
//
// Layout contracts are written per function, llm.c style. All functions are pure (no state) and
// thread-safe. `n` is always the number of rows (tokens).
#ifndef KVSERVE_ENGINE_OPS_H_
#define KVSERVE_ENGINE_OPS_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "engine/model_config.h"

namespace kvserve::engine {

// RMSNorm: y[i, :] = x[i, :] / sqrt(mean(x[i, :]²) + eps) * weight.
// x, y: [n, dim]; weight: [dim]. x may equal y.
void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps, float* y);

// SwiGLU gate: gate[i] = silu(gate[i]) * up[i] for i < count, silu(z) = z / (1 + e^-z).
void SiluMul(float* gate, const float* up, int64_t count);

// a · b over n elements in 8 interleaved partial sums combined in a fixed order: the compiler turns
// the lanes into one SIMD register, and the result depends on nothing but the inputs (the same on
// every call, batch and block layout).
inline float Dot(const float* a, const float* b, int64_t n) {
  float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t x = 0;
  for (; x + 8 <= n; x += 8) {
    for (int l = 0; l < 8; ++l) lanes[l] += a[x + l] * b[x + l];
  }
  float tail = 0.0f;
  for (; x < n; ++x) tail += a[x] * b[x];
  return ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) +
         ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])) + tail;
}

// y[i] += a * x[i] for i < count.
inline void Axpy(float a, const float* x, float* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] += a * x[i];
}

// GELU, exact (erf) form: x · ½(1 + erf(x/√2)), in place over count elements.
void Gelu(float* x, int64_t count);

// y[i] += x[i] for i < count.
void AddInPlace(float* y, const float* x, int64_t count);

// How a head's rotary dims are paired.
enum class RopeLayout {
  // Hugging Face "rotate-half" (Llama): dim j pairs with j + d/2.
  kHalfSplit,
  // Adjacent pairs (2j, 2j+1), Su's original R_n: DeepSeek-V2's decoupled RoPE dims as stored in
  // its checkpoints. Pairing them half-split gives a silently wrong model.
  kInterleaved,
};

// Rotary position embedding: pair j is rotated by pos · inv_freq[j], inv_freq[j] = θ^(-2j/d), or
// with YaRN the ramp between interpolated (/factor) and extrapolated frequencies, and cos/sin
// multiplied by get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim).
class RotaryEmbedding {
 public:
  RotaryEmbedding(int64_t head_dim, double theta, RopeLayout layout = RopeLayout::kHalfSplit,
                  const std::optional<YarnScaling>& yarn = std::nullopt);

  // Fills the cos/sin table for positions[0..n): cos_sin: [n, head_dim/2, 2] as (cos, sin).
  // Angles are computed in double so long contexts keep full f32 precision.
  void Table(const int32_t* positions, int64_t n, float* cos_sin) const;

  // Rotates x: [n, num_heads, head_dim] in place with a table from Table() for the same n rows.
  void Apply(const float* cos_sin, int64_t n, int64_t num_heads, float* x) const;

  // Rotates x: [n, num_heads, row_stride] whose first head_dim floats per head row are rotary, with
  // rows `row_stride` apart (for rotary dims embedded in wider heads).
  void ApplyStrided(const float* cos_sin, int64_t n, int64_t num_heads, int64_t row_stride,
                    float* x) const;

  int64_t head_dim() const { return head_dim_; }
  const std::vector<double>& inv_freq() const { return inv_freq_; }

 private:
  int64_t head_dim_;
  RopeLayout layout_;
  std::vector<double> inv_freq_;  // [head_dim/2]
  double attention_factor_ = 1.0;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_OPS_H_
