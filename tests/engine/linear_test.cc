#include "engine/linear.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

TEST(LinearTest, MatchesNaiveMatmulForPrefillAndDecodeShapes) {
  std::mt19937 rng(42);
  std::normal_distribution<float> dist;
  const int64_t out = 37, in = 53;
  std::vector<float> w(out * in);
  for (float& v : w) v = dist(rng);
  auto linear = Linear::Create(w, out, in);
  ASSERT_TRUE(linear.ok()) << linear.status();
  for (int64_t m : {1, 2, 7, 64}) {
    std::vector<float> x(m * in), y(m * out);
    for (float& v : x) v = dist(rng);
    linear->Forward(x.data(), m, y.data());
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t o = 0; o < out; ++o) {
        double acc = 0;
        for (int64_t k = 0; k < in; ++k) acc += double{x[i * in + k]} * w[o * in + k];
        EXPECT_NEAR(y[i * out + o], acc, 1e-4) << "m=" << m << " row " << i << " col " << o;
      }
    }
  }
}

TEST(LinearTest, RejectsWeightOfWrongSize) {
  auto linear = Linear::Create(std::vector<float>(10), 3, 4);
  ASSERT_FALSE(linear.ok());
  EXPECT_EQ(linear.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvserve::engine
