// kvserve-bench arrival processes: seeded gamma / Poisson gaps have the requested mean rate and
// variability, an infinite rate sends everything at once, and bad settings are refused.
#include "tools/bench/arrivals.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::bench {
namespace {

using ::testing::Each;
using ::testing::HasSubstr;

constexpr uint64_t kSeed = 20261128;
constexpr int kSamples = 20000;

struct GapStats {
  double mean = 0;
  double cv2 = 0;  // squared coefficient of variation: variance / mean^2
};

GapStats Gaps(const ArrivalOptions& options) {
  absl::StatusOr<ArrivalProcess> process = ArrivalProcess::Create(options);
  EXPECT_TRUE(process.ok()) << process.status();
  std::vector<double> gaps;
  for (int i = 0; i < kSamples; ++i) gaps.push_back(process->NextGapSeconds());
  GapStats s;
  for (double g : gaps) s.mean += g;
  s.mean /= kSamples;
  double variance = 0;
  for (double g : gaps) variance += (g - s.mean) * (g - s.mean);
  variance /= kSamples;
  s.cv2 = variance / (s.mean * s.mean);
  return s;
}

TEST(ArrivalProcessTest, PoissonArrivalsHaveTheRequestedMeanRate) {
  SCOPED_TRACE(absl::StrCat("seed ", kSeed));
  for (double rate : {0.5, 4.0, 250.0}) {
    const GapStats s = Gaps({.request_rate = rate, .burstiness = 1.0, .seed = kSeed});
    // The mean of 20000 exponential gaps has a relative standard error of 0.7%.
    EXPECT_NEAR(1.0 / s.mean, rate, 0.03 * rate) << "rate " << rate;
    // Exponential gaps: variance = mean^2.
    EXPECT_NEAR(s.cv2, 1.0, 0.06) << "rate " << rate;
  }
}

TEST(ArrivalProcessTest, BurstinessChangesVariabilityButNotTheRate) {
  SCOPED_TRACE(absl::StrCat("seed ", kSeed));
  for (double burstiness : {0.25, 0.5, 2.0, 4.0}) {
    const GapStats s = Gaps({.request_rate = 10.0, .burstiness = burstiness, .seed = kSeed});
    EXPECT_NEAR(1.0 / s.mean, 10.0, 0.4) << "burstiness " << burstiness;
    // Gamma with shape k: CV^2 = 1 / k.
    EXPECT_NEAR(s.cv2, 1.0 / burstiness, 0.1 / burstiness) << "burstiness " << burstiness;
  }
}

TEST(ArrivalProcessTest, ArrivalTimesAreCumulativeAndReproducible) {
  ArrivalOptions options{.request_rate = 20.0, .burstiness = 1.0, .seed = kSeed};
  absl::StatusOr<ArrivalProcess> a = ArrivalProcess::Create(options);
  absl::StatusOr<ArrivalProcess> b = ArrivalProcess::Create(options);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  const std::vector<double> times = a->ArrivalTimes(1000);
  EXPECT_EQ(times, b->ArrivalTimes(1000));
  ASSERT_EQ(times.size(), 1000u);
  EXPECT_GT(times[0], 0);
  for (size_t i = 1; i < times.size(); ++i) EXPECT_GE(times[i], times[i - 1]);
  // 1000 arrivals at 20/s take about 50 s.
  EXPECT_NEAR(times.back(), 50.0, 5.0);
  options.seed = kSeed + 1;
  absl::StatusOr<ArrivalProcess> c = ArrivalProcess::Create(options);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(c->ArrivalTimes(1000), times);
}

TEST(ArrivalProcessTest, InfiniteRateSendsEverythingAtOnce) {
  absl::StatusOr<ArrivalProcess> p = ArrivalProcess::Create(
      {.request_rate = std::numeric_limits<double>::infinity(), .burstiness = 0.3, .seed = 1});
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->unpaced());
  EXPECT_THAT(p->ArrivalTimes(50), Each(0.0));
}

TEST(ArrivalProcessTest, RefusesRatesAndBurstinessOutOfRange) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double rate : {0.0, -1.0, nan}) {
    absl::StatusOr<ArrivalProcess> p = ArrivalProcess::Create({.request_rate = rate});
    ASSERT_FALSE(p.ok()) << rate;
    EXPECT_THAT(std::string(p.status().message()), HasSubstr("--request-rate"));
  }
  for (double burstiness : {0.0, -2.0, nan, inf}) {
    absl::StatusOr<ArrivalProcess> p =
        ArrivalProcess::Create({.request_rate = 1.0, .burstiness = burstiness});
    ASSERT_FALSE(p.ok()) << burstiness;
    EXPECT_THAT(std::string(p.status().message()), HasSubstr("--burstiness"));
  }
}

}  // namespace
}  // namespace kvserve::bench
