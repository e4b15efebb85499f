// HiPPO matrices and their discretisations, dense and in double precision (docs/math.md §4, §5.4).
//
// For tests and for tools that export S4 models: everything here is O(N²)–O(N³) on small N (tens
// to a few hundred), except the O(N) LegS matvec and shifted solve, which are what makes a LegS
// bilinear step O(N). Sign convention (Su's): the minus sign is inside A, x' = A x + B u; the HiPPO
// paper writes x' = −A_H x + B_H u with a positive A_H.
//
// Thread-safety: free functions on values; safe to call concurrently.
#ifndef KVSERVE_TESTS_TESTING_HIPPO_H_
#define KVSERVE_TESTS_TESTING_HIPPO_H_

#include <complex>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace kvserve::engine {

// A row-major dense matrix of doubles.
struct DenseMatrix {
  DenseMatrix() = default;
  DenseMatrix(int64_t num_rows, int64_t num_cols)
      : rows(num_rows), cols(num_cols), data(static_cast<size_t>(num_rows * num_cols), 0.0) {}
  static DenseMatrix Identity(int64_t n);

  double& operator()(int64_t r, int64_t c) { return data[r * cols + c]; }
  double operator()(int64_t r, int64_t c) const { return data[r * cols + c]; }

  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<double> data;  // [rows, cols]
};

// A continuous single-input LTI system x' = A x + B u: A [N, N], B [N].
struct ContinuousSsm {
  DenseMatrix a;
  std::vector<double> b;
};

// Its discretisation x_{k+1} = Ā x_k + B̄ u_k (u held constant over each step): Ā [N, N], B̄ [N].
struct DiscreteSsm {
  DenseMatrix a_bar;
  std::vector<double> b_bar;
};

// HiPPO-LegS (docs/math.md §4.3), lower-triangular, used as x' = (A/t) x + (B/t) u, or by S4
// as an LTI A:
//   kPaper   A_{n,k} = −√((2n+1)(2k+1)) (k < n), −(n+1) (k = n), 0 (k > n);  B_n = √(2n+1)
//   kSu      the same A;                                                      B_n = √(2(2n+1))
//   kInteger A_{n,k} = −(2n+1) (k < n), −(n+1) (k = n), 0 (k > n);            B_n = 2n+1
// kSu's state is the orthonormal Legendre coefficients c_n = ∫_{−1}^{1} u((s+1)t/2) g_n(s) ds,
// g_n = √((2n+1)/2) P_n; kPaper's is c_n/√2; kInteger's is c_n·√((2n+1)/2).
enum class LegSScaling { kPaper, kSu, kInteger };
ContinuousSsm HippoLegS(int64_t n, LegSScaling scaling);

// HiPPO-LegT over a sliding window w (docs/math.md §4.2), x' = A x + B u:
//   kSu    A_{n,k} = −(1/w)√((2n+1)(2k+1)) (k < n), −(1/w)(−1)^{n−k}√((2n+1)(2k+1)) (k ≥ n);
//          B_n = √(2(2n+1))/w; the state is the orthonormal coefficients c_n over [t − w, t]
//   kPaper the same A; B_n = √(2n+1)/w (state c_n/√2)
//   kLmu   A_{n,k} = −(2n+1)/w (k < n), −(−1)^{n−k}(2n+1)/w (k ≥ n); B_n = (2n+1)/w
//          (Voelker's Legendre Memory Unit; state c_n·√(2n+1)/2)
enum class LegTForm { kSu, kPaper, kLmu };
ContinuousSsm HippoLegT(int64_t n, double window, LegTForm form);

// The four schemes of docs/math.md §4.4 for x' = A x + B u with step ε and u_k held over the step:
//   kForwardEuler   Ā = I + εA,                      B̄ = εB
//   kBackwardEuler  Ā = (I − εA)⁻¹,                  B̄ = ε(I − εA)⁻¹B
//   kBilinear       Ā = (I − εA/2)⁻¹(I + εA/2),      B̄ = ε(I − εA/2)⁻¹B
//   kZoh            Ā = e^{εA},                      B̄ = A⁻¹(e^{εA} − I)B
// ZOH reads both off one exponential, exp(ε[[A, B], [0, 0]]) = [[Ā, B̄], [0, 1]] (Van Loan), so A
// need not be invertible. Fails (InvalidArgument) on shape mismatch, a non-positive or non-finite
// ε, or a singular I − εA (/2).
enum class DiscretizationScheme { kForwardEuler, kBackwardEuler, kBilinear, kZoh };
absl::StatusOr<DiscreteSsm> Discretize(const DenseMatrix& a, const std::vector<double>& b,
                                       double step, DiscretizationScheme scheme);

// Dense linear algebra on small matrices.
// REQUIRES: compatible shapes.
DenseMatrix MatMul(const DenseMatrix& x, const DenseMatrix& y);
std::vector<double> MatVec(const DenseMatrix& x, const std::vector<double>& v);
// X⁻¹Y by Gaussian elimination with partial pivoting; InvalidArgument when X is singular to
// working precision (a pivot ≤ N·ε_machine·max|X_ij|) or the shapes do not match.
absl::StatusOr<DenseMatrix> Solve(const DenseMatrix& x, const DenseMatrix& y);
absl::StatusOr<std::vector<double>> Solve(const DenseMatrix& x, const std::vector<double>& y);
// e^X by scaling and squaring with the [8/8] Padé approximant (‖X/2^s‖₁ ≤ ½).
// REQUIRES: X square with finite entries.
DenseMatrix MatrixExp(const DenseMatrix& x);

// O(N) operations with the LegS A (kPaper/kSu; A_{n,k} = n δ_{nk} − √(2n+1)√(2k+1) for k ≤ n),
// docs/math.md §4.4. Both accept out == v (in place).
//   out_n = n v_n − √(2n+1) Σ_{k≤n} √(2k+1) v_k                          (out = A v)
void LegSMatVec(const double* v, int64_t n, double* out);
//   out = (I − λA)⁻¹ v via S_n = Σ_{k≤n} √(2k+1) out_k:
//   S_n = ((1 − λn) S_{n−1} + √(2n+1) v_n) / (1 + λ(n+1)),  out_n = (S_n − S_{n−1}) / √(2n+1)
// REQUIRES: 1 + λ(k+1) ≠ 0 for every k < n (always so for λ ≥ 0).
void LegSShiftedSolve(const double* v, int64_t n, double lambda, double* out);
// One bilinear step of the time-varying LegS system x' = (A x + B u)/t with t = kε, where the
// step size cancels (docs/math.md §4.4):
//   x_{k+1} = (I − A/(2(k+1)))⁻¹ [(I + A/(2k)) x_k + (1/k) B u_k]          in O(N)
// x [N] is updated in place; b [N] is the scaling's B. REQUIRES: k ≥ 1.
void LegSBilinearStep(int64_t k, double u, const double* b, int64_t n, double* x);

// Symmetric eigendecomposition X = Q diag(w) Qᵀ by cyclic Jacobi rotations; eigenvalues descending,
// eigenvectors in the columns of Q. REQUIRES: X symmetric.
void SymmetricEigen(const DenseMatrix& x, std::vector<double>* eigenvalues, DenseMatrix* q);

// The normal-plus-low-rank (NPLR) form of HiPPO-LegS (docs/math.md §5.4): with P_n = √(n+½) and the
// kPaper B,
//   A = V Λ V* − P Pᵀ,   Λ = −½ + iΩ,   V unitary,
// found by diagonalising the skew-symmetric S = A + P Pᵀ + ½I: the symmetric SᵀS = −S² (Jacobi)
// gives ω² and a vector q of each invariant plane, S q / ω its partner, and (q − i S q/ω)/√2 the
// eigenvector of S for iω. Conventions (those of tools/reference/hybrid_s4.py): the first N/2
// eigenvalues have 0 < ω_0 < ω_1 < …, λ_{j+N/2} = conj(λ_j) with column j + N/2 of V the
// conjugate of column j, and every column's first component is real and positive.
// REQUIRES: n even, n ≥ 2.
struct LegSNplr {
  int64_t n = 0;
  std::vector<std::complex<double>> lambda;  // [N]
  std::vector<std::complex<double>> v;       // [N, N] row-major, column j belongs to lambda[j]
  std::vector<std::complex<double>> p;       // [N] V* P
  std::vector<std::complex<double>> b;       // [N] V* B
};
LegSNplr HippoLegSNplr(int64_t n);

// S4D-LegS initialisation for M modes (N = 2M): the positive-frequency half of the NPLR Λ and of
// V* B (ω ascending), the low-rank term dropped (S4D). Writes a_real[M] (all −½), a_imag[M], b[M,
// 2] (re, im).
void S4dLegSInit(int64_t modes, float* a_real, float* a_imag, float* b);

}  // namespace kvserve::engine

#endif  // KVSERVE_TESTS_TESTING_HIPPO_H_
