// Linear: y = x · Wᵀ with W held as a MatmulWeight (matmul_weight.h) — f32 as loaded, packed
// bf16 or block-32 int8 — through MatmulForward, or for f32 weights optionally oneDNN's matmul
// (the one file that touches oneDNN).
//
// Ownership: a Linear owns its one copy of W, in its storage format; no f32 copy of a bf16 or
// int8 weight is kept. f32 weights stay in the Hugging Face / nn.Linear layout
// W[out_features][in_features] (oneDNN calls the K×N view of it "ba"). One oneDNN primitive with
// a runtime row count M serves prefill chunks of any length.
//
// Row invariance (on by default): each output row is bit-identical whatever the row count m and
// the other rows are, so a sequence decodes the same tokens alone or inside any batch. oneDNN 2.6
// picks kernels and blocking by M (a row computed at M < 16 differs in its low bits from the same
// row at M >= 16, and with two threads M near 1000 changes again), so row-invariant calls use
// RowInvariantMatmul, whose summation order is fixed per element. set_row_invariant(false) lets
// calls of at least kOneDnnMinRows rows use oneDNN's packed GEMM, faster for long prefills. That
// applies to f32 weights only: bf16 and int8 weights always run their own kernels
// (Bf16Matmul, Int8Matmul), which are row-invariant and already blocked for prefill-sized M, so
// set_row_invariant(false) changes nothing for them.
//
// Thread-safety: Forward is const and may run concurrently on different threads (each thread uses
// its own oneDNN stream). set_row_invariant is not synchronized: call it before sharing the
// Linear.
#ifndef KVSERVE_ENGINE_KERNELS_LINEAR_H_
#define KVSERVE_ENGINE_KERNELS_LINEAR_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/kernels/aligned_buffer.h"
#include "engine/kernels/matmul_weight.h"

namespace kvserve::engine {

class Linear {
 public:
  // REQUIRES: weight.size() == out_features * in_features, row-major [out_features][in_features].
  static absl::StatusOr<Linear> Create(std::vector<float> weight, int64_t out_features,
                                       int64_t in_features);
  // Takes the weight in any format (PrepareWeight, PackBf16, QuantizeInt8).
  static absl::StatusOr<Linear> Create(MatmulWeight weight);
  Linear(Linear&&) noexcept;
  Linear& operator=(Linear&&) noexcept;
  ~Linear();

  // Without row invariance, calls with fewer rows still use RowInvariantMatmul: below this
  // oneDNN's per-call overhead outweighs its faster kernel.
  static constexpr int64_t kOneDnnMinRows = 16;

  // y[m, out] = x[m, in] · Wᵀ. x and y must not overlap.
  void Forward(const float* x, int64_t m, float* y) const;
  // ys[i] = x · linears[i]ᵀ for linears of one in_features, in one kernel call where their
  // formats allow (MatmulForward with several outputs, matmul_weight.h): exactly the bits of
  // linears[i]->Forward(x, m, ys[i]).
  // REQUIRES: 1 <= linears.size() == ys.size() <= kMaxSharedWeights; no y overlaps x or another y.
  static void Forward(const float* x, int64_t m, absl::Span<const Linear* const> linears,
                      absl::Span<float* const> ys);

  void set_row_invariant(bool on) { row_invariant_ = on; }
  bool row_invariant() const { return row_invariant_; }

  int64_t out_features() const { return out_features_; }
  int64_t in_features() const { return in_features_; }
  // [out_features][in_features] in its storage format; F32Weight::data is 64-byte aligned.
  const MatmulWeight& weight() const;
  int64_t weight_bytes() const { return WeightBytes(weight()); }

 private:
  struct Impl;
  Linear(std::unique_ptr<Impl> impl, int64_t out_features, int64_t in_features);
  // One oneDNN matmul call over m rows.
  void Execute(const float* x, int64_t m, float* y) const;

  std::unique_ptr<Impl> impl_;
  int64_t out_features_ = 0;
  int64_t in_features_ = 0;
  bool row_invariant_ = true;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_KERNELS_LINEAR_H_
