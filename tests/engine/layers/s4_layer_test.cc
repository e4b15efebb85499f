// The S4 layer's two views against each other (convolution ≡ recurrence, chunked ≡ one-shot,
// docs/math.md §5.6) and against an independent double-precision complex-diagonal recurrence
// (docs/math.md §7 oracles 11 and 16).
#include "engine/layers/s4_layer.h"

#include <algorithm>
#include <cmath>
#include <complex>
#include <limits>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

using Complex = std::complex<double>;
using ::testing::HasSubstr;

enum class Init { kRandom, kS4dLin, kS4dInv };

// A seeded layer: Δ log-uniform in [dt_min, dt_max] (S4's usual range is [1e-3, 1e-1]), λ from
// `init`, B, C and D standard normal.
S4Params RandomParams(int64_t channels, int64_t modes, S4Discretization discretization,
                      uint32_t seed, Init init = Init::kRandom, double dt_min = 1e-3,
                      double dt_max = 1e-1) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  S4Params p;
  p.channels = channels;
  p.modes = modes;
  p.discretization = discretization;
  p.log_dt.resize(channels);
  for (float& v : p.log_dt) {
    v = static_cast<float>(std::log(dt_min) + unit(rng) * (std::log(dt_max) - std::log(dt_min)));
  }
  p.a_real.resize(channels * modes);
  p.a_imag.resize(channels * modes);
  for (int64_t h = 0; h < channels; ++h) {
    float* re = p.a_real.data() + h * modes;
    float* im = p.a_imag.data() + h * modes;
    switch (init) {
      case Init::kS4dLin:
        S4dLinInit(modes, re, im);
        break;
      case Init::kS4dInv:
        S4dInvInit(modes, re, im);
        break;
      case Init::kRandom:
        for (int64_t n = 0; n < modes; ++n) {
          re[n] = -static_cast<float>(0.05 + unit(rng));
          im[n] = static_cast<float>(std::numbers::pi * modes * (2.0 * unit(rng) - 1.0));
        }
        break;
    }
  }
  p.b.resize(2 * channels * modes);
  p.c.resize(2 * channels * modes);
  p.d.resize(channels);
  for (float& v : p.b) v = normal(rng);
  for (float& v : p.c) v = normal(rng) / std::sqrt(static_cast<float>(modes));
  for (float& v : p.d) v = normal(rng);
  return p;
}

std::unique_ptr<S4Layer> MakeLayer(const S4Params& params) {
  absl::StatusOr<std::unique_ptr<S4Layer>> layer = S4Layer::Create(params);
  EXPECT_TRUE(layer.ok()) << layer.status();
  return layer.ok() ? *std::move(layer) : nullptr;
}

std::vector<float> RandomFloats(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(count);
  for (float& x : v) x = normal(rng);
  return v;
}

// max |x − y| / max |y|: the error relative to the signal's scale (elementwise relative error is
// meaningless at the zero crossings of y).
double RelativeError(const std::vector<float>& x, const std::vector<float>& y) {
  EXPECT_EQ(x.size(), y.size());
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(x[i]) - y[i]));
    scale = std::max(scale, std::abs(static_cast<double>(y[i])));
  }
  return diff / std::max(scale, std::numeric_limits<double>::min());
}

// Runs Step over u [L, H], from and into *state; returns y [L, H].
std::vector<float> Recur(S4Layer& layer, const std::vector<float>& u, int64_t length,
                         std::vector<float>* state) {
  const int64_t h = layer.channels();
  std::vector<float> y(length * h);
  for (int64_t l = 0; l < length; ++l)
    layer.Step(u.data() + l * h, state->data(), y.data() + l * h);
  return y;
}

struct Shape {
  S4Discretization discretization;
  int64_t channels;
  int64_t modes;
  int64_t length;
};

std::string ShapeName(const ::testing::TestParamInfo<Shape>& info) {
  const Shape& s = info.param;
  return absl::StrCat(s.discretization == S4Discretization::kZoh ? "Zoh" : "Bilinear", "_H",
                      s.channels, "_M", s.modes, "_L", s.length);
}

class S4ViewsTest : public ::testing::TestWithParam<Shape> {};

// docs/math.md §5.6: the convolution view with its Vandermonde state equals the recurrent view, in
// the outputs and in the state it hands to decode.
TEST_P(S4ViewsTest, PrefillConvolutionEqualsTokenByTokenRecurrence) {
  const Shape s = GetParam();
  const uint32_t seed = static_cast<uint32_t>(1000 * s.channels + 10 * s.modes + s.length);
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::unique_ptr<S4Layer> layer =
      MakeLayer(RandomParams(s.channels, s.modes, s.discretization, seed));
  ASSERT_NE(layer, nullptr);
  const std::vector<float> u = RandomFloats(s.length * s.channels, seed + 1);
  std::vector<float> conv_state(layer->state_floats(), 0.0f);
  std::vector<float> y_conv(s.length * s.channels);
  layer->Prefill(u.data(), s.length, conv_state.data(), y_conv.data());
  std::vector<float> rec_state(layer->state_floats(), 0.0f);
  const std::vector<float> y_rec = Recur(*layer, u, s.length, &rec_state);

  const double output_error = RelativeError(y_conv, y_rec);
  const double state_error = RelativeError(conv_state, rec_state);
  RecordProperty("output_relative_error", absl::StrCat(output_error));
  RecordProperty("state_relative_error", absl::StrCat(state_error));
  EXPECT_LE(output_error, 1e-5);
  EXPECT_LE(state_error, 1e-5);
}

// Prefill from a non-zero state (a later chunk of a sequence) equals the recurrence from it.
TEST_P(S4ViewsTest, PrefillFromANonZeroStateEqualsRecurrenceFromIt) {
  const Shape s = GetParam();
  const uint32_t seed = static_cast<uint32_t>(7 + 1000 * s.channels + 10 * s.modes + s.length);
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::unique_ptr<S4Layer> layer =
      MakeLayer(RandomParams(s.channels, s.modes, s.discretization, seed));
  ASSERT_NE(layer, nullptr);
  const std::vector<float> u = RandomFloats(s.length * s.channels, seed + 1);
  const std::vector<float> initial = RandomFloats(layer->state_floats(), seed + 2);
  std::vector<float> conv_state = initial;
  std::vector<float> y_conv(s.length * s.channels);
  layer->Prefill(u.data(), s.length, conv_state.data(), y_conv.data());
  std::vector<float> rec_state = initial;
  const std::vector<float> y_rec = Recur(*layer, u, s.length, &rec_state);
  const double output_error = RelativeError(y_conv, y_rec);
  const double state_error = RelativeError(conv_state, rec_state);
  RecordProperty("output_relative_error", absl::StrCat(output_error));
  RecordProperty("state_relative_error", absl::StrCat(state_error));
  EXPECT_LE(output_error, 1e-5);
  EXPECT_LE(state_error, 1e-5);
}

// The kernel is the impulse response of the recurrence (minus the D skip at k = 0).
TEST_P(S4ViewsTest, KernelIsTheRecurrencesImpulseResponse) {
  const Shape s = GetParam();
  const uint32_t seed = static_cast<uint32_t>(13 + 1000 * s.channels + 10 * s.modes + s.length);
  S4Params params = RandomParams(s.channels, s.modes, s.discretization, seed);
  std::fill(params.d.begin(), params.d.end(), 0.0f);
  std::unique_ptr<S4Layer> layer = MakeLayer(params);
  ASSERT_NE(layer, nullptr);
  std::vector<float> impulse(s.length * s.channels, 0.0f);
  std::fill(impulse.begin(), impulse.begin() + s.channels, 1.0f);
  std::vector<float> state(layer->state_floats(), 0.0f);
  const std::vector<float> response = Recur(*layer, impulse, s.length, &state);
  std::vector<double> kernel;
  layer->Kernel(s.length, &kernel);
  ASSERT_EQ(kernel.size(), static_cast<size_t>(s.channels * s.length));
  std::vector<float> kernel_token_major(s.length * s.channels);
  for (int64_t h = 0; h < s.channels; ++h) {
    for (int64_t l = 0; l < s.length; ++l) {
      kernel_token_major[l * s.channels + h] = static_cast<float>(kernel[h * s.length + l]);
    }
  }
  EXPECT_LE(RelativeError(response, kernel_token_major), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, S4ViewsTest,
                         ::testing::Values(Shape{S4Discretization::kZoh, 1, 1, 1},
                                           Shape{S4Discretization::kZoh, 3, 4, 1},
                                           Shape{S4Discretization::kZoh, 2, 8, 7},
                                           Shape{S4Discretization::kZoh, 5, 3, 127},
                                           Shape{S4Discretization::kZoh, 8, 16, 64},
                                           Shape{S4Discretization::kZoh, 4, 32, 300},
                                           Shape{S4Discretization::kBilinear, 1, 1, 1},
                                           Shape{S4Discretization::kBilinear, 3, 4, 1},
                                           Shape{S4Discretization::kBilinear, 2, 8, 7},
                                           Shape{S4Discretization::kBilinear, 5, 3, 127},
                                           Shape{S4Discretization::kBilinear, 8, 16, 64},
                                           Shape{S4Discretization::kBilinear, 4, 32, 300}),
                         ShapeName);

// Oracle 11: without zero padding to 2L the FFT computes a circular convolution, which differs
// from the recurrence by far more than rounding (N = 16, L = 64, ε = 0.1).
TEST(S4LayerTest, ConvolutionWithoutPaddingIsDetectablyWrong) {
  for (S4Discretization disc : {S4Discretization::kZoh, S4Discretization::kBilinear}) {
    S4Params params = RandomParams(4, 8, disc, 11, Init::kS4dLin, 0.1, 0.1);
    std::unique_ptr<S4Layer> layer = MakeLayer(params);
    ASSERT_NE(layer, nullptr);
    const int64_t length = 64;
    const std::vector<float> u = RandomFloats(length * 4, 12);
    std::vector<float> state(layer->state_floats(), 0.0f);
    const std::vector<float> y_rec = Recur(*layer, u, length, &state);
    std::vector<float> y_circular(length * 4), y_padded(length * 4);
    layer->CircularConvolutionForTest(u.data(), length, y_circular.data());
    std::fill(state.begin(), state.end(), 0.0f);
    layer->Prefill(u.data(), length, state.data(), y_padded.data());
    const double circular_error = RelativeError(y_circular, y_rec);
    RecordProperty("circular_relative_error", absl::StrCat(circular_error));
    EXPECT_GT(circular_error, 1e-2);
    EXPECT_LE(RelativeError(y_padded, y_rec), 1e-5);
  }
}

// Chunked prefill (state carried between chunks) ≡ one-shot prefill ≡ recurrence; and decode
// after a prefill continues the recurrence (docs/math.md §5.6).
TEST(S4LayerTest, ChunkedPrefillEqualsOneShotPrefillAndRecurrence) {
  for (S4Discretization disc : {S4Discretization::kZoh, S4Discretization::kBilinear}) {
    const int64_t channels = 6;
    std::unique_ptr<S4Layer> layer = MakeLayer(RandomParams(channels, 16, disc, 21));
    ASSERT_NE(layer, nullptr);
    const std::vector<int64_t> chunks = {37, 1, 262};
    const int64_t length = 300;
    const std::vector<float> u = RandomFloats(length * channels, 22);

    std::vector<float> chunk_state(layer->state_floats(), 0.0f);
    std::vector<float> y_chunked(length * channels);
    int64_t start = 0;
    for (int64_t chunk : chunks) {
      layer->Prefill(u.data() + start * channels, chunk, chunk_state.data(),
                     y_chunked.data() + start * channels);
      start += chunk;
    }
    ASSERT_EQ(start, length);
    std::vector<float> one_state(layer->state_floats(), 0.0f);
    std::vector<float> y_one(length * channels);
    layer->Prefill(u.data(), length, one_state.data(), y_one.data());
    std::vector<float> rec_state(layer->state_floats(), 0.0f);
    const std::vector<float> y_rec = Recur(*layer, u, length, &rec_state);

    EXPECT_LE(RelativeError(y_chunked, y_one), 1e-5);
    EXPECT_LE(RelativeError(y_chunked, y_rec), 1e-5);
    EXPECT_LE(RelativeError(chunk_state, one_state), 1e-5);
    EXPECT_LE(RelativeError(chunk_state, rec_state), 1e-5);

    // Decode 20 tokens from the prefilled state and from the recurrent one.
    const std::vector<float> more = RandomFloats(20 * channels, 23);
    const std::vector<float> y_after_prefill = Recur(*layer, more, 20, &one_state);
    const std::vector<float> y_after_recurrence = Recur(*layer, more, 20, &rec_state);
    EXPECT_LE(RelativeError(y_after_prefill, y_after_recurrence), 1e-5);
  }
}

TEST(S4LayerTest, EmptyPrefillLeavesTheStateAlone) {
  std::unique_ptr<S4Layer> layer = MakeLayer(RandomParams(2, 3, S4Discretization::kZoh, 31));
  ASSERT_NE(layer, nullptr);
  const std::vector<float> initial = RandomFloats(layer->state_floats(), 32);
  std::vector<float> state = initial;
  layer->Prefill(nullptr, 0, state.data(), nullptr);
  EXPECT_EQ(state, initial);
}

// FFT plans are cached per length and run on buffers that grow: a short chunk after a long one
// gives bit-identical results to the same chunk on a fresh layer.
TEST(S4LayerTest, PrefillIsDeterministicAcrossCachedPlansAndGrownBuffers) {
  const S4Params params = RandomParams(5, 8, S4Discretization::kZoh, 41);
  std::unique_ptr<S4Layer> used = MakeLayer(params);
  std::unique_ptr<S4Layer> fresh = MakeLayer(params);
  ASSERT_NE(used, nullptr);
  ASSERT_NE(fresh, nullptr);
  const std::vector<float> u_short = RandomFloats(7 * 5, 42);
  const std::vector<float> u_long = RandomFloats(500 * 5, 43);
  std::vector<float> state(used->state_floats(), 0.0f), y(500 * 5);
  used->Prefill(u_short.data(), 7, state.data(), y.data());
  used->Prefill(u_long.data(), 500, state.data(), y.data());
  std::vector<float> used_state(used->state_floats(), 0.0f), used_y(7 * 5);
  used->Prefill(u_short.data(), 7, used_state.data(), used_y.data());
  std::vector<float> fresh_state(fresh->state_floats(), 0.0f), fresh_y(7 * 5);
  fresh->Prefill(u_short.data(), 7, fresh_state.data(), fresh_y.data());
  EXPECT_EQ(used_y, fresh_y);
  EXPECT_EQ(used_state, fresh_state);
}

// An independent reference in double: discretise λ, B from the formulas and run the
// complex-diagonal recurrence on an impulse, y_k = 2·Re Σ_n C_n x_{k,n}.
std::vector<double> ReferenceImpulseResponse(const S4Params& p, int64_t h, int64_t length) {
  const double dt = std::exp(static_cast<double>(p.log_dt[h]));
  std::vector<double> y(length, 0.0);
  for (int64_t n = 0; n < p.modes; ++n) {
    const int64_t i = h * p.modes + n;
    const Complex lambda(p.a_real[i], p.a_imag[i]);
    const Complex b(p.b[2 * i], p.b[2 * i + 1]);
    const Complex c(p.c[2 * i], p.c[2 * i + 1]);
    Complex a_bar, b_bar;
    if (p.discretization == S4Discretization::kZoh) {
      a_bar = std::exp(dt * lambda);
      b_bar = (a_bar - 1.0) / lambda * b;
    } else {
      a_bar = (1.0 + dt * lambda / 2.0) / (1.0 - dt * lambda / 2.0);
      b_bar = dt / (1.0 - dt * lambda / 2.0) * b;
    }
    Complex x = 0.0;
    for (int64_t k = 0; k < length; ++k) {
      x = a_bar * x + b_bar * (k == 0 ? 1.0 : 0.0);
      y[k] += 2.0 * (c * x).real();
    }
  }
  return y;
}

// Oracle 16: the S4D ZOH Vandermonde kernel K_k = 2·Re Σ C_n B̄_n Ā_n^k equals the complex-diagonal
// recurrence, with the S4D-Lin and S4D-Inv initialisations (and bilinear too).
TEST(S4LayerTest, S4dKernelEqualsComplexDiagonalRecurrence) {
  for (Init init : {Init::kS4dLin, Init::kS4dInv}) {
    for (S4Discretization disc : {S4Discretization::kZoh, S4Discretization::kBilinear}) {
      const S4Params params = RandomParams(3, 32, disc, 51, init);
      std::unique_ptr<S4Layer> layer = MakeLayer(params);
      ASSERT_NE(layer, nullptr);
      const int64_t length = 200;
      std::vector<double> kernel;
      layer->Kernel(length, &kernel);
      for (int64_t h = 0; h < 3; ++h) {
        const std::vector<double> expected = ReferenceImpulseResponse(params, h, length);
        double diff = 0.0, scale = 0.0;
        for (int64_t k = 0; k < length; ++k) {
          diff = std::max(diff, std::abs(kernel[h * length + k] - expected[k]));
          scale = std::max(scale, std::abs(expected[k]));
        }
        EXPECT_LE(diff, 1e-12 * scale) << "init " << static_cast<int>(init) << " channel " << h;
      }
    }
  }
}

TEST(S4LayerTest, S4dLinInitIsMinusOneHalfPlusIPiN) {
  std::vector<float> re(8), im(8);
  S4dLinInit(8, re.data(), im.data());
  for (int n = 0; n < 8; ++n) {
    EXPECT_EQ(re[n], -0.5f);
    EXPECT_EQ(im[n], static_cast<float>(std::numbers::pi * n));
  }
}

// Oracle 16's S4D-Inv values for N = 64 (M = 32).
TEST(S4LayerTest, S4dInvInitMatchesTheOracleForN64) {
  std::vector<float> re(32), im(32);
  S4dInvInit(32, re.data(), im.data());
  for (int n = 0; n < 32; ++n) EXPECT_EQ(re[n], -0.5f);
  EXPECT_NEAR(im[0], 1283.4255, 1e-4 * 1283.4255);
  EXPECT_NEAR(im[1], 414.22727, 1e-6 * 414.22727);
  EXPECT_NEAR(im[31], 0.323362, 1e-6);
  EXPECT_FLOAT_EQ(im[0], static_cast<float>(64.0 / std::numbers::pi * 63.0));
}

// The ZOH B̄ = (e^{Δλ} − 1)/λ · B stays accurate when Δλ is tiny (no cancellation in e^{Δλ} − 1):
// B̄ ≈ Δ·B and the DC gain Σ K_k = 2·Re(C B̄ / (1 − Ā)) = 2·Re(−C B / λ).
TEST(S4LayerTest, ZohIsAccurateForTinySteps) {
  S4Params p;
  p.channels = 1;
  p.modes = 1;
  p.log_dt = {static_cast<float>(std::log(1e-7))};
  p.a_real = {-0.5f};
  p.a_imag = {0.25f};
  p.b = {1.0f, 0.0f};
  p.c = {1.0f, 0.0f};
  p.d = {0.0f};
  std::unique_ptr<S4Layer> layer = MakeLayer(p);
  ASSERT_NE(layer, nullptr);
  std::vector<double> kernel;
  layer->Kernel(1, &kernel);
  const double dt = std::exp(static_cast<double>(p.log_dt[0]));
  // K_0 = 2·Re(B̄) with B̄ = Δ(1 + Δλ/2 + …): relative error ~1e-16, not ~1e-9.
  EXPECT_NEAR(kernel[0], 2.0 * dt * (1.0 - 0.5 * dt * 0.5), 1e-14 * dt);
}

// ---- Create's validation ----

std::string CreateError(const S4Params& params) {
  absl::StatusOr<std::unique_ptr<S4Layer>> layer = S4Layer::Create(params);
  EXPECT_FALSE(layer.ok());
  if (layer.ok()) return "";
  EXPECT_EQ(layer.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(layer.status().message());
}

TEST(S4LayerCreateTest, RejectsTensorsOfTheWrongSize) {
  const S4Params good = RandomParams(3, 4, S4Discretization::kZoh, 61);
  S4Params p = good;
  p.a_imag.pop_back();
  EXPECT_THAT(CreateError(p),
              HasSubstr("S4Params.a_imag has 11 elements; expected [channels, modes] = 12"));
  p = good;
  p.b.resize(12);
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.b has 12 elements"));
  p = good;
  p.c.push_back(0.0f);
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.c "));
  p = good;
  p.log_dt.clear();
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.log_dt"));
  p = good;
  p.d.resize(4);
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.d has 4 elements; expected [channels] = 3"));
  p = good;
  p.a_real.resize(13);
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.a_real"));
  p = good;
  p.modes = 0;
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.modes (0)"));
  p = good;
  p.channels = -1;
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.channels (-1)"));
}

TEST(S4LayerCreateTest, RejectsANonNegativeRealPartOfLambda) {
  S4Params p = RandomParams(3, 4, S4Discretization::kBilinear, 62);
  p.a_real[1 * 4 + 2] = 0.0f;
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.a_real[1, 2] = 0"));
  p.a_real[1 * 4 + 2] = 0.25f;
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.a_real[1, 2] = 0.25"));
}

TEST(S4LayerCreateTest, RejectsNonFiniteValuesNamingTheTensor) {
  const S4Params good = RandomParams(3, 4, S4Discretization::kZoh, 63);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  S4Params p = good;
  p.c[2 * (2 * 4 + 3) + 1] = nan;
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.c[2, 3, 1] is not finite"));
  p = good;
  p.b[0] = inf;
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.b[0, 0, 0] is not finite"));
  p = good;
  p.a_imag[5] = -inf;
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.a_imag[1, 1] is not finite"));
  p = good;
  p.a_real[0] = nan;  // NaN is caught as non-finite before the sign check
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.a_real[0, 0] is not finite"));
  p = good;
  p.d[2] = nan;
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.d[2] is not finite"));
  p = good;
  p.log_dt[1] = inf;
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.log_dt[1] is not finite"));
  p = good;
  p.log_dt[1] = 800.0f;  // Δ = e^800 overflows double
  EXPECT_THAT(CreateError(p), HasSubstr("S4Params.log_dt[1] = 800"));
}

TEST(S4LayerCreateTest, AcceptsValidParamsAndReportsSizes) {
  std::unique_ptr<S4Layer> layer = MakeLayer(RandomParams(3, 4, S4Discretization::kZoh, 64));
  ASSERT_NE(layer, nullptr);
  EXPECT_EQ(layer->channels(), 3);
  EXPECT_EQ(layer->modes(), 4);
  EXPECT_EQ(layer->state_floats(), 24);
}

}  // namespace
}  // namespace kvserve::engine
