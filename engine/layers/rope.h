// Rotary position embedding (RoPE, Su et al., "RoFormer", 2021) and its YaRN extension (Peng et
// al., "YaRN: Efficient Context Window Extension of Large Language Models", 2023); the equations
// are in docs/math.md §1.
//
// Thread-safety: immutable after construction; Table and Apply are const and may run concurrently.
#ifndef KVSERVE_ENGINE_LAYERS_ROPE_H_
#define KVSERVE_ENGINE_LAYERS_ROPE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "engine/checkpoint/model_config.h"

namespace kvserve::engine {

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
// multiplied by get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim); or with a
// Llama-style RopeScaling, inv_freq / factor ("linear") or Llama 3.1's wavelength bands
// ("llama3", docs/model-format.md).
class RotaryEmbedding {
 public:
  RotaryEmbedding(int64_t head_dim, double theta, RopeLayout layout = RopeLayout::kHalfSplit,
                  const std::optional<YarnScaling>& yarn = std::nullopt,
                  const std::optional<RopeScaling>& scaling = std::nullopt);

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

#endif  // KVSERVE_ENGINE_LAYERS_ROPE_H_
