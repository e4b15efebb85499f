// Model hyper-parameters, read from a Hugging Face `config.json`.
//
// Only decoder-only Llama-style models (`LlamaForCausalLM`) are accepted for now. Fields the engine
// does not implement (rope_scaling, attention biases, non-SiLU activations) are rejected with a
// clear error instead of being silently ignored: a model that loads must compute what its authors
// meant.
#ifndef KVSERVE_ENGINE_MODEL_CONFIG_H_
#define KVSERVE_ENGINE_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvserve::engine {

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";
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
  // "MHA", "MQA" or "GQA".
  std::string_view AttentionKind() const;
  // K and V floats per token per layer: 2 * num_key_value_heads * head_dim.
  int64_t KvFloatsPerTokenPerLayer() const;

  // Parses config.json text. Errors name the offending key and value.
  static absl::StatusOr<ModelConfig> FromJson(std::string_view json_text);
  // Checks internal consistency (positive sizes, heads divisible by kv heads, even head_dim).
  absl::Status Validate() const;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_MODEL_CONFIG_H_
