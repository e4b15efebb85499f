#include "engine/checkpoint/model_config.h"

#include <algorithm>
#include <cmath>
#include <limits>

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
  // An unsigned value above INT64_MAX would wrap in get<int64_t>().
  if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t{INT32_MAX}) {
    return InvalidKey(key, *it, "a 32-bit integer");
  }
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
  const double v = it->get<double>();
  // Narrowing a double beyond T's range is undefined behaviour, not infinity.
  if (std::abs(v) > std::numeric_limits<T>::max()) return InvalidKey(key, *it, "a finite number");
  *out = static_cast<T>(v);
  return absl::OkStatus();
}

// num_hidden_layers sizes per-layer tables while parsing (sliding windows), so it is bounded
// before any of them is built.
absl::Status CheckNumHiddenLayers(int32_t n) {
  if (n > 0 && n <= ModelConfig::kMaxNumHiddenLayers) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("config.json: 'num_hidden_layers' must be in [1, ",
                                                 ModelConfig::kMaxNumHiddenLayers, "], got ", n));
}

// Reads an optional boolean key; leaves *out unchanged when absent or null.
absl::Status ReadBool(const Json& j, absl::string_view key, bool* out) {
  auto it = j.find(std::string(key));
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return InvalidKey(key, *it, "a boolean");
  *out = it->get<bool>();
  return absl::OkStatus();
}

// A number that must be present in rope_scaling.
absl::Status ReadRequiredNumber(const Json& rs, absl::string_view key, absl::string_view type,
                                double* out) {
  if (auto it = rs.find(std::string(key)); it == rs.end() || it->is_null()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: rope_scaling of type \"", type, "\" needs '", key, "'"));
  }
  return ReadNumber(rs, key, out);
}

// rope_scaling (null, or an object whose "rope_type" -- or legacy "type" -- selects the
// scaling). Sets c->yarn or c->rope_scaling; "default" is no scaling.
absl::Status ReadRopeScaling(const Json& j, bool deepseek, ModelConfig* c) {
  auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  const Json& rs = *it;
  if (!rs.is_object()) return InvalidKey("rope_scaling", rs, "null or an object");
  // Hugging Face reads rope_type first and falls back to the older spelling "type".
  const char* type_key = rs.contains("rope_type") ? "rope_type" : "type";
  auto t = rs.find(type_key);
  if (t == rs.end() || !t->is_string()) {
    return InvalidKey(absl::StrCat("rope_scaling.", type_key), t == rs.end() ? Json() : *t,
                      "a string");
  }
  const std::string type = t->get<std::string>();
  if (type == "default") return absl::OkStatus();
  if (type == "linear" || type == "llama3") {
    if (deepseek) {
      return absl::UnimplementedError(
          absl::StrCat("config.json: rope_scaling type \"", type,
                       "\" is not supported for DeepseekV2ForCausalLM (supported: \"yarn\")"));
    }
    RopeScaling r;
    r.type = type == "linear" ? RopeScaling::Type::kLinear : RopeScaling::Type::kLlama3;
    KV_RETURN_IF_ERROR(ReadRequiredNumber(rs, "factor", type, &r.factor));
    if (r.type == RopeScaling::Type::kLlama3) {
      KV_RETURN_IF_ERROR(ReadRequiredNumber(rs, "low_freq_factor", type, &r.low_freq_factor));
      KV_RETURN_IF_ERROR(ReadRequiredNumber(rs, "high_freq_factor", type, &r.high_freq_factor));
      if (!rs.contains("original_max_position_embeddings")) {
        return absl::InvalidArgumentError(
            "config.json: rope_scaling of type \"llama3\" needs "
            "'original_max_position_embeddings'");
      }
      KV_RETURN_IF_ERROR(ReadInt(rs, "original_max_position_embeddings",
                                 &r.original_max_position_embeddings, true));
      if (!(r.high_freq_factor > r.low_freq_factor) || !(r.low_freq_factor > 0) ||
          r.original_max_position_embeddings <= 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "config.json: rope_scaling ", rs.dump(),
            " needs high_freq_factor > low_freq_factor > 0 and original_max_position_embeddings "
            "> 0"));
      }
    }
    if (!(r.factor >= 1) || !std::isfinite(r.factor)) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.json: rope_scaling ", rs.dump(), " needs a finite factor >= 1"));
    }
    c->rope_scaling = r;
    return absl::OkStatus();
  }
  if (type != "yarn" || !deepseek) {
    return absl::UnimplementedError(absl::StrCat(
        "config.json: rope_scaling type \"", type, "\" is not supported (supported: null, ",
        "\"default\", \"linear\", \"llama3\"; \"yarn\" for DeepseekV2ForCausalLM only)"));
  }
  YarnScaling y;
  KV_RETURN_IF_ERROR(ReadNumber(rs, "factor", &y.factor));
  KV_RETURN_IF_ERROR(
      ReadInt(rs, "original_max_position_embeddings", &y.original_max_position_embeddings, false));
  KV_RETURN_IF_ERROR(ReadNumber(rs, "beta_fast", &y.beta_fast));
  KV_RETURN_IF_ERROR(ReadNumber(rs, "beta_slow", &y.beta_slow));
  KV_RETURN_IF_ERROR(ReadNumber(rs, "mscale", &y.mscale));
  KV_RETURN_IF_ERROR(ReadNumber(rs, "mscale_all_dim", &y.mscale_all_dim));
  if (!(y.factor >= 1) || y.original_max_position_embeddings <= 0 || !(y.beta_fast > y.beta_slow) ||
      !(y.beta_slow > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: rope_scaling ", rs.dump(),
                     " needs factor >= 1, original_max_position_embeddings > 0 and beta_fast > "
                     "beta_slow > 0"));
  }
  c->yarn = y;
  return absl::OkStatus();
}

// Qwen2 / Qwen3 sliding-window attention, with Hugging Face's meaning: the window is off unless
// use_sliding_window is true; then layer i uses it when layer_types[i] is "sliding_attention"
// (newer configs) or else when i >= max_window_layers. Sets c->sliding_windows when some layer
// uses a window that can cut its context.
absl::Status ReadSlidingWindow(const Json& j, ModelConfig* c) {
  bool use = false;
  KV_RETURN_IF_ERROR(ReadBool(j, "use_sliding_window", &use));
  // Hugging Face's Qwen2Config / Qwen3Config default max_window_layers to 28.
  int32_t window = 0, max_window_layers = 28;
  KV_RETURN_IF_ERROR(ReadInt(j, "sliding_window", &window, false));
  KV_RETURN_IF_ERROR(ReadInt(j, "max_window_layers", &max_window_layers, false));
  if (!use || window >= c->max_position_embeddings) return absl::OkStatus();
  if (window <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: use_sliding_window is true but 'sliding_window' is ", window,
                     "; it must be a positive integer"));
  }
  std::vector<int32_t> windows(c->num_hidden_layers, 0);
  if (auto lt = j.find("layer_types"); lt != j.end() && !lt->is_null()) {
    constexpr char kExpected[] = "a list of \"full_attention\" or \"sliding_attention\"";
    if (!lt->is_array()) return InvalidKey("layer_types", *lt, kExpected);
    if (static_cast<int32_t>(lt->size()) != c->num_hidden_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.json: 'layer_types' lists ", lt->size(),
                       " layers but num_hidden_layers is ", c->num_hidden_layers));
    }
    for (size_t i = 0; i < lt->size(); ++i) {
      const Json& t = (*lt)[i];
      if (t != "full_attention" && t != "sliding_attention") {
        return InvalidKey("layer_types", *lt, kExpected);
      }
      if (t == "sliding_attention") windows[i] = window;
    }
  } else {
    for (int32_t i = std::max(max_window_layers, 0); i < c->num_hidden_layers; ++i) {
      windows[i] = window;
    }
  }
  if (std::any_of(windows.begin(), windows.end(), [](int32_t w) { return w > 0; })) {
    c->sliding_windows = std::move(windows);
  }
  return absl::OkStatus();
}

}  // namespace

int64_t ModelConfig::RopeTrainingContext() const {
  if (yarn.has_value()) return yarn->original_max_position_embeddings;
  if (rope_scaling.has_value()) {
    if (rope_scaling->type == RopeScaling::Type::kLlama3) {
      return rope_scaling->original_max_position_embeddings;
    }
    return std::max<int64_t>(
        1, static_cast<int64_t>(std::floor(max_position_embeddings / rope_scaling->factor)));
  }
  return max_position_embeddings;
}

std::string_view ModelConfig::AttentionKind() const {
  if (mla.has_value()) return "MLA";
  if (s4.has_value()) {
    if (num_key_value_heads == num_attention_heads) return "MHA+S4";
    if (num_key_value_heads == 1) return "MQA+S4";
    return "GQA+S4";
  }
  if (num_key_value_heads == num_attention_heads) return "MHA";
  if (num_key_value_heads == 1) return "MQA";
  return "GQA";
}

int64_t ModelConfig::KvFloatsPerTokenPerLayer() const {
  if (mla.has_value()) return int64_t{mla->kv_lora_rank} + mla->qk_rope_head_dim;
  return int64_t{2} * num_key_value_heads * head_dim;
}

double YarnGetMscale(double scale, double m) {
  return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
}

double ModelConfig::SoftmaxScale() const {
  const double qk_dim = mla.has_value() ? mla->qk_nope_head_dim + mla->qk_rope_head_dim : head_dim;
  double scale = 1.0 / std::sqrt(qk_dim);
  if (yarn.has_value() && yarn->mscale_all_dim != 0) {
    const double m = YarnGetMscale(yarn->factor, yarn->mscale_all_dim);
    scale *= m * m;
  }
  return scale;
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
  const bool deepseek = c.architecture == "DeepseekV2ForCausalLM";
  const bool hybrid = c.architecture == "KvserveHybridForCausalLM";
  const bool qwen2 = c.architecture == "Qwen2ForCausalLM";
  const bool qwen3 = c.architecture == "Qwen3ForCausalLM";
  if (c.architecture != "LlamaForCausalLM" && !deepseek && !hybrid && !qwen2 && !qwen3) {
    return absl::UnimplementedError(
        absl::StrCat("config.json: architecture '", c.architecture,
                     "' is not supported (supported: LlamaForCausalLM, Qwen2ForCausalLM, "
                     "Qwen3ForCausalLM, DeepseekV2ForCausalLM, KvserveHybridForCausalLM)"));
  }
  c.qkv_bias = qwen2;  // Qwen2's q/k/v projections always have biases (no config key)
  c.qk_norm = qwen3;
  KV_RETURN_IF_ERROR(ReadInt(j, "vocab_size", &c.vocab_size, true));
  KV_RETURN_IF_ERROR(ReadInt(j, "hidden_size", &c.hidden_size, true));
  KV_RETURN_IF_ERROR(ReadInt(j, "intermediate_size", &c.intermediate_size, true));
  KV_RETURN_IF_ERROR(ReadInt(j, "num_hidden_layers", &c.num_hidden_layers, true));
  KV_RETURN_IF_ERROR(CheckNumHiddenLayers(c.num_hidden_layers));
  KV_RETURN_IF_ERROR(ReadInt(j, "num_attention_heads", &c.num_attention_heads, true));
  c.num_key_value_heads = c.num_attention_heads;
  KV_RETURN_IF_ERROR(ReadInt(j, "num_key_value_heads", &c.num_key_value_heads, false));
  if (c.num_attention_heads > 0) c.head_dim = c.hidden_size / c.num_attention_heads;
  KV_RETURN_IF_ERROR(ReadInt(j, "head_dim", &c.head_dim, false));
  c.max_position_embeddings = 2048;
  KV_RETURN_IF_ERROR(ReadInt(j, "max_position_embeddings", &c.max_position_embeddings, false));
  KV_RETURN_IF_ERROR(ReadNumber(j, "rms_norm_eps", &c.rms_norm_eps));
  KV_RETURN_IF_ERROR(ReadNumber(j, "rope_theta", &c.rope_theta));
  KV_RETURN_IF_ERROR(ReadBool(j, "tie_word_embeddings", &c.tie_word_embeddings));
  KV_RETURN_IF_ERROR(ReadInt(j, "bos_token_id", &c.bos_token_id, false));
  if (auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    // Each id is range-checked before narrowing: 2^40 must not wrap to a valid id.
    auto read_id = [&c](const Json& e) -> absl::Status {
      int32_t id = 0;
      KV_RETURN_IF_ERROR(ReadInt(Json{{"eos_token_id", e}}, "eos_token_id", &id, true));
      c.eos_token_ids.push_back(id);
      return absl::OkStatus();
    };
    if (it->is_array()) {
      for (const Json& e : *it) KV_RETURN_IF_ERROR(read_id(e));
    } else {
      KV_RETURN_IF_ERROR(read_id(*it));
    }
  }
  if (auto it = j.find("hidden_act"); it != j.end() && !it->is_null() && *it != "silu") {
    return absl::UnimplementedError(absl::StrCat("config.json: hidden_act ", it->dump(),
                                                 " is not supported (supported: \"silu\")"));
  }
  KV_RETURN_IF_ERROR(ReadRopeScaling(j, deepseek, &c));
  if (qwen2 || qwen3) KV_RETURN_IF_ERROR(ReadSlidingWindow(j, &c));
  if (hybrid) {
    auto it = j.find("layer_types");
    if (it == j.end() || !it->is_array()) {
      return absl::InvalidArgumentError(
          "config.json: KvserveHybridForCausalLM needs 'layer_types', a list of \"attention\" "
          "or \"s4\" per layer");
    }
    for (const Json& t : *it) {
      if (t == "attention") {
        c.layer_types.push_back(LayerType::kAttention);
      } else if (t == "s4") {
        c.layer_types.push_back(LayerType::kS4);
      } else {
        return InvalidKey("layer_types", *it, "a list of \"attention\" or \"s4\"");
      }
    }
    if (static_cast<int32_t>(c.layer_types.size()) != c.num_hidden_layers) {
      return absl::InvalidArgumentError(absl::StrCat("config.json: 'layer_types' lists ",
                                                     c.layer_types.size(), " layers but ",
                                                     "num_hidden_layers is ", c.num_hidden_layers));
    }
    S4Dims s4;
    KV_RETURN_IF_ERROR(ReadInt(j, "s4_d_state", &s4.state_size, true));
    if (auto d = j.find("s4_discretization"); d != j.end() && !d->is_null()) {
      if (*d == "bilinear") {
        s4.bilinear = true;
      } else if (*d != "zoh") {
        return InvalidKey("s4_discretization", *d, "\"zoh\" or \"bilinear\"");
      }
    }
    c.s4 = s4;
  }
  if (deepseek) {
    MlaDims m;
    KV_RETURN_IF_ERROR(ReadInt(j, "q_lora_rank", &m.q_lora_rank, false));
    KV_RETURN_IF_ERROR(ReadInt(j, "kv_lora_rank", &m.kv_lora_rank, true));
    KV_RETURN_IF_ERROR(ReadInt(j, "qk_nope_head_dim", &m.qk_nope_head_dim, true));
    KV_RETURN_IF_ERROR(ReadInt(j, "qk_rope_head_dim", &m.qk_rope_head_dim, true));
    KV_RETURN_IF_ERROR(ReadInt(j, "v_head_dim", &m.v_head_dim, true));
    c.mla = m;
    // Layer i is a mixture-of-experts layer when n_routed_experts is set, i >=
    // first_k_dense_replace and i % moe_layer_freq == 0. Only dense layers are implemented.
    int32_t experts = 0, first_dense = 0, freq = 1;
    KV_RETURN_IF_ERROR(ReadInt(j, "n_routed_experts", &experts, false));
    KV_RETURN_IF_ERROR(ReadInt(j, "first_k_dense_replace", &first_dense, false));
    KV_RETURN_IF_ERROR(ReadInt(j, "moe_layer_freq", &freq, false));
    for (int32_t i = std::max(first_dense, 0); experts > 0 && freq > 0 && i < c.num_hidden_layers;
         ++i) {
      if (i % freq == 0) {
        return absl::UnimplementedError(absl::StrCat(
            "config.json: layer ", i, " is a mixture-of-experts layer (n_routed_experts ", experts,
            ", first_k_dense_replace ", first_dense,
            "); only dense MLP layers are supported so far"));
      }
    }
  }
  // Llama's and Qwen3's attention_bias put biases on all four projections (o_proj too), unlike
  // Qwen2's fixed q/k/v biases; neither it nor mlp_bias is implemented.
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    bool on = false;
    KV_RETURN_IF_ERROR(ReadBool(j, key, &on));
    if (on) {
      return absl::UnimplementedError(
          absl::StrCat("config.json: '", key, "': true is not supported for ", c.architecture));
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
  KV_RETURN_IF_ERROR(CheckNumHiddenLayers(num_hidden_layers));
  KV_RETURN_IF_ERROR(positive("num_attention_heads", num_attention_heads));
  KV_RETURN_IF_ERROR(positive("num_key_value_heads", num_key_value_heads));
  KV_RETURN_IF_ERROR(positive("head_dim", head_dim));
  KV_RETURN_IF_ERROR(positive("max_position_embeddings", max_position_embeddings));
  if (num_attention_heads % num_key_value_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: num_attention_heads (", num_attention_heads,
                     ") must be a multiple of num_key_value_heads (", num_key_value_heads, ")"));
  }
  if (s4.has_value() && (s4->state_size <= 0 || s4->state_size % 2 != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.json: 's4_d_state' must be a positive even number, got ", s4->state_size));
  }
  if (mla.has_value()) {
    KV_RETURN_IF_ERROR(positive("kv_lora_rank", mla->kv_lora_rank));
    KV_RETURN_IF_ERROR(positive("qk_nope_head_dim", mla->qk_nope_head_dim));
    KV_RETURN_IF_ERROR(positive("qk_rope_head_dim", mla->qk_rope_head_dim));
    KV_RETURN_IF_ERROR(positive("v_head_dim", mla->v_head_dim));
    if (mla->q_lora_rank < 0) {
      return absl::InvalidArgumentError("config.json: 'q_lora_rank' must be >= 0 or null");
    }
    if (mla->qk_rope_head_dim % 2 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config.json: qk_rope_head_dim must be even for RoPE, got ", mla->qk_rope_head_dim));
    }
  } else if (head_dim % 2 != 0) {
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
