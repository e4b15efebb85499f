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
// 64-byte line is one vpdpbusd operand, each group's scales right after its weights so that a
// panel is one sequential stream:
//
//   panel p (columns 16p .. 16p+15), group g:
//   ┌──────────────────── 64 bytes ────────────────────┐
//   │ c0: u_w[4t..4t+3] │ c1: … │ … │ c15: u_w[4t..4t+3] │  quad t = g·group_quads + 0
//   │ …                                                  │  … group_quads lines
//   │ s_w[16p][g] … s_w[16p+15][g]  (16 f32)             │  scale line
//   data = [num_panels][num_groups][group_quads + 1][64] bytes, u_w = w_q + 128 (padding 128,
//   i.e. w_q = 0; padding columns have scale 0). K is padded to 4·num_quads = 4·group_quads·
//   num_groups: to a multiple of 4 (per channel) or of 32 (block).
// Bytes streamed per weight: 1 + 4/K (per channel) or 1.125 (block of 32).
//
// Thread-safety: the packed weight is immutable; Int8Matmul is a pure function that uses the
// calling thread's kernel thread count (thread_pool.h) and a per-thread scratch buffer (grown
// once).
#ifndef KVSERVE_ENGINE_KERNELS_INT8_MATMUL_H_
#define KVSERVE_ENGINE_KERNELS_INT8_MATMUL_H_

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/kernels/aligned_buffer.h"

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
  int64_t num_quads = 0;    // num_groups · group_quads (K padded, see above)
  int64_t num_panels = 0;   // ⌈n/16⌉
  int64_t group_quads = 0;  // quads per scale group (⌈k/4⌉ for kPerChannel, 8 for kBlock32)
  int64_t num_groups = 0;   // ⌈⌈k/4⌉ / group_quads⌉
  Int8Grouping grouping = Int8Grouping::kPerChannel;
  std::vector<uint8_t, CacheLineAllocator<uint8_t>> data;  // see the picture above

  int64_t group_bytes() const { return (group_quads + 1) * 4 * kInt8PanelWidth; }
  int64_t panel_bytes() const { return num_groups * group_bytes(); }
  int64_t bytes() const { return static_cast<int64_t>(data.size()); }  // streamed per call
  // s_w of output column j, group g.
  float scale(int64_t j, int64_t g) const {
    float s;
    std::memcpy(&s,
                data.data() + (j / kInt8PanelWidth) * panel_bytes() + g * group_bytes() +
                    group_quads * 4 * kInt8PanelWidth + 4 * (j % kInt8PanelWidth),
                sizeof(s));
    return s;
  }
  // w_q of output column j at input index i.
  int quantized(int64_t j, int64_t i) const {
    const int64_t g = i / 4 / group_quads, t = i / 4 % group_quads;
    return static_cast<int>(data[(j / kInt8PanelWidth) * panel_bytes() + g * group_bytes() +
                                 t * 4 * kInt8PanelWidth + 4 * (j % kInt8PanelWidth) + i % 4]) -
           128;
  }
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

// The same for several weights of one K and grouping on the same rows, in one fork-join: ys[i]
// gets exactly what Int8Matmul(x, m, *ws[i], ys[i]) writes (the rows are quantized once).
// REQUIRES: 1 <= ws.size() == ys.size() <= kMaxSharedWeights (panel_tasks.h); every weight has
// the same k and grouping; no y overlaps x, a weight or another y.
void Int8Matmul(const float* x, int64_t m, absl::Span<const PackedInt8Weight* const> ws,
                absl::Span<float* const> ys);

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_KERNELS_INT8_MATMUL_H_
