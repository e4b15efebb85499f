// EngineCore: the engine thread. It owns the scheduler, the sequences, the model, the paged cache,
// the samplers and the sinks' call sites, and runs the loop
//
//   take work (Engine::TakeWork) -> end cancelled and expired requests -> Scheduler::Schedule ->
//   DecoderModel::ForwardBatch -> sample, detokenize, match stop strings -> TokenSink::OnEvent
//
// It holds no lock of its own: everything here is touched by the engine thread alone. It meets
// other threads only through the Engine (engine.h): TakeWork for submitted sequences, cancelled
// ids and SetHeld calls, and the Publish* calls for the stats other threads read.
//
// Thread-safety: none; constructed by Engine::Create, then used only by the engine thread (Run).
#ifndef KVSERVE_ENGINE_ENGINE_CORE_H_
#define KVSERVE_ENGINE_ENGINE_CORE_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "cache/kv_cache_manager.h"
#include "engine/engine.h"
#include "engine/engine_observer.h"
#include "engine/model/decoder_model.h"
#include "engine/request.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"

namespace kvserve::engine {

class EngineCore {
 public:
  // `engine` outlives the core; model and cache are the engine's, built by Engine::Create.
  EngineCore(Engine* engine, std::unique_ptr<DecoderModel> model,
             std::unique_ptr<cache::KvCacheManager> cache);
  EngineCore(const EngineCore&) = delete;
  EngineCore& operator=(const EngineCore&) = delete;

  // The loop; returns after Engine::Shutdown, when every unfinished request has ended kAborted.
  void Run();

  // The cache's statistics now, for Engine::Create's first snapshot.
  cache::CacheStats cache_stats() const { return cache_->stats(); }

 private:
  // Runs the scheduled chunks through the model in one batched step, then samples a token for
  // every sequence whose uncomputed tokens are all computed now.
  void RunStep(const SchedulerOutput& output);
  // Forks the n - 1 further samples of a request whose prompt is now prefilled; they share its
  // blocks and sample their first token from the same logits.
  void ForkSamples(Sequence& seq, const float* logits);
  // Appends prompt_logprobs entries from the logits {num_rows, vocab} of seq's chunk starting at
  // seq.num_computed. REQUIRES: seq.scores_prompt().
  void ScorePrompt(Sequence& seq, int32_t num_rows, const float* rows);
  // Moves the request's prompt_logprobs into `event` if it asked for them and they were not sent.
  void TakePromptLogprobs(Sequence& seq, TokenEvent* event);
  // Ends a max_tokens = 0 request once its prompt is computed: one finished event (kLength)
  // carrying its prompt_logprobs.
  void FinishScoring(Sequence& seq);
  // Samples one token for seq from `logits` ({vocab}), streams it, and finishes seq when done.
  void EmitToken(Sequence& seq, const float* logits);
  // Removes seq from the scheduler (freeing its cache) and delivers its final event; for a
  // request not yet forked into its n samples, one final event per sample.
  void Finish(Sequence* seq, TokenEvent event, FinishReason reason, absl::Status status);
  // Ends sequences already taken out of the scheduler (cancel, deadline, shutdown); returns how
  // many.
  int FinishRemoved(std::vector<std::unique_ptr<Sequence>> seqs, FinishReason reason,
                    const absl::Status& status);
  void Deliver(Sequence& seq, TokenEvent event, FinishReason reason, absl::Status status);
  // Publishes the cache statistics for Engine::stats() and returns them.
  cache::CacheStats PublishCacheStats();
  // Publishes the scheduler's running and waiting counts for Engine::stats() and Submit's bound.
  void PublishCounts();
  // Hands iteration_stats_ (plus scheduler and cache state) to the observer and resets it.
  void ReportIteration(const cache::CacheStats& cache_stats);

  Engine& engine_;
  const EngineOptions& options_;  // engine_.options_
  const ModelInfo& info_;         // engine_.info_
  const Tokenizer& tokenizer_;
  const Clock& clock_;
  std::unique_ptr<DecoderModel> model_;
  std::unique_ptr<cache::KvCacheManager> cache_;
  std::unique_ptr<Scheduler> scheduler_;
  std::vector<float> logits_;  // [logit rows of a step, vocab]; max seqs rows at start
  std::vector<DecoderModel::BatchEntry> batch_;
  // Sequences that sample in this step, with their logits row {vocab} in logits_.
  std::vector<std::pair<Sequence*, const float*>> sampled_;
  IterationStats iteration_stats_;  // the current iteration's
  int64_t reported_evictions_ = 0;
  uint64_t next_arrival_ = 0;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_ENGINE_CORE_H_
