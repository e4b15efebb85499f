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

// The embedding lookup's row read: exact for f32 and bf16 (the rounded value), q·scale for int8;
// a one-hot row of x through MatmulForward picks the same numbers out of the packed layout.
TEST(MatmulWeightTest, DequantizeRowReadsTheStoredValuesOfEveryFormat) {
  const int64_t n = 37, k = 45;  // partial panels and odd K
  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  std::vector<float> w(n * k);
  for (float& v : w) v = normal(rng);
  std::vector<float> row(k);
  for (WeightFormat f : {WeightFormat::kF32, WeightFormat::kBf16, WeightFormat::kInt8PerChannel,
                         WeightFormat::kInt8Block32}) {
    const auto weight = PrepareWeight(w, n, k, f, "w");
    ASSERT_TRUE(weight.ok()) << weight.status();
    for (int64_t j : {int64_t{0}, int64_t{15}, int64_t{16}, n - 1}) {
      DequantizeRow(*weight, j, row.data());
      for (int64_t i = 0; i < k; ++i) {
        float want = w[j * k + i];
        if (f == WeightFormat::kBf16) want = Bf16ToFloat(RoundToBf16(want));
        if (const auto* q = std::get_if<PackedInt8Weight>(&*weight)) {
          want = static_cast<float>(q->quantized(j, i)) * q->scale(j, i / (q->group_quads * 4));
        }
        ASSERT_EQ(row[i], want) << WeightFormatName(*weight) << " [" << j << "][" << i << "]";
      }
    }
    if (f == WeightFormat::kInt8Block32) {
      // Block-32 int8 is close to the original (scale ≤ amax/127 per 32 values).
      DequantizeRow(*weight, 3, row.data());
      for (int64_t i = 0; i < k; ++i) EXPECT_NEAR(row[i], w[3 * k + i], 0.03f);
    }
  }
}

}  // namespace
}  // namespace kvserve::engine
