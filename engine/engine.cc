#include "engine/engine.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/system_memory.h"
#include "cache/kv_cache_manager.h"
#include "engine/engine_core.h"
#include "engine/kernels/thread_pool.h"
#include "engine/layers/rope_base_bound.h"
#include "engine/model/model_loader.h"
#include "engine/sequence.h"
#include "engine/text/utf8_stream.h"

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

namespace {

// b* (docs/math.md §3.1) for the model's rotary dims and RoPE training context, 0 when it has no
// attention layer or no base passes. Memoised per shape: tests and multi-model servers create many
// engines of the same shape, and one computation at 128k tokens takes about half a second.
double MinRopeTheta(const ModelConfig& config) {
  const bool has_attention =
      config.layer_types.empty() || std::find(config.layer_types.begin(), config.layer_types.end(),
                                              LayerType::kAttention) != config.layer_types.end();
  if (!has_attention) return 0;
  const int64_t dims = config.mla.has_value() ? config.mla->qk_rope_head_dim : config.head_dim;
  const int64_t context = config.RopeTrainingContext();
  if (dims < 2 || context < 1) return 0;
  static absl::Mutex mu;
  static auto* known = new std::map<std::pair<int64_t, int64_t>, double>();
  absl::MutexLock lock(&mu);
  auto [it, inserted] = known->try_emplace({dims, context}, 0.0);
  if (inserted) {
    const std::optional<RopeBaseBound> bound = MinRopeBase(dims, context);
    it->second = bound.has_value() ? bound->min_base : 0.0;
  }
  return it->second;
}

// Logs when the base is below b*: a warning for trained weights, a note for random ones.
void CheckRopeBase(const ModelInfo& info) {
  const ModelConfig& c = info.config;
  if (info.min_rope_theta <= 0 || c.rope_theta >= info.min_rope_theta) return;
  std::string scaled;
  if (c.rope_scaling.has_value() || c.yarn.has_value()) {
    scaled = absl::StrCat(" (rope_scaling is set: the unscaled rope_theta is compared at the ",
                          c.RopeTrainingContext(), " tokens RoPE was trained on, not at ",
                          c.max_position_embeddings, ")");
  }
  const std::string message = absl::StrCat(
      "model ", info.name, ": rope_theta ", c.rope_theta, " is below ", info.min_rope_theta,
      ", the smallest RoPE base keeping sum_i cos(m theta_i) >= 0 for all distances m < ",
      c.RopeTrainingContext(), " at ", c.mla.has_value() ? c.mla->qk_rope_head_dim : c.head_dim,
      " rotary dims (docs/math.md 3.1): at long range, keys similar to the query may no longer "
      "score above random ones",
      scaled);
  if (info.random_weights) {
    KV_LOG(INFO) << message << " (random weights: informational)";
  } else {
    KV_LOG(WARNING) << message;
  }
}

std::optional<int64_t> AvailableMemory(const EngineOptions& options) {
  return options.available_memory_bytes.has_value() ? options.available_memory_bytes
                                                    : base::AvailableMemoryBytes();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::string name, LoadedModel model,
                                                       const EngineOptions& options) {
  if (model.model == nullptr || model.tokenizer == nullptr) {
    return absl::InvalidArgumentError("Engine::Create: model and tokenizer are required");
  }
  if (options.max_num_seqs < 1 || options.max_queued_requests < 0 ||
      options.prefill_chunk_tokens < 1 || options.max_num_batched_tokens < 1 ||
      options.num_threads < 0) {
    return absl::InvalidArgumentError("Engine::Create: options out of range");
  }
  if (options.max_num_batched_tokens < options.max_num_seqs) {
    // Otherwise some running sequences could not even decode in a step.
    return absl::InvalidArgumentError(
        absl::StrCat("max_num_batched_tokens (", options.max_num_batched_tokens,
                     ") must be >= max_num_seqs (", options.max_num_seqs, ")"));
  }
  EngineOptions resolved = options;
  const cache::CacheSpec spec =
      model.model->CacheSpec(resolved.block_size, resolved.kv_cache_dtype);
  if (resolved.kv_cache_bytes == 0) {
    resolved.kv_cache_bytes = DefaultKvCacheBytes(spec, model.model->config(), options);
  } else if (const std::optional<int64_t> available = AvailableMemory(options);
             available.has_value() && resolved.kv_cache_bytes > *available) {
    // The budget is allocated up front but touched lazily: without this check an oversized one
    // starts fine and is OOM-killed under load instead.
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv-cache-bytes: ", resolved.kv_cache_bytes, " bytes is more than the ", *available,
        " bytes of memory available now (the smaller of MemAvailable and the cgroup limit, after "
        "loading the model)"));
  }
  cache::CacheOptions cache_options;
  cache_options.budget_bytes = resolved.kv_cache_bytes;
  cache_options.block_size = resolved.block_size;
  cache_options.max_sequences = resolved.max_num_seqs;
  cache_options.enable_prefix_caching = resolved.enable_prefix_caching;
  cache_options.max_state_checkpoints = resolved.max_state_checkpoints;
  KV_ASSIGN_OR_RETURN(std::unique_ptr<cache::KvCacheManager> cache,
                      cache::KvCacheManager::Create(spec, cache_options));

  ModelInfo info;
  const GenerationConfig& g = model.generation;
  if (g.temperature.has_value()) info.default_sampling.temperature = *g.temperature;
  if (g.top_p.has_value()) info.default_sampling.top_p = *g.top_p;
  if (g.top_k.has_value()) info.default_sampling.top_k = *g.top_k;
  if (g.repetition_penalty.has_value()) {
    info.default_sampling.repetition_penalty = *g.repetition_penalty;
  }
  if (absl::Status s = ValidateSamplingParams(info.default_sampling); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("generation_config.json: ", s.message(), " (as a default sampling value)"));
  }
  info.name = std::move(name);
  info.source = std::move(model.source);
  info.random_weights = model.random_weights;
  info.config = model.model->config();
  info.tokenizer = model.tokenizer->name();
  info.num_parameters = model.model->num_parameters();
  info.weight_bytes = model.model->weight_bytes();
  info.weight_dtype = model.model->weight_formats();
  info.kv_cache_bytes_per_token = cache->spec().PagedBytesPerToken();
  info.kv_cache_dtype = resolved.kv_cache_dtype;
  info.state_bytes_per_sequence = cache->spec().StateBytesPerSequence();
  info.kv_cache_bytes = resolved.kv_cache_bytes;
  info.kv_cache_blocks = cache->num_blocks();
  info.block_size = cache->block_size();
  info.min_rope_theta = MinRopeTheta(info.config);
  CheckRopeBase(info);

  static const SteadyClock kSteadyClock;
  const Clock* clock = resolved.clock != nullptr ? resolved.clock.get() : &kSteadyClock;
  std::unique_ptr<Engine> engine(
      new Engine(resolved, std::move(info), std::move(model.tokenizer), clock));
  engine->chat_prompt_ = std::move(model.chat);
  engine->cache_capacity_ = cache->capacity();
  engine->core_ =
      std::make_unique<EngineCore>(engine.get(), std::move(model.model), std::move(cache));
  engine->PublishCacheStats(engine->core_->cache_stats());
  engine->thread_ = std::thread([core = engine->core_.get()] { core->Run(); });
  return engine;
}

int32_t EngineThreads(const EngineOptions& options, int64_t num_parameters) {
  if (options.num_threads > 0) return options.num_threads;
  // A small model's per-step matmuls finish before woken workers pay off (measured with OpenMP:
  // the 3M-parameter default model decoded ~1.8x faster on one thread than on two;
  // docs/benchmarks.md).
  if (num_parameters < kSmallModelParameters) return 1;
  return AvailableCpus();
}

int64_t DefaultKvCacheBytes(const cache::CacheSpec& spec, const ModelConfig& config,
                            const EngineOptions& options) {
  const int64_t sequences = std::max<int64_t>(1, options.max_num_seqs);
  const int64_t full_context =
      spec.PagedBytesPerToken() * config.max_position_embeddings * sequences +
      spec.StateBytesPerSequence() * (sequences + options.max_state_checkpoints);
  const int64_t available = AvailableMemory(options).value_or(int64_t{4} << 30);
  return std::max<int64_t>(std::min(full_context, available / 10 * 4),
                           spec.PagedBytesPerToken() * options.block_size +
                               spec.StateBytesPerSequence() * (1 + options.max_state_checkpoints));
}

Engine::Engine(const EngineOptions& options, ModelInfo info,
               std::shared_ptr<const Tokenizer> tokenizer, const Clock* clock)
    : options_(options), info_(std::move(info)), tokenizer_(std::move(tokenizer)), clock_(clock) {}

Engine::~Engine() { Shutdown(); }

void Engine::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    work_available_.Signal();
  }
  if (thread_.joinable()) thread_.join();
}

void Engine::Pause() {
  absl::MutexLock lock(&mu_);
  paused_ = true;
}

void Engine::Resume() {
  absl::MutexLock lock(&mu_);
  paused_ = false;
  work_available_.Signal();
}

EngineStats Engine::stats() const {
  EngineStats s;
  s.num_running = num_running_.load();
  s.num_waiting = num_waiting_.load();
  s.num_finished = num_finished_.load();
  s.num_preemptions = num_preemptions_.load();
  s.num_held = num_held_.load();
  {
    absl::MutexLock lock(&stats_mu_);
    s.cache = cache_stats_;
  }
  for (int64_t bytes : s.cache.used_bytes) s.kv_cache_bytes_in_use += bytes;
  return s;
}

void Engine::PublishCacheStats(const cache::CacheStats& stats) {
  absl::MutexLock lock(&stats_mu_);
  cache_stats_ = stats;
}

absl::Status Engine::Validate(const GenerationRequest& r) const {
  const ModelConfig& c = info_.config;
  if (r.request_id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id: ", r.request_id.size(), " bytes, at most ", kMaxRequestIdBytes));
  }
  if (r.cache_salt.size() > kMaxCacheSaltBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("cache_salt: ", r.cache_salt.size(), " bytes, at most ", kMaxCacheSaltBytes));
  }
  const int64_t prompt_len = static_cast<int64_t>(r.prompt_token_ids.size());
  if (prompt_len == 0) return absl::InvalidArgumentError("prompt: must not be empty");
  for (size_t i = 0; i < r.prompt_token_ids.size(); ++i) {
    const int32_t id = r.prompt_token_ids[i];
    if (id < 0 || id >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prompt_token_ids[", i, "]: ", id, " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
  }
  if (r.prompt_logprobs.has_value() &&
      (*r.prompt_logprobs < 0 || *r.prompt_logprobs > kMaxLogprobs)) {
    return absl::InvalidArgumentError(absl::StrCat("prompt_logprobs: must be in [0, ", kMaxLogprobs,
                                                   "], got ", *r.prompt_logprobs));
  }
  // Scoring alone (prompt_logprobs, nothing generated) is max_tokens 0, as OpenAI's echo.
  if (r.max_tokens < 0 || (r.max_tokens == 0 && !r.prompt_logprobs.has_value())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_tokens: must be >= 1 (or 0 with prompt_logprobs set), got ", r.max_tokens));
  }
  if (prompt_len + r.max_tokens > c.max_position_embeddings) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens: prompt length ", prompt_len, " + max_tokens ", r.max_tokens,
                     " exceeds the model's context length ", c.max_position_embeddings));
  }
  KV_RETURN_IF_ERROR(ValidateSamplingParams(r.sampling));
  const int32_t max_n = std::min(kMaxSamples, options_.max_num_seqs);
  if (r.n < 1 || r.n > max_n) {
    return absl::InvalidArgumentError(
        absl::StrCat("n: must be in [1, ", max_n, "] (at most ", kMaxSamples,
                     " samples and at most --max-num-seqs), got ", r.n));
  }
  if (r.max_tokens == 0 && r.n != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("n: must be 1 when max_tokens is 0 (nothing is sampled), got ", r.n));
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
  if (!cache_capacity_.CanEverFit(max_len)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "max_tokens: prompt length ", request.prompt_token_ids.size(), " + max_tokens ",
        request.max_tokens, " needs ", cache_capacity_.BlocksForTokens(max_len),
        " KV-cache blocks but the whole cache holds ", cache_capacity_.num_blocks,
        " (raise --kv-cache-bytes)"));
  }
  if (request.arrival_time == SteadyTime{}) request.arrival_time = clock_->Now();
  const RequestId id = next_id_.fetch_add(1);
  // Outside mu_: sinks take their own lock and call SetHeld (which takes mu_) under it.
  sink->OnAccepted(id);
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
  // --max-queued-requests=0 still admits up to max_num_seqs sequences at once.
  const int32_t free_slots =
      std::max(0, options_.max_num_seqs - num_running_.load(std::memory_order_relaxed));
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
  cancelled_.push_back(id);
  work_available_.Signal();
}

void Engine::SetHeld(RequestId id, bool held) {
  absl::MutexLock lock(&mu_);
  held_changes_.emplace_back(id, held);
  work_available_.Signal();
}

bool Engine::TakeWork(bool core_idle, bool idle_wait,
                      std::vector<std::unique_ptr<Sequence>>* incoming,
                      std::vector<RequestId>* cancelled,
                      std::vector<std::pair<RequestId, bool>>* held_changes) {
  absl::MutexLock lock(&mu_);
  if (idle_wait && !stopping_ && incoming_.empty() && cancelled_.empty() && held_changes_.empty()) {
    // Something waits but nothing could be scheduled: the cache is full of preempted work or a
    // waiting request needs more than is free. Wake for news, or soon for deadlines.
    work_available_.WaitWithTimeout(&mu_, absl::Milliseconds(5));
  }
  while (!stopping_ && (paused_ || (incoming_.empty() && cancelled_.empty() &&
                                    held_changes_.empty() && core_idle))) {
    work_available_.Wait(&mu_);
  }
  for (auto& seq : incoming_) incoming->push_back(std::move(seq));
  incoming_.clear();
  cancelled->swap(cancelled_);
  held_changes->swap(held_changes_);
  return stopping_;
}

void Engine::PublishCounts(int32_t num_running_seqs, int32_t num_waiting,
                           int32_t fresh_waiting_seqs, int32_t num_held) {
  absl::MutexLock lock(&mu_);
  int32_t incoming_seqs = 0;
  for (const auto& s : incoming_) incoming_seqs += s->num_seqs;
  num_running_.store(num_running_seqs);
  num_held_.store(num_held);
  num_waiting_.store(num_waiting + static_cast<int32_t>(incoming_.size()));
  num_queued_seqs_ = fresh_waiting_seqs + incoming_seqs;
}

}  // namespace kvserve::engine
