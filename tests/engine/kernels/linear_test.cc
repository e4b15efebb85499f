#include "engine/kernels/linear.h"

#include <omp.h>

#include <cstring>
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
  // Row-invariant (RowInvariantMatmul for every m) and not (oneDNN from 16 rows on).
  for (bool invariant : {true, false}) {
    linear->set_row_invariant(invariant);
    for (int64_t m : {1, 2, 7, 16, 64}) {
      std::vector<float> x(m * in), y(m * out);
      for (float& v : x) v = dist(rng);
      linear->Forward(x.data(), m, y.data());
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t o = 0; o < out; ++o) {
          double acc = 0;
          for (int64_t k = 0; k < in; ++k) acc += double{x[i * in + k]} * w[o * in + k];
          EXPECT_NEAR(y[i * out + o], acc, 1e-4)
              << "invariant=" << invariant << " m=" << m << " row " << i << " col " << o;
        }
      }
    }
  }
}

// Each row computed alone must equal the same row inside a batch of any size, whatever the
// neighbouring rows hold: the property the engine's batch invariance rests on. Shapes: the default
// model's projections (hidden 256, intermediate 688, vocab 320), an MLA-like 576/1536 pair, one
// whose K is not a multiple of 16, and one large enough to be split across threads.
TEST(LinearTest, RowsAreBitIdenticalAloneAndInAnyBatch) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const int64_t shapes[][2] = {{256, 256},  {688, 256},  {256, 688}, {320, 256},
                               {1536, 576}, {576, 1536}, {37, 53},   {4096, 1024}};
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (const auto& [out, in] : shapes) {
      std::vector<float> w(out * in);
      for (float& v : w) v = dist(rng);
      auto linear = Linear::Create(w, out, in);
      ASSERT_TRUE(linear.ok()) << linear.status();
      ASSERT_TRUE(linear->row_invariant());
      const int64_t max_m = 1100;
      std::vector<float> x(max_m * in), y(max_m * out), alone(out);
      for (float& v : x) v = dist(rng);
      for (int64_t m : {1, 2, 5, 15, 16, 17, 32, 100, 255, 256, 257, 300, 1100}) {
        linear->Forward(x.data(), m, y.data());
        for (int64_t row : {int64_t{0}, m / 2, m - 1}) {
          linear->Forward(&x[row * in], 1, alone.data());
          ASSERT_EQ(std::memcmp(alone.data(), &y[row * out], out * sizeof(float)), 0)
              << threads << " threads, " << out << "x" << in << ": row " << row << " of m=" << m
              << " differs from the row alone";
        }
      }
    }
  }
  omp_set_num_threads(1);
}

// Without row invariance a row alone and the same row in a batch of 32 (oneDNN) differ in their
// low bits: the check above would catch a Linear that lost its fixed summation order.
TEST(LinearTest, WithoutRowInvarianceSmallBatchesDiffer) {
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const int64_t out = 256, in = 256, m = 32;
  std::vector<float> w(out * in), x(m * in), y(m * out), alone(out);
  for (float& v : w) v = dist(rng);
  for (float& v : x) v = dist(rng);
  auto linear = Linear::Create(w, out, in);
  ASSERT_TRUE(linear.ok());
  linear->set_row_invariant(false);
  linear->Forward(x.data(), m, y.data());
  int differing_rows = 0;
  for (int64_t row = 0; row < m; ++row) {
    linear->Forward(&x[row * in], 1, alone.data());
    differing_rows += std::memcmp(alone.data(), &y[row * out], out * sizeof(float)) != 0;
  }
  EXPECT_GT(differing_rows, 0);
}

TEST(LinearTest, RejectsWeightOfWrongSize) {
  auto linear = Linear::Create(std::vector<float>(10), 3, 4);
  ASSERT_FALSE(linear.ok());
  EXPECT_EQ(linear.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvserve::engine
