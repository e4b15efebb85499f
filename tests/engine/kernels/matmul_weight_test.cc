// MatmulWeight dispatches each format to its kernel unchanged, and reports conversion errors.
#include "engine/kernels/matmul_weight.h"

#include <cstring>
#include <random>
#include <vector>

#include "engine/kernels/row_invariant_matmul.h"
#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

TEST(MatmulWeightTest, ForwardIsTheFormatsKernelBitForBit) {
  const int64_t m = 3, n = 21, k = 45;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> w(n * k), x(m * k);
  for (float& v : w) v = normal(rng);
  for (float& v : x) v = normal(rng);
  std::vector<float> want(m * n), got(m * n);
  for (WeightFormat f : {WeightFormat::kF32, WeightFormat::kBf16, WeightFormat::kInt8PerChannel,
                         WeightFormat::kInt8Block32}) {
    const auto weight = PrepareWeight(w, n, k, f, "w");
    ASSERT_TRUE(weight.ok()) << weight.status();
    EXPECT_EQ(OutFeatures(*weight), n);
    EXPECT_EQ(InFeatures(*weight), k);
    MatmulForward(*weight, x.data(), m, got.data());
    switch (f) {
      case WeightFormat::kF32:
        RowInvariantMatmul(x.data(), m, w.data(), n, k, want.data());
        EXPECT_EQ(WeightBytes(*weight), n * k * 4);
        break;
      case WeightFormat::kBf16:
        Bf16Matmul(x.data(), m, *PackBf16(w.data(), n, k, "w"), want.data());
        break;
      case WeightFormat::kInt8PerChannel:
      case WeightFormat::kInt8Block32:
        Int8Matmul(x.data(), m,
                   *QuantizeInt8(w.data(), n, k,
                                 f == WeightFormat::kInt8Block32 ? Int8Grouping::kBlock32
                                                                 : Int8Grouping::kPerChannel,
                                 "w"),
                   want.data());
        break;
    }
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
        << static_cast<int>(f);
  }
}

TEST(MatmulWeightTest, ConversionErrorNamesTheTensor) {
  std::vector<float> w(4, 3.4e38f);
  const auto weight = PrepareWeight(w, 2, 2, WeightFormat::kBf16, "lm_head.weight");
  ASSERT_FALSE(weight.ok());
  EXPECT_NE(weight.status().message().find("lm_head.weight"), std::string::npos);
}

}  // namespace
}  // namespace kvserve::engine
