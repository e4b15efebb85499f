// HiPPO matrices and discretisations against docs/math.md §7 (oracles 1–10, 13, 15) and against
// dense references.
#include "tests/testing/hippo.h"

#include <algorithm>
#include <cmath>
#include <complex>
#include <memory>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/layers/s4_layer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

using Complex = std::complex<double>;
using ::testing::HasSubstr;

double MaxAbsDiff(const DenseMatrix& x, const DenseMatrix& y) {
  EXPECT_EQ(x.rows, y.rows);
  EXPECT_EQ(x.cols, y.cols);
  double diff = 0.0;
  for (size_t i = 0; i < x.data.size(); ++i) diff = std::max(diff, std::abs(x.data[i] - y.data[i]));
  return diff;
}

double MaxAbsDiff(const std::vector<double>& x, const std::vector<double>& y) {
  EXPECT_EQ(x.size(), y.size());
  double diff = 0.0;
  for (size_t i = 0; i < x.size(); ++i) diff = std::max(diff, std::abs(x[i] - y[i]));
  return diff;
}

double MaxAbs(const std::vector<double>& x) {
  double m = 0.0;
  for (double v : x) m = std::max(m, std::abs(v));
  return m;
}

std::vector<double> RandomVector(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> dist(0.0, 1.0);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = dist(rng);
  return v;
}

// ---- HiPPO-LegS (docs/math.md §4.3) ----

// Oracle 1.
TEST(HippoLegSTest, PaperScalingMatchesTheFourByFourOracle) {
  const ContinuousSsm legs = HippoLegS(4, LegSScaling::kPaper);
  const double r3 = std::sqrt(3.0), r5 = std::sqrt(5.0), r7 = std::sqrt(7.0);
  // clang-format off
  const std::vector<double> expected_a = {
      -1,  0,                 0,                 0,
      -r3, -2,                0,                 0,
      -r5, -std::sqrt(15.0),  -3,                0,
      -r7, -std::sqrt(21.0),  -std::sqrt(35.0),  -4};
  // clang-format on
  for (int i = 0; i < 16; ++i) EXPECT_DOUBLE_EQ(legs.a.data[i], expected_a[i]) << "A entry " << i;
  EXPECT_NEAR(legs.a(2, 0), -2.236068, 1e-6);
  EXPECT_NEAR(legs.a(3, 1), -4.582576, 1e-6);
  EXPECT_NEAR(legs.a(3, 2), -5.916080, 1e-6);
  const std::vector<double> expected_b = {1.0, r3, r5, r7};
  for (int i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(legs.b[i], expected_b[i]) << "B entry " << i;
}

TEST(HippoLegSTest, SuAndIntegerScalingsAreDiagonalRescalingsOfThePaperForm) {
  const int64_t n = 9;
  const ContinuousSsm paper = HippoLegS(n, LegSScaling::kPaper);
  const ContinuousSsm su = HippoLegS(n, LegSScaling::kSu);
  const ContinuousSsm integer = HippoLegS(n, LegSScaling::kInteger);
  // Integer form: state c̃_k = c_k·√((2k+1)/2) of Su's c_k, so Ã = Λ⁻¹AΛ, B̃ = Λ⁻¹B_Su with
  // Λ = diag(√(2/(2k+1))).
  for (int64_t r = 0; r < n; ++r) {
    const double lr = std::sqrt(2.0 / (2.0 * r + 1.0));
    EXPECT_DOUBLE_EQ(su.b[r], std::sqrt(2.0) * paper.b[r]);
    EXPECT_NEAR(integer.b[r], su.b[r] / lr, 1e-12);
    for (int64_t c = 0; c < n; ++c) {
      const double lc = std::sqrt(2.0 / (2.0 * c + 1.0));
      EXPECT_EQ(su.a(r, c), paper.a(r, c));
      EXPECT_NEAR(integer.a(r, c), paper.a(r, c) * lc / lr, 1e-12) << r << "," << c;
    }
  }
}

// Oracle 2: the first column of A is −B, so the equilibrium for u ≡ 1 is e_0 (√2·e_0 for Su's B).
TEST(HippoLegSTest, FirstColumnIsMinusBSoTheEquilibriumIsTheFirstBasisVector) {
  for (LegSScaling scaling : {LegSScaling::kPaper, LegSScaling::kInteger, LegSScaling::kSu}) {
    const ContinuousSsm legs = HippoLegS(12, scaling);
    const double scale = scaling == LegSScaling::kSu ? std::sqrt(2.0) : 1.0;
    for (int64_t r = 0; r < 12; ++r) EXPECT_DOUBLE_EQ(-legs.a(r, 0) * scale, legs.b[r]);
    std::vector<double> minus_b = legs.b;
    for (double& v : minus_b) v = -v;
    absl::StatusOr<std::vector<double>> x = Solve(legs.a, minus_b);  // A x* + B = 0
    ASSERT_TRUE(x.ok()) << x.status();
    for (int64_t r = 0; r < 12; ++r) EXPECT_NEAR((*x)[r], r == 0 ? scale : 0.0, 1e-12) << r;
  }
}

// Oracle 3, first half: A is lower-triangular, so its eigenvalues are its diagonal, −1 … −N.
TEST(HippoLegSTest, EigenvaluesAreMinusOneToMinusN) {
  for (LegSScaling scaling : {LegSScaling::kPaper, LegSScaling::kSu, LegSScaling::kInteger}) {
    const ContinuousSsm legs = HippoLegS(10, scaling);
    for (int64_t r = 0; r < 10; ++r) {
      EXPECT_EQ(legs.a(r, r), -(r + 1.0));
      for (int64_t c = r + 1; c < 10; ++c) EXPECT_EQ(legs.a(r, c), 0.0);
    }
  }
}

// Oracle 3, second half: expm(ln 2 · A) is lower-triangular with diagonal 2^−1 … 2^−N.
TEST(HippoLegSTest, ExponentialOfLn2TimesAHasEigenvaluesPowersOfOneHalf) {
  const int64_t n = 8;
  DenseMatrix x = HippoLegS(n, LegSScaling::kPaper).a;
  for (double& v : x.data) v *= std::numbers::ln2;
  const DenseMatrix e = MatrixExp(x);
  for (int64_t r = 0; r < n; ++r) {
    EXPECT_NEAR(e(r, r), std::ldexp(1.0, -static_cast<int>(r + 1)), 1e-14) << r;
    for (int64_t c = r + 1; c < n; ++c) EXPECT_EQ(e(r, c), 0.0) << r << "," << c;
  }
}

// Oracle 4.
TEST(LegSFastOpsTest, LinearTimeMatVecEqualsTheDenseProduct) {
  const int64_t n = 16;
  const DenseMatrix a = HippoLegS(n, LegSScaling::kPaper).a;
  const std::vector<double> v = RandomVector(n, 4);
  std::vector<double> fast(n);
  LegSMatVec(v.data(), n, fast.data());
  EXPECT_LT(MaxAbsDiff(fast, MatVec(a, v)), 1e-12);
  std::vector<double> in_place = v;
  LegSMatVec(in_place.data(), n, in_place.data());
  EXPECT_EQ(in_place, fast);
}

TEST(LegSFastOpsTest, LinearTimeShiftedSolveEqualsTheDenseSolve) {
  const int64_t n = 16;
  const double lambda = 0.37;
  DenseMatrix shifted = HippoLegS(n, LegSScaling::kPaper).a;  // I − λA
  for (double& v : shifted.data) v *= -lambda;
  for (int64_t i = 0; i < n; ++i) shifted(i, i) += 1.0;
  const std::vector<double> v = RandomVector(n, 5);
  absl::StatusOr<std::vector<double>> dense = Solve(shifted, v);
  ASSERT_TRUE(dense.ok()) << dense.status();
  std::vector<double> fast(n);
  LegSShiftedSolve(v.data(), n, lambda, fast.data());
  EXPECT_LT(MaxAbsDiff(fast, *dense), 1e-12);
  std::vector<double> in_place = v;
  LegSShiftedSolve(in_place.data(), n, lambda, in_place.data());
  EXPECT_EQ(in_place, fast);
}

TEST(LegSFastOpsTest, BilinearStepEqualsTheDenseTimeVaryingUpdate) {
  const int64_t n = 12;
  const ContinuousSsm legs = HippoLegS(n, LegSScaling::kSu);
  std::vector<double> fast = RandomVector(n, 6);
  std::vector<double> dense = fast;
  const std::vector<double> u = RandomVector(40, 7);
  for (int64_t k = 1; k <= 40; ++k) {
    const double kd = static_cast<double>(k);
    LegSBilinearStep(k, u[k - 1], legs.b.data(), n, fast.data());
    // x ← (I − A/(2(k+1)))⁻¹ [(I + A/(2k)) x + B u / k]
    DenseMatrix lhs = DenseMatrix::Identity(n), rhs = DenseMatrix::Identity(n);
    for (size_t i = 0; i < lhs.data.size(); ++i) {
      lhs.data[i] -= legs.a.data[i] / (2.0 * (kd + 1.0));
      rhs.data[i] += legs.a.data[i] / (2.0 * kd);
    }
    std::vector<double> t = MatVec(rhs, dense);
    for (int64_t i = 0; i < n; ++i) t[i] += legs.b[i] * u[k - 1] / kd;
    absl::StatusOr<std::vector<double>> next = Solve(lhs, t);
    ASSERT_TRUE(next.ok()) << next.status();
    dense = *next;
  }
  EXPECT_LT(MaxAbsDiff(fast, dense), 1e-12 * MaxAbs(dense));
}

// Polynomials in the power basis, lowest degree first, for exact Legendre projections.
using Poly = std::vector<double>;

Poly PolyMul(const Poly& p, const Poly& q) {
  Poly out(p.size() + q.size() - 1, 0.0);
  for (size_t i = 0; i < p.size(); ++i) {
    for (size_t j = 0; j < q.size(); ++j) out[i + j] += p[i] * q[j];
  }
  return out;
}

double IntegrateOverMinusOneToOne(const Poly& p) {
  double sum = 0.0;
  for (size_t k = 0; k < p.size(); k += 2) sum += 2.0 * p[k] / static_cast<double>(k + 1);
  return sum;
}

// Orthonormal Legendre polynomials g_n = √((2n+1)/2) P_n on [−1, 1], n < count.
std::vector<Poly> OrthonormalLegendre(int64_t count) {
  std::vector<Poly> p = {{1.0}, {0.0, 1.0}};  // P_0, P_1
  for (int64_t n = 1; n + 1 < count; ++n) {   // (n+1) P_{n+1} = (2n+1) s P_n − n P_{n−1}
    Poly next(static_cast<size_t>(n + 2), 0.0);
    for (size_t k = 0; k < p[n].size(); ++k) next[k + 1] += (2.0 * n + 1.0) * p[n][k];
    for (size_t k = 0; k < p[n - 1].size(); ++k) next[k] -= n * p[n - 1][k];
    for (double& c : next) c /= n + 1.0;
    p.push_back(next);
  }
  p.resize(static_cast<size_t>(count));
  for (int64_t n = 0; n < count; ++n) {
    for (double& c : p[n]) c *= std::sqrt((2.0 * n + 1.0) / 2.0);
  }
  return p;
}

double EvalPoly(const Poly& p, double s) {
  double out = 0.0;
  for (size_t k = p.size(); k-- > 0;) out = out * s + p[k];
  return out;
}

// Oracle 5: with Su's scaling the LegS state is exactly the orthonormal Legendre coefficients of
// the history, c_n(T) = ∫ u((s+1)T/2) g_n(s) ds. Starting from the exact coefficients of a cubic
// at T = 0.5, integrating x' = (Ax + Bu)/t (classical Runge–Kutta) to T = 3 lands on them again.
TEST(HippoLegSTest, IsExactOnPolynomials) {
  const int64_t n = 8;
  const Poly u = {0.7, -1.3, 0.45, -0.2};  // u(t) = 0.7 − 1.3t + 0.45t² − 0.2t³
  const std::vector<Poly> g = OrthonormalLegendre(n);
  auto exact = [&](double big_t) {
    Poly history(u.size(), 0.0);  // u((s+1)T/2) as a polynomial in s
    Poly affine = {big_t / 2.0, big_t / 2.0}, power = {1.0};
    for (size_t k = 0; k < u.size(); ++k) {
      for (size_t j = 0; j < power.size(); ++j) history[j] += u[k] * power[j];
      power = PolyMul(power, affine);
    }
    std::vector<double> c(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) c[i] = IntegrateOverMinusOneToOne(PolyMul(history, g[i]));
    return c;
  };
  const ContinuousSsm legs = HippoLegS(n, LegSScaling::kSu);
  auto derivative = [&](double t, const std::vector<double>& x) {
    std::vector<double> dx = MatVec(legs.a, x);
    const double ut = EvalPoly(u, t);
    for (int64_t i = 0; i < n; ++i) dx[i] = (dx[i] + legs.b[i] * ut) / t;
    return dx;
  };
  std::vector<double> x = exact(0.5);
  const int steps = 5000;
  const double h = 2.5 / steps;
  for (int s = 0; s < steps; ++s) {
    const double t = 0.5 + s * h;
    auto axpy = [&](const std::vector<double>& k, double alpha) {
      std::vector<double> out = x;
      for (int64_t i = 0; i < n; ++i) out[i] += alpha * k[i];
      return out;
    };
    const std::vector<double> k1 = derivative(t, x);
    const std::vector<double> k2 = derivative(t + h / 2, axpy(k1, h / 2));
    const std::vector<double> k3 = derivative(t + h / 2, axpy(k2, h / 2));
    const std::vector<double> k4 = derivative(t + h, axpy(k3, h));
    for (int64_t i = 0; i < n; ++i) x[i] += h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
  }
  const std::vector<double> expected = exact(3.0);
  RecordProperty("max_abs_error", absl::StrCat(MaxAbsDiff(x, expected)));
  EXPECT_LT(MaxAbsDiff(x, expected), 1e-10);
  for (int64_t i = 4; i < n; ++i) EXPECT_NEAR(x[i], 0.0, 1e-10) << "coefficient " << i;
}

// Oracle 6: Su's closed form for the eigenvectors of −A (λ = 3, d = 9).
TEST(HippoLegSTest, ClosedFormEigenvectorSatisfiesTheEigenEquation) {
  const int64_t d = 9;
  const int64_t lambda = 3;
  auto factorial = [](int64_t k) { return std::tgamma(static_cast<double>(k) + 1.0); };
  std::vector<double> s(static_cast<size_t>(d), 0.0);  // S_n = Σ_{k≤n} √(2k+1) v_k
  for (int64_t n = lambda - 1; n < d; ++n) {
    const double sign = (d - n - 1) % 2 == 0 ? 1.0 : -1.0;
    s[n] = sign * factorial(d - lambda) * factorial(n + lambda) /
           (factorial(d + lambda - 1) * factorial(n - lambda + 1));
  }
  EXPECT_EQ(s[d - 1], 1.0);
  std::vector<double> v(static_cast<size_t>(d));
  for (int64_t n = 0; n < d; ++n) v[n] = (s[n] - (n > 0 ? s[n - 1] : 0.0)) / std::sqrt(2.0 * n + 1);
  std::vector<double> av(static_cast<size_t>(d));
  LegSMatVec(v.data(), d, av.data());
  for (int64_t n = 0; n < d; ++n) EXPECT_NEAR(-av[n], lambda * v[n], 1e-12 * MaxAbs(v)) << n;
  EXPECT_LT(MaxAbsDiff(MatVec(HippoLegS(d, LegSScaling::kPaper).a, v), av), 1e-12);
}

// ---- HiPPO-LegT (docs/math.md §4.2) ----

// Oracle 7, first half.
TEST(HippoLegTTest, LmuFormMatchesTheFourByFourOracle) {
  const ContinuousSsm lmu = HippoLegT(4, 1.0, LegTForm::kLmu);
  // clang-format off
  const std::vector<double> expected_a = {-1,  1, -1,  1,
                                          -3, -3,  3, -3,
                                          -5, -5, -5,  5,
                                          -7, -7, -7, -7};
  // clang-format on
  EXPECT_EQ(lmu.a.data, expected_a);
  EXPECT_EQ(lmu.b, (std::vector<double>{1, 3, 5, 7}));
}

// Oracle 7, second half: with D = diag((−1)^n), D A D = −A_H and D B = B_H, the HiPPO paper's
// A_H[n,k] = (2n+1)/θ·(−1)^{n−k} (n ≥ k), (2n+1)/θ (n < k), B_H[n] = (2n+1)(−1)^n/θ.
TEST(HippoLegTTest, SignFlipOfOddBasisFunctionsMapsTheLmuFormToThePapersMatrices) {
  const int64_t n = 7;
  const double theta = 2.5;
  const ContinuousSsm lmu = HippoLegT(n, theta, LegTForm::kLmu);
  for (int64_t r = 0; r < n; ++r) {
    const double dr = r % 2 == 0 ? 1.0 : -1.0;
    EXPECT_DOUBLE_EQ(dr * lmu.b[r], (2.0 * r + 1.0) * dr / theta);
    for (int64_t c = 0; c < n; ++c) {
      const double dc = c % 2 == 0 ? 1.0 : -1.0;
      const double a_h = r >= c ? (2.0 * r + 1.0) / theta * ((r - c) % 2 == 0 ? 1.0 : -1.0)
                                : (2.0 * r + 1.0) / theta;
      EXPECT_DOUBLE_EQ(dr * lmu.a(r, c) * dc, -a_h) << r << "," << c;
    }
  }
}

TEST(HippoLegTTest, LmuAndPaperFormsAreDiagonalRescalingsOfSusForm) {
  const int64_t n = 6;
  const double w = 0.75;
  const ContinuousSsm su = HippoLegT(n, w, LegTForm::kSu);
  const ContinuousSsm paper = HippoLegT(n, w, LegTForm::kPaper);
  const ContinuousSsm lmu = HippoLegT(n, w, LegTForm::kLmu);
  // LMU state c̃_n = c_n / λ_n with λ_n = √(2/(2n+1)): Ã = Λ⁻¹AΛ, B̃ = Λ⁻¹B.
  for (int64_t r = 0; r < n; ++r) {
    const double lr = std::sqrt(2.0 / (2.0 * r + 1.0));
    EXPECT_NEAR(paper.b[r] * std::sqrt(2.0), su.b[r], 1e-14);
    EXPECT_NEAR(lmu.b[r], su.b[r] / lr, 1e-12);
    for (int64_t c = 0; c < n; ++c) {
      const double lc = std::sqrt(2.0 / (2.0 * c + 1.0));
      EXPECT_EQ(paper.a(r, c), su.a(r, c));
      EXPECT_NEAR(lmu.a(r, c), su.a(r, c) * lc / lr, 1e-12);
    }
  }
}

// Oracle 8: LegT remembers the last window. ZOH with ε = 1e-3 over u = sin 4t + 0.5 cos 9t up to
// T = 4; the orthonormal coefficients reconstruct u on [T − 1, T].
TEST(HippoLegTTest, ZohStateReconstructsTheLastWindow) {
  const int64_t n = 24;
  const double eps = 1e-3;
  const ContinuousSsm legt = HippoLegT(n, 1.0, LegTForm::kSu);
  absl::StatusOr<DiscreteSsm> zoh = Discretize(legt.a, legt.b, eps, DiscretizationScheme::kZoh);
  ASSERT_TRUE(zoh.ok()) << zoh.status();
  auto u = [](double t) { return std::sin(4.0 * t) + 0.5 * std::cos(9.0 * t); };
  std::vector<double> x(static_cast<size_t>(n), 0.0);
  const int steps = 4000;
  for (int k = 0; k < steps; ++k) {
    // u held over [kε, (k+1)ε): sample mid-step, the held value closest to u on average.
    std::vector<double> next = MatVec(zoh->a_bar, x);
    for (int64_t i = 0; i < n; ++i) next[i] += zoh->b_bar[i] * u((k + 0.5) * eps);
    x = next;
  }
  const double big_t = steps * eps;
  const std::vector<Poly> g = OrthonormalLegendre(n);
  double interior = 0.0, edge = 0.0;
  for (int i = 0; i <= 200; ++i) {
    const double s = -1.0 + i / 100.0;
    double approx = 0.0;
    for (int64_t k = 0; k < n; ++k) approx += x[k] * EvalPoly(g[k], s);
    const double err = std::abs(approx - u((s + 1.0) / 2.0 + big_t - 1.0));
    if (i == 200) {
      edge = err;
    } else if (i > 0) {
      interior = std::max(interior, err);
    }
  }
  RecordProperty("interior_max_error", std::to_string(interior));
  RecordProperty("edge_error", std::to_string(edge));
  EXPECT_LT(interior, 1e-4);
  EXPECT_LT(edge, 1e-4);
}

// ---- Dense linear algebra ----

TEST(DenseAlgebraTest, SolvePivotsPastAZeroLeadingEntry) {
  DenseMatrix x(3, 3);
  x.data = {0, 2, 1, 1, 1, 1, 2, 1, 3};
  absl::StatusOr<std::vector<double>> z = Solve(x, std::vector<double>{7, 6, 13});
  ASSERT_TRUE(z.ok()) << z.status();
  EXPECT_LT(MaxAbsDiff(*z, {1, 2, 3}), 1e-14);  // x·(1,2,3) = (7,6,13)
}

TEST(DenseAlgebraTest, SolveRejectsASingularMatrix) {
  DenseMatrix x(2, 2);
  x.data = {1, 2, 2, 4};
  absl::StatusOr<std::vector<double>> z = Solve(x, std::vector<double>{1, 1});
  ASSERT_FALSE(z.ok());
  EXPECT_THAT(std::string(z.status().message()), HasSubstr("singular"));
}

TEST(DenseAlgebraTest, ExponentialOfARotationGeneratorIsARotation) {
  const double t = 3.0;
  DenseMatrix x(2, 2);
  x.data = {0.0, t, -t, 0.0};
  const DenseMatrix e = MatrixExp(x);
  DenseMatrix expected(2, 2);
  expected.data = {std::cos(t), std::sin(t), -std::sin(t), std::cos(t)};
  EXPECT_LT(MaxAbsDiff(e, expected), 1e-14);
}

TEST(DenseAlgebraTest, ExponentialOfXTimesExponentialOfMinusXIsIdentity) {
  const int64_t n = 10;
  DenseMatrix x(n, n);
  x.data = RandomVector(n * n, 8);  // ‖X‖₁ ≈ 8: several squarings
  DenseMatrix minus_x = x;
  for (double& v : minus_x.data) v = -v;
  EXPECT_LT(MaxAbsDiff(MatMul(MatrixExp(x), MatrixExp(minus_x)), DenseMatrix::Identity(n)), 1e-11);
  EXPECT_EQ(MatrixExp(DenseMatrix(n, n)).data, DenseMatrix::Identity(n).data);
}

TEST(DenseAlgebraTest, SymmetricEigenDiagonalisesASymmetricMatrix) {
  const int64_t n = 12;
  const std::vector<double> r = RandomVector(n * n, 9);
  DenseMatrix x(n, n);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) x(i, j) = r[i * n + j] + r[j * n + i];
  }
  std::vector<double> w;
  DenseMatrix q;
  SymmetricEigen(x, &w, &q);
  for (int64_t j = 0; j + 1 < n; ++j) EXPECT_GE(w[j], w[j + 1]);
  DenseMatrix qt(n, n), lambda_qt(n, n);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      qt(i, j) = q(j, i);
      lambda_qt(i, j) = w[i] * q(j, i);
    }
  }
  EXPECT_LT(MaxAbsDiff(MatMul(qt, q), DenseMatrix::Identity(n)), 1e-13);
  EXPECT_LT(MaxAbsDiff(MatMul(q, lambda_qt), x), 1e-12);
}

// ---- Discretisation (docs/math.md §4.4) ----

struct SystemCase {
  const char* name;
  ContinuousSsm ssm;
};

std::vector<SystemCase> TestSystems() {
  return {{"LegS paper N=8", HippoLegS(8, LegSScaling::kPaper)},
          {"LegS integer N=8", HippoLegS(8, LegSScaling::kInteger)},
          {"LegT Su N=10 w=2", HippoLegT(10, 2.0, LegTForm::kSu)},
          {"LegT LMU N=10 w=0.5", HippoLegT(10, 0.5, LegTForm::kLmu)}};
}

constexpr DiscretizationScheme kAllSchemes[] = {
    DiscretizationScheme::kForwardEuler, DiscretizationScheme::kBackwardEuler,
    DiscretizationScheme::kBilinear, DiscretizationScheme::kZoh};

// Oracle 9: for constant u every scheme keeps x* = −A⁻¹Bu fixed: Ā x* + B̄ u = x*.
TEST(DiscretizeTest, EverySchemeKeepsTheContinuousEquilibriumFixed) {
  const double u = 1.7;
  for (const SystemCase& system : TestSystems()) {
    std::vector<double> minus_bu = system.ssm.b;
    for (double& v : minus_bu) v *= -u;
    absl::StatusOr<std::vector<double>> x_star = Solve(system.ssm.a, minus_bu);
    ASSERT_TRUE(x_star.ok()) << x_star.status();
    for (DiscretizationScheme scheme : kAllSchemes) {
      for (double eps : {1e-3, 0.05, 0.3}) {
        absl::StatusOr<DiscreteSsm> d = Discretize(system.ssm.a, system.ssm.b, eps, scheme);
        ASSERT_TRUE(d.ok()) << d.status();
        std::vector<double> next = MatVec(d->a_bar, *x_star);
        for (size_t i = 0; i < next.size(); ++i) next[i] += d->b_bar[i] * u;
        EXPECT_LT(MaxAbsDiff(next, *x_star), 1e-12 * MaxAbs(*x_star))
            << system.name << " scheme " << static_cast<int>(scheme) << " eps " << eps;
      }
    }
  }
}

TEST(DiscretizeTest, SchemesMatchTheirDefiningFormulas) {
  const ContinuousSsm legt = HippoLegT(6, 1.0, LegTForm::kSu);
  const int64_t n = 6;
  const double eps = 0.02;
  const DenseMatrix identity = DenseMatrix::Identity(n);
  DenseMatrix eps_a = legt.a;
  for (double& v : eps_a.data) v *= eps;
  // Forward Euler is I + εA up to rounding (the compiler may fuse the multiply-add: 1 ulp).
  absl::StatusOr<DiscreteSsm> fe =
      Discretize(legt.a, legt.b, eps, DiscretizationScheme::kForwardEuler);
  ASSERT_TRUE(fe.ok());
  for (int64_t i = 0; i < n * n; ++i)
    EXPECT_DOUBLE_EQ(fe->a_bar.data[i], identity.data[i] + eps_a.data[i]);
  // Backward Euler: (I − εA) Ā = I and (I − εA) B̄ = εB.
  absl::StatusOr<DiscreteSsm> be =
      Discretize(legt.a, legt.b, eps, DiscretizationScheme::kBackwardEuler);
  ASSERT_TRUE(be.ok());
  DenseMatrix lhs = identity;
  for (int64_t i = 0; i < n * n; ++i) lhs.data[i] -= eps_a.data[i];
  EXPECT_LT(MaxAbsDiff(MatMul(lhs, be->a_bar), identity), 1e-14);
  std::vector<double> eps_b = legt.b;
  for (double& v : eps_b) v *= eps;
  EXPECT_LT(MaxAbsDiff(MatVec(lhs, be->b_bar), eps_b), 1e-14);
  // Bilinear: (I − εA/2) Ā = I + εA/2.
  absl::StatusOr<DiscreteSsm> bl = Discretize(legt.a, legt.b, eps, DiscretizationScheme::kBilinear);
  ASSERT_TRUE(bl.ok());
  DenseMatrix half_minus = identity, half_plus = identity;
  for (int64_t i = 0; i < n * n; ++i) {
    half_minus.data[i] -= 0.5 * eps_a.data[i];
    half_plus.data[i] += 0.5 * eps_a.data[i];
  }
  EXPECT_LT(MaxAbsDiff(MatMul(half_minus, bl->a_bar), half_plus), 1e-14);
  EXPECT_LT(MaxAbsDiff(MatVec(half_minus, bl->b_bar), eps_b), 1e-14);
  // ZOH: Ā = e^{εA} and A B̄ = (e^{εA} − I) B.
  absl::StatusOr<DiscreteSsm> zoh = Discretize(legt.a, legt.b, eps, DiscretizationScheme::kZoh);
  ASSERT_TRUE(zoh.ok());
  const DenseMatrix e = MatrixExp(eps_a);
  EXPECT_LT(MaxAbsDiff(zoh->a_bar, e), 1e-14);
  std::vector<double> e_minus_i_b = MatVec(e, legt.b);
  for (int64_t i = 0; i < n; ++i) e_minus_i_b[i] -= legt.b[i];
  EXPECT_LT(MaxAbsDiff(MatVec(legt.a, zoh->b_bar), e_minus_i_b), 1e-13);
}

TEST(DiscretizeTest, ZohNeedsNoInverseOfA) {
  DenseMatrix a(2, 2);  // singular: a pure integrator and a decaying mode
  a.data = {0.0, 0.0, 0.0, -1.0};
  absl::StatusOr<DiscreteSsm> zoh =
      Discretize(a, std::vector<double>{1.0, 1.0}, 0.5, DiscretizationScheme::kZoh);
  ASSERT_TRUE(zoh.ok()) << zoh.status();
  EXPECT_NEAR(zoh->b_bar[0], 0.5, 1e-15);                   // ∫₀^ε 1
  EXPECT_NEAR(zoh->b_bar[1], 1.0 - std::exp(-0.5), 1e-15);  // ∫₀^ε e^{−s}
  EXPECT_NEAR(zoh->a_bar(1, 1), std::exp(-0.5), 1e-15);
}

TEST(DiscretizeTest, RejectsBadShapesAndSteps) {
  const ContinuousSsm legs = HippoLegS(4, LegSScaling::kPaper);
  absl::StatusOr<DiscreteSsm> d =
      Discretize(legs.a, std::vector<double>{1.0}, 0.1, DiscretizationScheme::kBilinear);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("B has 1 entries"));
  d = Discretize(legs.a, legs.b, 0.0, DiscretizationScheme::kZoh);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("step"));
  d = Discretize(legs.a, legs.b, std::nan(""), DiscretizationScheme::kZoh);
  EXPECT_FALSE(d.ok());
  DenseMatrix one(1, 1);  // I − εA singular at ε = 1 for A = 1
  one(0, 0) = 1.0;
  d = Discretize(one, std::vector<double>{1.0}, 1.0, DiscretizationScheme::kBackwardEuler);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("singular"));
}

// Oracle 10: the bilinear Ā of LegS is lower-triangular with diagonal
// (1 − ε(n+1)/2)/(1 + ε(n+1)/2), which are its eigenvalues.
TEST(DiscretizeTest, BilinearLegSEigenvaluesAreMobiusImagesOfMinusN) {
  const int64_t n = 16;
  const ContinuousSsm legs = HippoLegS(n, LegSScaling::kPaper);
  for (double eps : {0.01, 0.1, 1.0}) {
    absl::StatusOr<DiscreteSsm> d =
        Discretize(legs.a, legs.b, eps, DiscretizationScheme::kBilinear);
    ASSERT_TRUE(d.ok()) << d.status();
    for (int64_t r = 0; r < n; ++r) {
      const double h = eps * (r + 1.0) / 2.0;
      EXPECT_NEAR(d->a_bar(r, r), (1.0 - h) / (1.0 + h), 1e-14) << r;
      for (int64_t c = r + 1; c < n; ++c) EXPECT_NEAR(d->a_bar(r, c), 0.0, 1e-13);
    }
  }
}

// Oracle 15: Σ_k K̄_k = Σ_k C Ā^k B̄ = C(I − Ā)⁻¹B̄ = C(−A⁻¹B) = C_0 for LegS with the paper's B
// (4000 terms), for any ε, with bilinear and with ZOH.
TEST(DiscretizeTest, DcGainOfTheLegSKernelIsTheFirstEntryOfC) {
  const int64_t n = 16;
  const ContinuousSsm legs = HippoLegS(n, LegSScaling::kPaper);
  const std::vector<double> c = RandomVector(n, 10);
  for (DiscretizationScheme scheme :
       {DiscretizationScheme::kBilinear, DiscretizationScheme::kZoh}) {
    for (double eps : {0.05, 0.1, 0.7, 3.0}) {
      absl::StatusOr<DiscreteSsm> d = Discretize(legs.a, legs.b, eps, scheme);
      ASSERT_TRUE(d.ok()) << d.status();
      std::vector<double> x = d->b_bar;  // Ā^k B̄
      double gain = 0.0;
      for (int k = 0; k < 4000; ++k) {
        for (int64_t i = 0; i < n; ++i) gain += c[i] * x[i];
        x = MatVec(d->a_bar, x);
      }
      EXPECT_NEAR(gain, c[0], 1e-11) << "scheme " << static_cast<int>(scheme) << " eps " << eps;
    }
  }
}

// ---- NPLR form and S4D-LegS (docs/math.md §5.4, §5.5) ----

// Oracle 13.
TEST(HippoLegSNplrTest, NormalPartIsSkewSymmetricWithRealPartsMinusOneHalf) {
  const int64_t n = 16;
  DenseMatrix s = HippoLegS(n, LegSScaling::kPaper).a;  // A + ½ v vᵀ + ½ I, v_n = √(2n+1)
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < n; ++c) s(r, c) += 0.5 * std::sqrt((2.0 * r + 1) * (2.0 * c + 1));
    s(r, r) += 0.5;
  }
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < n; ++c) EXPECT_EQ(s(r, c) + s(c, r), 0.0) << r << "," << c;
  }
  const LegSNplr nplr = HippoLegSNplr(n);
  for (int64_t j = 0; j < n; ++j) EXPECT_EQ(nplr.lambda[j].real(), -0.5);
  EXPECT_GT(nplr.lambda[0].imag(), 0.0);
  for (int64_t j = 0; j + 1 < n / 2; ++j) {
    EXPECT_LT(nplr.lambda[j].imag(), nplr.lambda[j + 1].imag()) << j;
  }
  for (int64_t j = 0; j < n; ++j) {  // phase convention: first component real and positive
    EXPECT_GT(nplr.v[j].real(), 0.0) << j;
    EXPECT_NEAR(nplr.v[j].imag(), 0.0, 1e-15) << j;
  }
  for (int64_t j = 0; j < n / 2; ++j) EXPECT_EQ(nplr.lambda[j + n / 2], std::conj(nplr.lambda[j]));
}

TEST(HippoLegSNplrTest, UnitaryEigenbasisReconstructsA) {
  for (int64_t n : {4, 16, 64}) {
    const LegSNplr nplr = HippoLegSNplr(n);
    const ContinuousSsm legs = HippoLegS(n, LegSScaling::kPaper);
    double unitary_err = 0.0, a_err = 0.0, eig_err = 0.0, pb_err = 0.0;
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < n; ++c) {
        Complex vv(0.0), a(0.0);  // (V*V)_{rc}, (V Λ V*)_{rc}
        for (int64_t k = 0; k < n; ++k) {
          vv += std::conj(nplr.v[k * n + r]) * nplr.v[k * n + c];
          a += nplr.v[r * n + k] * nplr.lambda[k] * std::conj(nplr.v[c * n + k]);
        }
        a -= std::sqrt((r + 0.5) * (c + 0.5));  // − P Pᵀ
        unitary_err = std::max(unitary_err, std::abs(vv - (r == c ? 1.0 : 0.0)));
        a_err = std::max(a_err, std::abs(a - legs.a(r, c)));
      }
      // (A + P Pᵀ) V = V Λ, row r.
      for (int64_t j = 0; j < n; ++j) {
        Complex lhs(0.0);
        for (int64_t k = 0; k < n; ++k) {
          lhs += (legs.a(r, k) + std::sqrt((r + 0.5) * (k + 0.5))) * nplr.v[k * n + j];
        }
        eig_err = std::max(eig_err, std::abs(lhs - nplr.v[r * n + j] * nplr.lambda[j]));
      }
    }
    for (int64_t j = 0; j < n; ++j) {  // V* B = √2 · V* P for the paper B = √2 P
      pb_err = std::max(pb_err, std::abs(nplr.b[j] - std::sqrt(2.0) * nplr.p[j]));
    }
    RecordProperty(absl::StrCat("errors_n", n),
                   absl::StrCat(unitary_err, " ", a_err, " ", eig_err, " ", pb_err));
    EXPECT_LT(unitary_err, 1e-13) << "N = " << n;
    EXPECT_LT(a_err, 1e-10 * n) << "N = " << n;
    EXPECT_LT(eig_err, 1e-10 * n) << "N = " << n;
    EXPECT_LT(pb_err, 1e-12 * n) << "N = " << n;
  }
}

TEST(HippoLegSNplrTest, S4dLegSInitIsThePositiveFrequencyHalfInFloat) {
  const int64_t modes = 32;
  const LegSNplr nplr = HippoLegSNplr(2 * modes);
  std::vector<float> a_real(modes), a_imag(modes), b(2 * modes);
  S4dLegSInit(modes, a_real.data(), a_imag.data(), b.data());
  for (int64_t j = 0; j < modes; ++j) {
    EXPECT_EQ(a_real[j], -0.5f);
    EXPECT_EQ(a_imag[j], static_cast<float>(nplr.lambda[j].imag()));
    EXPECT_EQ(b[2 * j], static_cast<float>(nplr.b[j].real()));
    EXPECT_EQ(b[2 * j + 1], static_cast<float>(nplr.b[j].imag()));
  }
}

// The values tools/reference/hybrid_s4.py (numpy eigh on −iS, the same phase and order
// conventions) writes into tests/data/tiny_hybrid_s4 for s4_d_state = 8, as fp32.
TEST(HippoLegSNplrTest, S4dLegSInitMatchesTheReferenceToolForN8) {
  std::vector<float> a_real(4), a_imag(4), b(8);
  S4dLegSInit(4, a_real.data(), a_imag.data(), b.data());
  const std::vector<float> expected_imag = {0.427488714f, 1.95779419f, 5.35420847f, 19.8574104f};
  const std::vector<float> expected_b = {0.607647717f, -0.519525051f, 0.29074055f,  -1.13842034f,
                                         0.171442822f, -1.83588123f,  0.129775032f, -5.15399218f};
  for (int j = 0; j < 4; ++j) {
    EXPECT_EQ(a_real[j], -0.5f);
    EXPECT_FLOAT_EQ(a_imag[j], expected_imag[j]) << j;
  }
  for (int j = 0; j < 8; ++j) EXPECT_FLOAT_EQ(b[j], expected_b[j]) << j;
}

// The S4D-LegS layer (M = N/2 modes, outputs 2·Re) is the normal part A + PPᵀ of LegS in its
// eigenbasis: its ZOH kernel equals the dense ZOH kernel cᵀ Ā^k B̄ of (A + PPᵀ, B), once C is
// carried over as C̃ = Vᵀc (y = cᵀx = cᵀV x̃). Limited by the fp32 S4Params.
TEST(HippoLegSNplrTest, S4dLegSLayerHasTheKernelOfTheNormalPartOfLegS) {
  const int64_t modes = 8;
  const int64_t n = 2 * modes;
  const double dt = 0.05;
  const int64_t length = 100;
  const LegSNplr nplr = HippoLegSNplr(n);
  const std::vector<double> c = RandomVector(n, 11);

  S4Params params;
  params.channels = 1;
  params.modes = modes;
  params.discretization = S4Discretization::kZoh;
  params.log_dt = {static_cast<float>(std::log(dt))};
  params.a_real.resize(modes);
  params.a_imag.resize(modes);
  params.b.resize(2 * modes);
  S4dLegSInit(modes, params.a_real.data(), params.a_imag.data(), params.b.data());
  for (int64_t j = 0; j < modes; ++j) {
    Complex c_tilde(0.0);
    for (int64_t k = 0; k < n; ++k) c_tilde += nplr.v[k * n + j] * c[k];
    params.c.push_back(static_cast<float>(c_tilde.real()));
    params.c.push_back(static_cast<float>(c_tilde.imag()));
  }
  params.d = {0.0f};
  absl::StatusOr<std::unique_ptr<S4Layer>> layer = S4Layer::Create(params);
  ASSERT_TRUE(layer.ok()) << layer.status();
  std::vector<double> kernel;
  (*layer)->Kernel(length, &kernel);

  ContinuousSsm legs = HippoLegS(n, LegSScaling::kPaper);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t k = 0; k < n; ++k) legs.a(r, k) += std::sqrt((r + 0.5) * (k + 0.5));
  }
  absl::StatusOr<DiscreteSsm> zoh = Discretize(legs.a, legs.b, dt, DiscretizationScheme::kZoh);
  ASSERT_TRUE(zoh.ok()) << zoh.status();
  std::vector<double> x = zoh->b_bar;  // Ā^k B̄
  double diff = 0.0, scale = 0.0;
  for (int64_t k = 0; k < length; ++k) {
    double expected = 0.0;
    for (int64_t i = 0; i < n; ++i) expected += c[i] * x[i];
    diff = std::max(diff, std::abs(kernel[k] - expected));
    scale = std::max(scale, std::abs(expected));
    x = MatVec(zoh->a_bar, x);
  }
  RecordProperty("relative_error", absl::StrCat(diff / scale));
  EXPECT_LT(diff, 1e-5 * scale);
}

}  // namespace
}  // namespace kvserve::engine
