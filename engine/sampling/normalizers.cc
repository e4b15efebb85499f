#include "engine/sampling/normalizers.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>

#include "base/logging.h"

namespace kvserve::engine {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// NaN never gets mass (-inf); +inf becomes the largest finite value so that x - max never
// computes inf - inf, and several +inf entries tie.
double Sanitized(double x) {
  if (std::isnan(x)) return kNegInf;
  return std::min(x, std::numeric_limits<double>::max());
}

// Sort a sanitized copy into `p`, feed the threshold until it covers the support, then overwrite
// `p` with the probabilities.
template <typename Threshold>
double Normalize(absl::Span<const double> x, absl::Span<double> p) {
  KV_CHECK(x.size() == p.size()) << "x.size()=" << x.size() << " p.size()=" << p.size();
  KV_CHECK(!x.empty()) << "empty input";
  KV_CHECK(x.data() + x.size() <= p.data() || p.data() + p.size() <= x.data()) << "x and p overlap";
  std::transform(x.begin(), x.end(), p.begin(), Sanitized);
  std::sort(p.begin(), p.end(), std::greater<double>());
  KV_CHECK(p[0] != kNegInf) << "every entry is -inf or NaN";
  Threshold threshold;
  size_t k = 0;
  do {
    threshold.Add(p[k]);
    ++k;
  } while (!threshold.IsComplete(k < p.size() ? p[k] : kNegInf));
  for (size_t i = 0; i < x.size(); ++i) p[i] = threshold.Probability(Sanitized(x[i]));
  return threshold.threshold();
}

}  // namespace

double Sparsemax(absl::Span<const double> x, absl::Span<double> p) {
  return Normalize<SparsemaxThreshold>(x, p);
}

double Entmax15(absl::Span<const double> x, absl::Span<double> p) {
  return Normalize<Entmax15Threshold>(x, p);
}

void SparsemaxThreshold::Add(double x) {
  if (count_ == 0) origin_ = x;
  ++count_;
  sum_ += x - origin_;
  // sum_{i<=k} (x_(i) - λ_k) = 1.
  lambda_ = (sum_ - 1.0) / static_cast<double>(count_);
}

bool SparsemaxThreshold::IsComplete(double next) const { return lambda_ >= next - origin_; }

double SparsemaxThreshold::Probability(double x) const {
  const double d = (x - origin_) - lambda_;
  return d > 0.0 ? d : 0.0;
}

void Entmax15Threshold::Add(double x) {
  if (count_ == 0) origin_ = x;
  ++count_;
  const double k = static_cast<double>(count_);
  // Welford: the textbook mean(z^2) - mean(z)^2 cancels badly once the support is wide.
  const double z = (x - origin_) / 2.0;
  const double delta = z - mean_;
  mean_ += delta / k;
  m2_ += delta * (z - mean_);
  // sum_{i<=k} (z_(i) - λ)^2 = k (mean - λ)^2 + k var = 1, and λ <= mean. For k up to the support
  // size the radicand is >= 0 on paper; the clamp only absorbs rounding.
  const double variance = m2_ / k;
  lambda_ = mean_ - std::sqrt(std::max(1.0 / k - variance, 0.0));
}

bool Entmax15Threshold::IsComplete(double next) const { return lambda_ >= (next - origin_) / 2.0; }

double Entmax15Threshold::Probability(double x) const {
  const double d = (x - origin_) / 2.0 - lambda_;
  return d > 0.0 ? d * d : 0.0;
}

}  // namespace kvserve::engine
