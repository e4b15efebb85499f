#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/logging.h"

namespace kvserve::engine {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Slack on the top-p and min-p comparisons. top_p and min_p arrive as floats (0.8f is
// 0.800000012) and logits are floats, so a cumulative probability or a probability ratio that is
// "exactly" the parameter on paper can land a few 1e-8 either side of it; without slack one extra
// token would be kept or not depending on rounding.
constexpr double kTopPSlack = 1e-6;
constexpr double kMinPSlack = 1e-6;

// Smallest chunk SortThrough() sorts at a time; typical distributions are decided within it.
constexpr size_t kMinSortChunk = 64;

// history_ entries: output count in the low bits, prompt membership in the top bit.
constexpr uint32_t kInPrompt = uint32_t{1} << 31;
constexpr uint32_t kCountMask = kInPrompt - 1;

// Logit as the sampler sees it: NaN never wins (-inf), +inf is the largest finite value so that
// max-subtraction never computes inf - inf.
float SanitizedFloat(float logit) {
  if (std::isnan(logit)) return -std::numeric_limits<float>::infinity();
  return std::min(logit, std::numeric_limits<float>::max());
}

double SanitizedLogit(float logit) { return static_cast<double>(SanitizedFloat(logit)); }

// Strictly greater: ties keep the lower id, and all -inf leaves index 0.
template <typename LogitAt>
int32_t Argmax(size_t size, LogitAt logit_at) {
  int32_t best = 0;
  double best_logit = logit_at(0);
  for (size_t i = 1; i < size; ++i) {
    const double logit = logit_at(i);
    if (logit > best_logit) {
      best_logit = logit;
      best = static_cast<int32_t>(i);
    }
  }
  return best;
}

}  // namespace

void ComputeLogprobs(absl::Span<const float> logits, int32_t token, int32_t top_n,
                     TokenLogprobs* out) {
  KV_CHECK(!logits.empty()) << "empty logits";
  KV_CHECK(token >= 0 && static_cast<size_t>(token) < logits.size())
      << "token " << token << " outside vocab " << logits.size();
  KV_CHECK(top_n >= 0) << "top_n=" << top_n;

  double max_logit = kNegInf;
  for (float logit : logits) max_logit = std::max(max_logit, SanitizedLogit(logit));
  double sum = 0.0;
  if (max_logit != kNegInf) {
    for (float logit : logits) sum += std::exp(SanitizedLogit(logit) - max_logit);
  }
  // sum >= 1 (the maximum contributes exp(0)). (x - max) - log(sum) rather than x - (max +
  // log(sum)): with large logits the latter rounds away the digits of a small log-probability.
  const double log_sum = std::log(sum);
  const auto logprob = [&](float sanitized) -> float {
    if (max_logit == kNegInf) return -std::numeric_limits<float>::infinity();
    return static_cast<float>((static_cast<double>(sanitized) - max_logit) - log_sum);
  };
  out->logprob = logprob(SanitizedFloat(logits[token]));

  // Top-n by heap selection inside out->top itself (no scratch): while selecting, .logprob holds
  // the sanitized logit, which orders exactly like the logprob. The heap's front is the least
  // likely entry kept so far.
  const auto ranks_before = [](const TokenLogprob& a, const TokenLogprob& b) {
    return a.logprob > b.logprob || (a.logprob == b.logprob && a.token < b.token);
  };
  std::vector<TokenLogprob>& top = out->top;
  top.clear();
  const size_t n = std::min(static_cast<size_t>(top_n), logits.size());
  if (n == 0) return;
  top.reserve(n);
  for (size_t i = 0; i < logits.size(); ++i) {
    const TokenLogprob entry{static_cast<int32_t>(i), SanitizedFloat(logits[i])};
    if (top.size() < n) {
      top.push_back(entry);
      std::push_heap(top.begin(), top.end(), ranks_before);
    } else if (ranks_before(entry, top.front())) {
      std::pop_heap(top.begin(), top.end(), ranks_before);
      top.back() = entry;
      std::push_heap(top.begin(), top.end(), ranks_before);
    }
  }
  std::sort_heap(top.begin(), top.end(), ranks_before);  // most likely first
  for (TokenLogprob& entry : top) entry.logprob = logprob(entry.logprob);
}

// Probability descending (the normalizers are monotone, so compare logits), then id ascending. A
// strict total order: the top-k set and the sorted order are unique, whatever std::sort /
// std::nth_element / std::partial_sort implementation produced them.
absl::Status ValidateSamplingParams(const SamplingParams& s) {
  if (!std::isfinite(s.temperature) || s.temperature < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.temperature: must be a finite number >= 0, got ", s.temperature));
  }
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) {  // also rejects NaN
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_p: must be in (0, 1], got ", s.top_p));
  }
  if (s.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_k: must be >= 0 (0 = disabled), got ", s.top_k));
  }
  if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.min_p: must be in [0, 1] (0 = disabled), got ", s.min_p));
  }
  if (!(std::isfinite(s.repetition_penalty) && s.repetition_penalty > 0.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampling.repetition_penalty: must be a finite number > 0 (1 = disabled), got ",
        s.repetition_penalty));
  }
  if (!(s.presence_penalty >= -2.0f && s.presence_penalty <= 2.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.presence_penalty: must be in [-2, 2], got ", s.presence_penalty));
  }
  if (!(s.frequency_penalty >= -2.0f && s.frequency_penalty <= 2.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.frequency_penalty: must be in [-2, 2], got ", s.frequency_penalty));
  }
  switch (s.normalizer) {
    case Normalizer::kSoftmax:
    case Normalizer::kSparsemax:
    case Normalizer::kEntmax15:
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("sampling.normalizer: unknown value ", static_cast<int>(s.normalizer)));
  }
  return absl::OkStatus();
}

bool Sampler::MoreProbable(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

Sampler::Sampler(const SamplingParams& params, uint64_t fallback_seed,
                 absl::Span<const int32_t> prompt)
    : params_(params), rng_(params.seed.value_or(fallback_seed)) {
  if (absl::Status valid = ValidateSamplingParams(params_); !valid.ok()) {
    KV_CHECK(false) << "Sampler: " << valid.message();
  }
  if (params_.repetition_penalty != 1.0f) prompt_.assign(prompt.begin(), prompt.end());
}

bool Sampler::penalties_enabled() const {
  return params_.repetition_penalty != 1.0f || params_.presence_penalty != 0.0f ||
         params_.frequency_penalty != 0.0f;
}

void Sampler::PrepareHistory(size_t vocab) {
  const size_t old_size = history_.size();
  if (vocab <= old_size) return;
  history_.resize(vocab, 0);
  for (int32_t id : prompt_) {
    if (id < 0) continue;
    const size_t index = static_cast<size_t>(id);
    if (index >= old_size && index < vocab) history_[index] |= kInPrompt;
  }
}

double Sampler::PenalizedLogit(absl::Span<const float> logits, size_t i) const {
  double logit = SanitizedLogit(logits[i]);
  const uint32_t history = history_[i];
  const uint32_t count = history & kCountMask;
  if (params_.repetition_penalty != 1.0f && ((history & kInPrompt) != 0 || count > 0)) {
    const double penalty = static_cast<double>(params_.repetition_penalty);
    logit = logit > 0.0 ? logit / penalty : logit * penalty;
  }
  if (count > 0) {
    logit -= static_cast<double>(count) * static_cast<double>(params_.frequency_penalty);
    logit -= static_cast<double>(params_.presence_penalty);
  }
  return logit;
}

void Sampler::RecordOutput(int32_t token) {
  uint32_t& history = history_[static_cast<size_t>(token)];
  if ((history & kCountMask) != kCountMask) ++history;  // saturates after 2^31 - 1 occurrences
}

int32_t Sampler::Sample(absl::Span<const float> logits) {
  KV_CHECK(!logits.empty()) << "empty logits";
  KV_CHECK(logits.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()))
      << "vocab too large: " << logits.size();
  const bool penalized = penalties_enabled();
  if (penalized) PrepareHistory(logits.size());
  const int32_t token =
      params_.temperature == 0.0f ? SampleGreedy(logits) : SampleStochastic(logits);
  if (penalized) RecordOutput(token);
  return token;
}

int32_t Sampler::SampleGreedy(absl::Span<const float> logits) const {
  if (penalties_enabled()) {
    return Argmax(logits.size(), [&](size_t i) { return PenalizedLogit(logits, i); });
  }
  return Argmax(logits.size(), [&](size_t i) { return SanitizedLogit(logits[i]); });
}

int32_t Sampler::SampleStochastic(absl::Span<const float> logits) {
  // Drawn before anything can return early, so each call consumes exactly one draw.
  const double u = NextUniform();

  candidates_.clear();
  candidates_.reserve(logits.size());  // allocates only until capacity reaches the vocabulary
  num_sorted_ = 0;

  // Scale in double: 1/temperature for a tiny temperature overflows float but not double.
  const double inv_temperature = 1.0 / static_cast<double>(params_.temperature);
  max_logit_ = kNegInf;
  const auto collect = [&](auto logit_at) {
    for (size_t i = 0; i < logits.size(); ++i) {
      const double logit = logit_at(i);
      if (logit == kNegInf) continue;  // probability 0: not a candidate at all
      const double scaled = logit * inv_temperature;
      max_logit_ = std::max(max_logit_, scaled);
      candidates_.push_back({scaled, static_cast<int32_t>(i)});
    }
  };
  if (penalties_enabled()) {
    collect([&](size_t i) { return PenalizedLogit(logits, i); });
  } else {
    collect([&](size_t i) { return SanitizedLogit(logits[i]); });
  }
  if (candidates_.empty()) return 0;

  const size_t top_k = static_cast<size_t>(params_.top_k);
  if (top_k > 0 && top_k < candidates_.size()) {
    // The global maximum is always among the k kept, so max_logit_ stays valid.
    if (SelectMostProbable(0, top_k)) num_sorted_ = top_k;
    Truncate(top_k);
  }

  // Normalizing constant. Probabilities are never materialized: comparing a cumulative weight with
  // top_p * mass (or with u * kept mass) is the same test as comparing normalized probabilities,
  // and the walks below recompute Weight() only for the prefix they visit.
  if (params_.normalizer != Normalizer::kSoftmax) NormalizeSparse();
  if (static_cast<double>(params_.min_p) - kMinPSlack > 0.0) ApplyMinP();
  double mass = 0.0;
  if (params_.normalizer == Normalizer::kSoftmax) {
    for (const Candidate& candidate : candidates_) mass += std::exp(candidate.logit - max_logit_);
  } else {
    for (const Candidate& candidate : candidates_) mass += Weight(candidate);
  }

  // Sorted order: probability descending. Zero weights (underflowed exp, or outside a sparse
  // support) sit at the end of it; both walks stop there, which keeps probability-0 tokens from
  // ever being returned.
  size_t num_kept = candidates_.size();
  double kept_mass = mass;
  if (params_.top_p < 1.0f) {
    const double target = (static_cast<double>(params_.top_p) - kTopPSlack) * mass;
    double cumulative = 0.0;
    for (size_t i = 0; i < candidates_.size(); ++i) {
      SortThrough(i);
      const double weight = Weight(candidates_[i]);
      if (weight == 0.0) {
        num_kept = i;  // i >= 1: the most probable candidate has a positive weight
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
    const double weight = Weight(candidates_[i]);
    if (weight == 0.0) break;
    cumulative += weight;
    if (cumulative > threshold) return candidates_[i].id;
    last_positive = i;
  }
  // Reachable only through rounding (u * kept_mass rounding up to the mass, or the sorted-order sum
  // landing an ulp below `mass`): the draw was at the very top of [0, 1), so the last token wins.
  return candidates_[last_positive].id;
}

double Sampler::Weight(const Candidate& candidate) const {
  switch (params_.normalizer) {
    case Normalizer::kSoftmax:
      return std::exp(candidate.logit - max_logit_);
    case Normalizer::kSparsemax:
      return sparsemax_.Probability(candidate.logit);
    case Normalizer::kEntmax15:
      return entmax_.Probability(candidate.logit);
  }
  return 0.0;  // unreachable: the constructor checked the enumerator
}

void Sampler::NormalizeSparse() {
  // The support is a prefix of the sorted order, found by feeding sorted candidates to the
  // threshold until it covers them (engine/sampling/normalizers.h); only that far is sorted.
  const auto find_support = [this](auto& threshold) {
    threshold = {};
    size_t support = 0;
    double next = kNegInf;
    do {
      SortThrough(support);
      threshold.Add(candidates_[support].logit);
      ++support;
      next = kNegInf;
      if (support < candidates_.size()) {
        SortThrough(support);
        next = candidates_[support].logit;
      }
    } while (!threshold.IsComplete(next));
    return support;
  };
  const size_t support = params_.normalizer == Normalizer::kSparsemax ? find_support(sparsemax_)
                                                                      : find_support(entmax_);
  Truncate(support);
}

void Sampler::ApplyMinP() {
  SortThrough(0);
  const double cutoff = (static_cast<double>(params_.min_p) - kMinPSlack) * Weight(candidates_[0]);
  const auto keep = [&](const Candidate& candidate) { return Weight(candidate) >= cutoff; };
  // The kept set is a prefix of the sorted order. Within the sorted part, the first failure ends
  // it; if the sorted part passes entirely, partition the unsorted rest instead of sorting it.
  size_t num_kept = 0;
  while (num_kept < num_sorted_ && keep(candidates_[num_kept])) ++num_kept;
  if (num_kept == num_sorted_) {
    const auto unsorted = candidates_.begin() + static_cast<std::ptrdiff_t>(num_sorted_);
    num_kept += static_cast<size_t>(std::partition(unsorted, candidates_.end(), keep) - unsorted);
  }
  Truncate(num_kept);
}

void Sampler::Truncate(size_t size) {
  candidates_.resize(size);
  num_sorted_ = std::min(num_sorted_, size);
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
