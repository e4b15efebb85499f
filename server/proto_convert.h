// Conversions between the wire types (kvserve.v1 protobuf) and the engine's plain structs.
//
// The API's defaults are the engine's (engine/request.h, engine/sampling/sampler.h): FromProto
// reads the client's fields into GenerationOverrides and builds the request with
// server/request_builder.h, the rules the OpenAI HTTP API shares: start from a default
// GenerationRequest and override only the fields the client set. Value
// checks live in Engine::Submit, so there is one definition of a valid request; the wire names its
// fields as GenerationRequest does. The one check made here is an enum value the engine's enum
// cannot represent (sampling.normalizer), and the two input fields' presence.
#ifndef KVSERVE_SERVER_PROTO_CONVERT_H_
#define KVSERVE_SERVER_PROTO_CONVERT_H_

#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "kvserve/v1/kvserve.pb.h"

namespace kvserve::server {

// Builds the engine request, tokenizing `prompt` with the model's tokenizer; sampling fields the
// client left unset take `default_sampling` (the model's, ModelInfo::default_sampling). Errors are
// INVALID_ARGUMENT naming the field.
absl::StatusOr<engine::GenerationRequest> FromProto(
    const kvserve::v1::GenerateRequest& request, const engine::Tokenizer& tokenizer,
    const engine::SamplingParams& default_sampling = engine::SamplingParams());

// Builds the engine request for a Chat call: `messages` rendered with the model's chat template (or
// the request's chat_template) and tokenized without adding special tokens again. Errors:
// INVALID_ARGUMENT naming the field, FAILED_PRECONDITION when there is no template to render with.
absl::StatusOr<engine::GenerationRequest> FromProto(
    const kvserve::v1::ChatRequest& request, const engine::ChatPrompt& chat_prompt,
    const engine::Tokenizer& tokenizer,
    const engine::SamplingParams& default_sampling = engine::SamplingParams());

// INVALID_ARGUMENT naming "sampling.normalizer" for a value the enum does not define (proto3 enums
// are open, so the wire can carry any int32).
absl::StatusOr<engine::Normalizer> FromProto(kvserve::v1::Normalizer normalizer);

// `source` is a model directory's absolute path only with `show_paths`; otherwise just the
// directory's name, so clients do not learn the server's filesystem layout.
void ToProto(const engine::ModelInfo& info, kvserve::v1::ModelInfo* out, bool show_paths);
void ToProto(const engine::TokenLogprobs& logprobs, kvserve::v1::TokenLogprobs* out);
// The engine's prompt_logprobs (entries for prompt tokens 1..N-1) as GenerateResponse's: one entry
// per prompt token, the first with no logprob (nothing precedes it).
void PromptLogprobsToProto(const std::vector<engine::TokenLogprobs>& scored,
                           kvserve::v1::GenerateResponse* out);
// FINISH_REASON_UNSPECIFIED for the reasons that end a call with an error status instead
// (cancelled, aborted, deadline).
kvserve::v1::FinishReason ToProto(engine::FinishReason reason);

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_PROTO_CONVERT_H_
