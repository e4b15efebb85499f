// Linear: y = x · Wᵀ, through RowInvariantMatmul or oneDNN's matmul (the one file that touches
// oneDNN).
//
// Weights stay in the Hugging Face / nn.Linear layout W[out_features][in_features] (oneDNN calls
// the K×N view of it "ba"), so a checkpoint is used as loaded. One oneDNN primitive with a runtime
// row count M serves prefill chunks of any length.
//
// Row invariance (on by default): each output row is bit-identical whatever the row count m and
// the other rows are, so a sequence decodes the same tokens alone or inside any batch. oneDNN 2.6
// picks kernels and blocking by M (a row computed at M < 16 differs in its low bits from the same
// row at M >= 16, and with two threads M near 1000 changes again), so row-invariant calls use
// RowInvariantMatmul, whose summation order is fixed per element. set_row_invariant(false) lets
// calls of at least kOneDnnMinRows rows use oneDNN's packed GEMM, faster for long prefills.
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
#include "engine/kernels/aligned_buffer.h"

namespace kvserve::engine {

class Linear {
 public:
  // REQUIRES: weight.size() == out_features * in_features, row-major [out_features][in_features].
  static absl::StatusOr<Linear> Create(std::vector<float> weight, int64_t out_features,
                                       int64_t in_features);
  Linear(Linear&&) noexcept;
  Linear& operator=(Linear&&) noexcept;
  ~Linear();

  // Without row invariance, calls with fewer rows still use RowInvariantMatmul: below this
  // oneDNN's per-call overhead outweighs its faster kernel.
  static constexpr int64_t kOneDnnMinRows = 16;

  // y[m, out] = x[m, in] · Wᵀ. x and y must not overlap.
  void Forward(const float* x, int64_t m, float* y) const;

  void set_row_invariant(bool on) { row_invariant_ = on; }
  bool row_invariant() const { return row_invariant_; }

  int64_t out_features() const { return out_features_; }
  int64_t in_features() const { return in_features_; }
  const AlignedFloats& weight() const;  // [out_features][in_features], 64-byte aligned

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
