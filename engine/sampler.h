// Per-request next-token sampling: greedy, temperature, top-k and top-p (nucleus) sampling.
//
//   Sampler sampler(request.sampling, /*fallback_seed=*/engine_seed ^ request_id);
//   int32_t token = sampler.Sample(logits);  // logits: {vocab}, used as scratch
//
// Results are reproducible: the same seed and the same sequence of logits give the same tokens. The
// random draws come from std::mt19937_64 (whose output the C++ standard fixes) turned into doubles
// by hand, so the draws are bit-identical across standard libraries. Probabilities go through
// std::exp, so a different libm may still pick a different token when a draw lands within rounding
// error of a cumulative-probability boundary.
#ifndef KVSERVE_ENGINE_SAMPLER_H_
#define KVSERVE_ENGINE_SAMPLER_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "absl/types/span.h"

namespace kvserve::engine {

struct SamplingParams {
  // 0 = greedy (argmax). Otherwise logits are divided by it before the softmax.
  float temperature = 1.0f;
  // Keep only the k most likely tokens; 0 = disabled; k >= vocab keeps every token.
  int32_t top_k = 0;
  // Keep the smallest set of most likely tokens whose probability mass reaches top_p; 1 = disabled.
  float top_p = 1.0f;
  // Seed for this request's random draws; unset = the engine picks one (the `fallback_seed`).
  std::optional<uint64_t> seed;
};

// Samples one token per call from a logits vector. Owns its RNG and scratch buffers, which are
// reused across calls: after the first call for a given vocabulary size, Sample() does not
// allocate. Not thread-safe: one Sampler per request, used on the engine thread.
//
// Defined behaviour, in order:
//   1. A NaN logit counts as -inf (never sampled); a +inf logit counts as the largest finite float,
//      so +inf tokens share all the probability mass equally.
//   2. temperature == 0: returns the argmax, ties to the lowest token id; top_k and top_p are
//      ignored and no random draw is consumed.
//   3. Otherwise: scale by 1/temperature; keep the top_k largest (ties at the cut go to the lower
//      id); softmax (max-subtracted, double accumulation); order the survivors by probability
//      descending, ties by lower id (compared on the scaled logits, so exp() rounding never creates
//      a tie that the true probabilities do not have); keep the shortest prefix whose cumulative
//      probability is >= top_p - 1e-6 (at least one token; the 1e-6 slack absorbs float rounding
//      of top_p and of the logits, so top_p = 0.8 over probabilities {0.5, 0.3, ...} keeps exactly
//      two tokens); renormalize; draw u in [0, 1) and return the first token in that order whose
//      cumulative probability exceeds u. A token whose probability underflows to exactly 0 in
//      double precision is never returned.
//   4. Every call with temperature > 0 consumes exactly one 64-bit draw, whatever the logits, so
//      the draw sequence of a request does not depend on the logits it saw.
//   5. If every logit is -inf or NaN there is nothing to sample: returns token 0 (the greedy
//      tie-break applied to all-equal logits) and, with temperature > 0, still consumes the draw.
class Sampler {
 public:
  // REQUIRES: params already validated: temperature finite and >= 0, top_k >= 0, top_p in (0, 1].
  // Violations abort (KV_CHECK). Uses params.seed when set, otherwise `fallback_seed`.
  Sampler(const SamplingParams& params, uint64_t fallback_seed);

  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;
  Sampler(Sampler&&) = default;
  Sampler& operator=(Sampler&&) = default;

  // Returns the sampled token id in [0, logits.size()). `logits` ({vocab}) may be overwritten.
  // REQUIRES: !logits.empty() and logits.size() fits in int32_t.
  int32_t Sample(absl::Span<float> logits);

  const SamplingParams& params() const { return params_; }

 private:
  int32_t SampleGreedy(absl::Span<const float> logits) const;
  int32_t SampleStochastic(absl::Span<const float> logits);
  // One uniform double in [0, 1) with 53 random bits.
  double NextUniform();

  // A token still in the running; its probability is exp(logit - max logit) / sum.
  struct Candidate {
    double logit;  // after temperature scaling
    int32_t id;
  };

  static bool MoreProbable(const Candidate& a, const Candidate& b);
  // Moves the `count` most probable of candidates_[begin, size()) to the front of that range.
  // Leaves them sorted (and returns true) when that was the cheaper way to select them.
  bool SelectMostProbable(size_t begin, size_t count);
  // Sorts candidates_ far enough that [0, index] is in final order. Candidates are sorted lazily,
  // a growing chunk at a time, because top-p and the draw usually stop after a few of them.
  void SortThrough(size_t index);

  SamplingParams params_;
  std::mt19937_64 rng_;
  // Scratch: capacity grows to the vocabulary on first use and is reused afterwards.
  std::vector<Candidate> candidates_;
  size_t num_sorted_ = 0;  // candidates_[0, num_sorted_) is in final order
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_SAMPLER_H_
