// Dense reference implementations; clarity over speed, all in double.
//
// MatrixExp: scaling and squaring. X is scaled by 2^−s until ‖X‖₁ ≤ ½, where the [8/8] Padé
// approximant r(X) = Q(X)⁻¹P(X), P(X) = Σ_k c_k X^k, Q(X) = P(−X), c_k = (2q−k)! q! / ((2q)! k!
// (q−k)!), has a truncation error of order ‖X‖^{17}/(16!·17!)·(8!)² ≈ 1e-24, far below rounding,
// and Q(X) is within ½ of I in norm so the solve is well conditioned; then r is squared s times.
//
// HippoLegSNplr: S = A + PPᵀ + ½I is real skew-symmetric, so its eigenvalues are ±iω and SᵀS = −S²
// is symmetric positive semi-definite with each ω² twice. A Jacobi eigenvector q of ω² lies in the
// invariant plane span{q, Sq}; with q' = Sq/ω (a unit vector orthogonal to q, since qᵀSq = 0 and
// ‖Sq‖² = qᵀSᵀSq = ω²), Sq = ωq' and Sq' = S²q/ω = −ωq, so S(q − iq') = iω(q − iq').
#include "tests/testing/hippo.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/logging.h"

namespace kvserve::engine {
namespace {

using Complex = std::complex<double>;

double NormOne(const DenseMatrix& x) {
  double best = 0.0;
  for (int64_t c = 0; c < x.cols; ++c) {
    double sum = 0.0;
    for (int64_t r = 0; r < x.rows; ++r) sum += std::abs(x(r, c));
    best = std::max(best, sum);
  }
  return best;
}

DenseMatrix AddScaled(const DenseMatrix& x, double alpha, const DenseMatrix& y) {
  DenseMatrix out = x;
  for (size_t i = 0; i < out.data.size(); ++i) out.data[i] += alpha * y.data[i];
  return out;
}

DenseMatrix ColumnMatrix(const std::vector<double>& v) {
  DenseMatrix m(static_cast<int64_t>(v.size()), 1);
  m.data = v;
  return m;
}

std::vector<double> Scaled(std::vector<double> v, double alpha) {
  for (double& x : v) x *= alpha;
  return v;
}

}  // namespace

DenseMatrix DenseMatrix::Identity(int64_t n) {
  DenseMatrix m(n, n);
  for (int64_t i = 0; i < n; ++i) m(i, i) = 1.0;
  return m;
}

ContinuousSsm HippoLegS(int64_t n, LegSScaling scaling) {
  ContinuousSsm ssm{DenseMatrix(n, n), std::vector<double>(static_cast<size_t>(n))};
  for (int64_t r = 0; r < n; ++r) {
    const double two_r1 = 2.0 * static_cast<double>(r) + 1.0;
    for (int64_t c = 0; c < r; ++c) {
      const double two_c1 = 2.0 * static_cast<double>(c) + 1.0;
      ssm.a(r, c) = scaling == LegSScaling::kInteger ? -two_r1 : -std::sqrt(two_r1 * two_c1);
    }
    ssm.a(r, r) = -static_cast<double>(r + 1);
    switch (scaling) {
      case LegSScaling::kPaper:
        ssm.b[r] = std::sqrt(two_r1);
        break;
      case LegSScaling::kSu:
        ssm.b[r] = std::sqrt(2.0 * two_r1);
        break;
      case LegSScaling::kInteger:
        ssm.b[r] = two_r1;
        break;
    }
  }
  return ssm;
}

ContinuousSsm HippoLegT(int64_t n, double window, LegTForm form) {
  ContinuousSsm ssm{DenseMatrix(n, n), std::vector<double>(static_cast<size_t>(n))};
  for (int64_t r = 0; r < n; ++r) {
    const double two_r1 = 2.0 * static_cast<double>(r) + 1.0;
    for (int64_t c = 0; c < n; ++c) {
      const double two_c1 = 2.0 * static_cast<double>(c) + 1.0;
      const double magnitude = form == LegTForm::kLmu ? two_r1 : std::sqrt(two_r1 * two_c1);
      const double sign = (c < r || (r - c) % 2 == 0) ? -1.0 : 1.0;  // −(−1)^{r−c} for c ≥ r
      ssm.a(r, c) = sign * magnitude / window;
    }
    switch (form) {
      case LegTForm::kSu:
        ssm.b[r] = std::sqrt(2.0 * two_r1) / window;
        break;
      case LegTForm::kPaper:
        ssm.b[r] = std::sqrt(two_r1) / window;
        break;
      case LegTForm::kLmu:
        ssm.b[r] = two_r1 / window;
        break;
    }
  }
  return ssm;
}

DenseMatrix MatMul(const DenseMatrix& x, const DenseMatrix& y) {
  KV_CHECK(x.cols == y.rows) << x.rows << "x" << x.cols << " times " << y.rows << "x" << y.cols;
  DenseMatrix out(x.rows, y.cols);
  for (int64_t r = 0; r < x.rows; ++r) {
    for (int64_t k = 0; k < x.cols; ++k) {
      const double xv = x(r, k);
      if (xv == 0.0) continue;
      for (int64_t c = 0; c < y.cols; ++c) out(r, c) += xv * y(k, c);
    }
  }
  return out;
}

std::vector<double> MatVec(const DenseMatrix& x, const std::vector<double>& v) {
  KV_CHECK(x.cols == static_cast<int64_t>(v.size())) << x.cols << " columns, " << v.size();
  std::vector<double> out(static_cast<size_t>(x.rows), 0.0);
  for (int64_t r = 0; r < x.rows; ++r) {
    double sum = 0.0;
    for (int64_t c = 0; c < x.cols; ++c) sum += x(r, c) * v[c];
    out[r] = sum;
  }
  return out;
}

absl::StatusOr<DenseMatrix> Solve(const DenseMatrix& x, const DenseMatrix& y) {
  const int64_t n = x.rows;
  if (x.cols != n || y.rows != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("Solve: X is ", x.rows, "x", x.cols, ", Y is ", y.rows, "x", y.cols));
  }
  DenseMatrix lu = x;
  DenseMatrix out = y;
  double scale = 0.0;
  for (double v : x.data) scale = std::max(scale, std::abs(v));
  // A pivot this small relative to X means X is singular to working precision.
  const double tiny =
      std::max(std::numeric_limits<double>::min(),
               static_cast<double>(n) * std::numeric_limits<double>::epsilon() * scale);
  for (int64_t col = 0; col < n; ++col) {
    int64_t pivot = col;
    for (int64_t r = col + 1; r < n; ++r) {
      if (std::abs(lu(r, col)) > std::abs(lu(pivot, col))) pivot = r;
    }
    if (!(std::abs(lu(pivot, col)) > tiny)) {
      return absl::InvalidArgumentError(absl::StrCat("Solve: matrix is singular (pivot ",
                                                     lu(pivot, col), " in column ", col, ")"));
    }
    if (pivot != col) {
      for (int64_t c = 0; c < n; ++c) std::swap(lu(col, c), lu(pivot, c));
      for (int64_t c = 0; c < out.cols; ++c) std::swap(out(col, c), out(pivot, c));
    }
    for (int64_t r = col + 1; r < n; ++r) {
      const double factor = lu(r, col) / lu(col, col);
      if (factor == 0.0) continue;
      for (int64_t c = col; c < n; ++c) lu(r, c) -= factor * lu(col, c);
      for (int64_t c = 0; c < out.cols; ++c) out(r, c) -= factor * out(col, c);
    }
  }
  for (int64_t r = n - 1; r >= 0; --r) {
    for (int64_t c = 0; c < out.cols; ++c) {
      double sum = out(r, c);
      for (int64_t k = r + 1; k < n; ++k) sum -= lu(r, k) * out(k, c);
      out(r, c) = sum / lu(r, r);
    }
  }
  return out;
}

absl::StatusOr<std::vector<double>> Solve(const DenseMatrix& x, const std::vector<double>& y) {
  absl::StatusOr<DenseMatrix> out = Solve(x, ColumnMatrix(y));
  if (!out.ok()) return out.status();
  return std::move(out->data);
}

DenseMatrix MatrixExp(const DenseMatrix& x) {
  KV_CHECK(x.rows == x.cols) << "MatrixExp of a " << x.rows << "x" << x.cols << " matrix";
  const int64_t n = x.rows;
  const double norm = NormOne(x);
  KV_CHECK(std::isfinite(norm)) << "MatrixExp of a non-finite matrix";
  int squarings = 0;
  if (norm > 0.5) squarings = static_cast<int>(std::ceil(std::log2(norm / 0.5)));
  DenseMatrix scaled = x;
  const double factor = std::ldexp(1.0, -squarings);
  for (double& v : scaled.data) v *= factor;

  constexpr int kOrder = 8;
  // c_k = (2q−k)! q! / ((2q)! k! (q−k)!), built by c_{k+1} = c_k (q−k) / ((2q−k)(k+1)).
  DenseMatrix numerator = DenseMatrix::Identity(n);
  DenseMatrix denominator = DenseMatrix::Identity(n);
  DenseMatrix power = DenseMatrix::Identity(n);  // X^k
  double coefficient = 1.0;
  for (int k = 0; k < kOrder; ++k) {
    coefficient *=
        static_cast<double>(kOrder - k) / static_cast<double>((2 * kOrder - k) * (k + 1));
    power = MatMul(power, scaled);
    const double sign = (k + 1) % 2 == 0 ? 1.0 : -1.0;
    numerator = AddScaled(numerator, coefficient, power);
    denominator = AddScaled(denominator, sign * coefficient, power);
  }
  absl::StatusOr<DenseMatrix> result = Solve(denominator, numerator);
  KV_CHECK(result.ok()) << "Padé denominator singular: " << result.status();
  DenseMatrix out = *std::move(result);
  for (int i = 0; i < squarings; ++i) out = MatMul(out, out);
  return out;
}

absl::StatusOr<DiscreteSsm> Discretize(const DenseMatrix& a, const std::vector<double>& b,
                                       double step, DiscretizationScheme scheme) {
  const int64_t n = a.rows;
  if (a.cols != n || static_cast<int64_t>(b.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat("Discretize: A is ", a.rows, "x", a.cols,
                                                   " and B has ", b.size(), " entries"));
  }
  if (!(step > 0.0) || !std::isfinite(step)) {
    return absl::InvalidArgumentError(absl::StrCat("Discretize: step ", step, " must be positive"));
  }
  const DenseMatrix identity = DenseMatrix::Identity(n);
  DiscreteSsm out;
  switch (scheme) {
    case DiscretizationScheme::kForwardEuler:
      out.a_bar = AddScaled(identity, step, a);
      out.b_bar = Scaled(b, step);
      return out;
    case DiscretizationScheme::kBackwardEuler:
    case DiscretizationScheme::kBilinear: {
      const bool bilinear = scheme == DiscretizationScheme::kBilinear;
      const double implicit = bilinear ? 0.5 * step : step;
      const DenseMatrix lhs = AddScaled(identity, -implicit, a);  // I − εA (/2)
      const DenseMatrix rhs = bilinear ? AddScaled(identity, implicit, a) : identity;
      absl::StatusOr<DenseMatrix> a_bar = Solve(lhs, rhs);
      if (!a_bar.ok()) return a_bar.status();
      absl::StatusOr<std::vector<double>> b_bar = Solve(lhs, Scaled(b, step));
      if (!b_bar.ok()) return b_bar.status();
      out.a_bar = *std::move(a_bar);
      out.b_bar = *std::move(b_bar);
      return out;
    }
    case DiscretizationScheme::kZoh: {
      DenseMatrix augmented(n + 1, n + 1);  // ε[[A, B], [0, 0]]
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t c = 0; c < n; ++c) augmented(r, c) = step * a(r, c);
        augmented(r, n) = step * b[r];
      }
      const DenseMatrix e = MatrixExp(augmented);
      out.a_bar = DenseMatrix(n, n);
      out.b_bar.resize(static_cast<size_t>(n));
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t c = 0; c < n; ++c) out.a_bar(r, c) = e(r, c);
        out.b_bar[r] = e(r, n);
      }
      return out;
    }
  }
  return absl::InvalidArgumentError("Discretize: unknown scheme");
}

void LegSMatVec(const double* v, int64_t n, double* out) {
  double cumsum = 0.0;  // Σ_{k≤i} √(2k+1) v_k
  for (int64_t i = 0; i < n; ++i) {
    const double root = std::sqrt(2.0 * static_cast<double>(i) + 1.0);
    const double vi = v[i];
    cumsum += root * vi;
    out[i] = static_cast<double>(i) * vi - root * cumsum;
  }
}

void LegSShiftedSolve(const double* v, int64_t n, double lambda, double* out) {
  double s_prev = 0.0;  // S_{i−1}
  for (int64_t i = 0; i < n; ++i) {
    const double di = static_cast<double>(i);
    const double root = std::sqrt(2.0 * di + 1.0);
    const double denom = 1.0 + lambda * (di + 1.0);
    KV_CHECK(denom != 0.0) << "I − λA is singular at λ = " << lambda << ", row " << i;
    const double s = ((1.0 - lambda * di) * s_prev + root * v[i]) / denom;
    out[i] = (s - s_prev) / root;
    s_prev = s;
  }
}

void LegSBilinearStep(int64_t k, double u, const double* b, int64_t n, double* x) {
  KV_CHECK(k >= 1) << "LegS steps start at k = 1, got " << k;
  const double kd = static_cast<double>(k);
  std::vector<double> ax(static_cast<size_t>(n));
  LegSMatVec(x, n, ax.data());
  for (int64_t i = 0; i < n; ++i) x[i] += ax[i] / (2.0 * kd) + b[i] * u / kd;
  LegSShiftedSolve(x, n, 1.0 / (2.0 * (kd + 1.0)), x);
}

void SymmetricEigen(const DenseMatrix& x, std::vector<double>* eigenvalues, DenseMatrix* q) {
  KV_CHECK(x.rows == x.cols) << "SymmetricEigen of a " << x.rows << "x" << x.cols << " matrix";
  const int64_t n = x.rows;
  DenseMatrix a = x;
  DenseMatrix v = DenseMatrix::Identity(n);
  double total = 0.0;
  for (double e : a.data) total += e * e;
  constexpr int kMaxSweeps = 100;
  for (int sweep = 0; sweep < kMaxSweeps; ++sweep) {
    double off = 0.0;
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = r + 1; c < n; ++c) off += a(r, c) * a(r, c);
    }
    if (off <= 1e-34 * total) break;
    for (int64_t p = 0; p < n; ++p) {
      for (int64_t r = p + 1; r < n; ++r) {
        const double apq = a(p, r);
        if (apq == 0.0) continue;
        // Rotation J (J_pp = J_rr = c, J_pr = s, J_rp = −s) with (JᵀAJ)_pr = 0:
        // t = tan θ is the smaller root of t² + 2τt − 1 = 0, τ = (a_rr − a_pp) / (2 a_pr).
        const double tau = (a(r, r) - a(p, p)) / (2.0 * apq);
        const double t = (tau >= 0.0 ? 1.0 : -1.0) / (std::abs(tau) + std::sqrt(tau * tau + 1.0));
        const double c = 1.0 / std::sqrt(t * t + 1.0);
        const double s = t * c;
        for (int64_t k = 0; k < n; ++k) {  // A ← A J
          const double akp = a(k, p), akr = a(k, r);
          a(k, p) = c * akp - s * akr;
          a(k, r) = s * akp + c * akr;
        }
        for (int64_t k = 0; k < n; ++k) {  // A ← Jᵀ A
          const double apk = a(p, k), ark = a(r, k);
          a(p, k) = c * apk - s * ark;
          a(r, k) = s * apk + c * ark;
        }
        for (int64_t k = 0; k < n; ++k) {  // V ← V J
          const double vkp = v(k, p), vkr = v(k, r);
          v(k, p) = c * vkp - s * vkr;
          v(k, r) = s * vkp + c * vkr;
        }
      }
    }
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&a](int64_t i, int64_t j) { return a(i, i) > a(j, j); });
  eigenvalues->resize(static_cast<size_t>(n));
  *q = DenseMatrix(n, n);
  for (int64_t j = 0; j < n; ++j) {
    (*eigenvalues)[j] = a(order[j], order[j]);
    for (int64_t k = 0; k < n; ++k) (*q)(k, j) = v(k, order[j]);
  }
}

LegSNplr HippoLegSNplr(int64_t n) {
  KV_CHECK(n >= 2 && n % 2 == 0) << "NPLR form needs an even N, got " << n;
  const int64_t half = n / 2;
  const ContinuousSsm legs = HippoLegS(n, LegSScaling::kPaper);
  std::vector<double> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = std::sqrt(static_cast<double>(i) + 0.5);
  DenseMatrix s = legs.a;  // S = A + P Pᵀ + ½ I, skew-symmetric
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < n; ++c) s(r, c) += p[r] * p[c];
    s(r, r) += 0.5;
  }
  DenseMatrix st = DenseMatrix(n, n);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < n; ++c) st(r, c) = s(c, r);
  }
  std::vector<double> omega_sq;
  DenseMatrix q;
  SymmetricEigen(MatMul(st, s), &omega_sq, &q);

  LegSNplr out;
  out.n = n;
  out.lambda.resize(static_cast<size_t>(n));
  out.v.resize(static_cast<size_t>(n * n));
  const double inv_sqrt2 = 1.0 / std::sqrt(2.0);
  for (int64_t pair = 0; pair < half; ++pair) {
    // Eigenvalues descend, each twice; Jacobi's two orthonormal vectors q, r of a pair span its
    // invariant plane, and S q = ±ω r. Taking q' = ±r (not S q / ω) keeps V unitary to rounding
    // however close two frequencies are, and ω = |rᵀ S q| is accurate for small ω, where
    // √(ω²) from SᵀS would lose half the digits.
    const int64_t j = half - 1 - pair;  // ω ascending
    std::vector<double> q1(static_cast<size_t>(n)), q2(static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k) {
      q1[k] = q(k, 2 * pair);
      q2[k] = q(k, 2 * pair + 1);
    }
    const std::vector<double> sq = MatVec(s, q1);
    double projection = 0.0;
    for (int64_t k = 0; k < n; ++k) projection += q2[k] * sq[k];
    const double omega = std::abs(projection);
    KV_CHECK(omega > 0.0) << "S has a zero eigenvalue at N = " << n;
    const double sign = projection > 0.0 ? 1.0 : -1.0;
    // (q − i q')/√2, its phase turned so that its first component is real and positive.
    const Complex first(q1[0], -sign * q2[0]);
    KV_CHECK(std::abs(first) > 0.0) << "eigenvector " << j << " has a zero first component";
    const Complex phase = std::conj(first) / std::abs(first) * inv_sqrt2;
    out.lambda[j] = Complex(-0.5, omega);
    out.lambda[j + half] = Complex(-0.5, -omega);
    for (int64_t k = 0; k < n; ++k) {
      const Complex e = Complex(q1[k], -sign * q2[k]) * phase;
      out.v[k * n + j] = e;
      out.v[k * n + j + half] = std::conj(e);
    }
  }
  out.p.assign(static_cast<size_t>(n), Complex(0.0));
  out.b.assign(static_cast<size_t>(n), Complex(0.0));
  for (int64_t j = 0; j < n; ++j) {  // V* P and V* B
    for (int64_t k = 0; k < n; ++k) {
      const Complex vc = std::conj(out.v[k * n + j]);
      out.p[j] += vc * p[k];
      out.b[j] += vc * legs.b[k];
    }
  }
  return out;
}

void S4dLegSInit(int64_t modes, float* a_real, float* a_imag, float* b) {
  const LegSNplr nplr = HippoLegSNplr(2 * modes);
  for (int64_t j = 0; j < modes; ++j) {
    a_real[j] = static_cast<float>(nplr.lambda[j].real());
    a_imag[j] = static_cast<float>(nplr.lambda[j].imag());
    b[2 * j] = static_cast<float>(nplr.b[j].real());
    b[2 * j + 1] = static_cast<float>(nplr.b[j].imag());
  }
}

}  // namespace kvserve::engine
