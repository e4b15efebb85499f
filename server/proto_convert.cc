#include "server/proto_convert.h"

#include <string>

#include "base/status_macros.h"

namespace kvserve::server {

namespace pb = ::kvserve::v1;

absl::StatusOr<engine::GenerationRequest> FromProto(const pb::GenerateRequest& request,
                                                    const engine::Engine& engine) {
  engine::GenerationRequest out;
  out.request_id = request.request_id();
  switch (request.input_case()) {
    case pb::GenerateRequest::kPrompt: {
      if (request.prompt().empty()) {
        return absl::InvalidArgumentError("prompt: must not be empty");
      }
      KV_ASSIGN_OR_RETURN(out.prompt_token_ids, engine.tokenizer().Encode(request.prompt()));
      break;
    }
    case pb::GenerateRequest::kPromptTokenIds:
      if (request.prompt_token_ids().ids().empty()) {
        return absl::InvalidArgumentError("prompt_token_ids: must not be empty");
      }
      out.prompt_token_ids.assign(request.prompt_token_ids().ids().begin(),
                                  request.prompt_token_ids().ids().end());
      break;
    case pb::GenerateRequest::INPUT_NOT_SET:
      return absl::InvalidArgumentError("prompt: set either prompt or prompt_token_ids");
  }
  out.max_tokens = request.has_max_tokens() ? request.max_tokens() : kDefaultMaxTokens;
  const pb::SamplingParams& s = request.sampling();
  out.sampling.temperature = s.has_temperature() ? s.temperature() : 1.0f;
  out.sampling.top_k = s.top_k();
  out.sampling.top_p = s.has_top_p() ? s.top_p() : 1.0f;
  if (s.has_seed()) out.sampling.seed = s.seed();
  out.stop.assign(request.stop().begin(), request.stop().end());
  out.stop_token_ids.assign(request.stop_token_ids().begin(), request.stop_token_ids().end());
  out.ignore_eos = request.ignore_eos();
  out.cache_salt = request.cache_salt();
  return out;
}

void ToProto(const engine::ModelInfo& info, pb::ModelInfo* out) {
  const engine::ModelConfig& c = info.config;
  out->set_name(info.name);
  out->set_architecture(c.architecture);
  out->set_source(info.source);
  out->set_random_weights(info.random_weights);
  out->set_max_context_length(c.max_position_embeddings);
  out->set_vocab_size(c.vocab_size);
  out->set_num_layers(c.num_hidden_layers);
  out->set_hidden_size(c.hidden_size);
  out->set_num_attention_heads(c.num_attention_heads);
  out->set_num_key_value_heads(c.num_key_value_heads);
  out->set_head_dim(c.head_dim);
  out->set_attention(std::string(c.AttentionKind()));
  out->set_kv_cache_bytes_per_token(info.kv_cache_bytes_per_token);
  out->set_tokenizer(info.tokenizer);
  out->set_eos_token_id(c.eos_token_ids.empty() ? -1 : c.eos_token_ids.front());
  out->set_kv_cache_bytes(info.kv_cache_bytes);
  out->set_kv_cache_blocks(info.kv_cache_blocks);
  out->set_kv_cache_block_size(info.block_size);
  out->set_state_bytes_per_sequence(info.state_bytes_per_sequence);
}

pb::FinishReason ToProto(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kLength:
      return pb::FINISH_REASON_LENGTH;
    case engine::FinishReason::kStop:
      return pb::FINISH_REASON_STOP;
    case engine::FinishReason::kEos:
      return pb::FINISH_REASON_EOS;
    default:
      return pb::FINISH_REASON_UNSPECIFIED;
  }
}

}  // namespace kvserve::server
