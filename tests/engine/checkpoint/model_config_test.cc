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
    ::testing::Values(BadConfig{"\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3",
                                absl::StatusCode::kInvalidArgument,
                                "must be a multiple of num_key_value_heads (3)"},
                      BadConfig{"\"vocab_size\": 100,", "", absl::StatusCode::kInvalidArgument,
                                "missing 'vocab_size'"},
                      BadConfig{"\"hidden_size\": 64", "\"hidden_size\": \"64\"",
                                absl::StatusCode::kInvalidArgument,
                                "'hidden_size' must be an integer, got \"64\""},
                      BadConfig{"\"rope_scaling\": null",
                                "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}",
                                absl::StatusCode::kUnimplemented, "rope_scaling"},
                      BadConfig{"LlamaForCausalLM", "MambaForCausalLM",
                                absl::StatusCode::kUnimplemented,
                                "architecture 'MambaForCausalLM' is not supported"},
                      BadConfig{"[7, 9]", "[7, 100]", absl::StatusCode::kInvalidArgument,
                                "eos_token_id 100 is outside [0, 100)"},
                      BadConfig{"\"num_hidden_layers\": 2", "\"num_hidden_layers\": 0",
                                absl::StatusCode::kInvalidArgument,
                                "'num_hidden_layers' must be > 0, got 0"},
                      BadConfig{"{", "[", absl::StatusCode::kInvalidArgument, "not valid JSON"}));

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

TEST(ModelConfigTest, LlamaStillRejectsRopeScaling) {
  std::string json = kLlama;
  json.replace(json.find("\"rope_scaling\": null"), 20,
               "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}");
  auto c = ModelConfig::FromJson(json);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace kvserve::engine
