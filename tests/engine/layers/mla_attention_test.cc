// MLA's two computation forms against each other on random weights, and its cache accounting.
#include "engine/layers/mla_attention.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

ModelConfig MlaConfig(int32_t q_lora, int32_t heads, int32_t kv_lora, int32_t nope, int32_t rope,
                      int32_t v, bool yarn) {
  ModelConfig c;
  c.architecture = "DeepseekV2ForCausalLM";
  c.vocab_size = 32;
  c.hidden_size = 48;
  c.intermediate_size = 64;
  c.num_hidden_layers = 1;
  c.num_attention_heads = heads;
  c.num_key_value_heads = heads;
  c.head_dim = c.hidden_size / heads;
  c.max_position_embeddings = 256;
  c.rms_norm_eps = 1e-6f;
  c.mla = MlaDims{q_lora, kv_lora, nope, rope, v};
  if (yarn) c.yarn = YarnScaling{4.0, 64, 32.0, 1.0, 0.707, 0.707};
  return c;
}

WeightSource RandomWeights(uint32_t seed) {
  return [seed](const std::string& name,
                const std::vector<int64_t>& shape) -> absl::StatusOr<std::vector<float>> {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    std::mt19937 rng(seed + static_cast<uint32_t>(std::hash<std::string>()(name)));
    std::normal_distribution<float> dist(0.0f, 1.0f / std::sqrt(static_cast<float>(shape.back())));
    std::vector<float> w(count);
    for (float& x : w) x = shape.size() == 1 ? 1.0f + 0.1f * dist(rng) : dist(rng);
    return w;
  };
}

struct Shape {
  const char* name;
  int32_t q_lora, heads, kv_lora, nope, rope, v;
  bool yarn;
};

class MlaFormsTest : public ::testing::TestWithParam<Shape> {};

// Decode steps computed in the absorbed form equal the expanded (MHA-like) form, token after token,
// over a prefix prefilled in the expanded form.
TEST_P(MlaFormsTest, AbsorbedDecodeEqualsExpandedAttention) {
  const Shape p = GetParam();
  const ModelConfig config = MlaConfig(p.q_lora, p.heads, p.kv_lora, p.nope, p.rope, p.v, p.yarn);
  int64_t params = 0;
  auto mla = MlaAttention::Create(config, RandomWeights(3), "model.layers.0.", &params);
  ASSERT_TRUE(mla.ok()) << mla.status();
  cache::CacheSpec spec;
  spec.block_size = 4;
  spec.layers = {cache::LayerMemory::MlaLatent(p.kv_lora, p.rope)};
  cache::CacheOptions options;
  options.block_size = 4;
  options.budget_bytes = spec.PagedBytesPerToken() * 4 * 16;
  auto cache = *cache::KvCacheManager::Create(spec, options);
  cache::SequenceCache seq = *cache->Begin(0);
  const int32_t prefill = 9, steps = 6;
  ASSERT_TRUE(cache->AllocateSlots(seq, prefill + steps));

  std::mt19937 rng(11);
  std::normal_distribution<float> dist;
  auto random_rows = [&](int64_t n) {
    std::vector<float> h(n * config.hidden_size);
    for (float& x : h) x = dist(rng);
    return h;
  };
  auto table = [&](int32_t start, int32_t n) {
    std::vector<int32_t> pos(n);
    for (int32_t i = 0; i < n; ++i) pos[i] = start + i;
    std::vector<float> cs(n * p.rope);
    (*mla)->rope().Table(pos.data(), n, cs.data());
    return cs;
  };
  const auto h0 = random_rows(prefill);
  std::vector<float> out(prefill * config.hidden_size);
  (*mla)->Forward(h0.data(), prefill, 0, table(0, prefill).data(), *cache, seq, 0, out.data(),
                  MlaAttention::Form::kExpanded);
  double max_rel = 0;
  for (int32_t t = prefill; t < prefill + steps; ++t) {
    const auto h = random_rows(1);
    const auto cs = table(t, 1);
    std::vector<float> absorbed(config.hidden_size), expanded(config.hidden_size);
    (*mla)->Forward(h.data(), 1, t, cs.data(), *cache, seq, 0, absorbed.data(),
                    MlaAttention::Form::kAbsorbed);
    (*mla)->Forward(h.data(), 1, t, cs.data(), *cache, seq, 0, expanded.data(),
                    MlaAttention::Form::kExpanded);
    double num = 0, den = 0;
    for (int32_t i = 0; i < config.hidden_size; ++i) {
      num = std::max(num, std::abs(double{absorbed[i]} - expanded[i]));
      den = std::max(den, std::abs(double{expanded[i]}));
    }
    max_rel = std::max(max_rel, num / den);
  }
  EXPECT_LE(max_rel, 1e-5) << p.name;
  EXPECT_GT(max_rel, 0.0) << "the two forms must be different computations";
}

// A prefill chunk in the absorbed form equals the expanded form too (both handle n > 1).
TEST_P(MlaFormsTest, AbsorbedPrefillEqualsExpandedPrefill) {
  const Shape p = GetParam();
  const ModelConfig config = MlaConfig(p.q_lora, p.heads, p.kv_lora, p.nope, p.rope, p.v, p.yarn);
  int64_t params = 0;
  auto mla = *MlaAttention::Create(config, RandomWeights(5), "model.layers.0.", &params);
  cache::CacheSpec spec;
  spec.block_size = 4;
  spec.layers = {cache::LayerMemory::MlaLatent(p.kv_lora, p.rope)};
  cache::CacheOptions options;
  options.block_size = 4;
  options.budget_bytes = spec.PagedBytesPerToken() * 4 * 8;
  auto cache = *cache::KvCacheManager::Create(spec, options);
  cache::SequenceCache seq = *cache->Begin(0);
  const int32_t n = 13;
  ASSERT_TRUE(cache->AllocateSlots(seq, n));
  std::mt19937 rng(17);
  std::normal_distribution<float> dist;
  std::vector<float> h(n * config.hidden_size);
  for (float& x : h) x = dist(rng);
  std::vector<int32_t> pos(n);
  for (int32_t i = 0; i < n; ++i) pos[i] = i;
  std::vector<float> cs(n * p.rope);
  mla->rope().Table(pos.data(), n, cs.data());
  std::vector<float> a(n * config.hidden_size), e(n * config.hidden_size);
  mla->Forward(h.data(), n, 0, cs.data(), *cache, seq, 0, a.data(), MlaAttention::Form::kAbsorbed);
  mla->Forward(h.data(), n, 0, cs.data(), *cache, seq, 0, e.data(), MlaAttention::Form::kExpanded);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], e[i], 1e-5 * (1 + std::abs(e[i])));
}

INSTANTIATE_TEST_SUITE_P(Shapes, MlaFormsTest,
                         ::testing::Values(Shape{"NoQueryCompression", 0, 4, 16, 8, 4, 8, false},
                                           Shape{"QueryCompression", 12, 3, 12, 8, 8, 6, false},
                                           Shape{"QueryCompressionYarn", 12, 4, 24, 16, 8, 16,
                                                 true},
                                           Shape{"DeepSeekRatios", 0, 2, 64, 16, 8, 16, false}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(MlaCacheTest, CachesOnlyLatentAndRopeKeyPerTokenPerLayer) {
  const ModelConfig c = MlaConfig(0, 4, 512, 128, 64, 128, false);
  EXPECT_EQ(c.KvFloatsPerTokenPerLayer(), 576);  // DeepSeek-V2: 512 + 64, whatever the head count
  EXPECT_EQ(c.AttentionKind(), "MLA");
  cache::CacheSpec spec;
  spec.layers.assign(3, cache::LayerMemory::MlaLatent(512, 64));
  EXPECT_EQ(spec.PagedBytesPerToken(cache::MemoryKind::kMlaLatent), 3 * 576 * 4);
  EXPECT_EQ(spec.PagedBytesPerToken(cache::MemoryKind::kAttentionKv), 0);
}

TEST(MlaCacheTest, SoftmaxScaleUsesQkHeadDimAndYarnMscale) {
  ModelConfig c = MlaConfig(0, 4, 512, 128, 64, 128, false);
  EXPECT_DOUBLE_EQ(c.SoftmaxScale(), 1.0 / std::sqrt(192.0));
  c.yarn = YarnScaling{40.0, 4096, 32.0, 1.0, 0.707, 0.707};
  // docs/math.md §2.2: 1/sqrt(192) * 1.26080^2 = 0.114721.
  EXPECT_NEAR(c.SoftmaxScale(), 0.114721, 5e-6);
}

}  // namespace
}  // namespace kvserve::engine
