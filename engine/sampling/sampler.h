// Per-request next-token sampling: repetition/presence/frequency penalties, greedy, temperature,
// top-k, softmax/sparsemax/entmax-1.5, min-p and top-p (nucleus) sampling; and logprobs.
//
//   Sampler sampler(request.sampling, /*fallback_seed=*/engine_seed ^ request_id, prompt);
//   int32_t token = sampler.Sample(logits);  // logits: {vocab}, read only
//
// Results are reproducible: the same seed, prompt and sequence of logits give the same tokens. The
// random draws come from std::mt19937_64 (whose output the C++ standard fixes) turned into doubles
// by hand, so the draws are bit-identical across standard libraries. Probabilities go through
// std::exp and std::sqrt, so a different libm may still pick a different token when a draw lands
// within rounding error of a cumulative-probability boundary.
#ifndef KVSERVE_ENGINE_SAMPLING_SAMPLER_H_
#define KVSERVE_ENGINE_SAMPLING_SAMPLER_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/sampling/normalizers.h"

namespace kvserve::engine {

// What turns (penalized, temperature-scaled, top-k-truncated) logits into a distribution.
enum class Normalizer {
  kSoftmax,    // exp(x - max) / sum
  kSparsemax,  // Euclidean projection onto the simplex (Martins & Astudillo 2016): exact zeros
  kEntmax15,   // entmax with alpha = 1.5 (Peters, Niculae & Martins 2019): sparse, softer tail
};

struct SamplingParams {
  // 0 = greedy (argmax). Otherwise logits are divided by it before normalizing.
  float temperature = 1.0f;
  // Keep only the k most likely tokens; 0 = disabled; k >= vocab keeps every token.
  int32_t top_k = 0;
  // Keep the smallest set of most likely tokens whose probability mass reaches top_p; 1 = disabled.
  float top_p = 1.0f;
  // Keep tokens whose probability is >= min_p times the most likely token's; 0 = disabled.
  // Must be in [0, 1].
  float min_p = 0.0f;
  // > 0. Logits of tokens that occur in the prompt or the output so far are divided by it when
  // positive and multiplied by it when negative (CTRL, as in vLLM/HF); 1 = disabled.
  float repetition_penalty = 1.0f;
  // In [-2, 2]. Subtracted once from the logit of every token that occurs in the output so far
  // (OpenAI semantics; the prompt does not count).
  float presence_penalty = 0.0f;
  // In [-2, 2]. Subtracted from a token's logit once per occurrence in the output so far.
  float frequency_penalty = 0.0f;
  Normalizer normalizer = Normalizer::kSoftmax;
  // Seed for this request's random draws; unset = the engine picks one (the `fallback_seed`).
  std::optional<uint64_t> seed;
};

// The one definition of valid sampling parameters, used by Engine::Submit (to answer the client)
// and by Sampler (as a precondition). INVALID_ARGUMENT naming the field as
// GenerationRequest spells it ("sampling.top_p: must be in (0, 1], got 1.5").
absl::Status ValidateSamplingParams(const SamplingParams& params);

// One entry of a top-N logprobs list.
struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

// Log-probabilities for one generated token (see GenerationRequest::logprobs).
struct TokenLogprobs {
  float logprob = 0.0f;           // of the sampled token
  std::vector<TokenLogprob> top;  // the top-N, most likely first, ties to the lower id
};

// log_softmax(logits)[token] and the top_n most likely tokens (top_n may exceed the vocabulary:
// then all of them), computed in double precision (max-subtracted) and rounded to float. NaN logits
// count as -inf; +inf logits count as the largest finite float (so they share the mass, as in
// Sampler). If every logit is -inf or NaN, every logprob is -inf. Ties in `top` go to the lower id.
// Allocates only when out->top's capacity is below min(top_n, vocab).
// REQUIRES: 0 <= token < logits.size(); top_n >= 0.
void ComputeLogprobs(absl::Span<const float> logits, int32_t token, int32_t top_n,
                     TokenLogprobs* out);

// Samples one token per call from a logits vector. Owns its RNG, the request's penalty history and
// scratch buffers, which are reused across calls: after the first call for a given vocabulary size,
// Sample() does not allocate. With no penalty enabled the Sampler keeps no history at all; with one
// enabled it keeps one 4-byte counter per vocabulary entry. Not thread-safe: one Sampler per
// request (per parallel sample), used on the engine thread.
//
// Defined behaviour, in order:
//   1. A NaN logit counts as -inf (never sampled); a +inf logit counts as the largest finite float,
//      so +inf tokens share all the probability mass equally.
//   2. Penalties, on these logits in double precision. Let c(t) be the number of times token t is
//      among the tokens this Sampler returned so far. If repetition_penalty != 1 and t is in the
//      prompt or c(t) > 0, the logit x becomes x / repetition_penalty when x > 0, otherwise
//      x * repetition_penalty. Then x -= c(t) * frequency_penalty, and x -= presence_penalty when
//      c(t) > 0. The prompt counts for the repetition penalty only. -inf stays -inf.
//   3. temperature == 0: returns the argmax of the penalized logits, ties to the lowest token id;
//      top_k, normalizer, min_p and top_p are ignored and no random draw is consumed.
//   4. Otherwise, over the tokens whose penalized logit is not -inf:
//      a. scale by 1/temperature (in double, so a tiny temperature does not overflow);
//      b. top_k > 0: keep the top_k largest (ties at the cut go to the lower id);
//      c. normalize the survivors with `normalizer`: softmax (max-subtracted, double accumulation),
//         or sparsemax / entmax-1.5 (exact sort-based thresholds, engine/sampling/normalizers.h),
//         which give exact zeros;
//      d. order them by probability descending, ties by lower id (compared on the scaled logits,
//         so rounding never creates a tie that the true probabilities do not have);
//      e. min_p > 0: keep the tokens whose probability is >= (min_p - 1e-6) * the largest one;
//      f. top_p < 1: renormalize, keep the shortest prefix whose cumulative probability is
//         >= top_p - 1e-6 (at least one token);
//      g. renormalize, draw u in [0, 1) and return the first token in that order whose
//         cumulative probability exceeds u.
//      The 1e-6 slacks absorb float rounding of min_p, top_p and the logits, so top_p = 0.8 over
//      probabilities {0.5, 0.3, ...} keeps exactly two tokens, and min_p = 0.6 keeps a 0.3 next to
//      a 0.5. A token whose probability is exactly 0 in double precision (a sparsemax/entmax zero,
//      or an underflowed exp) is never returned.
//   5. Every call with temperature > 0 consumes exactly one 64-bit draw, whatever the logits, so
//      the draw sequence of a request does not depend on the logits it saw.
//   6. If every logit is -inf or NaN there is nothing to sample: returns token 0 (the greedy
//      tie-break applied to all-equal logits) and, with temperature > 0, still consumes the draw.
//   7. Every returned token (token 0 of rule 6 included) is appended to the output history that
//      rule 2 counts.
class Sampler {
 public:
  // REQUIRES: ValidateSamplingParams(params).ok(); violations abort (KV_CHECK). Uses params.seed
  // when set, otherwise `fallback_seed`. `prompt` is read only for the repetition penalty (and
  // copied only when repetition_penalty != 1); ids outside [0, vocab) never match a logit.
  Sampler(const SamplingParams& params, uint64_t fallback_seed, absl::Span<const int32_t> prompt);

  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;
  Sampler(Sampler&&) = default;
  Sampler& operator=(Sampler&&) = default;

  // Returns the sampled token id in [0, logits.size()) and records it in the output history.
  // `logits` ({vocab}) is not modified, so one row can serve several Samplers and logprobs.
  // REQUIRES: !logits.empty() and logits.size() fits in int32_t.
  int32_t Sample(absl::Span<const float> logits);

  const SamplingParams& params() const { return params_; }

 private:
  // A token still in the running.
  struct Candidate {
    double logit;  // after penalties and temperature scaling
    int32_t id;
  };

  bool penalties_enabled() const;
  // Sizes history_ for `vocab` (allocates only when it grows) and marks the prompt in it.
  void PrepareHistory(size_t vocab);
  // Rule 1 and rule 2 for logits[i].
  double PenalizedLogit(absl::Span<const float> logits, size_t i) const;
  void RecordOutput(int32_t token);

  int32_t SampleGreedy(absl::Span<const float> logits) const;
  int32_t SampleStochastic(absl::Span<const float> logits);
  // Unnormalized probability of a candidate under params_.normalizer, once NormalizeSparse (for
  // the sparse normalizers) has run: the most probable candidate has the largest weight.
  double Weight(const Candidate& candidate) const;
  // Finds the sparsemax/entmax support by sorting lazily and drops the candidates outside it.
  void NormalizeSparse();
  // Drops the candidates with Weight < (min_p - slack) * the largest weight.
  void ApplyMinP();
  // candidates_.resize(size), keeping num_sorted_ consistent.
  void Truncate(size_t size);
  // One uniform double in [0, 1) with 53 random bits.
  double NextUniform();

  static bool MoreProbable(const Candidate& a, const Candidate& b);
  // Moves the `count` most probable of candidates_[begin, size()) to the front of that range.
  // Leaves them sorted (and returns true) when that was the cheaper way to select them.
  bool SelectMostProbable(size_t begin, size_t count);
  // Sorts candidates_ far enough that [0, index] is in final order. Candidates are sorted lazily,
  // a growing chunk at a time, because top-p and the draw usually stop after a few of them.
  void SortThrough(size_t index);

  SamplingParams params_;
  std::mt19937_64 rng_;
  // Prompt token ids; filled only when repetition_penalty != 1.
  std::vector<int32_t> prompt_;
  // Per token id: output occurrences in the low 31 bits, kInPrompt when it occurs in prompt_ (only
  // marked when repetition_penalty != 1). Empty unless a penalty is enabled; sized on first use.
  std::vector<uint32_t> history_;

  // Scratch: capacity grows to the vocabulary on first use and is reused afterwards.
  std::vector<Candidate> candidates_;
  size_t num_sorted_ = 0;   // candidates_[0, num_sorted_) is in final order
  double max_logit_ = 0.0;  // the largest candidate logit of the current call (softmax weights)
  SparsemaxThreshold sparsemax_;  // the current call's threshold, for kSparsemax
  Entmax15Threshold entmax_;      // the current call's threshold, for kEntmax15
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_SAMPLING_SAMPLER_H_
