// Engine: one model, one engine thread, many concurrent generation requests.
//
// Data path: Submit() validates and enqueues (any thread) -> the engine thread admits requests,
// allocates their KV cache, runs prefill in chunks and then one decode step per running request per
// iteration (round robin), samples, detokenizes, matches stop strings, and hands TokenEvents to
// each request's TokenSink.
//
// Threads meet at two seams only, both under mu_: the waiting queue and the set of cancelled ids.
// The engine thread alone owns the model, the caches, the samplers and the sinks' call sites.
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
#include "engine/model_loader.h"
#include "engine/request.h"

namespace kvserve::engine {

struct EngineOptions {
  // Requests decoded concurrently; further ones wait in the queue.
  int32_t max_running_requests = 64;
  // Requests allowed to wait; Submit beyond it fails with RESOURCE_EXHAUSTED.
  int32_t max_queued_requests = 1024;
  // Longest prefill chunk per engine step, so a long prompt does not stall running streams.
  int32_t prefill_chunk_tokens = 256;
  // Seeds requests that carry no seed of their own (mixed with the request id).
  uint64_t seed = 0;
  // Threads for the engine's matmuls (OpenMP inside oneDNN); 0 = one per core.
  int32_t num_threads = 0;
};

// What ListModels reports about a served model.
struct ModelInfo {
  std::string name;
  std::string source;
  bool random_weights = false;
  ModelConfig config;
  std::string tokenizer;
  int64_t num_parameters = 0;
  int64_t kv_cache_bytes_per_token = 0;  // f32 K and V, all layers
};

struct EngineStats {
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  int64_t num_finished = 0;
  int64_t kv_cache_bytes_in_use = 0;
};

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
  struct Sequence;

  Engine(std::string name, LoadedModel model, const EngineOptions& options);
  void Loop();
  // One prefill chunk or one decode step. Returns true when the sequence finished.
  bool Step(Sequence& seq);
  void Finish(Sequence& seq, TokenEvent event, FinishReason reason, absl::Status status);

  const EngineOptions options_;
  ModelInfo info_;
  std::unique_ptr<LlamaModel> model_;     // engine thread only
  std::unique_ptr<Tokenizer> tokenizer_;  // const, shared
  std::vector<float> logits_;             // engine thread only, [vocab]

  mutable absl::Mutex mu_;
  absl::CondVar work_available_;
  std::deque<std::unique_ptr<Sequence>> waiting_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<RequestId> cancelled_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::atomic<RequestId> next_id_{1};
  std::atomic<int32_t> num_running_{0};
  std::atomic<int32_t> num_waiting_{0};
  std::atomic<int64_t> num_finished_{0};
  std::atomic<int64_t> kv_bytes_in_use_{0};
  std::thread thread_;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_ENGINE_H_
