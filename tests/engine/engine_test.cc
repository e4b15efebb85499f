// The engine loop through its public face: submit, stream events into a recording sink, cancel.
// Uses the tiny reference checkpoint (vocab 64, no tokenizer needed: prompts are token ids).
#include "engine/engine.h"

#include <atomic>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/kernels/thread_pool.h"
#include "engine/layers/rope_base_bound.h"
#include "engine/model/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/allocation_counter.h"
#include "tests/testing/requests.h"

namespace kvserve::engine {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// Records every event; Wait() blocks until the final one.
class RecordingSink : public TokenSink {
 public:
  void OnEvent(TokenEvent event) override {
    absl::MutexLock lock(&mu_);
    tokens_.insert(tokens_.end(), event.token_ids.begin(), event.token_ids.end());
    text_ += event.text;
    ++num_events_;
    if (event.finished) final_ = std::move(event);
  }
  // Returns the final event; fails the test if none arrives within 30 s.
  TokenEvent Wait() {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return final_.finished; };
    EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(30)));
    return final_;
  }
  std::vector<int32_t> tokens() {
    absl::MutexLock lock(&mu_);
    return tokens_;
  }
  std::string text() {
    absl::MutexLock lock(&mu_);
    return text_;
  }
  int num_events() {
    absl::MutexLock lock(&mu_);
    return num_events_;
  }

 private:
  absl::Mutex mu_;
  std::vector<int32_t> tokens_ ABSL_GUARDED_BY(mu_);
  std::string text_ ABSL_GUARDED_BY(mu_);
  int num_events_ ABSL_GUARDED_BY(mu_) = 0;
  TokenEvent final_ ABSL_GUARDED_BY(mu_);
};

std::unique_ptr<Engine> MakeEngine(EngineOptions options = {},
                                   WeightDType dtype = WeightDType::kAuto) {
  auto loaded = LoadModelDirectory(std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_llama_gqa", dtype);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  auto engine = Engine::Create("tiny", std::move(*loaded), options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return std::move(*engine);
}

using ::kvserve::testing::GreedyRequest;

std::vector<int32_t> Generate(Engine& engine, GenerationRequest request,
                              TokenEvent* final = nullptr) {
  auto sink = std::make_shared<RecordingSink>();
  auto id = engine.Submit(std::move(request), sink);
  EXPECT_TRUE(id.ok()) << id.status();
  TokenEvent last = sink->Wait();
  if (final != nullptr) *final = last;
  return sink->tokens();
}

TEST(EngineTest, GreedyGenerationStopsAtMaxTokensWithUsage) {
  auto engine = MakeEngine();
  TokenEvent final;
  auto tokens = Generate(*engine, GreedyRequest({5, 6, 7, 8}, 10), &final);
  EXPECT_EQ(tokens.size(), 10u);
  EXPECT_TRUE(final.status.ok());
  EXPECT_EQ(final.finish_reason, FinishReason::kLength);
  EXPECT_EQ(final.prompt_tokens, 4);
  EXPECT_EQ(final.completion_tokens, 10);
  EXPECT_EQ(engine->stats().kv_cache_bytes_in_use, 0);
}

// The engine's first greedy token must be the argmax of the model's logits for the prompt.
TEST(EngineTest, FirstGreedyTokenIsArgmaxOfModelLogits) {
  auto loaded = LoadModelDirectory(std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_llama_gqa");
  ASSERT_TRUE(loaded.ok());
  const std::vector<int32_t> prompt = {3, 14, 15, 9, 26};
  const cache::CacheSpec spec = loaded->model->CacheSpec(4);
  cache::CacheOptions options;
  options.block_size = 4;
  options.budget_bytes = spec.PagedBytesPerToken() * 4 * 4;
  auto cache = *cache::KvCacheManager::Create(spec, options);
  cache::SequenceCache seq = *cache->Begin(0);
  ASSERT_TRUE(cache->AllocateSlots(seq, 5));
  std::vector<float> logits(64);
  loaded->model->Forward(prompt, 0, *cache, seq, false, logits.data());
  const int32_t argmax =
      static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  auto engine = MakeEngine();
  EXPECT_EQ(Generate(*engine, GreedyRequest(prompt, 1)), std::vector<int32_t>{argmax});
}

TEST(EngineTest, GreedyIsDeterministicAndIndependentOfPrefillChunking) {
  const std::vector<int32_t> prompt = {1, 10, 20, 30, 40, 50, 60, 11, 21, 31, 41};
  auto whole = MakeEngine();
  EngineOptions chunked_options;
  chunked_options.prefill_chunk_tokens = 3;
  auto chunked = MakeEngine(chunked_options);
  const auto a = Generate(*whole, GreedyRequest(prompt, 24));
  EXPECT_EQ(Generate(*whole, GreedyRequest(prompt, 24)), a);
  EXPECT_EQ(Generate(*chunked, GreedyRequest(prompt, 24)), a);
}

TEST(EngineTest, SameSeedGivesSameTokensAndOtherSeedDiffers) {
  auto engine = MakeEngine();
  auto sampled = [&](uint64_t seed) {
    GenerationRequest r = GreedyRequest({4, 5, 6}, 32);
    r.sampling.temperature = 1.0f;
    r.sampling.seed = seed;
    return Generate(*engine, r);
  };
  const auto a = sampled(7);
  EXPECT_EQ(sampled(7), a);
  EXPECT_NE(sampled(8), a);
}

TEST(EngineTest, ConcurrentRequestsMatchTheirSoloRuns) {
  auto engine = MakeEngine();
  std::vector<std::vector<int32_t>> prompts = {
      {1, 2, 3}, {9, 8, 7, 6, 5, 4}, {33}, {12, 13, 14, 15}};
  std::vector<std::vector<int32_t>> solo;
  for (const auto& p : prompts) solo.push_back(Generate(*engine, GreedyRequest(p, 12)));
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (const auto& p : prompts) {
    sinks.push_back(std::make_shared<RecordingSink>());
    ASSERT_TRUE(engine->Submit(GreedyRequest(p, 12), sinks.back()).ok());
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    sinks[i]->Wait();
    EXPECT_EQ(sinks[i]->tokens(), solo[i]) << "request " << i;
  }
}

// Records how many allocations the process had made at each event, on the engine thread, into
// storage reserved up front (the sink itself never allocates).
class AllocationRecordingSink : public TokenSink {
 public:
  explicit AllocationRecordingSink(size_t capacity) { counts_.reserve(capacity); }
  void OnEvent(TokenEvent event) override {
    absl::MutexLock lock(&mu_);
    if (counts_.size() < counts_.capacity()) counts_.push_back(kvserve::testing::NumAllocations());
    done_ = event.finished;
  }
  std::vector<size_t> Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    return counts_;
  }

 private:
  absl::Mutex mu_;
  std::vector<size_t> counts_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

// A decode step allocates nothing on the heap (STYLE: no allocation per token) unless it starts a
// new cache block or fills one (block table and prefix-hash chain growth, amortized per block).
// The last step, which also finishes the request, is per request and not checked.
void ExpectDecodeStepsDoNotAllocateBetweenBlockBoundaries(WeightDType dtype) {
  SCOPED_TRACE(::testing::Message() << WeightDTypeName(dtype) << " weights");
  EngineOptions options;
  options.block_size = 16;
  auto engine = MakeEngine(options, dtype);
  const std::vector<int32_t> prompt = {3, 1, 4, 1, 5};
  const int32_t num_tokens = 80;
  auto sink = std::make_shared<AllocationRecordingSink>(num_tokens);
  ASSERT_TRUE(engine->Submit(GreedyRequest(prompt, num_tokens), sink).ok());
  const std::vector<size_t> counts = sink->Wait();
  ASSERT_EQ(counts.size(), static_cast<size_t>(num_tokens));
  int checked = 0;
  // Event k + 1 comes from the step that computed position p = prompt + k.
  for (int32_t k = 0; k + 2 < num_tokens; ++k) {
    const int32_t p = static_cast<int32_t>(prompt.size()) + k;
    if (p % options.block_size == 0 || (p + 1) % options.block_size == 0) continue;
    EXPECT_EQ(counts[k + 1] - counts[k], 0u) << "the step computing position " << p;
    ++checked;
  }
  EXPECT_GT(checked, 60);
}

TEST(EngineTest, DecodeStepsDoNotAllocateBetweenBlockBoundaries) {
  ExpectDecodeStepsDoNotAllocateBetweenBlockBoundaries(WeightDType::kAuto);
}

// The bf16 and int8 kernels round the activations into per-thread scratch grown by the prefill;
// decode steps reuse it.
TEST(EngineTest, DecodeStepsWithBf16AndInt8WeightsDoNotAllocateBetweenBlockBoundaries) {
  ExpectDecodeStepsDoNotAllocateBetweenBlockBoundaries(WeightDType::kBf16);
  ExpectDecodeStepsDoNotAllocateBetweenBlockBoundaries(WeightDType::kInt8);
}

TEST(EngineTest, ModelInfoReportsWeightBytesAndPrecision) {
  auto f32 = MakeEngine({}, WeightDType::kF32);
  auto bf16 = MakeEngine();  // tiny_llama_gqa is stored in BF16: auto keeps it
  EXPECT_EQ(f32->info().weight_dtype, "f32");
  EXPECT_EQ(f32->info().weight_bytes, f32->info().num_parameters * 4);
  EXPECT_EQ(bf16->info().weight_dtype, "bf16");
  EXPECT_LT(bf16->info().weight_bytes, f32->info().weight_bytes);
}

TEST(EngineTest, StopTokenIdEndsGenerationWithStop) {
  auto engine = MakeEngine();
  const auto free_run = Generate(*engine, GreedyRequest({2, 3, 4}, 8));
  ASSERT_GE(free_run.size(), 3u);
  GenerationRequest r = GreedyRequest({2, 3, 4}, 8);
  r.stop_token_ids = {free_run[2]};
  TokenEvent final;
  const auto tokens = Generate(*engine, r, &final);
  // Stops at the first occurrence of that token (which may come before index 2).
  const auto first = std::find(free_run.begin(), free_run.end(), free_run[2]) - free_run.begin();
  EXPECT_THAT(tokens, ElementsAreArray(free_run.begin(), free_run.begin() + first + 1));
  EXPECT_EQ(final.finish_reason, FinishReason::kStop);
}

TEST(EngineTest, EosEndsGenerationUnlessIgnored) {
  auto engine = MakeEngine();
  // Find a prompt whose greedy continuation contains EOS (id 2) within 64 tokens.
  for (int32_t start = 0; start < 64; ++start) {
    const auto free_run = Generate(*engine, GreedyRequest({start}, 64));
    auto eos = std::find(free_run.begin(), free_run.end(), 2);
    if (eos == free_run.end()) continue;
    GenerationRequest r = GreedyRequest({start}, 64);
    r.ignore_eos = false;
    TokenEvent final;
    EXPECT_THAT(Generate(*engine, r, &final), ElementsAreArray(free_run.begin(), eos + 1));
    EXPECT_EQ(final.finish_reason, FinishReason::kEos);
    return;
  }
  GTEST_SKIP() << "no prompt of one token reaches EOS greedily";
}

TEST(EngineTest, CancelEndsRequestAndFreesItsCache) {
  auto engine = MakeEngine();
  auto sink = std::make_shared<RecordingSink>();
  // Paused, the engine sees the request and its cancel in the same iteration, however fast it is.
  engine->Pause();
  auto id = engine->Submit(GreedyRequest({1, 2, 3}, 120), sink);
  ASSERT_TRUE(id.ok());
  engine->Cancel(*id);
  engine->Resume();
  const TokenEvent final = sink->Wait();
  EXPECT_EQ(final.finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(final.status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(sink->tokens().size(), 0u);
  EXPECT_EQ(engine->stats().kv_cache_bytes_in_use, 0);
  EXPECT_EQ(engine->stats().num_running, 0);
}

TEST(EngineTest, ShutdownAbortsUnfinishedRequestsAndRejectsNewOnes) {
  EngineOptions options;
  options.max_num_seqs = 1;
  auto engine = MakeEngine(options);
  auto running = std::make_shared<RecordingSink>();
  auto queued = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine->Submit(GreedyRequest({1}, 120), running).ok());
  // Paused before the second request is taken in, so it is still unfinished at the shutdown
  // whatever the machine's speed (a fast engine once finished both 120-token requests first, in
  // the 20-run loop); Shutdown ends a paused engine too.
  engine->Pause();
  ASSERT_TRUE(engine->Submit(GreedyRequest({2}, 120), queued).ok());
  engine->Shutdown();
  for (auto* sink : {running.get(), queued.get()}) {
    const TokenEvent final = sink->Wait();
    EXPECT_TRUE(final.finish_reason == FinishReason::kAborted ||
                final.finish_reason == FinishReason::kLength);
  }
  EXPECT_EQ(queued->Wait().finish_reason, FinishReason::kAborted);
  auto late = engine->Submit(GreedyRequest({3}, 4), std::make_shared<RecordingSink>());
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnavailable);
}

TEST(EngineTest, FullQueueIsResourceExhausted) {
  EngineOptions options;
  options.max_num_seqs = 1;
  options.max_queued_requests = 1;
  auto engine = MakeEngine(options);
  // One request may take the free running slot and one may wait; the third is refused. The
  // engine is paused so that neither finishes before the third arrives, however fast it is.
  auto first = std::make_shared<RecordingSink>();
  auto second = std::make_shared<RecordingSink>();
  engine->Pause();
  ASSERT_TRUE(engine->Submit(GreedyRequest({1}, 120), first).ok());
  ASSERT_TRUE(engine->Submit(GreedyRequest({2}, 4), second).ok());
  auto id = engine->Submit(GreedyRequest({3}, 4), std::make_shared<RecordingSink>());
  engine->Resume();
  EXPECT_EQ(id.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(id.status().message()), HasSubstr("queue is full"));
  EXPECT_EQ(first->Wait().finish_reason, FinishReason::kLength);
  EXPECT_EQ(second->Wait().finish_reason, FinishReason::kLength);
}

// Holds its request in the engine from within OnEvent after `hold_after` events, as a stream
// whose client stopped reading does.
class HoldingSink : public RecordingSink {
 public:
  HoldingSink(Engine* engine, int hold_after) : engine_(engine), hold_after_(hold_after) {}

  // Submits `request` with a sink that holds it after `hold_after` events. The sink learns the
  // request's id from OnAccepted, before the engine can produce an event (no pause needed).
  static std::shared_ptr<HoldingSink> Submit(Engine& engine, int hold_after,
                                             GenerationRequest request, RequestId* id) {
    auto sink = std::make_shared<HoldingSink>(&engine, hold_after);
    absl::StatusOr<RequestId> submitted = engine.Submit(std::move(request), sink);
    EXPECT_TRUE(submitted.ok()) << submitted.status();
    *id = submitted.value_or(0);
    EXPECT_EQ(sink->id_.load(), *id) << "OnAccepted did not receive the request's id";
    return sink;
  }

  void OnAccepted(RequestId id) override { id_.store(id); }

  void OnEvent(TokenEvent event) override {
    RecordingSink::OnEvent(std::move(event));
    if (++seen_ == hold_after_) engine_->SetHeld(id_.load(), true);
  }

 private:
  Engine* const engine_;
  const int hold_after_;
  std::atomic<RequestId> id_{0};
  int seen_ = 0;  // engine thread only
};

TEST(EngineTest, AHoldFromTheSinkStopsTheRequestBeforeItsNextTokenUntilReleased) {
  auto engine = MakeEngine();
  RequestId id;
  auto held = HoldingSink::Submit(*engine, /*hold_after=*/3, GreedyRequest({1, 2, 3}, 20), &id);

  // Another request runs to its end while the first is held: the engine went on stepping, and the
  // held request produced nothing past its third token.
  const std::vector<int32_t> other = Generate(*engine, GreedyRequest({4, 5, 6}, 10));
  EXPECT_EQ(other.size(), 10u);
  EXPECT_EQ(held->num_events(), 3);
  const EngineStats stats = engine->stats();
  EXPECT_EQ(stats.num_held, 1);
  EXPECT_EQ(stats.num_running, 1);            // keeps its slot
  EXPECT_GT(stats.kv_cache_bytes_in_use, 0);  // and its cache

  // Released, it finishes with the tokens it would have produced alone.
  engine->SetHeld(id, false);
  EXPECT_EQ(held->Wait().finish_reason, FinishReason::kLength);
  EXPECT_EQ(held->tokens(), Generate(*engine, GreedyRequest({1, 2, 3}, 20)));
  EXPECT_EQ(engine->stats().num_held, 0);
}

TEST(EngineTest, CancelEndsAHeldRequestAndFreesItsCache) {
  auto engine = MakeEngine();
  RequestId id;
  auto held = HoldingSink::Submit(*engine, /*hold_after=*/1, GreedyRequest({1, 2, 3}, 20), &id);
  Generate(*engine, GreedyRequest({4, 5, 6}, 2));  // a step after the hold
  EXPECT_EQ(held->num_events(), 1);

  engine->Cancel(id);
  EXPECT_EQ(held->Wait().finish_reason, FinishReason::kCancelled);
  Generate(*engine, GreedyRequest({4, 5, 6}, 1));  // an iteration after the cancel
  EXPECT_EQ(engine->stats().kv_cache_bytes_in_use, 0);
  EXPECT_EQ(engine->stats().num_running, 0);
}

struct InvalidCase {
  const char* name;
  void (*mutate)(GenerationRequest&);
  const char* message;
};

class EngineValidationTest : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(EngineValidationTest, RejectsWithMessageNamingTheField) {
  auto engine = MakeEngine();
  GenerationRequest r = GreedyRequest({1, 2, 3}, 4);
  GetParam().mutate(r);
  auto id = engine->Submit(r, std::make_shared<RecordingSink>());
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(id.status().message()), GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, EngineValidationTest,
    ::testing::Values(
        InvalidCase{"EmptyPrompt", [](GenerationRequest& r) { r.prompt_token_ids.clear(); },
                    "prompt: must not be empty"},
        InvalidCase{"TokenOutOfVocab", [](GenerationRequest& r) { r.prompt_token_ids[1] = 64; },
                    "prompt_token_ids[1]: 64 is outside the vocabulary [0, 64)"},
        InvalidCase{"NegativeToken", [](GenerationRequest& r) { r.prompt_token_ids[0] = -1; },
                    "prompt_token_ids[0]: -1 is outside the vocabulary [0, 64)"},
        InvalidCase{"ZeroMaxTokens", [](GenerationRequest& r) { r.max_tokens = 0; },
                    "max_tokens: must be >= 1 (or 0 with prompt_logprobs set), got 0"},
        InvalidCase{"NegativeMaxTokensWhileScoring",
                    [](GenerationRequest& r) {
                      r.prompt_logprobs = 0;
                      r.max_tokens = -1;
                    },
                    "max_tokens: must be >= 1 (or 0 with prompt_logprobs set), got -1"},
        InvalidCase{"PromptLogprobsAboveMax", [](GenerationRequest& r) { r.prompt_logprobs = 21; },
                    "prompt_logprobs: must be in [0, 20], got 21"},
        InvalidCase{"NegativePromptLogprobs", [](GenerationRequest& r) { r.prompt_logprobs = -1; },
                    "prompt_logprobs: must be in [0, 20], got -1"},
        InvalidCase{"SeveralSamplesOfNothing",
                    [](GenerationRequest& r) {
                      r.prompt_logprobs = 0;
                      r.max_tokens = 0;
                      r.n = 2;
                    },
                    "n: must be 1 when max_tokens is 0 (nothing is sampled), got 2"},
        InvalidCase{"OverContext", [](GenerationRequest& r) { r.max_tokens = 126; },
                    "max_tokens: prompt length 3 + max_tokens 126 exceeds the model's context "
                    "length 128"},
        InvalidCase{"NegativeTemperature",
                    [](GenerationRequest& r) { r.sampling.temperature = -0.5f; },
                    "sampling.temperature: must be a finite number >= 0, got -0.5"},
        InvalidCase{"NanTemperature",
                    [](GenerationRequest& r) { r.sampling.temperature = std::nanf(""); },
                    "sampling.temperature: must be a finite number >= 0, got nan"},
        InvalidCase{"ZeroTopP", [](GenerationRequest& r) { r.sampling.top_p = 0.0f; },
                    "sampling.top_p: must be in (0, 1], got 0"},
        InvalidCase{"TopPAboveOne", [](GenerationRequest& r) { r.sampling.top_p = 1.5f; },
                    "sampling.top_p: must be in (0, 1], got 1.5"},
        InvalidCase{"NegativeTopK", [](GenerationRequest& r) { r.sampling.top_k = -1; },
                    "sampling.top_k: must be >= 0 (0 = disabled), got -1"},
        InvalidCase{"EmptyStopString",
                    [](GenerationRequest& r) {
                      r.stop = {"ok", ""};
                    },
                    "stop[1]: must not be empty"},
        InvalidCase{"InvalidUtf8StopString", [](GenerationRequest& r) { r.stop = {"\xC3"}; },
                    "stop[0]: must be valid UTF-8"},
        InvalidCase{"StopTokenOutOfVocab", [](GenerationRequest& r) { r.stop_token_ids = {99}; },
                    "stop_token_ids[0]: 99 is outside the vocabulary [0, 64)"},
        InvalidCase{"RequestIdTooLong",
                    [](GenerationRequest& r) { r.request_id = std::string(257, 'r'); },
                    "request_id: 257 bytes, at most 256"},
        InvalidCase{"CacheSaltTooLong",
                    [](GenerationRequest& r) { r.cache_salt = std::string(1025, 's'); },
                    "cache_salt: 1025 bytes, at most 1024"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace kvserve::engine

namespace kvserve::engine {
namespace {

// docs/math.md §3.1: the bound is computed for the model's head_dim at the context RoPE was
// trained on, which under rope_scaling is original_max_position_embeddings (64 here), not the
// scaled max_position_embeddings (512).
TEST(EngineInfoTest, MinRopeThetaUsesTheUnscaledTrainingContext) {
  auto loaded =
      LoadModelDirectory(std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_llama3_rope_scaling");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto engine = Engine::Create("llama3", std::move(*loaded), EngineOptions{});
  ASSERT_TRUE(engine.ok()) << engine.status();
  const std::optional<RopeBaseBound> at_64 = MinRopeBase(8, 64);
  const std::optional<RopeBaseBound> at_512 = MinRopeBase(8, 512);
  ASSERT_TRUE(at_64.has_value() && at_512.has_value());
  ASSERT_NE(at_64->min_base, at_512->min_base);
  EXPECT_EQ((*engine)->info().min_rope_theta, at_64->min_base);
  EXPECT_EQ((*engine)->info().config.rope_theta, 10000.0);
}

TEST(EngineThreadsTest, ExplicitCountWinsAndSmallModelsGetOneThread) {
  EngineOptions options;
  options.num_threads = 3;
  EXPECT_EQ(EngineThreads(options, 1), 3);
  EXPECT_EQ(EngineThreads(options, int64_t{7} << 30), 3);
  options.num_threads = 0;
  EXPECT_EQ(EngineThreads(options, kSmallModelParameters - 1), 1);
  EXPECT_EQ(EngineThreads(options, kSmallModelParameters), AvailableCpus());
}

}  // namespace
}  // namespace kvserve::engine
