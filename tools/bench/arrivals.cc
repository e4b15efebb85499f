#include "tools/bench/arrivals.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvserve::bench {

absl::StatusOr<ArrivalProcess> ArrivalProcess::Create(const ArrivalOptions& options) {
  if (!(options.request_rate > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--request-rate must be > 0 (or inf), got ", options.request_rate));
  }
  if (!(options.burstiness > 0) || std::isinf(options.burstiness)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--burstiness must be a finite number > 0, got ", options.burstiness));
  }
  return ArrivalProcess(options);
}

// Gamma(shape k, scale theta) has mean k * theta; theta = 1 / (rate * k) makes the mean gap
// 1 / rate whatever the burstiness.
ArrivalProcess::ArrivalProcess(const ArrivalOptions& options)
    : unpaced_(std::isinf(options.request_rate)),
      rng_(options.seed),
      gap_(options.burstiness, unpaced_ ? 1.0 : 1.0 / (options.request_rate * options.burstiness)) {
}

double ArrivalProcess::NextGapSeconds() { return unpaced_ ? 0.0 : gap_(rng_); }

std::vector<double> ArrivalProcess::ArrivalTimes(int64_t n) {
  std::vector<double> times;
  times.reserve(static_cast<size_t>(n));
  double t = 0;
  for (int64_t i = 0; i < n; ++i) {
    t += NextGapSeconds();
    times.push_back(t);
  }
  return times;
}

}  // namespace kvserve::bench
