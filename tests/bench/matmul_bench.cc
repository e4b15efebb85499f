// The row-invariant matmul kernel vs oneDNN (Linear without row invariance, which uses oneDNN from
// Linear::kOneDnnMinRows rows on), one thread, on the default model's and SmolLM-135M's shapes.
// Both operands as the engine holds them (64-byte-aligned, weights [N][K]). Also the cost of one
// ParallelFor fork-join on two threads (BM_ParallelForEmpty).
//
//   OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE build/tests/bench/matmul_bench
//       --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <omp.h>

#include <atomic>
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

// The fork-join itself: ParallelFor(n) of empty tasks on two kernel threads (the caller and one
// worker, spinning between calls as in a decode step). A decode step makes ~120 such calls of
// 5-9 tasks, so this times what the pool's protocol (thread_pool.h) costs per call and per task.
//   build/tests/bench/matmul_bench --benchmark_filter=BM_ParallelForEmpty
void BM_ParallelForEmpty(benchmark::State& state) {
  const int64_t n = state.range(0);
  kvserve::engine::SetKernelThreads(2);
  std::atomic<int64_t> sink{0};
  const auto task = [&](int64_t i) { sink.fetch_add(i, std::memory_order_relaxed); };
  kvserve::engine::ParallelFor(n, task);  // starts the worker
  for (auto _ : state) kvserve::engine::ParallelFor(n, task);
  benchmark::DoNotOptimize(sink.load());
}
BENCHMARK(BM_ParallelForEmpty)->Arg(2)->Arg(4)->Arg(8)->Arg(16)->Arg(32)->UseRealTime();

}  // namespace
}  // namespace kvserve

BENCHMARK_MAIN();
