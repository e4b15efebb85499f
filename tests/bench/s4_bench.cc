// S4 prefill modes vs attention (issue "S4 layers and hybrid attention/S4 models"): time to process
// a prompt of L tokens through one layer, for L = 256 ... 8192.
//   S4 convolution: S4Layer::Prefill (kernel by Vandermonde, FFT convolution over 2L)  ~ L log L
//   S4 recurrence:  L calls of S4Layer::Step                                            ~ L
//   attention:      causal GQA over the prompt (8 heads of 32, 2 KV heads)              ~ L²
// One layer of width 256 with 32 complex modes per channel (S4D-Lin, ZOH); state bytes per
// sequence vs KV bytes per token are reported as counters.
//
//   OMP_NUM_THREADS=1 build/tests/bench/s4_bench --benchmark_repetitions=3
//       --benchmark_report_aggregates_only=true
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "engine/layers/gqa_attention.h"
#include "engine/layers/s4_layer.h"

namespace kvserve {
namespace {

constexpr int64_t kChannels = 256;
constexpr int64_t kModes = 32;

std::unique_ptr<engine::S4Layer> MakeLayer() {
  engine::S4Params p;
  p.channels = kChannels;
  p.modes = kModes;
  p.log_dt.assign(kChannels, -4.0f);
  p.a_real.resize(kChannels * kModes);
  p.a_imag.resize(kChannels * kModes);
  for (int64_t h = 0; h < kChannels; ++h) {
    engine::S4dLinInit(kModes, &p.a_real[h * kModes], &p.a_imag[h * kModes]);
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> dist;
  p.b.resize(kChannels * kModes * 2);
  p.c.resize(kChannels * kModes * 2);
  p.d.resize(kChannels);
  for (float& x : p.b) x = dist(rng);
  for (float& x : p.c) x = dist(rng);
  for (float& x : p.d) x = dist(rng);
  return *engine::S4Layer::Create(std::move(p));
}

std::vector<float> Input(int64_t n) {
  std::mt19937 rng(2);
  std::normal_distribution<float> dist;
  std::vector<float> u(n);
  for (float& x : u) x = dist(rng);
  return u;
}

void BM_S4Convolution(benchmark::State& state) {
  const int64_t length = state.range(0);
  auto layer = MakeLayer();
  const auto u = Input(length * kChannels);
  std::vector<float> y(length * kChannels), s(layer->state_floats());
  for (auto _ : state) {
    std::fill(s.begin(), s.end(), 0.0f);
    layer->Prefill(u.data(), length, s.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["state_bytes_per_seq"] = static_cast<double>(layer->state_floats() * 4);
}

void BM_S4Recurrence(benchmark::State& state) {
  const int64_t length = state.range(0);
  auto layer = MakeLayer();
  const auto u = Input(length * kChannels);
  std::vector<float> y(length * kChannels), s(layer->state_floats());
  for (auto _ : state) {
    std::fill(s.begin(), s.end(), 0.0f);
    for (int64_t t = 0; t < length; ++t) {
      layer->Step(&u[t * kChannels], s.data(), &y[t * kChannels]);
    }
    benchmark::DoNotOptimize(y.data());
  }
}

void BM_Attention(benchmark::State& state) {
  const int64_t length = state.range(0);
  const engine::AttentionShape shape{8, 2, 32};
  const int64_t kv_dim = shape.num_kv_heads * shape.head_dim;
  const auto q = Input(length * shape.num_heads * shape.head_dim);
  const auto kv = Input(length * 2 * kv_dim);
  std::vector<float> out(q.size()), scratch(length);
  const int32_t table[] = {0};
  const engine::KvView view{kv.data(), kv.data() + kv_dim, 2 * kv_dim, table, length};
  for (auto _ : state) {
    engine::GqaAttention(q.data(), view, 0, length, shape, scratch.data(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["kv_bytes_per_token"] = static_cast<double>(2 * kv_dim * 4);
}

BENCHMARK(BM_S4Convolution)->RangeMultiplier(2)->Range(256, 8192)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_S4Recurrence)->RangeMultiplier(2)->Range(256, 8192)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Attention)->RangeMultiplier(2)->Range(256, 8192)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kvserve

BENCHMARK_MAIN();
