#include "engine/engine_core.h"

#include <omp.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "base/logging.h"
#include "engine/kernels/thread_pool.h"
#include "engine/text/stop_matcher.h"
#include "engine/text/utf8_stream.h"

namespace kvserve::engine {

EngineCore::EngineCore(Engine* engine, std::unique_ptr<DecoderModel> model,
                       std::unique_ptr<cache::KvCacheManager> cache)
    : engine_(*engine),
      options_(engine->options_),
      info_(engine->info_),
      tokenizer_(*engine->tokenizer_),
      clock_(*engine->clock_),
      model_(std::move(model)),
      cache_(std::move(cache)) {
  model_->set_batch_invariant(options_.batch_invariant);
  SchedulerConfig sched;
  sched.max_num_seqs = options_.max_num_seqs;
  sched.max_num_batched_tokens = options_.max_num_batched_tokens;
  sched.max_chunk_tokens = options_.prefill_chunk_tokens;
  // Recurrent (S4) layers compute a chunk by FFT and a single token by recurrence, so their low
  // bits depend on where steps end: keep chunk boundaries a property of the sequence alone, on
  // block boundaries (where state checkpoints are saved), and replay generated tokens one by one.
  const bool recurrent = cache_->spec().HasRecurrentLayers();
  sched.fixed_chunks = recurrent;
  sched.align_chunks_to_blocks = recurrent;
  sched.replay_generated_tokens = recurrent;
  sched.model_name = info_.name;
  scheduler_ = std::make_unique<Scheduler>(sched, cache_.get());
  // Each running sequence yields at most one token per iteration: no allocation per token later.
  iteration_stats_.time_to_first_tokens.reserve(options_.max_num_seqs);
  iteration_stats_.inter_token_latencies.reserve(options_.max_num_seqs);
  batch_.reserve(options_.max_num_seqs);
  sampled_.reserve(options_.max_num_seqs);
  // One logits row per sequence that samples in a step: at most one per running sequence.
  logits_.resize(int64_t{options_.max_num_seqs} * info_.config.vocab_size);
}

cache::CacheStats EngineCore::PublishCacheStats() {
  const cache::CacheStats stats = cache_->stats();
  engine_.PublishCacheStats(stats);
  return stats;
}

void EngineCore::PublishCounts() {
  int32_t fresh_seqs = 0;  // waiting sequences never admitted (not preempted ones)
  int32_t held = 0;
  for (const auto& s : scheduler_->waiting()) {
    if (s->first_scheduled_time == SteadyTime{}) fresh_seqs += s->num_seqs;
    if (s->held) ++held;
  }
  for (const auto& s : scheduler_->running()) {
    if (s->held) ++held;
  }
  engine_.PublishCounts(scheduler_->num_running_seqs(), scheduler_->num_waiting(), fresh_seqs,
                        held);
}

void EngineCore::Finish(Sequence* seq, TokenEvent event, FinishReason reason, absl::Status status) {
  std::unique_ptr<Sequence> owned = scheduler_->Remove(seq);
  // Before the sink learns the request is over, so a client that saw its stream end never sees
  // it still counted or its blocks in use.
  PublishCounts();
  PublishCacheStats();
  Deliver(*owned, std::move(event), reason, std::move(status));
}

int EngineCore::FinishRemoved(std::vector<std::unique_ptr<Sequence>> seqs, FinishReason reason,
                              const absl::Status& status) {
  if (seqs.empty()) return 0;
  PublishCounts();
  PublishCacheStats();
  for (auto& seq : seqs) Deliver(*seq, TokenEvent{}, reason, status);
  return static_cast<int>(seqs.size());
}

void EngineCore::Deliver(Sequence& seq, TokenEvent event, FinishReason reason,
                         absl::Status status) {
  SampleGroup& group = *seq.group;
  group.unfinished -= seq.num_seqs;
  group.num_generated += seq.num_generated;
  // A request is reported once, when its last sample ends: its samples share the prompt (and were
  // forked in the step of their first token), the last one's times end the request.
  if (group.unfinished == 0) engine_.CountFinishedRequest();
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
    stats.finish_time = clock_.Now();
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

void EngineCore::EmitToken(Sequence& seq, const float* logits) {
  const int32_t vocab = info_.config.vocab_size;
  const absl::Span<const float> row(logits, vocab);
  const int32_t token = seq.sampler.Sample(row);
  seq.tokens.push_back(token);
  ++seq.num_generated;
  // Token timings as vLLM defines them: TTFT from arrival, ITL between this sample's tokens.
  const SteadyTime now = clock_.Now();
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
  TakePromptLogprobs(seq, &event);
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
    const bool silent = seq.request->skip_special_tokens && tokenizer_.IsSpecial(token);
    StopStringMatcher::Result r =
        seq.stop.Push(seq.utf8.Push(silent ? std::string() : tokenizer_.Decode(token)));
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

void EngineCore::ForkSamples(Sequence& parent, const float* logits) {
  for (int32_t i = parent.num_seqs - 1; i >= 1; --i) {
    auto child = std::make_unique<Sequence>(parent.id, parent.index + i, parent.request,
                                            parent.sink, engine_.FallbackSeed(parent.id));
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
    child->held = parent.held;
    Sequence* c = child.get();
    scheduler_->AddFork(std::move(child), &parent);
    EmitToken(*c, logits);
  }
}

void EngineCore::RunStep(const SchedulerOutput& output) {
  batch_.clear();
  int64_t num_logit_rows = 0;
  for (const ScheduledChunk& chunk : output.chunks) {
    Sequence& seq = *chunk.seq;
    const bool samples =
        seq.num_computed + chunk.num_tokens == static_cast<int32_t>(seq.tokens.size());
    // A prompt chunk being scored needs every position's logits (the last one's also serves the
    // first sample); any other chunk only its last token's, and only if it samples.
    const int32_t num_logits = seq.scores_prompt() ? chunk.num_tokens : (samples ? 1 : 0);
    num_logit_rows += num_logits;
    batch_.push_back(DecoderModel::BatchEntry{
        absl::MakeConstSpan(seq.tokens).subspan(seq.num_computed, chunk.num_tokens),
        seq.num_computed, &seq.cache, num_logits, seq.prompt_len()});
  }
  const int64_t vocab = info_.config.vocab_size;
  // Sized for one row per running sequence at start; only scored prompt chunks grow it (once, to
  // the largest step that scores; kept for later steps).
  if (static_cast<int64_t>(logits_.size()) < num_logit_rows * vocab) {
    logits_.resize(num_logit_rows * vocab);
  }
  model_->ForwardBatch(batch_, *cache_, logits_.data());
  sampled_.clear();
  const float* rows = logits_.data();
  for (size_t k = 0; k < output.chunks.size(); ++k) {
    Sequence& seq = *output.chunks[k].seq;
    const int32_t num_logits = batch_[k].num_logits;
    if (seq.scores_prompt()) ScorePrompt(seq, num_logits, rows);
    rows += num_logits * vocab;
    seq.num_computed += output.chunks[k].num_tokens;
    cache_->Commit(seq.cache, seq.tokens, seq.num_computed);
    if (seq.num_computed == static_cast<int32_t>(seq.tokens.size())) {
      sampled_.push_back({&seq, rows - vocab});
    }
  }
  iteration_stats_.num_scheduled_tokens += output.num_scheduled_tokens;
  // Sampling may finish (and free) sequences; `output` is not used past this point.
  for (auto [seq, row] : sampled_) {
    if (seq->request->max_tokens == 0) {
      FinishScoring(*seq);
      continue;
    }
    if (seq->num_seqs > 1) ForkSamples(*seq, row);
    EmitToken(*seq, row);
  }
}

void EngineCore::ScorePrompt(Sequence& seq, int32_t num_rows, const float* rows) {
  const int64_t vocab = info_.config.vocab_size;
  std::vector<TokenLogprobs>& scored = seq.group->prompt_logprobs;
  for (int32_t i = 0; i < num_rows; ++i) {
    // The logits at position p score prompt token p + 1. Positions scored before (a chunk
    // recomputed after a preemption) are skipped, so each token has exactly one entry.
    const int32_t target = seq.num_computed + i + 1;
    if (target >= seq.prompt_len()) break;
    if (target - 1 < static_cast<int32_t>(scored.size())) continue;
    ComputeLogprobs(absl::MakeConstSpan(rows + i * vocab, vocab), seq.tokens[target],
                    *seq.request->prompt_logprobs, &scored.emplace_back());
  }
}

void EngineCore::TakePromptLogprobs(Sequence& seq, TokenEvent* event) {
  SampleGroup& group = *seq.group;
  if (!seq.request->prompt_logprobs.has_value() || group.prompt_logprobs_sent) return;
  event->prompt_logprobs.emplace(std::move(group.prompt_logprobs));
  group.prompt_logprobs.clear();
  group.prompt_logprobs_sent = true;
}

void EngineCore::FinishScoring(Sequence& seq) {
  // Engine::Validate allows max_tokens 0 only with prompt_logprobs and n = 1.
  iteration_stats_.num_prompt_tokens += seq.prompt_len();
  TokenEvent event;
  TakePromptLogprobs(seq, &event);
  Finish(&seq, std::move(event), FinishReason::kLength, absl::OkStatus());
}

namespace {
bool HasDeadline(const std::unique_ptr<Sequence>& s) {
  return s->request->deadline != SteadyTime{};
}
}  // namespace

void EngineCore::Run() {
  // Both thread counts are per calling thread: this sets them for every matmul the engine runs
  // (the kernels' ParallelFor, and OpenMP inside oneDNN).
  const int32_t threads = EngineThreads(options_, model_->num_parameters());
  SetKernelThreads(threads);
  omp_set_num_threads(threads);
  std::vector<std::unique_ptr<Sequence>> incoming;
  std::vector<RequestId> cancelled_ids;
  std::vector<std::pair<RequestId, bool>> held_changes;
  absl::flat_hash_set<RequestId> cancelled;
  for (bool idle_wait = false;;) {
    // Held sequences alone are no work: the engine sleeps until a client reads (or news).
    const bool stopping = engine_.TakeWork(!scheduler_->has_schedulable(), idle_wait, &incoming,
                                           &cancelled_ids, &held_changes);
    for (auto& seq : incoming) {
      seq->arrival_order = next_arrival_++;
      scheduler_->AddWaiting(std::move(seq));
    }
    incoming.clear();
    // After the incoming ones: a hold may name a request submitted in the same batch.
    for (const auto& [id, held] : held_changes) scheduler_->SetHeld(id, held);
    held_changes.clear();
    cancelled.insert(cancelled_ids.begin(), cancelled_ids.end());
    cancelled_ids.clear();
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
      const SteadyTime now = clock_.Now();
      ended += FinishRemoved(
          scheduler_->RemoveIf([now](const Sequence& s) {
            return s.request->deadline != SteadyTime{} && now >= s.request->deadline;
          }),
          FinishReason::kDeadline,
          absl::DeadlineExceededError("the request's deadline passed before it finished"));
    }

    const SchedulerOutput& output = scheduler_->Schedule(clock_);
    engine_.CountPreemptions(output.num_preemptions);
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

CacheUsage CacheUsageOf(const cache::CacheStats& c) {
  CacheUsage usage;
  for (int k = 0; k < kNumCacheKinds; ++k) {
    CacheKindUsage& kind = usage.kinds[k];
    kind.used_bytes = c.used_bytes[k];
    kind.capacity_bytes = c.total_bytes[k];
    // Paged kinds share the block pool; recurrent state lives in slots, not blocks.
    if (c.total_bytes[k] > 0 && k != static_cast<int>(CacheKind::kRecurrentState)) {
      kind.num_blocks = c.num_blocks;
      kind.num_used_blocks = c.num_used_blocks;
    }
  }
  usage.num_state_slots = c.num_state_slots;
  usage.num_used_state_slots = c.num_used_state_slots;
  return usage;
}

void EngineCore::ReportIteration(const cache::CacheStats& c) {
  if (options_.observer != nullptr) {
    SchedulerStats& sched = iteration_stats_.scheduler;
    sched.num_running = scheduler_->num_running_seqs();
    sched.num_waiting = engine_.num_waiting();
    sched.cache = CacheUsageOf(c);
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
