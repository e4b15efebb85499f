#include "server/openai_api.h"

#include <limits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace kvserve::server {

namespace {

using Json = nlohmann::json;

// Client text may hold anything, and token pieces may be partial UTF-8: never let dump() throw.
std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// A short rendering of a wrong value for error messages (bounded: bodies can be megabytes).
std::string Shown(const Json& value) {
  std::string s = Dump(value);
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

absl::Status TypeError(absl::string_view field, absl::string_view expected, const Json& value) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": must be ", expected, ", got ", Shown(value)));
}

// The value of `key`, or nullptr when absent or null (OpenAI's clients send null for "unset").
const Json* Find(const Json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status ReadString(const Json& body, const char* key, std::string* out) {
  const Json* v = Find(body, key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string()) return TypeError(key, "a string", *v);
  *out = v->get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& body, const char* key, std::optional<bool>* out) {
  const Json* v = Find(body, key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_boolean()) return TypeError(key, "true or false", *v);
  *out = v->get<bool>();
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& body, const char* key, bool* out) {
  std::optional<bool> value;
  KV_RETURN_IF_ERROR(ReadBool(body, key, &value));
  if (value.has_value()) *out = *value;
  return absl::OkStatus();
}

// An integer that fits int32 (1.0 is not an integer here: OpenAI's schema says "integer").
absl::StatusOr<int32_t> AsInt32(absl::string_view field, const Json& v) {
  if (!v.is_number_integer()) return TypeError(field, "an integer", v);
  const int64_t value =
      v.is_number_unsigned()
          ? static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), 1ull << 40))
          : v.get<int64_t>();
  if (value < std::numeric_limits<int32_t>::min() || value > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", Shown(v), " is out of range"));
  }
  return static_cast<int32_t>(value);
}

absl::Status ReadInt(const Json& body, const char* key, std::optional<int32_t>* out) {
  const Json* v = Find(body, key);
  if (v == nullptr) return absl::OkStatus();
  KV_ASSIGN_OR_RETURN(*out, AsInt32(key, *v));
  return absl::OkStatus();
}

absl::Status ReadFloat(const Json& body, const char* key, std::optional<float>* out) {
  const Json* v = Find(body, key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_number()) return TypeError(key, "a number", *v);
  *out = v->get<float>();
  return absl::OkStatus();
}

// "stop": a string or a list of strings.
absl::Status ReadStop(const Json& body, std::vector<std::string>* out) {
  const Json* v = Find(body, "stop");
  if (v == nullptr) return absl::OkStatus();
  if (v->is_string()) {
    out->push_back(v->get<std::string>());
    return absl::OkStatus();
  }
  if (!v->is_array()) return TypeError("stop", "a string or a list of strings", *v);
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) return TypeError(absl::StrCat("stop[", i, "]"), "a string", (*v)[i]);
    out->push_back((*v)[i].get<std::string>());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> ReadTokenIds(absl::string_view field, const Json& list) {
  std::vector<int32_t> ids;
  ids.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    KV_ASSIGN_OR_RETURN(int32_t id, AsInt32(absl::StrCat(field, "[", i, "]"), list[i]));
    ids.push_back(id);
  }
  return ids;
}

// "prompt": a string, a list of strings, a list of token ids, or a list of token-id lists.
absl::Status ReadPrompts(const Json& body, std::vector<OpenAiPrompt>* out) {
  const Json* v = Find(body, "prompt");
  if (v == nullptr) return absl::InvalidArgumentError("prompt: is required");
  constexpr absl::string_view kShape =
      "a string, a list of strings, a list of token ids or a list of token-id lists";
  if (v->is_string()) {
    out->push_back({v->get<std::string>(), {}, false});
    return absl::OkStatus();
  }
  if (!v->is_array()) return TypeError("prompt", kShape, *v);
  if (v->empty()) return absl::InvalidArgumentError("prompt: must not be empty");
  if ((*v)[0].is_number()) {
    KV_ASSIGN_OR_RETURN(std::vector<int32_t> ids, ReadTokenIds("prompt", *v));
    out->push_back({"", std::move(ids), true});
    return absl::OkStatus();
  }
  for (size_t i = 0; i < v->size(); ++i) {
    const Json& item = (*v)[i];
    const std::string field = absl::StrCat("prompt[", i, "]");
    if (item.is_string()) {
      out->push_back({item.get<std::string>(), {}, false});
    } else if (item.is_array()) {
      KV_ASSIGN_OR_RETURN(std::vector<int32_t> ids, ReadTokenIds(field, item));
      out->push_back({"", std::move(ids), true});
    } else {
      return TypeError(field, "a string or a list of token ids", item);
    }
  }
  return absl::OkStatus();
}

// "messages": [{"role", "content"}], content a string or a list of {"type": "text", "text"} parts.
absl::Status ReadMessages(const Json& body, std::vector<engine::ChatMessage>* out) {
  const Json* v = Find(body, "messages");
  if (v == nullptr) return absl::InvalidArgumentError("messages: is required");
  if (!v->is_array()) return TypeError("messages", "a list of messages", *v);
  if (v->empty()) return absl::InvalidArgumentError("messages: must not be empty");
  for (size_t i = 0; i < v->size(); ++i) {
    const Json& m = (*v)[i];
    const std::string field = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return TypeError(field, "an object", m);
    engine::ChatMessage message;
    const Json* role = Find(m, "role");
    if (role == nullptr)
      return absl::InvalidArgumentError(absl::StrCat(field, ".role: is required"));
    if (!role->is_string()) return TypeError(field + ".role", "a string", *role);
    message.role = role->get<std::string>();
    if (const Json* content = Find(m, "content"); content == nullptr) {
      // An assistant turn may carry no content (OpenAI allows it with tool calls).
    } else if (content->is_string()) {
      message.content = content->get<std::string>();
    } else if (content->is_array()) {
      for (size_t j = 0; j < content->size(); ++j) {
        const Json& part = (*content)[j];
        const std::string part_field = absl::StrCat(field, ".content[", j, "]");
        const Json* type = part.is_object() ? Find(part, "type") : nullptr;
        if (type == nullptr || !type->is_string() || type->get<std::string>() != "text") {
          return absl::InvalidArgumentError(
              absl::StrCat(part_field, ".type: only \"text\" content parts are supported"));
        }
        const Json* text = Find(part, "text");
        if (text == nullptr || !text->is_string()) {
          return TypeError(part_field + ".text", "a string", text == nullptr ? Json() : *text);
        }
        message.content += text->get<std::string>();
      }
    } else {
      return TypeError(field + ".content", "a string or a list of content parts", *content);
    }
    out->push_back(std::move(message));
  }
  return absl::OkStatus();
}

absl::StatusOr<engine::Normalizer> ParseNormalizer(const std::string& name) {
  if (name == "softmax") return engine::Normalizer::kSoftmax;
  if (name == "sparsemax") return engine::Normalizer::kSparsemax;
  if (name == "entmax15") return engine::Normalizer::kEntmax15;
  return absl::InvalidArgumentError(absl::StrCat(
      "normalizer: must be \"softmax\", \"sparsemax\" or \"entmax15\", got \"", name, "\""));
}

// The generation fields both endpoints share.
absl::Status ReadGenerationFields(const Json& body, GenerationOverrides* o) {
  KV_RETURN_IF_ERROR(ReadInt(body, "max_tokens", &o->max_tokens));
  KV_RETURN_IF_ERROR(ReadFloat(body, "temperature", &o->temperature));
  KV_RETURN_IF_ERROR(ReadFloat(body, "top_p", &o->top_p));
  KV_RETURN_IF_ERROR(ReadInt(body, "top_k", &o->top_k));
  if (o->top_k == -1) o->top_k = 0;  // vLLM's "disabled"
  KV_RETURN_IF_ERROR(ReadFloat(body, "min_p", &o->min_p));
  KV_RETURN_IF_ERROR(ReadFloat(body, "repetition_penalty", &o->repetition_penalty));
  KV_RETURN_IF_ERROR(ReadFloat(body, "presence_penalty", &o->presence_penalty));
  KV_RETURN_IF_ERROR(ReadFloat(body, "frequency_penalty", &o->frequency_penalty));
  if (const Json* seed = Find(body, "seed")) {
    if (!seed->is_number_integer()) return TypeError("seed", "an integer", *seed);
    // Any 64-bit integer, as vLLM takes it; negative seeds wrap (still one seed per value).
    o->seed = seed->is_number_unsigned() ? seed->get<uint64_t>()
                                         : static_cast<uint64_t>(seed->get<int64_t>());
  }
  std::string normalizer;
  KV_RETURN_IF_ERROR(ReadString(body, "normalizer", &normalizer));
  if (!normalizer.empty()) {
    KV_ASSIGN_OR_RETURN(o->normalizer, ParseNormalizer(normalizer));
  }
  KV_RETURN_IF_ERROR(ReadStop(body, &o->stop));
  if (const Json* ids = Find(body, "stop_token_ids")) {
    if (!ids->is_array()) return TypeError("stop_token_ids", "a list of token ids", *ids);
    KV_ASSIGN_OR_RETURN(o->stop_token_ids, ReadTokenIds("stop_token_ids", *ids));
  }
  KV_RETURN_IF_ERROR(ReadBool(body, "ignore_eos", &o->ignore_eos));
  KV_RETURN_IF_ERROR(ReadBool(body, "skip_special_tokens", &o->skip_special_tokens));
  KV_RETURN_IF_ERROR(ReadString(body, "cache_salt", &o->cache_salt));
  KV_RETURN_IF_ERROR(ReadInt(body, "priority", &o->priority));
  KV_RETURN_IF_ERROR(ReadInt(body, "n", &o->n));
  std::string user;  // accepted and unused, as OpenAI's abuse-monitoring field
  KV_RETURN_IF_ERROR(ReadString(body, "user", &user));
  return absl::OkStatus();
}

std::string FinishReasonJson(engine::FinishReason reason) {
  return reason == engine::FinishReason::kLength ? "length" : "stop";
}

// The bytes of a token piece as a JSON list of integers (chat logprobs' "bytes").
Json BytesOf(const std::string& piece) {
  Json bytes = Json::array();
  for (unsigned char c : piece) bytes.push_back(static_cast<int>(c));
  return bytes;
}

// Completions' logprobs object for the tokens of `out`.
Json CompletionLogprobs(const ChoiceOutput& out, const engine::Tokenizer& tokenizer) {
  Json tokens = Json::array(), token_logprobs = Json::array(), top = Json::array(),
       offsets = Json::array();
  int64_t offset = 0;
  for (size_t i = 0; i < out.logprobs.size() && i < out.token_ids.size(); ++i) {
    const std::string piece = tokenizer.Decode(out.token_ids[i]);
    tokens.push_back(piece);
    token_logprobs.push_back(out.logprobs[i].logprob);
    Json alternatives = Json::object();
    for (const engine::TokenLogprob& t : out.logprobs[i].top) {
      alternatives[tokenizer.Decode(t.token)] = t.logprob;
    }
    top.push_back(std::move(alternatives));
    offsets.push_back(offset);
    offset += static_cast<int64_t>(piece.size());
  }
  return Json{{"tokens", std::move(tokens)},
              {"token_logprobs", std::move(token_logprobs)},
              {"top_logprobs", std::move(top)},
              {"text_offset", std::move(offsets)}};
}

// Chat's logprobs object: {"content": [{"token", "logprob", "bytes", "top_logprobs"}]}.
Json ChatLogprobs(const ChoiceOutput& out, const engine::Tokenizer& tokenizer) {
  Json content = Json::array();
  for (size_t i = 0; i < out.logprobs.size() && i < out.token_ids.size(); ++i) {
    const std::string piece = tokenizer.Decode(out.token_ids[i]);
    Json top = Json::array();
    for (const engine::TokenLogprob& t : out.logprobs[i].top) {
      const std::string alt = tokenizer.Decode(t.token);
      top.push_back({{"token", alt}, {"logprob", t.logprob}, {"bytes", BytesOf(alt)}});
    }
    content.push_back({{"token", piece},
                       {"logprob", out.logprobs[i].logprob},
                       {"bytes", BytesOf(piece)},
                       {"top_logprobs", std::move(top)}});
  }
  return Json{{"content", std::move(content)}};
}

Json LogprobsJson(const OpenAiRequest& request, const ChoiceOutput& out,
                  const engine::Tokenizer& tokenizer) {
  if (!request.overrides.logprobs.has_value()) return nullptr;
  return request.endpoint == OpenAiEndpoint::kCompletions ? CompletionLogprobs(out, tokenizer)
                                                          : ChatLogprobs(out, tokenizer);
}

Json UsageJson(const Usage& usage) {
  return Json{{"prompt_tokens", usage.prompt_tokens},
              {"completion_tokens", usage.completion_tokens},
              {"total_tokens", usage.prompt_tokens + usage.completion_tokens}};
}

Json HeaderJson(const OpenAiRequest& request, const ResponseHeader& header, bool chunk) {
  const bool chat = request.endpoint == OpenAiEndpoint::kChatCompletions;
  return Json{
      {"id", header.id},
      {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
      {"created", header.created},
      {"model", header.model}};
}

// The JSON name of a field the engine names after GenerationRequest.
std::string JsonFieldName(absl::string_view field) {
  if (absl::StartsWith(field, "sampling.")) field.remove_prefix(9);
  if (absl::ConsumePrefix(&field, "prompt_token_ids")) return absl::StrCat("prompt", field);
  return std::string(field);
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, std::string_view body) {
  const Json json = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError("body: is not valid JSON");
  }
  if (!json.is_object()) return absl::InvalidArgumentError("body: must be a JSON object");
  OpenAiRequest request;
  request.endpoint = endpoint;
  KV_RETURN_IF_ERROR(ReadString(json, "model", &request.model));
  KV_RETURN_IF_ERROR(ReadBool(json, "stream", &request.stream));
  if (const Json* options = Find(json, "stream_options")) {
    if (!options->is_object()) return TypeError("stream_options", "an object", *options);
    absl::Status s = ReadBool(*options, "include_usage", &request.include_usage);
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("stream_options.", s.message()));
  }
  KV_RETURN_IF_ERROR(ReadGenerationFields(json, &request.overrides));
  if (endpoint == OpenAiEndpoint::kCompletions) {
    KV_RETURN_IF_ERROR(ReadPrompts(json, &request.prompts));
    KV_RETURN_IF_ERROR(ReadBool(json, "add_special_tokens", &request.add_special_tokens));
    KV_RETURN_IF_ERROR(ReadInt(json, "logprobs", &request.overrides.logprobs));
    std::optional<bool> echo;
    KV_RETURN_IF_ERROR(ReadBool(json, "echo", &echo));
    if (echo.value_or(false)) {
      return absl::InvalidArgumentError("echo: is not supported (send false or leave it out)");
    }
    if (Find(json, "suffix") != nullptr) {
      return absl::InvalidArgumentError("suffix: is not supported");
    }
    std::optional<int32_t> best_of;
    KV_RETURN_IF_ERROR(ReadInt(json, "best_of", &best_of));
    if (best_of.has_value() && *best_of != request.n()) {
      return absl::InvalidArgumentError(
          absl::StrCat("best_of: only best_of = n is supported, got ", *best_of));
    }
  } else {
    KV_RETURN_IF_ERROR(ReadMessages(json, &request.messages));
    // max_completion_tokens replaced max_tokens in OpenAI's chat API; it wins when both are set.
    std::optional<int32_t> max_completion_tokens;
    KV_RETURN_IF_ERROR(ReadInt(json, "max_completion_tokens", &max_completion_tokens));
    if (max_completion_tokens.has_value()) request.overrides.max_tokens = max_completion_tokens;
    std::optional<bool> logprobs;
    KV_RETURN_IF_ERROR(ReadBool(json, "logprobs", &logprobs));
    std::optional<int32_t> top_logprobs;
    KV_RETURN_IF_ERROR(ReadInt(json, "top_logprobs", &top_logprobs));
    if (top_logprobs.has_value() && !logprobs.value_or(false)) {
      return absl::InvalidArgumentError("top_logprobs: needs \"logprobs\": true");
    }
    if (logprobs.value_or(false)) request.overrides.logprobs = top_logprobs.value_or(0);
    KV_RETURN_IF_ERROR(ReadString(json, "chat_template", &request.chat_template));
    KV_RETURN_IF_ERROR(ReadBool(json, "add_generation_prompt", &request.add_generation_prompt));
  }
  return request;
}

absl::StatusOr<std::vector<engine::GenerationRequest>> ToEngineRequests(
    const OpenAiRequest& request, const engine::Engine& engine) {
  const engine::SamplingParams& defaults = engine.info().default_sampling;
  std::vector<engine::GenerationRequest> out;
  if (request.endpoint == OpenAiEndpoint::kChatCompletions) {
    KV_ASSIGN_OR_RETURN(
        engine::GenerationRequest r,
        RequestFromChat(request.messages, request.add_generation_prompt, request.chat_template,
                        engine.chat_prompt(), engine.tokenizer(), defaults, request.overrides));
    out.push_back(std::move(r));
    return out;
  }
  out.reserve(request.prompts.size());
  for (size_t i = 0; i < request.prompts.size(); ++i) {
    const OpenAiPrompt& p = request.prompts[i];
    absl::StatusOr<engine::GenerationRequest> r =
        p.is_token_ids ? RequestFromTokenIds(p.token_ids, "prompt", defaults, request.overrides)
                       : RequestFromText(p.text, request.add_special_tokens, engine.tokenizer(),
                                         defaults, request.overrides);
    if (!r.ok()) {
      // Name the list element when there are several prompts: "prompt[2]: must not be empty".
      if (request.prompts.size() > 1 && absl::StartsWith(r.status().message(), "prompt:")) {
        return absl::Status(r.status().code(),
                            absl::StrCat("prompt[", i, "]", r.status().message().substr(6)));
      }
      return r.status();
    }
    out.push_back(*std::move(r));
  }
  return out;
}

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

std::string ErrorBody(std::string_view message, std::string_view type, std::string_view param,
                      std::string_view code) {
  Json error{{"message", message},
             {"type", type},
             {"param", param.empty() ? Json() : Json(param)},
             {"code", code.empty() ? Json() : Json(code)}};
  return Dump(Json{{"error", std::move(error)}});
}

HttpError HttpErrorFor(const absl::Status& status) {
  HttpError e;
  e.status = HttpStatusFor(status.code());
  std::string message(status.message());
  std::string param;
  // Messages name their field first ("sampling.top_p: must be in (0, 1], got 1.5").
  if (const size_t colon = message.find(": ");
      colon != std::string::npos && message.find(' ') > colon) {
    const std::string field = message.substr(0, colon);
    param = JsonFieldName(field);
    if (param != field) message = param + message.substr(colon);
    param = param.substr(0, param.find_first_of("[."));  // "stop[0]" -> "stop"
  }
  if (param == "body") param.clear();
  std::string type = "invalid_request_error", code;
  switch (e.status) {
    case 404:
      code = "model_not_found";
      param = "model";
      break;
    case 401:
      type = "authentication_error";
      break;
    case 429:
      type = "rate_limit_error";
      code = "rate_limit_exceeded";
      e.retry_after_seconds = 1;
      break;
    case 503:
      type = "server_error";
      code = "service_unavailable";
      e.retry_after_seconds = 1;
      break;
    case 400:
    case 403:
      break;
    default:
      type = "server_error";
      break;
  }
  e.body = ErrorBody(message, type, param, code);
  return e;
}

std::string CompletionResponseJson(const OpenAiRequest& request, const ResponseHeader& header,
                                   const std::vector<ChoiceOutput>& choices, const Usage& usage,
                                   const engine::Tokenizer& tokenizer) {
  Json json = HeaderJson(request, header, /*chunk=*/false);
  Json list = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceOutput& c = choices[i];
    Json choice{{"index", i},
                {"logprobs", LogprobsJson(request, c, tokenizer)},
                {"finish_reason", FinishReasonJson(c.finish_reason)}};
    if (request.endpoint == OpenAiEndpoint::kChatCompletions) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    } else {
      choice["text"] = c.text;
    }
    list.push_back(std::move(choice));
  }
  json["choices"] = std::move(list);
  json["usage"] = UsageJson(usage);
  return Dump(json);
}

std::string StreamChunkEvent(const OpenAiRequest& request, const ResponseHeader& header,
                             int32_t index, const ChoiceOutput& delta, bool first,
                             const engine::Tokenizer& tokenizer) {
  Json json = HeaderJson(request, header, /*chunk=*/true);
  Json choice{{"index", index},
              {"logprobs", LogprobsJson(request, delta, tokenizer)},
              {"finish_reason", delta.finish_reason == engine::FinishReason::kNone
                                    ? Json()
                                    : Json(FinishReasonJson(delta.finish_reason))}};
  if (request.endpoint == OpenAiEndpoint::kChatCompletions) {
    Json d{{"content", delta.text}};
    if (first) d["role"] = "assistant";
    choice["delta"] = std::move(d);
  } else {
    choice["text"] = delta.text;
  }
  json["choices"] = Json::array({std::move(choice)});
  // With include_usage every chunk carries "usage": null but the last (OpenAI's shape).
  if (request.include_usage) json["usage"] = nullptr;
  return absl::StrCat("data: ", Dump(json), "\n\n");
}

std::string StreamUsageEvent(const OpenAiRequest& request, const ResponseHeader& header,
                             const Usage& usage) {
  Json json = HeaderJson(request, header, /*chunk=*/true);
  json["choices"] = Json::array();
  json["usage"] = UsageJson(usage);
  return absl::StrCat("data: ", Dump(json), "\n\n");
}

std::string StreamErrorEvent(const absl::Status& status) {
  return absl::StrCat("data: ", HttpErrorFor(status).body, "\n\n");
}

absl::StatusOr<TokenizeRequest> ParseTokenizeRequest(std::string_view body) {
  const Json json = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return absl::InvalidArgumentError("body: is not valid JSON");
  if (!json.is_object()) return absl::InvalidArgumentError("body: must be a JSON object");
  TokenizeRequest request;
  KV_RETURN_IF_ERROR(ReadString(json, "model", &request.model));
  if (Find(json, "prompt") == nullptr) return absl::InvalidArgumentError("prompt: is required");
  KV_RETURN_IF_ERROR(ReadString(json, "prompt", &request.prompt));
  KV_RETURN_IF_ERROR(ReadBool(json, "add_special_tokens", &request.add_special_tokens));
  return request;
}

std::string TokenizeResponseJson(const std::vector<int32_t>& ids, int64_t max_model_len) {
  return Dump(Json{{"tokens", ids}, {"count", ids.size()}, {"max_model_len", max_model_len}});
}

std::string ModelListJson(const std::vector<const engine::ModelInfo*>& models, int64_t created) {
  Json data = Json::array();
  for (const engine::ModelInfo* info : models) {
    data.push_back({{"id", info->name},
                    {"object", "model"},
                    {"created", created},
                    {"owned_by", "kvserve"},
                    {"max_model_len", info->config.max_position_embeddings}});
  }
  return Dump(Json{{"object", "list"}, {"data", std::move(data)}});
}

}  // namespace kvserve::server
