// Int8Matmul: y = x · Wᵀ with W quantized at load to int8 (symmetric, f32 scales per output
// channel or per block of 32 along K) and the activations quantized per row at run time
// (symmetric, one f32 scale per row), multiplied with AVX512-VNNI vpdpbusd. Like Bf16Matmul
// (bf16_matmul.h), every output element comes from one fixed sequence of operations that depends
// only on K and the grouping, so a row's result is bit-identical whatever M, tile, thread count,
// ISA and the other rows are (the engine's batch invariance).
//
// Why VNNI on quantized activations rather than int8 weights widened to bf16 in registers: the
// integer products and sums are exact, so the fixed order only concerns a few float operations
// per group, and one vpdpbusd consumes 64 weight bytes where widening needs ~5 extra instructions
// per 32 weights; decode stays bound by DRAM (tests/bench/lowp_matmul_bench.cc). The cost is the
// rounding of the activations to 8 bits (one scale per row), measured in the same benchmark.
//
// The fixed order, per element y[i][j] (all float operations are IEEE f32, round to nearest even,
// under the default MXCSR: no FTZ/DAZ):
//   1. Row quantization, once per row: amax = max_k |x[i][k]|. If amax == 0: s_x = 0 and every
//      q = 0. Otherwise s_x = amax / 127, inv = 127 / amax and q[k] = clamp(rne(x[i][k]·inv),
//      −127, 127) (rne: round half to even), u[k] = q[k] + 128 ∈ [1, 255]. K is padded to a
//      multiple of 4 with q = 0 (u = 128) and w = 0.
//   2. Weights (at packing): per group g of K (one group = all of K for kPerChannel; K indices
//      [32g, 32g+32) for kBlock32, the last one shorter), s_w[j][g] = amax_g / 127 and
//      w_q[j][k] = clamp(rne(w[j][k] / s_w[j][g]), −127, 127); D[j] = fold over g in increasing
//      order of D = fma(s_w[j][g], float(C_g), D) from D = +0, where C_g = Σ_{k∈g} w_q[j][k].
//   3. S_g = Σ_{k∈g} u[k]·w_q[j][k], exact in int32 (any order).
//   4. acc = +0; for g = 0, 1, … in increasing order: acc = fma(float(S_g), s_x·s_w[j][g], acc)
//      (float(S_g) rounds to nearest even; s_x·s_w one rounded product).
//   5. y[i][j] = fma(−128·s_x, D[j], acc)  — removes the +128 offset of u: Σ q·w = Σ u·w − 128·C.
// The AVX-512 path (vpdpbusd, vcvtdq2ps, vmulps, vfmadd) and the portable path implement exactly
// this, so results agree across CPUs with and without AVX512-VNNI (kernel_isa.h).
// REQUIRES for exactness of step 3: 4·255·127·(quads per group) < 2^31, i.e. K ≤ 65536 for
// kPerChannel (checked by QuantizeInt8).
//
// Packed layout: panels of 16 output columns, 4 consecutive K per column interleaved so that one
// 64-byte line is one vpdpbusd operand:
//   data   = [num_panels][num_quads][16][4] int8   (quad t holds k = 4t .. 4t+3 of each column)
//   scales = [num_panels][num_groups][16] f32     (s_w; 0 for padding columns)
//   offset = [num_panels][16] f32                  (D)
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
  std::vector<int8_t, CacheLineAllocator<int8_t>> data;  // [num_panels][num_quads][16][4]
  std::vector<float, CacheLineAllocator<float>> scales;  // [num_panels][num_groups][16]
  std::vector<float, CacheLineAllocator<float>> offset;  // [num_panels][16]

  // Bytes a call streams: data + scales + offset.
  int64_t bytes() const {
    return static_cast<int64_t>(data.size() + 4 * scales.size() + 4 * offset.size());
  }
};

// Quantizes an f32 weight w[n][k] (nn.Linear layout) as step 2 of the order above.
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
