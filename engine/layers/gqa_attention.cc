// Design note. The kernel body (gqa_attention_kernel.inc) is one source compiled twice, over a
// portable 16-lane vector and over AVX-512 registers, so the order of gqa_attention.h is written
// once and the two paths cannot drift apart. A call is cut into items, one per block of
// kAttentionQueryRows query rows and kv head, which the kernel threads share (ParallelFor, task t
// taking items t, t + T, …, kv head by kv head, with its own item scratch) once the call is big
// enough to pay for the fork-join. Loop nest per item:
//
//   for each key tile [16t, 16t + 16) any of the block's rows sees:   (block table walked per tile)
//     scores of every query (rows × group):  8+ queries: the tile's keys transposed once, then
//                                            4 queries at a time, 16 scores per vector;
//                                            fewer (decode): key by key, as RowInvariantMatmul
//     running max, rescale, weights of every query: 16 queries' rescale factors in one Exp2
//     acc += p·v, up to 8 queries per loaded value vector
//
// so a tile's K/V rows of the kv head (16 × head_dim values) come from memory once and stay in L1
// while every query of the block that sees them passes over them, each phase's chains are
// independent across queries (so they overlap instead of waiting on each other's latency), and
// decode (one row) reads each K/V row exactly once.
#include "engine/layers/gqa_attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "engine/kernels/bf16_matmul.h"
#include "engine/kernels/exp2_poly.h"
#include "engine/kernels/kernel_isa.h"
#include "engine/kernels/thread_pool.h"

// GCC 12 reports the deliberately undefined operand inside its own AVX-512 intrinsics as
// uninitialized once they are inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace kvserve::engine {
namespace {

constexpr int kLanes = 16;  // also the key tile: tiles are aligned to absolute positions
// Calls with fewer multiply-adds than this run on the calling thread alone: a fork-join costs
// a few µs, more than a decode step's attention over a short context (~2^18 multiply-adds take
// ~30 µs on one core).
constexpr double kParallelAttentionWork = 1 << 18;
// The same for a call made alone in its step: the other threads are idle anyway, and in the engine
// a decode call reads its K/V from memory, several times its cache-hot time (a SmolLM-135M layer
// at a 64-128-token context: ~15 µs of the engine thread against 5.3 µs hot). Sharing those
// measured 2.8 % off int8 one-stream decode on that shape (docs/benchmarks.md).
constexpr double kAloneParallelAttentionWork = 1 << 15;
constexpr float kExp2Min = -125.0f;  // 2^-125 · 2^-0.5 is still a normal float

// A query's state in scratch: [q' (d) | acc (dv) | softmax-sum lanes (16) | running max | pad].
inline int64_t QueryStateFloats(const AttentionShape& shape) {
  return shape.head_dim + shape.value_width() + 2 * kLanes;
}

// log2(e) · scale, so that scores come out in base 2.
inline float QueryScale(const AttentionShape& shape) {
  const double scale =
      shape.scale > 0 ? shape.scale : 1.0 / std::sqrt(static_cast<double>(shape.head_dim));
  return static_cast<float>(1.4426950408889634 * scale);
}

// First position a query at `pos` sees.
inline int64_t FirstVisible(int64_t pos, int64_t window) {
  return window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
}

inline float Widen(float v) { return v; }
// Bf16ToFloat (bf16_matmul.h), here where the compiler can inline it into the portable loops.
inline float Widen(uint16_t v) {
  const uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

namespace portable {

struct Vec {
  float f[kLanes];
};
inline Vec Zero() { return Vec{}; }
inline Vec Set1(float a) {
  Vec v;
  for (int l = 0; l < kLanes; ++l) v.f[l] = a;
  return v;
}
inline Vec Load(const float* p) {
  Vec v;
  std::memcpy(v.f, p, sizeof(v.f));
  return v;
}
inline Vec Load(const uint16_t* p) {
  Vec v;
  for (int l = 0; l < kLanes; ++l) v.f[l] = Widen(p[l]);
  return v;
}
inline void Store(float* p, Vec v) { std::memcpy(p, v.f, sizeof(v.f)); }
template <typename T>
inline Vec LoadToRegister(const T* p) {
  return Load(p);
}
inline Vec Add(Vec a, Vec b) {
  for (int l = 0; l < kLanes; ++l) a.f[l] = a.f[l] + b.f[l];
  return a;
}
inline Vec Sub(Vec a, Vec b) {
  for (int l = 0; l < kLanes; ++l) a.f[l] = a.f[l] - b.f[l];
  return a;
}
inline Vec Mul(Vec a, Vec b) {
  for (int l = 0; l < kLanes; ++l) a.f[l] = a.f[l] * b.f[l];
  return a;
}
inline Vec Max(Vec a, Vec b) {
  for (int l = 0; l < kLanes; ++l) a.f[l] = a.f[l] > b.f[l] ? a.f[l] : b.f[l];
  return a;
}
inline Vec Fma(Vec a, Vec b, Vec c) {
  for (int l = 0; l < kLanes; ++l) c.f[l] = std::fma(a.f[l], b.f[l], c.f[l]);
  return c;
}
inline Vec Pow2(Vec r) {
  for (int l = 0; l < kLanes; ++l) {
    const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(r.f[l]) + 127) << 23;
    std::memcpy(&r.f[l], &bits, sizeof(bits));
  }
  return r;
}
inline float SumLanes(Vec v) {
  for (int l = 0; l < 8; ++l) v.f[l] = v.f[l] + v.f[l + 8];
  for (int l = 0; l < 4; ++l) v.f[l] = v.f[l] + v.f[l + 4];
  for (int l = 0; l < 2; ++l) v.f[l] = v.f[l] + v.f[l + 2];
  return v.f[0] + v.f[1];
}
inline Vec SumLanes16(const Vec* a) {
  Vec v;
  for (int j = 0; j < kLanes; ++j) v.f[j] = SumLanes(a[j]);
  return v;
}
inline Vec Blend(Vec a, Vec b, uint32_t mask) {
  for (int l = 0; l < kLanes; ++l) a.f[l] = (mask >> l & 1) != 0 ? b.f[l] : a.f[l];
  return a;
}
inline void Transpose16(Vec* r) {
  for (int i = 0; i < kLanes; ++i) {
    for (int j = i + 1; j < kLanes; ++j) std::swap(r[i].f[j], r[j].f[i]);
  }
}
inline float MaxLanes(Vec v) {
  float m = v.f[0];
  for (int l = 1; l < kLanes; ++l) m = v.f[l] > m ? v.f[l] : m;
  return m;
}

#include "engine/layers/gqa_attention_kernel.inc"

}  // namespace portable

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl")
#endif

namespace avx512 {

struct Vec {
  __m512 v;
};
inline Vec Zero() { return {_mm512_setzero_ps()}; }
inline Vec Set1(float a) { return {_mm512_set1_ps(a)}; }
inline Vec Load(const float* p) { return {_mm512_loadu_ps(p)}; }
inline Vec Load(const uint16_t* p) {
  const __m512i wide =
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(wide, 16))};
}
inline void Store(float* p, Vec v) { _mm512_storeu_ps(p, v.v); }
// Load, kept in a register: without the empty asm the compiler folds a load that several fmas
// share into each of them, so one vector is read from L1 once per fma instead of once.
inline Vec LoadToRegister(const float* p) {
  __m512 v = _mm512_loadu_ps(p);
  asm("" : "+v"(v));
  return {v};
}
inline Vec LoadToRegister(const uint16_t* p) { return Load(p); }
inline Vec Add(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
inline Vec Sub(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline Vec Mul(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline Vec Max(Vec a, Vec b) { return {_mm512_max_ps(a.v, b.v)}; }  // a > b ? a : b
inline Vec Fma(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline Vec Pow2(Vec r) {
  const __m512i e = _mm512_add_epi32(_mm512_cvttps_epi32(r.v), _mm512_set1_epi32(127));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(e, 23))};
}
inline float SumLanes(Vec v) {
  const __m256 eight = _mm256_add_ps(_mm512_castps512_ps256(v.v),
                                     _mm512_castps512_ps256(_mm512_shuffle_f32x4(v.v, v.v, 0xEE)));
  const __m128 four = _mm_add_ps(_mm256_castps256_ps128(eight), _mm256_extractf128_ps(eight, 1));
  const __m128 two = _mm_add_ps(four, _mm_movehl_ps(four, four));
  return _mm_cvtss_f32(_mm_add_ss(two, _mm_shuffle_ps(two, two, 1)));
}
// SumLanes of 16 vectors at once, stage by stage of the same tree: stage 1 adds lane l and l + 8
// of two vectors into one, stage 2 chunks c and c + 1 (lanes l and l + 4), stage 3 lanes l and
// l + 2 inside each chunk, stage 4 the last pair; the result's lanes then hold key 4i + m at lane
// 4m + i, put in key order by one permute.
inline Vec SumLanes16(const Vec* a) {
  __m512 v[8], w[4], x[2];
  for (int i = 0; i < 8; ++i) {
    v[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i].v, a[2 * i + 1].v, 0x44),
                         _mm512_shuffle_f32x4(a[2 * i].v, a[2 * i + 1].v, 0xEE));
  }
  for (int i = 0; i < 4; ++i) {
    w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xDD));
  }
  for (int i = 0; i < 2; ++i) {
    x[i] = _mm512_add_ps(_mm512_shuffle_ps(w[2 * i], w[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(w[2 * i], w[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  const __m512 y = _mm512_add_ps(_mm512_shuffle_ps(x[0], x[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(x[0], x[1], _MM_SHUFFLE(3, 1, 3, 1)));
  // Key j = 4i + m sits at lane 4m + i.
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return {_mm512_permutexvar_ps(order, y)};
}
inline Vec Blend(Vec a, Vec b, uint32_t mask) {
  return {_mm512_mask_blend_ps(static_cast<__mmask16>(mask), a.v, b.v)};
}
// r[i] lane j becomes r[j] lane i: pairs of rows interleaved by floats, then by pairs of floats
// (after which 128-bit chunk c of u[4g + m] holds rows 4g..4g+3 of column 4c + m), then the
// chunks gathered across the four row groups.
inline void Transpose16(Vec* r) {
  __m512 t[kLanes], u[kLanes];
  for (int i = 0; i < kLanes; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i].v, r[i + 1].v);
    t[i + 1] = _mm512_unpackhi_ps(r[i].v, r[i + 1].v);
  }
  for (int g = 0; g < kLanes; g += 4) {
    const __m512d a = _mm512_castps_pd(t[g]), b = _mm512_castps_pd(t[g + 1]);
    const __m512d c = _mm512_castps_pd(t[g + 2]), e = _mm512_castps_pd(t[g + 3]);
    u[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, e));
    u[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, e));
  }
  for (int m = 0; m < 4; ++m) {
    const __m512 v1 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x44);
    const __m512 v2 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xEE);
    const __m512 w1 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x44);
    const __m512 w2 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xEE);
    r[m].v = _mm512_shuffle_f32x4(v1, w1, 0x88);
    r[4 + m].v = _mm512_shuffle_f32x4(v1, w1, 0xDD);
    r[8 + m].v = _mm512_shuffle_f32x4(v2, w2, 0x88);
    r[12 + m].v = _mm512_shuffle_f32x4(v2, w2, 0xDD);
  }
}
inline float MaxLanes(Vec v) { return _mm512_reduce_max_ps(v.v); }

#include "engine/layers/gqa_attention_kernel.inc"

}  // namespace avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

}  // namespace

int64_t GqaAttentionItemScratchFloats(const AttentionShape& shape) {
  // [query states | one tile's scores / weights per query (16) | the transposed key tile (d × 16)]
  const int64_t queries = kAttentionQueryRows * (shape.num_heads / shape.num_kv_heads);
  return queries * (QueryStateFloats(shape) + kLanes) + shape.head_dim * kLanes;
}

int64_t GqaAttentionScratchFloats(const AttentionShape& shape) {
  return KernelThreads() * GqaAttentionItemScratchFloats(shape);
}

bool GqaAttentionIsShared(const AttentionShape& shape, int64_t start_pos, int64_t n, bool alone) {
  // Multiply-adds of the call, roughly: every row's heads over its context, keys and values.
  const double work = static_cast<double>(n) * static_cast<double>(start_pos + n) *
                      static_cast<double>(shape.num_heads) *
                      static_cast<double>(shape.head_dim + shape.value_width());
  return work >= (alone ? kAloneParallelAttentionWork : kParallelAttentionWork) &&
         KernelThreads() > 1;
}

void GqaAttention(const float* q, const KvView& kv, int64_t start_pos, int64_t n,
                  const AttentionShape& shape, float* scratch, float* out, bool alone) {
  const bool bf16 = kv.dtype == cache::KvDtype::kBf16;
  using Item = void (*)(const float*, const KvView&, int64_t, int64_t, const AttentionShape&,
                        int64_t, int64_t, float*, float*);
  Item item;
  if (UseAvx512AttentionKernels()) {
    item = bf16 ? &avx512::AttendItem<uint16_t> : &avx512::AttendItem<float>;
  } else {
    item = bf16 ? &portable::AttendItem<uint16_t> : &portable::AttendItem<float>;
  }
  const int64_t blocks = (n + kAttentionQueryRows - 1) / kAttentionQueryRows;
  const int64_t items = blocks * shape.num_kv_heads;
  const int64_t per_item = GqaAttentionItemScratchFloats(shape);
  const int64_t tasks = GqaAttentionIsShared(shape, start_pos, n, alone)
                            ? std::min<int64_t>(KernelThreads(), items)
                            : 1;
  // Items go kv head by kv head (item i: block i % blocks of kv head i / blocks), so the tasks
  // work through one kv head's K/V at a time and it stays in cache (a 512-token Llama-1B layer
  // holds 2 MB of f32 K/V, one kv head 256 KB). Task t takes items t, t + tasks, …: interleaved,
  // so the causal rows' growing cost is shared evenly; each task owns one item's scratch.
  auto run = [&](int64_t t) {
    for (int64_t i = t; i < items; i += tasks) {
      item(q, kv, start_pos, n, shape, (i % blocks) * kAttentionQueryRows, i / blocks,
           scratch + t * per_item, out);
    }
  };
  if (tasks == 1) {
    run(0);
  } else {
    ParallelFor(tasks, run);
  }
}

}  // namespace kvserve::engine
