// Bf16Matmul against the summation order its header documents, written here as plain scalar
// code that shares nothing with the kernel; plus row invariance, portable ≡ AVX-512, packing
// errors and closeness to an f64 matmul of the same rounded inputs.
#include "engine/kernels/bf16_matmul.h"

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "engine/kernels/kernel_isa.h"
#include "engine/kernels/thread_pool.h"
#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

uint32_t Bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}
float FromBits(uint32_t u) {
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}

// Round to nearest even by comparing the two bf16 neighbours in double (not the kernel's bit
// trick). Finite inputs only.
float RefBf16(float v) {
  const float down = FromBits(Bits(v) & 0xffff0000u);  // toward zero
  const float up = FromBits((Bits(v) & 0xffff0000u) + 0x10000u);
  const double dd = std::fabs(static_cast<double>(v) - down);
  const double du = std::fabs(static_cast<double>(up) - v);
  if (dd < du) return down;
  if (du < dd) return up;
  return ((Bits(down) >> 16) & 1) == 0 ? down : up;
}

float FlushDenormal(float v) {
  return std::fpclassify(v) == FP_SUBNORMAL ? (std::signbit(v) ? -0.0f : 0.0f) : v;
}

// The documented order: pairs (2t, 2t+1), odd element first, FMA with DAZ in / FTZ out.
float RefElement(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> pa = a, pb = b;
  if (pa.size() % 2 == 1) {
    pa.push_back(0.0f);
    pb.push_back(0.0f);
  }
  float acc = 0.0f;
  for (size_t t = 0; t < pa.size() / 2; ++t) {
    acc = FlushDenormal(acc);
    acc = FlushDenormal(std::fma(FlushDenormal(pa[2 * t + 1]), FlushDenormal(pb[2 * t + 1]), acc));
    acc = FlushDenormal(std::fma(FlushDenormal(pa[2 * t]), FlushDenormal(pb[2 * t]), acc));
  }
  return acc;
}

std::vector<float> RefMatmul(const std::vector<float>& x, int64_t m, const std::vector<float>& w,
                             int64_t n, int64_t k) {
  std::vector<float> y(m * n);
  for (int64_t i = 0; i < m; ++i) {
    std::vector<float> a(k);
    for (int64_t q = 0; q < k; ++q) a[q] = RefBf16(x[i * k + q]);
    for (int64_t j = 0; j < n; ++j) {
      std::vector<float> b(k);
      for (int64_t q = 0; q < k; ++q) b[q] = RefBf16(w[j * k + q]);
      y[i * n + j] = RefElement(a, b);
    }
  }
  return y;
}

// Normal values of mixed magnitude, with a sprinkling of denormals and tiny values so that DAZ
// and FTZ are exercised.
std::vector<float> RandomValues(int64_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 99);
  std::vector<float> v(count);
  for (float& f : v) {
    const int r = pick(rng);
    f = normal(rng);
    if (r == 0) f = std::ldexp(f, -128);  // denormal
    if (r == 1) f = std::ldexp(f, -63);   // products near FLT_MIN
    if (r == 2) f = 0.0f;
  }
  return v;
}

class Bf16MatmulTest : public ::testing::TestWithParam<bool /*portable*/> {
 protected:
  void SetUp() override {
    if (!GetParam() && !UseAvx512Bf16Kernels()) GTEST_SKIP() << "CPU lacks AVX512-BF16";
    SetKernelIsaForTesting(GetParam() ? KernelIsa::kPortable : KernelIsa::kAvx512);
  }
  void TearDown() override { SetKernelIsaForTesting(std::nullopt); }
};

TEST_P(Bf16MatmulTest, MatchesDocumentedOrderBitForBit) {
  // {40, 2125}: more than one K block of the prefill path (1024 pairs), so accumulators are
  // parked in y and resumed.
  const int64_t shapes[][2] = {{37, 67},   {16, 64}, {50, 33},  {3, 1},
                               {130, 300}, {17, 2},  {40, 2125}};
  for (const auto& [n, k] : shapes) {
    for (int64_t m : {1, 2, 3, 4, 5, 7, 16, 17, 33, 512}) {
      const uint32_t seed = static_cast<uint32_t>(n * 1000003 + k * 101 + m);
      std::mt19937 rng(seed);
      const std::vector<float> w = RandomValues(n * k, rng), x = RandomValues(m * k, rng);
      const auto packed = PackBf16(w.data(), n, k, "w");
      ASSERT_TRUE(packed.ok()) << packed.status();
      const std::vector<float> want = RefMatmul(x, m, w, n, k);
      for (int threads : {1, 2}) {
        SetKernelThreads(threads);
        std::vector<float> y(m * n, -1.0f);
        Bf16Matmul(x.data(), m, *packed, y.data());
        for (int64_t e = 0; e < m * n; ++e) {
          ASSERT_EQ(Bits(y[e]), Bits(want[e]))
              << "seed " << seed << " m=" << m << " n=" << n << " k=" << k << " threads=" << threads
              << " element [" << e / n << "][" << e % n << "]: " << y[e] << " vs " << want[e];
        }
      }
    }
  }
  SetKernelThreads(2);
}

TEST_P(Bf16MatmulTest, RowAloneEqualsRowInBatch) {
  const int64_t n = 200, k = 517;
  std::mt19937 rng(7);
  const std::vector<float> w = RandomValues(n * k, rng), x = RandomValues(512 * k, rng);
  const auto packed = *PackBf16(w.data(), n, k, "w");
  std::vector<float> batch(512 * n);
  Bf16Matmul(x.data(), 512, packed, batch.data());
  for (int64_t m : {1, 2, 3, 4, 5, 33}) {
    std::vector<float> y(m * n);
    for (int64_t start : {int64_t{0}, 511 - m}) {
      Bf16Matmul(x.data() + start * k, m, packed, y.data());
      for (int64_t e = 0; e < m * n; ++e) {
        ASSERT_EQ(Bits(y[e]), Bits(batch[start * n + e])) << "m=" << m << " start=" << start;
      }
    }
  }
}

// Error of a sequential chain of K2 fused multiply-adds: |Δ| <= K2·2^-24·Σ|a·b| (f32 unit
// roundoff per step); the inputs here are normal and far from FTZ.
TEST_P(Bf16MatmulTest, CloseToFloat64OnRoundedInputs) {
  const int64_t m = 9, n = 70, k = 1001;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(n * k), x(m * k);
  for (float& v : w) v = normal(rng);
  for (float& v : x) v = normal(rng);
  const auto packed = *PackBf16(w.data(), n, k, "w");
  std::vector<float> y(m * n);
  Bf16Matmul(x.data(), m, packed, y.data());
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double exact = 0, magnitude = 0;
      for (int64_t q = 0; q < k; ++q) {
        const double p = static_cast<double>(RefBf16(x[i * k + q])) * RefBf16(w[j * k + q]);
        exact += p;
        magnitude += std::fabs(p);
      }
      EXPECT_NEAR(y[i * n + j], exact, (k + 1) * std::ldexp(1.0, -24) * magnitude);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, Bf16MatmulTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Portable" : "Avx512"; });

TEST(Bf16MatmulIsaTest, PortableEqualsAvx512BitForBit) {
  if (!UseAvx512Bf16Kernels()) GTEST_SKIP() << "CPU lacks AVX512-BF16";
  const int64_t n = 300, k = 333;
  for (int64_t m : {1, 4, 64}) {
    std::mt19937 rng(static_cast<uint32_t>(m));
    const std::vector<float> w = RandomValues(n * k, rng), x = RandomValues(m * k, rng);
    const auto packed = *PackBf16(w.data(), n, k, "w");
    std::vector<float> fast(m * n), portable(m * n);
    Bf16Matmul(x.data(), m, packed, fast.data());
    SetKernelIsaForTesting(KernelIsa::kPortable);
    Bf16Matmul(x.data(), m, packed, portable.data());
    SetKernelIsaForTesting(std::nullopt);
    for (int64_t e = 0; e < m * n; ++e) ASSERT_EQ(Bits(fast[e]), Bits(portable[e])) << "m=" << m;
  }
}

TEST(Bf16ConversionTest, RoundsToNearestEven) {
  EXPECT_EQ(RoundToBf16(1.0f), 0x3f80);
  EXPECT_EQ(RoundToBf16(FromBits(0x3f808000u)), 0x3f80);  // tie, even stays
  EXPECT_EQ(RoundToBf16(FromBits(0x3f818000u)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(RoundToBf16(FromBits(0x3f808001u)), 0x3f81);
  EXPECT_EQ(RoundToBf16(-0.0f), 0x8000);
  std::mt19937 rng(3);
  for (int i = 0; i < 100000; ++i) {
    const float v = FromBits(rng() & 0xfeffffffu);  // finite (exponent < 0xff)
    ASSERT_EQ(Bf16ToFloat(RoundToBf16(v)), RefBf16(v)) << v;
  }
}

TEST(Bf16ConversionTest, ValueBeyondBf16RangeFailsNamingTensor) {
  std::vector<float> w(6, 1.0f);
  w[4] = FLT_MAX;  // finite in f32, rounds to inf in bf16
  const auto packed = PackBf16(w.data(), 2, 3, "layers.3.mlp.up_proj.weight");
  ASSERT_FALSE(packed.ok());
  EXPECT_EQ(packed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(packed.status().message().find("layers.3.mlp.up_proj.weight"), std::string::npos);
  EXPECT_NE(packed.status().message().find("[1][1]"), std::string::npos);
  EXPECT_NE(packed.status().message().find("range"), std::string::npos);
}

TEST(Bf16ConversionTest, NonFiniteValuesFail) {
  std::vector<float> w(4, 1.0f);
  w[2] = NAN;
  EXPECT_FALSE(PackBf16(w.data(), 2, 2, "w").ok());
  const std::vector<uint16_t> bits = {0x3f80, 0x7f80};  // 1, +inf
  const auto packed = PackBf16(bits.data(), 1, 2, "emb");
  ASSERT_FALSE(packed.ok());
  EXPECT_NE(packed.status().message().find("emb"), std::string::npos);
}

TEST(Bf16ConversionTest, Bf16SourcePacksTheSameAsF32Source) {
  std::mt19937 rng(5);
  const std::vector<float> w = RandomValues(19 * 21, rng);
  std::vector<uint16_t> bits(w.size());
  for (size_t i = 0; i < w.size(); ++i) bits[i] = RoundToBf16(w[i]);
  EXPECT_EQ(PackBf16(w.data(), 19, 21, "w")->data, PackBf16(bits.data(), 19, 21, "w")->data);
}

}  // namespace
}  // namespace kvserve::engine
