#include "engine/kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "engine/kernels/exp2_poly.h"
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
      // Σ x² in double, in 8 interleaved lanes (one AVX-512 vector; a single chain of dependent
      // adds ran at a quarter of the loads' speed), added in a fixed order: the same bits on any
      // row of any batch.
      double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t d = 0;
      for (; d + 8 <= dim; d += 8) {
        for (int l = 0; l < 8; ++l) lanes[l] += static_cast<double>(xi[d + l]) * xi[d + l];
      }
      for (; d < dim; ++d) lanes[0] += static_cast<double>(xi[d]) * xi[d];
      const double sum_sq = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) +
                            ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
      const float inv_rms = static_cast<float>(1.0 / std::sqrt(sum_sq / dim + eps));
      for (int64_t d = 0; d < dim; ++d) yi[d] = xi[d] * inv_rms * weight[d];
    }
  });
}

namespace {

// e^x, branch-free so that GCC vectorizes the loops that call it (std::exp stays a scalar call):
// 2^t (exp2_poly.h) for t = x·log2(e) clamped to [-126, 128] (r = 128 writes +inf, as e^x
// overflows near there). Relative error < 1e-6 for |x| < 10; the rounding of t grows it to ~1e-5
// towards the clamps.
inline float Exp(float x) {
  constexpr float kLog2e = 1.44269504f;
  float t = x * kLog2e;
  t = t > -126.0f ? t : -126.0f;
  t = t < 128.0f ? t : 128.0f;
  const float r = (t + kExp2RoundMagic) - kExp2RoundMagic;
  const float f = t - r;
  // Horner, written out: GCC vectorizes the caller's loop only without an inner loop.
  float p = kExp2Poly[7];
  p = std::fma(p, f, kExp2Poly[6]);
  p = std::fma(p, f, kExp2Poly[5]);
  p = std::fma(p, f, kExp2Poly[4]);
  p = std::fma(p, f, kExp2Poly[3]);
  p = std::fma(p, f, kExp2Poly[2]);
  p = std::fma(p, f, kExp2Poly[1]);
  p = std::fma(p, f, kExp2Poly[0]);
  const int32_t bits = (static_cast<int32_t>(r) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

}  // namespace

void SiluMul(float* gate, const float* up, int64_t count) {
  ForPieces(count, kParallelElements / 4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float g = gate[i];
      gate[i] = g / (1.0f + Exp(-g)) * up[i];
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
