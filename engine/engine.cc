#include "engine/engine.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/logging.h"
#include "cache/sequence_kv_cache.h"
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
  std::unique_ptr<cache::SequenceKvCache> kv;  // allocated at admission
  std::vector<int32_t> tokens;                 // prompt, then generated tokens
  int32_t num_computed = 0;                    // tokens whose K/V are in kv
  int32_t num_generated = 0;
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
  return std::unique_ptr<Engine>(new Engine(std::move(name), std::move(model), options));
}

Engine::Engine(std::string name, LoadedModel model, const EngineOptions& options)
    : options_(options), model_(std::move(model.model)), tokenizer_(std::move(model.tokenizer)) {
  const ModelConfig& config = model_->config();
  info_.name = std::move(name);
  info_.source = std::move(model.source);
  info_.random_weights = model.random_weights;
  info_.config = config;
  info_.tokenizer = tokenizer_->name();
  info_.num_parameters = model_->num_parameters();
  info_.kv_cache_bytes_per_token =
      config.KvFloatsPerTokenPerLayer() * config.num_hidden_layers * int64_t{sizeof(float)};
  logits_.resize(config.vocab_size);
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
  s.kv_cache_bytes_in_use = kv_bytes_in_use_.load();
  return s;
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
  if (seq.kv != nullptr) {
    kv_bytes_in_use_.fetch_sub(static_cast<int64_t>(seq.kv->bytes()));
    seq.kv.reset();
  }
  num_finished_.fetch_add(1);
  KV_LOG(DEBUG) << "request " << seq.id << " (" << seq.request.request_id
                << ") finished: " << FinishReasonName(reason) << ", " << seq.num_generated
                << " tokens";
  seq.sink->OnEvent(std::move(event));
}

bool Engine::Step(Sequence& seq) {
  const int32_t prompt_len = static_cast<int32_t>(seq.request.prompt_token_ids.size());
  if (seq.kv == nullptr) {
    seq.kv = std::make_unique<cache::SequenceKvCache>(
        info_.config.num_hidden_layers, prompt_len + seq.request.max_tokens,
        static_cast<int32_t>(info_.config.KvFloatsPerTokenPerLayer() / 2));
    kv_bytes_in_use_.fetch_add(static_cast<int64_t>(seq.kv->bytes()));
  }
  // Prefill in chunks; only the chunk that completes the prompt samples a token.
  const int32_t pending = static_cast<int32_t>(seq.tokens.size()) - seq.num_computed;
  const int32_t n = seq.num_computed < prompt_len
                        ? std::min(pending, options_.prefill_chunk_tokens)
                        : pending;  // decode: exactly the last sampled token
  model_->Forward(absl::MakeConstSpan(seq.tokens).subspan(seq.num_computed, n), seq.num_computed,
                  *seq.kv, /*all_logits=*/false, logits_.data());
  seq.num_computed += n;
  if (seq.num_computed < prompt_len) return false;

  const int32_t token = seq.sampler.Sample(absl::MakeSpan(logits_));
  seq.tokens.push_back(token);
  ++seq.num_generated;

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
    return false;
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
  return true;
}

void Engine::Loop() {
  // OpenMP's thread count is per calling thread: this sets it for every matmul the engine runs.
  if (options_.num_threads > 0) omp_set_num_threads(options_.num_threads);
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
        while (static_cast<int32_t>(running.size()) < options_.max_running_requests &&
               !waiting_.empty()) {
          running.push_back(std::move(waiting_.front()));
          waiting_.pop_front();
        }
      }
      // Updated under mu_ together with waiting_, so Submit never counts a request twice.
      num_running_.store(static_cast<int32_t>(running.size()));
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
    num_running_.store(static_cast<int32_t>(running.size()));
    for (auto& s : running) {
      if (Step(*s)) s.reset();
    }
    std::erase(running, nullptr);
    num_running_.store(static_cast<int32_t>(running.size()));
  }
}

}  // namespace kvserve::engine
