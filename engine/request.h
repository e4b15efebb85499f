// Plain structs that cross the engine's boundary: a generation request, its output events, and the
// sink that receives them. No protobuf here; server/ converts.
#ifndef KVSERVE_ENGINE_REQUEST_H_
#define KVSERVE_ENGINE_REQUEST_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/sampler.h"

namespace kvserve::engine {

using RequestId = uint64_t;

struct GenerationRequest {
  std::string request_id;  // for logs; the engine does not interpret it
  std::vector<int32_t> prompt_token_ids;
  int32_t max_tokens = 16;
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings, matched on decoded text
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  // Requests share cached prefix blocks only with requests of the same salt ("" = the shared pool).
  std::string cache_salt;
  // When the server received the request, on the engine's clock (steady_clock unless a test injects
  // one): time to first token and queue time are measured from here. Unset: Submit stamps it.
  std::chrono::steady_clock::time_point arrival_time{};
};

enum class FinishReason {
  kNone = 0,
  kLength,     // max_tokens reached
  kStop,       // stop string or stop token id
  kEos,        // the model's end-of-sequence token
  kCancelled,  // Engine::Cancel
  kAborted,    // engine shut down before the request finished
};
const char* FinishReasonName(FinishReason reason);

// Output of one engine step for one request. Events of a request arrive in order; the last one has
// finished = true and nothing follows it.
struct TokenEvent {
  std::vector<int32_t> token_ids;  // tokens produced by this step (usually one)
  std::string text;                // valid UTF-8 delta (may be empty: bytes held back)
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  // On the last event: OK for kLength/kStop/kEos, CANCELLED for kCancelled, UNAVAILABLE for
  // kAborted.
  absl::Status status;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
};

// Receives a request's events on the engine thread.
// Implementations must be quick and never block: buffer and return (the gRPC reactor coalesces).
class TokenSink {
 public:
  virtual ~TokenSink() = default;
  virtual void OnEvent(TokenEvent event) = 0;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_REQUEST_H_
