// Conversions between the wire types (kvserve.v1 protobuf) and the engine's plain structs.
//
// Field-presence rules (unset optional fields take the API's documented defaults) live here; value
// checks live in engine::Engine::Validate so there is one definition of a valid request. The one
// check made here is an enum value the engine's enum cannot represent (sampling.normalizer).
#ifndef KVSERVE_SERVER_PROTO_CONVERT_H_
#define KVSERVE_SERVER_PROTO_CONVERT_H_

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "kvserve/v1/kvserve.pb.h"

namespace kvserve::server {

// The default of GenerateRequest.max_tokens when unset (vLLM's default too).
inline constexpr int32_t kDefaultMaxTokens = 16;

// Builds the engine request, tokenizing `prompt` with the engine's tokenizer. Errors are
// INVALID_ARGUMENT naming the field.
absl::StatusOr<engine::GenerationRequest> FromProto(const kvserve::v1::GenerateRequest& request,
                                                    const engine::Engine& engine);

// INVALID_ARGUMENT naming "sampling.normalizer" for a value the enum does not define (proto3 enums
// are open, so the wire can carry any int32).
absl::StatusOr<engine::Normalizer> FromProto(kvserve::v1::Normalizer normalizer);

void ToProto(const engine::ModelInfo& info, kvserve::v1::ModelInfo* out);
void ToProto(const engine::TokenLogprobs& logprobs, kvserve::v1::TokenLogprobs* out);
// FINISH_REASON_UNSPECIFIED for the reasons that end a call with an error status instead
// (cancelled, aborted, deadline).
kvserve::v1::FinishReason ToProto(engine::FinishReason reason);

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_PROTO_CONVERT_H_
