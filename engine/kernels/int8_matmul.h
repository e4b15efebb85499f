// Int8Matmul: y = x · Wᵀ with W quantized at load to int8 (symmetric, f32 scales per output
// channel or per block of 32 along K) and the activations quantized at run time with the same
// grouping (symmetric, one f32 scale per row and group: per row, or per row and block of 32, as
// llama.cpp's q8_0 activations), multiplied with AVX512-VNNI vpdpbusd. Like Bf16Matmul
// (bf16_matmul.h), every output element comes from one fixed sequence of operations that depends
// only on K and the grouping, so a row's result is bit-identical whatever M, tile, thread count,
// ISA and the other rows are (the engine's batch invariance).
//
// Why VNNI on quantized activations rather than int8 weights widened to bf16 in registers: the
// integer products and sums are exact, so the fixed order only concerns a few float operations
// per group, and one vpdpbusd consumes 64 weight bytes where widening needs ~5 extra instructions
// per 32 weights (compute-bound below one core's DRAM bandwidth). The cost is the rounding of the
// activations to 8 bits, measured in tests/bench/lowp_matmul_bench.cc; with kBlock32 an outlier
// activation channel only coarsens its own block of 32.
//
// The fixed order, per element y[i][j] (float operations are IEEE f32, round to nearest even,
// under the default MXCSR: no FTZ/DAZ). Groups g of K: one group = all of K for kPerChannel;
// K indices [32g, 32g+32) for kBlock32, the last one shorter. K is padded to a multiple of 4 with
// zeros on both sides.
//   1. Weights (at packing): s_w[j][g] = amax_g / 127 (amax_g = max |w[j][k]| over the group) and
//      w_q[j][k] = clamp(rne(w[j][k] / s_w[j][g]), −127, 127), rne rounding half to even
//      (w_q = 0 when amax_g = 0).
//   2. Activations, once per row: for each group, amax = max |x[i][k]| over it; if amax == 0,
//      s_x[i][g] = 0 and q = 0, else s_x[i][g] = amax / 127, inv = 127 / amax and
//      q[k] = clamp(rne(x[i][k]·inv), −127, 127).
//   3. S_g = Σ_{k∈g} q[k]·w_q[j][k], exact in int32 (any order).
//   4. acc = +0; for g = 0, 1, … in increasing order: acc = fma(float(S_g), s_x[i][g]·s_w[j][g],
//      acc) (float(S_g) rounds to nearest even; the scale product is one rounded f32 multiply).
//   5. y[i][j] = acc.
// vpdpbusd multiplies unsigned by signed bytes, so the weights are stored offset, u_w = w_q + 128
// ∈ [1, 255], and the AVX-512 path computes S_g = Σ u_w·q − 128·Σ q (Σ q over the row's group,
// once per row): the same integer. The AVX-512 path (vpdpbusd, vcvtdq2ps, vmulps, vfmadd) and the
// portable path implement exactly this order, so results agree across CPUs with and without
// AVX512-VNNI
// (kernel_isa.h). Every int32 intermediate stays below 128·127·K in magnitude, exact for
// K ≤ 65536 (checked by QuantizeInt8 for kPerChannel; a block of 32 is always exact).
//
// Packed layout: panels of 16 output columns, 4 consecutive K per column interleaved so that one
// 64-byte line is one vpdpbusd operand:
//   data   = [num_panels][num_quads][16][4] uint8 w_q + 128 (quad t: k = 4t .. 4t+3 of a column;
//            padding 128, i.e. w_q = 0)
//   scales = [num_panels][num_groups][16] f32     (s_w; 0 for padding columns)
// Bytes streamed per weight: 1 (per channel) or 1.125 (block of 32, f32 scale per 32 weights).
//
// Thread-safety: the packed weight is immutable; Int8Matmul is a pure function that uses the
// calling thread's OpenMP thread count and a per-thread scratch buffer (grown once).
#ifndef KVSERVE_ENGINE_KERNELS_INT8_MATMUL_H_
#define KVSERVE_ENGINE_KERNELS_INT8_MATMUL_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/aligned_buffer.h"

namespace kvserve::engine {

inline constexpr int64_t kInt8PanelWidth = 16;  // output columns per panel
inline constexpr int64_t kInt8BlockK = 32;      // K per scale with kBlock32

enum class Int8Grouping {
  kPerChannel,  // one scale per output column
  kBlock32,     // one scale per output column and block of 32 along K
};

struct PackedInt8Weight {
  int64_t n = 0;
  int64_t k = 0;
  int64_t num_quads = 0;    // ⌈k/4⌉
  int64_t num_panels = 0;   // ⌈n/16⌉
  int64_t group_quads = 0;  // quads per scale group (num_quads for kPerChannel, 8 for kBlock32)
  int64_t num_groups = 0;   // ⌈num_quads / group_quads⌉
  Int8Grouping grouping = Int8Grouping::kPerChannel;
  std::vector<uint8_t, CacheLineAllocator<uint8_t>> data;  // [num_panels][num_quads][16][4]
  std::vector<float, CacheLineAllocator<float>> scales;  // [num_panels][num_groups][16]

  // Bytes a call streams: data + scales.
  int64_t bytes() const { return static_cast<int64_t>(data.size() + 4 * scales.size()); }
};

// Quantizes an f32 weight w[n][k] (nn.Linear layout) as step 1 of the order above.
// Errors: InvalidArgument naming `name` and the position for a NaN/inf value, for a group whose
// scale underflows (amax > 0 but amax / 127 below FLT_MIN: its values would be lost), and for
// kPerChannel with k > 65536.
// REQUIRES: n, k >= 1.
absl::StatusOr<PackedInt8Weight> QuantizeInt8(const float* w, int64_t n, int64_t k,
                                              Int8Grouping grouping, std::string_view name);

// y[m][n] ≈ Σ_k x[m][k]·w[n][k] in the order above; x: {m, k} f32, y: {m, n} f32, row-major.
// REQUIRES: m >= 1; x finite with w.k columns; y overlaps neither x nor w.
void Int8Matmul(const float* x, int64_t m, const PackedInt8Weight& w, float* y);

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_KERNELS_INT8_MATMUL_H_
