// The row-invariant matmul kernel vs oneDNN (Linear without row invariance, which uses oneDNN from
// Linear::kOneDnnMinRows rows on), one thread, on the default model's and SmolLM-135M's shapes.
// Both operands as the engine holds them (64-byte-aligned, weights [N][K]).
//
//   OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE build/tests/bench/matmul_bench
//       --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <omp.h>

#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "engine/kernels/aligned_buffer.h"
#include "engine/kernels/linear.h"
#include "engine/kernels/row_invariant_matmul.h"
#include "engine/kernels/thread_pool.h"

namespace kvserve {
namespace {

// range: M, N, K, kernel (1 = RowInvariantMatmul, 0 = oneDNN through Linear).
void BM_Matmul(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const bool kernel = state.range(3) != 0;
  omp_set_num_threads(1);                // oneDNN
  kvserve::engine::SetKernelThreads(1);  // kvserve's kernels
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> w(n * k);
  for (float& v : w) v = dist(rng);
  engine::AlignedFloats x(m * k), y(m * n);
  for (float& v : x) v = dist(rng);
  auto linear = *engine::Linear::Create(w, n, k);
  linear.set_row_invariant(false);
  for (auto _ : state) {
    if (kernel) {
      engine::RowInvariantMatmul(
          x.data(), m, std::get<engine::F32Weight>(linear.weight()).data.data(), n, k, y.data());
    } else {
      linear.Forward(x.data(), m, y.data());
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(static_cast<double>(2 * m * n * k) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Matmul)
    ->ArgNames({"M", "N", "K", "kernel"})
    ->ArgsProduct({{1, 16, 64, 256}, {256}, {256}, {1, 0}})
    ->ArgsProduct({{1, 16, 64, 256}, {688}, {256}, {1, 0}})
    ->ArgsProduct({{1, 16, 64, 256}, {1536}, {576}, {1, 0}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace kvserve

BENCHMARK_MAIN();
