// Low-precision matmul kernels against the machine's limits, in one process run so that the
// ratios are measured under the same load (the machine is shared; absolute numbers drift):
//   - STREAM-like read bandwidth, 1 and 2 threads (1 and 8 concurrent streams per thread);
//   - decode (M = 1..4) weight GB/s of RowInvariantMatmul (f32), Bf16Matmul and Int8Matmul, with
//     the weights rotating over >= 512 MiB of copies so that they stream from DRAM;
//   - prefill (M = 512) GFLOP/s of the same kernels next to oneDNN's bf16 and f32 matmul with
//     prepacked ('any') weights;
//   - shared calls: a SmolLM-135M layer's q/k/v and gate/up as one MatmulForward with several
//     outputs against one call per weight (cold weights, M = 1 and 16);
//   - layer: that layer's four decode calls at M = 1, int8 against bf16 per call (cold).
// Kernels and their baselines run interleaved, one sample each per round (kSamples rounds); the
// figures are medians of the rates and of the per-round ratios to the baseline.
//
// Build and run without CMake (from the repository root; ABSL = the absl libraries
// absl::StatusOr needs: -labsl_statusor -labsl_status -labsl_strings -labsl_str_format_internal
// -labsl_cord -labsl_cordz_info -labsl_cord_internal -labsl_cordz_functions -labsl_cordz_handle
// -labsl_throw_delegate -labsl_raw_logging_internal -labsl_int128 -labsl_strings_internal
// -labsl_base -labsl_spinlock_wait -labsl_synchronization -labsl_time -labsl_time_zone
// -labsl_stacktrace -labsl_symbolize -labsl_malloc_internal -labsl_exponential_biased
// -labsl_debugging_internal -labsl_demangle_internal):
//   g++ -std=c++20 -O3 -march=x86-64-v4 -fopenmp -I. tests/bench/lowp_matmul_bench.cc
//       engine/kernels/*.cc engine/kernels/row_invariant_matmul.cc -ldnnl $ABSL -lpthread
//       -o lowp_matmul_bench
//   OMP_WAIT_POLICY=PASSIVE ./lowp_matmul_bench [--quick]
//       [--only=read|decode|hot|prefill|shared|layer|accuracy]
// Results: docs/benchmarks.md.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/kernels/aligned_buffer.h"
#include "engine/kernels/bf16_matmul.h"
#include "engine/kernels/int8_matmul.h"
#include "engine/kernels/matmul_weight.h"
#include "engine/kernels/row_invariant_matmul.h"
#include "engine/kernels/thread_pool.h"

// GCC 12 reports the deliberately undefined operand inside its own AVX-512 intrinsics.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace kvserve::engine {
namespace {

int kSamples = 7;
constexpr int64_t kRotateBytes = int64_t{512} << 20;

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median over samples of (work per call / seconds per call); each sample runs `calls` calls.
double MedianRate(const std::function<void(int)>& call, int calls, double work_per_call) {
  std::vector<double> rates;
  call(0);  // warm-up
  for (int s = 0; s < kSamples; ++s) {
    const double t0 = Now();
    for (int c = 0; c < calls; ++c) call(c);
    rates.push_back(work_per_call * calls / (Now() - t0));
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

// Read bandwidth over a 512 MiB array, `streams` concurrent sequential streams per thread.
__attribute__((target("avx512f"))) double ReadSum(const float* a, int64_t count, int streams) {
  __m512 acc[8] = {};
  const int64_t per = count / streams / 16 * 16;
  for (int64_t i = 0; i < per; i += 16) {
    for (int s = 0; s < streams; ++s)
      acc[s] = _mm512_add_ps(acc[s], _mm512_load_ps(a + s * per + i));
  }
  __m512 total = acc[0];
  for (int s = 1; s < 8; ++s) total = _mm512_add_ps(total, acc[s]);
  return _mm512_reduce_add_ps(total);
}

double ReadOnce(int threads, int streams) {
  static AlignedFloats array(kRotateBytes / 4, 1.0f);
  const int64_t count = static_cast<int64_t>(array.size());
  static volatile double sink = 0;
  double sum = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : sum) schedule(static)
  for (int t = 0; t < threads; ++t) {
    sum += ReadSum(array.data() + t * (count / threads), count / threads, streams);
  }
  sink = sink + sum;
  return static_cast<double>(kRotateBytes);
}

double ReadGbps(int threads, int streams) {
  return MedianRate([&](int) { ReadOnce(threads, streams); }, 1,
                    static_cast<double>(kRotateBytes)) *
         1e-9;
}

std::vector<float> RandomNormal(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> v(count);
  for (float& f : v) f = normal(rng);
  return v;
}

struct Shape {
  int64_t n, k;
};

// A measured case: `run` performs one sample's worth of calls and returns the work done (bytes
// or FLOP).
struct Case {
  std::string name;
  std::function<double()> run;
};

// Runs the cases interleaved, kSamples rounds of one sample each, so that every case sees the
// same drift of the shared machine; returns each case's median rate and its median ratio to the
// best of cases [0, num_baselines) in the same round.
struct CaseResult {
  double rate, ratio;
};
std::vector<CaseResult> Interleaved(const std::vector<Case>& cases, int num_baselines) {
  std::vector<std::vector<double>> rates(cases.size()), ratios(cases.size());
  for (const Case& c : cases) c.run();  // warm-up
  for (int s = 0; s < kSamples; ++s) {
    std::vector<double> round(cases.size());
    for (size_t i = 0; i < cases.size(); ++i) {
      const double t0 = Now();
      const double work = cases[i].run();
      round[i] = work / (Now() - t0);
    }
    const double base = *std::max_element(round.begin(), round.begin() + num_baselines);
    for (size_t i = 0; i < cases.size(); ++i) {
      rates[i].push_back(round[i]);
      ratios[i].push_back(round[i] / base);
    }
  }
  std::vector<CaseResult> out;
  for (size_t i = 0; i < cases.size(); ++i) {
    std::sort(rates[i].begin(), rates[i].end());
    std::sort(ratios[i].begin(), ratios[i].end());
    out.push_back({rates[i][kSamples / 2], ratios[i][kSamples / 2]});
  }
  return out;
}

// Decode: GB/s of weight bytes for M = 1..4 rows, weights rotating over >= 512 MiB of copies,
// interleaved with the read baselines.
void Decode(const Shape& s, int threads) {
  omp_set_num_threads(threads);  // oneDNN
  SetKernelThreads(threads);     // kvserve's kernels
  const std::vector<float> w = RandomNormal(s.n * s.k, 1);
  AlignedFloats x(4 * s.k), y(4 * s.n);
  for (int64_t i = 0; i < 4 * s.k; ++i) x[i] = std::sin(0.1f * i);
  auto copies_of = [](int64_t bytes) {
    return static_cast<int>(std::max<int64_t>(2, (kRotateBytes + bytes - 1) / bytes));
  };
  const int64_t f32_bytes = s.n * s.k * 4;
  std::vector<AlignedFloats> f32(copies_of(f32_bytes), AlignedFloats(w.begin(), w.end()));
  const auto bf16_one = *PackBf16(w.data(), s.n, s.k, "w");
  std::vector<PackedBf16Weight> bf16(copies_of(bf16_one.bytes()), bf16_one);
  const auto pc_one = *QuantizeInt8(w.data(), s.n, s.k, Int8Grouping::kPerChannel, "w");
  std::vector<PackedInt8Weight> pc(copies_of(pc_one.bytes()), pc_one);
  const auto b32_one = *QuantizeInt8(w.data(), s.n, s.k, Int8Grouping::kBlock32, "w");
  std::vector<PackedInt8Weight> b32(copies_of(b32_one.bytes()), b32_one);

  std::vector<Case> cases;
  cases.push_back({"read 1 stream", [=] { return ReadOnce(threads, 1); }});
  cases.push_back({"read 8 streams", [=] { return ReadOnce(threads, 8); }});
  for (int64_t m = 1; m <= 4; ++m) {
    cases.push_back({"f32", [&, m] {
                       for (const auto& c : f32)
                         RowInvariantMatmul(x.data(), m, c.data(), s.n, s.k, y.data());
                       return static_cast<double>(f32_bytes) * f32.size();
                     }});
  }
  for (int64_t m = 1; m <= 4; ++m) {
    cases.push_back({"bf16", [&, m] {
                       for (const auto& c : bf16) Bf16Matmul(x.data(), m, c, y.data());
                       return static_cast<double>(bf16_one.bytes()) * bf16.size();
                     }});
  }
  for (auto* v : {&pc, &b32}) {
    for (int64_t m = 1; m <= 4; ++m) {
      cases.push_back({v == &pc ? "int8 per-channel" : "int8 block-32", [&, v, m] {
                         for (const auto& c : *v) Int8Matmul(x.data(), m, c, y.data());
                         return static_cast<double>((*v)[0].bytes()) * v->size();
                       }});
    }
  }
  const std::vector<CaseResult> r = Interleaved(cases, 2);
  std::printf("decode N=%ld K=%ld threads=%d (cold, >= 512 MiB of copies), median of %d rounds\n",
              s.n, s.k, threads, kSamples);
  std::printf("  read GB/s: 1 stream/thread %.1f, 8 streams/thread %.1f\n", r[0].rate * 1e-9,
              r[1].rate * 1e-9);
  std::printf("  %-18s %s\n", "kernel",
              "weight GB/s (% of read) for M=1 2 3 4 | calls/s vs bf16, M=1");
  // calls/s ratio at M=1 = (GB/s ratio) x (bytes ratio), both from the medians.
  const double bf16_calls = r[6].rate / bf16_one.bytes();
  for (int kernel = 0; kernel < 4; ++kernel) {
    const CaseResult* row = &r[2 + 4 * kernel];
    std::printf("  %-18s", cases[2 + 4 * kernel].name.c_str());
    for (int m = 0; m < 4; ++m)
      std::printf(" %5.1f (%3.0f%%)", row[m].rate * 1e-9, 100 * row[m].ratio);
    const int64_t bytes = kernel == 0   ? f32_bytes
                          : kernel == 1 ? bf16_one.bytes()
                          : kernel == 2 ? pc_one.bytes()
                                        : b32_one.bytes();
    std::printf(" | %.2fx\n", row[0].rate / bytes / bf16_calls);
  }
}

// Decode with one copy of the weights (cache-resident): the kernels' compute headroom over DRAM.
void HotDecode(const Shape& s, int threads) {
  omp_set_num_threads(threads);  // oneDNN
  SetKernelThreads(threads);     // kvserve's kernels
  const std::vector<float> w = RandomNormal(s.n * s.k, 1);
  AlignedFloats x(4 * s.k), y(4 * s.n);
  for (int64_t i = 0; i < 4 * s.k; ++i) x[i] = std::sin(0.1f * i);
  const auto bf16 = *PackBf16(w.data(), s.n, s.k, "w");
  const auto pc = *QuantizeInt8(w.data(), s.n, s.k, Int8Grouping::kPerChannel, "w");
  const auto b32 = *QuantizeInt8(w.data(), s.n, s.k, Int8Grouping::kBlock32, "w");
  std::printf("decode hot (cache-resident) N=%ld K=%ld threads=%d, weight GB/s M=1 2 3 4:\n", s.n,
              s.k, threads);
  auto row = [&](const char* name, int64_t bytes, const std::function<void(int64_t)>& f) {
    std::printf("  %-24s", name);
    for (int64_t m = 1; m <= 4; ++m) {
      std::printf(" %6.1f", MedianRate([&](int) { f(m); }, 200, static_cast<double>(bytes)) * 1e-9);
    }
    std::printf("\n");
  };
  row("bf16", bf16.bytes(), [&](int64_t m) { Bf16Matmul(x.data(), m, bf16, y.data()); });
  row("int8 per-channel", pc.bytes(), [&](int64_t m) { Int8Matmul(x.data(), m, pc, y.data()); });
  row("int8 block-32", b32.bytes(), [&](int64_t m) { Int8Matmul(x.data(), m, b32, y.data()); });
}

// A layer's projections that read the same rows (SmolLM-135M: q/k/v 576 -> 576/192/192, gate/up
// 576 -> 1536/1536), cold (the layer rotating over >= 512 MiB of copies, as a decode step's 30
// layers do): one call per weight against one shared call, weight GB/s and the shared call's
// per-round speed-up, interleaved with a STREAM-like read.
void Shared(int threads) {
  omp_set_num_threads(threads);  // oneDNN
  SetKernelThreads(threads);     // kvserve's kernels
  constexpr int64_t k = 576;
  const std::vector<std::vector<int64_t>> groups = {{576, 192, 192}, {1536, 1536}};
  AlignedFloats x(16 * k), y(16 * 1536 * 3);
  for (int64_t i = 0; i < 16 * k; ++i) x[i] = std::sin(0.1f * i);
  std::printf("shared calls, threads=%d (cold, >= 512 MiB of copies), median of %d rounds\n",
              threads, kSamples);
  std::printf("  %-14s %-5s %4s %s\n", "weights", "dtype", "M",
              "weight GB/s: separate | shared | shared speed-up (median per round)");
  for (const auto& ns : groups) {
    for (WeightFormat format : {WeightFormat::kBf16, WeightFormat::kInt8Block32}) {
      std::vector<MatmulWeight> layer;
      int64_t bytes = 0;
      for (size_t i = 0; i < ns.size(); ++i) {
        layer.push_back(*PrepareWeight(RandomNormal(ns[i] * k, 1 + i), ns[i], k, format, "w"));
        bytes += WeightBytes(layer.back());
      }
      const int copies = static_cast<int>(std::max<int64_t>(2, kRotateBytes / bytes + 1));
      const std::vector<std::vector<MatmulWeight>> layers(copies, layer);
      for (int64_t m : {1, 16}) {
        std::vector<Case> cases;
        cases.push_back({"separate", [&, m] {
                           for (const auto& l : layers) {
                             float* out = y.data();
                             for (const MatmulWeight& w : l) {
                               MatmulForward(w, x.data(), m, out);
                               out += m * OutFeatures(w);
                             }
                           }
                           return static_cast<double>(bytes) * copies;
                         }});
        cases.push_back({"shared", [&, m] {
                           MatmulOutput outputs[kMaxSharedWeights];
                           for (const auto& l : layers) {
                             float* out = y.data();
                             for (size_t i = 0; i < l.size(); ++i) {
                               outputs[i] = {&l[i], out};
                               out += m * OutFeatures(l[i]);
                             }
                             MatmulForward(x.data(), m, absl::MakeConstSpan(outputs, l.size()));
                           }
                           return static_cast<double>(bytes) * copies;
                         }});
        const std::vector<CaseResult> r = Interleaved(cases, 1);
        std::string name;
        for (int64_t n : ns) name += (name.empty() ? "" : "/") + std::to_string(n);
        std::printf("  %-14s %-5s %4ld %6.1f | %6.1f | %.2fx\n", name.c_str(),
                    WeightFormatName(layer[0]), m, r[0].rate * 1e-9, r[1].rate * 1e-9, r[1].ratio);
      }
    }
  }
  std::printf("  read GB/s, %d thread(s), 8 streams/thread: %.1f\n", threads, ReadGbps(threads, 8));
}

// A SmolLM-135M decoder layer's four decode calls at M = 1, as the engine makes them (q/k/v and
// gate/up shared), cold (the layer rotating over >= 512 MiB of copies), bf16 against int8 block-32
// interleaved: microseconds per call and int8's per-round speed-up, per call and for the layer.
// Issue #16 asks int8 decode for >= 1.7x bf16; this shows which calls hold the layer below it.
void Layer(int threads) {
  SetKernelThreads(threads);
  constexpr int64_t h = 576, kv = 192, f = 1536;
  const int64_t ns[7] = {h, kv, kv, h, f, f, h};  // q, k, v, o, gate, up, down
  const int64_t ks[7] = {h, h, h, h, h, h, f};
  AlignedFloats x(f), y(2 * f);
  for (int64_t i = 0; i < f; ++i) x[i] = std::sin(0.1f * i);
  std::vector<std::vector<std::vector<MatmulWeight>>> layers;  // [format][copy][weight]
  for (WeightFormat format : {WeightFormat::kBf16, WeightFormat::kInt8Block32}) {
    std::vector<MatmulWeight> layer;
    int64_t bytes = 0;
    for (int i = 0; i < 7; ++i) {
      layer.push_back(
          *PrepareWeight(RandomNormal(ns[i] * ks[i], 1 + i), ns[i], ks[i], format, "w"));
      bytes += WeightBytes(layer.back());
    }
    const int copies = static_cast<int>(std::max<int64_t>(2, kRotateBytes / bytes + 1));
    layers.emplace_back(copies, layer);
  }
  // call: 0 q/k/v, 1 o, 2 gate/up, 3 down, 4 all four (the layer).
  const auto run = [&](int format, int call) {
    const auto& copies = layers[format];
    for (const auto& w : copies) {
      if (call == 0 || call == 4) {
        const MatmulOutput qkv[3] = {
            {&w[0], y.data()}, {&w[1], y.data() + h}, {&w[2], y.data() + h + kv}};
        MatmulForward(x.data(), 1, qkv);
      }
      if (call == 1 || call == 4) MatmulForward(w[3], x.data(), 1, y.data());
      if (call == 2 || call == 4) {
        const MatmulOutput gate_up[2] = {{&w[4], y.data()}, {&w[5], y.data() + f}};
        MatmulForward(x.data(), 1, gate_up);
      }
      if (call == 3 || call == 4) MatmulForward(w[6], x.data(), 1, y.data());
    }
    return static_cast<double>(copies.size());  // calls (or layers) per sample
  };
  std::printf(
      "SmolLM-135M layer at M=1, threads=%d (cold, >= 512 MiB of copies), median of %d "
      "rounds\n  %-8s %9s %9s  %s\n",
      threads, kSamples, "call", "bf16 us", "int8 us", "int8 speed-up (median per round)");
  const char* names[5] = {"q/k/v", "o", "gate/up", "down", "layer"};
  for (int call = 0; call < 5; ++call) {
    const std::vector<CaseResult> r = Interleaved({{"bf16", [&, call] { return run(0, call); }},
                                                   {"int8", [&, call] { return run(1, call); }}},
                                                  1);
    std::printf("  %-8s %9.2f %9.2f  %.2fx\n", names[call], 1e6 / r[0].rate, 1e6 / r[1].rate,
                r[1].ratio);
  }
  std::printf("  read GB/s, %d thread(s), 8 streams/thread: %.1f\n", threads, ReadGbps(threads, 8));
}

// oneDNN matmul y{m,n} f32 = x{m,k} · W, W given as [n][k] and reordered once to 'any'.
struct OneDnn {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  dnnl::matmul prim;
  dnnl::memory src, wts, dst;
  OneDnn(const std::vector<float>& w, const std::vector<float>& x, int64_t m, int64_t n, int64_t k,
         bool bf16) {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const dt type = bf16 ? dt::bf16 : dt::f32;
    dnnl::memory::desc src_md({m, k}, type, tag::ab), w_any({k, n}, type, tag::any),
        dst_md({m, n}, dt::f32, tag::ab);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, w_any, dst_md), eng);
    prim = dnnl::matmul(pd);
    // f32 user memories, reordered (and converted) into the primitive's formats.
    dnnl::memory w_user({{k, n}, dt::f32, tag::ba}, eng, const_cast<float*>(w.data()));
    dnnl::memory x_user({{m, k}, dt::f32, tag::ab}, eng, const_cast<float*>(x.data()));
    wts = dnnl::memory(pd.weights_desc(), eng);
    src = dnnl::memory(pd.src_desc(), eng);
    dst = dnnl::memory(pd.dst_desc(), eng);
    dnnl::reorder(w_user, wts).execute(strm, w_user, wts);
    dnnl::reorder(x_user, src).execute(strm, x_user, src);
    strm.wait();
  }
  void Run() {
    prim.execute(strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wts}, {DNNL_ARG_DST, dst}});
    strm.wait();
  }
};

void Prefill(const Shape& s, int64_t m, int threads) {
  omp_set_num_threads(threads);  // oneDNN
  SetKernelThreads(threads);     // kvserve's kernels
  const std::vector<float> w = RandomNormal(s.n * s.k, 2), xv = RandomNormal(m * s.k, 3);
  AlignedFloats wa(w.begin(), w.end()), x(xv.begin(), xv.end()), y(m * s.n);
  const double flop = 2.0 * m * s.n * s.k;
  const int calls = std::max<int>(1, static_cast<int>(2e9 / flop));
  const auto bf16 = *PackBf16(w.data(), s.n, s.k, "w");
  const auto int8 = *QuantizeInt8(w.data(), s.n, s.k, Int8Grouping::kPerChannel, "w");
  const auto int8b = *QuantizeInt8(w.data(), s.n, s.k, Int8Grouping::kBlock32, "w");
  OneDnn dnn_bf16(w, xv, m, s.n, s.k, true), dnn_f32(w, xv, m, s.n, s.k, false);
  auto call = [&](std::function<void()> f) {
    return [=] {
      for (int c = 0; c < calls; ++c) f();
      return flop * calls;
    };
  };
  const std::vector<Case> cases = {
      {"oneDNN bf16 any", call([&] { dnn_bf16.Run(); })},
      {"oneDNN f32 any", call([&] { dnn_f32.Run(); })},
      {"f32 RowInvariantMatmul",
       call([&] { RowInvariantMatmul(x.data(), m, wa.data(), s.n, s.k, y.data()); })},
      {"Bf16Matmul", call([&] { Bf16Matmul(x.data(), m, bf16, y.data()); })},
      {"Int8Matmul per-channel", call([&] { Int8Matmul(x.data(), m, int8, y.data()); })},
      {"Int8Matmul block-32", call([&] { Int8Matmul(x.data(), m, int8b, y.data()); })},
  };
  const std::vector<CaseResult> r = Interleaved(cases, 1);
  std::printf(
      "prefill M=%ld N=%ld K=%ld threads=%d (OpenMP max %d), GFLOP/s (ratio to oneDNN bf16 in "
      "the same round), median of %d rounds\n",
      m, s.n, s.k, threads, omp_get_max_threads(), kSamples);
  for (size_t i = 0; i < cases.size(); ++i) {
    std::printf("  %-24s %6.1f (%3.0f%%)\n", cases[i].name.c_str(), r[i].rate * 1e-9,
                100 * r[i].ratio);
  }
}

// Accuracy against f64 of the f32 operands: max |Δ|, and max |Δ| and RMS Δ relative to the
// largest |y| and RMS y. Activations: N(0, 1) with 1% of the channels scaled by 20 (the outlier
// features of LLM hidden states). Weights: N(0, 0.02), or "realistic": Student-t with 3 degrees
// of freedom (heavy tails) times a per-row log-normal scale, like trained projection matrices.
void Accuracy(bool realistic) {
  const int64_t n = 1024, k = 2048, m = 8;
  std::mt19937 rng(realistic ? 5 : 4);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::student_t_distribution<float> student(3.0f);
  std::vector<float> w(n * k), x(m * k);
  for (int64_t j = 0; j < n; ++j) {
    const float row_scale = realistic ? 0.02f * std::exp(0.5f * normal(rng)) : 0.02f;
    for (int64_t i = 0; i < k; ++i)
      w[j * k + i] = row_scale * (realistic ? student(rng) : normal(rng));
  }
  for (int64_t i = 0; i < m * k; ++i) x[i] = normal(rng) * ((i % k) % 100 == 7 ? 20.0f : 1.0f);
  std::vector<double> exact(m * n);
  double ymax = 0, yrms = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t q = 0; q < k; ++q) sum += static_cast<double>(x[i * k + q]) * w[j * k + q];
      exact[i * n + j] = sum;
      ymax = std::max(ymax, std::fabs(sum));
      yrms += sum * sum;
    }
  }
  yrms = std::sqrt(yrms / (m * n));
  std::vector<float> y(m * n);
  auto report = [&](const char* what) {
    double dmax = 0, drms = 0;
    for (int64_t e = 0; e < m * n; ++e) {
      const double d = std::fabs(y[e] - exact[e]);
      dmax = std::max(dmax, d);
      drms += d * d;
    }
    drms = std::sqrt(drms / (m * n));
    std::printf("  %-22s max|dy| %.3e  max|dy|/max|y| %.2e  rms(dy)/rms(y) %.2e\n", what, dmax,
                dmax / ymax, drms / yrms);
  };
  std::printf("accuracy vs f64, %s weights, M=%ld N=%ld K=%ld (max|y| %.3f, rms y %.3f)\n",
              realistic ? "realistic (t3 x row scale)" : "normal", m, n, k, ymax, yrms);
  const auto bf16 = *PackBf16(w.data(), n, k, "w");
  Bf16Matmul(x.data(), m, bf16, y.data());
  report("bf16");
  for (Int8Grouping g : {Int8Grouping::kPerChannel, Int8Grouping::kBlock32}) {
    const auto q = *QuantizeInt8(w.data(), n, k, g, "w");
    Int8Matmul(x.data(), m, q, y.data());
    report(g == Int8Grouping::kPerChannel ? "int8 per-channel" : "int8 block-32");
    // Weight error alone: the dequantized weight times the f32 activations.
    std::vector<float> wd(n * k);
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t i = 0; i < k; ++i) {
        wd[j * k + i] = q.scale(j, i / 4 / q.group_quads) * q.quantized(j, i);
      }
    }
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0;
        for (int64_t t = 0; t < k; ++t) sum += static_cast<double>(x[i * k + t]) * wd[j * k + t];
        y[i * n + j] = static_cast<float>(sum);
      }
    }
    report(g == Int8Grouping::kPerChannel ? "  (weights only)" : "  (weights only)");
  }
}

}  // namespace
}  // namespace kvserve::engine

int main(int argc, char** argv) {
  using namespace kvserve::engine;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) kSamples = 3;
    if (std::strncmp(argv[i], "--only=", 7) == 0) only = argv[i] + 7;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  auto want = [&](const char* part) { return only.empty() || only == part; };
  auto read = [&] {
    for (int threads : {1, 2}) {
      std::printf("read GB/s, %d thread(s): 1 stream/thread %.1f | 8 streams/thread %.1f\n",
                  threads, ReadGbps(threads, 1), ReadGbps(threads, 8));
    }
  };
  if (want("read")) read();
  if (want("decode")) {
    for (int threads : {1, 2}) {
      Decode({4096, 4096}, threads);
      Decode({1536, 576}, threads);
      Decode({576, 1536}, threads);
    }
  }
  if (want("decode") || want("hot")) {
    for (int threads : {1, 2}) HotDecode({1536, 576}, threads);
  }
  if (want("prefill")) {
    for (int threads : {1, 2}) Prefill({2048, 2048}, 512, threads);
  }
  if (want("shared")) {
    for (int threads : {1, 2}) Shared(threads);
  }
  if (want("layer")) {
    for (int threads : {1, 2}) Layer(threads);
  }
  if (want("accuracy")) {
    Accuracy(false);
    Accuracy(true);
  }
  return 0;
}
