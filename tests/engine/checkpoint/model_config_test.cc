#include "engine/checkpoint/model_config.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

using ::testing::HasSubstr;

constexpr char kLlama[] = R"({
  "architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 64,
  "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 8,
  "num_key_value_heads": 2, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
  "eos_token_id": [7, 9], "bos_token_id": 1, "rope_scaling": null})";

TEST(ModelConfigTest, ParsesLlamaConfigWithDefaults) {
  auto c = ModelConfig::FromJson(kLlama);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 8);  // hidden / heads when absent
  EXPECT_EQ(c->group_size(), 4);
  EXPECT_EQ(c->AttentionKind(), "GQA");
  EXPECT_EQ(c->KvFloatsPerTokenPerLayer(), 2 * 2 * 8);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{7, 9}));
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->max_position_embeddings, 2048);
}

TEST(ModelConfigTest, NamesMhaAndMqa) {
  std::string mha = kLlama;
  mha.replace(mha.find("\"num_key_value_heads\": 2"), 24, "\"num_key_value_heads\": 8");
  EXPECT_EQ(ModelConfig::FromJson(mha)->AttentionKind(), "MHA");
  std::string mqa = kLlama;
  mqa.replace(mqa.find("\"num_key_value_heads\": 2"), 24, "\"num_key_value_heads\": 1");
  EXPECT_EQ(ModelConfig::FromJson(mqa)->AttentionKind(), "MQA");
}

struct BadConfig {
  const char* from;
  const char* to;
  absl::StatusCode code;
  const char* message;
};

class ModelConfigErrorTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(ModelConfigErrorTest, RejectsWithClearMessage) {
  std::string json = kLlama;
  const size_t at = json.find(GetParam().from);
  ASSERT_NE(at, std::string::npos);
  json.replace(at, std::string(GetParam().from).size(), GetParam().to);
  auto c = ModelConfig::FromJson(json);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), GetParam().code);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ModelConfigErrorTest,
    ::testing::Values(
        BadConfig{"\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3",
                  absl::StatusCode::kInvalidArgument,
                  "must be a multiple of num_key_value_heads (3)"},
        BadConfig{"\"vocab_size\": 100,", "", absl::StatusCode::kInvalidArgument,
                  "missing 'vocab_size'"},
        BadConfig{"\"hidden_size\": 64", "\"hidden_size\": \"64\"",
                  absl::StatusCode::kInvalidArgument,
                  "'hidden_size' must be an integer, got \"64\""},
        BadConfig{
            "\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2}",
            absl::StatusCode::kUnimplemented, "rope_scaling type \"dynamic\" is not supported"},
        BadConfig{"\"rope_scaling\": null", "\"rope_scaling\": {\"type\": 5}",
                  absl::StatusCode::kInvalidArgument,
                  "'rope_scaling.type' must be a string, got 5"},
        BadConfig{"\"rope_scaling\": null", "\"rope_scaling\": {\"factor\": 2}",
                  absl::StatusCode::kInvalidArgument,
                  "'rope_scaling.type' must be a string, got null"},
        BadConfig{"\"rope_scaling\": null", "\"rope_scaling\": \"linear\"",
                  absl::StatusCode::kInvalidArgument, "'rope_scaling' must be null or an object"},
        BadConfig{"\"rope_scaling\": null",
                  "\"rope_scaling\": {\"rope_type\": \"linear\", "
                  "\"factor\": \"2\"}",
                  absl::StatusCode::kInvalidArgument, "'factor' must be a number, got \"2\""},
        BadConfig{"\"rope_scaling\": null",
                  "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, "
                  "\"low_freq_factor\": 1, \"high_freq_factor\": 4}",
                  absl::StatusCode::kInvalidArgument, "needs 'original_max_position_embeddings'"},
        BadConfig{"\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"linear\"}",
                  absl::StatusCode::kInvalidArgument,
                  "rope_scaling of type \"linear\" needs 'factor'"},
        BadConfig{"\"rope_scaling\": null", "\"attention_bias\": true",
                  absl::StatusCode::kUnimplemented, "'attention_bias': true is not supported"},
        BadConfig{"\"rope_scaling\": null", "\"mlp_bias\": \"no\"",
                  absl::StatusCode::kInvalidArgument, "'mlp_bias' must be a boolean"},
        BadConfig{"LlamaForCausalLM", "MambaForCausalLM", absl::StatusCode::kUnimplemented,
                  "architecture 'MambaForCausalLM' is not supported"},
        BadConfig{"[7, 9]", "[7, 100]", absl::StatusCode::kInvalidArgument,
                  "eos_token_id 100 is outside [0, 100)"},
        BadConfig{"\"num_hidden_layers\": 2", "\"num_hidden_layers\": 0",
                  absl::StatusCode::kInvalidArgument,
                  "'num_hidden_layers' must be in [1, 65536], got 0"},
        BadConfig{"{", "[", absl::StatusCode::kInvalidArgument, "not valid JSON"},
        // Issue #18: values that used to abort (bad_alloc), wrap or be undefined behaviour.
        BadConfig{"\"num_hidden_layers\": 2", "\"num_hidden_layers\": 100000000",
                  absl::StatusCode::kInvalidArgument,
                  "'num_hidden_layers' must be in [1, 65536], got 100000000"},
        BadConfig{"\"num_hidden_layers\": 2", "\"num_hidden_layers\": 2147483647",
                  absl::StatusCode::kInvalidArgument,
                  "'num_hidden_layers' must be in [1, 65536], got 2147483647"},
        BadConfig{"[7, 9]", "[7, 1099511627776]", absl::StatusCode::kInvalidArgument,
                  "'eos_token_id' must be a 32-bit integer, got 1099511627776"},
        BadConfig{"[7, 9]", "18446744073709551615", absl::StatusCode::kInvalidArgument,
                  "'eos_token_id' must be a 32-bit integer, got 18446744073709551615"},
        BadConfig{"[7, 9]", "[7, 9.5]", absl::StatusCode::kInvalidArgument,
                  "'eos_token_id' must be an integer, got 9.5"},
        BadConfig{"\"vocab_size\": 100", "\"vocab_size\": 9223372036854775808",
                  absl::StatusCode::kInvalidArgument,
                  "'vocab_size' must be a 32-bit integer, got 9223372036854775808"},
        BadConfig{"\"rms_norm_eps\": 1e-5", "\"rms_norm_eps\": 1e300",
                  absl::StatusCode::kInvalidArgument,
                  "'rms_norm_eps' must be a finite number, got 1e+300"}));

constexpr char kDeepseek[] = R"({
  "architectures": ["DeepseekV2ForCausalLM"], "vocab_size": 100, "hidden_size": 64,
  "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
  "num_key_value_heads": 4, "q_lora_rank": null, "kv_lora_rank": 32, "qk_nope_head_dim": 16,
  "qk_rope_head_dim": 8, "v_head_dim": 16, "n_routed_experts": null, "first_k_dense_replace": 0,
  "moe_layer_freq": 1, "eos_token_id": 1,
  "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                   "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}})";

TEST(ModelConfigTest, ParsesDeepseekV2MlaAndYarn) {
  auto c = ModelConfig::FromJson(kDeepseek);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->mla.has_value());
  EXPECT_EQ(c->mla->q_lora_rank, 0);
  EXPECT_EQ(c->mla->kv_lora_rank, 32);
  EXPECT_EQ(c->KvFloatsPerTokenPerLayer(), 40);
  EXPECT_EQ(c->AttentionKind(), "MLA");
  ASSERT_TRUE(c->yarn.has_value());
  EXPECT_DOUBLE_EQ(c->yarn->factor, 40.0);
  EXPECT_EQ(c->yarn->original_max_position_embeddings, 4096);
  EXPECT_NEAR(c->SoftmaxScale(), 1.0 / std::sqrt(24.0) * 1.2608 * 1.2608, 1e-4);
}

TEST(ModelConfigTest, RejectsMixtureOfExpertsLayersByIndex) {
  std::string json = kDeepseek;
  json.replace(json.find("\"n_routed_experts\": null"), 24, "\"n_routed_experts\": 64");
  json.replace(json.find("\"first_k_dense_replace\": 0"), 26, "\"first_k_dense_replace\": 1");
  auto c = ModelConfig::FromJson(json);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("layer 1 is a mixture-of-experts layer (n_routed_experts 64, "
                        "first_k_dense_replace 1)"));
}

TEST(ModelConfigTest, ParsesLlama3AndLinearRopeScaling) {
  std::string json = kLlama;
  json.replace(json.find("\"rope_scaling\": null"), 20,
               R"("rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                  "max_position_embeddings": 131072)");
  auto c = ModelConfig::FromJson(json);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->rope_scaling.has_value());
  EXPECT_EQ(c->rope_scaling->type, RopeScaling::Type::kLlama3);
  EXPECT_DOUBLE_EQ(c->rope_scaling->factor, 8.0);
  EXPECT_EQ(c->rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_EQ(c->RopeTrainingContext(), 8192);

  json = kLlama;
  json.replace(
      json.find("\"rope_scaling\": null"), 20,
      R"("rope_scaling": {"type": "linear", "factor": 4}, "max_position_embeddings": 8192)");
  c = ModelConfig::FromJson(json);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling->type, RopeScaling::Type::kLinear);
  EXPECT_EQ(c->RopeTrainingContext(), 2048);

  json = kLlama;
  json.replace(json.find("\"rope_scaling\": null"), 20,
               R"("rope_scaling": {"rope_type": "default"})");
  c = ModelConfig::FromJson(json);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->rope_scaling.has_value());
}

// SmolLM2 and TinyLlama are LlamaForCausalLM with keys the engine has no use for.
TEST(ModelConfigTest, AcceptsExtraKeysOfSmolLm2AndTinyLlama) {
  std::string json = kLlama;
  json.replace(json.find("\"rope_scaling\": null"), 20,
               R"("rope_scaling": null, "pretraining_tp": 1, "rope_interleaved": false,
                  "attention_dropout": 0.0, "mlp_bias": false, "attention_bias": false,
                  "initializer_range": 0.02, "use_cache": true, "is_llama_config": true,
                  "model_type": "llama", "torch_dtype": "bfloat16")");
  auto c = ModelConfig::FromJson(json);
  ASSERT_TRUE(c.ok()) << c.status();
}

constexpr char kQwen25[] = R"({
  "architectures": ["Qwen2ForCausalLM"], "vocab_size": 100, "hidden_size": 64,
  "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 8,
  "num_key_value_heads": 2, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
  "max_position_embeddings": 32768, "sliding_window": 32768, "max_window_layers": 2,
  "use_sliding_window": false, "tie_word_embeddings": true, "rope_scaling": null})";

TEST(ModelConfigTest, ParsesQwen25WithItsSlidingWindowOff) {
  auto c = ModelConfig::FromJson(kQwen25);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_FALSE(c->qk_norm);
  EXPECT_TRUE(c->tie_word_embeddings);
}

// Hugging Face's rule: with use_sliding_window, layers i >= max_window_layers (or those that
// layer_types marks "sliding_attention") attend to the last sliding_window positions only.
TEST(ModelConfigTest, ReadsTheSlidingWindowOfEachLayer) {
  std::string json = kQwen25;
  json.replace(json.find("\"use_sliding_window\": false"), 27, "\"use_sliding_window\": true");
  json.replace(json.find("\"sliding_window\": 32768"), 23, "\"sliding_window\": 4096");
  auto c = ModelConfig::FromJson(json);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sliding_windows, (std::vector<int32_t>{0, 0, 4096, 4096}));
  EXPECT_EQ(c->sliding_window(2), 4096);
  // Off, covering the whole context, or max_window_layers = every layer: full attention.
  EXPECT_TRUE(ModelConfig::FromJson(kQwen25)->sliding_windows.empty());
  std::string covered = kQwen25;
  covered.replace(covered.find("\"use_sliding_window\": false"), 27,
                  "\"use_sliding_window\": true");
  EXPECT_TRUE(ModelConfig::FromJson(covered)->sliding_windows.empty());
  std::string all_full = json;
  all_full.replace(all_full.find("\"max_window_layers\": 2"), 22, "\"max_window_layers\": 4");
  EXPECT_TRUE(ModelConfig::FromJson(all_full)->sliding_windows.empty());
  // Without max_window_layers, Hugging Face's default of 28 leaves these 4 layers full.
  std::string default_layers = json;
  default_layers.erase(default_layers.find("\"max_window_layers\": 2,"), 23);
  EXPECT_TRUE(ModelConfig::FromJson(default_layers)->sliding_windows.empty());
  // Newer configs list the layer kinds instead.
  std::string listed = json;
  listed.replace(listed.find("\"max_window_layers\": 2,"), 23,
                 R"("layer_types": ["sliding_attention", "full_attention", "full_attention",
                                    "sliding_attention"],)");
  auto l = ModelConfig::FromJson(listed);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->sliding_windows, (std::vector<int32_t>{4096, 0, 0, 4096}));
}

TEST(ModelConfigTest, RejectsMalformedSlidingWindowKeys) {
  std::string typed = kQwen25;
  typed.replace(typed.find("\"use_sliding_window\": false"), 27, "\"use_sliding_window\": 1");
  EXPECT_THAT(std::string(ModelConfig::FromJson(typed).status().message()),
              HasSubstr("'use_sliding_window' must be a boolean"));
  std::string on = kQwen25;
  on.replace(on.find("\"use_sliding_window\": false"), 27, "\"use_sliding_window\": true");
  std::string zero = on;
  zero.replace(zero.find("\"sliding_window\": 32768"), 23, "\"sliding_window\": 0");
  EXPECT_THAT(std::string(ModelConfig::FromJson(zero).status().message()),
              HasSubstr("'sliding_window' is 0"));
  std::string text = on;
  text.replace(text.find("\"sliding_window\": 32768"), 23, "\"sliding_window\": \"4k\"");
  EXPECT_THAT(std::string(ModelConfig::FromJson(text).status().message()),
              HasSubstr("'sliding_window' must be an integer"));
  std::string short_list = on;
  short_list.replace(short_list.find("\"sliding_window\": 32768"), 23,
                     R"("sliding_window": 8, "layer_types": ["full_attention"])");
  EXPECT_THAT(std::string(ModelConfig::FromJson(short_list).status().message()),
              HasSubstr("'layer_types' lists 1 layers but num_hidden_layers is 4"));
}

TEST(ModelConfigTest, ParsesQwen3WithExplicitHeadDimAndQkNorm) {
  constexpr char kQwen3[] = R"({
    "architectures": ["Qwen3ForCausalLM"], "vocab_size": 100, "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 32, "attention_bias": false, "rope_theta": 1000000,
    "max_position_embeddings": 40960, "sliding_window": null, "use_sliding_window": false,
    "max_window_layers": 28, "rope_scaling": null})";
  auto c = ModelConfig::FromJson(kQwen3);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_TRUE(c->qk_norm);
  EXPECT_FALSE(c->qkv_bias);
}

TEST(ModelConfigTest, DeepseekRejectsLlamaRopeScalings) {
  std::string json = kDeepseek;
  json.replace(json.find("\"type\": \"yarn\""), 14, "\"type\": \"llama3\"");
  auto c = ModelConfig::FromJson(json);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("DeepseekV2ForCausalLM"));
}

TEST(ModelConfigTest, LlamaStillRejectsRopeScaling) {
  std::string json = kLlama;
  json.replace(json.find("\"rope_scaling\": null"), 20,
               "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}");
  auto c = ModelConfig::FromJson(json);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace kvserve::engine
