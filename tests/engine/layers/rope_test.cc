#include "engine/layers/rope.h"

#include <cmath>
#include <complex>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

// Naive RoPE in complex form: the pair (x[j], x[j + d/2]) is the complex number x[j] + i·x[j +
// d/2], multiplied by e^{i·pos·θ^(-2j/d)}.
std::vector<float> NaiveRope(const std::vector<float>& x, int n, int heads, int d,
                             const std::vector<int32_t>& pos, double theta) {
  std::vector<float> out(x.size());
  for (int i = 0; i < n; ++i) {
    for (int h = 0; h < heads; ++h) {
      const float* v = &x[(i * heads + h) * d];
      float* o = &out[(i * heads + h) * d];
      for (int j = 0; j < d / 2; ++j) {
        const double angle = pos[i] * std::pow(theta, -2.0 * j / d);
        const std::complex<double> z =
            std::complex<double>(v[j], v[j + d / 2]) * std::polar(1.0, angle);
        o[j] = static_cast<float>(z.real());
        o[j + d / 2] = static_cast<float>(z.imag());
      }
    }
  }
  return out;
}

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(RotaryEmbeddingTest, MatchesComplexRotationReference) {
  for (double theta : {10000.0, 500000.0}) {
    const int n = 5, heads = 3, d = 16;
    const std::vector<int32_t> pos = {0, 1, 7, 100, 4095};
    auto x = Random(n * heads * d, 5);
    RotaryEmbedding rope(d, theta);
    std::vector<float> table(n * d);
    rope.Table(pos.data(), n, table.data());
    std::vector<float> y = x;
    rope.Apply(table.data(), n, heads, y.data());
    const auto expected = NaiveRope(x, n, heads, d, pos, theta);
    for (size_t i = 0; i < y.size(); ++i)
      EXPECT_NEAR(y[i], expected[i], 2e-5f) << "theta " << theta << " i " << i;
  }
}

TEST(RotaryEmbeddingTest, PositionZeroIsIdentity) {
  const int d = 8;
  auto x = Random(2 * d, 6);
  RotaryEmbedding rope(d, 10000.0);
  const int32_t pos = 0;
  std::vector<float> table(d);
  rope.Table(&pos, 1, table.data());
  std::vector<float> y = x;
  rope.Apply(table.data(), 1, 2, y.data());
  EXPECT_EQ(y, x);
}

// RoPE's point: <R(m)q, R(n)k> depends only on m - n.
TEST(RotaryEmbeddingTest, DotProductDependsOnlyOnRelativePosition) {
  const int d = 32;
  auto q = Random(d, 7), k = Random(d, 8);
  RotaryEmbedding rope(d, 10000.0);
  auto rotated_dot = [&](int32_t m, int32_t n) {
    std::vector<float> table(d), qm = q, kn = k;
    rope.Table(&m, 1, table.data());
    rope.Apply(table.data(), 1, 1, qm.data());
    rope.Table(&n, 1, table.data());
    rope.Apply(table.data(), 1, 1, kn.data());
    double dot = 0;
    for (int i = 0; i < d; ++i) dot += double{qm[i]} * kn[i];
    return dot;
  };
  EXPECT_NEAR(rotated_dot(10, 3), rotated_dot(107, 100), 1e-4);
  EXPECT_NEAR(rotated_dot(5, 5), rotated_dot(0, 0), 1e-4);
}

// Interleaved layout: pair (2j, 2j+1) rotates like the complex number x[2j] + i·x[2j+1].
TEST(RotaryEmbeddingTest, InterleavedLayoutRotatesAdjacentPairs) {
  const int d = 8;
  const int32_t pos = 5;
  RotaryEmbedding rope(d, 10000.0, RopeLayout::kInterleaved);
  auto x = Random(d, 12);
  std::vector<float> table(d), y = x;
  rope.Table(&pos, 1, table.data());
  rope.Apply(table.data(), 1, 1, y.data());
  for (int j = 0; j < d / 2; ++j) {
    const std::complex<double> z = std::complex<double>(x[2 * j], x[2 * j + 1]) *
                                   std::polar(1.0, pos * std::pow(1e4, -2.0 * j / d));
    EXPECT_NEAR(y[2 * j], z.real(), 1e-5);
    EXPECT_NEAR(y[2 * j + 1], z.imag(), 1e-5);
  }
}

// YaRN for d = 8, θ = 10⁴, factor 4, original context 4096, β 32/1: correction dims 1.31 and 2.81,
// so low = 1, high = 3, ramp [0, 0, 0.5, 1]: frequencies 0-1 kept, 2 blended, 3 divided by 4
// (values from tools/reference/deepseek_v2.py's fixture).
// d = 8, θ = 1e4: inv_freq 1, 0.1, 0.01, 0.001 (wavelengths 6.3, 63, 628, 6283). Llama 3.1 with
// original context 64, low 1, high 4 (band edges 64 and 16) and factor 8 keeps frequency 0, blends
// frequency 1 with s = (64 / 62.83185 − 1) / 3 = 0.0061972 into 1/80 + 0.0875 s, and divides 2 and
// 3 by 8 (the same numbers as tools/reference/llama.py's self-check).
TEST(RotaryEmbeddingTest, Llama3ScalingKeepsBlendsAndDividesByWavelength) {
  RopeScaling llama3;
  llama3.type = RopeScaling::Type::kLlama3;
  llama3.factor = 8;
  llama3.low_freq_factor = 1;
  llama3.high_freq_factor = 4;
  llama3.original_max_position_embeddings = 64;
  RotaryEmbedding rope(8, 1e4, RopeLayout::kHalfSplit, std::nullopt, llama3);
  EXPECT_DOUBLE_EQ(rope.inv_freq()[0], 1.0);
  EXPECT_NEAR(rope.inv_freq()[1], 0.013042256, 1e-9);
  EXPECT_NEAR(rope.inv_freq()[2], 0.00125, 1e-15);
  EXPECT_NEAR(rope.inv_freq()[3], 0.000125, 1e-16);
}

TEST(RotaryEmbeddingTest, LinearScalingDividesEveryFrequency) {
  RopeScaling linear;
  linear.factor = 4;
  RotaryEmbedding plain(8, 1e4), scaled(8, 1e4, RopeLayout::kHalfSplit, std::nullopt, linear);
  for (int j = 0; j < 4; ++j) EXPECT_DOUBLE_EQ(scaled.inv_freq()[j], plain.inv_freq()[j] / 4);
}

TEST(RotaryEmbeddingTest, YarnRampsBetweenExtrapolatedAndInterpolatedFrequencies) {
  const YarnScaling yarn{4.0, 4096, 32.0, 1.0, 0.707, 0.707};
  RotaryEmbedding rope(8, 10000.0, RopeLayout::kInterleaved, yarn);
  ASSERT_EQ(rope.inv_freq().size(), 4u);
  EXPECT_DOUBLE_EQ(rope.inv_freq()[0], 1.0);
  EXPECT_NEAR(rope.inv_freq()[1], 0.1, 1e-15);
  EXPECT_NEAR(rope.inv_freq()[2], 0.01 * 0.5 + 0.01 / 4 * 0.5, 1e-15);
  EXPECT_NEAR(rope.inv_freq()[3], 0.001 / 4, 1e-15);
  // mscale == mscale_all_dim: cos/sin are not scaled.
  const int32_t pos = 3;
  std::vector<float> table(8);
  rope.Table(&pos, 1, table.data());
  EXPECT_NEAR(table[0], std::cos(3.0), 1e-6);
}

TEST(RotaryEmbeddingTest, YarnScalesCosAndSinByTheMscaleRatio) {
  const YarnScaling yarn{40.0, 4096, 32.0, 1.0, 1.0, 0.707};
  RotaryEmbedding rope(8, 10000.0, RopeLayout::kInterleaved, yarn);
  const int32_t pos = 0;
  std::vector<float> table(8);
  rope.Table(&pos, 1, table.data());
  const double expected = (0.1 * 1.0 * std::log(40.0) + 1) / (0.1 * 0.707 * std::log(40.0) + 1);
  EXPECT_NEAR(table[0], expected, 1e-6);  // cos(0) · factor
}

}  // namespace
}  // namespace kvserve::engine
