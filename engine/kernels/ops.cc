#include "engine/kernels/ops.h"

#include <algorithm>
#include <cmath>

#include "engine/kernels/thread_pool.h"

namespace kvserve::engine {

namespace {

// A prefill chunk's element-wise work is shared by the kernel threads in pieces of about this many
// elements (each element's arithmetic is the same on any thread, so the bits do not change); a
// decode step's few rows stay on the calling thread, below a fork-join's cost.
constexpr int64_t kParallelElements = int64_t{1} << 15;

// fn(begin, end) over [0, count) in pieces of `piece`, on the kernel threads when count is large.
template <typename Fn>
void ForPieces(int64_t count, int64_t piece, Fn fn) {
  if (count < kParallelElements || KernelThreads() == 1) {
    fn(int64_t{0}, count);
    return;
  }
  ParallelFor((count + piece - 1) / piece,
              [&](int64_t t) { fn(t * piece, std::min(count, (t + 1) * piece)); });
}

}  // namespace

void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps, float* y) {
  const int64_t rows_per_piece = std::max<int64_t>(1, kParallelElements / 4 / dim);
  ForPieces(n * dim, rows_per_piece * dim, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin / dim; i < end / dim; ++i) {
      const float* xi = x + i * dim;
      float* yi = y + i * dim;
      double sum_sq = 0.0;
      for (int64_t d = 0; d < dim; ++d) sum_sq += static_cast<double>(xi[d]) * xi[d];
      const float inv_rms = static_cast<float>(1.0 / std::sqrt(sum_sq / dim + eps));
      for (int64_t d = 0; d < dim; ++d) yi[d] = xi[d] * inv_rms * weight[d];
    }
  });
}

void SiluMul(float* gate, const float* up, int64_t count) {
  ForPieces(count, kParallelElements / 4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float g = gate[i];
      gate[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  });
}

void Gelu(float* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    x[i] = static_cast<float>(0.5 * x[i] * (1.0 + std::erf(x[i] * M_SQRT1_2)));
  }
}

void AddInPlace(float* y, const float* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] += x[i];
}

void AddBias(float* y, const float* bias, int64_t n, int64_t dim) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t d = 0; d < dim; ++d) y[i * dim + d] += bias[d];
  }
}

}  // namespace kvserve::engine
