// Model hyper-parameters, read from a Hugging Face `config.json`.
//
// Accepted decoder families (docs/model-format.md): `LlamaForCausalLM` (MHA / MQA / GQA
// attention), `Qwen2ForCausalLM` (Llama with q/k/v projection biases), `Qwen3ForCausalLM` (Llama
// with per-head q/k RMSNorm), `DeepseekV2ForCausalLM` (multi-head latent attention, MLA, with
// dense MLPs) and kvserve's `KvserveHybridForCausalLM` (Llama attention layers mixed with S4
// layers). Fields the engine does not implement (MoE layers, Llama-style attention / MLP biases,
// non-SiLU activations, RoPE scalings other than Llama-3, linear and DeepSeek's YaRN) are rejected
// with an error naming the key instead of being silently ignored: a model that loads must compute
// what its authors meant.
#ifndef KVSERVE_ENGINE_CHECKPOINT_MODEL_CONFIG_H_
#define KVSERVE_ENGINE_CHECKPOINT_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvserve::engine {

// YaRN context extension as DeepSeek-V2 applies it to the decoupled RoPE dims (rope_scaling of
// type "yarn"): per-frequency interpolation ramp, cos/sin scaled by mscale / mscale_all_dim, and
// the softmax scale multiplied by get_mscale(factor, mscale_all_dim)².
struct YarnScaling {
  double factor = 1.0;
  int32_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 0.0;
};

// Llama-style RoPE frequency scaling (rope_scaling with rope_type "linear" or "llama3"), applied
// to inv_freq before any angle is formed; the equations are in docs/model-format.md.
struct RopeScaling {
  enum class Type {
    kLinear,  // inv_freq / factor (positions divided by factor)
    kLlama3,  // Llama 3.1's wavelength bands: low frequencies / factor, high kept, smooth between
  };
  Type type = Type::kLinear;
  double factor = 1.0;
  // kLlama3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int32_t original_max_position_embeddings = 8192;
};

// Multi-head latent attention dimensions (DeepSeek-V2, docs/math.md §2.2).
struct MlaDims {
  int32_t q_lora_rank = 0;  // 0: no query compression (plain q_proj)
  int32_t kv_lora_rank = 0;
  int32_t qk_nope_head_dim = 0;
  int32_t qk_rope_head_dim = 0;
  int32_t v_head_dim = 0;
};

enum class LayerType { kAttention, kS4 };

// S4 (S4D) layer sizes of a hybrid model: channels = hidden_size, state_size / 2 complex modes
// each.
struct S4Dims {
  int32_t state_size = 0;  // N ("s4_d_state"), even
  bool bilinear = false;   // "s4_discretization": "zoh" (default) or "bilinear"
};

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";
  // One per layer. All kAttention except in KvserveHybridForCausalLM ("layer_types").
  std::vector<LayerType> layer_types;
  std::optional<S4Dims> s4;
  // Set for DeepseekV2ForCausalLM: every layer's attention is MLA.
  std::optional<MlaDims> mla;
  std::optional<YarnScaling> yarn;
  std::optional<RopeScaling> rope_scaling;
  // Qwen2: q_proj, k_proj and v_proj carry biases ({heads|kv_heads}*head_dim); o_proj does not.
  bool qkv_bias = false;
  // Qwen3: q_norm / k_norm ([head_dim]) RMS-normalise every head of Q and K before RoPE.
  bool qk_norm = false;
  // Qwen2 / Qwen3 sliding-window attention: per layer, the number of positions a query sees
  // (itself and the window - 1 before it), 0 for full attention. Empty: every layer is full.
  std::vector<int32_t> sliding_windows;
  int32_t vocab_size = 0;
  int32_t hidden_size = 0;
  int32_t intermediate_size = 0;
  int32_t num_hidden_layers = 0;
  int32_t num_attention_heads = 0;
  // num_attention_heads = MHA, 1 = MQA, anything dividing num_attention_heads = GQA.
  int32_t num_key_value_heads = 0;
  // Defaults to hidden_size / num_attention_heads when config.json has none.
  int32_t head_dim = 0;
  int32_t max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  // RoPE base (theta): inv_freq[j] = rope_theta^(-2j / head_dim).
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  int32_t bos_token_id = -1;  // -1: none
  // The first id is the primary EOS; all of them stop generation.
  std::vector<int32_t> eos_token_ids;

  // Number of query heads sharing one K/V head.
  int32_t group_size() const { return num_attention_heads / num_key_value_heads; }
  LayerType layer_type(int32_t layer) const {
    return layer_types.empty() ? LayerType::kAttention : layer_types[layer];
  }
  // The attention window of a layer, 0 for full causal attention.
  int32_t sliding_window(int32_t layer) const {
    return sliding_windows.empty() ? 0 : sliding_windows[layer];
  }
  // "MHA", "MQA", "GQA" or "MLA".
  std::string_view AttentionKind() const;
  // Cached floats per token per layer: 2 * num_key_value_heads * head_dim (K and V), or for MLA
  // kv_lora_rank + qk_rope_head_dim (the latent and the shared RoPE key).
  int64_t KvFloatsPerTokenPerLayer() const;
  // The context length RoPE was trained for: original_max_position_embeddings under llama3 or
  // YaRN scaling, max_position_embeddings / factor under linear scaling, else
  // max_position_embeddings.
  int64_t RopeTrainingContext() const;
  // Attention's softmax scale: 1/sqrt(head_dim), for MLA 1/sqrt(nope + rope) (× mscale² with YaRN).
  double SoftmaxScale() const;

  // Far above any published model (a few hundred layers); bounds the per-layer tables built while
  // parsing. Whether the weights fit in memory is DecoderModel::EstimateMemory's check.
  static constexpr int32_t kMaxNumHiddenLayers = 65536;

  // Parses config.json text. Errors name the offending key and value; integers must fit int32
  // (token ids included: 2^40 is an error, not id 0).
  static absl::StatusOr<ModelConfig> FromJson(std::string_view json_text);
  // Checks internal consistency (positive sizes, at most kMaxNumHiddenLayers layers, heads
  // divisible by kv heads, even head_dim, token ids inside the vocabulary).
  absl::Status Validate() const;
};

// DeepSeek's YaRN attention factor: 0.1 * m * ln(scale) + 1 for scale > 1, else 1.
double YarnGetMscale(double scale, double m);

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_CHECKPOINT_MODEL_CONFIG_H_
