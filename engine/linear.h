// Linear: y = x · Wᵀ through oneDNN's matmul, the one file that touches oneDNN.
//
// Weights stay in the Hugging Face / nn.Linear layout W[out_features][in_features] (oneDNN calls
// the K×N view of it "ba"), so a checkpoint is used as loaded. One primitive with a runtime row
// count M serves prefill chunks and single-token decode alike.
//
// Thread-safety: Forward is const and may run concurrently on different threads (each thread uses
// its own oneDNN stream).
#ifndef KVSERVE_ENGINE_LINEAR_H_
#define KVSERVE_ENGINE_LINEAR_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

namespace kvserve::engine {

class Linear {
 public:
  // REQUIRES: weight.size() == out_features * in_features, row-major [out_features][in_features].
  static absl::StatusOr<Linear> Create(std::vector<float> weight, int64_t out_features,
                                       int64_t in_features);
  Linear(Linear&&) noexcept;
  Linear& operator=(Linear&&) noexcept;
  ~Linear();

  // y[m, out] = x[m, in] · Wᵀ. x and y must not overlap.
  void Forward(const float* x, int64_t m, float* y) const;

  int64_t out_features() const { return out_features_; }
  int64_t in_features() const { return in_features_; }
  const std::vector<float>& weight() const;

 private:
  struct Impl;
  Linear(std::unique_ptr<Impl> impl, int64_t out_features, int64_t in_features);

  std::unique_ptr<Impl> impl_;
  int64_t out_features_ = 0;
  int64_t in_features_ = 0;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_LINEAR_H_
