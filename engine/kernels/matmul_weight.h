// MatmulWeight: one nn.Linear weight W[n][k] in the storage chosen at load — f32 as loaded, bf16
// packed (bf16_matmul.h) or int8 packed (int8_matmul.h) — and one Forward for all of them, so a
// Linear holds a MatmulWeight and stays unaware of the format.
//
// Every format keeps the batch-invariance contract: a row's output bits depend only on that row
// and the weight (each kernel header states its fixed order). Different formats give different
// bits.
//
// Thread-safety: a MatmulWeight is immutable after PrepareWeight; MatmulForward is a pure
// function that uses the calling thread's kernel thread count (thread_pool.h).
#ifndef KVSERVE_ENGINE_KERNELS_MATMUL_WEIGHT_H_
#define KVSERVE_ENGINE_KERNELS_MATMUL_WEIGHT_H_

#include <cstdint>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/kernels/aligned_buffer.h"
#include "engine/kernels/bf16_matmul.h"
#include "engine/kernels/int8_matmul.h"
#include "engine/kernels/panel_tasks.h"

namespace kvserve::engine {

// The weight as loaded, multiplied by RowInvariantMatmul (engine/kernels/row_invariant_matmul.h).
struct F32Weight {
  int64_t n = 0;
  int64_t k = 0;
  AlignedFloats data;  // [n][k]
};

using MatmulWeight = std::variant<F32Weight, PackedBf16Weight, PackedInt8Weight>;

enum class WeightFormat {
  kF32,
  kBf16,
  kInt8PerChannel,
  kInt8Block32,  // the int8 default: ~4x lower error than per channel on outlier activations
};

// Converts w[n][k] (nn.Linear layout) to `format`. Errors name `name` (see PackBf16 and
// QuantizeInt8).
// REQUIRES: w.size() == n * k; n, k >= 1.
absl::StatusOr<MatmulWeight> PrepareWeight(const std::vector<float>& w, int64_t n, int64_t k,
                                           WeightFormat format, std::string_view name);

int64_t OutFeatures(const MatmulWeight& w);  // n
int64_t InFeatures(const MatmulWeight& w);   // k
int64_t WeightBytes(const MatmulWeight& w);  // bytes one Forward streams (= bytes held)
// "f32", "bf16", "int8" (block-32 and per-channel alike).
const char* WeightFormatName(const MatmulWeight& w);

// out[k] = W[j][k] as the format stores it, widened to f32: exact for f32 and bf16, q·scale for
// int8. An embedding lookup reads its table this way, so a tied LM head and the embedding share
// one packed weight.
// REQUIRES: 0 <= j < OutFeatures(w); out has InFeatures(w) floats.
void DequantizeRow(const MatmulWeight& w, int64_t j, float* out);

// y[m][n] = x[m][k] · Wᵀ in the weight's format; x: {m, k} f32, y: {m, n} f32.
// REQUIRES: m >= 1; y overlaps neither x nor w.
void MatmulForward(const MatmulWeight& w, const float* x, int64_t m, float* y);

// Several weights applied to the same x (a layer's q/k/v, or gate/up): each output gets exactly
// what MatmulForward(*weight, x, m, y) writes, and when the weights share their format, K (and
// int8 grouping) the kernel runs them all in one fork-join, with x rounded or quantized once.
// At batch 1 a step is ~200 short matmuls, each paying a fork-join and the ramp-up and drain of
// its weight streams; sharing them cuts that fixed cost (docs/benchmarks.md).
struct MatmulOutput {
  const MatmulWeight* weight;
  float* y;  // {m, OutFeatures(*weight)}
};
// REQUIRES: 1 <= outputs.size() <= kMaxSharedWeights (panel_tasks.h); m >= 1; every weight has
// InFeatures = x's width; no y overlaps x, a weight or another y.
void MatmulForward(const float* x, int64_t m, absl::Span<const MatmulOutput> outputs);

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_KERNELS_MATMUL_WEIGHT_H_
