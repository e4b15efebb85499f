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

// The polynomial e^-z against double precision over the whole float range a gate can take: the
// relative error bounds ops.h states, 0 and the extremes (where silu is z or 0) included, and a
// count that is no multiple of a vector.
TEST(SiluMulTest, IsWithinItsStatedErrorEverywhere) {
  std::vector<float> in;
  for (float z = -20.0f; z <= 20.0f; z += 0.01171875f) in.push_back(z);
  for (float z : {-1e30f, -200.0f, -100.0f, -88.0f, -87.3f, 87.3f, 88.0f, 100.0f, 1e30f, 1e-30f,
                  -1e-30f, 0.0f, -0.0f}) {
    in.push_back(z);
  }
  std::vector<float> gate = in;
  const std::vector<float> up(in.size(), 1.0f);
  SiluMul(gate.data(), up.data(), static_cast<int64_t>(gate.size()));
  for (size_t i = 0; i < in.size(); ++i) {
    const double z = in[i];
    const double want = z / (1.0 + std::exp(-z));
    const double tolerance =
        z < -87 ? 1e-36 : (std::fabs(z) < 10 ? 1e-6 : 2e-5) * std::fabs(want) + 1e-37;
    EXPECT_NEAR(gate[i], want, tolerance) << "z = " << z;
  }
}

}  // namespace
}  // namespace kvserve::engine
