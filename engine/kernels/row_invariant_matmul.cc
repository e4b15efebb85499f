#include "engine/kernels/row_invariant_matmul.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "base/logging.h"
#include "engine/kernels/panel_tasks.h"
#include "engine/kernels/thread_pool.h"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

// GCC 12 reports the deliberately undefined operand inside its own AVX-512 cast and shuffle
// intrinsics (_mm256_undefined_pd) as uninitialized once they are inlined here.
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)  // a GCC-only warning; clang rejects unknown groups under -Werror
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace kvserve::engine {
namespace {

// 16 logical lanes, whatever the vector width of the build.
#if defined(__AVX512F__)
struct Vec {
  __m512 v;
};
inline Vec Zero() { return {_mm512_setzero_ps()}; }
inline Vec Load(const float* p) { return {_mm512_loadu_ps(p)}; }
// Keeps a loaded value in a register: otherwise GCC folds the load into every FMA that uses it,
// loading the same weights once per row of the tile.
inline void Pin(Vec& a) { __asm__("" : "+v"(a.v)); }
inline Vec Fma(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
constexpr int kRows = 4;  // register tile: 16 accumulators of 32 zmm registers
constexpr int kCols = 4;
#elif defined(__AVX2__) && defined(__FMA__)
struct Vec {
  __m256 lo, hi;
};
inline Vec Zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline Vec Load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline void Pin(Vec& a) { __asm__("" : "+x"(a.lo), "+x"(a.hi)); }
inline Vec Fma(Vec a, Vec b, Vec c) {
  return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
}
constexpr int kRows = 2;  // 8 of 16 ymm registers hold accumulators
constexpr int kCols = 2;
#else
struct Vec {
  float f[16];
};
inline Vec Zero() { return Vec{}; }
inline void Pin(Vec&) {}
inline Vec Load(const float* p) {
  Vec v;
  std::copy(p, p + 16, v.f);
  return v;
}
inline Vec Fma(Vec a, Vec b, Vec c) {
  for (int l = 0; l < 16; ++l) c.f[l] = std::fma(a.f[l], b.f[l], c.f[l]);
  return c;
}
constexpr int kRows = 1;
constexpr int kCols = 1;
#endif

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
// Lanes 0..7 of `eight` hold p_l + p_{l+8}: the rest of step 2 by shuffles, in the same order.
inline float SumEight(__m256 eight) {
  const __m128 four = _mm_add_ps(_mm256_castps256_ps128(eight), _mm256_extractf128_ps(eight, 1));
  const __m128 two = _mm_add_ps(four, _mm_movehl_ps(four, four));
  return _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps(two, two, 1)));
}
#endif

// Step 2 of the order in the header.
inline float SumLanes(Vec acc) {
#if defined(__AVX512F__)
  const __m256 lo = _mm512_castps512_ps256(acc.v);
  const __m256 hi = _mm512_castps512_ps256(_mm512_shuffle_f32x4(acc.v, acc.v, 0xEE));
  return SumEight(_mm256_add_ps(lo, hi));
#elif defined(__AVX2__) && defined(__FMA__)
  return SumEight(_mm256_add_ps(acc.lo, acc.hi));
#else
  float* p = acc.f;
  for (int l = 0; l < 8; ++l) p[l] += p[l + 8];
  for (int l = 0; l < 4; ++l) p[l] += p[l + 4];
  for (int l = 0; l < 2; ++l) p[l] += p[l + 2];
  return p[0] + p[1];
#endif
}

// Steps 2 and 3 of the order in the header.
inline float Finish(Vec acc, const float* x, const float* w, int64_t k16, int64_t k) {
  float sum = SumLanes(acc);
  for (int64_t i = k16; i < k; ++i) sum = std::fma(x[i], w[i], sum);
  return sum;
}

// y[i][j] for i < R rows of x and j < C rows of w.
template <int R, int C>
inline void Tile(const float* x, const float* w, int64_t k, float* y, int64_t ldy) {
  Vec acc[R][C];
  for (int i = 0; i < R; ++i) {
    for (int j = 0; j < C; ++j) acc[i][j] = Zero();
  }
  const int64_t k16 = k / 16 * 16;
  for (int64_t kk = 0; kk < k16; kk += 16) {
    Vec xv[R];
    for (int i = 0; i < R; ++i) xv[i] = Load(x + i * k + kk);
    for (int j = 0; j < C; ++j) {
      Vec wv = Load(w + j * k + kk);
      Pin(wv);
      for (int i = 0; i < R; ++i) acc[i][j] = Fma(xv[i], wv, acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i) {
    for (int j = 0; j < C; ++j) y[i * ldy + j] = Finish(acc[i][j], x + i * k, w + j * k, k16, k);
  }
}

// Columns [n0, n1) of every row.
void Block(const float* x, int64_t m, const float* w, int64_t n, int64_t k, float* y, int64_t n0,
           int64_t n1) {
  int64_t i = 0;
  for (; i + kRows <= m; i += kRows) {
    int64_t j = n0;
    for (; j + kCols <= n1; j += kCols)
      Tile<kRows, kCols>(x + i * k, w + j * k, k, y + i * n + j, n);
    for (; j < n1; ++j) Tile<kRows, 1>(x + i * k, w + j * k, k, y + i * n + j, n);
  }
  for (; i < m; ++i) {
    int64_t j = n0;
    for (; j + kCols <= n1; j += kCols) Tile<1, kCols>(x + i * k, w + j * k, k, y + i * n + j, n);
    for (; j < n1; ++j) Tile<1, 1>(x + i * k, w + j * k, k, y + i * n + j, n);
  }
}

}  // namespace

void RowInvariantMatmul(const float* x, int64_t m, const float* w, int64_t n, int64_t k, float* y) {
  const float* ws[] = {w};
  const int64_t ns[] = {n};
  float* ys[] = {y};
  RowInvariantMatmul(x, m, ws, ns, k, ys);
}

void RowInvariantMatmul(const float* x, int64_t m, absl::Span<const float* const> ws,
                        absl::Span<const int64_t> ns, int64_t k, absl::Span<float* const> ys) {
  // Column blocks of W small enough (~256 KiB) to stay in L2 while every row of x passes over
  // them, a multiple of the tile width. Threads pay off from about a million multiply-adds (a
  // batched step of the smallest models), or when W is too large for one core's cache, where a
  // single row is bound by memory bandwidth that one core cannot saturate; then every thread gets
  // at least one block (of the weights together).
  KV_CHECK(!ws.empty() && ws.size() == ns.size() && ws.size() == ys.size() &&
           ws.size() <= kMaxSharedWeights)
      << ws.size() << " weights, " << ns.size() << " sizes, " << ys.size() << " outputs";
  int64_t n_total = 0;
  for (int64_t n : ns) n_total += n;
  const int threads = KernelThreads();
  const bool parallel =
      threads > 1 && (m * n_total * k >= (int64_t{1} << 20) || n_total * k >= (int64_t{1} << 18));
  int64_t block = std::max<int64_t>(kCols, (int64_t{256} * 1024 / (k * 4)) / kCols * kCols);
  if (parallel) {
    const int64_t per_thread = (n_total + threads - 1) / threads;
    block = std::min(block, (per_thread + kCols - 1) / kCols * kCols);
  }
  std::array<int64_t, kMaxSharedWeights> end{};  // one past each weight's last block
  int64_t num_blocks = 0;
  for (size_t i = 0; i < ns.size(); ++i) {
    num_blocks += (ns[i] + block - 1) / block;
    end[i] = num_blocks;
  }
  const auto column_block = [&](int64_t b) {
    size_t i = 0;
    while (b >= end[i]) ++i;
    const int64_t j0 = (b - (i == 0 ? 0 : end[i - 1])) * block;
    Block(x, m, ws[i], ns[i], k, ys[i], j0, std::min(ns[i], j0 + block));
  };
  if (parallel) {
    ParallelFor(num_blocks, column_block);
  } else {
    for (int64_t b = 0; b < num_blocks; ++b) column_block(b);
  }
}

}  // namespace kvserve::engine
