// The OpenAI-compatible HTTP API's JSON (POST /v1/completions, POST /v1/chat/completions, GET
// /v1/models) to and from the engine's plain structs. No sockets here: server/http_server.h serves
// it.
//
// Requests: the fields of OpenAI's Completions and Chat Completions APIs (model, prompt, messages,
// max_tokens / max_completion_tokens, temperature, top_p, n, stop, seed, presence_penalty,
// frequency_penalty, logprobs, top_logprobs, stream, stream_options.include_usage, user) and
// vLLM's extras (top_k, min_p, repetition_penalty, priority, cache_salt, ignore_eos,
// stop_token_ids, skip_special_tokens, add_special_tokens, chat_template, add_generation_prompt)
// plus kvserve's `normalizer` ("softmax", "sparsemax", "entmax15"). A JSON null is the same as an
// absent field; unknown fields are ignored, as OpenAI does. A field of the wrong type is
// INVALID_ARGUMENT naming it ("max_tokens: must be an integer, got \"ten\""). The values are then
// the engine's to check (server/request_builder.h), so gRPC and HTTP accept the same requests;
// HttpErrorFor renames the engine's field names ("sampling.top_p") to the JSON's ("top_p").
//
// Responses follow OpenAI's shapes: `text_completion` / `chat.completion` objects, and for
// `stream: true` Server-Sent Events of `text_completion` / `chat.completion.chunk` objects, each
// `data: {...}\n\n`, a usage-only chunk when stream_options.include_usage is set, and `data:
// [DONE]\n\n`. Finish reasons: "length" (max_tokens), "stop" (stop string, stop token or EOS).
//
// Thread-safety: free functions and value types; any thread.
#ifndef KVSERVE_SERVER_OPENAI_API_H_
#define KVSERVE_SERVER_OPENAI_API_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "server/request_builder.h"

namespace kvserve::server {

enum class OpenAiEndpoint { kCompletions, kChatCompletions };

// One prompt of a completions request: text or token ids.
struct OpenAiPrompt {
  std::string text;
  std::vector<int32_t> token_ids;  // used when is_token_ids
  bool is_token_ids = false;
};

// A parsed /v1/completions or /v1/chat/completions body.
struct OpenAiRequest {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kCompletions;
  std::string model;  // empty: the first served model
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Completions: one engine request per prompt; choice i*n + j is sample j of prompt i.
  std::vector<OpenAiPrompt> prompts;
  bool add_special_tokens = true;
  // Chat: the conversation and how to render it.
  std::vector<engine::ChatMessage> messages;
  std::string chat_template;
  bool add_generation_prompt = true;
  GenerationOverrides overrides;
  // The number of choices per prompt (overrides.n, default 1): the response's choices.
  int32_t n() const { return overrides.n.value_or(1); }
};

// Parses a request body. INVALID_ARGUMENT naming the field for bad JSON, a wrong type, a missing
// required field (prompt, messages) or a feature kvserve does not implement (echo, suffix,
// best_of > n, non-text content parts).
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, std::string_view body);

// The engine requests for `request` on `engine`'s model (one per prompt; one for chat): prompts
// tokenized, the conversation rendered with the model's chat template. Errors as RequestFromText /
// RequestFromChat: INVALID_ARGUMENT, or FAILED_PRECONDITION naming the missing chat template.
absl::StatusOr<std::vector<engine::GenerationRequest>> ToEngineRequests(
    const OpenAiRequest& request, const engine::Engine& engine);

// An error as OpenAI answers it: the HTTP status and {"error": {"message", "type", "param",
// "code"}}; retry_after_seconds > 0 adds a Retry-After header (overload, draining).
struct HttpError {
  int status = 500;
  std::string body;
  int retry_after_seconds = 0;
};
// The one mapping from absl::Status to an HTTP error (its status from HttpStatusFor). `param` is
// the field the message starts with ("top_p: must be ..."), renamed from the engine's names.
HttpError HttpErrorFor(const absl::Status& status);
// HTTP status for a status code: INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE 400;
// UNAUTHENTICATED 401; PERMISSION_DENIED 403; NOT_FOUND 404; RESOURCE_EXHAUSTED 429; CANCELLED
// 499 (the client closed the request); UNAVAILABLE 503; DEADLINE_EXCEEDED 504; else 500.
int HttpStatusFor(absl::StatusCode code);
// An error body built directly, for errors the HTTP layer finds itself (413, 415, 404 routes).
std::string ErrorBody(std::string_view message, std::string_view type, std::string_view param,
                      std::string_view code);

// Everything one choice produced, in order (non-streaming) or since the last chunk (streaming).
struct ChoiceOutput {
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<engine::TokenLogprobs> logprobs;  // one per token when logprobs were asked for
  engine::FinishReason finish_reason = engine::FinishReason::kNone;  // kNone: not finished
};

// Identity of one response: its id ("cmpl-..." / "chatcmpl-..."), creation time and model.
struct ResponseHeader {
  std::string id;
  int64_t created = 0;  // Unix seconds
  std::string model;
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// The non-streaming response body; choices[i] is choice index i.
std::string CompletionResponseJson(const OpenAiRequest& request, const ResponseHeader& header,
                                   const std::vector<ChoiceOutput>& choices, const Usage& usage,
                                   const engine::Tokenizer& tokenizer);
// One SSE event "data: {...}\n\n" carrying `delta` of choice `index`. Chat's first chunk of a
// choice (`first` = true) carries the assistant role.
std::string StreamChunkEvent(const OpenAiRequest& request, const ResponseHeader& header,
                             int32_t index, const ChoiceOutput& delta, bool first,
                             const engine::Tokenizer& tokenizer);
// The usage-only chunk sent last when stream_options.include_usage is set (choices is empty).
std::string StreamUsageEvent(const OpenAiRequest& request, const ResponseHeader& header,
                             const Usage& usage);
// An error inside a stream whose 200 status is already sent: "data: {"error": {...}}\n\n".
std::string StreamErrorEvent(const absl::Status& status);
inline constexpr std::string_view kStreamDoneEvent = "data: [DONE]\n\n";

// vLLM's POST /tokenize: {"model", "prompt", "add_special_tokens"} -> {"tokens", "count",
// "max_model_len"}. INVALID_ARGUMENT naming the field for a bad body.
struct TokenizeRequest {
  std::string model;
  std::string prompt;
  bool add_special_tokens = true;
};
absl::StatusOr<TokenizeRequest> ParseTokenizeRequest(std::string_view body);
std::string TokenizeResponseJson(const std::vector<int32_t>& ids, int64_t max_model_len);

// GET /v1/models: {"object": "list", "data": [{"id", "object": "model", "created", "owned_by",
// "max_model_len"}...]}.
std::string ModelListJson(const std::vector<const engine::ModelInfo*>& models, int64_t created);

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_OPENAI_API_H_
