// Sequence: one sample of a generation request, from submission to its last event.
//
// A request with n > 1 samples is one Sequence (index 0) until its prompt is prefilled; then the
// engine forks n - 1 more that share the prompt's cache blocks. Each carries everything its
// decoding needs: tokens, cache block table, sampler, detokenizer and stop matcher.
//
// Thread-safety: none. A Sequence is created on a gRPC thread by Engine::Submit and from then on
// touched only by the engine thread (scheduler, model step, sampler).
#ifndef KVSERVE_ENGINE_SEQUENCE_H_
#define KVSERVE_ENGINE_SEQUENCE_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "cache/kv_cache_manager.h"
#include "engine/engine_observer.h"
#include "engine/request.h"
#include "engine/sampling/sampler.h"
#include "engine/text/stop_matcher.h"
#include "engine/text/utf8_stream.h"

namespace kvserve::engine {

// What the samples of one request share on the engine thread: the request finishes (and is
// reported once) when its last sample does.
struct SampleGroup {
  int32_t unfinished = 1;     // samples without their final event yet
  int64_t num_generated = 0;  // tokens of the samples that finished
  // prompt_logprobs: entries for prompt tokens 1, 2, ... scored so far (entry i from the logits at
  // position i), handed over whole to the request's first event; then sent = true.
  std::vector<TokenLogprobs> prompt_logprobs;
  bool prompt_logprobs_sent = false;
};

struct Sequence {
  // `request` is shared by the samples of one request; `seed` is the request's fallback seed.
  Sequence(RequestId id, int32_t index, std::shared_ptr<const GenerationRequest> req,
           std::shared_ptr<TokenSink> s, uint64_t seed)
      : id(id),
        index(index),
        request(std::move(req)),
        sink(std::move(s)),
        sampler(SampleParams(*request, index), seed + index, request->prompt_token_ids),
        stop(request->stop),
        tokens(request->prompt_token_ids),
        num_seqs(index == 0 ? request->n : 1) {
    // Every token it can ever hold: appending a sampled token never reallocates.
    tokens.reserve(request->prompt_token_ids.size() + request->max_tokens);
  }

  // Sample i of a seeded request draws from seed + i, so the n samples differ yet reproduce.
  static SamplingParams SampleParams(const GenerationRequest& request, int32_t index) {
    SamplingParams params = request.sampling;
    if (params.seed.has_value()) *params.seed += static_cast<uint64_t>(index);
    return params;
  }

  int32_t prompt_len() const { return static_cast<int32_t>(request->prompt_token_ids.size()); }
  // Tokens that still need a model step before the next sample: 1 while decoding.
  int32_t num_uncomputed() const { return static_cast<int32_t>(tokens.size()) - num_computed; }
  // True while the request's prompt_logprobs still lack entries: its prompt chunks then produce
  // logits at every position.
  bool scores_prompt() const {
    return request->prompt_logprobs.has_value() && !group->prompt_logprobs_sent &&
           static_cast<int32_t>(group->prompt_logprobs.size()) < prompt_len() - 1;
  }
  // How many leading tokens the prefix cache may serve at admission: all but the last (whose
  // logits are needed), and while scoring the prompt only the positions already scored, since a
  // cached position produces no logits.
  int32_t max_cached_prefix() const {
    const int32_t all_but_last = static_cast<int32_t>(tokens.size()) - 1;
    if (!scores_prompt()) return all_but_last;
    return std::min(all_but_last, static_cast<int32_t>(group->prompt_logprobs.size()));
  }

  const RequestId id;   // shared by the request's samples
  const int32_t index;  // sample index in [0, request->n)
  const std::shared_ptr<const GenerationRequest> request;
  const std::shared_ptr<TokenSink> sink;
  // Shared by the request's samples (set at Submit, copied into forks).
  std::shared_ptr<SampleGroup> group;
  // Submission order: FCFS among equal priorities; samples of a request share it.
  uint64_t arrival_order = 0;
  Sampler sampler;
  Utf8StreamDecoder utf8;
  StopStringMatcher stop;
  cache::SequenceCache cache;  // block table; valid while has_cache
  bool has_cache = false;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int32_t num_computed = 0;     // tokens whose K/V (or state) are in the cache
  // Running slots this sequence stands for: n for a request not yet forked into its samples, so
  // the forks always find room; 1 otherwise.
  int32_t num_seqs = 1;
  int32_t num_cached_prompt_tokens = 0;  // prompt tokens served by the prefix cache
  int32_t num_generated = 0;
  int32_t scheduled_tokens = 0;  // scheduler: tokens given to it in the current step
  // Backpressure (Engine::SetHeld): not scheduled and not admitted; keeps its cache meanwhile.
  bool held = false;
  // Timings for RequestStats (arrival is request->arrival_time); SteadyTime{} until they happen.
  SteadyTime first_scheduled_time;
  SteadyTime first_token_time;
  SteadyTime last_token_time;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_SEQUENCE_H_
