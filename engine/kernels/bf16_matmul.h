// Bf16Matmul: y = x · Wᵀ with W stored as bfloat16 and packed once at load into panels that
// vdpbf16ps (AVX512-BF16) streams, computed so that every output element comes from one fixed
// sequence of float operations that depends only on the reduction length K — not on the row count
// M, the element's row or column, the tile, the thread, the ISA or the other rows. A token's
// activations are therefore bit-identical alone or inside any batch (the engine's batch
// invariance, engine.h), as with RowInvariantMatmul (engine/kernels/row_invariant_matmul.h).
//
// Rounding and operations. bf16(v) is f32 → bfloat16 by round-to-nearest-even on the bit pattern
// (NaN stays NaN, quieted); bfloat16 → f32 is exact. "DAZ" reads a denormal f32 (or bf16) as zero
// of the same sign, "FTZ" replaces a result whose magnitude is below 2^-126 after rounding with a
// zero of its sign. These are the semantics of vdpbf16ps (Intel SDM, "VDPBF16PS": FP32 fused
// multiply-add with DAZ in, FTZ out, round-to-nearest-even, MXCSR neither consulted nor updated),
// including the order of its two products; the portable path emulates them and was checked
// against the hardware on random and denormal-heavy operands.
//
// The fixed order, per element y[i][j] = Σ_k x[i][k]·w[j][k]:
//   1. a = bf16(x[i][k]) for every k, once per row; b = bf16(w[j][k]) at packing time. K is
//      padded to K2 = 2·⌈K/2⌉ with a = b = +0 at k = K when K is odd.
//   2. One accumulator, acc = +0. For t = 0, 1, ..., K2/2 − 1 in increasing order:
//        acc = DAZ(acc)
//        acc = FTZ(fma(DAZ(a[2t+1]), DAZ(b[2t+1]), acc))    // the odd element first
//        acc = FTZ(fma(DAZ(a[2t]),   DAZ(b[2t]),   acc))    // then the even one
//      (one vdpbf16ps lane step per pair t; fma rounds once, to nearest even).
//   3. y[i][j] = acc. There are no partial sums, no reduction tree and no tail loop: the chain is
//      sequential in t, so any blocking of K (accumulators parked in y between K blocks) and any
//      split of rows or columns across tiles and threads leaves the bits unchanged.
// The AVX-512 path and the portable path implement exactly this order, so results agree across
// CPUs with and without AVX512-BF16 (kernel_isa.h) and across thread counts. They differ from
// RowInvariantMatmul on f32 weights (different rounding of the inputs and a different order).
//
// Packed layout (PackedBf16Weight::data), 16 output columns per panel, K pairs interleaved so that
// one 64-byte cache line is one vdpbf16ps operand:
//
//   panel p = columns 16p .. 16p+15            (columns ≥ N are zero)
//   ┌──────────── 64 bytes ────────────┐
//   │ c0:b[0] b[1] │ c1:b[0] b[1] │ … │ c15:b[0] b[1] │   pair t = 0
//   │ c0:b[2] b[3] │ c1:b[2] b[3] │ … │ c15:b[2] b[3] │   pair t = 1
//   │ …                                                │   … K2/2 lines
//   data = [num_panels][panel_lines][16][2] uint16 (bf16 bits), 64-byte aligned; panel_lines =
//   K2/2, plus one zero line when that is a multiple of 64 (panels 4 KiB apart would share L1
//   sets).
//
// Speed: for 1–4 rows (decode) columns are split across threads and each thread streams 8, 8, 6
// or 4 panels at a time (that many concurrent DRAM streams per core). From 5 rows on, tiles of 6
// rows × 4 panels run with K blocked so that the weight micro-panel stays in L2, over a rows ×
// columns grid of ParallelFor tasks (thread_pool.h). Numbers: tests/bench/lowp_matmul_bench.cc,
// docs/benchmarks.md.
//
// Thread-safety: the packed weight is immutable; Bf16Matmul is a pure function that uses the
// calling thread's kernel thread count (thread_pool.h) and a per-thread scratch buffer for the
// rounded activations (grown once, reused by later calls).
#ifndef KVSERVE_ENGINE_KERNELS_BF16_MATMUL_H_
#define KVSERVE_ENGINE_KERNELS_BF16_MATMUL_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/kernels/aligned_buffer.h"

namespace kvserve::engine {

inline constexpr int64_t kBf16PanelWidth = 16;  // output columns per panel

struct PackedBf16Weight {
  int64_t n = 0;            // output features (rows of the nn.Linear weight)
  int64_t k = 0;            // input features
  int64_t num_pairs = 0;    // K2 / 2 = ⌈k/2⌉
  int64_t num_panels = 0;   // ⌈n/16⌉
  int64_t panel_lines = 0;  // num_pairs, + 1 unused line when num_pairs is a multiple of 64
  // [num_panels][panel_lines][16][2] bf16 bits; see the picture above.
  std::vector<uint16_t, CacheLineAllocator<uint16_t>> data;

  int64_t bytes() const { return static_cast<int64_t>(data.size() * sizeof(uint16_t)); }
};

// bf16(v) of step 1: round to nearest even; NaN stays NaN (quiet); no flushing (DAZ happens in
// step 2). Finite values above the largest bf16 (0x1.FEp127 + half an ulp) round to ±inf.
uint16_t RoundToBf16(float v);
float Bf16ToFloat(uint16_t bits);

// Packs an f32 weight w[n][k] (nn.Linear layout), rounding each value with RoundToBf16.
// Errors: InvalidArgument naming `name` and the first offending index if a finite value rounds
// to ±inf (outside bf16's range) or a value is NaN/inf.
// REQUIRES: n, k >= 1.
absl::StatusOr<PackedBf16Weight> PackBf16(const float* w, int64_t n, int64_t k,
                                          std::string_view name);
// Packs a weight that is already bf16 (bit patterns, e.g. a bf16 safetensors tensor) [n][k].
// Errors: InvalidArgument naming `name` for NaN/inf values.
absl::StatusOr<PackedBf16Weight> PackBf16(const uint16_t* w_bf16, int64_t n, int64_t k,
                                          std::string_view name);

// y[m][n] = Σ_k x[m][k]·w[n][k] in the order above; x: {m, k} f32, y: {m, n} f32, row-major,
// dense.
// REQUIRES: m >= 1; x has w.k columns; y overlaps neither x nor w.
void Bf16Matmul(const float* x, int64_t m, const PackedBf16Weight& w, float* y);

// The same for several weights of one K on the same rows, in one fork-join: ys[i] gets exactly
// what Bf16Matmul(x, m, *ws[i], ys[i]) writes (the rows are rounded once).
// REQUIRES: 1 <= ws.size() == ys.size() <= kMaxSharedWeights (panel_tasks.h); every weight has
// the same k; no y overlaps x, a weight or another y.
void Bf16Matmul(const float* x, int64_t m, absl::Span<const PackedBf16Weight* const> ws,
                absl::Span<float* const> ys);

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_KERNELS_BF16_MATMUL_H_
