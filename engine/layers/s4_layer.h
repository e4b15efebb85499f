// The state-space core of one S4 (S4D) layer: H independent single-input single-output SSMs, one
// per channel, each with M complex diagonal modes (docs/math.md §5.1, §5.5).
//
// A conjugate pair of modes is kept once, so the state of one channel is M complex numbers
// (N = 2M real numbers) and every output takes 2·Re of the modes' sum. Two computational views
// give the same outputs (docs/math.md §5.2, §5.6):
//   - Prefill, the convolution view: y = K * u by FFT over a padded length, plus the contribution
//     of the state carried in from an earlier chunk, and the state after the chunk computed
//     directly as a Vandermonde product, so decode can continue from it.
//   - Step, the recurrent view: one token, O(H·M).
// Both discretise once, in double, at Create; both compute in double and store fp32.
//
// Thread-safety: Prefill, Step and CircularConvolutionForTest mutate scratch and caches, so one
// thread at a time (the engine thread); Kernel and the accessors are const and thread-compatible.
#ifndef KVSERVE_ENGINE_S4_LAYER_H_
#define KVSERVE_ENGINE_S4_LAYER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

namespace kvserve::engine {

enum class S4Discretization { kZoh, kBilinear };

// One S4 (S4D) layer's SSM: H independent channels, each with M complex diagonal modes
// (state size N = 2M real numbers per channel; conjugate pairs are implicit: outputs take 2·Re).
struct S4Params {
  int64_t channels = 0;  // H
  int64_t modes = 0;     // M = d_state / 2
  S4Discretization discretization = S4Discretization::kZoh;
  std::vector<float> log_dt;  // [H]       Δ_h = exp(log_dt[h])
  std::vector<float> a_real;  // [H, M]    Re λ (< 0)
  std::vector<float> a_imag;  // [H, M]    Im λ
  std::vector<float> b;       // [H, M, 2] complex B (re, im)
  std::vector<float> c;       // [H, M, 2] complex C (re, im)
  std::vector<float> d;       // [H]       skip
};

// Convention (the PyTorch reference uses exactly this):
//   ZOH:      Ā = exp(Δλ),                 B̄ = (exp(Δλ) − 1)/λ · B
//   bilinear: Ā = (1 + Δλ/2)/(1 − Δλ/2),   B̄ = Δ/(1 − Δλ/2) · B
//   x_k = Ā x_{k−1} + B̄ u_k   (per channel h, mode n; x_{−1} = the state before the chunk)
//   y_k = 2·Re(Σ_n C_n x_{k,n}) + D u_k
//   kernel K_k = 2·Re Σ_n C_n B̄_n Ā_n^k
class S4Layer {
 public:
  // Validates the sizes against channels and modes, that every value is finite, that Re λ < 0 and
  // that Δ = exp(log_dt) is finite and positive; errors name the offending tensor and index.
  // Discretises once, in double.
  static absl::StatusOr<std::unique_ptr<S4Layer>> Create(S4Params params);

  S4Layer(const S4Layer&) = delete;
  S4Layer& operator=(const S4Layer&) = delete;
  ~S4Layer();

  int64_t channels() const { return channels_; }
  int64_t modes() const { return modes_; }
  // Floats of one sequence's state: channels * modes * 2 (complex, [H, M, 2]).
  int64_t state_floats() const { return channels_ * modes_ * 2; }

  // Convolution mode for a chunk of L tokens.
  //   u:     [L, H] (token-major)
  //   state: [H, M, 2]; the state before the chunk (zeros for a new sequence), replaced by the
  //          state after it
  //   y:     [L, H]
  // y = causal conv(K, u) + the initial state's contribution 2·Re Σ_n C_n Ā_n^{k+1} x_{−1,n} + D u,
  // the convolution done by FFT (FFTW, double precision, plans cached per length) over a
  // zero-padded length ≥ 2L (the smallest 2^a·3^b·5^c·7^d ≥ 2L, so no wrap-around reaches the first
  // L outputs), and the new state x_{L−1} = Ā^L x_{−1} + Σ_j Ā^{L−1−j} B̄ u_j (Vandermonde).
  // L = 0 leaves the state alone. Scratch is O(L + M); it allocates only when L exceeds every
  // earlier chunk's length or needs an FFT length not planned before.
  // REQUIRES: length >= 0; u, y and state do not overlap.
  void Prefill(const float* u, int64_t length, float* state, float* y);

  // Recurrent mode, one token: u, y: [H]; state [H, M, 2] updated in place. Never allocates.
  void Step(const float* u, float* state, float* y);

  // The length-L kernel per channel, K: [H, L] (for tests and benchmarks). Resizes *k.
  void Kernel(int64_t length, std::vector<double>* k) const;

  // For tests: the convolution WITHOUT 2L padding (circular, length L), from a zero state and with
  // the D u skip — detectably wrong, as docs/math.md §7 oracle 11 requires. u, y: [L, H].
  void CircularConvolutionForTest(const float* u, int64_t length, float* y);

 private:
  class FftConvolver;  // FFTW plans and aligned buffers; defined in s4_layer.cc.

  S4Layer(int64_t channels, int64_t modes);

  // Channel h's kernel K[0..L) into kh [L]; scratch holds 2M doubles.
  void ChannelKernel(int64_t h, int64_t length, double* kh, double* scratch) const;

  int64_t channels_ = 0;
  int64_t modes_ = 0;
  // Discretised parameters in double, [H, M] each, real and imaginary parts apart so that the
  // loops over modes vectorise.
  std::vector<double> a_re_, a_im_;    // Ā
  std::vector<double> b_re_, b_im_;    // B̄
  std::vector<double> c_re_, c_im_;    // C
  std::vector<double> cb_re_, cb_im_;  // C·B̄, the kernel's coefficient per mode
  std::vector<double> d_;              // [H]

  // Scratch for one channel at a time. mode_scratch_ is [6, M] (allocated by Create); the others
  // grow to the longest chunk seen.
  std::vector<double> mode_scratch_;
  std::vector<double> u_channel_;  // [L]
  std::vector<double> kernel_;     // [L]
  std::vector<double> y_channel_;  // [L]
  std::unique_ptr<FftConvolver> fft_;
};

// S4D initialisations of λ for M modes (docs/math.md §5.5), written to a_real[M] and a_imag[M]:
//   S4D-Lin  λ_n = −½ + iπn
//   S4D-Inv  λ_n = −½ + i(N/π)(N/(2n+1) − 1), N = 2M
void S4dLinInit(int64_t modes, float* a_real, float* a_imag);
void S4dInvInit(int64_t modes, float* a_real, float* a_imag);

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_S4_LAYER_H_
