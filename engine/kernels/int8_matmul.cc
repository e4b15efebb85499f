// Design note. The integer sums of a group are exact, so only the per-group float steps (4) fix
// the order. The micro-kernels hold R rows × P panels of int32 group sums plus
// as many f32 accumulators, and run each element's groups in increasing order over the whole of
// K (no K blocking: an int32 group sum cannot be parked in y).
//   decode (m <= 4): contiguous panel ranges per thread, P = 3–8 panel streams with prefetch.
//   prefill (m > 4): tasks of kRowBlock rows × kPanelBlock panels, 4-row × 3-panel tiles; the
//     3-panel slice of W (3·K·16 bytes) stays in L2 while the row tiles pass over it.
#include "engine/kernels/int8_matmul.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/logging.h"
#include "engine/kernels/kernel_isa.h"
#include "engine/kernels/panel_tasks.h"
#include "engine/kernels/thread_pool.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)  // a GCC-only warning; clang rejects unknown groups under -Werror
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

namespace kvserve::engine {
namespace {

constexpr int64_t kLine = 4 * kInt8PanelWidth;  // bytes per quad line of a panel

struct Scratch {
  std::vector<int8_t, CacheLineAllocator<int8_t>> q;  // {m, 4·num_quads}
  std::vector<float> sx;                              // {m, num_groups}
  std::vector<int32_t> bias;                          // {m, num_groups}: −128·Σ_g q
};
Scratch& ThreadScratch() {
  thread_local Scratch scratch;
  return scratch;
}

// Step 2 of the order for one group of one row: x[0..len) → q[0..len), *sx; returns Σ q (exact in
// int32, the offset correction's input).
int32_t QuantizeGroup(const float* x, int64_t len, int8_t* q, float* sx) {
  float amax = 0.0f;
  for (int64_t i = 0; i < len; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (amax == 0.0f) {
    *sx = 0.0f;
    std::memset(q, 0, len);
    return 0;
  }
  *sx = amax / 127.0f;
  const float inv = 127.0f / amax;
  int32_t sum = 0;
  for (int64_t i = 0; i < len; ++i) {
    q[i] = static_cast<int8_t>(std::clamp(std::nearbyint(x[i] * inv), -127.0f, 127.0f));
    sum += q[i];
  }
  return sum;
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) int32_t QuantizeGroupAvx512(const float* x,
                                                                                 int64_t len,
                                                                                 int8_t* q,
                                                                                 float* sx) {
  __m512 vmax = _mm512_setzero_ps();
  for (int64_t i = 0; i < len; i += 16) {
    const __mmask16 mask =
        len - i >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (len - i)) - 1);
    vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_maskz_loadu_ps(mask, x + i)));
  }
  const float amax = _mm512_reduce_max_ps(vmax);  // max is exact in any order
  if (amax == 0.0f) {
    *sx = 0.0f;
    std::memset(q, 0, len);
    return 0;
  }
  *sx = amax / 127.0f;
  const __m512 inv = _mm512_set1_ps(127.0f / amax);
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  __m512i sum = _mm512_setzero_si512();
  for (int64_t i = 0; i < len; i += 16) {
    const __mmask16 mask =
        len - i >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (len - i)) - 1);
    // cvtps2dq rounds by MXCSR: to nearest even by default, as std::nearbyint.
    __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + i), inv));
    v = _mm512_maskz_mov_epi32(mask, _mm512_min_epi32(_mm512_max_epi32(v, lo), hi));
    sum = _mm512_add_epi32(sum, v);
    _mm_mask_storeu_epi8(q + i, mask, _mm512_cvtepi32_epi8(v));
  }
  return _mm512_reduce_add_epi32(sum);  // integer: exact in any order
}

// Step 2 for row x[0..k): q[0..4·num_quads) zero-padded, sx[0..num_groups) and the offset
// correction bias[g] = −128·Σ_{k∈g} q[k].
void QuantizeRow(const float* x, const PackedInt8Weight& w, bool avx512, int8_t* q, float* sx,
                 int32_t* bias) {
  const int64_t group_k = 4 * w.group_quads;
  std::memset(q + w.k, 0, 4 * w.num_quads - w.k);
  for (int64_t g = 0; g < w.num_groups; ++g) {
    const int64_t k0 = g * group_k, len = std::min(w.k, k0 + group_k) - k0;
    const int32_t sum = avx512 ? QuantizeGroupAvx512(x + k0, len, q + k0, sx + g)
                               : QuantizeGroup(x + k0, len, q + k0, sx + g);
    bias[g] = -128 * sum;
  }
}

// ---------------------------------------------------------------------------------------------
// Portable path: steps 3–5 literally. Rows [r0, r1) × panels [p0, p1).
void PortableBlock(const int8_t* q, int64_t ldq, const float* sx, const PackedInt8Weight& w,
                   float* y, int64_t r0, int64_t r1, int64_t p0, int64_t p1) {
  for (int64_t i = r0; i < r1; ++i) {
    for (int64_t p = p0; p < p1; ++p) {
      const uint8_t* panel = w.data.data() + p * w.panel_bytes();
      for (int64_t c = 0; c < kInt8PanelWidth && p * kInt8PanelWidth + c < w.n; ++c) {
        float acc = 0.0f;
        for (int64_t g = 0; g < w.num_groups; ++g) {
          int32_t s = 0;
          const uint8_t* group = panel + g * w.group_bytes();
          for (int64_t tt = 0; tt < w.group_quads; ++tt) {
            const int64_t t = g * w.group_quads + tt;
            for (int b = 0; b < 4; ++b) {
              s += static_cast<int32_t>(q[i * ldq + 4 * t + b]) *
                   (static_cast<int32_t>(group[tt * kLine + 4 * c + b]) - 128);
            }
          }
          const float scale = sx[i * w.num_groups + g] * w.scale(p * kInt8PanelWidth + c, g);
          acc = std::fma(static_cast<float>(s), scale, acc);
        }
        y[i * w.n + p * kInt8PanelWidth + c] = acc;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// AVX-512 VNNI path.

// Functions compiled for the AVX-512 extensions whatever -march is; called only after
// kernel_isa.h found them on the CPU.
#define KV_TARGET_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

struct MicroArgs {
  const int8_t* q;  // first row of the tile; rows ldq bytes apart
  int64_t ldq;
  const float* sx;      // s_x of the tile's first row, group 0; rows num_groups apart
  const int32_t* bias;  // −128·Σ_g q, laid out as sx
  const uint8_t* w;     // first panel of the tile; panels panel_stride bytes apart
  int64_t panel_stride;
  int64_t group_quads, num_groups, group_bytes;
  float* y;
  int64_t ldy;
  int64_t cols;  // valid columns from the tile's first one
};

constexpr int64_t kPrefetchQuads = 24;  // 1.5 KiB ahead in each panel stream

KV_TARGET_AVX512_VNNI inline __mmask16 ColumnMask(int64_t cols, int p) {
  const int64_t c = cols - 16 * p;
  return c >= 16 ? __mmask16(0xffff) : c <= 0 ? __mmask16(0) : __mmask16((1u << c) - 1);
}

// sum += Σ of 4 u8·s8 products per 32-bit lane. Written as asm: with the intrinsic GCC 12
// copies every accumulator to a fresh register and back around each vpdpbusd in the loop.
KV_TARGET_AVX512_VNNI inline void Dpbusd(__m512i& sum, __m512i u8, __m512i s8) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(sum) : "v"(u8), "v"(s8));
}

template <int R, int P, bool kPrefetch>
KV_TARGET_AVX512_VNNI void Micro(const MicroArgs& a) {
  __m512 acc[R][P];
  for (int r = 0; r < R; ++r) {
    for (int p = 0; p < P; ++p) acc[r][p] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < a.num_groups; ++g) {
    __m512i sum[R][P];
    for (int r = 0; r < R; ++r) {
      const __m512i bias = _mm512_set1_epi32(a.bias[r * a.num_groups + g]);
      for (int p = 0; p < P; ++p) sum[r][p] = bias;
    }
    const uint8_t* group = a.w + g * a.group_bytes;
    const int8_t* xq = a.q + 4 * g * a.group_quads;
    for (int64_t tt = 0; tt < a.group_quads; ++tt) {
      __m512i wv[P];
      // (vpdpbusd takes only its signed operand from memory: the loads are not duplicated per row.)
      for (int p = 0; p < P; ++p)
        wv[p] = _mm512_load_si512(group + p * a.panel_stride + tt * kLine);
      if constexpr (kPrefetch) {
        for (int p = 0; p < P; ++p) {
          _mm_prefetch(reinterpret_cast<const char*>(group + p * a.panel_stride +
                                                     (tt + kPrefetchQuads) * kLine),
                       _MM_HINT_T0);
        }
      }
      for (int r = 0; r < R; ++r) {
        int32_t quad;
        std::memcpy(&quad, xq + r * a.ldq + 4 * tt, sizeof(quad));
        const __m512i xb = _mm512_set1_epi32(quad);
        for (int p = 0; p < P; ++p) Dpbusd(sum[r][p], wv[p], xb);
      }
    }
    for (int p = 0; p < P; ++p) {
      const __m512 sw = _mm512_load_ps(
          reinterpret_cast<const float*>(group + p * a.panel_stride + a.group_quads * kLine));
      for (int r = 0; r < R; ++r) {
        const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(a.sx[r * a.num_groups + g]), sw);
        acc[r][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r][p]), scale, acc[r][p]);
      }
    }
  }
  for (int p = 0; p < P; ++p) {
    for (int r = 0; r < R; ++r) {
      _mm512_mask_storeu_ps(a.y + r * a.ldy + 16 * p, ColumnMask(a.cols, p), acc[r][p]);
    }
  }
}

#undef KV_TARGET_AVX512_VNNI

constexpr int kMaxRows = 4;
constexpr int kMaxPanels = 8;
using MicroFn = void (*)(const MicroArgs&);

// Index: prefetch · 32 + (rows − 1) · 8 + panels − 1.
template <std::size_t... I>
constexpr std::array<MicroFn, sizeof...(I)> MakeMicroTable(std::index_sequence<I...>) {
  constexpr int kTiles = kMaxRows * kMaxPanels;
  return {&Micro<static_cast<int>(I) % kTiles / kMaxPanels + 1,
                 static_cast<int>(I) % kMaxPanels + 1, (I >= kTiles)>...};
}
constexpr auto kMicro = MakeMicroTable(std::make_index_sequence<2 * kMaxRows * kMaxPanels>());

// Panels per micro-kernel by row count (2·R·P accumulators + P weights within 32 zmm).
constexpr int kPanelsForRows[5] = {0, 8, 5, 4, 3};

// Rows [r0, r1) × panels [p0, p1) in tiles of up to 4 rows.
void Avx512Block(const int8_t* q, int64_t ldq, const float* sx, const int32_t* bias,
                 const PackedInt8Weight& w, float* y, int64_t r0, int64_t r1, int64_t p0,
                 int64_t p1, bool prefetch) {
  const int tile_rows = static_cast<int>(std::min<int64_t>(kMaxRows, r1 - r0));
  const int step = kPanelsForRows[tile_rows];
  for (int64_t p = p0; p < p1; p += step) {
    const int panels = static_cast<int>(std::min<int64_t>(step, p1 - p));
    for (int64_t i = r0; i < r1; i += kMaxRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kMaxRows, r1 - i));
      MicroArgs a{q + i * ldq,
                  ldq,
                  sx + i * w.num_groups,
                  bias + i * w.num_groups,
                  w.data.data() + p * w.panel_bytes(),
                  w.panel_bytes(),
                  w.group_quads,
                  w.num_groups,
                  w.group_bytes(),
                  y + i * w.n + p * kInt8PanelWidth,
                  w.n,
                  w.n - p * kInt8PanelWidth};
      kMicro[(prefetch ? kMaxRows * kMaxPanels : 0) + (rows - 1) * kMaxPanels + (panels - 1)](a);
    }
  }
}

constexpr int64_t kRowBlock = 64;
constexpr int64_t kPanelBlock = 12;
constexpr int64_t kTasksPerThread = 4;  // decode

}  // namespace

absl::StatusOr<PackedInt8Weight> QuantizeInt8(const float* w, int64_t n, int64_t k,
                                              Int8Grouping grouping, std::string_view name) {
  PackedInt8Weight p;
  p.n = n;
  p.k = k;
  p.grouping = grouping;
  p.num_panels = (n + kInt8PanelWidth - 1) / kInt8PanelWidth;
  p.group_quads = grouping == Int8Grouping::kPerChannel ? (k + 3) / 4 : kInt8BlockK / 4;
  p.num_groups = ((k + 3) / 4 + p.group_quads - 1) / p.group_quads;
  p.num_quads = p.num_groups * p.group_quads;
  if (grouping == Int8Grouping::kPerChannel && k > 65536) {
    return absl::InvalidArgumentError(absl::StrCat("weight '", std::string(name), "': K = ", k,
                                                   " > 65536 overflows per-channel int32 sums"));
  }
  p.data.assign(p.num_panels * p.panel_bytes(), 128);
  const int64_t group_k = 4 * p.group_quads;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t panel = j / kInt8PanelWidth, c = j % kInt8PanelWidth;
    uint8_t* out = p.data.data() + panel * p.panel_bytes();
    for (int64_t g = 0; g < p.num_groups; ++g) {
      const int64_t k0 = g * group_k, k1 = std::min(k, k0 + group_k);
      float amax = 0.0f;
      for (int64_t i = k0; i < k1; ++i) {
        if (!std::isfinite(w[j * k + i])) {
          return absl::InvalidArgumentError(absl::StrCat("weight '", std::string(name), "' [", j,
                                                         "][", i, "] = ", w[j * k + i],
                                                         " is not finite"));
        }
        amax = std::max(amax, std::fabs(w[j * k + i]));
      }
      const float scale = amax / 127.0f;
      if (amax > 0.0f && scale < FLT_MIN) {
        return absl::InvalidArgumentError(absl::StrCat(
            "weight '", std::string(name), "' row ", j, " K [", k0, ", ", k1, "): int8 scale ",
            amax, "/127 underflows (below FLT_MIN); the values would be lost"));
      }
      for (int64_t i = k0; i < k1 && amax > 0.0f; ++i) {
        const float q = std::clamp(std::nearbyint(w[j * k + i] / scale), -127.0f, 127.0f);
        out[g * p.group_bytes() + (i / 4 - g * p.group_quads) * kLine + 4 * c + (i % 4)] =
            static_cast<uint8_t>(static_cast<int>(q) + 128);
      }
      std::memcpy(out + g * p.group_bytes() + p.group_quads * kLine + 4 * c, &scale, sizeof(scale));
    }
  }
  return p;
}

void Int8Matmul(const float* x, int64_t m, const PackedInt8Weight& w, float* y) {
  const PackedInt8Weight* ws[] = {&w};
  float* ys[] = {y};
  Int8Matmul(x, m, ws, ys);
}

void Int8Matmul(const float* x, int64_t m, absl::Span<const PackedInt8Weight* const> ws,
                absl::Span<float* const> ys) {
  KV_CHECK(!ws.empty() && ws.size() == ys.size() && ws.size() <= kMaxSharedWeights)
      << ws.size() << " weights, " << ys.size() << " outputs";
  for (size_t i = 1; i < ws.size(); ++i)
    KV_CHECK(ws[i]->k == ws[0]->k && ws[i]->grouping == ws[0]->grouping)
        << "weight " << i << " differs";
  const bool avx512 = UseAvx512Int8Kernels();
  const PackedInt8Weight& w0 = *ws[0];  // K and grouping, common to all
  const int64_t ldq = 4 * w0.num_quads;
  Scratch& scratch = ThreadScratch();
  if (static_cast<int64_t>(scratch.q.size()) < m * ldq) scratch.q.resize(m * ldq);
  if (static_cast<int64_t>(scratch.sx.size()) < m * w0.num_groups) {
    scratch.sx.resize(m * w0.num_groups);
    scratch.bias.resize(m * w0.num_groups);
  }
  int8_t* q = scratch.q.data();         // {m, 4·num_quads}
  float* sx = scratch.sx.data();        // {m, num_groups}
  int32_t* bias = scratch.bias.data();  // {m, num_groups}
  std::array<int64_t, kMaxSharedWeights> panels{};
  int64_t nk = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    panels[i] = ws[i]->num_panels;
    nk += ws[i]->n * w0.k;
  }
  const absl::Span<const int64_t> panel_counts(panels.data(), ws.size());
  const int threads = KernelThreads();
  const bool parallel = threads > 1 && (m * nk >= (int64_t{1} << 20) || nk >= (int64_t{1} << 18));
  const bool decode = m <= kMaxRows;
  const int64_t row_block = decode ? m : kRowBlock;
  const int64_t row_blocks = (m + row_block - 1) / row_block;
  // Decode: contiguous panel ranges, a multiple of the micro-kernel width, about
  // kTasksPerThread per thread handed out dynamically (on a shared machine a thread that loses
  // its core would otherwise hold up the whole call).
  const PanelTasks tasks = decode ? PanelTasks::Decode(panel_counts, m, kPanelsForRows[m],
                                                       (parallel ? threads : 1) * kTasksPerThread)
                                  : PanelTasks::Grid(panel_counts, m, kRowBlock, kPanelBlock);
  const auto quantize_rows = [&](int64_t rb) {
    for (int64_t i = rb * row_block; i < std::min(m, (rb + 1) * row_block); ++i) {
      QuantizeRow(x + i * w0.k, w0, avx512, q + i * ldq, sx + i * w0.num_groups,
                  bias + i * w0.num_groups);
    }
  };
  const auto block = [&](int64_t t) {
    const PanelTask task = tasks[t];
    if (avx512) {
      Avx512Block(q, ldq, sx, bias, *ws[task.weight], ys[task.weight], task.r0, task.r1, task.p0,
                  task.p1, decode);
    } else {
      PortableBlock(q, ldq, sx, *ws[task.weight], ys[task.weight], task.r0, task.r1, task.p0,
                    task.p1);
    }
  };
  // Decode rows are quantized by the caller alone: a worksharing loop would cost the call a
  // second fork-join.
  if (parallel && !decode) {
    ParallelFor(row_blocks, quantize_rows);
  } else {
    for (int64_t rb = 0; rb < row_blocks; ++rb) quantize_rows(rb);
  }
  if (parallel) {
    ParallelFor(tasks.size(), block);
  } else {
    for (int64_t t = 0; t < tasks.size(); ++t) block(t);
  }
}

}  // namespace kvserve::engine
