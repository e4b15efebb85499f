// Paged KV-cache benchmarks (issue "Paged KV / state cache with prefix caching"):
//   BM_InternalFragmentation  bytes allocated but unused for 100 sequences of random lengths
//   BM_TimeToFirstToken       TTFT of a 1,024-token prompt, cold vs with its first 960 tokens
//   cached
//
//   build/tests/bench/cache_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <random>
#include <vector>

#include "absl/synchronization/notification.h"
#include "benchmark/benchmark.h"
#include "cache/kv_cache_manager.h"
#include "engine/engine.h"
#include "engine/model/model_loader.h"

namespace kvserve {
namespace {

// 100 sequences with lengths uniform in [1, 2048] hold their tokens in blocks of block_size; the
// waste is the unused tail of each last block. Reported per memory kind of a GQA model (all layers
// attention K/V) — every paged kind shares the block table, so the ratio is the same for MLA
// latents.
void BM_InternalFragmentation(benchmark::State& state) {
  const int32_t block_size = static_cast<int32_t>(state.range(0));
  cache::CacheSpec spec;
  spec.block_size = block_size;
  spec.layers.assign(4, cache::LayerMemory::AttentionKv(2, 32));
  cache::CacheOptions options;
  options.block_size = block_size;
  options.budget_bytes = spec.PagedBytesPerToken() * 2048 * 101;
  auto manager = *cache::KvCacheManager::Create(spec, options);
  double waste_ratio = 0, waste_blocks_per_seq = 0;
  for (auto _ : state) {
    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> length(1, 2048);
    std::vector<cache::SequenceCache> seqs;
    int64_t tokens = 0;
    for (int i = 0; i < 100; ++i) {
      seqs.push_back(*manager->Begin(0));
      const int32_t n = length(rng);
      tokens += n;
      if (!manager->AllocateSlots(seqs.back(), n)) state.SkipWithError("cache too small");
    }
    const int64_t slots = int64_t{manager->stats().num_used_blocks} * block_size;
    waste_ratio = static_cast<double>(slots - tokens) / static_cast<double>(slots);
    waste_blocks_per_seq = static_cast<double>(slots - tokens) / block_size / 100.0;
    for (auto& s : seqs) manager->Free(s);
  }
  state.counters["waste_pct_of_used_bytes"] = 100.0 * waste_ratio;
  state.counters["waste_blocks_per_seq"] = waste_blocks_per_seq;
}
BENCHMARK(BM_InternalFragmentation)->Arg(16)->Arg(32)->Unit(benchmark::kMicrosecond);

class FirstTokenSink : public engine::TokenSink {
 public:
  void OnEvent(engine::TokenEvent event) override {
    if (!first_.HasBeenNotified()) first_.Notify();
    if (event.finished) done_.Notify();
  }
  absl::Notification first_;
  absl::Notification done_;
};

// TTFT on the embedded default model (4 layers, GQA 8/2, hidden 256) for a 1,024-token prompt.
// Arg 0: cold (prefix caching off). Arg 1: the first 960 tokens are cached by an earlier request
// with the same 960-token prefix and a different 64-token suffix.
void BM_TimeToFirstToken(benchmark::State& state) {
  const bool warm = state.range(0) == 1;
  engine::EngineOptions options;
  options.enable_prefix_caching = warm;
  options.kv_cache_bytes = int64_t{64} << 20;
  auto loaded = engine::CreateRandomModel(engine::DefaultModelConfig(), engine::kDefaultModelSeed);
  auto engine = *engine::Engine::Create("bench", std::move(*loaded), options);
  std::mt19937 rng(1);
  auto request = [&](int32_t first_suffix_token) {
    engine::GenerationRequest r;
    for (int i = 0; i < 960; ++i) r.prompt_token_ids.push_back(static_cast<int32_t>(i * 37 % 250));
    for (int i = 0; i < 64; ++i) r.prompt_token_ids.push_back((first_suffix_token + i) % 250);
    r.max_tokens = 1;
    r.sampling.temperature = 0;
    return r;
  };
  auto run = [&](engine::GenerationRequest r) {
    auto sink = std::make_shared<FirstTokenSink>();
    const auto start = std::chrono::steady_clock::now();
    (void)engine->Submit(std::move(r), sink);
    sink->first_.WaitForNotification();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    sink->done_.WaitForNotification();
    return seconds;
  };
  run(request(0));  // warm-up; caches the shared prefix when prefix caching is on
  int32_t suffix = 1;
  for (auto _ : state) state.SetIterationTime(run(request(suffix++)));
  state.counters["prefix_hit_tokens_per_request"] =
      benchmark::Counter(static_cast<double>(engine->stats().cache.prefix_hit_tokens) /
                         static_cast<double>(state.iterations() + 1));
}
BENCHMARK(BM_TimeToFirstToken)->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kvserve

BENCHMARK_MAIN();
