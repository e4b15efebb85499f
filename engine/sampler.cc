#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "base/logging.h"

namespace kvserve::engine {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Slack on the top-p comparison. top_p arrives as a float (0.8f is 0.800000012) and logits are
// floats, so a cumulative probability that is "exactly" top_p on paper can land a few 1e-8 either
// side of it; without slack one extra token would be kept or not depending on rounding.
constexpr double kTopPSlack = 1e-6;

// Smallest chunk SortThrough() sorts at a time; typical distributions are decided within it.
constexpr size_t kMinSortChunk = 64;

// Logit as the sampler sees it: NaN never wins (-inf), +inf is the largest finite value so that
// max-subtraction never computes inf - inf.
double SanitizedLogit(float logit) {
  if (std::isnan(logit)) return kNegInf;
  return std::min(static_cast<double>(logit),
                  static_cast<double>(std::numeric_limits<float>::max()));
}

}  // namespace

// Probability descending (exp is monotone, so compare logits), then id ascending. A strict total
// order: the top-k set and the sorted order are unique, whatever std::sort / std::nth_element /
// std::partial_sort implementation produced them.
bool Sampler::MoreProbable(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

Sampler::Sampler(const SamplingParams& params, uint64_t fallback_seed)
    : params_(params), rng_(params.seed.value_or(fallback_seed)) {
  KV_CHECK(std::isfinite(params_.temperature) && params_.temperature >= 0.0f)
      << "temperature=" << params_.temperature;
  KV_CHECK(params_.top_k >= 0) << "top_k=" << params_.top_k;
  KV_CHECK(params_.top_p > 0.0f && params_.top_p <= 1.0f) << "top_p=" << params_.top_p;
}

int32_t Sampler::Sample(absl::Span<float> logits) {
  KV_CHECK(!logits.empty()) << "empty logits";
  KV_CHECK(logits.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()))
      << "vocab too large: " << logits.size();
  if (params_.temperature == 0.0f) return SampleGreedy(logits);
  return SampleStochastic(logits);
}

int32_t Sampler::SampleGreedy(absl::Span<const float> logits) const {
  int32_t best = 0;
  double best_logit = SanitizedLogit(logits[0]);
  for (size_t i = 1; i < logits.size(); ++i) {
    const double logit = SanitizedLogit(logits[i]);
    // Strictly greater: ties keep the lower id, and all -inf/NaN leaves token 0.
    if (logit > best_logit) {
      best_logit = logit;
      best = static_cast<int32_t>(i);
    }
  }
  return best;
}

int32_t Sampler::SampleStochastic(absl::Span<const float> logits) {
  // Drawn before anything can return early, so each call consumes exactly one draw.
  const double u = NextUniform();

  candidates_.clear();
  candidates_.reserve(logits.size());  // allocates only until capacity reaches the vocabulary
  num_sorted_ = 0;

  // Scale in double: 1/temperature for a tiny temperature overflows float but not double.
  const double inv_temperature = 1.0 / static_cast<double>(params_.temperature);
  double max_logit = kNegInf;
  for (size_t i = 0; i < logits.size(); ++i) {
    const double logit = SanitizedLogit(logits[i]);
    if (logit == kNegInf) continue;  // probability 0: not a candidate at all
    const double scaled = logit * inv_temperature;
    max_logit = std::max(max_logit, scaled);
    candidates_.push_back({scaled, static_cast<int32_t>(i)});
  }
  if (candidates_.empty()) return 0;

  const size_t top_k = static_cast<size_t>(params_.top_k);
  if (top_k > 0 && top_k < candidates_.size()) {
    // The global maximum is always among the k kept, so max_logit stays valid.
    if (SelectMostProbable(0, top_k)) num_sorted_ = top_k;
    candidates_.resize(top_k);
  }

  // Softmax denominator. Probabilities are never materialized: comparing a cumulative numerator
  // with top_p * sum (or with u * kept mass) is the same test as comparing normalized
  // probabilities, and the walks below recompute exp() only for the prefix they visit.
  double sum = 0.0;
  for (const Candidate& candidate : candidates_) sum += std::exp(candidate.logit - max_logit);

  // Sorted order: probability descending. Numerators that underflow to 0 sit at the end of it;
  // both walks stop there, which keeps probability-0 tokens from ever being returned.
  size_t num_kept = candidates_.size();
  double kept_mass = sum;
  if (params_.top_p < 1.0f) {
    const double target = (static_cast<double>(params_.top_p) - kTopPSlack) * sum;
    double cumulative = 0.0;
    for (size_t i = 0; i < candidates_.size(); ++i) {
      SortThrough(i);
      const double weight = std::exp(candidates_[i].logit - max_logit);
      if (weight == 0.0) {
        num_kept = i;  // i >= 1: the maximum has weight exp(0) = 1
        break;
      }
      cumulative += weight;
      if (cumulative >= target) {
        num_kept = i + 1;
        break;
      }
    }
    kept_mass = cumulative;
  }

  const double threshold = u * kept_mass;
  double cumulative = 0.0;
  size_t last_positive = 0;
  for (size_t i = 0; i < num_kept; ++i) {
    SortThrough(i);
    const double weight = std::exp(candidates_[i].logit - max_logit);
    if (weight == 0.0) break;
    cumulative += weight;
    if (cumulative > threshold) return candidates_[i].id;
    last_positive = i;
  }
  // Reachable only through rounding (u * kept_mass rounding up to the mass, or the sorted-order sum
  // landing an ulp below `sum`): the draw was at the very top of [0, 1), so the last token wins.
  return candidates_[last_positive].id;
}

bool Sampler::SelectMostProbable(size_t begin, size_t count) {
  const auto first = candidates_.begin() + static_cast<std::ptrdiff_t>(begin);
  const auto middle = first + static_cast<std::ptrdiff_t>(count);
  const auto last = candidates_.end();
  const size_t remaining = candidates_.size() - begin;
  if (count >= remaining) {
    std::sort(first, last, MoreProbable);
    return true;
  }
  // Heap selection rejects most elements with one comparison against the heap top: about 7x
  // faster than nth_element for a 64-of-128k selection. For a large fraction, selection + sort on
  // demand wins.
  if (count <= remaining / 16) {
    std::partial_sort(first, middle, last, MoreProbable);
    return true;
  }
  std::nth_element(first, middle, last, MoreProbable);
  return false;
}

void Sampler::SortThrough(size_t index) {
  // Doubling chunks: a peaked distribution costs one heap-selection pass; a flat one degrades to
  // about a full sort. Chunks come out exactly as one std::sort would order them because
  // MoreProbable is a strict total order.
  while (num_sorted_ <= index) {
    const size_t count =
        std::min(candidates_.size() - num_sorted_, std::max(kMinSortChunk, num_sorted_));
    if (!SelectMostProbable(num_sorted_, count)) {
      const auto first = candidates_.begin() + static_cast<std::ptrdiff_t>(num_sorted_);
      std::sort(first, first + static_cast<std::ptrdiff_t>(count), MoreProbable);
    }
    num_sorted_ += count;
  }
}

double Sampler::NextUniform() {
  // Top 53 bits scaled by 2^-53: uniform on [0, 1) with full double precision, and unlike
  // std::uniform_real_distribution the same on every standard library.
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

}  // namespace kvserve::engine
