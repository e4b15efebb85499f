// Design note. The order in the header is one sequential vdpbf16ps chain per output element, so
// the kernels are free to tile and block any way that keeps each chain's steps in increasing t:
//   decode (m <= 4): each thread takes a contiguous range of panels; a micro-kernel holds m rows ×
//     4–8 panels of accumulators over the whole of K and streams 4–8 panels concurrently with a
//     software prefetch ahead of each stream (one core's DRAM bandwidth grows with the number of
//     streams in flight).
//   prefill (m > 4): tasks of kRowBlock rows × kPanelBlock panels; inside a task K runs in blocks
//     of kPairBlock pairs, with the accumulators parked in y between blocks (a stored f32 is the
//     exact chain state, never denormal because of FTZ), so a 4-panel × kPairBlock weight slice
//     stays in L2 while 6-row tiles pass over it.
// The rounded activations live in a per-thread scratch buffer, [m][ldx] 32-bit pairs.
#include "engine/kernels/bf16_matmul.h"

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

// GCC 12 reports the deliberately undefined operand inside its own AVX-512 intrinsics as
// uninitialized once they are inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)  // a GCC-only warning; clang rejects unknown groups under -Werror
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

namespace kvserve::engine {

uint16_t RoundToBf16(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float Bf16ToFloat(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float v;
  std::memcpy(&v, &u, sizeof(v));
  return v;
}

namespace {

constexpr int64_t kLine = 2 * kBf16PanelWidth;  // uint16 per pair line of a panel (64 bytes)

// Rows × K of bf16 pairs; grown once per thread, never shrunk.
std::vector<uint32_t, CacheLineAllocator<uint32_t>>& Scratch() {
  thread_local std::vector<uint32_t, CacheLineAllocator<uint32_t>> scratch;
  return scratch;
}

// Step 1 of the order for one row: x[0..k) → pairs[0..num_pairs), zero-padded. Integer-only, so
// the vectorized copy below computes the same bits.
inline void RoundRow(const float* x, int64_t k, int64_t num_pairs, uint32_t* pairs) {
  uint16_t* out = reinterpret_cast<uint16_t*>(pairs);
  for (int64_t i = 0; i < k; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, sizeof(u));
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    out[i] = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? ((u >> 16) | 0x40u) : rounded);
  }
  for (int64_t i = k; i < 2 * num_pairs; ++i) out[i] = 0;
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void RoundRowAvx512(const float* x, int64_t k,
                                                                         int64_t num_pairs,
                                                                         uint32_t* pairs) {
  RoundRow(x, k, num_pairs, pairs);  // same source, vectorized for AVX-512 by GCC
}

// ---------------------------------------------------------------------------------------------
// Portable path: the order of the header, literally.

inline float Daz(float v) { return std::fabs(v) < FLT_MIN ? std::copysign(0.0f, v) : v; }

// One vdpbf16ps lane step: pair t of a (activation) and b (weight), bf16 bits.
inline float DotPairStep(float acc, uint32_t a, uint32_t b) {
  const float a0 = Daz(Bf16ToFloat(static_cast<uint16_t>(a)));
  const float a1 = Daz(Bf16ToFloat(static_cast<uint16_t>(a >> 16)));
  const float b0 = Daz(Bf16ToFloat(static_cast<uint16_t>(b)));
  const float b1 = Daz(Bf16ToFloat(static_cast<uint16_t>(b >> 16)));
  acc = Daz(acc);
  acc = Daz(std::fma(a1, b1, acc));  // FTZ of a result is the same test as DAZ of an input
  return Daz(std::fma(a0, b0, acc));
}

// Rows [r0, r1) × panels [p0, p1).
void PortableBlock(const uint32_t* xp, int64_t ldx, const PackedBf16Weight& w, float* y, int64_t r0,
                   int64_t r1, int64_t p0, int64_t p1) {
  const int64_t np = w.num_pairs;
  for (int64_t i = r0; i < r1; ++i) {
    for (int64_t p = p0; p < p1; ++p) {
      const uint16_t* panel = w.data.data() + p * w.panel_lines * kLine;
      for (int64_t c = 0; c < kBf16PanelWidth && p * kBf16PanelWidth + c < w.n; ++c) {
        float acc = 0.0f;
        for (int64_t t = 0; t < np; ++t) {
          uint32_t b;
          std::memcpy(&b, panel + t * kLine + 2 * c, sizeof(b));
          acc = DotPairStep(acc, xp[i * ldx + t], b);
        }
        y[i * w.n + p * kBf16PanelWidth + c] = acc;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// AVX-512 path.

// Functions compiled for the AVX-512 extensions whatever -march is; called only after
// kernel_isa.h found them on the CPU.
#define KV_TARGET_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

struct MicroArgs {
  const uint32_t* x;  // first row of the tile at pair 0; rows ldx pairs apart
  int64_t ldx;
  const uint16_t* w;  // first panel of the tile at pair 0; panels panel_stride apart
  int64_t panel_stride;
  int64_t t0, t1;  // pairs [t0, t1) of the chain
  float* y;        // y[row 0][first column of the tile]
  int64_t ldy;
  int64_t cols;   // valid columns from the tile's first one (may be < 16·P)
  bool first;     // t0 == 0: start from +0, else resume from y
  bool prefetch;  // prefetch each panel stream ahead (weights from DRAM)
};

constexpr int64_t kPrefetchPairs = 24;  // 1.5 KiB ahead in each panel stream

KV_TARGET_AVX512_BF16 inline __mmask16 ColumnMask(int64_t cols, int p) {
  const int64_t c = cols - 16 * p;
  return c >= 16 ? __mmask16(0xffff) : c <= 0 ? __mmask16(0) : __mmask16((1u << c) - 1);
}

template <int R, int P>
KV_TARGET_AVX512_BF16 void Micro(const MicroArgs& a) {
  __m512 acc[R][P];
  for (int r = 0; r < R; ++r) {
    for (int p = 0; p < P; ++p) {
      acc[r][p] = a.first ? _mm512_setzero_ps()
                          : _mm512_maskz_loadu_ps(ColumnMask(a.cols, p), a.y + r * a.ldy + 16 * p);
    }
  }
  const uint16_t* w = a.w;
  for (int64_t t = a.t0; t < a.t1; ++t) {
    __m512i wv[P];
    for (int p = 0; p < P; ++p) {
      wv[p] = _mm512_load_si512(w + p * a.panel_stride + t * kLine);
      // Keeps the weights in registers: otherwise GCC folds the load into every row's vdpbf16ps.
      __asm__("" : "+v"(wv[p]));
    }
    if (a.prefetch) {
      for (int p = 0; p < P; ++p) {
        _mm_prefetch(
            reinterpret_cast<const char*>(w + p * a.panel_stride + (t + kPrefetchPairs) * kLine),
            _MM_HINT_T0);
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m512i xb = _mm512_set1_epi32(static_cast<int>(a.x[r * a.ldx + t]));
      for (int p = 0; p < P; ++p) {
        acc[r][p] = _mm512_dpbf16_ps(acc[r][p], reinterpret_cast<__m512bh>(xb),
                                     reinterpret_cast<__m512bh>(wv[p]));
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int p = 0; p < P; ++p) {
      _mm512_mask_storeu_ps(a.y + r * a.ldy + 16 * p, ColumnMask(a.cols, p), acc[r][p]);
    }
  }
}

#undef KV_TARGET_AVX512_BF16

constexpr int kMaxRows = 6;
constexpr int kMaxPanels = 8;
using MicroFn = void (*)(const MicroArgs&);

template <std::size_t... I>
constexpr std::array<MicroFn, sizeof...(I)> MakeMicroTable(std::index_sequence<I...>) {
  return {&Micro<static_cast<int>(I) / kMaxPanels + 1, static_cast<int>(I) % kMaxPanels + 1>...};
}
constexpr auto kMicro = MakeMicroTable(std::make_index_sequence<kMaxRows * kMaxPanels>());

inline void RunMicro(int rows, int panels, const MicroArgs& a) {
  kMicro[(rows - 1) * kMaxPanels + (panels - 1)](a);
}

// Panels per micro-kernel for decode, by row count (accumulators + weights within 32 zmm).
constexpr int kDecodePanels[5] = {0, 8, 8, 6, 4};

// Decode: all m (<= 4) rows × panels [p0, p1), whole K.
void Avx512DecodeBlock(const uint32_t* xp, int64_t ldx, int64_t m, const PackedBf16Weight& w,
                       float* y, int64_t p0, int64_t p1) {
  const int step = kDecodePanels[m];
  for (int64_t p = p0; p < p1; p += step) {
    const int panels = static_cast<int>(std::min<int64_t>(step, p1 - p));
    MicroArgs a{xp,
                ldx,
                w.data.data() + p * w.panel_lines * kLine,
                w.panel_lines * kLine,
                0,
                w.num_pairs,
                y + p * kBf16PanelWidth,
                w.n,
                w.n - p * kBf16PanelWidth,
                true,
                true};
    RunMicro(static_cast<int>(m), panels, a);
  }
}

constexpr int kGemmRows = 6;
constexpr int kGemmPanels = 4;
// 4 panels × 1024 pairs × 64 B = 256 KiB of weights stay in L2 while the tile's 6 activation
// rows (24 KiB) stay in L1; measured ~18% faster at K = 2048 than 128-pair blocks that kept the
// weights in L1 but parked the accumulators in y 8 times as often.
constexpr int64_t kPairBlock = 1024;
constexpr int64_t kRowBlock = 96;
constexpr int64_t kPanelBlock = 16;
constexpr int kTasksPerThread = 4;  // decode

// Prefill: rows [r0, r1) × panels [p0, p1), K in blocks.
void Avx512GemmBlock(const uint32_t* xp, int64_t ldx, const PackedBf16Weight& w, float* y,
                     int64_t r0, int64_t r1, int64_t p0, int64_t p1) {
  const int64_t np = w.num_pairs;
  for (int64_t t0 = 0; t0 < np; t0 += kPairBlock) {
    const int64_t t1 = std::min(np, t0 + kPairBlock);
    for (int64_t p = p0; p < p1; p += kGemmPanels) {
      const int panels = static_cast<int>(std::min<int64_t>(kGemmPanels, p1 - p));
      for (int64_t i = r0; i < r1; i += kGemmRows) {
        const int rows = static_cast<int>(std::min<int64_t>(kGemmRows, r1 - i));
        MicroArgs a{xp + i * ldx,
                    ldx,
                    w.data.data() + p * w.panel_lines * kLine,
                    w.panel_lines * kLine,
                    t0,
                    t1,
                    y + i * w.n + p * kBf16PanelWidth,
                    w.n,
                    w.n - p * kBf16PanelWidth,
                    t0 == 0,
                    false};
        RunMicro(rows, panels, a);
      }
    }
  }
}

absl::Status CheckFinite(const uint16_t* bits, int64_t count, int64_t k, std::string_view name) {
  for (int64_t i = 0; i < count; ++i) {
    if ((bits[i] & 0x7f80u) == 0x7f80u) {
      return absl::InvalidArgumentError(absl::StrCat("weight '", std::string(name), "' [", i / k,
                                                     "][", i % k, "] is not finite in bf16"));
    }
  }
  return absl::OkStatus();
}

PackedBf16Weight PackBits(const uint16_t* bits, int64_t n, int64_t k) {
  PackedBf16Weight w;
  w.n = n;
  w.k = k;
  w.num_pairs = (k + 1) / 2;
  w.num_panels = (n + kBf16PanelWidth - 1) / kBf16PanelWidth;
  // A panel stride of a multiple of 4 KiB would put the 4–8 panels a micro-kernel streams in
  // the same L1 set; one spare line shifts each panel by 64 bytes.
  w.panel_lines = w.num_pairs % 64 == 0 ? w.num_pairs + 1 : w.num_pairs;
  w.data.assign(w.num_panels * w.panel_lines * kLine, 0);
  for (int64_t j = 0; j < n; ++j) {
    uint16_t* panel = w.data.data() + (j / kBf16PanelWidth) * w.panel_lines * kLine;
    const int64_t c = j % kBf16PanelWidth;
    for (int64_t i = 0; i < k; ++i) panel[(i / 2) * kLine + 2 * c + (i % 2)] = bits[j * k + i];
  }
  return w;
}

}  // namespace

absl::StatusOr<PackedBf16Weight> PackBf16(const float* w, int64_t n, int64_t k,
                                          std::string_view name) {
  std::vector<uint16_t> bits(n * k);
  for (int64_t i = 0; i < n * k; ++i) {
    if (!std::isfinite(w[i])) {
      return absl::InvalidArgumentError(absl::StrCat("weight '", std::string(name), "' [", i / k,
                                                     "][", i % k, "] = ", w[i], " is not finite"));
    }
    bits[i] = RoundToBf16(w[i]);
    if ((bits[i] & 0x7f80u) == 0x7f80u) {
      return absl::InvalidArgumentError(
          absl::StrCat("weight '", std::string(name), "' [", i / k, "][", i % k, "] = ", w[i],
                       " exceeds bfloat16's range (rounds to infinity)"));
    }
  }
  return PackBits(bits.data(), n, k);
}

absl::StatusOr<PackedBf16Weight> PackBf16(const uint16_t* w_bf16, int64_t n, int64_t k,
                                          std::string_view name) {
  if (absl::Status s = CheckFinite(w_bf16, n * k, k, name); !s.ok()) return s;
  return PackBits(w_bf16, n, k);
}

void Bf16Matmul(const float* x, int64_t m, const PackedBf16Weight& w, float* y) {
  const PackedBf16Weight* ws[] = {&w};
  float* ys[] = {y};
  Bf16Matmul(x, m, ws, ys);
}

void Bf16Matmul(const float* x, int64_t m, absl::Span<const PackedBf16Weight* const> ws,
                absl::Span<float* const> ys) {
  KV_CHECK(!ws.empty() && ws.size() == ys.size() && ws.size() <= kMaxSharedWeights)
      << ws.size() << " weights, " << ys.size() << " outputs";
  for (size_t i = 1; i < ws.size(); ++i)
    KV_CHECK(ws[i]->k == ws[0]->k) << "weight " << i << " differs";
  const bool avx512 = UseAvx512Bf16Kernels();
  const int64_t k = ws[0]->k;
  const int64_t np = ws[0]->num_pairs;
  auto& scratch = Scratch();
  // Row stride of the rounded activations: a multiple of 64 bytes, never of 4 KiB (which would
  // put a tile's rows in the same L1 set as each other and as the weight streams).
  int64_t ldx = (np + 15) / 16 * 16;
  if (ldx % 1024 == 0) ldx += 16;
  if (static_cast<int64_t>(scratch.size()) < m * ldx) scratch.resize(m * ldx);
  uint32_t* xp = scratch.data();  // {m, num_pairs}
  std::array<int64_t, kMaxSharedWeights> panels{};
  int64_t nk = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    panels[i] = ws[i]->num_panels;
    nk += ws[i]->n * k;
  }
  const absl::Span<const int64_t> panel_counts(panels.data(), ws.size());
  const int threads = KernelThreads();
  const bool parallel = threads > 1 && (m * nk >= (int64_t{1} << 20) || nk >= (int64_t{1} << 18));
  const auto round_rows = [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      if (avx512) {
        RoundRowAvx512(x + i * k, k, np, xp + i * ldx);
      } else {
        RoundRow(x + i * k, k, np, xp + i * ldx);
      }
    }
  };
  if (m <= 4) {
    round_rows(0, m);
    // Contiguous panel ranges, a multiple of the micro-kernel width, about kTasksPerThread per
    // thread handed out dynamically: on a shared machine a thread that loses its core would
    // otherwise hold up the whole call.
    const PanelTasks tasks = PanelTasks::Decode(panel_counts, m, kDecodePanels[m],
                                                parallel ? threads * kTasksPerThread : 1);
    const auto decode_block = [&](int64_t t) {
      const PanelTask task = tasks[t];
      if (avx512) {
        Avx512DecodeBlock(xp, ldx, m, *ws[task.weight], ys[task.weight], task.p0, task.p1);
      } else {
        PortableBlock(xp, ldx, *ws[task.weight], ys[task.weight], 0, m, task.p0, task.p1);
      }
    };
    if (parallel) {
      ParallelFor(tasks.size(), decode_block);
    } else {
      for (int64_t t = 0; t < tasks.size(); ++t) decode_block(t);
    }
    return;
  }
  const int64_t row_blocks = (m + kRowBlock - 1) / kRowBlock;
  const PanelTasks tasks = PanelTasks::Grid(panel_counts, m, kRowBlock, kPanelBlock);
  const auto gemm_block = [&](int64_t t) {
    const PanelTask task = tasks[t];
    if (avx512) {
      Avx512GemmBlock(xp, ldx, *ws[task.weight], ys[task.weight], task.r0, task.r1, task.p0,
                      task.p1);
    } else {
      PortableBlock(xp, ldx, *ws[task.weight], ys[task.weight], task.r0, task.r1, task.p0, task.p1);
    }
  };
  const auto round_block = [&](int64_t rb) {
    round_rows(rb * kRowBlock, std::min(m, (rb + 1) * kRowBlock));
  };
  if (parallel) {
    ParallelFor(row_blocks, round_block);
    ParallelFor(tasks.size(), gemm_block);
  } else {
    for (int64_t rb = 0; rb < row_blocks; ++rb) round_block(rb);
    for (int64_t t = 0; t < tasks.size(); ++t) gemm_block(t);
  }
}

}  // namespace kvserve::engine
