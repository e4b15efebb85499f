#include "server/proto_convert.h"

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/request_builder.h"

namespace kvserve::server {

namespace pb = ::kvserve::v1;

namespace {

// The generation fields GenerateRequest and ChatRequest share (same names, same meaning), read into
// the protocol-neutral overrides: proto3 `optional` fields by presence, the others when non-zero
// (their zero is the engine's default or "disabled").
template <typename Request>
absl::StatusOr<GenerationOverrides> OverridesFromProto(const Request& request) {
  GenerationOverrides o;
  o.request_id = request.request_id();
  if (request.has_max_tokens()) o.max_tokens = request.max_tokens();
  const pb::SamplingParams& s = request.sampling();
  if (s.has_temperature()) o.temperature = s.temperature();
  if (s.top_k() != 0) o.top_k = s.top_k();
  if (s.has_top_p()) o.top_p = s.top_p();
  if (s.has_seed()) o.seed = s.seed();
  if (s.min_p() != 0) o.min_p = s.min_p();
  if (s.has_repetition_penalty()) o.repetition_penalty = s.repetition_penalty();
  if (s.presence_penalty() != 0) o.presence_penalty = s.presence_penalty();
  if (s.frequency_penalty() != 0) o.frequency_penalty = s.frequency_penalty();
  if (s.normalizer() != pb::NORMALIZER_SOFTMAX) {
    KV_ASSIGN_OR_RETURN(o.normalizer, FromProto(s.normalizer()));
  }
  o.stop.assign(request.stop().begin(), request.stop().end());
  o.stop_token_ids.assign(request.stop_token_ids().begin(), request.stop_token_ids().end());
  if (request.ignore_eos()) o.ignore_eos = true;
  if (request.has_skip_special_tokens()) o.skip_special_tokens = request.skip_special_tokens();
  o.cache_salt = request.cache_salt();
  if (request.priority() != 0) o.priority = request.priority();
  if (request.has_n()) o.n = request.n();
  if (request.has_logprobs()) o.logprobs = request.logprobs();
  if (request.has_prompt_logprobs()) o.prompt_logprobs = request.prompt_logprobs();
  return o;
}

}  // namespace

absl::StatusOr<engine::GenerationRequest> FromProto(
    const pb::GenerateRequest& request, const engine::Tokenizer& tokenizer,
    const engine::SamplingParams& default_sampling) {
  KV_ASSIGN_OR_RETURN(GenerationOverrides overrides, OverridesFromProto(request));
  switch (request.input_case()) {
    case pb::GenerateRequest::kPrompt:
      return RequestFromText(request.prompt(),
                             !request.has_add_special_tokens() || request.add_special_tokens(),
                             tokenizer, default_sampling, overrides);
    case pb::GenerateRequest::kPromptTokenIds:
      return RequestFromTokenIds(absl::MakeConstSpan(request.prompt_token_ids().ids().data(),
                                                     request.prompt_token_ids().ids_size()),
                                 "prompt_token_ids", default_sampling, overrides);
    case pb::GenerateRequest::INPUT_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("prompt: set either prompt or prompt_token_ids");
}

absl::StatusOr<engine::GenerationRequest> FromProto(
    const pb::ChatRequest& request, const engine::ChatPrompt& chat_prompt,
    const engine::Tokenizer& tokenizer, const engine::SamplingParams& default_sampling) {
  std::vector<engine::ChatMessage> messages;
  messages.reserve(request.messages_size());
  for (const pb::ChatMessage& m : request.messages()) messages.push_back({m.role(), m.content()});
  KV_ASSIGN_OR_RETURN(GenerationOverrides overrides, OverridesFromProto(request));
  return RequestFromChat(
      messages, !request.has_add_generation_prompt() || request.add_generation_prompt(),
      request.chat_template(), chat_prompt, tokenizer, default_sampling, overrides);
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

void ToProto(const engine::ModelInfo& info, pb::ModelInfo* out, bool show_paths) {
  const engine::ModelConfig& c = info.config;
  out->set_name(info.name);
  out->set_architecture(c.architecture);
  // A loaded model's source is its directory's absolute path (model_loader.h); anything else
  // ("embedded (random weights, seed N)") is shown as it is.
  if (!show_paths && info.source.starts_with('/')) {
    out->set_source(std::filesystem::path(info.source).filename().string());
  } else {
    out->set_source(info.source);
  }
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
  out->set_rope_theta(c.rope_theta);
  out->set_min_rope_theta(info.min_rope_theta);
  out->set_weight_bytes(info.weight_bytes);
  out->set_weight_dtype(info.weight_dtype);
}

void ToProto(const engine::TokenLogprobs& logprobs, pb::TokenLogprobs* out) {
  out->set_logprob(logprobs.logprob);
  for (const engine::TokenLogprob& top : logprobs.top) {
    pb::TopLogprob* entry = out->add_top();
    entry->set_token_id(top.token);
    entry->set_logprob(top.logprob);
  }
}

void PromptLogprobsToProto(const std::vector<engine::TokenLogprobs>& scored,
                           pb::GenerateResponse* out) {
  out->add_prompt_logprobs();
  for (const engine::TokenLogprobs& logprobs : scored)
    ToProto(logprobs, out->add_prompt_logprobs());
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
