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
    case FinishReason::kDeadline:
      return "deadline";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::string name, LoadedModel model,
                                                       const EngineOptions& options) {
  if (model.model == nullptr || model.tokenizer == nullptr) {
    return absl::InvalidArgumentError("Engine::Create: model and tokenizer are required");
  }
  if (options.max_running_requests < 1 || options.max_queued_requests < 0 ||
      options.prefill_chunk_tokens < 1 || options.max_num_batched_tokens < 1 ||
      options.num_threads < 0) {
    return absl::InvalidArgumentError("Engine::Create: options out of range");
  }
  if (options.max_num_batched_tokens < options.max_running_requests) {
    // Otherwise some running sequences could not even decode in a step.
    return absl::InvalidArgumentError(
        absl::StrCat("max_num_batched_tokens (", options.max_num_batched_tokens,
                     ") must be >= max_num_seqs (", options.max_running_requests, ")"));
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
  model_->set_batch_invariant(options_.batch_invariant);
  SchedulerConfig sched;
  sched.max_num_seqs = options_.max_running_requests;
  sched.max_num_batched_tokens = options_.max_num_batched_tokens;
  sched.max_chunk_tokens = options_.prefill_chunk_tokens;
  // Recurrent (S4) layers compute a chunk by FFT and a single token by recurrence, so their low
  // bits depend on where steps end: keep chunk boundaries a property of the sequence alone, on
  // block boundaries (where state checkpoints are saved), and replay generated tokens one by one.
  const bool recurrent = cache_->spec().HasRecurrentLayers();
  sched.fixed_chunks = recurrent;
  sched.align_chunks_to_blocks = recurrent;
  sched.replay_generated_tokens = recurrent;
  sched.model_name = name;
  scheduler_ = std::make_unique<Scheduler>(sched, cache_.get());
  // Each running sequence yields at most one token per iteration: no allocation per token later.
  iteration_stats_.time_to_first_tokens.reserve(options_.max_running_requests);
  iteration_stats_.inter_token_latencies.reserve(options_.max_running_requests);
  batch_.reserve(options_.max_running_requests);
  sampled_.reserve(options_.max_running_requests);
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
  // One logits row per sequence that samples in a step: at most one per running sequence.
  logits_.resize(int64_t{options_.max_running_requests} * config.vocab_size);
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
  const int32_t max_n = std::min(kMaxSamples, options_.max_running_requests);
  if (r.n < 1 || r.n > max_n) {
    return absl::InvalidArgumentError(
        absl::StrCat("n: must be in [1, ", max_n, "] (at most ", kMaxSamples,
                     " samples and at most --max-num-seqs), got ", r.n));
  }
  if (r.logprobs.has_value() && (*r.logprobs < 0 || *r.logprobs > kMaxLogprobs)) {
    return absl::InvalidArgumentError(
        absl::StrCat("logprobs: must be in [0, ", kMaxLogprobs, "], got ", *r.logprobs));
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
  const int32_t n = request.n;
  auto seq = std::make_unique<Sequence>(
      id, 0, std::make_shared<const GenerationRequest>(std::move(request)), std::move(sink),
      FallbackSeed(id));
  seq->group = std::make_shared<SampleGroup>();
  seq->group->unfinished = n;
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the engine is shutting down");
  // A request only waits if no running slot is free for it: the queue bound counts the sequences
  // of new requests beyond the free slots (preempted ones, already accepted, do not count), so
  // --max-queued-requests=0 still admits up to max_running_requests sequences at once.
  const int32_t free_slots =
      std::max(0, options_.max_running_requests - num_running_.load(std::memory_order_relaxed));
  if (num_queued_seqs_ + n > options_.max_queued_requests + free_slots) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the request queue is full (", options_.max_queued_requests, " waiting); retry later"));
  }
  incoming_.push_back(std::move(seq));
  num_queued_seqs_ += n;
  num_waiting_.fetch_add(1);
  work_available_.Signal();
  return id;
}

uint64_t Engine::FallbackSeed(RequestId id) const {
  return options_.seed * 0x9E3779B97F4A7C15ull + id;
}

void Engine::Cancel(RequestId id) {
  absl::MutexLock lock(&mu_);
  cancelled_.insert(id);
  work_available_.Signal();
}

void Engine::PublishCounts() {
  int32_t fresh_seqs = 0;  // waiting sequences never admitted (not preempted ones)
  for (const auto& s : scheduler_->waiting()) {
    if (s->first_scheduled_time == SteadyTime{}) fresh_seqs += s->num_seqs;
  }
  absl::MutexLock lock(&mu_);
  int32_t incoming_seqs = 0;
  for (const auto& s : incoming_) incoming_seqs += s->num_seqs;
  num_running_.store(scheduler_->num_running_seqs());
  num_waiting_.store(scheduler_->num_waiting() + static_cast<int32_t>(incoming_.size()));
  num_queued_seqs_ = fresh_seqs + incoming_seqs;
}

void Engine::Finish(Sequence* seq, TokenEvent event, FinishReason reason, absl::Status status) {
  std::unique_ptr<Sequence> owned = scheduler_->Remove(seq);
  // Before the sink learns the request is over, so a client that saw its stream end never sees
  // it still counted or its blocks in use.
  PublishCounts();
  PublishCacheStats();
  Deliver(*owned, std::move(event), reason, std::move(status));
}

int Engine::FinishRemoved(std::vector<std::unique_ptr<Sequence>> seqs, FinishReason reason,
                          const absl::Status& status) {
  if (seqs.empty()) return 0;
  PublishCounts();
  PublishCacheStats();
  for (auto& seq : seqs) Deliver(*seq, TokenEvent{}, reason, status);
  return static_cast<int>(seqs.size());
}

void Engine::Deliver(Sequence& seq, TokenEvent event, FinishReason reason, absl::Status status) {
  SampleGroup& group = *seq.group;
  group.unfinished -= seq.num_seqs;
  group.num_generated += seq.num_generated;
  // A request is reported once, when its last sample ends: its samples share the prompt (and were
  // forked in the step of their first token), the last one's times end the request.
  if (group.unfinished == 0) num_finished_.fetch_add(1);
  if (group.unfinished == 0 && options_.observer != nullptr) {
    RequestStats stats;
    stats.id = seq.id;
    stats.request_id = seq.request->request_id;
    stats.finish_reason = reason;
    stats.num_prompt_tokens = seq.prompt_len();
    stats.num_generation_tokens = static_cast<int32_t>(group.num_generated);
    stats.num_cached_prompt_tokens = seq.num_cached_prompt_tokens;
    stats.arrival_time = seq.request->arrival_time;
    stats.first_scheduled_time = seq.first_scheduled_time;
    stats.first_token_time = seq.first_token_time;
    stats.last_token_time = seq.last_token_time;
    stats.finish_time = clock_->Now();
    options_.observer->OnRequestFinished(stats);
  }
  KV_LOG(DEBUG) << "request " << seq.id << "." << seq.index << " (" << seq.request->request_id
                << ") finished: " << FinishReasonName(reason) << ", " << seq.num_generated
                << " tokens";
  // A request that ends before its samples were forked ends each of them here.
  for (int32_t i = 1; i < seq.num_seqs; ++i) {
    TokenEvent other;
    other.index = seq.index + i;
    other.finished = true;
    other.finish_reason = reason;
    other.status = status;
    other.prompt_tokens = seq.prompt_len();
    seq.sink->OnEvent(std::move(other));
  }
  event.index = seq.index;
  event.finished = true;
  event.finish_reason = reason;
  event.status = std::move(status);
  event.prompt_tokens = seq.prompt_len();
  event.completion_tokens = seq.num_generated;
  seq.sink->OnEvent(std::move(event));
}

void Engine::EmitToken(Sequence& seq, const float* logits) {
  const int32_t vocab = info_.config.vocab_size;
  const absl::Span<const float> row(logits, vocab);
  const int32_t token = seq.sampler.Sample(row);
  seq.tokens.push_back(token);
  ++seq.num_generated;
  // Token timings as vLLM defines them: TTFT from arrival, ITL between this sample's tokens.
  const SteadyTime now = clock_->Now();
  if (seq.num_generated == 1) {
    seq.first_token_time = now;
    if (seq.index == 0) iteration_stats_.num_prompt_tokens += seq.prompt_len();
    iteration_stats_.time_to_first_tokens.push_back(SecondsBetween(seq.request->arrival_time, now));
  } else {
    iteration_stats_.inter_token_latencies.push_back(SecondsBetween(seq.last_token_time, now));
  }
  seq.last_token_time = now;
  ++iteration_stats_.num_generation_tokens;

  TokenEvent event;
  event.index = seq.index;
  event.token_ids.push_back(token);
  if (seq.request->logprobs.has_value()) {
    ComputeLogprobs(row, token, *seq.request->logprobs, &event.logprobs.emplace_back());
  }
  FinishReason reason = FinishReason::kNone;
  const auto& eos = info_.config.eos_token_ids;
  const auto& stop_ids = seq.request->stop_token_ids;
  if (!seq.request->ignore_eos && std::find(eos.begin(), eos.end(), token) != eos.end()) {
    reason = FinishReason::kEos;
  } else if (std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end()) {
    reason = FinishReason::kStop;
  } else {
    StopStringMatcher::Result r = seq.stop.Push(seq.utf8.Push(tokenizer_->Decode(token)));
    event.text = std::move(r.text);
    if (r.stopped) reason = FinishReason::kStop;
  }
  if (reason == FinishReason::kNone && seq.num_generated >= seq.request->max_tokens) {
    reason = FinishReason::kLength;
  }
  if (reason == FinishReason::kNone) {
    seq.sink->OnEvent(std::move(event));
    return;
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
  Finish(&seq, std::move(event), reason, absl::OkStatus());
}

void Engine::ForkSamples(Sequence& parent, const float* logits) {
  for (int32_t i = parent.num_seqs - 1; i >= 1; --i) {
    auto child = std::make_unique<Sequence>(parent.id, parent.index + i, parent.request,
                                            parent.sink, FallbackSeed(parent.id));
    std::optional<cache::SequenceCache> forked = cache_->Fork(parent.cache);
    // The parent reserved running slots (and so recurrent-state slots) for its samples.
    KV_CHECK(forked.has_value()) << "no cache slot for a forked sample";
    child->cache = std::move(*forked);
    child->has_cache = true;
    child->num_computed = parent.num_computed;
    child->arrival_order = parent.arrival_order;
    child->first_scheduled_time = parent.first_scheduled_time;
    child->num_cached_prompt_tokens = parent.num_cached_prompt_tokens;
    child->group = parent.group;
    Sequence* c = child.get();
    scheduler_->AddFork(std::move(child), &parent);
    EmitToken(*c, logits);
  }
}

void Engine::RunStep(const SchedulerOutput& output) {
  batch_.clear();
  for (const ScheduledChunk& chunk : output.chunks) {
    Sequence& seq = *chunk.seq;
    const bool samples =
        seq.num_computed + chunk.num_tokens == static_cast<int32_t>(seq.tokens.size());
    batch_.push_back(DecoderModel::BatchEntry{
        absl::MakeConstSpan(seq.tokens).subspan(seq.num_computed, chunk.num_tokens),
        seq.num_computed, &seq.cache, samples, seq.prompt_len()});
  }
  model_->ForwardBatch(batch_, *cache_, logits_.data());
  sampled_.clear();
  for (const ScheduledChunk& chunk : output.chunks) {
    Sequence& seq = *chunk.seq;
    seq.num_computed += chunk.num_tokens;
    cache_->Commit(seq.cache, seq.tokens, seq.num_computed);
    if (seq.num_computed == static_cast<int32_t>(seq.tokens.size())) sampled_.push_back(&seq);
  }
  iteration_stats_.num_scheduled_tokens += output.num_scheduled_tokens;
  // Sampling may finish (and free) sequences; `output` is not used past this point.
  const int64_t vocab = info_.config.vocab_size;
  for (size_t k = 0; k < sampled_.size(); ++k) {
    const float* row = &logits_[k * vocab];
    if (sampled_[k]->num_seqs > 1) ForkSamples(*sampled_[k], row);
    EmitToken(*sampled_[k], row);
  }
}

namespace {
bool HasDeadline(const std::unique_ptr<Sequence>& s) {
  return s->request->deadline != SteadyTime{};
}
}  // namespace

void Engine::Loop() {
  // OpenMP's thread count is per calling thread: this sets it for every matmul the engine runs.
  omp_set_num_threads(EngineThreads(options_, model_->num_parameters()));
  absl::flat_hash_set<RequestId> cancelled;
  for (bool idle_wait = false;;) {
    bool stopping = false;
    {
      absl::MutexLock lock(&mu_);
      if (idle_wait && !stopping_ && incoming_.empty() && cancelled_.empty()) {
        // Something waits but nothing could be scheduled: the cache is full of preempted work or a
        // waiting request needs more than is free. Wake for news, or soon for deadlines.
        work_available_.WaitWithTimeout(&mu_, absl::Milliseconds(5));
      }
      while (!stopping_ && incoming_.empty() && cancelled_.empty() && scheduler_->empty()) {
        work_available_.Wait(&mu_);
      }
      stopping = stopping_;
      for (auto& seq : incoming_) {
        seq->arrival_order = next_arrival_++;
        scheduler_->AddWaiting(std::move(seq));
      }
      incoming_.clear();
      cancelled.swap(cancelled_);
    }
    // Cancelled requests leave from wherever they are; waiting ones are never prefilled.
    int ended = 0;
    if (!cancelled.empty()) {
      ended += FinishRemoved(
          scheduler_->RemoveIf([&](const Sequence& s) { return cancelled.contains(s.id); }),
          FinishReason::kCancelled, absl::CancelledError("request cancelled"));
      cancelled.clear();
    }
    if (stopping) {
      FinishRemoved(scheduler_->RemoveIf([](const Sequence&) { return true; }),
                    FinishReason::kAborted, absl::UnavailableError("the server is shutting down"));
      return;
    }
    // Only requests that carry a deadline make the engine read the clock here.
    const bool any_deadline =
        std::any_of(scheduler_->running().begin(), scheduler_->running().end(), HasDeadline) ||
        std::any_of(scheduler_->waiting().begin(), scheduler_->waiting().end(), HasDeadline);
    if (any_deadline) {
      const SteadyTime now = clock_->Now();
      ended += FinishRemoved(
          scheduler_->RemoveIf([now](const Sequence& s) {
            return s.request->deadline != SteadyTime{} && now >= s.request->deadline;
          }),
          FinishReason::kDeadline,
          absl::DeadlineExceededError("the request's deadline passed before it finished"));
    }

    const SchedulerOutput& output = scheduler_->Schedule(*clock_);
    num_preemptions_.fetch_add(output.num_preemptions);
    iteration_stats_.num_preemptions += output.num_preemptions;
    iteration_stats_.num_prefix_cache_queries += output.num_prefix_cache_queries;
    iteration_stats_.num_prefix_cache_hits += output.num_prefix_cache_hits;
    PublishCounts();
    idle_wait = output.chunks.empty();
    if (idle_wait) {
      // Requests that ended without a step still change what the observer's gauges show.
      if (ended > 0) ReportIteration(PublishCacheStats());
      continue;
    }
    RunStep(output);
    const cache::CacheStats cache_stats = PublishCacheStats();
    PublishCounts();
    ReportIteration(cache_stats);
  }
}

void Engine::ReportIteration(const cache::CacheStats& c) {
  if (options_.observer != nullptr) {
    SchedulerStats& sched = iteration_stats_.scheduler;
    sched.num_running = scheduler_->num_running_seqs();
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
