// Sparse alternatives to softmax: sparsemax and entmax-1.5 (docs/math.md §6 items 5 and 6).
//
//   std::vector<double> p(x.size());
//   const double lambda = Sparsemax(x, absl::MakeSpan(p));  // p_i = max(x_i - lambda, 0)
//   Entmax15(x, absl::MakeSpan(p));                         // p_i = max(x_i / 2 - lambda, 0)^2
//
// Both map R^n onto the probability simplex like softmax does, keep its monotonicity
// (x_i > x_j <=> p_i > p_j unless both are 0) and shift invariance (T(x + c) = T(x)), but give
// exact zeros to entries far enough below the maximum. Both are exact sort-based algorithms: sort
// descending, then the support is the first k whose threshold lambda_k satisfies
// x_(k) >= lambda_k >= x_(k+1). For k below the true support size lambda_k < x_(k+1) always holds,
// so the first k that passes is the answer; x_(n+1) is taken to be -inf, which covers "every entry
// is in the support" without the index wrap-around of the numpy formulation.
//
// Free functions and small value types; no allocation, no shared state: thread-compatible.
#ifndef KVSERVE_ENGINE_SAMPLING_NORMALIZERS_H_
#define KVSERVE_ENGINE_SAMPLING_NORMALIZERS_H_

#include <cstdint>

#include "absl/types/span.h"

namespace kvserve::engine {

// sparsemax(x) = argmin_{p in simplex} |p - x|^2 (Martins & Astudillo 2016): p_i = max(x_i - λ, 0)
// with λ such that sum(p) = 1. Returns λ. A NaN entry counts as -inf and a -inf entry gets
// probability 0; a +inf entry counts as the largest finite double (several share the mass).
// Uses `p` as sorting scratch: O(n log n), no allocation.
// REQUIRES: x.size() == p.size(); x and p do not overlap; some entry is neither -inf nor NaN.
double Sparsemax(absl::Span<const double> x, absl::Span<double> p);

// entmax with alpha = 1.5 (Peters, Niculae & Martins 2019): p_i = max(x_i / 2 - λ, 0)^2 with λ such
// that sum(p) = 1. Returns λ. Same conventions, cost and REQUIRES as Sparsemax.
double Entmax15(absl::Span<const double> x, absl::Span<double> p);

// The support search of Sparsemax, fed one value at a time in descending order, so a caller that
// sorts lazily (the Sampler) stops sorting once the support is known:
//
//   SparsemaxThreshold threshold;
//   size_t k = 0;
//   do threshold.Add(sorted[k++]); while (!threshold.IsComplete(k < n ? sorted[k] : -inf));
//   p_i = threshold.Probability(x_i);
//
// Works relative to the first (largest) value, so a large common offset costs no precision.
class SparsemaxThreshold {
 public:
  // Feeds x_(k+1). REQUIRES: x finite and <= every value fed before.
  void Add(double x);
  // True when the values fed so far are the whole support: λ_k >= `next`, the value that would be
  // fed next (-inf when none is left). From then on threshold() and Probability() are final.
  // REQUIRES: at least one value fed.
  bool IsComplete(double next) const;
  // λ on the input's scale: p = max(x - λ, 0).
  double threshold() const { return origin_ + lambda_; }
  // max(x - λ, 0) for any input x (NaN not allowed; -inf gives 0).
  double Probability(double x) const;
  int64_t num_added() const { return count_; }

 private:
  double origin_ = 0.0;  // the first (largest) value; everything below is relative to it
  double sum_ = 0.0;     // sum of (x_(i) - origin_) over the values fed
  double lambda_ = 0.0;  // λ_k - origin_
  int64_t count_ = 0;
};

// The support search of Entmax15, same protocol as SparsemaxThreshold. With z = x / 2 and the
// first k sorted values: λ_k = mean(z) - sqrt(1/k - var(z)) (docs/math.md §6 item 6).
class Entmax15Threshold {
 public:
  // Feeds x_(k+1) (not halved). REQUIRES: x finite and <= every value fed before.
  void Add(double x);
  // True when λ_k >= next / 2 (see SparsemaxThreshold::IsComplete).
  bool IsComplete(double next) const;
  // λ on the input's scale: p = max(x / 2 - λ, 0)^2.
  double threshold() const { return origin_ / 2.0 + lambda_; }
  // max(x / 2 - λ, 0)^2 for any input x (NaN not allowed; -inf gives 0).
  double Probability(double x) const;
  int64_t num_added() const { return count_; }

 private:
  double origin_ = 0.0;  // the first (largest) value
  // Welford running mean and sum of squared deviations of z = (x - origin_) / 2.
  double mean_ = 0.0;
  double m2_ = 0.0;
  double lambda_ = 0.0;  // λ_k - origin_ / 2
  int64_t count_ = 0;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_SAMPLING_NORMALIZERS_H_
