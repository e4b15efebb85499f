#include "engine/model_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace kvserve::engine {
namespace {

using Json = nlohmann::json;

absl::Status InvalidKey(absl::string_view key, const Json& value, absl::string_view expected) {
  return absl::InvalidArgumentError(
      absl::StrCat("config.json: '", key, "' must be ", expected, ", got ", value.dump()));
}

// Reads an optional integer key; leaves *out unchanged when absent or null.
absl::Status ReadInt(const Json& j, absl::string_view key, int32_t* out, bool required) {
  auto it = j.find(std::string(key));
  if (it == j.end() || it->is_null()) {
    if (required)
      return absl::InvalidArgumentError(absl::StrCat("config.json: missing '", key, "'"));
    return absl::OkStatus();
  }
  if (!it->is_number_integer()) return InvalidKey(key, *it, "an integer");
  const int64_t v = it->get<int64_t>();
  if (v < INT32_MIN || v > INT32_MAX) return InvalidKey(key, *it, "a 32-bit integer");
  *out = static_cast<int32_t>(v);
  return absl::OkStatus();
}

template <typename T>
absl::Status ReadNumber(const Json& j, absl::string_view key, T* out) {
  auto it = j.find(std::string(key));
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) return InvalidKey(key, *it, "a number");
  *out = it->get<T>();
  return absl::OkStatus();
}

}  // namespace

std::string_view ModelConfig::AttentionKind() const {
  if (num_key_value_heads == num_attention_heads) return "MHA";
  if (num_key_value_heads == 1) return "MQA";
  return "GQA";
}

int64_t ModelConfig::KvFloatsPerTokenPerLayer() const {
  return int64_t{2} * num_key_value_heads * head_dim;
}

absl::StatusOr<ModelConfig> ModelConfig::FromJson(std::string_view json_text) {
  Json j = Json::parse(json_text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("config.json: not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("config.json: top level must be an object");

  ModelConfig c;
  if (auto it = j.find("architectures"); it != j.end()) {
    if (!it->is_array() || it->empty() || !(*it)[0].is_string()) {
      return InvalidKey("architectures", *it, "a non-empty list of strings");
    }
    c.architecture = (*it)[0].get<std::string>();
  }
  if (c.architecture != "LlamaForCausalLM") {
    return absl::UnimplementedError(
        absl::StrCat("config.json: architecture '", c.architecture,
                     "' is not supported (supported: LlamaForCausalLM)"));
  }
  KV_RETURN_IF_ERROR(ReadInt(j, "vocab_size", &c.vocab_size, true));
  KV_RETURN_IF_ERROR(ReadInt(j, "hidden_size", &c.hidden_size, true));
  KV_RETURN_IF_ERROR(ReadInt(j, "intermediate_size", &c.intermediate_size, true));
  KV_RETURN_IF_ERROR(ReadInt(j, "num_hidden_layers", &c.num_hidden_layers, true));
  KV_RETURN_IF_ERROR(ReadInt(j, "num_attention_heads", &c.num_attention_heads, true));
  c.num_key_value_heads = c.num_attention_heads;
  KV_RETURN_IF_ERROR(ReadInt(j, "num_key_value_heads", &c.num_key_value_heads, false));
  if (c.num_attention_heads > 0) c.head_dim = c.hidden_size / c.num_attention_heads;
  KV_RETURN_IF_ERROR(ReadInt(j, "head_dim", &c.head_dim, false));
  c.max_position_embeddings = 2048;
  KV_RETURN_IF_ERROR(ReadInt(j, "max_position_embeddings", &c.max_position_embeddings, false));
  KV_RETURN_IF_ERROR(ReadNumber(j, "rms_norm_eps", &c.rms_norm_eps));
  KV_RETURN_IF_ERROR(ReadNumber(j, "rope_theta", &c.rope_theta));
  if (auto it = j.find("tie_word_embeddings"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) return InvalidKey("tie_word_embeddings", *it, "a boolean");
    c.tie_word_embeddings = it->get<bool>();
  }
  KV_RETURN_IF_ERROR(ReadInt(j, "bos_token_id", &c.bos_token_id, false));
  if (auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    if (it->is_number_integer()) {
      c.eos_token_ids.push_back(it->get<int32_t>());
    } else if (it->is_array()) {
      for (const Json& e : *it) {
        if (!e.is_number_integer())
          return InvalidKey("eos_token_id", *it, "an integer or a list of integers");
        c.eos_token_ids.push_back(e.get<int32_t>());
      }
    } else {
      return InvalidKey("eos_token_id", *it, "an integer or a list of integers");
    }
  }
  if (auto it = j.find("hidden_act"); it != j.end() && !it->is_null() && *it != "silu") {
    return absl::UnimplementedError(absl::StrCat("config.json: hidden_act ", it->dump(),
                                                 " is not supported (supported: \"silu\")"));
  }
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) {
    return absl::UnimplementedError(
        absl::StrCat("config.json: rope_scaling ", it->dump(), " is not supported yet"));
  }
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (auto it = j.find(key); it != j.end() && it->is_boolean() && it->get<bool>()) {
      return absl::UnimplementedError(
          absl::StrCat("config.json: '", key, "': true is not supported"));
    }
  }
  KV_RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::Status ModelConfig::Validate() const {
  auto positive = [](absl::string_view key, int64_t v) -> absl::Status {
    if (v > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: '", key, "' must be > 0, got ", v));
  };
  KV_RETURN_IF_ERROR(positive("vocab_size", vocab_size));
  KV_RETURN_IF_ERROR(positive("hidden_size", hidden_size));
  KV_RETURN_IF_ERROR(positive("intermediate_size", intermediate_size));
  KV_RETURN_IF_ERROR(positive("num_hidden_layers", num_hidden_layers));
  KV_RETURN_IF_ERROR(positive("num_attention_heads", num_attention_heads));
  KV_RETURN_IF_ERROR(positive("num_key_value_heads", num_key_value_heads));
  KV_RETURN_IF_ERROR(positive("head_dim", head_dim));
  KV_RETURN_IF_ERROR(positive("max_position_embeddings", max_position_embeddings));
  if (num_attention_heads % num_key_value_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: num_attention_heads (", num_attention_heads,
                     ") must be a multiple of num_key_value_heads (", num_key_value_heads, ")"));
  }
  if (head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: head_dim must be even for RoPE, got ", head_dim));
  }
  if (!(rms_norm_eps > 0) || !std::isfinite(rms_norm_eps)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: 'rms_norm_eps' must be > 0, got ", rms_norm_eps));
  }
  if (!(rope_theta > 1) || !std::isfinite(rope_theta)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: 'rope_theta' must be > 1, got ", rope_theta));
  }
  for (int32_t id : eos_token_ids) {
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.json: eos_token_id ", id, " is outside [0, ", vocab_size, ")"));
    }
  }
  if (bos_token_id >= vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: bos_token_id ", bos_token_id,
                                                   " is outside [0, ", vocab_size, ")"));
  }
  return absl::OkStatus();
}

}  // namespace kvserve::engine
