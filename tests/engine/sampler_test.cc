#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <random>
#include <set>
#include <vector>

#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "tests/testing/allocation_counter.h"

namespace kvserve::engine {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

SamplingParams Params(float temperature, int32_t top_k = 0, float top_p = 1.0f,
                      std::optional<uint64_t> seed = std::nullopt) {
  SamplingParams params;
  params.temperature = temperature;
  params.top_k = top_k;
  params.top_p = top_p;
  params.seed = seed;
  return params;
}

// Sample() may scribble on its input; every call gets a fresh copy.
int32_t SampleCopy(Sampler& sampler, const std::vector<float>& logits) {
  std::vector<float> copy = logits;
  return sampler.Sample(absl::MakeSpan(copy));
}

// logits[i] = scale * ln(probs[i]), so softmax(logits / scale) == probs exactly on paper.
std::vector<float> LogitsFromProbs(const std::vector<double>& probs, double scale = 1.0) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(scale * std::log(p)));
  return logits;
}

// Histogram of `num_draws` samples, normalized to frequencies.
std::vector<double> Frequencies(Sampler& sampler, const std::vector<float>& logits, int num_draws) {
  std::vector<double> counts(logits.size(), 0.0);
  for (int i = 0; i < num_draws; ++i) counts[SampleCopy(sampler, logits)] += 1.0;
  for (double& c : counts) c /= num_draws;
  return counts;
}

std::set<int32_t> SampledSet(Sampler& sampler, const std::vector<float>& logits, int num_draws) {
  std::set<int32_t> seen;
  for (int i = 0; i < num_draws; ++i) seen.insert(SampleCopy(sampler, logits));
  return seen;
}

std::vector<float> RandomLogits(std::mt19937_64& rng, size_t vocab, float stddev) {
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> logits(vocab);
  for (float& x : logits) x = normal(rng);
  return logits;
}

// The sampling contract written as plainly as possible: normalized probabilities, a full sort, a
// literal top-p prefix, explicit renormalization. The oracle for the lazily sorted Sampler.
int32_t ReferenceSample(const SamplingParams& params, std::vector<float> logits, double u) {
  const size_t vocab = logits.size();
  for (float& x : logits) {
    if (std::isnan(x)) x = -kInf;
    if (x == kInf) x = std::numeric_limits<float>::max();
  }
  if (params.temperature == 0.0f) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  std::vector<std::pair<double, int32_t>> scaled;  // (scaled logit, id)
  for (size_t i = 0; i < vocab; ++i) {
    if (logits[i] == -kInf) continue;
    scaled.push_back(
        {static_cast<double>(logits[i]) * (1.0 / static_cast<double>(params.temperature)),
         static_cast<int32_t>(i)});
  }
  if (scaled.empty()) return 0;
  std::sort(scaled.begin(), scaled.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < scaled.size()) {
    scaled.resize(params.top_k);
  }
  double sum = 0.0;
  for (const auto& [logit, id] : scaled) sum += std::exp(logit - scaled[0].first);
  std::vector<std::pair<double, int32_t>> probs;  // (probability, id), same order
  for (const auto& [logit, id] : scaled) {
    const double p = std::exp(logit - scaled[0].first) / sum;
    if (p > 0.0) probs.push_back({p, id});
  }
  size_t num_kept = probs.size();
  if (params.top_p < 1.0f) {
    double cumulative = 0.0;
    for (size_t i = 0; i < probs.size(); ++i) {
      cumulative += probs[i].first;
      if (cumulative >= params.top_p - 1e-6) {
        num_kept = i + 1;
        break;
      }
    }
  }
  double kept_mass = 0.0;
  for (size_t i = 0; i < num_kept; ++i) kept_mass += probs[i].first;
  double cumulative = 0.0;
  for (size_t i = 0; i < num_kept; ++i) {
    cumulative += probs[i].first / kept_mass;
    if (cumulative > u) return probs[i].second;
  }
  return probs[num_kept - 1].second;
}

double UniformFromDraw(uint64_t draw) { return static_cast<double>(draw >> 11) * 0x1.0p-53; }

// --- Greedy -------------------------------------------------------------------------------------

TEST(SamplerTest, GreedyPicksArgmax) {
  Sampler sampler(Params(0.0f), /*fallback_seed=*/1);
  EXPECT_EQ(SampleCopy(sampler, {0.1f, 3.0f, -2.0f, 2.9f}), 1);
  EXPECT_EQ(SampleCopy(sampler, {-5.0f, -4.0f, -3.0f}), 2);
  EXPECT_EQ(SampleCopy(sampler, {7.0f}), 0);
}

TEST(SamplerTest, GreedyBreaksTiesTowardLowestId) {
  Sampler sampler(Params(0.0f), 1);
  EXPECT_EQ(SampleCopy(sampler, {1.0f, 5.0f, 5.0f, 5.0f}), 1);
  EXPECT_EQ(SampleCopy(sampler, {2.0f, 2.0f}), 0);
  EXPECT_EQ(SampleCopy(sampler, {0.0f, kInf, 1.0f, kInf}), 1);
}

TEST(SamplerTest, GreedyIgnoresTopKAndTopP) {
  std::mt19937_64 rng(7);
  Sampler plain(Params(0.0f), 1);
  Sampler constrained(Params(0.0f, /*top_k=*/3, /*top_p=*/0.2f, /*seed=*/99), 1);
  for (int step = 0; step < 100; ++step) {
    const std::vector<float> logits = RandomLogits(rng, 50, 2.0f);
    const int32_t argmax =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(SampleCopy(plain, logits), argmax) << "step " << step;
    EXPECT_EQ(SampleCopy(constrained, logits), argmax) << "step " << step;
  }
}

TEST(SamplerTest, GreedyTreatsNanAsNegativeInfinity) {
  Sampler sampler(Params(0.0f), 1);
  EXPECT_EQ(SampleCopy(sampler, {kNaN, -1.0f, kNaN}), 1);
  EXPECT_EQ(SampleCopy(sampler, {-kInf, kNaN, -100.0f}), 2);
}

TEST(SamplerTest, AllNanOrNegativeInfinityReturnsTokenZero) {
  for (float temperature : {0.0f, 1.0f}) {
    Sampler sampler(Params(temperature, 0, 0.9f), 1);
    EXPECT_EQ(SampleCopy(sampler, {kNaN, -kInf, kNaN}), 0) << "temperature " << temperature;
    EXPECT_EQ(SampleCopy(sampler, {-kInf}), 0) << "temperature " << temperature;
  }
}

// --- Invalid input ------------------------------------------------------------------------------

TEST(SamplerTest, NanLogitIsNeverSampled) {
  Sampler sampler(Params(1.0f, 0, 1.0f, 3), 1);
  EXPECT_EQ(SampledSet(sampler, {kNaN, 0.0f, kNaN, 0.0f, -kInf}, 10000), (std::set<int32_t>{1, 3}));
}

TEST(SamplerTest, PositiveInfinityTokensShareAllTheMass) {
  Sampler sampler(Params(0.7f, 0, 1.0f, 3), 1);
  const std::vector<double> freq = Frequencies(sampler, {0.0f, kInf, 80.0f, kInf}, 20000);
  EXPECT_EQ(freq[0], 0.0);
  EXPECT_EQ(freq[2], 0.0);
  EXPECT_NEAR(freq[1], 0.5, 0.02);
  EXPECT_NEAR(freq[3], 0.5, 0.02);
}

TEST(SamplerTest, TinyTemperatureActsLikeGreedyWithoutOverflow) {
  // 1/temperature overflows float; the scaled logits must still order correctly.
  Sampler sampler(Params(std::numeric_limits<float>::denorm_min(), 0, 1.0f, 5), 1);
  EXPECT_EQ(SampledSet(sampler, {1.0f, 1.5f, 1.4999f, -3.0f}, 1000), (std::set<int32_t>{1}));
}

TEST(SamplerTest, UnderflowedProbabilityIsNeverSampled) {
  // exp(-2000) is 0 in double: token 1 is not a real candidate even with top_p = 1.
  Sampler sampler(Params(1.0f, 0, 1.0f, 11), 1);
  EXPECT_EQ(SampledSet(sampler, {0.0f, -2000.0f, 0.0f}, 10000), (std::set<int32_t>{0, 2}));
}

TEST(SamplerDeathTest, RejectsInvalidParams) {
  EXPECT_DEATH(Sampler(Params(-1.0f), 1), "temperature");
  EXPECT_DEATH(Sampler(Params(kNaN), 1), "temperature");
  EXPECT_DEATH(Sampler(Params(kInf), 1), "temperature");
  EXPECT_DEATH(Sampler(Params(1.0f, -1), 1), "top_k");
  EXPECT_DEATH(Sampler(Params(1.0f, 0, 0.0f), 1), "top_p");
  EXPECT_DEATH(Sampler(Params(1.0f, 0, 1.5f), 1), "top_p");
  EXPECT_DEATH(Sampler(Params(1.0f, 0, kNaN), 1), "top_p");
}

TEST(SamplerDeathTest, RejectsEmptyLogits) {
  Sampler sampler(Params(1.0f), 1);
  EXPECT_DEATH(sampler.Sample(absl::Span<float>()), "empty logits");
}

// --- Seeding and reproducibility ----------------------------------------------------------------

std::vector<int32_t> SampleSequence(const SamplingParams& params, uint64_t fallback_seed,
                                    uint64_t logits_seed, int num_samples) {
  std::mt19937_64 logits_rng(logits_seed);
  Sampler sampler(params, fallback_seed);
  std::vector<int32_t> tokens;
  for (int i = 0; i < num_samples; ++i) {
    tokens.push_back(SampleCopy(sampler, RandomLogits(logits_rng, 64 + i % 7, 1.5f)));
  }
  return tokens;
}

TEST(SamplerTest, SameSeedGivesIdenticalSequence) {
  for (const SamplingParams& params :
       {Params(1.0f, 0, 1.0f, 42), Params(0.8f, 10, 0.9f, 42), Params(1.3f, 0, 0.5f, 42)}) {
    const std::vector<int32_t> first = SampleSequence(params, 1, /*logits_seed=*/5, 200);
    const std::vector<int32_t> second = SampleSequence(params, 2, /*logits_seed=*/5, 200);
    EXPECT_EQ(first, second);
    // Not trivially constant: the logits vary, so should the tokens.
    EXPECT_GT(std::set<int32_t>(first.begin(), first.end()).size(), 10u);
  }
}

TEST(SamplerTest, DifferentSeedsGiveDifferentSequences) {
  const std::vector<int32_t> a = SampleSequence(Params(1.0f, 0, 1.0f, 1), 0, 5, 200);
  const std::vector<int32_t> b = SampleSequence(Params(1.0f, 0, 1.0f, 2), 0, 5, 200);
  EXPECT_NE(a, b);
  int num_equal = 0;
  for (size_t i = 0; i < a.size(); ++i) num_equal += a[i] == b[i];
  EXPECT_LT(num_equal, 50);  // ~200/64 expected by chance
}

TEST(SamplerTest, UsesFallbackSeedOnlyWhenSeedIsUnset) {
  EXPECT_EQ(SampleSequence(Params(1.0f), /*fallback_seed=*/7, 5, 200),
            SampleSequence(Params(1.0f, 0, 1.0f, /*seed=*/7), /*fallback_seed=*/8, 5, 200));
  EXPECT_NE(SampleSequence(Params(1.0f), 7, 5, 200), SampleSequence(Params(1.0f), 8, 5, 200));
}

// With 1024 equal logits every probability is exactly 2^-10 and the sorted order is the id order,
// so token = floor(u * 1024) = top 10 bits of the raw 64-bit draw. Pins the RNG, its seeding, the
// bits-to-double conversion and "exactly one draw per call" against std::mt19937_64 directly.
TEST(SamplerTest, UniformLogitsMapDrawsToTokensExactly) {
  const std::vector<float> uniform(1024, 0.25f);
  const std::vector<float> nothing(8, kNaN);
  Sampler sampler(Params(1.0f, 0, 1.0f, 2024), 1);
  std::mt19937_64 reference(2024);
  for (int i = 0; i < 1000; ++i) {
    if (i % 10 == 9) {
      // A call with nothing to sample still consumes its draw.
      EXPECT_EQ(SampleCopy(sampler, nothing), 0);
      reference();
      continue;
    }
    EXPECT_EQ(SampleCopy(sampler, uniform), static_cast<int32_t>(reference() >> 54)) << "i=" << i;
  }
}

TEST(SamplerTest, MatchesReferenceImplementation) {
  // Exercises the lazily sorted path (vocab far above its 64-candidate first chunk) against the
  // full-sort oracle over peaked and flat distributions, with NaN and +inf sprinkled in.
  constexpr uint64_t kSeed = 20240601;
  std::mt19937_64 rng(kSeed);
  int num_checked = 0;
  for (size_t vocab : {size_t{3}, size_t{100}, size_t{5000}}) {
    for (float stddev : {0.3f, 3.0f, 12.0f}) {
      for (float temperature : {0.0f, 0.4f, 1.0f, 2.5f}) {
        for (int32_t top_k : {0, 1, 7, 70, 4000, 6000}) {
          for (float top_p : {1.0f, 0.97f, 0.6f, 0.05f}) {
            const SamplingParams params = Params(temperature, top_k, top_p, rng());
            Sampler sampler(params, 0);
            std::mt19937_64 draws(*params.seed);
            for (int step = 0; step < 3; ++step) {
              std::vector<float> logits = RandomLogits(rng, vocab, stddev);
              if (step == 1) logits[rng() % vocab] = kNaN;
              if (step == 2 && vocab > 3) logits[rng() % vocab] = -kInf;
              const double u = temperature == 0.0f ? 0.0 : UniformFromDraw(draws());
              ASSERT_EQ(SampleCopy(sampler, logits), ReferenceSample(params, logits, u))
                  << "seed " << kSeed << " vocab " << vocab << " stddev " << stddev
                  << " temperature " << temperature << " top_k " << top_k << " top_p " << top_p
                  << " step " << step;
              ++num_checked;
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(num_checked, 3 * 3 * 4 * 6 * 4 * 3);
}

// --- top-k --------------------------------------------------------------------------------------

TEST(SamplerTest, TopKOneIsGreedyForAnySeed) {
  std::mt19937_64 rng(3);
  for (uint64_t seed = 0; seed < 50; ++seed) {
    Sampler top1(Params(1.7f, 1, 1.0f, seed), 0);
    Sampler greedy(Params(0.0f), 0);
    for (int step = 0; step < 20; ++step) {
      const std::vector<float> logits = RandomLogits(rng, 40, 1.0f);
      EXPECT_EQ(SampleCopy(top1, logits), SampleCopy(greedy, logits))
          << "seed " << seed << " step " << step;
    }
  }
}

TEST(SamplerTest, NeverSamplesOutsideTopK) {
  // Top 3 by logit are ids 7, 2, 5; the others carry most of the softmax mass together.
  const std::vector<float> logits = {1.0f, 1.1f, 2.0f, 0.9f, 1.2f, 1.9f, 0.5f, 2.1f, 1.3f, 1.4f};
  Sampler sampler(Params(1.0f, 3, 1.0f, 17), 0);
  EXPECT_EQ(SampledSet(sampler, logits, 10000), (std::set<int32_t>{2, 5, 7}));
}

TEST(SamplerTest, TopKTiesAtTheCutKeepLowerIds) {
  Sampler sampler(Params(1.0f, 2, 1.0f, 17), 0);
  EXPECT_EQ(SampledSet(sampler, {1.0f, 2.0f, 2.0f, 2.0f, 0.0f}, 10000), (std::set<int32_t>{1, 2}));
}

TEST(SamplerTest, TopKAtLeastVocabKeepsEveryToken) {
  for (int32_t top_k : {4, 5, 1000}) {
    Sampler sampler(Params(1.0f, top_k, 1.0f, 17), 0);
    EXPECT_EQ(SampledSet(sampler, {0.0f, 0.5f, 1.0f, 0.2f}, 10000), (std::set<int32_t>{0, 1, 2, 3}))
        << "top_k " << top_k;
  }
}

TEST(SamplerTest, TopKRenormalizesOverKeptTokens) {
  // Kept: probabilities 0.4 and 0.3 of the full softmax -> 4/7 and 3/7.
  const std::vector<float> logits = LogitsFromProbs({0.2, 0.4, 0.1, 0.3});
  Sampler sampler(Params(1.0f, 2, 1.0f, 23), 0);
  const std::vector<double> freq = Frequencies(sampler, logits, 100000);
  EXPECT_EQ(freq[0], 0.0);
  EXPECT_EQ(freq[2], 0.0);
  EXPECT_NEAR(freq[1], 4.0 / 7.0, 0.006);
  EXPECT_NEAR(freq[3], 3.0 / 7.0, 0.006);
}

// --- top-p --------------------------------------------------------------------------------------

// Probabilities 0.5, 0.3, 0.15, 0.05 placed at ids 1, 3, 0, 2 so the sort is exercised.
const std::vector<float>& ShuffledNucleusLogits() {
  static const std::vector<float> logits = LogitsFromProbs({0.15, 0.5, 0.05, 0.3});
  return logits;
}

TEST(SamplerTest, TopPKeepsShortestPrefixReachingTopP) {
  const struct {
    float top_p;
    std::set<int32_t> kept;
  } cases[] = {
      {0.3f, {1}},            // 0.5 >= 0.3
      {0.5f, {1}},            // 0.5 reaches 0.5 exactly
      {0.51f, {1, 3}},        //
      {0.79f, {1, 3}},        //
      {0.8f, {1, 3}},         // 0.5 + 0.3 reaches 0.8 exactly
      {0.81f, {1, 3, 0}},     //
      {0.95f, {1, 3, 0}},     // 0.95 exactly
      {0.96f, {1, 3, 0, 2}},  //
      {1.0f, {1, 3, 0, 2}},   //
  };
  for (const auto& c : cases) {
    Sampler sampler(Params(1.0f, 0, c.top_p, 31), 0);
    EXPECT_EQ(SampledSet(sampler, ShuffledNucleusLogits(), 10000), c.kept) << "top_p " << c.top_p;
  }
}

TEST(SamplerTest, TopPRenormalizesOverKeptTokens) {
  Sampler sampler(Params(1.0f, 0, 0.8f, 37), 0);
  const std::vector<double> freq = Frequencies(sampler, ShuffledNucleusLogits(), 100000);
  EXPECT_NEAR(freq[1], 0.5 / 0.8, 0.006);
  EXPECT_NEAR(freq[3], 0.3 / 0.8, 0.006);
  EXPECT_EQ(freq[0], 0.0);
  EXPECT_EQ(freq[2], 0.0);
}

TEST(SamplerTest, TopPTiesPreferLowerIds) {
  Sampler sampler(Params(1.0f, 0, 0.5f, 41), 0);
  EXPECT_EQ(SampledSet(sampler, {3.0f, 3.0f, 3.0f, 3.0f}, 10000), (std::set<int32_t>{0, 1}));
}

TEST(SamplerTest, TopPAppliesToTheTopKRenormalizedDistribution) {
  // On the full distribution top_p = 0.82 needs 0.5 + 0.3 + 0.15. After top_k = 3 the survivors
  // renormalize to 0.526, 0.316, 0.158, and 0.526 + 0.316 = 0.842 already reaches 0.82.
  Sampler full(Params(1.0f, 0, 0.82f, 43), 0);
  EXPECT_EQ(SampledSet(full, ShuffledNucleusLogits(), 10000), (std::set<int32_t>{0, 1, 3}));
  Sampler after_top_k(Params(1.0f, 3, 0.82f, 43), 0);
  EXPECT_EQ(SampledSet(after_top_k, ShuffledNucleusLogits(), 10000), (std::set<int32_t>{1, 3}));
}

TEST(SamplerTest, TinyTopPKeepsOnlyTheMostLikelyToken) {
  Sampler sampler(Params(1.0f, 0, std::numeric_limits<float>::min(), 47), 0);
  EXPECT_EQ(SampledSet(sampler, ShuffledNucleusLogits(), 1000), (std::set<int32_t>{1}));
}

// --- Distribution -------------------------------------------------------------------------------

// 100k seeded draws: each frequency has standard deviation <= sqrt(0.25 / 1e5) = 0.0016, so the
// 0.006 tolerance is ~4 sigma. The seed is fixed, so the outcome is deterministic either way.
constexpr int kNumDraws = 100000;
constexpr double kFrequencyTolerance = 0.006;

TEST(SamplerTest, FrequenciesMatchSoftmax) {
  Sampler sampler(Params(1.0f, 0, 1.0f, 53), 0);
  const std::vector<double> freq =
      Frequencies(sampler, LogitsFromProbs({0.1, 0.4, 0.2, 0.3}), kNumDraws);
  EXPECT_NEAR(freq[0], 0.1, kFrequencyTolerance);
  EXPECT_NEAR(freq[1], 0.4, kFrequencyTolerance);
  EXPECT_NEAR(freq[2], 0.2, kFrequencyTolerance);
  EXPECT_NEAR(freq[3], 0.3, kFrequencyTolerance);
}

TEST(SamplerTest, TemperatureScalesLogitsBeforeSoftmax) {
  // logits = 2 ln p for p = {0.4, 0.3, 0.2, 0.1}. Hand-computed softmax(logits / T):
  //   T = 2:   p                     = {0.4, 0.3, 0.2, 0.1}
  //   T = 1:   p^2 / sum p^2 = {16, 9, 4, 1} / 30
  //   T = 0.5: p^4 / sum p^4 = {256, 81, 16, 1} / 354
  const std::vector<float> logits = LogitsFromProbs({0.4, 0.3, 0.2, 0.1}, /*scale=*/2.0);
  const struct {
    float temperature;
    std::vector<double> expected;
  } cases[] = {
      {2.0f, {0.4, 0.3, 0.2, 0.1}},
      {1.0f, {16.0 / 30, 9.0 / 30, 4.0 / 30, 1.0 / 30}},
      {0.5f, {256.0 / 354, 81.0 / 354, 16.0 / 354, 1.0 / 354}},
  };
  for (const auto& c : cases) {
    Sampler sampler(Params(c.temperature, 0, 1.0f, 59), 0);
    const std::vector<double> freq = Frequencies(sampler, logits, kNumDraws);
    for (size_t i = 0; i < freq.size(); ++i) {
      EXPECT_NEAR(freq[i], c.expected[i], kFrequencyTolerance)
          << "temperature " << c.temperature << " token " << i;
    }
  }
}

// --- Memory -------------------------------------------------------------------------------------

TEST(SamplerTest, DoesNotAllocateAfterFirstCallForAVocabSize) {
  std::mt19937_64 rng(61);
  std::vector<std::vector<float>> inputs;
  for (int i = 0; i < 20; ++i) inputs.push_back(RandomLogits(rng, 4096, 4.0f));
  inputs[3][17] = kNaN;
  std::vector<float> scratch(4096);
  for (const SamplingParams& params : {Params(0.0f), Params(1.0f), Params(0.7f, 40, 0.9f),
                                       Params(1.2f, 0, 0.95f), Params(1.0f, 3000, 1.0f)}) {
    Sampler sampler(params, 5);
    scratch = inputs[0];
    sampler.Sample(absl::MakeSpan(scratch));  // warm-up sizes the scratch buffers
    const size_t before = kvserve::testing::NumAllocations();
    for (const std::vector<float>& logits : inputs) {
      std::copy(logits.begin(), logits.end(), scratch.begin());
      sampler.Sample(absl::MakeSpan(scratch));
    }
    // Smaller vocabularies reuse the same buffers.
    sampler.Sample(absl::MakeSpan(scratch).subspan(0, 100));
    EXPECT_EQ(kvserve::testing::NumAllocations(), before)
        << "top_k " << params.top_k << " top_p " << params.top_p;
  }
}

}  // namespace
}  // namespace kvserve::engine
