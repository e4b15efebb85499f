// Int8Matmul against the order its header documents, written here as plain scalar code from the
// raw f32 inputs (it quantizes weights and activations itself); plus row invariance, portable ≡
// AVX-512, quantization errors and closeness to an f64 matmul of the dequantized inputs.
#include "engine/kernels/int8_matmul.h"

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

// Round half to even without relying on the rounding mode.
float RoundHalfEven(float v) {
  const double f = std::floor(static_cast<double>(v)), frac = v - f;
  if (frac > 0.5) return static_cast<float>(f + 1);
  if (frac < 0.5) return static_cast<float>(f);
  return std::fmod(f, 2.0) == 0 ? static_cast<float>(f) : static_cast<float>(f + 1);
}

struct RefWeight {
  std::vector<std::vector<int>> q;        // [n][k]
  std::vector<std::vector<float>> scale;  // [n][group]
  int64_t group_k;
};

RefWeight RefQuantize(const std::vector<float>& w, int64_t n, int64_t k, bool per_channel) {
  RefWeight r;
  r.group_k = per_channel ? k : 32;
  const int64_t groups = (k + r.group_k - 1) / r.group_k;
  r.q.assign(n, std::vector<int>(k, 0));
  r.scale.assign(n, std::vector<float>(groups, 0.0f));
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t g = 0; g < groups; ++g) {
      float amax = 0;
      for (int64_t i = g * r.group_k; i < std::min(k, (g + 1) * r.group_k); ++i) {
        amax = std::max(amax, std::fabs(w[j * k + i]));
      }
      const float s = amax / 127.0f;
      for (int64_t i = g * r.group_k; i < std::min(k, (g + 1) * r.group_k) && amax > 0; ++i) {
        r.q[j][i] = static_cast<int>(std::clamp(RoundHalfEven(w[j * k + i] / s), -127.0f, 127.0f));
      }
      r.scale[j][g] = s;
    }
  }
  return r;
}

// Activations of one row, quantized per group of group_k: q[k], sx[g].
void RefQuantizeRow(const float* x, int64_t k, int64_t group_k, std::vector<int>& q,
                    std::vector<float>& sx) {
  q.assign(k, 0);
  sx.assign((k + group_k - 1) / group_k, 0.0f);
  for (size_t g = 0; g < sx.size(); ++g) {
    const int64_t k0 = g * group_k, k1 = std::min(k, k0 + group_k);
    float amax = 0;
    for (int64_t i = k0; i < k1; ++i) amax = std::max(amax, std::fabs(x[i]));
    if (amax == 0) continue;
    sx[g] = amax / 127.0f;
    const float inv = 127.0f / amax;
    for (int64_t i = k0; i < k1; ++i) {
      q[i] = static_cast<int>(std::clamp(RoundHalfEven(x[i] * inv), -127.0f, 127.0f));
    }
  }
}

std::vector<float> RefMatmul(const std::vector<float>& x, int64_t m, const RefWeight& w, int64_t n,
                             int64_t k) {
  std::vector<float> y(m * n);
  std::vector<int> q;
  std::vector<float> sx;
  for (int64_t i = 0; i < m; ++i) {
    RefQuantizeRow(x.data() + i * k, k, w.group_k, q, sx);
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0;
      for (size_t g = 0; g < sx.size(); ++g) {
        int64_t s = 0;
        for (int64_t t = g * w.group_k; t < std::min<int64_t>(k, (g + 1) * w.group_k); ++t) {
          s += q[t] * w.q[j][t];
        }
        acc = std::fma(static_cast<float>(s), sx[g] * w.scale[j][g], acc);
      }
      y[i * n + j] = acc;
    }
  }
  return y;
}

std::vector<float> RandomValues(int64_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(count);
  for (float& f : v) f = normal(rng);
  return v;
}

struct Param {
  bool portable;
  Int8Grouping grouping;
};

class Int8MatmulTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (!GetParam().portable && !UseAvx512Int8Kernels()) GTEST_SKIP() << "CPU lacks AVX512-VNNI";
    SetKernelIsaForTesting(GetParam().portable ? KernelIsa::kPortable : KernelIsa::kAvx512);
  }
  void TearDown() override { SetKernelIsaForTesting(std::nullopt); }
};

TEST_P(Int8MatmulTest, MatchesDocumentedOrderBitForBit) {
  const bool per_channel = GetParam().grouping == Int8Grouping::kPerChannel;
  const int64_t shapes[][2] = {{37, 67},   {16, 64}, {50, 33},  {3, 1},
                               {130, 300}, {17, 2},  {40, 2125}};
  for (const auto& [n, k] : shapes) {
    for (int64_t m : {1, 2, 3, 4, 5, 7, 16, 17, 33, 512}) {
      const uint32_t seed = static_cast<uint32_t>(n * 1000003 + k * 101 + m);
      std::mt19937 rng(seed);
      std::vector<float> w = RandomValues(n * k, rng), x = RandomValues(m * k, rng);
      if (m == 5) std::fill(x.begin(), x.begin() + k, 0.0f);  // an all-zero row
      const auto packed = QuantizeInt8(w.data(), n, k, GetParam().grouping, "w");
      ASSERT_TRUE(packed.ok()) << packed.status();
      const std::vector<float> want = RefMatmul(x, m, RefQuantize(w, n, k, per_channel), n, k);
      for (int threads : {1, 2}) {
        SetKernelThreads(threads);
        std::vector<float> y(m * n, -1.0f);
        Int8Matmul(x.data(), m, *packed, y.data());
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

TEST_P(Int8MatmulTest, RowAloneEqualsRowInBatch) {
  const int64_t n = 200, k = 517;
  std::mt19937 rng(7);
  const std::vector<float> w = RandomValues(n * k, rng), x = RandomValues(512 * k, rng);
  const auto packed = *QuantizeInt8(w.data(), n, k, GetParam().grouping, "w");
  std::vector<float> batch(512 * n);
  Int8Matmul(x.data(), 512, packed, batch.data());
  for (int64_t m : {1, 2, 3, 4, 5, 33}) {
    std::vector<float> y(m * n);
    for (int64_t start : {int64_t{0}, 511 - m}) {
      Int8Matmul(x.data() + start * k, m, packed, y.data());
      for (int64_t e = 0; e < m * n; ++e) {
        ASSERT_EQ(Bits(y[e]), Bits(batch[start * n + e])) << "m=" << m << " start=" << start;
      }
    }
  }
}

// Against f64 of the dequantized operands (s_x·q_x)·(s_w·q_w): only the f32 roundings of step 4
// remain, |Δ| <= (groups + 2)·2^-23·Σ_k |s_x·q_x·s_w·q_w|.
TEST_P(Int8MatmulTest, CloseToFloat64OnDequantizedInputs) {
  const bool per_channel = GetParam().grouping == Int8Grouping::kPerChannel;
  const int64_t m = 5, n = 40, k = 1001;
  std::mt19937 rng(11);
  const std::vector<float> w = RandomValues(n * k, rng), x = RandomValues(m * k, rng);
  const auto packed = *QuantizeInt8(w.data(), n, k, GetParam().grouping, "w");
  const RefWeight ref = RefQuantize(w, n, k, per_channel);
  std::vector<float> y(m * n);
  Int8Matmul(x.data(), m, packed, y.data());
  std::vector<int> q;
  std::vector<float> sx;
  for (int64_t i = 0; i < m; ++i) {
    RefQuantizeRow(x.data() + i * k, k, ref.group_k, q, sx);
    for (int64_t j = 0; j < n; ++j) {
      double exact = 0, bound = 0;
      for (int64_t t = 0; t < k; ++t) {
        const double term = static_cast<double>(sx[t / ref.group_k]) * q[t] * ref.q[j][t] *
                            ref.scale[j][t / ref.group_k];
        exact += term;
        bound += std::fabs(term);
      }
      EXPECT_NEAR(y[i * n + j], exact, (sx.size() + 2) * std::ldexp(1.0, -23) * bound);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    IsaAndGrouping, Int8MatmulTest,
    ::testing::Values(Param{false, Int8Grouping::kPerChannel}, Param{false, Int8Grouping::kBlock32},
                      Param{true, Int8Grouping::kPerChannel}, Param{true, Int8Grouping::kBlock32}),
    [](const auto& info) {
      return std::string(info.param.portable ? "Portable" : "Avx512") +
             (info.param.grouping == Int8Grouping::kPerChannel ? "PerChannel" : "Block32");
    });

TEST(Int8MatmulIsaTest, PortableEqualsAvx512BitForBit) {
  if (!UseAvx512Int8Kernels()) GTEST_SKIP() << "CPU lacks AVX512-VNNI";
  const int64_t n = 300, k = 333;
  for (Int8Grouping g : {Int8Grouping::kPerChannel, Int8Grouping::kBlock32}) {
    for (int64_t m : {1, 4, 64}) {
      std::mt19937 rng(static_cast<uint32_t>(m));
      const std::vector<float> w = RandomValues(n * k, rng), x = RandomValues(m * k, rng);
      const auto packed = *QuantizeInt8(w.data(), n, k, g, "w");
      std::vector<float> fast(m * n), portable(m * n);
      Int8Matmul(x.data(), m, packed, fast.data());
      SetKernelIsaForTesting(KernelIsa::kPortable);
      Int8Matmul(x.data(), m, packed, portable.data());
      SetKernelIsaForTesting(std::nullopt);
      for (int64_t e = 0; e < m * n; ++e) ASSERT_EQ(Bits(fast[e]), Bits(portable[e])) << "m=" << m;
    }
  }
}

TEST(Int8QuantizationTest, UnderflowingScaleFailsNamingTensor) {
  std::vector<float> w(64, 1.0f);
  for (int i = 32; i < 64; ++i) w[i] = 1e-39f;  // amax/127 is below FLT_MIN
  const auto packed = QuantizeInt8(w.data(), 1, 64, Int8Grouping::kBlock32, "layers.0.attn.q");
  ASSERT_FALSE(packed.ok());
  EXPECT_EQ(packed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(packed.status().message().find("layers.0.attn.q"), std::string::npos);
  EXPECT_NE(packed.status().message().find("underflows"), std::string::npos);
  // The same values in one per-channel group have a normal scale.
  EXPECT_TRUE(QuantizeInt8(w.data(), 1, 64, Int8Grouping::kPerChannel, "w").ok());
}

TEST(Int8QuantizationTest, AllZeroGroupIsFine) {
  std::vector<float> w(2 * 40, 0.0f);
  w[1] = 0.5f;
  const auto packed = QuantizeInt8(w.data(), 2, 40, Int8Grouping::kBlock32, "w");
  ASSERT_TRUE(packed.ok());
  std::vector<float> x(40, 1.0f), y(2);
  Int8Matmul(x.data(), 1, *packed, y.data());
  EXPECT_FLOAT_EQ(y[0], 0.5f);
  EXPECT_EQ(y[1], 0.0f);
}

TEST(Int8QuantizationTest, NonFiniteValueFails) {
  std::vector<float> w(8, 1.0f);
  w[5] = INFINITY;
  const auto packed = QuantizeInt8(w.data(), 2, 4, Int8Grouping::kPerChannel, "emb");
  ASSERT_FALSE(packed.ok());
  EXPECT_NE(packed.status().message().find("emb"), std::string::npos);
  EXPECT_NE(packed.status().message().find("[1][1]"), std::string::npos);
}

}  // namespace
}  // namespace kvserve::engine
