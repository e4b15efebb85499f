// Engine: the public face of one served model. Many threads submit and cancel requests here; one
// engine thread (EngineCore, engine_core.h) runs them.
//
// A request's path, forward: the server converts the wire request into a GenerationRequest
// (request.h) -> Submit validates it once (ValidateRequest) and queues it -> the engine thread
// takes it into the Scheduler (scheduler.h), which picks decode tokens and prefill chunks under the
// step's token budget and allocates their cache -> DecoderModel runs them in one batched step ->
// each sequence whose pending tokens are computed samples a token (Sampler), detokenizes, matches
// stop strings -> its TokenSink receives a TokenEvent. Cancel and SetHeld (backpressure from a
// sink whose client does not read) are the only calls back.
//
// This header is the mutex side: the incoming queue, the cancelled ids, the SetHeld calls and the
// published stats, all under mu_. Everything the engine thread owns (scheduler, sequences, model,
// cache, samplers) lives behind EngineCore and is not visible here (LevelDB's DB / DBImpl split).
//
// Thread-safety: every public method may be called from any thread.
#ifndef KVSERVE_ENGINE_ENGINE_H_
#define KVSERVE_ENGINE_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cache/cache_spec.h"
#include "cache/kv_cache_manager.h"
#include "engine/checkpoint/model_config.h"
#include "engine/clock.h"
#include "engine/engine_observer.h"
#include "engine/request.h"
#include "engine/text/chat_prompt.h"
#include "engine/text/tokenizer.h"

namespace kvserve::engine {

class EngineCore;    // engine_core.h: the engine thread
struct LoadedModel;  // model/model_loader.h
struct Sequence;     // sequence.h

struct EngineOptions {
  // Sequences scheduled concurrently (vLLM's max_num_seqs; a request with n samples counts n);
  // further requests wait in the queue. At most max_num_batched_tokens.
  int32_t max_num_seqs = 64;
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
  // Threads for the engine's matmuls (the kernels' ParallelFor, and OpenMP inside oneDNN); 0 =
  // auto (see EngineThreads).
  int32_t num_threads = 0;
  // KV-cache budget in bytes, allocated at start; 0 = derived from available memory (see
  // DefaultKvCacheBytes). A budget above the available memory fails Create.
  int64_t kv_cache_bytes = 0;
  // The memory the KV cache may take; nullopt = base::AvailableMemoryBytes() at Create. Tests set
  // it to stay independent of the machine.
  std::optional<int64_t> available_memory_bytes;
  // Tokens per KV-cache block.
  int32_t block_size = 16;
  // Storage of attention K/V in the cache: kBf16 halves its bytes (K and V rounded to nearest even
  // when written; attention widens them exactly and accumulates in f32). MLA latents and
  // recurrent state stay f32.
  cache::KvDtype kv_cache_dtype = cache::KvDtype::kF32;
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
  // Bytes the weights occupy in memory, in their storage format (a tied embedding counted once).
  int64_t weight_bytes = 0;
  // The matrices' storage: "f32", "bf16", "int8", or e.g. "bf16+f32" when mixed; norms are
  // always f32.
  std::string weight_dtype;
  int64_t kv_cache_bytes_per_token = 0;  // paged cache (K/V or MLA latents), all layers
  cache::KvDtype kv_cache_dtype = cache::KvDtype::kF32;  // attention K/V storage
  int64_t state_bytes_per_sequence = 0;  // recurrent state (S4 layers), all layers, f32
  int64_t kv_cache_bytes = 0;            // the whole cache's budget
  int32_t kv_cache_blocks = 0;
  int32_t block_size = 0;
  // What a request's sampling fields default to: the API's defaults overridden by the model's
  // generation_config.json (temperature, top_p, top_k, repetition_penalty), as vLLM does.
  SamplingParams default_sampling;
  // The smallest RoPE base b* that keeps f_b(m) = Σ_i cos(m θ_i) >= 0 for every distance m below
  // the context RoPE was trained for (ModelConfig::RopeTrainingContext), at the model's rotary
  // dims (docs/math.md §3.1); config.rope_theta below it draws a warning at load. 0: not computed
  // (no attention layer, or no base passes).
  double min_rope_theta = 0;
};

// A snapshot; a request's final TokenEvent is delivered only after it has left num_running and
// its blocks are counted free, so a client that saw its stream end sees consistent stats.
struct EngineStats {
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  int64_t num_finished = 0;
  int64_t num_preemptions = 0;
  // Sequences (running or waiting) held by backpressure (Engine::SetHeld), as of the last step.
  int32_t num_held = 0;
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
  // Starts the engine thread. `model` holds the loaded model and its tokenizer.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(std::string name, LoadedModel model,
                                                        const EngineOptions& options);
  ~Engine();  // Shutdown()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and enqueues. On OK the sink receives events until one with finished = true.
  // Errors: INVALID_ARGUMENT naming the GenerationRequest field ("max_tokens",
  // "sampling.top_p", "prompt_token_ids[3]", "stop[0]", ...; see ValidateRequest),
  // RESOURCE_EXHAUSTED (queue full, or a request no cache of this size can ever hold),
  // UNAVAILABLE (shut down).
  absl::StatusOr<RequestId> Submit(GenerationRequest request, std::shared_ptr<TokenSink> sink);

  // Ends a request within one engine step; its sink gets a final kCancelled event. Unknown or
  // already finished ids are ignored.
  void Cancel(RequestId id);

  // Backpressure, for a sink whose client reads slower than the engine generates: while held, the
  // request's samples take no engine step (running ones keep their cache blocks and running
  // slots; waiting ones are not admitted) and produce no event; SetHeld(id, false) lets them go
  // on. The engine thread applies the calls in call order before its next step, so a hold set from
  // within TokenSink::OnEvent takes effect before the request's next token. Cancel ends a held
  // request as any other; its deadline is checked whenever the engine wakes (with only held work
  // left it sleeps, and the server's gRPC deadline arrives as a Cancel). Unknown or finished ids
  // are ignored.
  void SetHeld(RequestId id, bool held);

  // Stops the engine thread; unfinished requests end with kAborted. Idempotent.
  void Shutdown();

  // While paused the engine thread takes no step and takes in no submitted request or cancel
  // (Submit and Cancel still queue them); Resume lets it go on. Tests use it to decide exactly
  // which requests and cancels one iteration sees, instead of racing the engine. The step under
  // way when Pause is called completes.
  void Pause();
  void Resume();

  const ModelInfo& info() const { return info_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  // The model's chat templates; Chat requests render with them on the caller's thread.
  const ChatPrompt& chat_prompt() const { return chat_prompt_; }
  // The clock request timings and deadlines are measured on; the server stamps arrivals with it.
  const Clock& clock() const { return *clock_; }
  EngineStats stats() const;

 private:
  friend class EngineCore;  // the engine thread reaches this side only through the calls below

  Engine(const EngineOptions& options, ModelInfo info, std::shared_ptr<const Tokenizer> tokenizer,
         const Clock* clock);
  // Checks a request against this model and these options; errors are INVALID_ARGUMENT naming the
  // GenerationRequest field. The one definition of a valid request (sampling parameters:
  // ValidateSamplingParams in sampling/sampler.h).
  absl::Status Validate(const GenerationRequest& request) const;
  // Seeds the samplers of a request without a seed of its own: reproducible per (engine seed,
  // request number); sample i adds i (Sequence::SampleParams).
  uint64_t FallbackSeed(RequestId id) const;

  // ---- The seam with the engine thread (EngineCore). ----
  // Blocks while there is nothing to do: nothing incoming, cancelled or held/released, not
  // stopping, and `core_idle` (no work that could be scheduled, held sequences aside). With
  // `idle_wait` (work exists that could not be scheduled) it waits at most a few milliseconds for
  // news. Moves the incoming sequences, cancelled ids and SetHeld calls out (in call order);
  // returns true when the engine is stopping.
  bool TakeWork(bool core_idle, bool idle_wait, std::vector<std::unique_ptr<Sequence>>* incoming,
                std::vector<RequestId>* cancelled,
                std::vector<std::pair<RequestId, bool>>* held_changes);
  // Publishes the scheduler's counts for stats() and Submit's queue bound. `fresh_waiting_seqs`:
  // sequences of waiting requests never admitted (preempted ones excluded).
  void PublishCounts(int32_t num_running_seqs, int32_t num_waiting, int32_t fresh_waiting_seqs,
                     int32_t num_held);
  void PublishCacheStats(const cache::CacheStats& stats);
  void CountFinishedRequest() { num_finished_.fetch_add(1); }
  void CountPreemptions(int64_t n) { num_preemptions_.fetch_add(n); }
  int32_t num_waiting() const { return num_waiting_.load(); }

  const EngineOptions options_;  // resolved (kv_cache_bytes filled in)
  const ModelInfo info_;
  const std::shared_ptr<const Tokenizer> tokenizer_;
  ChatPrompt chat_prompt_;            // set in Create, then const
  const Clock* clock_;                // options_.clock or a SteadyClock
  std::unique_ptr<EngineCore> core_;  // touched only by thread_ after Create
  // What the cache can ever hold, for Submit's RESOURCE_EXHAUSTED check: a copy, since the cache
  // itself belongs to the engine thread.
  cache::CacheCapacity cache_capacity_;

  mutable absl::Mutex mu_;
  absl::CondVar work_available_;
  std::deque<std::unique_ptr<Sequence>> incoming_ ABSL_GUARDED_BY(mu_);  // submitted, not queued
  std::vector<RequestId> cancelled_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<RequestId, bool>> held_changes_ ABSL_GUARDED_BY(mu_);  // SetHeld calls
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  // Sequences of accepted requests not yet admitted (preempted ones excluded): Submit's queue
  // bound.
  int32_t num_queued_seqs_ ABSL_GUARDED_BY(mu_) = 0;

  std::atomic<RequestId> next_id_{1};
  std::atomic<int32_t> num_running_{0};  // running sequences (scheduler's num_running_seqs)
  std::atomic<int32_t> num_waiting_{0};  // requests submitted and not yet admitted
  std::atomic<int32_t> num_held_{0};
  std::atomic<int64_t> num_finished_{0};
  std::atomic<int64_t> num_preemptions_{0};
  mutable absl::Mutex stats_mu_;
  cache::CacheStats cache_stats_ ABSL_GUARDED_BY(stats_mu_);
  std::thread thread_;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_ENGINE_H_
