// MatmulWeight dispatches each format to its kernel unchanged, and reports conversion errors.
#include "engine/kernels/matmul_weight.h"

#include <cstring>
#include <random>
#include <vector>

#include "engine/kernels/kernel_isa.h"
#include "engine/kernels/row_invariant_matmul.h"
#include "engine/kernels/thread_pool.h"
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

// Several weights in one call (a layer's q/k/v, gate/up) give each weight's own bits, whatever the
// row count (decode tiles, prefill grid, several row blocks), the thread count and the ISA; weights
// of different formats fall back to one call each.
TEST(MatmulWeightTest, SharedForwardIsEachWeightsForwardBitForBit) {
  const int64_t k = 576;
  const int64_t ns[] = {512, 136, 136};  // q/k/v-like, big enough to share out over threads
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<std::vector<float>> w;
  for (int64_t n : ns) {
    w.emplace_back(n * k);
    for (float& v : w.back()) v = normal(rng);
  }
  std::vector<float> x(200 * k);
  for (float& v : x) v = normal(rng);
  const WeightFormat formats[] = {WeightFormat::kF32, WeightFormat::kBf16,
                                  WeightFormat::kInt8PerChannel, WeightFormat::kInt8Block32};
  for (int mixed = 0; mixed < 2; ++mixed) {
    for (WeightFormat f : formats) {
      std::vector<MatmulWeight> weights;
      for (int i = 0; i < 3; ++i) {
        // mixed: the last weight in another format, so the call cannot be shared.
        const WeightFormat fi =
            mixed && i == 2 ? (f == WeightFormat::kBf16 ? WeightFormat::kF32 : WeightFormat::kBf16)
                            : f;
        auto weight = PrepareWeight(w[i], ns[i], k, fi, "w");
        ASSERT_TRUE(weight.ok()) << weight.status();
        weights.push_back(*std::move(weight));
      }
      for (KernelIsa isa : {KernelIsa::kPortable, KernelIsa::kAvx512}) {
        SetKernelIsaForTesting(isa);
        for (int threads : {1, 2, 3}) {
          SetKernelThreads(threads);
          for (int64_t m : {1, 2, 3, 4, 5, 17, 200}) {
            std::vector<std::vector<float>> want(3), got(3);
            MatmulOutput outputs[3];
            for (int i = 0; i < 3; ++i) {
              want[i].assign(m * ns[i], -1.0f);
              got[i].assign(m * ns[i], -2.0f);
              MatmulForward(weights[i], x.data(), m, want[i].data());
              outputs[i] = {&weights[i], got[i].data()};
            }
            MatmulForward(x.data(), m, outputs);
            for (int i = 0; i < 3; ++i) {
              ASSERT_EQ(std::memcmp(got[i].data(), want[i].data(), want[i].size() * sizeof(float)),
                        0)
                  << "format " << static_cast<int>(f) << " mixed " << mixed << " isa "
                  << static_cast<int>(isa) << " threads " << threads << " m " << m << " weight "
                  << i;
            }
          }
        }
      }
    }
  }
  SetKernelIsaForTesting(std::nullopt);
  SetKernelThreads(AvailableCpus());
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
