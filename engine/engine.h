// Engine: one model, one engine thread, many concurrent generation requests.
//
// Data path: Submit() validates and enqueues (any thread) -> each iteration the engine thread drops
// cancelled and expired requests, the Scheduler (scheduler.h) picks decode tokens and prefill
// chunks under the step's token budget and allocates their cache, DecoderModel runs them all in
// one batched step, and every sequence that completed its pending tokens samples, detokenizes,
// matches stop strings and hands a TokenEvent to its request's TokenSink.
//
// Threads meet at two seams only, both under mu_: the incoming queue and the set of cancelled ids.
// The engine thread alone owns the scheduler, the model, the caches, the samplers and the sinks'
// call sites.
//
// Thread-safety: every public method may be called from any thread.
#ifndef KVSERVE_ENGINE_ENGINE_H_
#define KVSERVE_ENGINE_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/engine_observer.h"
#include "engine/model_loader.h"
#include "engine/request.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"

namespace kvserve::engine {

struct EngineOptions {
  // Sequences scheduled concurrently (vLLM's max_num_seqs; a request with n samples counts n);
  // further requests wait in the queue. At most max_num_batched_tokens.
  int32_t max_running_requests = 64;
  // Token budget of one engine step: decode tokens of running sequences first, then prefill
  // chunks, all in one batched model step (vLLM's max_num_batched_tokens).
  int32_t max_num_batched_tokens = 512;
  // Every matmul computes each row exactly as it would alone (rows padded to a fixed minimum and
  // tiled; see Linear), so a greedy request yields the same tokens alone or in any batch. Costs
  // single-stream speed on small batches; false lets oneDNN pick per batch size.
  bool batch_invariant = true;
  // Requests allowed to wait beyond the free running slots, counted in sequences (a request with
  // n samples counts n); Submit beyond it fails with RESOURCE_EXHAUSTED.
  int32_t max_queued_requests = 1024;
  // Longest prefill chunk per engine step, so a long prompt does not stall running streams.
  int32_t prefill_chunk_tokens = 256;
  // Seeds requests that carry no seed of their own (mixed with the request id).
  uint64_t seed = 0;
  // Threads for the engine's matmuls (OpenMP inside oneDNN); 0 = auto (see EngineThreads).
  int32_t num_threads = 0;
  // KV-cache budget in bytes, allocated at start; 0 = derived from available memory (see
  // DefaultKvCacheBytes).
  int64_t kv_cache_bytes = 0;
  // Tokens per KV-cache block.
  int32_t block_size = 16;
  // Reuse cached full blocks of earlier prompts with the same prefix (and cache_salt).
  bool enable_prefix_caching = true;
  // Recurrent-state checkpoints kept for prefix reuse by models with recurrent (S4) layers.
  int32_t max_state_checkpoints = 256;
  // Receives iteration and request stats on the engine thread (engine_observer.h); null = none.
  std::shared_ptr<EngineObserver> observer;
  // Time source for request timings; null = std::chrono::steady_clock.
  std::shared_ptr<const Clock> clock;
};

// What ListModels reports about a served model.
struct ModelInfo {
  std::string name;
  std::string source;
  bool random_weights = false;
  ModelConfig config;
  std::string tokenizer;
  int64_t num_parameters = 0;
  int64_t kv_cache_bytes_per_token = 0;  // paged cache (K/V or MLA latents), all layers, f32
  int64_t state_bytes_per_sequence = 0;  // recurrent state (S4 layers), all layers, f32
  int64_t kv_cache_bytes = 0;            // the whole cache's budget
  int32_t kv_cache_blocks = 0;
  int32_t block_size = 0;
};

// A snapshot; a request's final TokenEvent is delivered only after it has left num_running and
// its blocks are counted free, so a client that saw its stream end sees consistent stats.
struct EngineStats {
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  int64_t num_finished = 0;
  int64_t num_preemptions = 0;
  int64_t kv_cache_bytes_in_use = 0;  // bytes of blocks referenced by sequences
  cache::CacheStats cache;            // as of the end of the last engine step
};

// Models below this many parameters run their matmuls on one thread when num_threads is 0.
inline constexpr int64_t kSmallModelParameters = 100'000'000;
// The engine's matmul threads: options.num_threads if set; else 1 for models under
// kSmallModelParameters and one per core for larger ones.
int32_t EngineThreads(const EngineOptions& options, int64_t num_parameters);

// The KV-cache budget used when EngineOptions::kv_cache_bytes is 0: enough for every running
// request at full context (plus state slots and checkpoints), but at most 40% of the memory
// available now (cgroup limits included).
int64_t DefaultKvCacheBytes(const cache::CacheSpec& spec, const ModelConfig& config,
                            const EngineOptions& options);

class Engine {
 public:
  // Starts the engine thread.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(std::string name, LoadedModel model,
                                                        const EngineOptions& options);
  ~Engine();  // Shutdown()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Checks a request against this model. Errors are INVALID_ARGUMENT and name the field as the API
  // spells it ("max_tokens", "sampling.top_p", "prompt_token_ids[3]", "stop[0]", ...).
  absl::Status Validate(const GenerationRequest& request) const;

  // Validates and enqueues. On OK the sink receives events until one with finished = true.
  // Errors: INVALID_ARGUMENT (see Validate), RESOURCE_EXHAUSTED (queue full), UNAVAILABLE (shut
  // down).
  absl::StatusOr<RequestId> Submit(GenerationRequest request, std::shared_ptr<TokenSink> sink);

  // Ends a request within one engine step; its sink gets a final kCancelled event. Unknown or
  // already finished ids are ignored.
  void Cancel(RequestId id);

  // Stops the engine thread; unfinished requests end with kAborted. Idempotent.
  void Shutdown();

  const ModelInfo& info() const { return info_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  EngineStats stats() const;

 private:
  Engine(std::string name, LoadedModel model, const EngineOptions& options,
         std::unique_ptr<cache::KvCacheManager> cache);
  void Loop();
  // Seeds the samplers of a request without a seed of its own: reproducible per (engine seed,
  // request number); sample i adds i (Sequence::SampleParams).
  uint64_t FallbackSeed(RequestId id) const;
  // Runs the scheduled chunks through the model in one batched step, then samples a token for
  // every sequence whose uncomputed tokens are all computed now.
  void RunStep(const SchedulerOutput& output);
  // Forks the n - 1 further samples of a request whose prompt is now prefilled; they share its
  // blocks and sample their first token from the same logits.
  void ForkSamples(Sequence& seq, const float* logits);
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
  // Copies cache statistics for stats(), which other threads read, and returns them.
  cache::CacheStats PublishCacheStats();
  // Publishes the scheduler's running and waiting counts for stats() and Submit's queue bound.
  void PublishCounts();
  // Hands iteration_stats_ (plus scheduler and cache state) to the observer and resets it.
  void ReportIteration(const cache::CacheStats& cache_stats);

  const EngineOptions options_;
  ModelInfo info_;
  std::unique_ptr<DecoderModel> model_;           // engine thread only
  std::unique_ptr<cache::KvCacheManager> cache_;  // engine thread only
  std::unique_ptr<Scheduler> scheduler_;          // engine thread only
  std::unique_ptr<Tokenizer> tokenizer_;          // const, shared
  std::vector<float> logits_;                     // engine thread only, [max seqs, vocab]
  std::vector<DecoderModel::BatchEntry> batch_;   // engine thread only
  std::vector<Sequence*> sampled_;                // engine thread only
  const Clock* clock_;                            // options_.clock or a SteadyClock
  IterationStats iteration_stats_;                // engine thread only; the current iteration's
  int64_t reported_evictions_ = 0;                // engine thread only
  uint64_t next_arrival_ = 0;                     // engine thread only

  mutable absl::Mutex mu_;
  absl::CondVar work_available_;
  std::deque<std::unique_ptr<Sequence>> incoming_ ABSL_GUARDED_BY(mu_);  // submitted, not queued
  absl::flat_hash_set<RequestId> cancelled_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Sequences of accepted requests not yet admitted (preempted ones excluded): Submit's queue
  // bound.
  int32_t num_queued_seqs_ ABSL_GUARDED_BY(mu_) = 0;

  std::atomic<RequestId> next_id_{1};
  std::atomic<int32_t> num_running_{0};  // running sequences (scheduler's num_running_seqs)
  std::atomic<int32_t> num_waiting_{0};  // requests submitted and not yet admitted
  std::atomic<int64_t> num_finished_{0};
  std::atomic<int64_t> num_preemptions_{0};
  mutable absl::Mutex stats_mu_;
  cache::CacheStats cache_stats_ ABSL_GUARDED_BY(stats_mu_);
  std::thread thread_;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_ENGINE_H_
