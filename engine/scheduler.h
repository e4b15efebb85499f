// Scheduler: decides, once per engine step, which tokens of which sequences the model computes.
//
// Iteration-level scheduling as in vLLM v1: there is no separate prefill phase. Every running
// sequence has tokens whose K/V are cached (num_computed) and tokens still to compute (the rest
// of its prompt, or its one newest sampled token). Each step gets a token budget
// (max_num_batched_tokens) and spends it in this order:
//   1. decode: one token for every running sequence that is decoding, oldest first;
//   2. prefill chunks of running sequences still in their prompt, oldest first, each at most
//      max_chunk_tokens, so a long prompt never stalls the streams already running;
//   3. admission: waiting sequences in (priority, arrival) order, lower priority value first, take
//      their first chunk while the budget, max_num_seqs and the cache allow. Admission stops at the
//      first one that does not fit (no overtaking: a large request is not starved by small ones).
// A chunk that does not fit in the budget left is cut to it, except with fixed_chunks, where it
// waits for a later step (and nothing is admitted behind it in that step): models whose numerics
// depend on chunk boundaries (S4's FFT vs recurrence) then see the same boundaries whatever else
// is in the batch.
//
// Held sequences (backpressure: their client is not reading, Engine::SetHeld) are skipped: a
// running one keeps its cache and slot but gets no tokens (it may still be preempted), a waiting
// one is passed over by admission, which goes on with the next.
//
// Preemption by recompute: when a running sequence needs a block and none is free, the running
// sequence with the highest (priority, arrival) — the least important, newest — gives its blocks
// back (possibly the one asking) and returns to the waiting queue with its output so far; it is
// recomputed, mostly from the prefix cache, when admitted again. A victim already scheduled in
// this step is unscheduled and its budget returned.
//
// Thread-safety: none; the engine thread owns the scheduler, its sequences and the cache.
#ifndef KVSERVE_ENGINE_SCHEDULER_H_
#define KVSERVE_ENGINE_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cache/kv_cache_manager.h"
#include "engine/engine_observer.h"
#include "engine/sequence.h"

namespace kvserve::engine {

struct SchedulerConfig {
  int32_t max_num_seqs = 64;             // running sequences (an unforked n-sample request: n)
  int32_t max_num_batched_tokens = 512;  // tokens per step
  int32_t max_chunk_tokens = 256;        // longest prefill chunk (capped at the budget)
  bool fixed_chunks = false;             // chunks never cut to the budget (see above)
  bool align_chunks_to_blocks = false;   // recurrent layers: unfinished chunks end on a block
  // Recurrent layers: a sequence recomputing after a preemption takes its prompt in chunks and its
  // generated tokens one per step, as they were first computed, so its state is bit-identical.
  bool replay_generated_tokens = false;
  std::string model_name;  // prefix-cache root, with each request's cache_salt
};

// One sequence's share of a step: positions [seq->num_computed, + num_tokens).
struct ScheduledChunk {
  Sequence* seq = nullptr;
  int32_t num_tokens = 0;
};

struct SchedulerOutput {
  std::vector<ScheduledChunk> chunks;  // decodes first, then prefill chunks, in schedule order
  int32_t num_scheduled_tokens = 0;
  int32_t num_preemptions = 0;
  int64_t num_prefix_cache_queries = 0;  // tokens looked up at admission
  int64_t num_prefix_cache_hits = 0;     // of those, found cached
};

class Scheduler {
 public:
  // REQUIRES: every limit >= 1. `cache` outlives the scheduler.
  Scheduler(const SchedulerConfig& config, cache::KvCacheManager* cache);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a sequence without cache (new, or given back). Order: (priority, arrival_order, index).
  void AddWaiting(std::unique_ptr<Sequence> seq);
  // Adds `child`, a sample forked from the running `parent` (holding cache, num_seqs 1), to the
  // running set right after it. It takes one of the slots the parent reserved:
  // parent->num_seqs drops by one. REQUIRES: parent->num_seqs > 1.
  void AddFork(std::unique_ptr<Sequence> child, Sequence* parent);

  // Plans the next step; `clock` stamps first_scheduled_time of newly admitted sequences (read
  // once, only if one is). The returned output stays valid until the next call. Scheduled
  // sequences have their slots allocated; the caller runs the model, then advances num_computed by
  // each chunk.
  const SchedulerOutput& Schedule(const Clock& clock);

  // Removes a sequence (running or waiting), freeing its cache. REQUIRES: it is in the scheduler.
  std::unique_ptr<Sequence> Remove(const Sequence* seq);
  // Removes every sequence for which pred is true, waiting and running, freeing their cache; in
  // running order, then waiting order.
  std::vector<std::unique_ptr<Sequence>> RemoveIf(const std::function<bool(const Sequence&)>& pred);

  // Holds (or lets go on) every sample of request `id`, running or waiting; unknown ids: no-op.
  void SetHeld(RequestId id, bool held);

  bool empty() const { return running_.empty() && waiting_.empty(); }
  // Whether any sequence is not held (the next Schedule may have work, cache permitting).
  bool has_schedulable() const;
  int32_t num_running_seqs() const { return num_running_seqs_; }  // sum of num_seqs
  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  const std::vector<std::unique_ptr<Sequence>>& running() const { return running_; }
  const std::deque<std::unique_ptr<Sequence>>& waiting() const { return waiting_; }
  const SchedulerConfig& config() const { return config_; }

 private:
  // Tokens of seq's next chunk that fit in `budget` (0 = none), given `computed` cached tokens.
  // Sets deferred_ when a fixed chunk had to wait for budget.
  int32_t ChunkSize(const Sequence& seq, int32_t computed, int32_t budget);
  // Schedules running_[i] (allocating, preempting as needed). False if it was preempted itself.
  bool ScheduleRunning(size_t i);
  void Preempt(size_t victim);
  // Admits waiting_[i] if it fits; false otherwise (nothing changed).
  bool TryAdmit(size_t i, const Clock& clock, SteadyTime* now);
  void FreeCache(Sequence& seq);

  const SchedulerConfig config_;
  cache::KvCacheManager* const cache_;
  const int32_t max_chunk_tokens_;
  std::vector<std::unique_ptr<Sequence>> running_;  // admission order; null = left this step
  std::deque<std::unique_ptr<Sequence>> waiting_;
  int32_t num_running_seqs_ = 0;
  int32_t budget_ = 0;     // during Schedule
  bool deferred_ = false;  // during Schedule: a fixed chunk waits for budget
  SchedulerOutput output_;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_SCHEDULER_H_
