// EngineObserver: what an engine reports about its own work, as plain structs, for metrics and
// request logs. The engine knows nothing about Prometheus; server/metrics.h turns these structs
// into metric families (vLLM's V1 split: the engine core emits stats, the front end exports them).
//
// Intervals follow vLLM's definitions, all on one monotonic clock (EngineOptions::clock):
//
//   arrival ──queue──▶ first scheduled ──prefill──▶ first token ──decode──▶ last token ─▶ finish
//   └──────────────── time to first token ────────┘└ ITL ┘└ ITL ┘ ...
//   └──────────────────────────────── end to end ──────────────────────────────────────────┘
//
// Threading: every callback runs on the engine thread, in the middle of the engine loop. It must be
// quick and must not block (no I/O, no locks that a slow thread may hold); prometheus-cpp's counter
// and histogram operations qualify. The structs are only valid during the call.
#ifndef KVSERVE_ENGINE_ENGINE_OBSERVER_H_
#define KVSERVE_ENGINE_ENGINE_OBSERVER_H_

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "cache/cache_spec.h"
#include "cache/kv_cache_manager.h"
#include "engine/clock.h"
#include "engine/request.h"

namespace kvserve::engine {

// The cache's memory kinds (cache/cache_spec.h), by the name metrics use.
using CacheKind = cache::MemoryKind;
inline constexpr int kNumCacheKinds = cache::kNumMemoryKinds;
inline std::string_view CacheKindName(CacheKind kind) { return cache::MemoryKindName(kind); }

struct CacheKindUsage {
  // Paged kinds: blocks of the pool that hold this kind (0 while there is no block pool).
  int64_t num_blocks = 0;
  int64_t num_used_blocks = 0;  // referenced by at least one sequence; the rest are free
  int64_t used_bytes = 0;       // held by sequences now
  int64_t capacity_bytes = 0;   // allocated for this kind (0 while memory is allocated per request)
};

struct CacheUsage {
  std::array<CacheKindUsage, kNumCacheKinds> kinds{};  // indexed by CacheKind
  int32_t num_state_slots = 0;                         // recurrent-state slots (0: none)
  int32_t num_used_state_slots = 0;
};

// The cache's occupancy by kind, as the observer reports it. One rule for the engine's reports and
// for the server's gauges before the first iteration (from Engine::stats().cache).
CacheUsage CacheUsageOf(const cache::CacheStats& stats);

// Scheduler and cache state at the end of an engine iteration (vLLM's SchedulerStats).
struct SchedulerStats {
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  CacheUsage cache;
};

// What one engine iteration did. Reported once per iteration, after its model steps; the engine
// reuses the vectors (cleared, capacity kept), so reporting allocates nothing per token.
struct IterationStats {
  int32_t num_scheduled_tokens = 0;   // tokens run through the model: prefill chunks + decodes
  int32_t num_prompt_tokens = 0;      // whole prompts of requests that got their first token
  int32_t num_generation_tokens = 0;  // tokens sampled
  int32_t num_preemptions = 0;
  int64_t num_prefix_cache_queries = 0;  // prompt tokens looked up in the prefix cache
  int64_t num_prefix_cache_hits = 0;     // of which found
  std::array<int64_t, kNumCacheKinds> num_evicted_blocks{};  // cached blocks reused, per kind
  std::vector<double> time_to_first_tokens;   // seconds from arrival, one per first token
  std::vector<double> inter_token_latencies;  // seconds since the same request's previous token
  SchedulerStats scheduler;
};

// One request, at its end (successful or not), before its last TokenEvent is delivered.
// Unset times (e.g. first_token_time of a request cancelled while queued) are SteadyTime{}.
struct RequestStats {
  RequestId id = 0;
  std::string_view request_id;  // GenerationRequest::request_id
  FinishReason finish_reason = FinishReason::kNone;
  int32_t num_prompt_tokens = 0;
  int32_t num_generation_tokens = 0;
  int32_t num_cached_prompt_tokens = 0;  // found in the prefix cache (0 until the paged cache)
  SteadyTime arrival_time;
  SteadyTime first_scheduled_time;
  SteadyTime first_token_time;
  SteadyTime last_token_time;
  SteadyTime finish_time;
};

// Receives an engine's stats. One observer per engine (per model), so label sets can be resolved
// once when the observer is built.
class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  // After every engine iteration (an iteration that only dropped cancelled requests included).
  virtual void OnIteration(const IterationStats& stats) = 0;
  // When a request ends, before its sink gets the final event.
  virtual void OnRequestFinished(const RequestStats& stats) = 0;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_ENGINE_OBSERVER_H_
