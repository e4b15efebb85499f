// What the engine reports to its EngineObserver, checked exactly with a fake clock that moves one
// millisecond per reading: the order of the engine's clock readings fixes every interval.
// Uses the tiny reference checkpoint (vocab 64; prompts are token ids).
#include "engine/engine_observer.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "engine/model/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

using ::testing::DoubleEq;
using ::testing::ElementsAre;
using ::testing::Pointwise;

// Reading k (from 0) returns 1 s + k ms: never SteadyTime{}, which means "unset".
class TickingClock : public Clock {
 public:
  SteadyTime Now() const override {
    return SteadyTime{} + std::chrono::seconds(1) +
           std::chrono::milliseconds(readings_.fetch_add(1));
  }
  static SteadyTime At(int reading) {
    return SteadyTime{} + std::chrono::seconds(1) + std::chrono::milliseconds(reading);
  }

 private:
  mutable std::atomic<int64_t> readings_{0};
};

// Copies every report; the vectors of IterationStats are copied too.
class RecordingObserver : public EngineObserver {
 public:
  void OnIteration(const IterationStats& stats) override {
    absl::MutexLock lock(&mu_);
    iterations_.push_back(stats);
  }
  void OnRequestFinished(const RequestStats& stats) override {
    absl::MutexLock lock(&mu_);
    requests_.push_back(stats);
    request_ids_.emplace_back(stats.request_id);
  }
  // Waits for the iteration in which the last request finished (reported after its final event).
  void WaitForIdleIteration(int num_requests) {
    absl::MutexLock lock(&mu_);
    auto idle = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return static_cast<int>(requests_.size()) == num_requests && !iterations_.empty() &&
             iterations_.back().scheduler.num_running == 0;
    };
    EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&idle), absl::Seconds(30)));
  }
  std::vector<IterationStats> iterations() {
    absl::MutexLock lock(&mu_);
    return iterations_;
  }
  std::vector<RequestStats> requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }
  std::vector<std::string> request_ids() {
    absl::MutexLock lock(&mu_);
    return request_ids_;
  }

 private:
  absl::Mutex mu_;
  std::vector<IterationStats> iterations_ ABSL_GUARDED_BY(mu_);
  std::vector<RequestStats> requests_ ABSL_GUARDED_BY(mu_);  // request_id dangles after the call
  std::vector<std::string> request_ids_ ABSL_GUARDED_BY(mu_);
};

class DoneSink : public TokenSink {
 public:
  void OnEvent(TokenEvent event) override {
    absl::MutexLock lock(&mu_);
    if (event.finished) final_ = std::move(event);
  }
  TokenEvent Wait() {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return final_.finished; };
    EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(30)));
    return final_;
  }

 private:
  absl::Mutex mu_;
  TokenEvent final_ ABSL_GUARDED_BY(mu_);
};

struct Fixture {
  std::shared_ptr<RecordingObserver> observer = std::make_shared<RecordingObserver>();
  std::unique_ptr<Engine> engine;

  explicit Fixture(EngineOptions options = {}) {
    options.observer = observer;
    options.clock = std::make_shared<TickingClock>();
    auto loaded = LoadModelDirectory(std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_llama_gqa");
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    auto created = Engine::Create("tiny", std::move(*loaded), options);
    EXPECT_TRUE(created.ok()) << created.status();
    engine = std::move(*created);
  }

  TokenEvent Run(std::vector<int32_t> prompt, int32_t max_tokens, std::string request_id = "r") {
    GenerationRequest r;
    r.request_id = std::move(request_id);
    r.prompt_token_ids = std::move(prompt);
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0.0f;
    r.ignore_eos = true;
    auto sink = std::make_shared<DoneSink>();
    EXPECT_TRUE(engine->Submit(std::move(r), sink).ok());
    return sink->Wait();
  }
};

std::vector<double> Seconds(std::vector<int> ms) {
  std::vector<double> out;
  for (int m : ms) out.push_back(m / 1000.0);
  return out;
}

TEST(EngineObserverTest, ReportsVllmIntervalsOfOneRequestOnTheEnginesClock) {
  Fixture f;
  // Clock readings: 0 arrival (Submit), 1 first scheduled, 2..4 tokens 1..3, 5 finish.
  TokenEvent last = f.Run({1, 2, 3, 4}, 3, "req-1");
  ASSERT_EQ(last.finish_reason, FinishReason::kLength);
  f.observer->WaitForIdleIteration(1);

  const std::vector<RequestStats> requests = f.observer->requests();
  ASSERT_EQ(requests.size(), 1u);
  const RequestStats& r = requests[0];
  EXPECT_EQ(f.observer->request_ids(), std::vector<std::string>{"req-1"});
  EXPECT_EQ(r.finish_reason, FinishReason::kLength);
  EXPECT_EQ(r.num_prompt_tokens, 4);
  EXPECT_EQ(r.num_generation_tokens, 3);
  EXPECT_EQ(r.arrival_time, TickingClock::At(0));
  EXPECT_EQ(r.first_scheduled_time, TickingClock::At(1));
  EXPECT_EQ(r.first_token_time, TickingClock::At(2));
  EXPECT_EQ(r.last_token_time, TickingClock::At(4));
  EXPECT_EQ(r.finish_time, TickingClock::At(5));

  // One iteration per token (one running request, prompt in one chunk).
  const std::vector<IterationStats> it = f.observer->iterations();
  ASSERT_EQ(it.size(), 3u);
  EXPECT_EQ(it[0].num_scheduled_tokens, 4);
  EXPECT_EQ(it[0].num_prompt_tokens, 4);
  EXPECT_EQ(it[0].num_generation_tokens, 1);
  EXPECT_THAT(it[0].time_to_first_tokens, Pointwise(DoubleEq(), Seconds({2})));
  EXPECT_TRUE(it[0].inter_token_latencies.empty());
  EXPECT_EQ(it[0].scheduler.num_running, 1);
  for (int i : {1, 2}) {
    EXPECT_EQ(it[i].num_scheduled_tokens, 1);
    EXPECT_EQ(it[i].num_prompt_tokens, 0);
    EXPECT_EQ(it[i].num_generation_tokens, 1);
    EXPECT_TRUE(it[i].time_to_first_tokens.empty());
    EXPECT_THAT(it[i].inter_token_latencies, Pointwise(DoubleEq(), Seconds({1})));
  }
  EXPECT_EQ(it[2].scheduler.num_running, 0);
  EXPECT_EQ(it[2].scheduler.num_waiting, 0);
}

TEST(EngineObserverTest, ChunkedPrefillCountsScheduledTokensPerIterationAndThePromptOnce) {
  EngineOptions options;
  options.prefill_chunk_tokens = 4;
  Fixture f(options);
  // Prefill chunks of 4, 4, 2; the third samples the first token, then one decode.
  f.Run({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 2);
  f.observer->WaitForIdleIteration(1);
  std::vector<int> scheduled, prompt, generated;
  for (const IterationStats& s : f.observer->iterations()) {
    scheduled.push_back(s.num_scheduled_tokens);
    prompt.push_back(s.num_prompt_tokens);
    generated.push_back(s.num_generation_tokens);
  }
  EXPECT_THAT(scheduled, ElementsAre(4, 4, 2, 1));
  EXPECT_THAT(prompt, ElementsAre(0, 0, 10, 0));
  EXPECT_THAT(generated, ElementsAre(0, 0, 1, 1));
  // Readings: 0 arrival, 1 scheduled, 2 first token, 3 second token, 4 finish.
  const RequestStats r = f.observer->requests().at(0);
  EXPECT_EQ(r.first_scheduled_time, TickingClock::At(1));
  EXPECT_EQ(r.first_token_time, TickingClock::At(2));
  EXPECT_EQ(r.finish_time, TickingClock::At(4));
}

TEST(EngineObserverTest, UsesTheArrivalTimeTheServerStamped) {
  Fixture f;
  GenerationRequest r;
  r.prompt_token_ids = {1, 2};
  r.max_tokens = 1;
  r.ignore_eos = true;
  r.arrival_time = SteadyTime{} + std::chrono::milliseconds(500);  // 0.5 s before the clock's 1 s
  auto sink = std::make_shared<DoneSink>();
  ASSERT_TRUE(f.engine->Submit(std::move(r), sink).ok());
  sink->Wait();
  f.observer->WaitForIdleIteration(1);
  // Readings: 0 first scheduled, 1 first token, 2 finish (Submit did not read the clock).
  const RequestStats stats = f.observer->requests().at(0);
  EXPECT_EQ(stats.arrival_time, SteadyTime{} + std::chrono::milliseconds(500));
  EXPECT_EQ(stats.first_scheduled_time, TickingClock::At(0));
  EXPECT_THAT(f.observer->iterations().at(0).time_to_first_tokens,
              Pointwise(DoubleEq(), Seconds({501})));
}

TEST(EngineObserverTest, ReportsACancelledRequestWithTheTimesItReached) {
  Fixture f;
  GenerationRequest r;
  r.prompt_token_ids = {1, 2, 3};
  r.max_tokens = 120;
  r.ignore_eos = true;
  auto sink = std::make_shared<DoneSink>();
  // Paused, so the cancel is queued before the request's first step: a fast engine would
  // otherwise finish all 120 tokens first (this failed once in a 20-run loop).
  f.engine->Pause();
  auto id = f.engine->Submit(std::move(r), sink);
  ASSERT_TRUE(id.ok());
  f.engine->Cancel(*id);
  f.engine->Resume();
  EXPECT_EQ(sink->Wait().finish_reason, FinishReason::kCancelled);
  f.observer->WaitForIdleIteration(1);
  const RequestStats stats = f.observer->requests().at(0);
  EXPECT_EQ(stats.finish_reason, FinishReason::kCancelled);
  EXPECT_LT(stats.num_generation_tokens, 120);
  EXPECT_GE(stats.finish_time, stats.arrival_time);
  // Whatever it reached, it reached in order.
  if (stats.first_token_time != SteadyTime{}) {
    EXPECT_GT(stats.first_token_time, stats.first_scheduled_time);
    EXPECT_GE(stats.last_token_time, stats.first_token_time);
  }
}

}  // namespace
}  // namespace kvserve::engine
