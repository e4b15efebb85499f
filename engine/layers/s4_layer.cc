// Design note.
//
// Every channel h is an independent diagonal SSM with M complex modes, so Ā, B̄ and C are [H, M]
// complex numbers, discretised once in double. Both views work in double and round to fp32 only
// when they write y or the state.
//
// Prefill of a chunk u_0..u_{L−1} with carried state x_{−1} splits y by linearity:
//   y_k = Σ_{j≤k} K_j u_{k−j}               (zero-state response: FFT convolution)
//       + 2·Re Σ_n C_n Ā_n^{k+1} x_{−1,n}    (zero-input response of the carried state)
//       + D u_k
// One pass over k = 0..L−1 per channel, holding only the M powers p_n = Ā_n^k (the loop over modes
// is innermost and vectorised), produces the kernel, the zero-input response and the Vandermonde
// dot Σ_j Ā^{L−1−j} u_j for the new state: O(H·M·L) work, no [M, L] table of powers.
//
// The FFT length is padded to ≥ 2L so the circular convolution FFTW computes equals the causal
// (linear) one on the first L outputs; it is rounded up to a 7-smooth size because FFTW is several
// times slower on lengths with large prime factors, and rounding bounds how many plans exist.
//
//   FFT buffers, one channel at a time (n = FFT length):
//   real_u  [n]   | u_0 .. u_{L−1} | 0 ... 0 |   → r2c → spec_u [n/2+1]
//   real_k  [n]   | K_0 .. K_{L−1} | 0 ... 0 |   → r2c → spec_k [n/2+1]
//   spec_u ← spec_u · spec_k → c2r → real_u (first L entries, scaled by 1/n) = K * u
// Channels are independent, so all of a channel's work (kernel, zero-input response, state,
// convolution) runs before the next one's: scratch is O(L + M), not O(H·L), and stays in cache.
#include "engine/layers/s4_layer.h"

#include <fftw3.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>
#include <limits>
#include <map>
#include <numbers>
#include <string>
#include <utility>

#include "absl/base/const_init.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/logging.h"

#if defined(__clang__)
// The `omp simd` loops below are hints: under UBSan, clang cannot vectorise them and warns.
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

namespace kvserve::engine {
namespace {

using Complex = std::complex<double>;

// FFTW's planner (and plan destruction) is not thread-safe; executing a plan is. Several engines
// or test fixtures in one process may each own S4 layers on their own threads.
ABSL_CONST_INIT absl::Mutex fftw_planner_mu(absl::kConstInit);

// Plans beyond this many FFT lengths are dropped (all at once) before a new one is made.
constexpr size_t kMaxCachedPlans = 64;

// The smallest 2^a·3^b·5^c·7^d ≥ n (n ≥ 1).
int64_t SmoothFftSize(int64_t n) {
  for (int64_t m = std::max<int64_t>(n, 1);; ++m) {
    int64_t r = m;
    for (int64_t p : {2, 3, 5, 7}) {
      while (r % p == 0) r /= p;
    }
    if (r == 1) return m;
  }
}

absl::Status CheckSize(const std::vector<float>& v, const char* name, int64_t expected,
                       const char* shape) {
  if (static_cast<int64_t>(v.size()) != expected) {
    return absl::InvalidArgumentError(absl::StrCat("S4Params.", name, " has ", v.size(),
                                                   " elements; expected ", shape, " = ", expected));
  }
  return absl::OkStatus();
}

// The index of flat element i of a [H], [H, M] or [H, M, 2] tensor, as "[h, n, part]".
std::string IndexText(int64_t i, int64_t modes, int rank) {
  if (rank == 1) return absl::StrCat("[", i, "]");
  if (rank == 2) return absl::StrCat("[", i / modes, ", ", i % modes, "]");
  return absl::StrCat("[", i / (2 * modes), ", ", (i / 2) % modes, ", ", i % 2, "]");
}

absl::Status CheckFinite(const std::vector<float>& v, const char* name, int64_t modes, int rank) {
  for (int64_t i = 0; i < static_cast<int64_t>(v.size()); ++i) {
    if (!std::isfinite(v[i])) {
      return absl::InvalidArgumentError(absl::StrCat("S4Params.", name, IndexText(i, modes, rank),
                                                     " is not finite (", v[i], ")"));
    }
  }
  return absl::OkStatus();
}

// e^z − 1 without cancellation for small |z|: Re = expm1(x)·cos y − 2 sin²(y/2), Im = e^x sin y.
Complex ExpMinusOne(Complex z) {
  const double x = z.real();
  const double y = z.imag();
  const double s = std::sin(0.5 * y);
  return {std::expm1(x) * std::cos(y) - 2.0 * s * s, std::exp(x) * std::sin(y)};
}

}  // namespace

// FFTW plans per FFT length and the aligned one-row buffers they run on. Plans are made with
// FFTW_ESTIMATE (deterministic, and it leaves the arrays alone) and executed with FFTW's new-array
// interface, so buffers can grow without re-planning: every buffer comes from fftw_malloc and so
// has the alignment the plans were made for.
class S4Layer::FftConvolver {
 public:
  FftConvolver() = default;
  FftConvolver(const FftConvolver&) = delete;
  FftConvolver& operator=(const FftConvolver&) = delete;
  ~FftConvolver() {
    DropPlans();
    fftw_free(real_u_);
    fftw_free(real_k_);
    fftw_free(spec_u_);
    fftw_free(spec_k_);
  }

  // y[l] += Σ_{j=0}^{n−1} K[j] u[(l − j) mod n] for l < L, with K and u zero beyond L: the causal
  // (linear) convolution when n ≥ 2L − 1, a circular one when n = L.
  //   u: [L]   kernel: [L]   y: [L]
  void Convolve(const double* u, int64_t length, int64_t n, const double* kernel, double* y) {
    KV_CHECK(n >= length && length > 0 && n <= std::numeric_limits<int>::max())
        << "FFT length " << n << " for " << length << " tokens";
    Reserve(n);
    const Plans plans = PlansFor(n);
    std::memcpy(real_u_, u, sizeof(double) * length);
    std::fill(real_u_ + length, real_u_ + n, 0.0);
    std::memcpy(real_k_, kernel, sizeof(double) * length);
    std::fill(real_k_ + length, real_k_ + n, 0.0);
    fftw_execute_dft_r2c(plans.forward, real_u_, spec_u_);  // [n/2 + 1]
    fftw_execute_dft_r2c(plans.forward, real_k_, spec_k_);  // [n/2 + 1]
    for (int64_t i = 0; i < n / 2 + 1; ++i) {
      const double ur = spec_u_[i][0], ui = spec_u_[i][1];
      const double kr = spec_k_[i][0], ki = spec_k_[i][1];
      spec_u_[i][0] = ur * kr - ui * ki;
      spec_u_[i][1] = ur * ki + ui * kr;
    }
    fftw_execute_dft_c2r(plans.inverse, spec_u_, real_u_);  // [n], unnormalised
    const double scale = 1.0 / static_cast<double>(n);
    for (int64_t l = 0; l < length; ++l) y[l] += real_u_[l] * scale;
  }

 private:
  struct Plans {
    fftw_plan forward = nullptr;  // r2c, n reals → n/2+1 complex
    fftw_plan inverse = nullptr;  // c2r, the way back
  };

  void Reserve(int64_t n) {
    if (n <= capacity_) return;
    fftw_free(real_u_);
    fftw_free(real_k_);
    fftw_free(spec_u_);
    fftw_free(spec_k_);
    real_u_ = fftw_alloc_real(static_cast<size_t>(n));
    real_k_ = fftw_alloc_real(static_cast<size_t>(n));
    spec_u_ = fftw_alloc_complex(static_cast<size_t>(n / 2 + 1));
    spec_k_ = fftw_alloc_complex(static_cast<size_t>(n / 2 + 1));
    KV_CHECK(real_u_ != nullptr && real_k_ != nullptr && spec_u_ != nullptr && spec_k_ != nullptr)
        << "fftw_malloc failed for FFT length " << n;
    capacity_ = n;
  }

  Plans PlansFor(int64_t n) {
    auto it = plans_.find(n);
    if (it != plans_.end()) return it->second;
    if (plans_.size() >= kMaxCachedPlans) DropPlans();
    const int size = static_cast<int>(n);
    Plans plans;
    {
      absl::MutexLock lock(&fftw_planner_mu);
      plans.forward = fftw_plan_dft_r2c_1d(size, real_u_, spec_u_, FFTW_ESTIMATE);
      plans.inverse =
          fftw_plan_dft_c2r_1d(size, spec_u_, real_u_, FFTW_ESTIMATE | FFTW_DESTROY_INPUT);
    }
    KV_CHECK(plans.forward != nullptr && plans.inverse != nullptr)
        << "FFTW could not plan length " << n;
    plans_.emplace(n, plans);
    return plans;
  }

  void DropPlans() {
    absl::MutexLock lock(&fftw_planner_mu);
    for (auto& [n, plans] : plans_) {
      fftw_destroy_plan(plans.forward);
      fftw_destroy_plan(plans.inverse);
    }
    plans_.clear();
  }

  int64_t capacity_ = 0;            // FFT length the buffers hold
  double* real_u_ = nullptr;        // [capacity_]
  double* real_k_ = nullptr;        // [capacity_]
  fftw_complex* spec_u_ = nullptr;  // [capacity_/2 + 1]
  fftw_complex* spec_k_ = nullptr;  // [capacity_/2 + 1]
  std::map<int64_t, Plans> plans_;  // by FFT length
};

S4Layer::S4Layer(int64_t channels, int64_t modes)
    : channels_(channels), modes_(modes), fft_(std::make_unique<FftConvolver>()) {}

S4Layer::~S4Layer() = default;

absl::StatusOr<std::unique_ptr<S4Layer>> S4Layer::Create(S4Params params) {
  const int64_t h_count = params.channels;
  const int64_t m_count = params.modes;
  if (h_count <= 0 || m_count <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "S4Params.channels (", h_count, ") and S4Params.modes (", m_count, ") must be positive"));
  }
  constexpr int64_t kMaxModesTotal = int64_t{1} << 36;
  if (h_count > kMaxModesTotal / m_count) {
    return absl::InvalidArgumentError(
        absl::StrCat("S4Params.channels x modes = ", h_count, " x ", m_count, " is too large"));
  }
  const int64_t hm = h_count * m_count;
  absl::Status status = CheckSize(params.log_dt, "log_dt", h_count, "[channels]");
  if (status.ok()) status = CheckSize(params.a_real, "a_real", hm, "[channels, modes]");
  if (status.ok()) status = CheckSize(params.a_imag, "a_imag", hm, "[channels, modes]");
  if (status.ok()) status = CheckSize(params.b, "b", 2 * hm, "[channels, modes, 2]");
  if (status.ok()) status = CheckSize(params.c, "c", 2 * hm, "[channels, modes, 2]");
  if (status.ok()) status = CheckSize(params.d, "d", h_count, "[channels]");
  if (status.ok()) status = CheckFinite(params.log_dt, "log_dt", m_count, 1);
  if (status.ok()) status = CheckFinite(params.a_real, "a_real", m_count, 2);
  if (status.ok()) status = CheckFinite(params.a_imag, "a_imag", m_count, 2);
  if (status.ok()) status = CheckFinite(params.b, "b", m_count, 3);
  if (status.ok()) status = CheckFinite(params.c, "c", m_count, 3);
  if (status.ok()) status = CheckFinite(params.d, "d", m_count, 1);
  if (!status.ok()) return status;
  for (int64_t i = 0; i < hm; ++i) {
    if (!(params.a_real[i] < 0.0f)) {
      return absl::InvalidArgumentError(absl::StrCat("S4Params.a_real", IndexText(i, m_count, 2),
                                                     " = ", params.a_real[i],
                                                     ": Re λ must be negative for a stable SSM"));
    }
  }
  for (int64_t h = 0; h < h_count; ++h) {
    const double dt = std::exp(static_cast<double>(params.log_dt[h]));
    if (!std::isfinite(dt) || dt <= 0.0) {
      return absl::InvalidArgumentError(
          absl::StrCat("S4Params.log_dt[", h, "] = ", params.log_dt[h],
                       ": Δ = exp(log_dt) must be finite and positive"));
    }
  }

  std::unique_ptr<S4Layer> layer(new S4Layer(h_count, m_count));
  for (std::vector<double>* v : {&layer->a_re_, &layer->a_im_, &layer->b_re_, &layer->b_im_,
                                 &layer->c_re_, &layer->c_im_, &layer->cb_re_, &layer->cb_im_}) {
    v->resize(static_cast<size_t>(hm));
  }
  layer->d_.assign(params.d.begin(), params.d.end());
  layer->mode_scratch_.resize(static_cast<size_t>(6 * m_count));
  for (int64_t h = 0; h < h_count; ++h) {
    const double dt = std::exp(static_cast<double>(params.log_dt[h]));
    for (int64_t n = 0; n < m_count; ++n) {
      const int64_t i = h * m_count + n;
      const Complex lambda(params.a_real[i], params.a_imag[i]);
      const Complex b(params.b[2 * i], params.b[2 * i + 1]);
      const Complex c(params.c[2 * i], params.c[2 * i + 1]);
      const Complex dt_lambda = dt * lambda;
      Complex a_bar, b_bar;
      if (params.discretization == S4Discretization::kZoh) {
        a_bar = std::exp(dt_lambda);
        b_bar = ExpMinusOne(dt_lambda) / lambda * b;
      } else {
        const Complex denom = 1.0 - 0.5 * dt_lambda;  // Re ≥ 1 since Re λ < 0
        a_bar = (1.0 + 0.5 * dt_lambda) / denom;
        b_bar = dt / denom * b;
      }
      const Complex c_b_bar = c * b_bar;
      layer->a_re_[i] = a_bar.real();
      layer->a_im_[i] = a_bar.imag();
      layer->b_re_[i] = b_bar.real();
      layer->b_im_[i] = b_bar.imag();
      layer->c_re_[i] = c.real();
      layer->c_im_[i] = c.imag();
      layer->cb_re_[i] = c_b_bar.real();
      layer->cb_im_[i] = c_b_bar.imag();
    }
  }
  return layer;
}

void S4Layer::Prefill(const float* u, int64_t length, float* state, float* y) {
  KV_CHECK(length >= 0) << "negative chunk length " << length;
  if (length == 0) return;
  const int64_t m_count = modes_;
  if (static_cast<int64_t>(u_channel_.size()) < length) {
    u_channel_.resize(length);
    kernel_.resize(length);
    y_channel_.resize(length);
  }
  const int64_t fft_size = SmoothFftSize(2 * length);
  double* uh = u_channel_.data();       // [L]
  double* kh = kernel_.data();          // [L]
  double* yh = y_channel_.data();       // [L]: D u + zero-input response, then + K * u
  double* p_re = mode_scratch_.data();  // [M] Ā^k
  double* p_im = p_re + m_count;
  double* x_re = p_re + 2 * m_count;  // [M] C Ā x_{−1}
  double* x_im = p_re + 3 * m_count;
  double* v_re = p_re + 4 * m_count;  // [M] Σ_{k<L} Ā^k u_{L−1−k}
  double* v_im = p_re + 5 * m_count;

  for (int64_t h = 0; h < channels_; ++h) {
    const int64_t base = h * m_count;
    const double* a_re = a_re_.data() + base;  // [M]
    const double* a_im = a_im_.data() + base;
    const double* cb_re = cb_re_.data() + base;
    const double* cb_im = cb_im_.data() + base;
    float* sh = state + 2 * base;  // [M, 2] x_{−1}, then x_{L−1}
    for (int64_t l = 0; l < length; ++l) {
      uh[l] = u[l * channels_ + h];
      yh[l] = d_[h] * uh[l];
    }
    for (int64_t n = 0; n < m_count; ++n) {
      const Complex c_a_x0 = Complex(c_re_[base + n], c_im_[base + n]) * Complex(a_re[n], a_im[n]) *
                             Complex(sh[2 * n], sh[2 * n + 1]);
      p_re[n] = 1.0;
      p_im[n] = 0.0;
      x_re[n] = c_a_x0.real();
      x_im[n] = c_a_x0.imag();
      v_re[n] = 0.0;
      v_im[n] = 0.0;
    }
    // One pass over k with all modes in the inner (vectorised) loop.
    for (int64_t k = 0; k < length; ++k) {
      const double u_back = uh[length - 1 - k];
      double k_sum = 0.0;  // Re Σ_n C_n B̄_n Ā_n^k
      double y_sum = 0.0;  // Re Σ_n C_n Ā_n^{k+1} x_{−1,n}
#pragma omp simd reduction(+ : k_sum, y_sum)
      for (int64_t n = 0; n < m_count; ++n) {
        const double pr = p_re[n], pi = p_im[n];
        k_sum += cb_re[n] * pr - cb_im[n] * pi;
        y_sum += x_re[n] * pr - x_im[n] * pi;
        v_re[n] += pr * u_back;
        v_im[n] += pi * u_back;
        p_re[n] = pr * a_re[n] - pi * a_im[n];
        p_im[n] = pr * a_im[n] + pi * a_re[n];
      }
      kh[k] = 2.0 * k_sum;
      yh[k] += 2.0 * y_sum;
    }
    for (int64_t n = 0; n < m_count; ++n) {  // x_{L−1} = Ā^L x_{−1} + B̄ Σ_j Ā^{L−1−j} u_j
      const Complex x_last = Complex(p_re[n], p_im[n]) * Complex(sh[2 * n], sh[2 * n + 1]) +
                             Complex(b_re_[base + n], b_im_[base + n]) * Complex(v_re[n], v_im[n]);
      sh[2 * n] = static_cast<float>(x_last.real());
      sh[2 * n + 1] = static_cast<float>(x_last.imag());
    }
    fft_->Convolve(uh, length, fft_size, kh, yh);
    for (int64_t l = 0; l < length; ++l) y[l * channels_ + h] = static_cast<float>(yh[l]);
  }
}

void S4Layer::Step(const float* u, float* state, float* y) {
  for (int64_t h = 0; h < channels_; ++h) {
    const int64_t base = h * modes_;
    const double* a_re = a_re_.data() + base;  // [M]
    const double* a_im = a_im_.data() + base;
    const double* b_re = b_re_.data() + base;
    const double* b_im = b_im_.data() + base;
    const double* c_re = c_re_.data() + base;
    const double* c_im = c_im_.data() + base;
    float* sh = state + 2 * base;  // [M, 2]
    const double uh = u[h];
    double acc = 0.0;  // Re Σ_n C_n x_n
#pragma omp simd reduction(+ : acc)
    for (int64_t n = 0; n < modes_; ++n) {
      const double xr = sh[2 * n], xi = sh[2 * n + 1];
      const double nr = a_re[n] * xr - a_im[n] * xi + b_re[n] * uh;
      const double ni = a_re[n] * xi + a_im[n] * xr + b_im[n] * uh;
      acc += c_re[n] * nr - c_im[n] * ni;
      sh[2 * n] = static_cast<float>(nr);
      sh[2 * n + 1] = static_cast<float>(ni);
    }
    y[h] = static_cast<float>(2.0 * acc + d_[h] * uh);
  }
}

void S4Layer::ChannelKernel(int64_t h, int64_t length, double* kh, double* scratch) const {
  const int64_t base = h * modes_;
  const double* a_re = a_re_.data() + base;  // [M]
  const double* a_im = a_im_.data() + base;
  const double* cb_re = cb_re_.data() + base;
  const double* cb_im = cb_im_.data() + base;
  double* p_re = scratch;  // [M] Ā^j
  double* p_im = scratch + modes_;
  std::fill(p_re, p_re + modes_, 1.0);
  std::fill(p_im, p_im + modes_, 0.0);
  for (int64_t j = 0; j < length; ++j) {
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t n = 0; n < modes_; ++n) {
      const double pr = p_re[n], pi = p_im[n];
      sum += cb_re[n] * pr - cb_im[n] * pi;
      p_re[n] = pr * a_re[n] - pi * a_im[n];
      p_im[n] = pr * a_im[n] + pi * a_re[n];
    }
    kh[j] = 2.0 * sum;
  }
}

void S4Layer::Kernel(int64_t length, std::vector<double>* k) const {
  KV_CHECK(length >= 0) << "negative kernel length " << length;
  k->resize(static_cast<size_t>(channels_ * length));
  std::vector<double> scratch(static_cast<size_t>(2 * modes_));
  for (int64_t h = 0; h < channels_; ++h) {
    ChannelKernel(h, length, k->data() + h * length, scratch.data());  // [L]
  }
}

void S4Layer::CircularConvolutionForTest(const float* u, int64_t length, float* y) {
  KV_CHECK(length > 0) << "chunk length " << length;
  if (static_cast<int64_t>(u_channel_.size()) < length) {
    u_channel_.resize(length);
    kernel_.resize(length);
    y_channel_.resize(length);
  }
  double* uh = u_channel_.data();  // [L]
  double* kh = kernel_.data();     // [L]
  double* yh = y_channel_.data();  // [L]
  for (int64_t h = 0; h < channels_; ++h) {
    ChannelKernel(h, length, kh, mode_scratch_.data());
    for (int64_t l = 0; l < length; ++l) {
      uh[l] = u[l * channels_ + h];
      yh[l] = d_[h] * uh[l];
    }
    fft_->Convolve(uh, length, length, kh, yh);  // period L: wraps around
    for (int64_t l = 0; l < length; ++l) y[l * channels_ + h] = static_cast<float>(yh[l]);
  }
}

void S4dLinInit(int64_t modes, float* a_real, float* a_imag) {
  for (int64_t n = 0; n < modes; ++n) {
    a_real[n] = -0.5f;
    a_imag[n] = static_cast<float>(std::numbers::pi * static_cast<double>(n));
  }
}

void S4dInvInit(int64_t modes, float* a_real, float* a_imag) {
  const double big_n = 2.0 * static_cast<double>(modes);  // N = 2M
  for (int64_t n = 0; n < modes; ++n) {
    a_real[n] = -0.5f;
    a_imag[n] = static_cast<float>(big_n / std::numbers::pi *
                                   (big_n / (2.0 * static_cast<double>(n) + 1.0) - 1.0));
  }
}

}  // namespace kvserve::engine
