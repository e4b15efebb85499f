// MHA vs GQA vs MQA vs MLA at equal hidden size and depth (issue "MLA attention"):
// KV-cache bytes per token, decode time per token at a context of 2,048, and how many 2,048-token
// sequences one cache budget holds.
//
//   OMP_NUM_THREADS=1 build/tests/bench/attention_bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true
//
// Models: hidden 512, 4 layers, 8 query heads of 64, SwiGLU 1376, seeded random weights.
//   MHA 8 KV heads · GQA 2 KV heads (h/4) · MQA 1 KV head ·
//   MLA kv_lora_rank 256 (= 4·d_h), qk_rope 32 (= d_h/2), qk_nope 64, v 64 (DeepSeek-V2's ratios)
// The cache is filled with random rows for positions [0, 2047); each iteration decodes position
// 2047 (MLA in its absorbed form), which is what one decode step at that context costs.
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "cache/kv_cache_manager.h"
#include "engine/model/decoder_model.h"
#include "engine/model/model_loader.h"

namespace kvserve {
namespace {

constexpr int32_t kContext = 2048;
constexpr int64_t kBudgetBytes = int64_t{1} << 30;

engine::ModelConfig Config(int kind) {
  engine::ModelConfig c;
  c.vocab_size = 320;
  c.hidden_size = 512;
  c.intermediate_size = 1376;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 8;
  c.head_dim = 64;
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-5f;
  c.eos_token_ids = {257};
  switch (kind) {
    case 0:
      c.num_key_value_heads = 8;
      break;  // MHA
    case 1:
      c.num_key_value_heads = 2;
      break;  // GQA, g = h/4
    case 2:
      c.num_key_value_heads = 1;
      break;  // MQA
    default:  // MLA
      c.architecture = "DeepseekV2ForCausalLM";
      c.num_key_value_heads = 8;
      c.mla = engine::MlaDims{0, 256, 64, 32, 64};
  }
  return c;
}

void BM_DecodeAtContext2048(benchmark::State& state) {
  const engine::ModelConfig config = Config(static_cast<int>(state.range(0)));
  auto loaded = engine::CreateRandomModel(config, 1);
  if (!loaded.ok()) {
    state.SkipWithError(std::string(loaded.status().message()).c_str());
    return;
  }
  engine::DecoderModel& model = *loaded->model;
  const cache::CacheSpec spec = model.CacheSpec(16);
  cache::CacheOptions options;
  options.budget_bytes = spec.PagedBytesPerToken() * (kContext + 16);
  auto cache = *cache::KvCacheManager::Create(spec, options);
  cache::SequenceCache seq = *cache->Begin(0);
  if (!cache->AllocateSlots(seq, kContext)) state.SkipWithError("cache too small");
  std::mt19937 rng(3);
  std::normal_distribution<float> dist;
  for (int32_t l = 0; l < config.num_hidden_layers; ++l) {
    float* arena = cache->LayerData(l);
    const int64_t floats = int64_t{cache->num_blocks()} * 16 * spec.layers[l].num_floats;
    for (int64_t i = 0; i < floats; ++i) arena[i] = dist(rng);
  }
  std::vector<float> logits(config.vocab_size);
  const int32_t token = 65;
  for (auto _ : state) {
    model.Forward(absl::MakeConstSpan(&token, 1), kContext - 1, *cache, seq, false, logits.data());
    benchmark::DoNotOptimize(logits.data());
  }
  const int64_t bytes_per_token = spec.PagedBytesPerToken();
  state.counters["kv_bytes_per_token"] = static_cast<double>(bytes_per_token);
  state.counters["seqs_2048_in_1GiB"] =
      static_cast<double>(kBudgetBytes / (bytes_per_token * kContext));
  state.SetLabel(std::string(config.AttentionKind()));
}
BENCHMARK(BM_DecodeAtContext2048)->DenseRange(0, 3)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kvserve

BENCHMARK_MAIN();
