// RowInvariantMatmul: y = x · Wᵀ computed so that every output element comes from one fixed
// sequence of float operations that depends only on the reduction length K — not on the row count
// M, the element's row or column, the tile it falls in, the thread that computes it or the other
// rows. A token's activations are therefore bit-identical whether its sequence runs alone or inside
// any batch (the engine's batch invariance, engine.h).
//
// The fixed order, per element y[i][j] = Σ_k x[i][k]·w[j][k]:
//   1. 16 partial sums; lane l accumulates x[k]·w[k] by fused multiply-add for k ≡ l (mod 16),
//      k < K16 = 16·⌊K/16⌋, in increasing k;
//   2. the lanes are added as a fixed tree: s_l = p_l + p_{l+8} (l < 8), then + s_{l+4} (l < 4),
//      then + s_{l+2} (l < 2), then s_0 + s_1;
//   3. the remaining products k = K16 .. K-1 are added by fused multiply-add in increasing k.
// AVX-512, AVX2+FMA and the portable fallback all implement exactly this order (16 logical lanes),
// so the results also agree across builds for different x86 levels.
//
// Speed: register-tiled dot products over W in its nn.Linear layout [N][K] (no repacking), W
// blocked to stay in L2 while all rows pass over it, columns split across threads (ParallelFor,
// thread_pool.h) for large products. Decode-sized M runs at memory or L2 speed without oneDNN's
// per-call overhead; large prefill products run below oneDNN's packed GEMM (docs/benchmarks.md).
//
// Thread-safety: pure function; uses the calling thread's kernel thread count (thread_pool.h).
#ifndef KVSERVE_ENGINE_KERNELS_ROW_INVARIANT_MATMUL_H_
#define KVSERVE_ENGINE_KERNELS_ROW_INVARIANT_MATMUL_H_

#include <cstdint>

#include "absl/types/span.h"

namespace kvserve::engine {

// y[m][n] = Σ_k x[m][k]·w[n][k]; x: {m, k}, w: {n, k}, y: {m, n}, all row-major and dense.
// REQUIRES: m, n, k >= 1; y overlaps neither x nor w.
void RowInvariantMatmul(const float* x, int64_t m, const float* w, int64_t n, int64_t k, float* y);

// The same for several weights ws[i] of ns[i] rows and one K on the same x, in one fork-join:
// ys[i] gets exactly what RowInvariantMatmul(x, m, ws[i], ns[i], k, ys[i]) writes.
// REQUIRES: 1 <= ws.size() == ns.size() == ys.size() <= kMaxSharedWeights (panel_tasks.h);
// no y overlaps x, a weight or another y.
void RowInvariantMatmul(const float* x, int64_t m, absl::Span<const float* const> ws,
                        absl::Span<const int64_t> ns, int64_t k, absl::Span<float* const> ys);

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_KERNELS_ROW_INVARIANT_MATMUL_H_
