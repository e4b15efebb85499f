#include "engine/kernels/ops.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(RmsNormTest, MatchesDefinition) {
  const int n = 3, dim = 7;
  auto x = Random(n * dim, 9), w = Random(dim, 10);
  std::vector<float> y(n * dim);
  RmsNorm(x.data(), w.data(), n, dim, 1e-5f, y.data());
  for (int i = 0; i < n; ++i) {
    double ms = 0;
    for (int d = 0; d < dim; ++d) ms += double{x[i * dim + d]} * x[i * dim + d] / dim;
    for (int d = 0; d < dim; ++d) {
      EXPECT_NEAR(y[i * dim + d], x[i * dim + d] / std::sqrt(ms + 1e-5) * w[d], 1e-5);
    }
  }
}

TEST(SiluMulTest, MatchesDefinition) {
  std::vector<float> gate = {-3.0f, -0.5f, 0.0f, 0.5f, 4.0f};
  const std::vector<float> up = {1.0f, 2.0f, 3.0f, -1.0f, 0.25f};
  const std::vector<float> in = gate;
  SiluMul(gate.data(), up.data(), 5);
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(gate[i], in[i] / (1.0 + std::exp(-double{in[i]})) * up[i], 1e-6);
  }
}

}  // namespace
}  // namespace kvserve::engine
