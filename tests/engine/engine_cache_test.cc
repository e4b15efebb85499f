// The engine on its paged KV cache: prefix reuse, tenant isolation, budget limits, preemption.
// Uses the tiny reference checkpoint (vocab 64, context 128); prompts are token ids.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "engine/model/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/requests.h"

namespace kvserve::engine {
namespace {

using ::testing::HasSubstr;

class CollectingSink : public TokenSink {
 public:
  void OnEvent(TokenEvent event) override {
    absl::MutexLock lock(&mu_);
    tokens_.insert(tokens_.end(), event.token_ids.begin(), event.token_ids.end());
    if (event.finished) final_ = std::move(event);
  }
  TokenEvent Wait() {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return final_.finished; };
    EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(60)));
    return final_;
  }
  std::vector<int32_t> tokens() {
    absl::MutexLock lock(&mu_);
    return tokens_;
  }

 private:
  absl::Mutex mu_;
  std::vector<int32_t> tokens_ ABSL_GUARDED_BY(mu_);
  TokenEvent final_ ABSL_GUARDED_BY(mu_);
};

// Bytes of one block of the tiny model: 2 layers * 2 * 2 kv heads * head_dim 4 * 4 bytes * 4
// tokens.
constexpr int64_t kBlockBytes = 2 * 2 * 2 * 4 * 4 * 4;

// An engine over the tiny model with a cache of num_blocks f32 blocks' bytes (a bf16 cache holds
// twice as many blocks in them).
std::unique_ptr<Engine> MakeEngine(int32_t num_blocks, int32_t max_running = 64,
                                   int32_t prefill_chunk = 256,
                                   cache::KvDtype kv_dtype = cache::KvDtype::kF32) {
  auto loaded = LoadModelDirectory(std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_llama_gqa");
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  EngineOptions options;
  options.block_size = 4;
  options.kv_cache_bytes = kBlockBytes * num_blocks;
  options.max_num_seqs = max_running;
  options.prefill_chunk_tokens = prefill_chunk;
  options.kv_cache_dtype = kv_dtype;
  auto engine = Engine::Create("tiny", std::move(*loaded), options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->info().kv_cache_blocks,
            kv_dtype == cache::KvDtype::kBf16 ? 2 * num_blocks : num_blocks);
  return std::move(*engine);
}

using ::kvserve::testing::GreedyRequest;

std::vector<int32_t> Generate(Engine& engine, GenerationRequest request) {
  auto sink = std::make_shared<CollectingSink>();
  auto id = engine.Submit(std::move(request), sink);
  EXPECT_TRUE(id.ok()) << id.status();
  EXPECT_TRUE(sink->Wait().status.ok());
  return sink->tokens();
}

std::vector<int32_t> Prompt(int32_t n, int32_t seed) {
  std::vector<int32_t> p(n);
  for (int32_t i = 0; i < n; ++i) p[i] = (seed * 7 + i * 13) % 60 + 3;
  return p;
}

TEST(EngineCacheTest, WarmPrefixCacheGivesExactlyTheColdTokens) {
  auto engine = MakeEngine(64);
  const auto prompt = Prompt(30, 1);
  const auto cold = Generate(*engine, GreedyRequest(prompt, 20));
  const cache::CacheStats after_cold = engine->stats().cache;
  EXPECT_EQ(after_cold.prefix_hit_tokens, 0);
  const auto warm = Generate(*engine, GreedyRequest(prompt, 20));
  EXPECT_EQ(warm, cold);
  // 29 tokens may come from the cache (the last one is recomputed): 7 full blocks of 4.
  EXPECT_EQ(engine->stats().cache.prefix_hit_tokens, 28);
  EXPECT_EQ(engine->stats().cache.prefix_query_tokens, 60);
  EXPECT_EQ(engine->stats().cache.num_used_blocks, 0);
}

TEST(EngineCacheTest, SharedPrefixWithDifferentSuffixIsReusedAndStaysCorrect) {
  auto engine = MakeEngine(64);
  auto a = Prompt(24, 2);
  auto b = a;
  b.resize(16);
  for (int i = 0; i < 9; ++i) b.push_back(50 + i);
  auto fresh = MakeEngine(64);
  const auto b_cold = Generate(*fresh, GreedyRequest(b, 12));
  Generate(*engine, GreedyRequest(a, 12));
  EXPECT_EQ(Generate(*engine, GreedyRequest(b, 12)), b_cold);
  EXPECT_EQ(engine->stats().cache.prefix_hit_tokens, 16);
}

TEST(EngineCacheTest, DifferentCacheSaltsShareNothing) {
  auto engine = MakeEngine(64);
  const auto prompt = Prompt(30, 3);
  const auto a = Generate(*engine, GreedyRequest(prompt, 8, "tenant-a"));
  EXPECT_EQ(Generate(*engine, GreedyRequest(prompt, 8, "tenant-b")), a);
  EXPECT_EQ(engine->stats().cache.prefix_hit_tokens, 0);
  Generate(*engine, GreedyRequest(prompt, 8, "tenant-a"));
  EXPECT_EQ(engine->stats().cache.prefix_hit_tokens, 28);
}

TEST(EngineCacheTest, PrefixCachingCanBeTurnedOff) {
  auto loaded = LoadModelDirectory(std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_llama_gqa");
  ASSERT_TRUE(loaded.ok());
  EngineOptions options;
  options.block_size = 4;
  options.kv_cache_bytes = kBlockBytes * 64;
  options.enable_prefix_caching = false;
  auto engine = *Engine::Create("tiny", std::move(*loaded), options);
  const auto prompt = Prompt(30, 4);
  EXPECT_EQ(Generate(*engine, GreedyRequest(prompt, 8)),
            Generate(*engine, GreedyRequest(prompt, 8)));
  EXPECT_EQ(engine->stats().cache.prefix_hit_tokens, 0);
}

TEST(EngineCacheTest, RefusesABudgetAboveTheAvailableMemory) {
  // Issue #18: --kv-cache-bytes 100 GB used to be accepted on a 23 GB host.
  for (int64_t available : {kBlockBytes * 8 - 1, kBlockBytes * 8}) {
    auto loaded = LoadModelDirectory(std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_llama_gqa");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EngineOptions options;
    options.block_size = 4;
    options.kv_cache_bytes = kBlockBytes * 8;
    options.available_memory_bytes = available;
    auto engine = Engine::Create("tiny", std::move(*loaded), options);
    if (available < options.kv_cache_bytes) {
      ASSERT_FALSE(engine.ok());
      EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(engine.status().message(),
                  HasSubstr(absl::StrCat("--kv-cache-bytes: ", kBlockBytes * 8,
                                         " bytes is more than the ", available, " bytes")));
    } else {
      EXPECT_TRUE(engine.ok()) << engine.status();
    }
  }
}

TEST(EngineCacheTest, RequestThatCouldNeverFitIsResourceExhausted) {
  auto engine = MakeEngine(8);  // 32 tokens in all
  auto id = engine->Submit(GreedyRequest(Prompt(20, 5), 13), std::make_shared<CollectingSink>());
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(std::string(id.status().message()),
            "max_tokens: prompt length 20 + max_tokens 13 needs 9 KV-cache blocks but the whole "
            "cache holds 8 (raise --kv-cache-bytes)");
  // Exactly the whole cache is fine.
  EXPECT_EQ(Generate(*engine, GreedyRequest(Prompt(20, 5), 12)).size(), 12u);
}

TEST(EngineCacheTest, RunningOutOfBlocksPreemptsAndResumesWithIdenticalTokens) {
  // Each request grows to 6 blocks; three cannot all hold theirs in 12 blocks at once.
  const std::vector<std::vector<int32_t>> prompts = {Prompt(6, 6), Prompt(7, 7), Prompt(5, 8)};
  std::vector<std::vector<int32_t>> alone;
  {
    auto roomy = MakeEngine(64);
    for (const auto& p : prompts)
      alone.push_back(Generate(*roomy, GreedyRequest(p, 24 - p.size())));
  }
  auto engine = MakeEngine(12);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (const auto& p : prompts) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(engine->Submit(GreedyRequest(p, 24 - p.size()), sinks.back()).ok());
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    const TokenEvent final = sinks[i]->Wait();
    EXPECT_TRUE(final.status.ok()) << final.status;
    EXPECT_EQ(final.finish_reason, FinishReason::kLength);
    EXPECT_EQ(sinks[i]->tokens(), alone[i]) << "request " << i;
  }
  const EngineStats stats = engine->stats();
  EXPECT_GT(stats.num_preemptions, 0);
  EXPECT_EQ(stats.cache.num_used_blocks, 0);
  EXPECT_EQ(stats.kv_cache_bytes_in_use, 0);
}

// --kv-cache-dtype=bf16: the same bytes hold twice the blocks, so a request the f32 cache could
// never fit runs, and the stats count 2-byte values.
TEST(EngineCacheTest, Bf16KvCacheHoldsTwiceTheTokensInTheSameBytes) {
  auto engine = MakeEngine(8, 64, 256, cache::KvDtype::kBf16);  // 16 blocks
  EXPECT_EQ(engine->info().kv_cache_bytes_per_token, kBlockBytes / 4 / 2);
  EXPECT_EQ(engine->info().kv_cache_dtype, cache::KvDtype::kBf16);
  EXPECT_EQ(engine->stats().cache.total_bytes[0], kBlockBytes * 8);
  // 9 blocks: beyond the f32 cache of the same bytes (RequestThatCouldNeverFitIsResourceExhausted).
  EXPECT_EQ(Generate(*engine, GreedyRequest(Prompt(20, 5), 13)).size(), 13u);
}

// Chunked and one-shot prefill give the same tokens with a bf16 cache too.
TEST(EngineCacheTest, Bf16ChunkedPrefillMatchesOneShot) {
  const auto prompt = Prompt(37, 9);
  auto one_shot = MakeEngine(64, 64, 256, cache::KvDtype::kBf16);
  auto chunked = MakeEngine(64, 64, /*prefill_chunk=*/5, cache::KvDtype::kBf16);
  EXPECT_EQ(Generate(*chunked, GreedyRequest(prompt, 16)),
            Generate(*one_shot, GreedyRequest(prompt, 16)));
}

TEST(EngineCacheTest, ChunkedPrefillThroughTheCacheMatchesOneShot) {
  const auto prompt = Prompt(37, 9);
  auto one_shot = MakeEngine(64);
  auto chunked = MakeEngine(64, 64, /*prefill_chunk=*/5);
  EXPECT_EQ(Generate(*chunked, GreedyRequest(prompt, 16)),
            Generate(*one_shot, GreedyRequest(prompt, 16)));
}

TEST(EngineCacheTest, CancelledAndFinishedRequestsReturnEveryBlock) {
  auto engine = MakeEngine(64, 4);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  std::vector<RequestId> ids;
  for (int i = 0; i < 12; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    auto id = engine->Submit(GreedyRequest(Prompt(10 + i, i), 40), sinks.back());
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  for (int i = 0; i < 12; i += 2) engine->Cancel(ids[i]);
  for (auto& sink : sinks) sink->Wait();
  EXPECT_EQ(engine->stats().cache.num_used_blocks, 0);
  EXPECT_EQ(engine->stats().num_running, 0);
}

// A hybrid attention/S4 model: its S4 layers cannot share per-token blocks, so prefix reuse goes
// through recurrent-state checkpoints saved where prefill chunks end (block-aligned).
TEST(EngineCacheTest, HybridModelGetsPrefixHitsThroughStateCheckpoints) {
  auto make = [](bool prefix_caching) {
    auto loaded = LoadModelDirectory(std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_hybrid_s4");
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    EngineOptions options;
    options.block_size = 4;
    options.prefill_chunk_tokens = 8;
    options.kv_cache_bytes = int64_t{4} << 20;
    options.enable_prefix_caching = prefix_caching;
    auto engine = Engine::Create("hybrid", std::move(*loaded), options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return std::move(*engine);
  };
  auto cold_engine = make(false);
  auto engine = make(true);
  const auto prompt = Prompt(30, 10);
  const auto cold = Generate(*cold_engine, GreedyRequest(prompt, 12));
  EXPECT_EQ(Generate(*engine, GreedyRequest(prompt, 12)), cold);
  EXPECT_EQ(engine->stats().cache.prefix_hit_tokens, 0);
  EXPECT_GT(engine->stats().cache.num_state_checkpoints, 0);
  // Chunks end at 8, 16, 24 (then 30): the longest checkpointed prefix within 29 tokens is 24.
  EXPECT_EQ(Generate(*engine, GreedyRequest(prompt, 12)), cold);
  EXPECT_EQ(engine->stats().cache.prefix_hit_tokens, 24);
  EXPECT_EQ(engine->stats().cache.num_used_blocks, 0);
  EXPECT_EQ(engine->stats().cache.num_used_state_slots, 0);
}

}  // namespace
}  // namespace kvserve::engine
