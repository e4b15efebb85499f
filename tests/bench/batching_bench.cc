// Continuous batching (issue "Continuous batching engine"): aggregate output tokens/s of the real
// engine on the default model at 1, 4, 16 and 64 concurrent streams, in process (no gRPC), with
// and without batch invariance. Closed loop: each stream submits its next request (64-token random
// prompt, exactly 64 output tokens, greedy) when the previous one ends; every iteration of the
// benchmark runs 2 requests per stream (at least 32 in all).
//
// Counters: tok/s (output tokens per second, all streams) and TPOT_ms (mean time between one
// stream's tokens = streams / (tok/s), prefill included): the per-token latency cost of batching is
// TPOT at N streams vs TPOT at 1.
//
//   OMP_WAIT_POLICY=PASSIVE build/tests/bench/batching_bench --benchmark_repetitions=3
//       --benchmark_report_aggregates_only=true
//
// Weight precision (issue #16): BM_WeightDtypeDecode runs the SmolLM-135M shape with its matrices
// in f32, bf16 and int8 at 1 and 16 streams, interleaved with BM_ReadBandwidth (a STREAM-like
// read) so that decode can be stated as a fraction of the memory bandwidth in the same run:
// weight_GB/s = single-stream tok/s × the weight bytes one token streams (ModelInfo::weight_bytes).
//
//   OMP_WAIT_POLICY=PASSIVE build/tests/bench/batching_bench
//       --benchmark_filter='BM_ReadBandwidth|BM_WeightDtypeDecode'
#include <omp.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "engine/engine.h"
#include "engine/model/model_loader.h"

namespace kvserve {
namespace {

using engine::Engine;
using engine::GenerationRequest;
using engine::TokenEvent;

constexpr int32_t kPromptTokens = 64;
constexpr int32_t kOutputTokens = 64;

// Counts finished requests of all streams; Wait(n) blocks until n have finished.
class DoneCounter : public engine::TokenSink {
 public:
  void OnEvent(TokenEvent event) override {
    if (!event.finished) return;
    absl::MutexLock lock(&mu_);
    ++done_;
    tokens_ += event.completion_tokens;
  }
  void Wait(int64_t n) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_ >= n; };
    mu_.Await(absl::Condition(&reached));
  }
  int64_t tokens() {
    absl::MutexLock lock(&mu_);
    return tokens_;
  }

 private:
  absl::Mutex mu_;
  int64_t done_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t tokens_ ABSL_GUARDED_BY(mu_) = 0;
};

// The shape of SmolLM-135M (performance.md's "small-gqa", 134.5M parameters, 539 MB in f32):
// large enough that single-stream decode streams its weights from memory, as real models do.
engine::ModelConfig SmallGqaConfig() {
  engine::ModelConfig c = engine::DefaultModelConfig();
  c.vocab_size = 49152;
  c.hidden_size = 576;
  c.intermediate_size = 1536;
  c.num_hidden_layers = 30;
  c.num_attention_heads = 9;
  c.num_key_value_heads = 3;
  c.head_dim = 64;
  c.tie_word_embeddings = true;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

// Closed-loop decode of `streams` streams on `eng` (see the top of the file).
// At least `min_requests` requests per iteration, 2 per stream.
void RunDecode(benchmark::State& state, Engine* eng, int32_t streams, int32_t min_requests = 32) {
  const int32_t vocab = eng->info().config.vocab_size;
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> token(1, vocab - 1);
  auto request = [&] {
    GenerationRequest r;
    r.prompt_token_ids.resize(kPromptTokens);
    for (int32_t& t : r.prompt_token_ids) t = token(rng);
    r.max_tokens = kOutputTokens;
    r.ignore_eos = true;
    r.sampling.temperature = 0.0f;
    return r;
  };
  const int32_t per_stream = std::max(2, min_requests / streams);
  int64_t total_tokens = 0;
  for (auto _ : state) {
    // Each stream's requests one after another: `streams` requests in flight at any time.
    auto sink = std::make_shared<DoneCounter>();
    for (int32_t s = 0; s < streams; ++s) (void)eng->Submit(request(), sink);
    for (int64_t done = 1; done <= int64_t{streams} * (per_stream - 1); ++done) {
      sink->Wait(done);
      (void)eng->Submit(request(), sink);
    }
    sink->Wait(int64_t{streams} * per_stream);
    total_tokens += sink->tokens();
  }
  state.counters["tok/s"] =
      benchmark::Counter(static_cast<double>(total_tokens), benchmark::Counter::kIsRate);
  state.counters["TPOT_ms"] =
      benchmark::Counter(static_cast<double>(total_tokens) / streams / 1000.0,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// range(3): 0 = the default model, 1 = the SmolLM-135M shape.
void BM_DecodeThroughput(benchmark::State& state) {
  const int32_t streams = static_cast<int32_t>(state.range(0));
  engine::EngineOptions options;
  options.batch_invariant = state.range(1) != 0;
  options.num_threads = static_cast<int32_t>(state.range(2));
  options.max_num_seqs = 64;
  const bool small_gqa = state.range(3) != 0;
  auto loaded = engine::CreateRandomModel(
      small_gqa ? SmallGqaConfig() : engine::DefaultModelConfig(), engine::kDefaultModelSeed);
  auto eng = std::move(*Engine::Create("bench", std::move(*loaded), options));
  RunDecode(state, eng.get(), streams);
}

// STREAM-like read bandwidth: 2 threads sum a 512 MiB array (integer adds, which the compiler
// vectorizes without reassociation flags), as many times as the benchmark asks.
void BM_ReadBandwidth(benchmark::State& state) {
  constexpr int64_t kWords = int64_t{512} << 20 >> 3;
  std::vector<uint64_t> array(kWords);
  for (int64_t i = 0; i < kWords; ++i) array[i] = static_cast<uint64_t>(i);
  const uint64_t* a = array.data();
  uint64_t sink = 0;
  for (auto _ : state) {
    uint64_t sum = 0;
#pragma omp parallel for reduction(+ : sum) num_threads(2) schedule(static)
    for (int64_t i = 0; i < kWords; ++i) sum += a[i];
    sink += sum;
  }
  benchmark::DoNotOptimize(sink);
  state.counters["read_GB/s"] = benchmark::Counter(
      static_cast<double>(kWords * 8) * 1e-9 * state.iterations(), benchmark::Counter::kIsRate);
}

// The SmolLM-135M shape with its matrices in range(1): 0 = f32, 1 = bf16, 2 = int8 (block 32).
void BM_WeightDtypeDecode(benchmark::State& state) {
  const int32_t streams = static_cast<int32_t>(state.range(0));
  const engine::WeightDType dtype = state.range(1) == 0   ? engine::WeightDType::kF32
                                    : state.range(1) == 1 ? engine::WeightDType::kBf16
                                                          : engine::WeightDType::kInt8;
  engine::EngineOptions options;
  options.max_num_seqs = 64;
  options.num_threads = 2;
  auto loaded = engine::CreateRandomModel(SmallGqaConfig(), engine::kDefaultModelSeed, dtype);
  auto eng = std::move(*Engine::Create("bench", std::move(*loaded), options));
  const int64_t weight_bytes = eng->info().weight_bytes;
  RunDecode(state, eng.get(), streams, /*min_requests=*/8);
  state.counters["weight_MB"] = static_cast<double>(weight_bytes) * 1e-6;
  // The bytes every decode step streams: all matrices (norms are a rounding error), once per step
  // whatever the number of streams.
  // (The tok/s counter holds the token count until it is reported as a rate.)
  state.counters["weight_GB/s"] = benchmark::Counter(
      state.counters["tok/s"].value / streams * static_cast<double>(weight_bytes) * 1e-9,
      benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DecodeThroughput)
    ->ArgNames({"streams", "invariant", "threads", "smolshape"})
    ->ArgsProduct({{1, 4, 16, 64}, {1, 0}, {0, 2}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK(BM_DecodeThroughput)
    ->ArgNames({"streams", "invariant", "threads", "smolshape"})
    ->ArgsProduct({{1, 4, 16, 64}, {1, 0}, {0}, {1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);
// Read bandwidth before and after the precision runs, so drift from the other load shows.
BENCHMARK(BM_ReadBandwidth)
    ->Name("BM_ReadBandwidth/before")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(1.0);
BENCHMARK(BM_WeightDtypeDecode)
    ->ArgNames({"streams", "dtype"})
    ->ArgsProduct({{1, 16}, {0, 1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);
BENCHMARK(BM_ReadBandwidth)
    ->Name("BM_ReadBandwidth/after")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(1.0);

}  // namespace
}  // namespace kvserve

BENCHMARK_MAIN();
