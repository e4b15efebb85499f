// The protocol-neutral half of request conversion: what the gRPC API (proto_convert.h) and the
// OpenAI HTTP API (openai_api.h) both do to turn a client's request into an engine request.
//
// Each front end reads its wire format into GenerationOverrides (every field optional: unset means
// "the client did not say") and one prompt form; the functions below apply the one set of rules:
// start from the engine's defaults and the model's (ModelInfo::default_sampling), override only
// what the client set, tokenize a text prompt with the model's tokenizer, render a conversation
// with its chat template. Value checks are Engine::Submit's (ValidateRequest), so both APIs accept
// and reject exactly the same requests.
//
// Thread-safety: free functions over const inputs; callable from any thread.
#ifndef KVSERVE_SERVER_REQUEST_BUILDER_H_
#define KVSERVE_SERVER_REQUEST_BUILDER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/engine.h"

namespace kvserve::server {

// The generation fields both APIs share, as the client sent them; names follow GenerationRequest.
struct GenerationOverrides {
  std::string request_id;  // empty: the front end names the request
  std::optional<int32_t> max_tokens;
  std::optional<float> temperature;
  std::optional<int32_t> top_k;  // 0 = disabled
  std::optional<float> top_p;
  std::optional<uint64_t> seed;
  std::optional<float> min_p;
  std::optional<float> repetition_penalty;
  std::optional<float> presence_penalty;
  std::optional<float> frequency_penalty;
  std::optional<engine::Normalizer> normalizer;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  std::optional<bool> ignore_eos;
  std::optional<bool> skip_special_tokens;
  std::string cache_salt;
  std::optional<int32_t> priority;
  std::optional<int32_t> n;
  std::optional<int32_t> logprobs;
  std::optional<int32_t> prompt_logprobs;
};

// A text prompt, tokenized with the model's tokenizer (`add_special_tokens`: the tokenizer's BOS
// etc., as Hugging Face's encode). INVALID_ARGUMENT naming "prompt" when it is empty or cannot be
// tokenized.
absl::StatusOr<engine::GenerationRequest> RequestFromText(
    std::string_view prompt, bool add_special_tokens, const engine::Tokenizer& tokenizer,
    const engine::SamplingParams& default_sampling, const GenerationOverrides& overrides);

// A prompt given as token ids (`field` names it in errors: "prompt_token_ids" on gRPC, "prompt" on
// HTTP). INVALID_ARGUMENT when empty; ids outside the vocabulary are Engine::Submit's to reject.
absl::StatusOr<engine::GenerationRequest> RequestFromTokenIds(
    absl::Span<const int32_t> ids, absl::string_view field,
    const engine::SamplingParams& default_sampling, const GenerationOverrides& overrides);

// A conversation rendered with the model's chat template (or `template_override`: a template name
// or Jinja text) and tokenized without adding special tokens again: the template wrote the ones it
// wants. Errors: FAILED_PRECONDITION when there is no template, INVALID_ARGUMENT naming "messages"
// for a template that raises or renders nothing.
absl::StatusOr<engine::GenerationRequest> RequestFromChat(
    absl::Span<const engine::ChatMessage> messages, bool add_generation_prompt,
    std::string_view template_override, const engine::ChatPrompt& chat_prompt,
    const engine::Tokenizer& tokenizer, const engine::SamplingParams& default_sampling,
    const GenerationOverrides& overrides);

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_REQUEST_BUILDER_H_
