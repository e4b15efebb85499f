// Element-wise and normalisation kernels of the Llama block, f32.
//
// Layout contracts are written per function, llm.c style. All functions are pure (no state) and
// thread-safe. `n` is always the number of rows (tokens).
#ifndef KVSERVE_ENGINE_OPS_H_
#define KVSERVE_ENGINE_OPS_H_

#include <cstdint>
#include <vector>

namespace kvserve::engine {

// RMSNorm: y[i, :] = x[i, :] / sqrt(mean(x[i, :]²) + eps) * weight.
// x, y: [n, dim]; weight: [dim]. x may equal y.
void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps, float* y);

// SwiGLU gate: gate[i] = silu(gate[i]) * up[i] for i < count, silu(z) = z / (1 + e^-z).
void SiluMul(float* gate, const float* up, int64_t count);

// y[i] += x[i] for i < count.
void AddInPlace(float* y, const float* x, int64_t count);

// Rotary position embedding in the Hugging Face "rotate-half" layout: dimension j is paired with
// j + head_dim/2 (not with j+1 as in the original interleaved form), rotated by pos ·
// θ^(-2j/head_dim).
class RotaryEmbedding {
 public:
  RotaryEmbedding(int64_t head_dim, double theta);

  // Fills the cos/sin table for positions[0..n): cos_sin: [n, head_dim/2, 2] as (cos, sin).
  // Angles are computed in double so long contexts keep full f32 precision.
  void Table(const int32_t* positions, int64_t n, float* cos_sin) const;

  // Rotates x: [n, num_heads, head_dim] in place with a table from Table() for the same n rows.
  void Apply(const float* cos_sin, int64_t n, int64_t num_heads, float* x) const;

  int64_t head_dim() const { return head_dim_; }

 private:
  int64_t head_dim_;
  std::vector<double> inv_freq_;  // [head_dim/2]
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_OPS_H_
