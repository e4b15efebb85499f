#include "server/proto_convert.h"

#include <string>

#include "absl/strings/str_cat.h"
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
  out.sampling.min_p = s.min_p();
  out.sampling.repetition_penalty = s.has_repetition_penalty() ? s.repetition_penalty() : 1.0f;
  out.sampling.presence_penalty = s.presence_penalty();
  out.sampling.frequency_penalty = s.frequency_penalty();
  KV_ASSIGN_OR_RETURN(out.sampling.normalizer, FromProto(s.normalizer()));
  out.stop.assign(request.stop().begin(), request.stop().end());
  out.stop_token_ids.assign(request.stop_token_ids().begin(), request.stop_token_ids().end());
  out.ignore_eos = request.ignore_eos();
  out.cache_salt = request.cache_salt();
  out.priority = request.priority();
  out.n = request.has_n() ? request.n() : 1;
  if (request.has_logprobs()) out.logprobs = request.logprobs();
  return out;
}

absl::StatusOr<engine::Normalizer> FromProto(pb::Normalizer normalizer) {
  // proto3 enums are open: a client built from a newer .proto may send a value this one lacks.
  switch (normalizer) {
    case pb::NORMALIZER_SOFTMAX:
      return engine::Normalizer::kSoftmax;
    case pb::NORMALIZER_SPARSEMAX:
      return engine::Normalizer::kSparsemax;
    case pb::NORMALIZER_ENTMAX15:
      return engine::Normalizer::kEntmax15;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("sampling.normalizer: must be NORMALIZER_SOFTMAX, NORMALIZER_SPARSEMAX or "
                       "NORMALIZER_ENTMAX15, got ",
                       static_cast<int>(normalizer)));
  }
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

void ToProto(const engine::TokenLogprobs& logprobs, pb::TokenLogprobs* out) {
  out->set_logprob(logprobs.logprob);
  for (const engine::TokenLogprob& top : logprobs.top) {
    pb::TopLogprob* entry = out->add_top();
    entry->set_token_id(top.token);
    entry->set_logprob(top.logprob);
  }
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
