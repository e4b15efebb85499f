// Arrival processes for open-loop load: when each request is due, as offsets from the run start.
//
// Inter-arrival gaps are drawn from a gamma distribution with shape = burstiness and mean
// 1 / rate. Burstiness 1 is the exponential distribution, i.e. Poisson arrivals; below 1 the gaps
// vary more (bursts and lulls, coefficient of variation 1/sqrt(burstiness)), above 1 they are more
// regular. An infinite rate makes every request due at once (closed-loop runs then pace
// themselves with --max-concurrency).
//
// Deterministic for a given seed. Thread-compatible.
#ifndef KVSERVE_TOOLS_BENCH_ARRIVALS_H_
#define KVSERVE_TOOLS_BENCH_ARRIVALS_H_

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "absl/status/statusor.h"

namespace kvserve::bench {

struct ArrivalOptions {
  double request_rate = std::numeric_limits<double>::infinity();  // requests per second, > 0
  double burstiness = 1.0;                                        // gamma shape, > 0
  uint64_t seed = 0;
};

class ArrivalProcess {
 public:
  // Fails with InvalidArgument naming the flag when rate or burstiness is not > 0 (or NaN).
  static absl::StatusOr<ArrivalProcess> Create(const ArrivalOptions& options);

  // The gap before the next request, in seconds (0 when the rate is infinite).
  double NextGapSeconds();

  // Offsets of the first `n` requests: the cumulative sum of n gaps (the first request waits one
  // gap too, as a Poisson process's first arrival does).
  std::vector<double> ArrivalTimes(int64_t n);

  bool unpaced() const { return unpaced_; }

 private:
  ArrivalProcess(const ArrivalOptions& options);

  bool unpaced_;
  std::mt19937_64 rng_;
  std::gamma_distribution<double> gap_;
};

}  // namespace kvserve::bench

#endif  // KVSERVE_TOOLS_BENCH_ARRIVALS_H_
