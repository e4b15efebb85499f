#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <new>
#include <numeric>
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

int32_t SampleFrom(Sampler& sampler, const std::vector<float>& logits) {
  return sampler.Sample(logits);
}

SamplingParams WithMinP(SamplingParams params, float min_p) {
  params.min_p = min_p;
  return params;
}

SamplingParams WithNormalizer(SamplingParams params, Normalizer normalizer) {
  params.normalizer = normalizer;
  return params;
}

SamplingParams WithPenalties(SamplingParams params, float repetition, float presence,
                             float frequency) {
  params.repetition_penalty = repetition;
  params.presence_penalty = presence;
  params.frequency_penalty = frequency;
  return params;
}

constexpr Normalizer kAllNormalizers[] = {Normalizer::kSoftmax, Normalizer::kSparsemax,
                                          Normalizer::kEntmax15};

// logits[i] = scale * ln(probs[i]), so softmax(logits / scale) == probs exactly on paper.
std::vector<float> LogitsFromProbs(const std::vector<double>& probs, double scale = 1.0) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(scale * std::log(p)));
  return logits;
}

// Histogram of `num_draws` samples, normalized to frequencies.
std::vector<double> Frequencies(Sampler& sampler, const std::vector<float>& logits, int num_draws) {
  std::vector<double> counts(logits.size(), 0.0);
  for (int i = 0; i < num_draws; ++i) counts[SampleFrom(sampler, logits)] += 1.0;
  for (double& c : counts) c /= num_draws;
  return counts;
}

std::set<int32_t> SampledSet(Sampler& sampler, const std::vector<float>& logits, int num_draws) {
  std::set<int32_t> seen;
  for (int i = 0; i < num_draws; ++i) seen.insert(SampleFrom(sampler, logits));
  return seen;
}

std::vector<float> RandomLogits(std::mt19937_64& rng, size_t vocab, float stddev) {
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> logits(vocab);
  for (float& x : logits) x = normal(rng);
  return logits;
}

// Entmax-alpha by bisection on the threshold, no sorting (alpha = 2: sparsemax, alpha = 1.5:
// entmax-1.5): p_i = max(beta z_i - tau, 0)^(1/beta) with beta = alpha - 1, normalized. An oracle
// independent of engine/sampling/normalizers.h's sort-based thresholds.
std::vector<double> EntmaxBisect(const std::vector<double>& z, double alpha) {
  const double beta = alpha - 1.0;
  const auto value = [beta](double d) {
    if (d <= 0.0) return 0.0;
    return beta == 1.0 ? d : beta == 0.5 ? d * d : std::pow(d, 1.0 / beta);
  };
  double max_scaled = -std::numeric_limits<double>::infinity();
  for (double v : z) max_scaled = std::max(max_scaled, beta * v);
  const auto mass = [&](double tau) {
    double sum = 0.0;
    for (double v : z) sum += value(beta * v - tau);
    return sum;
  };
  double lo = max_scaled - 1.0;                                                  // mass >= 1
  double hi = max_scaled - std::pow(1.0 / static_cast<double>(z.size()), beta);  // mass <= 1
  for (int i = 0; i < 2000; ++i) {
    const double mid = lo + (hi - lo) / 2.0;
    if (mid <= lo || mid >= hi) break;
    (mass(mid) >= 1.0 ? lo : hi) = mid;
  }
  std::vector<double> p;
  for (double v : z) p.push_back(value(beta * v - lo));
  const double sum = mass(lo);
  for (double& v : p) v /= sum;
  return p;
}

// What the Sampler under test has seen: the prompt and its own output so far.
struct History {
  std::set<int32_t> prompt;
  std::map<int32_t, int> output_counts;
};

// The sampling contract written as plainly as possible: penalties on a full copy, normalized
// probabilities, a full sort, literal min-p / top-p filters, explicit renormalization. The oracle
// for the lazily sorted Sampler.
int32_t ReferenceSample(const SamplingParams& params, const std::vector<float>& raw_logits,
                        double u, const History& history = {}) {
  const size_t vocab = raw_logits.size();
  std::vector<double> logits;
  for (size_t i = 0; i < vocab; ++i) {
    float x = raw_logits[i];
    if (std::isnan(x)) x = -kInf;
    if (x == kInf) x = std::numeric_limits<float>::max();
    double logit = x;
    const auto it = history.output_counts.find(static_cast<int32_t>(i));
    const int count = it == history.output_counts.end() ? 0 : it->second;
    if (params.repetition_penalty != 1.0f &&
        (count > 0 || history.prompt.count(static_cast<int32_t>(i)) > 0)) {
      logit = logit > 0 ? logit / params.repetition_penalty : logit * params.repetition_penalty;
    }
    if (count > 0) {
      logit -= count * static_cast<double>(params.frequency_penalty);
      logit -= static_cast<double>(params.presence_penalty);
    }
    logits.push_back(logit);
  }
  if (params.temperature == 0.0f) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  std::vector<std::pair<double, int32_t>> scaled;  // (scaled logit, id)
  for (size_t i = 0; i < vocab; ++i) {
    if (logits[i] == -kInf) continue;
    scaled.push_back(
        {logits[i] * (1.0 / static_cast<double>(params.temperature)), static_cast<int32_t>(i)});
  }
  if (scaled.empty()) return 0;
  std::sort(scaled.begin(), scaled.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < scaled.size()) {
    scaled.resize(params.top_k);
  }
  std::vector<double> normalized;  // same order as `scaled`
  if (params.normalizer == Normalizer::kSoftmax) {
    double sum = 0.0;
    for (const auto& [logit, id] : scaled) sum += std::exp(logit - scaled[0].first);
    for (const auto& [logit, id] : scaled) {
      normalized.push_back(std::exp(logit - scaled[0].first) / sum);
    }
  } else {
    std::vector<double> z;
    for (const auto& [logit, id] : scaled) z.push_back(logit - scaled[0].first);
    normalized = EntmaxBisect(z, params.normalizer == Normalizer::kSparsemax ? 2.0 : 1.5);
  }
  std::vector<std::pair<double, int32_t>> probs;  // (probability, id), same order
  for (size_t i = 0; i < scaled.size(); ++i) {
    const double p = normalized[i];
    if (p > 0.0 && p >= (static_cast<double>(params.min_p) - 1e-6) * normalized[0]) {
      probs.push_back({p, scaled[i].second});
    }
  }
  double min_p_mass = 0.0;
  for (const auto& [p, id] : probs) min_p_mass += p;
  for (auto& [p, id] : probs) p /= min_p_mass;
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
  Sampler sampler(Params(0.0f), /*fallback_seed=*/1, {});
  EXPECT_EQ(SampleFrom(sampler, {0.1f, 3.0f, -2.0f, 2.9f}), 1);
  EXPECT_EQ(SampleFrom(sampler, {-5.0f, -4.0f, -3.0f}), 2);
  EXPECT_EQ(SampleFrom(sampler, {7.0f}), 0);
}

TEST(SamplerTest, GreedyBreaksTiesTowardLowestId) {
  Sampler sampler(Params(0.0f), 1, {});
  EXPECT_EQ(SampleFrom(sampler, {1.0f, 5.0f, 5.0f, 5.0f}), 1);
  EXPECT_EQ(SampleFrom(sampler, {2.0f, 2.0f}), 0);
  EXPECT_EQ(SampleFrom(sampler, {0.0f, kInf, 1.0f, kInf}), 1);
}

TEST(SamplerTest, GreedyIgnoresTopKAndTopP) {
  std::mt19937_64 rng(7);
  Sampler plain(Params(0.0f), 1, {});
  Sampler constrained(Params(0.0f, /*top_k=*/3, /*top_p=*/0.2f, /*seed=*/99), 1, {});
  for (int step = 0; step < 100; ++step) {
    const std::vector<float> logits = RandomLogits(rng, 50, 2.0f);
    const int32_t argmax =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(SampleFrom(plain, logits), argmax) << "step " << step;
    EXPECT_EQ(SampleFrom(constrained, logits), argmax) << "step " << step;
  }
}

TEST(SamplerTest, GreedyTreatsNanAsNegativeInfinity) {
  Sampler sampler(Params(0.0f), 1, {});
  EXPECT_EQ(SampleFrom(sampler, {kNaN, -1.0f, kNaN}), 1);
  EXPECT_EQ(SampleFrom(sampler, {-kInf, kNaN, -100.0f}), 2);
}

TEST(SamplerTest, AllNanOrNegativeInfinityReturnsTokenZero) {
  for (Normalizer normalizer : kAllNormalizers) {
    for (float temperature : {0.0f, 1.0f}) {
      const SamplingParams params = WithPenalties(
          WithMinP(WithNormalizer(Params(temperature, 0, 0.9f), normalizer), 0.1f), 1.5f, 1, 1);
      Sampler sampler(params, 1, std::vector<int32_t>{0, 1, 2});
      EXPECT_EQ(SampleFrom(sampler, {kNaN, -kInf, kNaN}), 0) << "temperature " << temperature;
      EXPECT_EQ(SampleFrom(sampler, {-kInf}), 0) << "temperature " << temperature;
    }
  }
}

// --- Invalid input ------------------------------------------------------------------------------

TEST(SamplerTest, NanLogitIsNeverSampled) {
  Sampler sampler(Params(1.0f, 0, 1.0f, 3), 1, {});
  EXPECT_EQ(SampledSet(sampler, {kNaN, 0.0f, kNaN, 0.0f, -kInf}, 10000), (std::set<int32_t>{1, 3}));
}

TEST(SamplerTest, PositiveInfinityTokensShareAllTheMass) {
  Sampler sampler(Params(0.7f, 0, 1.0f, 3), 1, {});
  const std::vector<double> freq = Frequencies(sampler, {0.0f, kInf, 80.0f, kInf}, 20000);
  EXPECT_EQ(freq[0], 0.0);
  EXPECT_EQ(freq[2], 0.0);
  EXPECT_NEAR(freq[1], 0.5, 0.02);
  EXPECT_NEAR(freq[3], 0.5, 0.02);
}

TEST(SamplerTest, TinyTemperatureActsLikeGreedyWithoutOverflow) {
  // 1/temperature overflows float; the scaled logits must still order correctly.
  Sampler sampler(Params(std::numeric_limits<float>::denorm_min(), 0, 1.0f, 5), 1, {});
  EXPECT_EQ(SampledSet(sampler, {1.0f, 1.5f, 1.4999f, -3.0f}, 1000), (std::set<int32_t>{1}));
}

TEST(SamplerTest, UnderflowedProbabilityIsNeverSampled) {
  // exp(-2000) is 0 in double: token 1 is not a real candidate even with top_p = 1.
  Sampler sampler(Params(1.0f, 0, 1.0f, 11), 1, {});
  EXPECT_EQ(SampledSet(sampler, {0.0f, -2000.0f, 0.0f}, 10000), (std::set<int32_t>{0, 2}));
}

TEST(SamplerDeathTest, RejectsInvalidParams) {
  EXPECT_DEATH(Sampler(Params(-1.0f), 1, {}), "temperature");
  EXPECT_DEATH(Sampler(Params(kNaN), 1, {}), "temperature");
  EXPECT_DEATH(Sampler(Params(kInf), 1, {}), "temperature");
  EXPECT_DEATH(Sampler(Params(1.0f, -1), 1, {}), "top_k");
  EXPECT_DEATH(Sampler(Params(1.0f, 0, 0.0f), 1, {}), "top_p");
  EXPECT_DEATH(Sampler(Params(1.0f, 0, 1.5f), 1, {}), "top_p");
  EXPECT_DEATH(Sampler(Params(1.0f, 0, kNaN), 1, {}), "top_p");
  EXPECT_DEATH(Sampler(WithMinP(Params(1.0f), -0.1f), 1, {}), "min_p");
  EXPECT_DEATH(Sampler(WithMinP(Params(1.0f), 1.5f), 1, {}), "min_p");
  EXPECT_DEATH(Sampler(WithMinP(Params(1.0f), kNaN), 1, {}), "min_p");
  EXPECT_DEATH(Sampler(WithPenalties(Params(1.0f), 0.0f, 0, 0), 1, {}), "repetition_penalty");
  EXPECT_DEATH(Sampler(WithPenalties(Params(1.0f), -1.0f, 0, 0), 1, {}), "repetition_penalty");
  EXPECT_DEATH(Sampler(WithPenalties(Params(1.0f), kInf, 0, 0), 1, {}), "repetition_penalty");
  EXPECT_DEATH(Sampler(WithPenalties(Params(1.0f), kNaN, 0, 0), 1, {}), "repetition_penalty");
  EXPECT_DEATH(Sampler(WithPenalties(Params(1.0f), 1, 2.5f, 0), 1, {}), "presence_penalty");
  EXPECT_DEATH(Sampler(WithPenalties(Params(1.0f), 1, kNaN, 0), 1, {}), "presence_penalty");
  EXPECT_DEATH(Sampler(WithPenalties(Params(1.0f), 1, 0, -3.0f), 1, {}), "frequency_penalty");
  EXPECT_DEATH(Sampler(WithPenalties(Params(1.0f), 1, 0, kNaN), 1, {}), "frequency_penalty");
  EXPECT_DEATH(Sampler(WithNormalizer(Params(1.0f), static_cast<Normalizer>(7)), 1, {}),
               "normalizer");
}

TEST(SamplerDeathTest, RejectsEmptyLogits) {
  Sampler sampler(Params(1.0f), 1, {});
  EXPECT_DEATH(sampler.Sample(absl::Span<const float>()), "empty logits");
}

// --- Seeding and reproducibility ----------------------------------------------------------------

std::vector<int32_t> SampleSequence(const SamplingParams& params, uint64_t fallback_seed,
                                    uint64_t logits_seed, int num_samples,
                                    absl::Span<const int32_t> prompt = {}) {
  std::mt19937_64 logits_rng(logits_seed);
  Sampler sampler(params, fallback_seed, prompt);
  std::vector<int32_t> tokens;
  for (int i = 0; i < num_samples; ++i) {
    tokens.push_back(SampleFrom(sampler, RandomLogits(logits_rng, 64 + i % 7, 1.5f)));
  }
  return tokens;
}

TEST(SamplerTest, SameSeedGivesIdenticalSequence) {
  const std::vector<int32_t> prompt = {3, 9, 27, 3, 40};
  for (const SamplingParams& params :
       {Params(1.0f, 0, 1.0f, 42), Params(0.8f, 10, 0.9f, 42), Params(1.3f, 0, 0.5f, 42),
        WithNormalizer(Params(1.0f, 0, 1.0f, 42), Normalizer::kSparsemax),
        WithMinP(WithNormalizer(Params(1.5f, 20, 0.95f, 42), Normalizer::kEntmax15), 0.05f),
        WithPenalties(WithMinP(Params(1.0f, 0, 0.9f, 42), 0.1f), 1.3f, 0.5f, 0.4f)}) {
    const std::vector<int32_t> first = SampleSequence(params, 1, /*logits_seed=*/5, 200, prompt);
    const std::vector<int32_t> second = SampleSequence(params, 2, /*logits_seed=*/5, 200, prompt);
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
// The same holds for sparsemax (p = 0.25 - (0.25 * 1024 - 1) / 1024 = 2^-10) and entmax-1.5
// (lambda = 0.125 - sqrt(1/1024), p = (2^-5)^2 = 2^-10): every step is exact in binary.
TEST(SamplerTest, UniformLogitsMapDrawsToTokensExactly) {
  const std::vector<float> uniform(1024, 0.25f);
  const std::vector<float> nothing(8, kNaN);
  for (Normalizer normalizer : kAllNormalizers) {
    Sampler sampler(WithNormalizer(Params(1.0f, 0, 1.0f, 2024), normalizer), 1, {});
    std::mt19937_64 reference(2024);
    for (int i = 0; i < 1000; ++i) {
      if (i % 10 == 9) {
        // A call with nothing to sample still consumes its draw.
        EXPECT_EQ(SampleFrom(sampler, nothing), 0);
        reference();
        continue;
      }
      ASSERT_EQ(SampleFrom(sampler, uniform), static_cast<int32_t>(reference() >> 54))
          << "i=" << i << " normalizer " << static_cast<int>(normalizer);
    }
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
            Sampler sampler(params, 0, {});
            std::mt19937_64 draws(*params.seed);
            for (int step = 0; step < 3; ++step) {
              std::vector<float> logits = RandomLogits(rng, vocab, stddev);
              if (step == 1) logits[rng() % vocab] = kNaN;
              if (step == 2 && vocab > 3) logits[rng() % vocab] = -kInf;
              const double u = temperature == 0.0f ? 0.0 : UniformFromDraw(draws());
              ASSERT_EQ(SampleFrom(sampler, logits), ReferenceSample(params, logits, u))
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

TEST(SamplerTest, MatchesReferenceWithPenaltiesNormalizersAndMinP) {
  // Every stage at once against the oracle, which recomputes penalties from an explicit history and
  // the sparse normalizers by bisection. Several steps per Sampler, so the history matters.
  constexpr uint64_t kSeed = 20250214;
  std::mt19937_64 rng(kSeed);
  struct Penalties {
    float repetition, presence, frequency;
  };
  int num_checked = 0;
  for (size_t vocab : {size_t{3}, size_t{100}, size_t{1000}}) {
    for (float stddev : {0.3f, 3.0f}) {
      for (float temperature : {0.0f, 0.6f, 1.3f}) {
        for (int32_t top_k : {0, 2, 70}) {
          for (float top_p : {1.0f, 0.7f}) {
            for (float min_p : {0.0f, 0.02f, 0.4f}) {
              for (Normalizer normalizer : kAllNormalizers) {
                for (const Penalties& penalties :
                     {Penalties{1.0f, 0.0f, 0.0f}, Penalties{1.3f, 0.0f, 0.0f},
                      Penalties{1.0f, 0.5f, 0.7f}, Penalties{0.8f, -0.4f, -0.3f}}) {
                  const SamplingParams params = WithPenalties(
                      WithNormalizer(WithMinP(Params(temperature, top_k, top_p, rng()), min_p),
                                     normalizer),
                      penalties.repetition, penalties.presence, penalties.frequency);
                  History history;
                  std::vector<int32_t> prompt;
                  for (int i = 0; i < 5; ++i) {
                    prompt.push_back(static_cast<int32_t>(rng() % vocab));
                    history.prompt.insert(prompt.back());
                  }
                  Sampler sampler(params, 0, prompt);
                  std::mt19937_64 draws(*params.seed);
                  for (int step = 0; step < 4; ++step) {
                    std::vector<float> logits = RandomLogits(rng, vocab, stddev);
                    if (step == 1) logits[rng() % vocab] = kNaN;
                    if (step == 2 && vocab > 3) logits[rng() % vocab] = -kInf;
                    const double u = temperature == 0.0f ? 0.0 : UniformFromDraw(draws());
                    const int32_t token = SampleFrom(sampler, logits);
                    ASSERT_EQ(token, ReferenceSample(params, logits, u, history))
                        << "seed " << kSeed << " vocab " << vocab << " stddev " << stddev
                        << " temperature " << temperature << " top_k " << top_k << " top_p "
                        << top_p << " min_p " << min_p << " normalizer "
                        << static_cast<int>(normalizer) << " repetition " << penalties.repetition
                        << " step " << step;
                    ++history.output_counts[token];
                    ++num_checked;
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(num_checked, 3 * 2 * 3 * 3 * 2 * 3 * 3 * 4 * 4);
}

// --- top-k --------------------------------------------------------------------------------------

TEST(SamplerTest, TopKOneIsGreedyForAnySeed) {
  std::mt19937_64 rng(3);
  for (uint64_t seed = 0; seed < 50; ++seed) {
    Sampler top1(Params(1.7f, 1, 1.0f, seed), 0, {});
    Sampler greedy(Params(0.0f), 0, {});
    for (int step = 0; step < 20; ++step) {
      const std::vector<float> logits = RandomLogits(rng, 40, 1.0f);
      EXPECT_EQ(SampleFrom(top1, logits), SampleFrom(greedy, logits))
          << "seed " << seed << " step " << step;
    }
  }
}

TEST(SamplerTest, NeverSamplesOutsideTopK) {
  // Top 3 by logit are ids 7, 2, 5; the others carry most of the softmax mass together.
  const std::vector<float> logits = {1.0f, 1.1f, 2.0f, 0.9f, 1.2f, 1.9f, 0.5f, 2.1f, 1.3f, 1.4f};
  Sampler sampler(Params(1.0f, 3, 1.0f, 17), 0, {});
  EXPECT_EQ(SampledSet(sampler, logits, 10000), (std::set<int32_t>{2, 5, 7}));
}

TEST(SamplerTest, TopKTiesAtTheCutKeepLowerIds) {
  Sampler sampler(Params(1.0f, 2, 1.0f, 17), 0, {});
  EXPECT_EQ(SampledSet(sampler, {1.0f, 2.0f, 2.0f, 2.0f, 0.0f}, 10000), (std::set<int32_t>{1, 2}));
}

TEST(SamplerTest, TopKAtLeastVocabKeepsEveryToken) {
  for (int32_t top_k : {4, 5, 1000}) {
    Sampler sampler(Params(1.0f, top_k, 1.0f, 17), 0, {});
    EXPECT_EQ(SampledSet(sampler, {0.0f, 0.5f, 1.0f, 0.2f}, 10000), (std::set<int32_t>{0, 1, 2, 3}))
        << "top_k " << top_k;
  }
}

TEST(SamplerTest, TopKRenormalizesOverKeptTokens) {
  // Kept: probabilities 0.4 and 0.3 of the full softmax -> 4/7 and 3/7.
  const std::vector<float> logits = LogitsFromProbs({0.2, 0.4, 0.1, 0.3});
  Sampler sampler(Params(1.0f, 2, 1.0f, 23), 0, {});
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
    Sampler sampler(Params(1.0f, 0, c.top_p, 31), 0, {});
    EXPECT_EQ(SampledSet(sampler, ShuffledNucleusLogits(), 10000), c.kept) << "top_p " << c.top_p;
  }
}

TEST(SamplerTest, TopPRenormalizesOverKeptTokens) {
  Sampler sampler(Params(1.0f, 0, 0.8f, 37), 0, {});
  const std::vector<double> freq = Frequencies(sampler, ShuffledNucleusLogits(), 100000);
  EXPECT_NEAR(freq[1], 0.5 / 0.8, 0.006);
  EXPECT_NEAR(freq[3], 0.3 / 0.8, 0.006);
  EXPECT_EQ(freq[0], 0.0);
  EXPECT_EQ(freq[2], 0.0);
}

TEST(SamplerTest, TopPTiesPreferLowerIds) {
  Sampler sampler(Params(1.0f, 0, 0.5f, 41), 0, {});
  EXPECT_EQ(SampledSet(sampler, {3.0f, 3.0f, 3.0f, 3.0f}, 10000), (std::set<int32_t>{0, 1}));
}

TEST(SamplerTest, TopPAppliesToTheTopKRenormalizedDistribution) {
  // On the full distribution top_p = 0.82 needs 0.5 + 0.3 + 0.15. After top_k = 3 the survivors
  // renormalize to 0.526, 0.316, 0.158, and 0.526 + 0.316 = 0.842 already reaches 0.82.
  Sampler full(Params(1.0f, 0, 0.82f, 43), 0, {});
  EXPECT_EQ(SampledSet(full, ShuffledNucleusLogits(), 10000), (std::set<int32_t>{0, 1, 3}));
  Sampler after_top_k(Params(1.0f, 3, 0.82f, 43), 0, {});
  EXPECT_EQ(SampledSet(after_top_k, ShuffledNucleusLogits(), 10000), (std::set<int32_t>{1, 3}));
}

TEST(SamplerTest, TinyTopPKeepsOnlyTheMostLikelyToken) {
  Sampler sampler(Params(1.0f, 0, std::numeric_limits<float>::min(), 47), 0, {});
  EXPECT_EQ(SampledSet(sampler, ShuffledNucleusLogits(), 1000), (std::set<int32_t>{1}));
}

// --- Distribution -------------------------------------------------------------------------------

// 100k seeded draws: each frequency has standard deviation <= sqrt(0.25 / 1e5) = 0.0016, so the
// 0.006 tolerance is ~4 sigma. The seed is fixed, so the outcome is deterministic either way.
constexpr int kNumDraws = 100000;
constexpr double kFrequencyTolerance = 0.006;

TEST(SamplerTest, FrequenciesMatchSoftmax) {
  Sampler sampler(Params(1.0f, 0, 1.0f, 53), 0, {});
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
    Sampler sampler(Params(c.temperature, 0, 1.0f, 59), 0, {});
    const std::vector<double> freq = Frequencies(sampler, logits, kNumDraws);
    for (size_t i = 0; i < freq.size(); ++i) {
      EXPECT_NEAR(freq[i], c.expected[i], kFrequencyTolerance)
          << "temperature " << c.temperature << " token " << i;
    }
  }
}

// --- min-p --------------------------------------------------------------------------------------

TEST(SamplerTest, MinPKeepsTokensAtLeastMinPTimesTheMostLikely) {
  // ShuffledNucleusLogits: probabilities 0.5, 0.3, 0.15, 0.05 at ids 1, 3, 0, 2.
  const struct {
    float min_p;
    std::set<int32_t> kept;
  } cases[] = {
      {1.0f, {1}},            // only p_max itself
      {0.61f, {1}},           //
      {0.6f, {1, 3}},         // 0.3 = 0.6 * 0.5 exactly
      {0.31f, {1, 3}},        //
      {0.3f, {1, 3, 0}},      // 0.15 = 0.3 * 0.5 exactly
      {0.11f, {1, 3, 0}},     //
      {0.1f, {1, 3, 0, 2}},   // 0.05 = 0.1 * 0.5 exactly
      {1e-7f, {1, 3, 0, 2}},  // below the slack: disabled
  };
  for (const auto& c : cases) {
    Sampler sampler(WithMinP(Params(1.0f, 0, 1.0f, 31), c.min_p), 0, {});
    EXPECT_EQ(SampledSet(sampler, ShuffledNucleusLogits(), 10000), c.kept) << "min_p " << c.min_p;
  }
}

TEST(SamplerTest, MinPRenormalizesOverKeptTokens) {
  Sampler sampler(WithMinP(Params(1.0f, 0, 1.0f, 37), 0.5f), 0, {});
  const std::vector<double> freq = Frequencies(sampler, ShuffledNucleusLogits(), 100000);
  EXPECT_NEAR(freq[1], 0.5 / 0.8, 0.006);
  EXPECT_NEAR(freq[3], 0.3 / 0.8, 0.006);
  EXPECT_EQ(freq[0], 0.0);
  EXPECT_EQ(freq[2], 0.0);
}

TEST(SamplerTest, MinPAppliesAfterTemperature) {
  // logits = 2 ln p for p = {0.4, 0.3, 0.2, 0.1}. T = 2: probabilities p, min_p = 0.5 keeps >= 0.2.
  // T = 1: {16, 9, 4, 1} / 30, min_p = 0.5 keeps >= 8/30.
  const std::vector<float> logits = LogitsFromProbs({0.4, 0.3, 0.2, 0.1}, /*scale=*/2.0);
  Sampler hot(WithMinP(Params(2.0f, 0, 1.0f, 3), 0.5f), 0, {});
  EXPECT_EQ(SampledSet(hot, logits, 10000), (std::set<int32_t>{0, 1, 2}));
  Sampler cold(WithMinP(Params(1.0f, 0, 1.0f, 3), 0.5f), 0, {});
  EXPECT_EQ(SampledSet(cold, logits, 10000), (std::set<int32_t>{0, 1}));
}

TEST(SamplerTest, TopPAppliesToTheMinPRenormalizedDistribution) {
  // min_p = 0.25 keeps 0.5, 0.3, 0.15 (>= 0.125), renormalized to 0.526, 0.316, 0.158; top_p = 0.82
  // then needs only two of them. Without min_p it needs three (0.5 + 0.3 < 0.82).
  Sampler without(Params(1.0f, 0, 0.82f, 43), 0, {});
  EXPECT_EQ(SampledSet(without, ShuffledNucleusLogits(), 10000), (std::set<int32_t>{0, 1, 3}));
  Sampler with(WithMinP(Params(1.0f, 0, 0.82f, 43), 0.25f), 0, {});
  EXPECT_EQ(SampledSet(with, ShuffledNucleusLogits(), 10000), (std::set<int32_t>{1, 3}));
}

TEST(SamplerTest, MinPOverAFlatLargeVocabularyKeepsExactlyTheQualifyingSet) {
  // 300 tokens: ids divisible by 3 have logit 0, the others ln(0.2). 100 qualifying tokens are
  // more than the first sorted chunk, so the kept set comes from partitioning, not sorting.
  std::vector<float> logits(300);
  std::set<int32_t> top;
  for (int32_t i = 0; i < 300; ++i) {
    logits[i] = i % 3 == 0 ? 0.0f : static_cast<float>(std::log(0.2));
    if (i % 3 == 0) top.insert(i);
  }
  Sampler strict(WithMinP(Params(1.0f, 0, 1.0f, 5), 0.21f), 0, {});
  EXPECT_EQ(SampledSet(strict, logits, 20000), top);
  Sampler loose(WithMinP(Params(1.0f, 0, 1.0f, 5), 0.19f), 0, {});
  EXPECT_EQ(SampledSet(loose, logits, 20000).size(), 300u);
}

// --- Penalties ----------------------------------------------------------------------------------
// Greedy makes the penalty arithmetic exact: the logits are chosen so that the penalty flips the
// argmax, or just fails to.

TEST(SamplerTest, RepetitionPenaltyDividesPositiveLogitsOfPromptTokens) {
  const std::vector<float> logits = {2.0f, 2.4f, 1.0f};
  const SamplingParams params = WithPenalties(Params(0.0f), 1.25f, 0, 0);
  Sampler unrelated_prompt(params, 0, std::vector<int32_t>{0, 2});
  EXPECT_EQ(SampleFrom(unrelated_prompt, logits), 1);
  Sampler in_prompt(params, 0, std::vector<int32_t>{1});  // 2.4 / 1.25 = 1.92 < 2.0
  EXPECT_EQ(SampleFrom(in_prompt, logits), 0);
}

TEST(SamplerTest, RepetitionPenaltyMultipliesNegativeLogits) {
  // -1.8 * 1.2 = -2.16 < -2.0. Dividing (-1.8 / 1.2 = -1.5) would have kept token 1.
  const std::vector<float> logits = {-2.0f, -1.8f, -5.0f};
  Sampler sampler(WithPenalties(Params(0.0f), 1.2f, 0, 0), 0, std::vector<int32_t>{1});
  EXPECT_EQ(SampleFrom(sampler, logits), 0);
}

TEST(SamplerTest, RepetitionPenaltyBelowOneFavorsSeenTokens) {
  Sampler sampler(WithPenalties(Params(0.0f), 0.8f, 0, 0), 0, std::vector<int32_t>{1});
  EXPECT_EQ(SampleFrom(sampler, {2.0f, 1.7f}), 1);  // 1.7 / 0.8 = 2.125
}

TEST(SamplerTest, RepetitionPenaltyAppliesOnceWhateverTheCount) {
  // 2.3 / 1.1 = 2.09 > 2.0 keeps token 1; applied twice (1.90) it would not.
  const std::vector<float> logits = {2.0f, 2.3f};
  Sampler sampler(WithPenalties(Params(0.0f), 1.1f, 0, 0), 0, std::vector<int32_t>{1, 1, 1});
  for (int step = 0; step < 5; ++step) EXPECT_EQ(SampleFrom(sampler, logits), 1) << step;
}

TEST(SamplerTest, RepetitionPenaltyCountsOutputTokens) {
  // Empty prompt. Step 1: 2.4 wins. Step 2: token 1 was output, 2.4 / 1.25 = 1.92 < 2.0. Step 3:
  // both were output: 1.6 vs 1.92.
  const std::vector<float> logits = {2.0f, 2.4f};
  Sampler sampler(WithPenalties(Params(0.0f), 1.25f, 0, 0), 0, {});
  EXPECT_EQ(SampleFrom(sampler, logits), 1);
  EXPECT_EQ(SampleFrom(sampler, logits), 0);
  EXPECT_EQ(SampleFrom(sampler, logits), 1);
}

TEST(SamplerTest, RepetitionPenaltyIgnoresPromptIdsOutsideTheVocabulary) {
  Sampler sampler(WithPenalties(Params(0.0f), 1.25f, 0, 0), 0, std::vector<int32_t>{-1, 7, 99});
  EXPECT_EQ(SampleFrom(sampler, {2.0f, 2.4f}), 1);
  // A larger vocabulary later: id 7 now exists and is penalized (8.0 / 1.25 = 6.4 < 7.0).
  EXPECT_EQ(SampleFrom(sampler, {0, 0, 0, 0, 0, 0, 7.0f, 8.0f}), 6);
}

TEST(SamplerTest, FrequencyPenaltyGrowsWithEachOccurrence) {
  // 1.35 - 0.1 c against 1.0 - 0.1 c': token 1 wins its first four times (1.35 .. 1.05), loses at
  // 0.95, then the two alternate.
  const std::vector<float> logits = {1.0f, 1.35f};
  Sampler sampler(WithPenalties(Params(0.0f), 1.0f, 0.0f, 0.1f), 0, {});
  std::vector<int32_t> tokens;
  for (int step = 0; step < 8; ++step) tokens.push_back(SampleFrom(sampler, logits));
  EXPECT_EQ(tokens, (std::vector<int32_t>{1, 1, 1, 1, 0, 1, 0, 1}));
}

TEST(SamplerTest, PresencePenaltyAppliesOnceAnyCount) {
  const std::vector<float> logits = {1.0f, 1.5f};
  // 1.5 - 0.4 = 1.1 > 1.0: token 1 forever, however often it occurred.
  Sampler mild(WithPenalties(Params(0.0f), 1.0f, 0.4f, 0.0f), 0, {});
  for (int step = 0; step < 6; ++step) EXPECT_EQ(SampleFrom(mild, logits), 1) << step;
  // 1.5 - 0.6 = 0.9 < 1.0: token 0 once; then both present (0.4 vs 0.9): token 1 forever.
  Sampler strong(WithPenalties(Params(0.0f), 1.0f, 0.6f, 0.0f), 0, {});
  std::vector<int32_t> tokens;
  for (int step = 0; step < 6; ++step) tokens.push_back(SampleFrom(strong, logits));
  EXPECT_EQ(tokens, (std::vector<int32_t>{1, 0, 1, 1, 1, 1}));
}

TEST(SamplerTest, PresenceAndFrequencyPenaltiesAdd) {
  // After two outputs of token 1: 3.0 - 2 * 0.5 - 0.9 = 1.1 > 1.0 keeps it; one more: 0.6 < 1.0.
  const std::vector<float> logits = {1.0f, 3.0f};
  Sampler sampler(WithPenalties(Params(0.0f), 1.0f, 0.9f, 0.5f), 0, {});
  std::vector<int32_t> tokens;
  for (int step = 0; step < 4; ++step) tokens.push_back(SampleFrom(sampler, logits));
  EXPECT_EQ(tokens, (std::vector<int32_t>{1, 1, 1, 0}));
}

TEST(SamplerTest, NegativePenaltiesEncourageRepetition) {
  // Token 0 wins step 1 on {1.0, 0.9}; then the logits flip to {0.9, 1.0}, but 0.9 + 0.15 + 0.1
  // = 1.15 (presence -0.15, frequency -0.1 per occurrence) keeps token 0.
  Sampler sampler(WithPenalties(Params(0.0f), 1.0f, -0.15f, -0.1f), 0, {});
  EXPECT_EQ(SampleFrom(sampler, {1.0f, 0.9f}), 0);
  for (int step = 0; step < 5; ++step) EXPECT_EQ(SampleFrom(sampler, {0.9f, 1.0f}), 0) << step;
}

TEST(SamplerTest, PresenceAndFrequencyPenaltiesIgnoreThePrompt) {
  // The prompt is full of token 1, yet the maximum penalties leave it alone until it is output.
  const std::vector<float> logits = {1.0f, 1.5f};
  Sampler sampler(WithPenalties(Params(0.0f), 1.0f, 2.0f, 2.0f), 0,
                  std::vector<int32_t>{1, 1, 1, 1});
  EXPECT_EQ(SampleFrom(sampler, logits), 1);
  EXPECT_EQ(SampleFrom(sampler, logits), 0);
}

TEST(SamplerTest, PenaltiesApplyBeforeTemperature) {
  // top_k = 1 makes sampling exact. After token 1 is output: (1.5 - 0.6) / 0.5 = 1.8 < 2.0 picks
  // token 0; penalizing after scaling (3.0 - 0.6 = 2.4) would have kept token 1.
  const std::vector<float> logits = {1.0f, 1.5f};
  Sampler sampler(WithPenalties(Params(0.5f, 1, 1.0f, 9), 1.0f, 0.6f, 0.0f), 0, {});
  EXPECT_EQ(SampleFrom(sampler, logits), 1);
  EXPECT_EQ(SampleFrom(sampler, logits), 0);
}

TEST(SamplerTest, RepetitionPenaltyReshapesTheSoftmax) {
  // Token 0 is in the prompt: ln 4 / 2 = ln 2, so softmax({ln 2, 0}) = {2/3, 1/3}. Token 1's logit
  // is 0, which the penalty leaves at 0 once it is output, so the distribution stays put.
  const std::vector<float> logits = {static_cast<float>(std::log(4.0)), 0.0f};
  Sampler sampler(WithPenalties(Params(1.0f, 0, 1.0f, 71), 2.0f, 0, 0), 0, std::vector<int32_t>{0});
  const std::vector<double> freq = Frequencies(sampler, logits, kNumDraws);
  EXPECT_NEAR(freq[0], 2.0 / 3.0, kFrequencyTolerance);
  EXPECT_NEAR(freq[1], 1.0 / 3.0, kFrequencyTolerance);
}

// --- Sparse normalizers -------------------------------------------------------------------------

TEST(SamplerTest, SparsemaxFrequenciesMatchOracle) {
  // sparsemax([0.5, 0.3, -1]) = [0.6, 0.4, 0] (docs/math.md oracle 25).
  Sampler sampler(WithNormalizer(Params(1.0f, 0, 1.0f, 73), Normalizer::kSparsemax), 0, {});
  const std::vector<double> freq = Frequencies(sampler, {0.5f, 0.3f, -1.0f}, kNumDraws);
  EXPECT_NEAR(freq[0], 0.6, kFrequencyTolerance);
  EXPECT_NEAR(freq[1], 0.4, kFrequencyTolerance);
  EXPECT_EQ(freq[2], 0.0);
}

TEST(SamplerTest, Entmax15FrequenciesMatchOracle) {
  // entmax15([1.5, 1, 0.2, -2]) = [0.658587, 0.315320, 0.026093, 0] (docs/math.md oracle 26).
  Sampler sampler(WithNormalizer(Params(1.0f, 0, 1.0f, 79), Normalizer::kEntmax15), 0, {});
  const std::vector<double> freq = Frequencies(sampler, {1.5f, 1.0f, 0.2f, -2.0f}, kNumDraws);
  EXPECT_NEAR(freq[0], 0.658587, kFrequencyTolerance);
  EXPECT_NEAR(freq[1], 0.315320, kFrequencyTolerance);
  EXPECT_NEAR(freq[2], 0.026093, kFrequencyTolerance);
  EXPECT_EQ(freq[3], 0.0);
}

TEST(SamplerTest, SparseNormalizersNeverReturnZeroProbabilityTokens) {
  // 200 seeds x 100 draws each. Zeros: sparsemax([0.5, 0.3, -1]) at token 2 and entmax15([1, 2, 3])
  // at token 0 (oracles 25 and 26); the rest of each vector is a decoy at -inf or below.
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Sampler sparse(WithNormalizer(Params(1.0f, 0, 1.0f, seed), Normalizer::kSparsemax), 0, {});
    EXPECT_EQ(SampledSet(sparse, {0.5f, 0.3f, -1.0f, -kInf}, 100), (std::set<int32_t>{0, 1}))
        << "seed " << seed;
    Sampler entmax(WithNormalizer(Params(1.0f, 0, 1.0f, seed), Normalizer::kEntmax15), 0, {});
    EXPECT_EQ(SampledSet(entmax, {1.0f, 2.0f, 3.0f, kNaN}, 100), (std::set<int32_t>{1, 2}))
        << "seed " << seed;
  }
}

TEST(SamplerTest, SparsemaxSeesTemperatureScaledLogits) {
  // [1, 0.6, -2] / 2 = [0.5, 0.3, -1] -> [0.6, 0.4, 0]; at T = 1: lambda = (1.6 - 1) / 2 = 0.3,
  // so [0.7, 0.3, 0].
  const std::vector<float> logits = {1.0f, 0.6f, -2.0f};
  Sampler hot(WithNormalizer(Params(2.0f, 0, 1.0f, 83), Normalizer::kSparsemax), 0, {});
  std::vector<double> freq = Frequencies(hot, logits, kNumDraws);
  EXPECT_NEAR(freq[0], 0.6, kFrequencyTolerance);
  EXPECT_NEAR(freq[1], 0.4, kFrequencyTolerance);
  EXPECT_EQ(freq[2], 0.0);
  Sampler cold(WithNormalizer(Params(1.0f, 0, 1.0f, 83), Normalizer::kSparsemax), 0, {});
  freq = Frequencies(cold, logits, kNumDraws);
  EXPECT_NEAR(freq[0], 0.7, kFrequencyTolerance);
  EXPECT_NEAR(freq[1], 0.3, kFrequencyTolerance);
  EXPECT_EQ(freq[2], 0.0);
}

TEST(SamplerTest, SparsemaxNormalizesOnlyTheTopKSurvivors) {
  // sparsemax([0.1, 0, -0.1]) has full support; over the top-2 [0.1, 0] it is [0.55, 0.45].
  Sampler sampler(WithNormalizer(Params(1.0f, 2, 1.0f, 89), Normalizer::kSparsemax), 0, {});
  const std::vector<double> freq = Frequencies(sampler, {0.1f, 0.0f, -0.1f}, kNumDraws);
  EXPECT_NEAR(freq[0], 0.55, kFrequencyTolerance);
  EXPECT_NEAR(freq[1], 0.45, kFrequencyTolerance);
  EXPECT_EQ(freq[2], 0.0);
}

TEST(SamplerTest, TopPAndMinPApplyToSparsemaxProbabilities) {
  // sparsemax([0.1, 0, -0.1]) = [0.4333, 0.3333, 0.2333].
  const std::vector<float> logits = {0.1f, 0.0f, -0.1f};
  // Ratios to the largest: 0.3333 / 0.4333 = 0.769 and 0.2333 / 0.4333 = 0.538.
  const struct {
    float top_p;
    float min_p;
    std::set<int32_t> kept;
  } cases[] = {
      {0.4f, 0.0f, {0}},         {0.7f, 0.0f, {0, 1}},   {0.77f, 0.0f, {0, 1, 2}},
      {1.0f, 0.77f, {0}},        {1.0f, 0.76f, {0, 1}},  {1.0f, 0.54f, {0, 1}},
      {1.0f, 0.53f, {0, 1, 2}},  {0.4f, 0.53f, {0}},      // top_p on the min-p survivors
      {0.77f, 0.53f, {0, 1, 2}}, {0.77f, 0.54f, {0, 1}},  // survivors renormalize to 0.57, 0.43
  };
  for (const auto& c : cases) {
    Sampler sampler(
        WithMinP(WithNormalizer(Params(1.0f, 0, c.top_p, 97), Normalizer::kSparsemax), c.min_p), 0,
        {});
    EXPECT_EQ(SampledSet(sampler, logits, 10000), c.kept)
        << "top_p " << c.top_p << " min_p " << c.min_p;
  }
}

TEST(SamplerTest, SparseNormalizersSplitPositiveInfinityEvenly) {
  for (Normalizer normalizer : {Normalizer::kSparsemax, Normalizer::kEntmax15}) {
    Sampler sampler(WithNormalizer(Params(0.7f, 0, 1.0f, 3), normalizer), 1, {});
    const std::vector<double> freq = Frequencies(sampler, {0.0f, kInf, 80.0f, kInf}, 20000);
    EXPECT_EQ(freq[0], 0.0);
    EXPECT_EQ(freq[2], 0.0);
    EXPECT_NEAR(freq[1], 0.5, 0.02);
    EXPECT_NEAR(freq[3], 0.5, 0.02);
  }
}

TEST(SamplerTest, GreedyIgnoresNormalizerAndMinP) {
  std::mt19937_64 rng(101);
  Sampler plain(Params(0.0f), 1, {});
  Sampler sparse(WithMinP(WithNormalizer(Params(0.0f, 3, 0.2f, 5), Normalizer::kSparsemax), 0.9f),
                 1, {});
  Sampler entmax(WithMinP(WithNormalizer(Params(0.0f, 3, 0.2f, 5), Normalizer::kEntmax15), 0.9f), 1,
                 {});
  for (int step = 0; step < 100; ++step) {
    const std::vector<float> logits = RandomLogits(rng, 50, 2.0f);
    const int32_t argmax =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    EXPECT_EQ(SampleFrom(plain, logits), argmax) << "step " << step;
    EXPECT_EQ(SampleFrom(sparse, logits), argmax) << "step " << step;
    EXPECT_EQ(SampleFrom(entmax, logits), argmax) << "step " << step;
  }
}

// --- Input is read-only -------------------------------------------------------------------------

TEST(SamplerTest, SampleLeavesLogitsUntouched) {
  std::mt19937_64 rng(103);
  std::vector<float> logits = RandomLogits(rng, 500, 3.0f);
  logits[7] = kNaN;
  logits[8] = kInf;
  logits[9] = -kInf;
  const std::vector<float> original = logits;
  const std::vector<int32_t> prompt = {1, 2, 3, 10, 11};
  for (Normalizer normalizer : kAllNormalizers) {
    for (float temperature : {0.0f, 0.8f}) {
      const SamplingParams params = WithPenalties(
          WithMinP(WithNormalizer(Params(temperature, 40, 0.9f, 1), normalizer), 0.05f), 1.3f, 0.5f,
          0.5f);
      Sampler sampler(params, 0, prompt);
      for (int step = 0; step < 5; ++step) sampler.Sample(logits);
      ASSERT_EQ(std::memcmp(logits.data(), original.data(), logits.size() * sizeof(float)), 0)
          << "normalizer " << static_cast<int>(normalizer) << " temperature " << temperature;
    }
  }
}

// --- Logprobs -----------------------------------------------------------------------------------

TEST(ComputeLogprobsTest, MatchesOracle) {
  // log(softmax([1, 2, 3])) = log([0.090031, 0.244728, 0.665241]) (docs/math.md oracle 24).
  TokenLogprobs out;
  ComputeLogprobs(std::vector<float>{1, 2, 3}, 0, 3, &out);
  EXPECT_NEAR(out.logprob, -2.407606, 1e-6);
  ASSERT_EQ(out.top.size(), 3u);
  EXPECT_EQ(out.top[0].token, 2);
  EXPECT_NEAR(out.top[0].logprob, -0.407606, 1e-6);
  EXPECT_EQ(out.top[1].token, 1);
  EXPECT_NEAR(out.top[1].logprob, -1.407606, 1e-6);
  EXPECT_EQ(out.top[2].token, 0);
  EXPECT_NEAR(out.top[2].logprob, -2.407606, 1e-6);
}

TEST(ComputeLogprobsTest, MatchesNaiveLogSoftmax) {
  constexpr uint64_t kSeed = 107;
  std::mt19937_64 rng(kSeed);
  for (int trial = 0; trial < 20; ++trial) {
    const std::vector<float> logits = RandomLogits(rng, 1 + rng() % 600, 3.0f);
    // Naive: log(exp(x_i) / sum exp(x_j)) with no max-subtraction (|x| is small here).
    double sum = 0.0;
    for (float x : logits) sum += std::exp(static_cast<double>(x));
    const auto naive = [&](int32_t i) { return std::log(std::exp(double{logits[i]}) / sum); };
    std::vector<int32_t> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    const int32_t token = static_cast<int32_t>(rng() % logits.size());
    const int32_t top_n = static_cast<int32_t>(rng() % 25);
    TokenLogprobs out;
    ComputeLogprobs(logits, token, top_n, &out);
    EXPECT_NEAR(out.logprob, naive(token), 1e-5) << "seed " << kSeed << " trial " << trial;
    ASSERT_EQ(out.top.size(), std::min<size_t>(top_n, logits.size())) << "trial " << trial;
    for (size_t i = 0; i < out.top.size(); ++i) {
      EXPECT_EQ(out.top[i].token, order[i]) << "seed " << kSeed << " trial " << trial;
      EXPECT_NEAR(out.top[i].logprob, naive(order[i]), 1e-5) << "trial " << trial;
    }
  }
}

TEST(ComputeLogprobsTest, TopNBeyondTheVocabularyListsEveryToken) {
  TokenLogprobs out;
  ComputeLogprobs(std::vector<float>{0.5f, -1.0f, 2.0f}, 1, 20, &out);
  ASSERT_EQ(out.top.size(), 3u);
  EXPECT_EQ(out.top[0].token, 2);
  EXPECT_EQ(out.top[1].token, 0);
  EXPECT_EQ(out.top[2].token, 1);
  EXPECT_EQ(out.top[2].logprob, out.logprob);
  double total = 0.0;
  for (const TokenLogprob& entry : out.top) total += std::exp(double{entry.logprob});
  EXPECT_NEAR(total, 1.0, 1e-6);
}

TEST(ComputeLogprobsTest, TiesGoToTheLowerId) {
  TokenLogprobs out;
  ComputeLogprobs(std::vector<float>{1, 3, 3, 2, 3}, 0, 2, &out);
  ASSERT_EQ(out.top.size(), 2u);
  EXPECT_EQ(out.top[0].token, 1);
  EXPECT_EQ(out.top[1].token, 2);
  EXPECT_EQ(out.top[0].logprob, out.top[1].logprob);
  ComputeLogprobs(std::vector<float>{3, 3, 3, 3}, 0, 3, &out);
  ASSERT_EQ(out.top.size(), 3u);
  EXPECT_EQ(out.top[0].token, 0);
  EXPECT_EQ(out.top[1].token, 1);
  EXPECT_EQ(out.top[2].token, 2);
  EXPECT_FLOAT_EQ(out.logprob, static_cast<float>(std::log(0.25)));
}

TEST(ComputeLogprobsTest, TopNZeroListsNothing) {
  TokenLogprobs out;
  out.top.push_back({5, 1.0f});  // stale entries are cleared
  ComputeLogprobs(std::vector<float>{1, 2}, 1, 0, &out);
  EXPECT_TRUE(out.top.empty());
  EXPECT_NEAR(out.logprob, -std::log1p(std::exp(-1.0)), 1e-7);
}

TEST(ComputeLogprobsTest, NanIsNegativeInfinityAndPositiveInfinitySharesTheMass) {
  TokenLogprobs out;
  ComputeLogprobs(std::vector<float>{kNaN, 0.0f, 0.0f}, 0, 3, &out);
  EXPECT_EQ(out.logprob, -kInf);
  ASSERT_EQ(out.top.size(), 3u);
  EXPECT_EQ(out.top[0].token, 1);
  EXPECT_EQ(out.top[1].token, 2);
  EXPECT_EQ(out.top[2].token, 0);
  EXPECT_FLOAT_EQ(out.top[0].logprob, static_cast<float>(std::log(0.5)));
  EXPECT_EQ(out.top[2].logprob, -kInf);

  ComputeLogprobs(std::vector<float>{kInf, 0.0f, kInf}, 2, 1, &out);
  EXPECT_FLOAT_EQ(out.logprob, static_cast<float>(std::log(0.5)));
  ASSERT_EQ(out.top.size(), 1u);
  EXPECT_EQ(out.top[0].token, 0);
  ComputeLogprobs(std::vector<float>{kInf, 0.0f, kInf}, 1, 0, &out);
  EXPECT_LT(out.logprob, -1e38f);
}

TEST(ComputeLogprobsTest, AllNegativeInfinityGivesNegativeInfinity) {
  TokenLogprobs out;
  ComputeLogprobs(std::vector<float>{-kInf, kNaN, -kInf}, 1, 2, &out);
  EXPECT_EQ(out.logprob, -kInf);
  ASSERT_EQ(out.top.size(), 2u);
  EXPECT_EQ(out.top[0].token, 0);
  EXPECT_EQ(out.top[1].token, 1);
  EXPECT_EQ(out.top[0].logprob, -kInf);
}

TEST(ComputeLogprobsTest, ShiftInvariant) {
  // Small integers: x + 1000 - (max + 1000) is exact, so the results are bit-identical.
  const std::vector<float> logits = {1, -2, 3, 0, 2};
  std::vector<float> shifted = logits;
  for (float& x : shifted) x += 1000.0f;
  TokenLogprobs a;
  TokenLogprobs b;
  ComputeLogprobs(logits, 3, 4, &a);
  ComputeLogprobs(shifted, 3, 4, &b);
  EXPECT_EQ(a.logprob, b.logprob);
  ASSERT_EQ(a.top.size(), b.top.size());
  for (size_t i = 0; i < a.top.size(); ++i) {
    EXPECT_EQ(a.top[i].token, b.top[i].token);
    EXPECT_EQ(a.top[i].logprob, b.top[i].logprob);
  }
}

TEST(ComputeLogprobsTest, ReusesTopCapacity) {
  std::mt19937_64 rng(109);
  const std::vector<float> logits = RandomLogits(rng, 4096, 2.0f);
  TokenLogprobs out;
  ComputeLogprobs(logits, 0, 20, &out);  // sizes out.top
  const size_t before = kvserve::testing::NumAllocations();
  for (int32_t token = 0; token < 50; ++token) ComputeLogprobs(logits, token, 20, &out);
  ComputeLogprobs(logits, 1, 5, &out);
  EXPECT_EQ(kvserve::testing::NumAllocations(), before);
}

// --- Memory -------------------------------------------------------------------------------------

TEST(SamplerTest, DoesNotAllocateAfterFirstCallForAVocabSize) {
  std::mt19937_64 rng(61);
  std::vector<std::vector<float>> inputs;
  for (int i = 0; i < 20; ++i) inputs.push_back(RandomLogits(rng, 4096, 4.0f));
  inputs[3][17] = kNaN;
  const std::vector<int32_t> prompt = {5, 17, 4000, 5, 9999};
  for (const SamplingParams& params :
       {Params(0.0f), Params(1.0f), Params(0.7f, 40, 0.9f), Params(1.2f, 0, 0.95f),
        Params(1.0f, 3000, 1.0f), WithMinP(Params(1.0f), 0.01f),
        WithNormalizer(Params(1.0f), Normalizer::kSparsemax),
        WithMinP(WithNormalizer(Params(3.0f, 0, 0.9f), Normalizer::kEntmax15), 0.01f),
        WithPenalties(Params(0.0f), 1.3f, 0.5f, 0.5f),
        WithPenalties(WithMinP(Params(0.8f, 0, 0.9f), 0.05f), 1.3f, 0.0f, 0.0f),
        WithPenalties(WithNormalizer(Params(1.0f), Normalizer::kEntmax15), 1.0f, -0.5f, 0.3f)}) {
    Sampler sampler(params, 5, prompt);
    sampler.Sample(inputs[0]);  // warm-up sizes the scratch buffers and the penalty history
    const size_t before = kvserve::testing::NumAllocations();
    for (const std::vector<float>& logits : inputs) sampler.Sample(logits);
    // Smaller vocabularies reuse the same buffers.
    sampler.Sample(absl::MakeConstSpan(inputs[1]).subspan(0, 100));
    EXPECT_EQ(kvserve::testing::NumAllocations(), before)
        << "temperature " << params.temperature << " top_k " << params.top_k << " top_p "
        << params.top_p << " min_p " << params.min_p << " normalizer "
        << static_cast<int>(params.normalizer) << " repetition " << params.repetition_penalty;
  }
}

TEST(SamplerTest, KeepsNoHistoryWithoutPenalties) {
  // Neither the prompt nor a per-token history is stored: a greedy Sampler without penalties never
  // allocates, not even on its first call.
  std::mt19937_64 rng(67);
  const std::vector<float> logits = RandomLogits(rng, 4096, 1.0f);
  const std::vector<int32_t> prompt(1000, 7);
  const size_t before = kvserve::testing::NumAllocations();
  {
    Sampler sampler(Params(0.0f), 5, prompt);
    for (int i = 0; i < 10; ++i) sampler.Sample(logits);
  }
  EXPECT_EQ(kvserve::testing::NumAllocations(), before);
  // Presence/frequency penalties size the history once but do not copy the prompt.
  {
    Sampler sampler(WithPenalties(Params(0.0f), 1.0f, 0.5f, 0.5f), 5, prompt);
    EXPECT_EQ(kvserve::testing::NumAllocations(), before);
    for (int i = 0; i < 10; ++i) sampler.Sample(logits);
  }
  EXPECT_EQ(kvserve::testing::NumAllocations(), before + 1);
}

}  // namespace
}  // namespace kvserve::engine
