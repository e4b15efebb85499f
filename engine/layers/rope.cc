#include "engine/layers/rope.h"

#include <algorithm>
#include <cmath>

namespace kvserve::engine {

RotaryEmbedding::RotaryEmbedding(int64_t head_dim, double theta, RopeLayout layout,
                                 const std::optional<YarnScaling>& yarn,
                                 const std::optional<RopeScaling>& scaling)
    : head_dim_(head_dim), layout_(layout), inv_freq_(head_dim / 2) {
  const int64_t half = head_dim / 2;
  for (int64_t j = 0; j < half; ++j) {
    inv_freq_[j] = std::pow(theta, -2.0 * static_cast<double>(j) / static_cast<double>(head_dim));
  }
  if (scaling.has_value()) {
    const double factor = scaling->factor;
    // Llama 3.1: a frequency whose wavelength 2π/f exceeds original / low_freq_factor is divided
    // by factor, one shorter than original / high_freq_factor is kept, and in between the two are
    // blended by s = (original / wavelength − low) / (high − low): (1 − s)·f/factor + s·f.
    const double original = scaling->original_max_position_embeddings;
    const double low = scaling->low_freq_factor, high = scaling->high_freq_factor;
    for (int64_t j = 0; j < half; ++j) {
      const double f = inv_freq_[j];
      if (scaling->type == RopeScaling::Type::kLinear) {
        inv_freq_[j] = f / factor;
        continue;
      }
      const double wavelength = 2 * M_PI / f;
      if (wavelength > original / low) {
        inv_freq_[j] = f / factor;
      } else if (wavelength >= original / high) {
        const double s = (original / wavelength - low) / (high - low);
        inv_freq_[j] = (1 - s) * f / factor + s * f;
      }
    }
  }
  if (!yarn.has_value()) return;
  // Frequencies that turn fewer than beta_slow times over the original context are interpolated
  // (divided by factor), those that turn more than beta_fast times are kept, with a linear ramp in
  // between. correction_dim(r) is the dim index whose frequency turns r times over that context.
  const double d = static_cast<double>(head_dim);
  auto correction_dim = [&](double rotations) {
    return d * std::log(yarn->original_max_position_embeddings / (rotations * 2 * M_PI)) /
           (2 * std::log(theta));
  };
  const double low = std::max(std::floor(correction_dim(yarn->beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(yarn->beta_slow)), d - 1);
  if (high == low) high += 0.001;
  for (int64_t j = 0; j < half; ++j) {
    const double ramp = std::clamp((static_cast<double>(j) - low) / (high - low), 0.0, 1.0);
    const double extrapolate = 1.0 - ramp;
    inv_freq_[j] = inv_freq_[j] / yarn->factor * (1.0 - extrapolate) + inv_freq_[j] * extrapolate;
  }
  attention_factor_ =
      YarnGetMscale(yarn->factor, yarn->mscale) / YarnGetMscale(yarn->factor, yarn->mscale_all_dim);
}

void RotaryEmbedding::Table(const int32_t* positions, int64_t n, float* cos_sin) const {
  const int64_t half = head_dim_ / 2;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < half; ++j) {
      const double angle = static_cast<double>(positions[i]) * inv_freq_[j];
      cos_sin[(i * half + j) * 2] = static_cast<float>(std::cos(angle) * attention_factor_);
      cos_sin[(i * half + j) * 2 + 1] = static_cast<float>(std::sin(angle) * attention_factor_);
    }
  }
}

void RotaryEmbedding::Apply(const float* cos_sin, int64_t n, int64_t num_heads, float* x) const {
  ApplyStrided(cos_sin, n, num_heads, head_dim_, x);
}

void RotaryEmbedding::ApplyStrided(const float* cos_sin, int64_t n, int64_t num_heads,
                                   int64_t row_stride, float* x) const {
  const int64_t half = head_dim_ / 2;
  // Pair j is (v[a], v[b]): a = j, b = j + half (half-split) or a = 2j, b = 2j + 1 (interleaved).
  const int64_t a_step = layout_ == RopeLayout::kHalfSplit ? 1 : 2;
  const int64_t b_offset = layout_ == RopeLayout::kHalfSplit ? half : 1;
  for (int64_t i = 0; i < n; ++i) {
    const float* cs = cos_sin + i * half * 2;  // [half, 2]
    for (int64_t h = 0; h < num_heads; ++h) {
      float* v = x + (i * num_heads + h) * row_stride;  // [head_dim] rotary dims of this head
      for (int64_t j = 0; j < half; ++j) {
        const float c = cs[2 * j], s = cs[2 * j + 1];
        float& a = v[j * a_step];
        float& b = v[j * a_step + b_offset];
        const float a0 = a, b0 = b;
        a = a0 * c - b0 * s;
        b = b0 * c + a0 * s;
      }
    }
  }
}

}  // namespace kvserve::engine
