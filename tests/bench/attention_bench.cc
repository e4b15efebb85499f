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
//
// BM_AttentionKernel: one layer's attention alone (engine/layers/gqa_attention.h), the former
// scalar three-pass kernel (tests/testing/scalar_attention.h) against the tiled online-softmax
// one on each ISA, over a paged cache (blocks of 16, in shuffled order) with f32 or bf16 K/V:
// decode (one query row) at contexts 512 / 2,048 / 8,192 and a 512-token prefill, at the
// Llama-3.2-1B attention shape (32 query heads, 8 KV heads of 64) and the SmolLM-135M one (9 query
// heads, 3 KV heads of 64). kv_GB/s counts the K/V bytes
// the step must read once (context × 2 × kv_dim × element size; for prefill the whole cache)
// over the step's time; BM_ReadBandwidth is a STREAM-like read on one thread (the kernel is
// single-threaded) in the same process. On a shared machine interleave the runs so that a
// neighbour's load hits every kernel alike, and compare medians as ratios:
//
//   build/tests/bench/attention_bench --benchmark_filter='AttentionKernel|ReadBandwidth'
//       --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true
//       --benchmark_report_aggregates_only=true
#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "cache/kv_cache_manager.h"
#include "engine/kernels/bf16_matmul.h"
#include "engine/kernels/kernel_isa.h"
#include "engine/layers/gqa_attention.h"
#include "engine/model/decoder_model.h"
#include "engine/model/model_loader.h"
#include "tests/testing/scalar_attention.h"

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
    const int64_t floats = int64_t{cache->num_blocks()} * 16 * spec.layers[l].num_elements;
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

// range(0): 0 = scalar kernel, 1 = tiled kernel (portable), 2 = tiled kernel (AVX-512);
// range(1): context; range(2): query rows (1 = decode, else prefill of the whole context);
// range(3): 0 = f32, 1 = bf16 K/V; range(4): 0 = Llama-3.2-1B's attention (32 query heads, 8 KV
// heads of 64), 1 = SmolLM-135M's (9 query heads, 3 KV heads of 64).
void BM_AttentionKernel(benchmark::State& state) {
  const int64_t kernel = state.range(0);
  const int64_t context = state.range(1);
  const int64_t n = state.range(2);
  const bool bf16 = state.range(3) != 0;
  const bool smol = state.range(4) != 0;
  const engine::AttentionShape shape =
      smol ? engine::AttentionShape{9, 3, 64} : engine::AttentionShape{32, 8, 64};
  const int64_t kv_dim = shape.num_kv_heads * shape.head_dim;
  constexpr int64_t kBlock = 16;
  const int64_t num_blocks = (context + kBlock - 1) / kBlock;
  std::vector<int32_t> table(num_blocks);
  std::iota(table.begin(), table.end(), 0);
  std::mt19937 rng(5);
  std::shuffle(table.begin(), table.end(), rng);
  std::normal_distribution<float> dist;
  const int64_t values = num_blocks * kBlock * 2 * kv_dim;
  std::vector<float> arena(bf16 ? 0 : values);
  std::vector<uint16_t> arena_bf16(bf16 ? values : 0);
  for (int64_t i = 0; i < values; ++i) {
    if (bf16) {
      arena_bf16[i] = engine::RoundToBf16(dist(rng));
    } else {
      arena[i] = dist(rng);
    }
  }
  const void* base = bf16 ? static_cast<const void*>(arena_bf16.data()) : arena.data();
  const int64_t element = bf16 ? 2 : 4;
  const engine::KvView kv{base,       static_cast<const char*>(base) + kv_dim * element,
                          2 * kv_dim, table.data(),
                          kBlock,     bf16 ? cache::KvDtype::kBf16 : cache::KvDtype::kF32};
  std::vector<float> q(n * shape.num_heads * shape.head_dim), out(q.size());
  for (float& x : q) x = dist(rng);
  std::vector<float> scratch(std::max<int64_t>(context, engine::GqaAttentionScratchFloats(shape)));
  if (kernel == 2) {
    engine::SetKernelIsaForTesting(engine::KernelIsa::kAvx512);
    if (!engine::UseAvx512AttentionKernels()) state.SkipWithError("no AVX-512");
  } else {
    engine::SetKernelIsaForTesting(engine::KernelIsa::kPortable);
  }
  const int64_t start = context - n;
  for (auto _ : state) {
    if (kernel == 0) {
      engine::ScalarGqaAttention(q.data(), kv, start, n, shape, scratch.data(), out.data());
    } else {
      engine::GqaAttention(q.data(), kv, start, n, shape, scratch.data(), out.data());
    }
    benchmark::DoNotOptimize(out.data());
  }
  engine::SetKernelIsaForTesting(std::nullopt);
  state.counters["kv_GB/s"] =
      benchmark::Counter(static_cast<double>(context * 2 * kv_dim * element) * 1e-9 *
                             static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
  static const char* const kKernels[] = {"scalar", "tiled-portable", "tiled-avx512"};
  state.SetLabel(std::string(kKernels[kernel]) + (bf16 ? " bf16" : " f32") +
                 (n == 1 ? " decode" : " prefill") + (smol ? " smollm" : " llama1b"));
}
BENCHMARK(BM_AttentionKernel)
    ->ArgNames({"kernel", "context", "rows", "bf16", "shape"})
    ->ArgsProduct({{0, 1, 2}, {128, 512, 2048, 8192}, {1}, {0, 1}, {0, 1}})
    ->ArgsProduct({{0, 1, 2}, {512}, {512}, {0, 1}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// STREAM-like read bandwidth on one thread: sums a 512 MiB array (integer adds, which the compiler
// vectorizes without reassociation flags).
void BM_ReadBandwidth(benchmark::State& state) {
  constexpr int64_t kWords = int64_t{512} << 20 >> 3;
  std::vector<uint64_t> array(kWords);
  std::iota(array.begin(), array.end(), uint64_t{0});
  uint64_t sink = 0;
  for (auto _ : state) {
    uint64_t sum = 0;
    for (int64_t i = 0; i < kWords; ++i) sum += array[i];
    sink += sum;
  }
  benchmark::DoNotOptimize(sink);
  state.counters["read_GB/s"] = benchmark::Counter(
      static_cast<double>(kWords * 8) * 1e-9 * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ReadBandwidth)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kvserve

BENCHMARK_MAIN();
