#include "engine/kernels/row_invariant_matmul.h"

#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/kernels/thread_pool.h"
#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

// The summation order the header documents, one element at a time in plain scalar code.
float DocumentedOrder(const float* x, const float* w, int64_t k) {
  float lane[16] = {};
  const int64_t k16 = k / 16 * 16;
  for (int64_t i = 0; i < k16; ++i) lane[i % 16] = std::fma(x[i], w[i], lane[i % 16]);
  for (int l = 0; l < 8; ++l) lane[l] += lane[l + 8];
  for (int l = 0; l < 4; ++l) lane[l] += lane[l + 4];
  for (int l = 0; l < 2; ++l) lane[l] += lane[l + 2];
  float sum = lane[0] + lane[1];
  for (int64_t i = k16; i < k; ++i) sum = std::fma(x[i], w[i], sum);
  return sum;
}

// Bit for bit, for every tile shape and tail (m, n not multiples of the tile, k with and without
// a remainder mod 16), on one and two threads.
TEST(RowInvariantMatmulTest, EveryElementFollowsTheDocumentedOrderExactly) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int threads : {1, 2}) {
    SetKernelThreads(threads);
    for (const auto& [m, n, k] : std::vector<std::array<int64_t, 3>>{
             {1, 1, 1}, {1, 7, 15}, {3, 5, 16}, {5, 9, 33}, {17, 70, 256}, {9, 4100, 1040}}) {
      std::vector<float> x(m * k), w(n * k), y(m * n);
      for (float& v : x) v = dist(rng);
      for (float& v : w) v = dist(rng);
      RowInvariantMatmul(x.data(), m, w.data(), n, k, y.data());
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          const float expected = DocumentedOrder(&x[i * k], &w[j * k], k);
          ASSERT_EQ(std::memcmp(&y[i * n + j], &expected, sizeof(float)), 0)
              << m << "x" << n << "x" << k << " element (" << i << ", " << j << "), " << threads
              << " threads: " << y[i * n + j] << " vs " << expected;
        }
      }
    }
  }
  SetKernelThreads(1);
}

}  // namespace
}  // namespace kvserve::engine
