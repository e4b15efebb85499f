#include "engine/ops.h"

#include <cmath>

namespace kvserve::engine {

void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * dim;
    float* yi = y + i * dim;
    double sum_sq = 0.0;
    for (int64_t d = 0; d < dim; ++d) sum_sq += static_cast<double>(xi[d]) * xi[d];
    const float inv_rms = static_cast<float>(1.0 / std::sqrt(sum_sq / dim + eps));
    for (int64_t d = 0; d < dim; ++d) yi[d] = xi[d] * inv_rms * weight[d];
  }
}

void SiluMul(float* gate, const float* up, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void AddInPlace(float* y, const float* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] += x[i];
}

RotaryEmbedding::RotaryEmbedding(int64_t head_dim, double theta)
    : head_dim_(head_dim), inv_freq_(head_dim / 2) {
  for (int64_t j = 0; j < head_dim / 2; ++j) {
    inv_freq_[j] = std::pow(theta, -2.0 * static_cast<double>(j) / static_cast<double>(head_dim));
  }
}

void RotaryEmbedding::Table(const int32_t* positions, int64_t n, float* cos_sin) const {
  const int64_t half = head_dim_ / 2;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < half; ++j) {
      const double angle = static_cast<double>(positions[i]) * inv_freq_[j];
      cos_sin[(i * half + j) * 2] = static_cast<float>(std::cos(angle));
      cos_sin[(i * half + j) * 2 + 1] = static_cast<float>(std::sin(angle));
    }
  }
}

void RotaryEmbedding::Apply(const float* cos_sin, int64_t n, int64_t num_heads, float* x) const {
  const int64_t half = head_dim_ / 2;
  for (int64_t i = 0; i < n; ++i) {
    const float* cs = cos_sin + i * half * 2;  // [half, 2]
    for (int64_t h = 0; h < num_heads; ++h) {
      float* v = x + (i * num_heads + h) * head_dim_;  // [head_dim]
      for (int64_t j = 0; j < half; ++j) {
        const float c = cs[2 * j], s = cs[2 * j + 1];
        const float a = v[j], b = v[j + half];
        v[j] = a * c - b * s;
        v[j + half] = b * c + a * s;
      }
    }
  }
}

}  // namespace kvserve::engine
