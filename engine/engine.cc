#include "engine/engine.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/system_memory.h"
#include "cache/kv_cache_manager.h"
#include "cache/prefix_hash.h"
#include "engine/stop_matcher.h"
#include "engine/utf8_stream.h"

namespace kvserve::engine {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kAborted:
      return "aborted";
  }
  return "unknown";
}

// A request from admission to its last event. Owned by waiting_ and then by the engine thread.
struct Engine::Sequence {
  Sequence(RequestId id, GenerationRequest req, std::shared_ptr<TokenSink> s, uint64_t seed)
      : id(id),
        request(std::move(req)),
        sink(std::move(s)),
        sampler(request.sampling, seed),
        stop(request.stop),
        tokens(request.prompt_token_ids) {}

  RequestId id;
  GenerationRequest request;
  std::shared_ptr<TokenSink> sink;
  Sampler sampler;
  Utf8StreamDecoder utf8;
  StopStringMatcher stop;
  cache::SequenceCache cache;  // block table; valid while running
  bool has_cache = false;
  std::vector<int32_t> tokens;           // prompt, then generated tokens
  int32_t num_computed = 0;              // tokens whose K/V are in the cache
  int32_t num_cached_prompt_tokens = 0;  // prompt tokens served by the prefix cache
  int32_t num_generated = 0;
  // Timings for RequestStats (arrival is request.arrival_time); SteadyTime{} until they happen.
  SteadyTime first_scheduled_time;
  SteadyTime first_token_time;
  SteadyTime last_token_time;
};

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::string name, LoadedModel model,
                                                       const EngineOptions& options) {
  if (model.model == nullptr || model.tokenizer == nullptr) {
    return absl::InvalidArgumentError("Engine::Create: model and tokenizer are required");
  }
  if (options.max_running_requests < 1 || options.max_queued_requests < 0 ||
      options.prefill_chunk_tokens < 1 || options.num_threads < 0) {
    return absl::InvalidArgumentError("Engine::Create: options out of range");
  }
  EngineOptions resolved = options;
  if (resolved.kv_cache_bytes == 0) {
    resolved.kv_cache_bytes = DefaultKvCacheBytes(model.model->CacheSpec(resolved.block_size),
                                                  model.model->config(), options);
  }
  cache::CacheOptions cache_options;
  cache_options.budget_bytes = resolved.kv_cache_bytes;
  cache_options.block_size = resolved.block_size;
  cache_options.max_sequences = resolved.max_running_requests;
  cache_options.enable_prefix_caching = resolved.enable_prefix_caching;
  cache_options.max_state_checkpoints = resolved.max_state_checkpoints;
  KV_ASSIGN_OR_RETURN(auto cache, cache::KvCacheManager::Create(
                                      model.model->CacheSpec(resolved.block_size), cache_options));
  return std::unique_ptr<Engine>(
      new Engine(std::move(name), std::move(model), resolved, std::move(cache)));
}

int32_t EngineThreads(const EngineOptions& options, int64_t num_parameters) {
  if (options.num_threads > 0) return options.num_threads;
  // A small model's per-step matmuls finish before woken OpenMP workers pay off (measured: the
  // 3M-parameter default model decodes ~1.8x faster on one thread than on two; docs/benchmarks.md).
  if (num_parameters < kSmallModelParameters) return 1;
  return omp_get_num_procs();
}

int64_t DefaultKvCacheBytes(const cache::CacheSpec& spec, const ModelConfig& config,
                            const EngineOptions& options) {
  const int64_t sequences = std::max<int64_t>(1, options.max_running_requests);
  const int64_t full_context =
      spec.PagedBytesPerToken() * config.max_position_embeddings * sequences +
      spec.StateBytesPerSequence() * (sequences + options.max_state_checkpoints);
  const int64_t available = base::AvailableMemoryBytes().value_or(int64_t{4} << 30);
  return std::max<int64_t>(std::min(full_context, available / 10 * 4),
                           spec.PagedBytesPerToken() * options.block_size +
                               spec.StateBytesPerSequence() * (1 + options.max_state_checkpoints));
}

Engine::Engine(std::string name, LoadedModel model, const EngineOptions& options,
               std::unique_ptr<cache::KvCacheManager> cache)
    : options_(options),
      model_(std::move(model.model)),
      cache_(std::move(cache)),
      tokenizer_(std::move(model.tokenizer)) {
  static const SteadyClock kSteadyClock;
  clock_ = options_.clock != nullptr ? options_.clock.get() : &kSteadyClock;
  // Each running sequence yields at most one token per iteration: no allocation per token later.
  iteration_stats_.time_to_first_tokens.reserve(options_.max_running_requests);
  iteration_stats_.inter_token_latencies.reserve(options_.max_running_requests);
  const ModelConfig& config = model_->config();
  info_.name = std::move(name);
  info_.source = std::move(model.source);
  info_.random_weights = model.random_weights;
  info_.config = config;
  info_.tokenizer = tokenizer_->name();
  info_.num_parameters = model_->num_parameters();
  info_.kv_cache_bytes_per_token = cache_->spec().PagedBytesPerToken();
  info_.state_bytes_per_sequence = cache_->spec().StateBytesPerSequence();
  info_.kv_cache_bytes = options_.kv_cache_bytes;
  info_.kv_cache_blocks = cache_->num_blocks();
  info_.block_size = cache_->block_size();
  logits_.resize(config.vocab_size);
  PublishCacheStats();
  thread_ = std::thread([this] { Loop(); });
}

Engine::~Engine() { Shutdown(); }

void Engine::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    work_available_.Signal();
  }
  if (thread_.joinable()) thread_.join();
}

EngineStats Engine::stats() const {
  EngineStats s;
  s.num_running = num_running_.load();
  s.num_waiting = num_waiting_.load();
  s.num_finished = num_finished_.load();
  s.num_preemptions = num_preemptions_.load();
  {
    absl::MutexLock lock(&stats_mu_);
    s.cache = cache_stats_;
  }
  for (int64_t bytes : s.cache.used_bytes) s.kv_cache_bytes_in_use += bytes;
  return s;
}

cache::CacheStats Engine::PublishCacheStats() {
  const cache::CacheStats stats = cache_->stats();
  absl::MutexLock lock(&stats_mu_);
  cache_stats_ = stats;
  return stats;
}

absl::Status Engine::Validate(const GenerationRequest& r) const {
  const ModelConfig& c = info_.config;
  const int64_t prompt_len = static_cast<int64_t>(r.prompt_token_ids.size());
  if (prompt_len == 0) return absl::InvalidArgumentError("prompt: must not be empty");
  for (size_t i = 0; i < r.prompt_token_ids.size(); ++i) {
    const int32_t id = r.prompt_token_ids[i];
    if (id < 0 || id >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prompt_token_ids[", i, "]: ", id, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  if (r.max_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens: must be >= 1, got ", r.max_tokens));
  }
  if (prompt_len + r.max_tokens > c.max_position_embeddings) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens: prompt length ", prompt_len, " + max_tokens ", r.max_tokens,
                     " exceeds the model's context length ", c.max_position_embeddings));
  }
  const SamplingParams& s = r.sampling;
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
  for (size_t i = 0; i < r.stop.size(); ++i) {
    if (r.stop[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("stop[", i, "]: must not be empty"));
    }
    if (!IsValidUtf8(r.stop[i])) {
      return absl::InvalidArgumentError(absl::StrCat("stop[", i, "]: must be valid UTF-8"));
    }
  }
  for (size_t i = 0; i < r.stop_token_ids.size(); ++i) {
    const int32_t id = r.stop_token_ids[i];
    if (id < 0 || id >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "stop_token_ids[", i, "]: ", id, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<RequestId> Engine::Submit(GenerationRequest request,
                                         std::shared_ptr<TokenSink> sink) {
  if (absl::Status s = Validate(request); !s.ok()) return s;
  const int64_t max_len =
      static_cast<int64_t>(request.prompt_token_ids.size()) + request.max_tokens;
  if (!cache_->CanEverFit(max_len)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "max_tokens: prompt length ", request.prompt_token_ids.size(), " + max_tokens ",
        request.max_tokens, " needs ", cache_->BlocksForTokens(max_len),
        " KV-cache blocks but the whole cache holds ", cache_->num_blocks(),
        " (raise --kv-cache-bytes)"));
  }
  if (request.arrival_time == SteadyTime{}) request.arrival_time = clock_->Now();
  const RequestId id = next_id_.fetch_add(1);
  // Unseeded requests still get a reproducible stream per (engine seed, request number).
  const uint64_t fallback_seed = options_.seed * 0x9E3779B97F4A7C15ull + id;
  auto seq = std::make_unique<Sequence>(id, std::move(request), std::move(sink), fallback_seed);
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the engine is shutting down");
  // A request only waits if no running slot is free for it: the queue bound counts those beyond
  // the free slots, so --max-queued-requests=0 still admits up to max_running_requests at once.
  const int32_t free_slots =
      std::max(0, options_.max_running_requests - num_running_.load(std::memory_order_relaxed));
  if (static_cast<int32_t>(waiting_.size()) >= options_.max_queued_requests + free_slots) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the request queue is full (", options_.max_queued_requests, " waiting); retry later"));
  }
  waiting_.push_back(std::move(seq));
  num_waiting_.store(static_cast<int32_t>(waiting_.size()));
  work_available_.Signal();
  return id;
}

void Engine::Cancel(RequestId id) {
  absl::MutexLock lock(&mu_);
  cancelled_.insert(id);
  work_available_.Signal();
}

void Engine::Finish(Sequence& seq, TokenEvent event, FinishReason reason, absl::Status status) {
  event.finished = true;
  event.finish_reason = reason;
  event.status = std::move(status);
  event.prompt_tokens = static_cast<int32_t>(seq.request.prompt_token_ids.size());
  event.completion_tokens = seq.num_generated;
  if (seq.has_cache) {  // it was running
    cache_->Free(seq.cache);
    seq.has_cache = false;
    // Before the sink learns the request is over, so a client that saw its stream end never sees
    // it still counted.
    num_running_.fetch_sub(1);
    PublishCacheStats();
  }
  num_finished_.fetch_add(1);
  if (options_.observer != nullptr) {
    RequestStats stats;
    stats.id = seq.id;
    stats.request_id = seq.request.request_id;
    stats.finish_reason = reason;
    stats.num_prompt_tokens = event.prompt_tokens;
    stats.num_generation_tokens = seq.num_generated;
    stats.num_cached_prompt_tokens = seq.num_cached_prompt_tokens;
    stats.arrival_time = seq.request.arrival_time;
    stats.first_scheduled_time = seq.first_scheduled_time;
    stats.first_token_time = seq.first_token_time;
    stats.last_token_time = seq.last_token_time;
    stats.finish_time = clock_->Now();
    options_.observer->OnRequestFinished(stats);
  }
  KV_LOG(DEBUG) << "request " << seq.id << " (" << seq.request.request_id
                << ") finished: " << FinishReasonName(reason) << ", " << seq.num_generated
                << " tokens";
  seq.sink->OnEvent(std::move(event));
}

Engine::StepResult Engine::Step(Sequence& seq) {
  const int32_t prompt_len = static_cast<int32_t>(seq.request.prompt_token_ids.size());
  // Tokens without K/V: the prompt (or, after a preemption, everything so far) in chunks, then one
  // sampled token per step. Only the step that computes the last of them samples.
  const int32_t total = static_cast<int32_t>(seq.tokens.size());
  int32_t n = std::min(total - seq.num_computed, options_.prefill_chunk_tokens);
  // Recurrent layers can only be checkpointed for prefix reuse where a step ends, so a chunk that
  // does not finish the prompt ends on a block boundary.
  if (cache_->spec().HasRecurrentLayers() && seq.num_computed + n < total) {
    const int32_t bs = cache_->block_size();
    const int32_t aligned = (seq.num_computed + n) / bs * bs - seq.num_computed;
    if (aligned > 0) n = aligned;
  }
  if (!cache_->AllocateSlots(seq.cache, seq.num_computed + n)) return StepResult::kOutOfBlocks;
  model_->Forward(absl::MakeConstSpan(seq.tokens).subspan(seq.num_computed, n), seq.num_computed,
                  *cache_, seq.cache, /*all_logits=*/false, logits_.data());
  seq.num_computed += n;
  cache_->Commit(seq.cache, seq.tokens, seq.num_computed);
  iteration_stats_.num_scheduled_tokens += n;
  if (seq.num_computed < total) return StepResult::kRunning;

  const int32_t token = seq.sampler.Sample(absl::MakeSpan(logits_));
  seq.tokens.push_back(token);
  ++seq.num_generated;
  // Token timings as vLLM defines them: TTFT from arrival, ITL between this request's tokens.
  const SteadyTime now = clock_->Now();
  if (seq.num_generated == 1) {
    seq.first_token_time = now;
    iteration_stats_.num_prompt_tokens += prompt_len;
    iteration_stats_.time_to_first_tokens.push_back(SecondsBetween(seq.request.arrival_time, now));
  } else {
    iteration_stats_.inter_token_latencies.push_back(SecondsBetween(seq.last_token_time, now));
  }
  seq.last_token_time = now;
  ++iteration_stats_.num_generation_tokens;

  TokenEvent event;
  event.token_ids.push_back(token);
  FinishReason reason = FinishReason::kNone;
  const auto& eos = info_.config.eos_token_ids;
  const auto& stop_ids = seq.request.stop_token_ids;
  if (!seq.request.ignore_eos && std::find(eos.begin(), eos.end(), token) != eos.end()) {
    reason = FinishReason::kEos;
  } else if (std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end()) {
    reason = FinishReason::kStop;
  } else {
    StopStringMatcher::Result r = seq.stop.Push(seq.utf8.Push(tokenizer_->Decode(token)));
    event.text = std::move(r.text);
    if (r.stopped) reason = FinishReason::kStop;
  }
  if (reason == FinishReason::kNone && seq.num_generated >= seq.request.max_tokens) {
    reason = FinishReason::kLength;
  }
  if (reason == FinishReason::kNone) {
    seq.sink->OnEvent(std::move(event));
    return StepResult::kRunning;
  }
  {
    // Release what the decoder and the stop matcher still hold; a trailing partial character
    // becomes U+FFFD, which could itself complete a stop string. After a stop-string match the
    // matcher ignores further input, so this is harmless then.
    StopStringMatcher::Result r = seq.stop.Push(seq.utf8.Flush());
    event.text += r.text;
    if (!r.stopped) {
      r = seq.stop.Flush();
      event.text += r.text;
    }
    if (r.stopped) reason = FinishReason::kStop;
  }
  Finish(seq, std::move(event), reason, absl::OkStatus());
  return StepResult::kFinished;
}

bool Engine::TryAdmit(Sequence& seq) {
  std::optional<cache::SequenceCache> cache =
      cache_->Begin(cache::PrefixRootHash(info_.name, seq.request.cache_salt));
  if (!cache.has_value()) return false;
  // The last token must be computed to produce logits, so at most size - 1 come from the cache.
  // Reusing cached blocks takes the free ones out of the free queue, so the first step must fit in
  // what is left: look first (changing nothing), then decide, then attach.
  const int32_t size = static_cast<int32_t>(seq.tokens.size());
  int32_t free_hit_blocks = 0;
  const int32_t hit = cache_->PeekCachedPrefix(*cache, seq.tokens, size - 1, &free_hit_blocks);
  const int32_t first_step_end = hit + std::min(size - hit, options_.prefill_chunk_tokens);
  const int32_t new_blocks = cache_->BlocksForTokens(first_step_end) - cache_->BlocksForTokens(hit);
  if (new_blocks > cache_->pool().num_free() - free_hit_blocks) {
    cache_->Free(*cache);
    return false;
  }
  KV_CHECK(cache_->AttachCachedPrefix(*cache, seq.tokens, size - 1) == hit);
  iteration_stats_.num_prefix_cache_queries += size;
  iteration_stats_.num_prefix_cache_hits += hit;
  // A request readmitted after a preemption finds its own blocks: not a prompt-cache hit.
  if (seq.first_scheduled_time == SteadyTime{}) seq.num_cached_prompt_tokens = hit;
  seq.cache = std::move(*cache);
  seq.has_cache = true;
  seq.num_computed = hit;
  return true;
}

void Engine::Preempt(std::unique_ptr<Sequence> seq) {
  cache_->Free(seq->cache);
  seq->has_cache = false;
  seq->num_computed = 0;
  num_running_.fetch_sub(1);
  num_preemptions_.fetch_add(1);
  ++iteration_stats_.num_preemptions;
  KV_LOG(DEBUG) << "request " << seq->id << " preempted after " << seq->num_generated
                << " tokens (out of KV-cache blocks)";
  absl::MutexLock lock(&mu_);
  waiting_.push_front(std::move(seq));
  num_waiting_.store(static_cast<int32_t>(waiting_.size()));
}

void Engine::Loop() {
  // OpenMP's thread count is per calling thread: this sets it for every matmul the engine runs.
  omp_set_num_threads(EngineThreads(options_, model_->num_parameters()));
  std::vector<std::unique_ptr<Sequence>> running;
  std::vector<std::unique_ptr<Sequence>> to_cancel;
  for (;;) {
    bool stopping = false;
    {
      absl::MutexLock lock(&mu_);
      while (!stopping_ && waiting_.empty() && cancelled_.empty() && running.empty()) {
        work_available_.Wait(&mu_);
      }
      stopping = stopping_;
      // Cancelled requests leave from wherever they are, without being prefilled.
      if (!cancelled_.empty()) {
        auto is_cancelled = [this](const std::unique_ptr<Sequence>& s) {
          return cancelled_.contains(s->id);
        };
        for (auto* list : {&running}) {
          for (auto& s : *list) {
            if (is_cancelled(s)) to_cancel.push_back(std::move(s));
          }
          std::erase(*list, nullptr);
        }
        for (auto it = waiting_.begin(); it != waiting_.end();) {
          if (is_cancelled(*it)) {
            to_cancel.push_back(std::move(*it));
            it = waiting_.erase(it);
          } else {
            ++it;
          }
        }
        cancelled_.clear();
      }
      if (stopping) {
        for (auto& s : waiting_) running.push_back(std::move(s));
        waiting_.clear();
      } else {
        // First come, first served: admission stops at the first request the cache cannot take.
        while (static_cast<int32_t>(running.size()) < options_.max_running_requests &&
               !waiting_.empty() && TryAdmit(*waiting_.front())) {
          running.push_back(std::move(waiting_.front()));
          waiting_.pop_front();
          if (running.back()->first_scheduled_time == SteadyTime{}) {
            running.back()->first_scheduled_time = clock_->Now();
          }
        }
      }
      // Updated under mu_ together with waiting_, so Submit never counts a request twice.
      // Admitted requests (those holding cache) count until Finish releases them; that includes
      // cancelled ones, and excludes waiting ones moved to `running` only to be aborted.
      auto admitted = [](const auto& seq) { return seq->has_cache; };
      num_running_.store(
          static_cast<int32_t>(std::count_if(running.begin(), running.end(), admitted) +
                               std::count_if(to_cancel.begin(), to_cancel.end(), admitted)));
      num_waiting_.store(static_cast<int32_t>(waiting_.size()));
    }
    for (auto& s : to_cancel) {
      Finish(*s, TokenEvent{}, FinishReason::kCancelled, absl::CancelledError("request cancelled"));
    }
    to_cancel.clear();
    if (stopping) {
      for (auto& s : running) {
        Finish(*s, TokenEvent{}, FinishReason::kAborted,
               absl::UnavailableError("the server is shutting down"));
      }
      num_running_.store(0);
      return;
    }
    // Each running request gets one step, oldest first. One that finds no free block preempts the
    // newest running request (possibly itself) and retries: recomputation by the newest costs the
    // least work already done, and the oldest always makes progress.
    for (size_t i = 0; i < running.size(); ++i) {
      if (running[i] == nullptr) continue;
      StepResult result;
      while ((result = Step(*running[i])) == StepResult::kOutOfBlocks) {
        size_t victim = running.size() - 1;
        while (running[victim] == nullptr) --victim;
        Preempt(std::move(running[victim]));
        if (victim == i) break;
      }
      if (result == StepResult::kFinished) running[i].reset();
    }
    std::erase(running, nullptr);
    const cache::CacheStats cache_stats = PublishCacheStats();
    num_running_.store(static_cast<int32_t>(running.size()));
    ReportIteration(static_cast<int32_t>(running.size()), cache_stats);
  }
}

void Engine::ReportIteration(int32_t num_running, const cache::CacheStats& c) {
  if (options_.observer != nullptr) {
    SchedulerStats& sched = iteration_stats_.scheduler;
    sched.num_running = num_running;
    sched.num_waiting = num_waiting_.load();
    sched.cache = CacheUsage{};
    for (int k = 0; k < kNumCacheKinds; ++k) {
      CacheKindUsage& usage = sched.cache.kinds[k];
      usage.used_bytes = c.used_bytes[k];
      usage.capacity_bytes = c.total_bytes[k];
      if (c.total_bytes[k] > 0 && k != static_cast<int>(CacheKind::kRecurrentState)) {
        usage.num_blocks = c.num_blocks;
        usage.num_used_blocks = c.num_used_blocks;
      }
    }
    sched.cache.num_state_slots = c.num_state_slots;
    sched.cache.num_used_state_slots = c.num_used_state_slots;
    const int64_t evictions = c.num_evictions - reported_evictions_;
    reported_evictions_ = c.num_evictions;
    // Paged kinds share the block table, so an evicted block is evicted in each paged kind the
    // model has (attention K/V, or MLA latents).
    for (int k = 0; k < kNumCacheKinds; ++k) {
      if (k != static_cast<int>(CacheKind::kRecurrentState) && c.total_bytes[k] > 0) {
        iteration_stats_.num_evicted_blocks[k] = evictions;
      }
    }
    options_.observer->OnIteration(iteration_stats_);
  }
  iteration_stats_.num_scheduled_tokens = 0;
  iteration_stats_.num_prompt_tokens = 0;
  iteration_stats_.num_generation_tokens = 0;
  iteration_stats_.num_preemptions = 0;
  iteration_stats_.num_prefix_cache_queries = 0;
  iteration_stats_.num_prefix_cache_hits = 0;
  iteration_stats_.num_evicted_blocks = {};
  iteration_stats_.time_to_first_tokens.clear();
  iteration_stats_.inter_token_latencies.clear();
}

}  // namespace kvserve::engine
