// Plain structs that cross the engine's boundary: a generation request, its output events, and the
// sink that receives them. No protobuf here; server/ converts.
#ifndef KVSERVE_ENGINE_REQUEST_H_
#define KVSERVE_ENGINE_REQUEST_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "engine/sampling/sampler.h"

namespace kvserve::engine {

using RequestId = uint64_t;

// The API's default max_tokens (vLLM's too); every other default is the field's initializer below
// or in SamplingParams (sampling/sampler.h).
inline constexpr int32_t kDefaultMaxTokens = 16;

struct GenerationRequest {
  std::string request_id;  // for logs; the engine does not interpret it
  std::vector<int32_t> prompt_token_ids;
  int32_t max_tokens = kDefaultMaxTokens;
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings, matched on decoded text
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  // Special tokens (Tokenizer::IsSpecial: EOS, chat markers) add nothing to the streamed text;
  // their ids are still in TokenEvent::token_ids (vLLM's skip_special_tokens).
  bool skip_special_tokens = true;
  // Requests share cached prefix blocks only with requests of the same salt ("" = the shared pool).
  std::string cache_salt;
  // When the server received the request, on the engine's clock (steady_clock unless a test injects
  // one): time to first token and queue time are measured from here. Unset: Submit stamps it.
  std::chrono::steady_clock::time_point arrival_time{};
  // When the client stops waiting, on the engine's clock; unset (epoch) = no deadline. A request
  // still queued at its deadline is never prefilled; a running one stops. Either way it ends with
  // FinishReason::kDeadline (DEADLINE_EXCEEDED) and its cache blocks are freed.
  std::chrono::steady_clock::time_point deadline{};
  // Scheduling priority: lower values are admitted first and preempted last; equal priorities are
  // served first come, first served.
  int32_t priority = 0;
  // Parallel samples of the same prompt (1..kMaxSamples). The prompt is prefilled once; the n
  // samples then share its cache blocks (copy-on-write) and decode independently, sample i seeded
  // with sampling.seed + i (or the engine's fallback seed + i).
  int32_t n = 1;
  // Log-probabilities per generated token: unset = none; 0 = the sampled token's only; k = also the
  // k most likely tokens (k <= kMaxLogprobs). Computed from the model's raw logits (log_softmax
  // before penalties, temperature and truncation), as vLLM's default "raw_logprobs".
  std::optional<int32_t> logprobs;
  // Log-probabilities of the prompt's own tokens (vLLM's prompt_logprobs; scoring): unset = none;
  // 0 = each prompt token's only; k = also the k most likely tokens at its position (k <=
  // kMaxLogprobs). Token i (i >= 1) is scored by the logits after tokens [0, i); token 0 has no
  // logits before it and no entry. Same raw log_softmax as `logprobs`. The prompt is computed in
  // full: cached prefix blocks are reused only up to the positions already scored (none for a new
  // request), so the logprobs never depend on what the prefix cache held. With prompt_logprobs set,
  // max_tokens may be 0: the prompt is scored and nothing is generated (OpenAI's echo with
  // max_tokens 0).
  std::optional<int32_t> prompt_logprobs;
};

inline constexpr int32_t kMaxSamples = 16;
// Longest request_id accepted: it is echoed in the first message and written to logs.
inline constexpr size_t kMaxRequestIdBytes = 256;
// Longest cache_salt accepted: it is kept with the request and hashed into its prefix-cache keys.
// The server may prefix the client's salt with the caller's tenant (docs/security.md), so a
// client has a little less than this.
inline constexpr size_t kMaxCacheSaltBytes = 1024;
inline constexpr int32_t kMaxLogprobs = 20;

enum class FinishReason {
  kNone = 0,
  kLength,     // max_tokens reached
  kStop,       // stop string or stop token id
  kEos,        // the model's end-of-sequence token
  kCancelled,  // Engine::Cancel
  kAborted,    // engine shut down before the request finished
  kDeadline,   // GenerationRequest::deadline passed
};
const char* FinishReasonName(FinishReason reason);

// Output of one engine step for one sample of a request. The events of each sample arrive in
// order; each of the request's n samples ends with exactly one event with finished = true (also on
// cancellation, deadline and shutdown, even before the prompt was prefilled), and nothing of that
// sample follows it. The request is over after n finished events.
struct TokenEvent {
  int32_t index = 0;  // which of the request's n samples, [0, n)
  // Tokens produced by this step (usually one). Inline storage: no heap allocation per token.
  absl::InlinedVector<int32_t, 4> token_ids;
  // When the request asked for logprobs: one entry per token in token_ids.
  absl::InlinedVector<TokenLogprobs, 1> logprobs;
  // When the request asked for prompt_logprobs: set on the request's first event that carries a
  // token (whichever sample it belongs to) or, with max_tokens 0, on its finished event; prompt
  // length - 1 entries, for prompt tokens 1, 2, ... in order (token 0 has none). Unset on every
  // other event, and never set for a request that ends (cancel, deadline) before its prompt is
  // computed.
  std::optional<std::vector<TokenLogprobs>> prompt_logprobs;
  std::string text;  // valid UTF-8 delta (may be empty: bytes held back)
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  // On a finished event: OK for kLength/kStop/kEos, CANCELLED for kCancelled, UNAVAILABLE for
  // kAborted, DEADLINE_EXCEEDED for kDeadline.
  absl::Status status;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
};

// Receives a request's events on the engine thread.
// Implementations must be quick and never block: buffer and return (the gRPC reactor coalesces).
class TokenSink {
 public:
  virtual ~TokenSink() = default;
  // Called by Engine::Submit on the submitting thread with the request's id, before the request is
  // queued, so before any OnEvent: a sink that holds its request (Engine::SetHeld) from OnEvent
  // knows the id even if Submit has not returned yet. If Submit then fails, no event follows.
  virtual void OnAccepted(RequestId id) { (void)id; }
  virtual void OnEvent(TokenEvent event) = 0;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_REQUEST_H_
