#include "server/request_builder.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace kvserve::server {

namespace {

// The one rule for every generation field: the client's value replaces the default only when the
// client set it.
template <typename T, typename U>
void Override(const std::optional<T>& value, U* field) {
  if (value.has_value()) *field = *value;
}

engine::GenerationRequest Build(std::vector<int32_t> prompt_token_ids,
                                const engine::SamplingParams& default_sampling,
                                const GenerationOverrides& o) {
  engine::GenerationRequest out;
  out.prompt_token_ids = std::move(prompt_token_ids);
  out.sampling = default_sampling;
  out.request_id = o.request_id;
  Override(o.max_tokens, &out.max_tokens);
  engine::SamplingParams& s = out.sampling;
  Override(o.temperature, &s.temperature);
  Override(o.top_k, &s.top_k);
  Override(o.top_p, &s.top_p);
  if (o.seed.has_value()) s.seed = *o.seed;
  Override(o.min_p, &s.min_p);
  Override(o.repetition_penalty, &s.repetition_penalty);
  Override(o.presence_penalty, &s.presence_penalty);
  Override(o.frequency_penalty, &s.frequency_penalty);
  Override(o.normalizer, &s.normalizer);
  out.stop = o.stop;
  out.stop_token_ids = o.stop_token_ids;
  Override(o.ignore_eos, &out.ignore_eos);
  Override(o.skip_special_tokens, &out.skip_special_tokens);
  out.cache_salt = o.cache_salt;
  Override(o.priority, &out.priority);
  Override(o.n, &out.n);
  if (o.logprobs.has_value()) out.logprobs = *o.logprobs;
  if (o.prompt_logprobs.has_value()) out.prompt_logprobs = *o.prompt_logprobs;
  return out;
}

}  // namespace

absl::StatusOr<engine::GenerationRequest> RequestFromText(
    std::string_view prompt, bool add_special_tokens, const engine::Tokenizer& tokenizer,
    const engine::SamplingParams& default_sampling, const GenerationOverrides& overrides) {
  if (prompt.empty()) return absl::InvalidArgumentError("prompt: must not be empty");
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(prompt, add_special_tokens);
  if (!ids.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("prompt: ", ids.status().message()));
  }
  return Build(*std::move(ids), default_sampling, overrides);
}

absl::StatusOr<engine::GenerationRequest> RequestFromTokenIds(
    absl::Span<const int32_t> ids, absl::string_view field,
    const engine::SamplingParams& default_sampling, const GenerationOverrides& overrides) {
  if (ids.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": must not be empty"));
  return Build(std::vector<int32_t>(ids.begin(), ids.end()), default_sampling, overrides);
}

absl::StatusOr<engine::GenerationRequest> RequestFromChat(
    absl::Span<const engine::ChatMessage> messages, bool add_generation_prompt,
    std::string_view template_override, const engine::ChatPrompt& chat_prompt,
    const engine::Tokenizer& tokenizer, const engine::SamplingParams& default_sampling,
    const GenerationOverrides& overrides) {
  KV_ASSIGN_OR_RETURN(std::string text,
                      chat_prompt.Render(messages, add_generation_prompt, template_override));
  // The template wrote the special tokens it wants (e.g. Llama 3's BOS): adding the tokenizer's
  // own would duplicate them.
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, /*add_special_tokens=*/false);
  if (!ids.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "messages: the rendered conversation cannot be tokenized: ", ids.status().message()));
  }
  if (ids->empty()) {
    return absl::InvalidArgumentError("messages: the chat template rendered an empty prompt");
  }
  return Build(*std::move(ids), default_sampling, overrides);
}

}  // namespace kvserve::server
