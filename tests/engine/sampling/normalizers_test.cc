#include "engine/sampling/normalizers.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "absl/types/span.h"
#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// docs/math.md §7 quotes its oracles to 6 significant figures.
constexpr double kOracleTolerance = 1e-6;

std::vector<double> SparsemaxOf(const std::vector<double>& x, double* lambda = nullptr) {
  std::vector<double> p(x.size());
  const double threshold = Sparsemax(x, absl::MakeSpan(p));
  if (lambda != nullptr) *lambda = threshold;
  return p;
}

std::vector<double> Entmax15Of(const std::vector<double>& x, double* lambda = nullptr) {
  std::vector<double> p(x.size());
  const double threshold = Entmax15(x, absl::MakeSpan(p));
  if (lambda != nullptr) *lambda = threshold;
  return p;
}

// Naive softmax: exp(x - max) / sum, no tricks.
std::vector<double> NaiveSoftmax(const std::vector<double>& x) {
  const double max = *std::max_element(x.begin(), x.end());
  std::vector<double> p;
  double sum = 0.0;
  for (double v : x) {
    p.push_back(std::exp(v - max));
    sum += p.back();
  }
  for (double& v : p) v /= sum;
  return p;
}

// The independent oracle: entmax-alpha by bisection on the threshold (Peters et al. 2019, the
// `entmax_bisect` formulation), no sorting. With beta = alpha - 1, p_i = max(beta x_i - tau,
// 0)^(1/beta) and sum(p) is decreasing in tau. At tau = max(beta x) - 1 the largest entry alone
// gives 1; at tau = max(beta x) - (1/n)^beta every entry gives at most 1/n. Bisects until the
// bracket stops shrinking, then normalizes. Returns tau; -inf entries get 0.
double EntmaxBisect(const std::vector<double>& x, double alpha, std::vector<double>* p,
                    int max_iterations = 2000) {
  const double beta = alpha - 1.0;
  const size_t n = x.size();
  double max_scaled = -kInf;
  for (double v : x) max_scaled = std::max(max_scaled, beta * v);
  const auto mass = [&](double tau, std::vector<double>* out) {
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) {
      const double d = beta * x[i] - tau;
      const double value = d > 0.0 ? std::pow(d, 1.0 / beta) : 0.0;
      if (out != nullptr) (*out)[i] = value;
      sum += value;
    }
    return sum;
  };
  double lo = max_scaled - 1.0;
  double hi = max_scaled - std::pow(1.0 / static_cast<double>(n), beta);
  for (int i = 0; i < max_iterations; ++i) {
    const double mid = lo + (hi - lo) / 2.0;
    if (mid <= lo || mid >= hi) break;
    (mass(mid, nullptr) >= 1.0 ? lo : hi) = mid;
  }
  p->assign(n, 0.0);
  const double sum = mass(lo, p);
  for (double& v : *p) v /= sum;
  return lo;
}

void ExpectVectorNear(const std::vector<double>& actual, const std::vector<double>& expected,
                      double tolerance, const char* what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_NEAR(actual[i], expected[i], tolerance) << what << " index " << i;
  }
}

double Sum(const std::vector<double>& p) { return std::accumulate(p.begin(), p.end(), 0.0); }

// --- Softmax (oracle 24): pins the naive reference the other tests lean on ----------------------

TEST(NormalizersTest, NaiveSoftmaxMatchesOracle) {
  const std::vector<double> p = NaiveSoftmax({1, 2, 3});
  ExpectVectorNear(p, {0.090031, 0.244728, 0.665241}, kOracleTolerance, "softmax");
  double sum_squares = 0.0;
  for (double v : p) sum_squares += v * v;
  EXPECT_NEAR(1.0 - sum_squares, 0.4894569, 1e-7);  // half the L1 norm of the Jacobian
}

// --- Sparsemax (oracle 25) ----------------------------------------------------------------------

TEST(NormalizersTest, SparsemaxMatchesOracles) {
  double lambda = 0.0;
  ExpectVectorNear(SparsemaxOf({0.5, 0.3, -1}, &lambda), {0.6, 0.4, 0.0}, 1e-15, "partial");
  EXPECT_NEAR(lambda, -0.1, 1e-15);

  ExpectVectorNear(SparsemaxOf({0.1, 0, -0.1}, &lambda), {1.3 / 3, 1.0 / 3, 0.7 / 3}, 1e-15,
                   "full support");
  EXPECT_NEAR(lambda, -1.0 / 3, 1e-15);

  ExpectVectorNear(SparsemaxOf({1, 2, 3}, &lambda), {0.0, 0.0, 1.0}, 0.0, "one-hot");
  EXPECT_EQ(lambda, 2.0);
}

TEST(NormalizersTest, SparsemaxZerosAreExact) {
  const std::vector<double> p = SparsemaxOf({0.5, 0.3, -1});
  EXPECT_EQ(p[2], 0.0);
  const std::vector<double> q = SparsemaxOf({1, 2, 3});
  EXPECT_EQ(q[0], 0.0);
  EXPECT_EQ(q[1], 0.0);
  EXPECT_EQ(q[2], 1.0);
}

TEST(NormalizersTest, SparsemaxLossIsZeroAtConfidentOneHot) {
  // L_t = 1/2 - x_t + sum_{i in support} (x_i^2 - lambda^2) / 2, target t = 0.
  const std::vector<double> x = {10, 0, -1};
  double lambda = 0.0;
  const std::vector<double> p = SparsemaxOf(x, &lambda);
  double loss = 0.5 - x[0];
  for (size_t i = 0; i < x.size(); ++i) {
    if (p[i] > 0.0) loss += 0.5 * (x[i] * x[i] - lambda * lambda);
  }
  EXPECT_EQ(p, (std::vector<double>{1.0, 0.0, 0.0}));
  EXPECT_NEAR(loss, 0.0, 1e-12);
}

// --- Entmax-1.5 (oracle 26) ---------------------------------------------------------------------

TEST(NormalizersTest, Entmax15MatchesOracles) {
  ExpectVectorNear(Entmax15Of({1, 2, 3}), {0.0, 0.169281, 0.830719}, kOracleTolerance, "[1,2,3]");
  ExpectVectorNear(Entmax15Of({1.5, 1, 0.2, -2}), {0.658587, 0.315320, 0.026093, 0.0},
                   kOracleTolerance, "[1.5,1,0.2,-2]");
  // Exact zeros, not just small numbers.
  EXPECT_EQ(Entmax15Of({1, 2, 3})[0], 0.0);
  EXPECT_EQ(Entmax15Of({1.5, 1, 0.2, -2})[3], 0.0);
}

TEST(NormalizersTest, Entmax15ThresholdDefinesTheOutput) {
  // [1, 2, 3]: z = [0.5, 1, 1.5]; support {1, 1.5}, lambda = 1.25 - sqrt(1/2 - 1/16).
  double lambda = 0.0;
  const std::vector<double> p = Entmax15Of({1, 2, 3}, &lambda);
  EXPECT_NEAR(lambda, 1.25 - std::sqrt(0.4375), 1e-15);
  EXPECT_NEAR(p[2], (1.5 - lambda) * (1.5 - lambda), 1e-15);
  EXPECT_NEAR(p[1], (1.0 - lambda) * (1.0 - lambda), 1e-15);
}

TEST(NormalizersTest, Entmax15StopsAtTheSupportBeforeThresholdsTurnComplex) {
  // z = x / 2 = [0.5, -0.75, -1.25]. lambda_1 = -0.5 >= z_(2): the support is the first entry
  // alone. lambda_3 would need sqrt(1/3 - var) with var = 0.5417 > 1/3; an implementation that
  // computes every lambda_k before choosing must not trip over it.
  const std::vector<double> x = {1.0, -1.5, -2.5};
  double lambda = 0.0;
  EXPECT_EQ(Entmax15Of(x, &lambda), (std::vector<double>{1.0, 0.0, 0.0}));
  EXPECT_EQ(lambda, -0.5);
  std::vector<double> oracle;
  EntmaxBisect(x, 1.5, &oracle);
  ExpectVectorNear(oracle, {1.0, 0.0, 0.0}, 1e-12, "bisection");
}

TEST(NormalizersTest, BisectionWithAlphaTwoReproducesSparsemax) {
  const std::vector<double> x = {1.5, 1, 0.2, -2};
  std::vector<double> bisected;
  EntmaxBisect(x, 2.0, &bisected);
  ExpectVectorNear(bisected, {0.75, 0.25, 0.0, 0.0}, 1e-12, "bisection alpha=2");
  ExpectVectorNear(SparsemaxOf(x), {0.75, 0.25, 0.0, 0.0}, 1e-15, "sparsemax");
}

TEST(NormalizersTest, BisectionApproachesSoftmaxAsAlphaGoesToOne) {
  const std::vector<double> x = {1, 2, 3};
  const std::vector<double> softmax = NaiveSoftmax(x);
  double previous_error = kInf;
  for (double alpha : {1.1, 1.01, 1.001, 1.0001}) {
    std::vector<double> p;
    EntmaxBisect(x, alpha, &p);
    double error = 0.0;
    for (size_t i = 0; i < x.size(); ++i) error = std::max(error, std::abs(p[i] - softmax[i]));
    EXPECT_LT(error, previous_error) << "alpha " << alpha;
    previous_error = error;
  }
  EXPECT_LT(previous_error, 1e-3);
}

// --- Against the bisection oracle ---------------------------------------------------------------

TEST(NormalizersTest, MatchBisectionOnRandomVectors) {
  constexpr uint64_t kSeed = 20240917;
  std::mt19937_64 rng(kSeed);
  for (int trial = 0; trial < 300; ++trial) {
    const size_t n = 1 + rng() % 200;
    const double stddev = std::vector<double>{0.01, 0.3, 1.0, 5.0, 50.0}[trial % 5];
    std::normal_distribution<double> normal(rng() % 2 == 0 ? 0.0 : 1000.0, stddev);
    std::vector<double> x(n);
    for (double& v : x) v = normal(rng);
    if (trial % 7 == 3) x[rng() % n] = -kInf;
    if (trial % 7 == 3 && n > 1) x[0] = 1000.0;  // keep a finite entry

    double lambda = 0.0;
    std::vector<double> oracle;
    EntmaxBisect(x, 2.0, &oracle);
    const std::vector<double> sparse = SparsemaxOf(x, &lambda);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_NEAR(sparse[i], oracle[i], 1e-9) << "sparsemax seed " << kSeed << " trial " << trial;
      if (x[i] != -kInf) {
        ASSERT_NEAR(sparse[i], std::max(x[i] - lambda, 0.0), 1e-9) << "trial " << trial;
      }
    }
    EXPECT_NEAR(Sum(sparse), 1.0, 1e-12) << "trial " << trial;

    EntmaxBisect(x, 1.5, &oracle);
    const std::vector<double> entmax = Entmax15Of(x, &lambda);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_NEAR(entmax[i], oracle[i], 1e-9) << "entmax seed " << kSeed << " trial " << trial;
      if (x[i] != -kInf) {
        const double d = std::max(x[i] / 2 - lambda, 0.0);
        ASSERT_NEAR(entmax[i], d * d, 1e-9) << "trial " << trial;
      }
    }
    EXPECT_NEAR(Sum(entmax), 1.0, 1e-12) << "trial " << trial;
  }
}

// --- Properties (oracle 29) ---------------------------------------------------------------------

TEST(NormalizersTest, ShiftInvariant) {
  constexpr uint64_t kSeed = 29;
  std::mt19937_64 rng(kSeed);
  std::normal_distribution<double> normal(0.0, 2.0);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<double> x(1 + rng() % 50);
    for (double& v : x) v = normal(rng);
    const std::vector<double> sparse = SparsemaxOf(x);
    const std::vector<double> entmax = Entmax15Of(x);
    for (double shift : {-1e4, -3.5, 0.25, 1e4}) {
      std::vector<double> shifted = x;
      for (double& v : shifted) v += shift;
      ExpectVectorNear(SparsemaxOf(shifted), sparse, 1e-11, "sparsemax");
      ExpectVectorNear(Entmax15Of(shifted), entmax, 1e-11, "entmax");
    }
  }
}

TEST(NormalizersTest, Monotone) {
  constexpr uint64_t kSeed = 2929;
  std::mt19937_64 rng(kSeed);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<double> x(2 + rng() % 40);
    for (double& v : x) v = std::round(normal(rng) * 8.0) / 8.0;  // coarse: plenty of ties
    for (const std::vector<double>& p : {SparsemaxOf(x), Entmax15Of(x)}) {
      for (size_t i = 0; i < x.size(); ++i) {
        for (size_t j = 0; j < x.size(); ++j) {
          if (x[i] == x[j]) {
            EXPECT_EQ(p[i], p[j]) << "seed " << kSeed << " trial " << trial;
          }
          if (x[i] > x[j]) {
            EXPECT_GE(p[i], p[j]) << "seed " << kSeed << " trial " << trial;
          }
          if (p[i] > p[j]) {
            EXPECT_GT(x[i], x[j]) << "seed " << kSeed << " trial " << trial;
          }
        }
      }
    }
  }
}

// --- Edge cases ---------------------------------------------------------------------------------

TEST(NormalizersTest, NegativeInfinityGetsZeroAndChangesNothingElse) {
  const std::vector<double> with_inf = {-kInf, 0.5, -kInf, 0.3, -1};
  ExpectVectorNear(SparsemaxOf(with_inf), {0.0, 0.6, 0.0, 0.4, 0.0}, 1e-15, "sparsemax");
  const std::vector<double> finite = Entmax15Of({0.5, 0.3, -1});
  EXPECT_EQ(Entmax15Of(with_inf), (std::vector<double>{0.0, finite[0], 0.0, finite[1], finite[2]}));
  // Only one finite entry: it takes everything.
  EXPECT_EQ(SparsemaxOf({-kInf, 7.0, -kInf}), (std::vector<double>{0.0, 1.0, 0.0}));
  EXPECT_EQ(Entmax15Of({-kInf, 7.0, -kInf}), (std::vector<double>{0.0, 1.0, 0.0}));
}

TEST(NormalizersTest, NanCountsAsNegativeInfinity) {
  EXPECT_EQ(SparsemaxOf({kNaN, 0.5, 0.3, -1}), SparsemaxOf({-kInf, 0.5, 0.3, -1}));
  EXPECT_EQ(Entmax15Of({kNaN, 0.5, 0.3, -1}), Entmax15Of({-kInf, 0.5, 0.3, -1}));
}

TEST(NormalizersTest, PositiveInfinityEntriesShareTheMass) {
  EXPECT_EQ(SparsemaxOf({kInf, 1e300, kInf}), (std::vector<double>{0.5, 0.0, 0.5}));
  ExpectVectorNear(Entmax15Of({kInf, 1e300, kInf}), {0.5, 0.0, 0.5}, 1e-15, "entmax");
}

TEST(NormalizersTest, SingleElementGetsEverything) {
  double lambda = 0.0;
  EXPECT_EQ(SparsemaxOf({-3.5}, &lambda), (std::vector<double>{1.0}));
  EXPECT_EQ(lambda, -4.5);
  EXPECT_EQ(Entmax15Of({-3.5}, &lambda), (std::vector<double>{1.0}));
  EXPECT_EQ(lambda, -2.75);
}

TEST(NormalizersTest, AllEqualEntriesAreUniform) {
  // The "every entry qualifies" case: the support is the whole vector.
  for (size_t n : {size_t{2}, size_t{3}, size_t{7}, size_t{1000}}) {
    for (double value : {-2.0, 0.0, 123.25}) {
      const std::vector<double> x(n, value);
      const std::vector<double> uniform(n, 1.0 / static_cast<double>(n));
      ExpectVectorNear(SparsemaxOf(x), uniform, 1e-15, "sparsemax");
      ExpectVectorNear(Entmax15Of(x), uniform, 1e-15, "entmax");
    }
  }
}

TEST(NormalizersTest, ThresholdsReportTheSupportSize) {
  // The incremental protocol the Sampler uses, on sorted input.
  const std::vector<double> sorted = {1.5, 1, 0.2, -2};
  SparsemaxThreshold sparse;
  size_t k = 0;
  do {
    sparse.Add(sorted[k++]);
  } while (!sparse.IsComplete(k < sorted.size() ? sorted[k] : -kInf));
  EXPECT_EQ(sparse.num_added(), 2);
  EXPECT_NEAR(sparse.threshold(), 0.75, 1e-15);
  EXPECT_NEAR(sparse.Probability(1.5), 0.75, 1e-15);
  EXPECT_EQ(sparse.Probability(0.2), 0.0);
  EXPECT_EQ(sparse.Probability(-kInf), 0.0);

  Entmax15Threshold entmax;
  k = 0;
  do {
    entmax.Add(sorted[k++]);
  } while (!entmax.IsComplete(k < sorted.size() ? sorted[k] : -kInf));
  EXPECT_EQ(entmax.num_added(), 3);
  EXPECT_NEAR(entmax.Probability(0.2), 0.026093, kOracleTolerance);
  EXPECT_EQ(entmax.Probability(-2), 0.0);
  EXPECT_EQ(entmax.Probability(-kInf), 0.0);
}

TEST(NormalizersDeathTest, RejectsBadInput) {
  std::vector<double> p(3);
  const std::vector<double> all_inf = {-kInf, kNaN, -kInf};
  EXPECT_DEATH(Sparsemax(all_inf, absl::MakeSpan(p)), "-inf or NaN");
  EXPECT_DEATH(Entmax15(all_inf, absl::MakeSpan(p)), "-inf or NaN");
  const std::vector<double> x = {1, 2};
  EXPECT_DEATH(Sparsemax(x, absl::MakeSpan(p)), "size");
  EXPECT_DEATH(Sparsemax({}, absl::Span<double>()), "empty");
}

}  // namespace
}  // namespace kvserve::engine
