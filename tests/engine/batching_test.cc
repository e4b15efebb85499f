// Continuous batching through the real engine: batch invariance, n > 1 samples, priorities,
// deadlines, and a 64-request storm of cancellations and deadlines that must end every request
// with the right status and leave the cache empty.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "engine/model/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/requests.h"

namespace kvserve::engine {
namespace {

using ::testing::ElementsAre;

// Records the events of every sample of one request; Wait() returns once all n have finished.
class SamplesSink : public TokenSink {
 public:
  explicit SamplesSink(int32_t n = 1, std::vector<std::string>* order = nullptr,
                       absl::Mutex* order_mu = nullptr, std::string name = "")
      : n_(n), order_(order), order_mu_(order_mu), name_(std::move(name)) {}

  void OnEvent(TokenEvent event) override {
    if (order_ != nullptr && !event.token_ids.empty()) {
      absl::MutexLock lock(order_mu_);
      if (std::find(order_->begin(), order_->end(), name_) == order_->end()) {
        order_->push_back(name_);
      }
    }
    absl::MutexLock lock(&mu_);
    Sample& s = samples_[event.index];
    s.tokens.insert(s.tokens.end(), event.token_ids.begin(), event.token_ids.end());
    s.logprobs.insert(s.logprobs.end(), event.logprobs.begin(), event.logprobs.end());
    EXPECT_FALSE(s.finished) << "event after the final one of sample " << event.index;
    if (event.finished) {
      s.finished = true;
      s.final = std::move(event);
      ++num_finished_;
    }
  }
  struct Sample {
    std::vector<int32_t> tokens;
    std::vector<TokenLogprobs> logprobs;
    bool finished = false;
    TokenEvent final;
  };
  std::map<int32_t, Sample> Wait() {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return num_finished_ >= n_; };
    EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(60)));
    return samples_;
  }

 private:
  const int32_t n_;
  std::vector<std::string>* order_;
  absl::Mutex* order_mu_;
  const std::string name_;
  absl::Mutex mu_;
  std::map<int32_t, Sample> samples_ ABSL_GUARDED_BY(mu_);
  int32_t num_finished_ ABSL_GUARDED_BY(mu_) = 0;
};

// Counts iterations in which more than one sequence sampled: proof that requests were batched.
class BatchObserver : public EngineObserver {
 public:
  void OnIteration(const IterationStats& stats) override {
    if (stats.num_generation_tokens > 1) batched_iterations.fetch_add(1);
    max_scheduled_tokens = std::max<int64_t>(max_scheduled_tokens, stats.num_scheduled_tokens);
  }
  void OnRequestFinished(const RequestStats&) override {}
  std::atomic<int> batched_iterations{0};
  std::atomic<int64_t> max_scheduled_tokens{0};
};

LoadedModel LoadModel(const std::string& fixture, WeightDType dtype = WeightDType::kAuto) {
  if (fixture.empty()) {
    auto loaded = CreateRandomModel(DefaultModelConfig(), kDefaultModelSeed, dtype);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return std::move(*loaded);
  }
  auto loaded = LoadModelDirectory(std::string(KVSERVE_TEST_DATA_DIR) + "/" + fixture, dtype);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return std::move(*loaded);
}

std::unique_ptr<Engine> MakeEngine(const std::string& fixture, EngineOptions options = {},
                                   WeightDType dtype = WeightDType::kAuto) {
  auto engine = Engine::Create("m", LoadModel(fixture, dtype), options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return std::move(*engine);
}

using ::kvserve::testing::GreedyRequest;

std::vector<int32_t> RandomPrompt(std::mt19937& rng, int32_t length, int32_t vocab) {
  std::uniform_int_distribution<int32_t> token(0, vocab - 1);
  std::vector<int32_t> p(length);
  for (int32_t& t : p) t = token(rng);
  return p;
}

std::map<int32_t, SamplesSink::Sample> Generate(Engine& engine, GenerationRequest r) {
  auto sink = std::make_shared<SamplesSink>(r.n);
  EXPECT_TRUE(engine.Submit(std::move(r), sink).ok());
  return sink->Wait();
}

void ExpectCacheEmpty(Engine& engine) {
  const EngineStats stats = engine.stats();
  EXPECT_EQ(stats.num_running, 0);
  EXPECT_EQ(stats.num_waiting, 0);
  EXPECT_EQ(stats.cache.num_used_blocks, 0);
  // What remains in use are recurrent-state checkpoints kept for prefix reuse (hybrid models).
  EXPECT_EQ(stats.kv_cache_bytes_in_use,
            stats.cache.used_bytes[static_cast<int>(cache::MemoryKind::kRecurrentState)]);
  EXPECT_EQ(stats.cache.num_used_state_slots, 0);
}

// A greedy request yields exactly the same tokens alone and inside a batch of 32 requests of
// different prompt lengths, output lengths and sampling settings, submitted together so their
// prefill chunks and decodes share steps. MLA picks its form by token role and S4 models keep
// fixed chunk boundaries (scheduler.h), so the invariance holds there too.
void ExpectGreedyAloneEqualsGreedyInABatchOf32(const std::string& fixture, WeightDType dtype,
                                               cache::KvDtype kv_dtype = cache::KvDtype::kF32) {
  const uint32_t seed = 1234;
  std::mt19937 rng(seed);
  EngineOptions solo_options;
  solo_options.kv_cache_dtype = kv_dtype;
  auto solo_engine = MakeEngine(fixture, solo_options, dtype);
  const int32_t vocab = solo_engine->info().config.vocab_size;
  const int32_t max_len = std::min(solo_engine->info().config.max_position_embeddings, 400);
  // Three targets (short, chunked, long prompt) and 29 others.
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 32; ++i) {
    std::uniform_int_distribution<int32_t> len(1, max_len / 2);
    GenerationRequest r = GreedyRequest(RandomPrompt(rng, len(rng), vocab), 8 + i % 13);
    if (i % 3 == 1) {
      r.sampling.temperature = 0.8f;
      r.sampling.seed = i;
    }
    requests.push_back(std::move(r));
  }
  const std::vector<int> targets = {0, 9, 30};
  requests[0].prompt_token_ids.resize(3);
  requests[30].prompt_token_ids = RandomPrompt(rng, max_len - 40, vocab);
  // The sampled tokens' logprobs expose any difference in the logits' low bits, which greedy
  // argmax would mostly hide.
  for (int t : targets) requests[t].logprobs = 0;
  std::vector<SamplesSink::Sample> solo;
  for (int t : targets) solo.push_back(Generate(*solo_engine, requests[t])[0]);

  auto observer = std::make_shared<BatchObserver>();
  EngineOptions options;
  options.observer = observer;
  options.kv_cache_dtype = kv_dtype;
  auto batch_engine = MakeEngine(fixture, options, dtype);
  std::vector<std::shared_ptr<SamplesSink>> sinks;
  for (GenerationRequest& r : requests) {
    sinks.push_back(std::make_shared<SamplesSink>());
    ASSERT_TRUE(batch_engine->Submit(r, sinks.back()).ok());
  }
  for (auto& s : sinks) s->Wait();
  for (size_t k = 0; k < targets.size(); ++k) {
    const SamplesSink::Sample batched = sinks[targets[k]]->Wait()[0];
    SCOPED_TRACE(::testing::Message()
                 << fixture << " (" << WeightDTypeName(dtype) << " weights, "
                 << cache::KvDtypeName(kv_dtype) << " KV cache): request " << targets[k]
                 << " with a prompt of " << requests[targets[k]].prompt_token_ids.size()
                 << " tokens (seed " << seed << ")");
    EXPECT_EQ(batched.tokens, solo[k].tokens);
    ASSERT_EQ(batched.logprobs.size(), solo[k].logprobs.size());
    for (size_t i = 0; i < solo[k].logprobs.size(); ++i) {
      EXPECT_EQ(batched.logprobs[i].logprob, solo[k].logprobs[i].logprob) << "token " << i;
    }
  }
  EXPECT_GT(observer->batched_iterations.load(), 0) << "nothing was batched";
  ExpectCacheEmpty(*batch_engine);
}

class BatchInvarianceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchInvarianceTest, GreedyAloneEqualsGreedyInABatchOf32) {
  ExpectGreedyAloneEqualsGreedyInABatchOf32(GetParam(), WeightDType::kAuto);
}

// The same with the matrices in bf16 and in int8: their kernels fix the summation order per
// element too (bf16_matmul.h, int8_matmul.h), so logprobs stay bit-identical.
class LowPrecisionBatchInvarianceTest
    : public ::testing::TestWithParam<std::tuple<std::string, WeightDType>> {};

TEST_P(LowPrecisionBatchInvarianceTest, GreedyAloneEqualsGreedyInABatchOf32) {
  ExpectGreedyAloneEqualsGreedyInABatchOf32(std::get<0>(GetParam()), std::get<1>(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(
    Models, LowPrecisionBatchInvarianceTest,
    ::testing::Combine(::testing::Values("", "tiny_hybrid_s4"),
                       ::testing::Values(WeightDType::kBf16, WeightDType::kInt8)),
    [](const auto& info) {
      const std::string model =
          std::get<0>(info.param).empty() ? std::string("DefaultModel") : std::get<0>(info.param);
      return model + "_" + std::string(WeightDTypeName(std::get<1>(info.param)));
    });

// With K/V stored as bf16: rounding on write is per value, and the attention kernel's order is
// fixed per query position (gqa_attention.h), so logprobs stay bit-identical too.
class Bf16KvCacheBatchInvarianceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(Bf16KvCacheBatchInvarianceTest, GreedyAloneEqualsGreedyInABatchOf32) {
  ExpectGreedyAloneEqualsGreedyInABatchOf32(GetParam(), WeightDType::kAuto, cache::KvDtype::kBf16);
}

INSTANTIATE_TEST_SUITE_P(Models, Bf16KvCacheBatchInvarianceTest,
                         ::testing::Values("", "tiny_qwen2_sliding_window", "tiny_hybrid_s4"),
                         [](const auto& info) {
                           return info.param.empty() ? std::string("DefaultModel")
                                                     : std::string(info.param);
                         });

INSTANTIATE_TEST_SUITE_P(Models, BatchInvarianceTest,
                         ::testing::Values("", "tiny_deepseek_v2_mla", "tiny_hybrid_s4"),
                         [](const auto& info) {
                           return info.param.empty() ? std::string("DefaultModel")
                                                     : std::string(info.param);
                         });

void ExpectSameTokensAndLogprobs(const SamplesSink::Sample& got, const SamplesSink::Sample& want) {
  EXPECT_EQ(got.tokens, want.tokens);
  ASSERT_EQ(got.logprobs.size(), want.logprobs.size());
  for (size_t i = 0; i < want.logprobs.size(); ++i) {
    EXPECT_EQ(got.logprobs[i].logprob, want.logprobs[i].logprob) << "token " << i;
  }
}

// A preempted request recomputes its tokens in other chunks than it first ran: MLA still computes
// prompt positions expanded and generated ones absorbed, and recurrent models replay generated
// tokens one per step, so the output stays bit-identical to a solo run.
TEST_P(BatchInvarianceTest, PreemptedRequestMatchesItsSoloRun) {
  const std::string fixture = GetParam();
  std::mt19937 rng(77);
  auto solo_engine = MakeEngine(fixture);
  const int32_t vocab = solo_engine->info().config.vocab_size;
  GenerationRequest target = GreedyRequest(RandomPrompt(rng, 20, vocab), 40);
  target.logprobs = 0;
  target.priority = 5;  // the least important: preempted first
  const auto solo = Generate(*solo_engine, target).at(0);

  LoadedModel model = LoadModel(fixture);
  EngineOptions options;
  options.block_size = 4;
  options.max_num_seqs = 8;
  options.max_state_checkpoints = 16;
  const cache::CacheSpec spec = model.model->CacheSpec(4);
  options.kv_cache_bytes = spec.PagedBytesPerToken() * 4 * 40 +  // 40 blocks
                           spec.StateBytesPerSequence() * (8 + 16);
  auto engine = *Engine::Create("m", std::move(model), options);
  std::vector<std::shared_ptr<SamplesSink>> others;
  auto target_sink = std::make_shared<SamplesSink>();
  ASSERT_TRUE(engine->Submit(target, target_sink).ok());
  for (int i = 0; i < 6; ++i) {
    others.push_back(std::make_shared<SamplesSink>());
    ASSERT_TRUE(
        engine->Submit(GreedyRequest(RandomPrompt(rng, 12, vocab), 30), others.back()).ok());
  }
  ExpectSameTokensAndLogprobs(target_sink->Wait().at(0), solo);
  for (auto& o : others) o->Wait();
  EXPECT_GT(engine->stats().num_preemptions, 0) << "the cache never ran out";
  ExpectCacheEmpty(*engine);
}

// A prompt whose first blocks are another request's cached prefix starts its prefill there: for
// MLA that can leave its last prompt token alone in a chunk, still computed in the prompt's form.
// (Recurrent models restore the other request's state checkpoint, computed with that request's
// chunk boundaries: not covered, see ARCHITECTURE.md.)
TEST(BatchingTest, PrefixCacheHitMatchesTheColdRun) {
  for (const std::string fixture : {"", "tiny_deepseek_v2_mla"}) {
    SCOPED_TRACE(fixture);
    std::mt19937 rng(9);
    auto cold = MakeEngine(fixture);
    const int32_t vocab = cold->info().config.vocab_size;
    const std::vector<int32_t> prefix = RandomPrompt(rng, 32, vocab);
    std::vector<int32_t> prompt = prefix;
    prompt.push_back(5);
    GenerationRequest target = GreedyRequest(prompt, 12);
    target.logprobs = 0;
    const auto want = Generate(*cold, target).at(0);
    auto warm = MakeEngine(fixture);
    Generate(*warm, GreedyRequest(prefix, 2));
    const EngineStats before = warm->stats();
    const auto got = Generate(*warm, target).at(0);
    EXPECT_GE(warm->stats().cache.prefix_hit_tokens - before.cache.prefix_hit_tokens, 32);
    ExpectSameTokensAndLogprobs(got, want);
  }
}

// n samples share the prompt's prefill; sample i of a seeded request equals a solo request seeded
// with seed + i, so forking the prompt's cache changes nothing in the numbers.
TEST(BatchingTest, ParallelSamplesEqualSoloRunsWithConsecutiveSeeds) {
  auto engine = MakeEngine("");
  GenerationRequest r = GreedyRequest(
      {5, 17, 29, 41, 53, 65, 77, 89, 101, 113, 125, 137, 149, 161, 173, 185, 197, 209}, 20);
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 100;
  r.n = 3;
  const auto samples = Generate(*engine, r);
  ASSERT_EQ(samples.size(), 3u);
  for (int32_t i = 0; i < 3; ++i) {
    GenerationRequest solo = r;
    solo.n = 1;
    solo.sampling.seed = 100 + i;
    const auto one = Generate(*engine, solo);
    EXPECT_EQ(samples.at(i).tokens, one.at(0).tokens) << "sample " << i;
    EXPECT_EQ(samples.at(i).final.finish_reason, FinishReason::kLength);
    EXPECT_EQ(samples.at(i).final.completion_tokens, 20);
    EXPECT_EQ(samples.at(i).final.prompt_tokens, 18);
  }
  EXPECT_NE(samples.at(0).tokens, samples.at(1).tokens);
  ExpectCacheEmpty(*engine);
}

TEST(BatchingTest, GreedySamplesAreIdenticalAndEachEndsOnce) {
  auto engine = MakeEngine("tiny_hybrid_s4");
  GenerationRequest r =
      GreedyRequest({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}, 9);
  r.n = 4;
  const auto samples = Generate(*engine, r);
  ASSERT_EQ(samples.size(), 4u);
  for (const auto& [index, s] : samples) {
    EXPECT_EQ(s.tokens, samples.at(0).tokens) << "sample " << index;
    EXPECT_EQ(s.tokens.size(), 9u);
  }
  ExpectCacheEmpty(*engine);
}

// Logprobs come from the raw logits: the greedy token is the top-1 entry and carries its logprob.
TEST(BatchingTest, LogprobsListTheGreedyTokenFirst) {
  auto engine = MakeEngine("");
  GenerationRequest r = GreedyRequest({7, 8, 9}, 5);
  r.logprobs = 3;
  const auto samples = Generate(*engine, r);
  const auto& s = samples.at(0);
  ASSERT_EQ(s.logprobs.size(), s.tokens.size());
  for (size_t i = 0; i < s.tokens.size(); ++i) {
    ASSERT_EQ(s.logprobs[i].top.size(), 3u);
    EXPECT_EQ(s.logprobs[i].top[0].token, s.tokens[i]);
    EXPECT_EQ(s.logprobs[i].top[0].logprob, s.logprobs[i].logprob);
    EXPECT_LE(s.logprobs[i].logprob, 0.0f);
    EXPECT_GE(s.logprobs[i].top[0].logprob, s.logprobs[i].top[1].logprob);
    EXPECT_GE(s.logprobs[i].top[1].logprob, s.logprobs[i].top[2].logprob);
  }
}

// With one running slot, waiting requests start by priority (lower first), then arrival.
TEST(BatchingTest, WaitingRequestsStartInPriorityOrder) {
  EngineOptions options;
  options.max_num_seqs = 1;
  auto engine = MakeEngine("", options);
  std::vector<std::string> order;
  absl::Mutex order_mu;
  auto submit = [&](std::string name, int32_t priority, int32_t max_tokens) {
    GenerationRequest r = GreedyRequest({3, 1, 4, 1, 5}, max_tokens);
    r.priority = priority;
    auto sink = std::make_shared<SamplesSink>(1, &order, &order_mu, name);
    EXPECT_TRUE(engine->Submit(std::move(r), sink).ok());
    return sink;
  };
  // The blocker runs for hundreds of steps: the others are all queued before it ends.
  auto blocker = submit("blocker", 0, 400);
  for (bool started = false; !started; absl::SleepFor(absl::Milliseconds(1))) {
    absl::MutexLock lock(&order_mu);
    started = !order.empty();
  }
  auto a = submit("a", 5, 2);
  auto b = submit("b", 1, 2);
  auto c = submit("c", 1, 2);
  auto d = submit("d", -3, 2);
  for (auto* s : {&blocker, &a, &b, &c, &d}) (*s)->Wait();
  EXPECT_THAT(order, ElementsAre("blocker", "d", "b", "c", "a"));
  ExpectCacheEmpty(*engine);
}

// A request whose deadline passes while it waits is never prefilled.
TEST(BatchingTest, ExpiredQueuedRequestIsNeverPrefilled) {
  EngineOptions options;
  options.max_num_seqs = 1;
  auto engine = MakeEngine("", options);
  auto blocker = std::make_shared<SamplesSink>();
  ASSERT_TRUE(engine->Submit(GreedyRequest({1, 2, 3}, 600), blocker).ok());
  GenerationRequest late = GreedyRequest({4, 5, 6}, 4);
  late.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(30);
  auto late_sink = std::make_shared<SamplesSink>();
  ASSERT_TRUE(engine->Submit(std::move(late), late_sink).ok());
  const auto late_result = late_sink->Wait().at(0);
  EXPECT_EQ(late_result.final.finish_reason, FinishReason::kDeadline);
  EXPECT_EQ(late_result.final.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(late_result.tokens.empty());
  EXPECT_EQ(late_result.final.completion_tokens, 0);
  EXPECT_EQ(blocker->Wait().at(0).tokens.size(), 600u);
  ExpectCacheEmpty(*engine);
}

TEST(BatchingTest, RunningRequestStopsAtItsDeadline) {
  auto engine = MakeEngine("");
  const int32_t max_tokens = engine->info().config.max_position_embeddings - 4;
  GenerationRequest r = GreedyRequest({1, 2, 3}, max_tokens);
  r.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(40);
  const auto result = Generate(*engine, r).at(0);
  EXPECT_EQ(result.final.finish_reason, FinishReason::kDeadline);
  EXPECT_EQ(result.final.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(result.tokens.size(), static_cast<size_t>(max_tokens));
  EXPECT_EQ(result.final.completion_tokens, static_cast<int32_t>(result.tokens.size()));
  ExpectCacheEmpty(*engine);
}

// 64 concurrent requests (some with n = 2) through a cache small enough to preempt, with random
// cancellations from another thread and random deadlines. Every sample ends exactly once with a
// status matching its finish reason; requests neither cancelled nor given a deadline complete;
// ones whose deadline had passed at submission produce nothing; the cache ends empty.
TEST(BatchingTest, SixtyFourRequestsWithCancellationsAndDeadlinesEndRightAndFreeTheCache) {
  const uint32_t seed = static_cast<uint32_t>(std::random_device{}());
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  EngineOptions options;
  options.max_num_seqs = 24;
  options.max_num_batched_tokens = 128;
  options.prefill_chunk_tokens = 48;
  LoadedModel model = LoadModel("");
  const cache::CacheSpec spec = model.model->CacheSpec(options.block_size);
  options.kv_cache_bytes = spec.PagedBytesPerToken() * options.block_size * 40;  // 40 blocks
  auto engine = *Engine::Create("m", std::move(model), options);
  const int32_t vocab = engine->info().config.vocab_size;

  enum class Kind { kPlain, kCancel, kDeadlineLater, kDeadlinePassed };
  struct Req {
    Kind kind;
    int32_t n;
    int32_t max_tokens;
    std::shared_ptr<SamplesSink> sink;
    RequestId id = 0;
  };
  std::vector<Req> reqs;
  std::uniform_int_distribution<int32_t> prompt_len(1, 80), max_tokens(1, 40), kind(0, 3),
      delay_us(0, 20000);
  for (int i = 0; i < 64; ++i) {
    Req q;
    q.kind = static_cast<Kind>(kind(rng));
    q.n = i % 5 == 0 ? 2 : 1;
    q.max_tokens = max_tokens(rng);
    q.sink = std::make_shared<SamplesSink>(q.n);
    GenerationRequest r = GreedyRequest(RandomPrompt(rng, prompt_len(rng), vocab), q.max_tokens);
    r.n = q.n;
    if (i % 2 == 1) {
      r.sampling.temperature = 1.0f;
      r.sampling.seed = i;
    }
    const auto now = std::chrono::steady_clock::now();
    if (q.kind == Kind::kDeadlineLater) {
      r.deadline = now + std::chrono::microseconds(delay_us(rng));
    } else if (q.kind == Kind::kDeadlinePassed) {
      r.deadline = now - std::chrono::milliseconds(1);
    }
    auto id = engine->Submit(std::move(r), q.sink);
    ASSERT_TRUE(id.ok()) << id.status();
    q.id = *id;
    reqs.push_back(std::move(q));
  }
  std::vector<std::pair<int, RequestId>> cancels;
  for (const Req& q : reqs) {
    if (q.kind == Kind::kCancel) cancels.emplace_back(delay_us(rng), q.id);
  }
  std::sort(cancels.begin(), cancels.end());
  std::thread canceller([&] {
    const absl::Time start = absl::Now();
    for (const auto& [delay, id] : cancels) {
      absl::SleepFor(start + absl::Microseconds(delay) - absl::Now());
      engine->Cancel(id);
    }
  });
  canceller.join();
  for (size_t i = 0; i < reqs.size(); ++i) {
    const Req& q = reqs[i];
    const auto samples = q.sink->Wait();
    ASSERT_EQ(static_cast<int32_t>(samples.size()), q.n) << "request " << i;
    for (const auto& [index, s] : samples) {
      SCOPED_TRACE(::testing::Message() << "request " << i << " sample " << index);
      const FinishReason reason = s.final.finish_reason;
      EXPECT_EQ(s.final.completion_tokens, static_cast<int32_t>(s.tokens.size()));
      switch (reason) {
        case FinishReason::kLength:
          EXPECT_TRUE(s.final.status.ok());
          EXPECT_EQ(s.tokens.size(), static_cast<size_t>(q.max_tokens));
          break;
        case FinishReason::kCancelled:
          EXPECT_EQ(s.final.status.code(), absl::StatusCode::kCancelled);
          EXPECT_EQ(q.kind, Kind::kCancel);
          break;
        case FinishReason::kDeadline:
          EXPECT_EQ(s.final.status.code(), absl::StatusCode::kDeadlineExceeded);
          EXPECT_TRUE(q.kind == Kind::kDeadlineLater || q.kind == Kind::kDeadlinePassed);
          break;
        default:
          ADD_FAILURE() << "unexpected finish reason " << FinishReasonName(reason);
      }
      if (q.kind == Kind::kPlain) {
        EXPECT_EQ(reason, FinishReason::kLength);
      }
      if (q.kind == Kind::kDeadlinePassed) {
        EXPECT_EQ(reason, FinishReason::kDeadline);
        EXPECT_TRUE(s.tokens.empty());
      }
    }
  }
  ExpectCacheEmpty(*engine);
}

}  // namespace
}  // namespace kvserve::engine
