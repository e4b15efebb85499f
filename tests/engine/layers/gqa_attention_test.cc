// GqaAttention against two references: a naive one that materialises every query head's own K/V
// (repeating each K/V head across its group), builds the full masked score matrix in double, and
// applies softmax row by row; and the engine's former scalar kernel (tests/testing/
// scalar_attention.h). Every comparison runs on both kernel ISAs (AVX-512 where the CPU has it, and
// the portable path), which must also agree bit for bit with each other.
#include "engine/layers/gqa_attention.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <vector>

#include "engine/kernels/bf16_matmul.h"
#include "engine/kernels/kernel_isa.h"
#include "engine/kernels/thread_pool.h"
#include "gtest/gtest.h"
#include "tests/testing/scalar_attention.h"

namespace kvserve::engine {
namespace {

std::vector<float> RandomVector(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// q: [n, H, D] for positions start..start+n-1; keys/values: [start+n, G, D]. Returns [n, H, D].
// window > 0: a query at p sees keys at p - window < s <= p only.
std::vector<float> NaiveAttention(const std::vector<float>& q, const std::vector<float>& keys,
                                  const std::vector<float>& values, int start, int n, int heads,
                                  int kv_heads, int d, int window = 0) {
  const int total = start + n;
  const int group = heads / kv_heads;
  // Expanded per-query-head K and V: [H, total, D].
  std::vector<double> k(heads * total * d), v(heads * total * d);
  for (int h = 0; h < heads; ++h) {
    for (int s = 0; s < total; ++s) {
      for (int x = 0; x < d; ++x) {
        k[(h * total + s) * d + x] = keys[(s * kv_heads + h / group) * d + x];
        v[(h * total + s) * d + x] = values[(s * kv_heads + h / group) * d + x];
      }
    }
  }
  std::vector<float> out(n * heads * d);
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < n; ++i) {
      std::vector<double> p(total);
      double max_s = -1e300;
      for (int s = 0; s < total; ++s) {
        double dot = 0;
        for (int x = 0; x < d; ++x)
          dot += double{q[(i * heads + h) * d + x]} * k[(h * total + s) * d + x];
        const bool visible = s <= start + i && (window == 0 || s > start + i - window);
        p[s] = visible ? dot / std::sqrt(double(d)) : -INFINITY;  // causal (+ window) mask
        max_s = std::max(max_s, p[s]);
      }
      double sum = 0;
      for (double& e : p) sum += (e = std::exp(e - max_s));
      for (int x = 0; x < d; ++x) {
        double acc = 0;
        for (int s = 0; s < total; ++s) acc += p[s] / sum * v[(h * total + s) * d + x];
        out[(i * heads + h) * d + x] = static_cast<float>(acc);
      }
    }
  }
  return out;
}

std::vector<float> Scratch(int heads, int kv_heads, int d) {
  return std::vector<float>(GqaAttentionScratchFloats({heads, kv_heads, d}), NAN);
}

// Runs the kernel over a contiguous cache: one block holding every position.
std::vector<float> Engine(const std::vector<float>& q, const std::vector<float>& keys,
                          const std::vector<float>& values, int start, int n, int heads,
                          int kv_heads, int d, int window = 0, bool alone = false) {
  std::vector<float> out(n * heads * d), scratch = Scratch(heads, kv_heads, d);
  const int32_t table[] = {0};
  const KvView kv{keys.data(), values.data(), kv_heads * d, table, start + n};
  GqaAttention(q.data(), kv, start, n, {heads, kv_heads, d, window}, scratch.data(), out.data(),
               alone);
  return out;
}

// The same K/V scattered into a paged arena: blocks of `block_size` rows in a shuffled order, K and
// V interleaved per row as the KV cache stores them.
std::vector<float> EnginePaged(const std::vector<float>& q, const std::vector<float>& keys,
                               const std::vector<float>& values, int start, int n, int heads,
                               int kv_heads, int d, int block_size, int window = 0) {
  const int total = start + n;
  const int kv_dim = kv_heads * d;
  const int num_blocks = (total + block_size - 1) / block_size;
  std::vector<int32_t> table(num_blocks);
  for (int b = 0; b < num_blocks; ++b) table[b] = num_blocks + 4 - b;  // distinct, reversed
  std::vector<float> arena((num_blocks + 5) * block_size * 2 * kv_dim, NAN);
  for (int s = 0; s < total; ++s) {
    const int slot = table[s / block_size] * block_size + s % block_size;
    std::copy_n(&keys[s * kv_dim], kv_dim, &arena[slot * 2 * kv_dim]);
    std::copy_n(&values[s * kv_dim], kv_dim, &arena[slot * 2 * kv_dim + kv_dim]);
  }
  std::vector<float> out(n * heads * d), scratch = Scratch(heads, kv_heads, d);
  const KvView kv{arena.data(), arena.data() + kv_dim, 2 * kv_dim, table.data(), block_size};
  GqaAttention(q.data(), kv, start, n, {heads, kv_heads, d, window}, scratch.data(), out.data());
  return out;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// The kernel ISAs this CPU can run: always the portable path, AVX-512 where available.
std::vector<KernelIsa> Isas() {
  std::vector<KernelIsa> isas = {KernelIsa::kPortable};
  SetKernelIsaForTesting(KernelIsa::kAvx512);
  if (UseAvx512AttentionKernels()) isas.push_back(KernelIsa::kAvx512);
  SetKernelIsaForTesting(std::nullopt);
  return isas;
}

const char* IsaName(KernelIsa isa) { return isa == KernelIsa::kAvx512 ? "avx512" : "portable"; }

// Sets the ISA for one scope, back to detection at its end.
class ScopedIsa {
 public:
  explicit ScopedIsa(KernelIsa isa) { SetKernelIsaForTesting(isa); }
  ~ScopedIsa() { SetKernelIsaForTesting(std::nullopt); }
};

struct Case {
  const char* name;
  int heads, kv_heads, d, start, n;
  int window = 0;  // sliding window; 0 = full causal attention
};

// Documented bound (gqa_attention.h): a few f32 roundings of scores and weights on unit-normal
// data; the largest difference measured over these cases is 6.1e-7.
constexpr float kTolerance = 4e-6f;

class GqaAttentionTest : public ::testing::TestWithParam<Case> {};

// Unit-normal q, K and V of a case, seeded seed, seed + 1, seed + 2.
struct Data {
  std::vector<float> q, keys, values;
};
Data RandomData(const Case& c, uint32_t seed) {
  const int total = c.start + c.n;
  return {RandomVector(c.n * c.heads * c.d, seed), RandomVector(total * c.kv_heads * c.d, seed + 1),
          RandomVector(total * c.kv_heads * c.d, seed + 2)};
}

// The kernel over a contiguous cache for the case's rows [first, first + n) (default: all).
std::vector<float> RunCase(const Case& c, const Data& x, int first = 0, int n = -1) {
  if (n < 0) n = c.n;
  const int row = c.heads * c.d;
  std::vector<float> q(x.q.begin() + first * row, x.q.begin() + (first + n) * row);
  return Engine(q, x.keys, x.values, c.start + first, n, c.heads, c.kv_heads, c.d, c.window);
}

// Both references run on the same data: the double-precision naive one, and the former scalar
// kernel.
TEST_P(GqaAttentionTest, MatchesNaiveReferenceAndScalarKernel) {
  const Case c = GetParam();
  const Data x = RandomData(c, 1);
  const auto naive =
      NaiveAttention(x.q, x.keys, x.values, c.start, c.n, c.heads, c.kv_heads, c.d, c.window);
  const int total = c.start + c.n;
  std::vector<float> scalar(c.n * c.heads * c.d), scores(total);
  const int32_t table[] = {0};
  const KvView kv{x.keys.data(), x.values.data(), c.kv_heads * c.d, table, total};
  ScalarGqaAttention(x.q.data(), kv, c.start, c.n, {c.heads, c.kv_heads, c.d, c.window},
                     scores.data(), scalar.data());
  for (KernelIsa isa : Isas()) {
    ScopedIsa scoped(isa);
    const auto out = RunCase(c, x);
    EXPECT_LE(MaxAbsDiff(out, naive), kTolerance) << IsaName(isa);
    EXPECT_LE(MaxAbsDiff(out, scalar), kTolerance) << IsaName(isa);
  }
}

TEST_P(GqaAttentionTest, PagedViewIsBitIdenticalToContiguous) {
  const Case c = GetParam();
  const Data x = RandomData(c, 4);
  for (KernelIsa isa : Isas()) {
    ScopedIsa scoped(isa);
    const auto contiguous = RunCase(c, x);
    for (int block_size : {1, 3, 16}) {
      EXPECT_EQ(EnginePaged(x.q, x.keys, x.values, c.start, c.n, c.heads, c.kv_heads, c.d,
                            block_size, c.window),
                contiguous)
          << "block size " << block_size << ", " << IsaName(isa);
    }
  }
}

// The portable path reproduces the AVX-512 one bit for bit (the header's cross-ISA contract).
TEST_P(GqaAttentionTest, IsasAgreeBitForBit) {
  const Case c = GetParam();
  const std::vector<KernelIsa> isas = Isas();
  if (isas.size() < 2) GTEST_SKIP() << "no AVX-512 on this CPU";
  const Data x = RandomData(c, 14);
  std::vector<std::vector<float>> outs;
  for (KernelIsa isa : isas) {
    ScopedIsa scoped(isa);
    outs.push_back(RunCase(c, x));
  }
  EXPECT_EQ(outs[0], outs[1]);
}

// Each query row's result is a function of its position only: computing the rows in one call, in
// chunks of any size, or one by one as decode steps gives the same bits.
TEST_P(GqaAttentionTest, ChunkingDoesNotChangeAnyBit) {
  const Case c = GetParam();
  const Data x = RandomData(c, 17);
  for (KernelIsa isa : Isas()) {
    ScopedIsa scoped(isa);
    const auto whole = RunCase(c, x);
    for (int chunk : {1, 3, 5}) {
      std::vector<float> pieces;
      for (int i = 0; i < c.n; i += chunk) {
        const auto out = RunCase(c, x, i, std::min(chunk, c.n - i));
        pieces.insert(pieces.end(), out.begin(), out.end());
      }
      EXPECT_EQ(pieces, whole) << "chunks of " << chunk << ", " << IsaName(isa);
    }
  }
}

// A call big enough is shared by the kernel threads, one (8-row block, kv head) item per task
// at a time: the split does not change any bit (the Long cases are above the size from which
// calls go parallel).
TEST_P(GqaAttentionTest, ThreadCountDoesNotChangeAnyBit) {
  const Case c = GetParam();
  const Data x = RandomData(c, 23);
  const int saved = KernelThreads();
  for (KernelIsa isa : Isas()) {
    ScopedIsa scoped(isa);
    SetKernelThreads(1);
    const auto one = RunCase(c, x);
    for (int threads : {2, 3}) {
      SetKernelThreads(threads);  // the scratch (Engine) is sized after this, as callers must
      EXPECT_EQ(RunCase(c, x), one) << threads << " threads, " << IsaName(isa);
      // A call made alone in its step (one sequence decoding) shares smaller calls too.
      EXPECT_EQ(Engine(x.q, x.keys, x.values, c.start, c.n, c.heads, c.kv_heads, c.d, c.window,
                       /*alone=*/true),
                one)
          << threads << " threads, alone, " << IsaName(isa);
    }
  }
  SetKernelThreads(saved);
}

// The alone threshold is what makes short decode calls share: a SmolLM-135M layer (9 heads, 3 KV
// heads of 64) decoding at a 64-token context shares only when alone.
TEST(GqaAttentionSharingTest, ShortDecodeSharesOnlyWhenAlone) {
  const int saved = KernelThreads();
  SetKernelThreads(2);
  const AttentionShape smol{9, 3, 64};
  EXPECT_FALSE(GqaAttentionIsShared(smol, 63, 1));
  EXPECT_TRUE(GqaAttentionIsShared(smol, 63, 1, /*alone=*/true));
  EXPECT_FALSE(GqaAttentionIsShared(smol, 3, 1, /*alone=*/true));  // too small to pay
  SetKernelThreads(1);
  EXPECT_FALSE(GqaAttentionIsShared(smol, 63, 1, /*alone=*/true));  // no one to share with
  SetKernelThreads(saved);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GqaAttentionTest,
    ::testing::Values(
        Case{"MhaPrefill", 4, 4, 16, 0, 9}, Case{"MqaPrefill", 4, 1, 16, 0, 9},
        Case{"GqaPrefill", 8, 2, 8, 0, 13}, Case{"MhaDecode", 4, 4, 16, 20, 1},
        Case{"MqaDecode", 6, 1, 32, 31, 1}, Case{"GqaDecode", 8, 4, 8, 17, 1},
        Case{"GqaChunkAfterPrefix", 6, 3, 8, 10, 5}, Case{"WindowPrefill", 8, 2, 8, 0, 13, 4},
        Case{"WindowDecode", 8, 4, 8, 17, 1, 5}, Case{"WindowChunkAfterPrefix", 6, 3, 8, 10, 5, 3},
        Case{"WindowWiderThanContext", 4, 2, 8, 3, 4, 64},
        // Real head sizes, many key tiles, tails of d and of tiles.
        Case{"GqaDecodeLong", 8, 2, 64, 300, 1}, Case{"GqaPrefillLong", 8, 2, 64, 0, 70},
        Case{"MhaChunkLongHead128", 2, 2, 128, 37, 29}, Case{"MqaDecodeLong", 8, 1, 64, 517, 1},
        Case{"WindowLong", 8, 2, 64, 100, 9, 40}, Case{"HeadDimWithTail", 4, 2, 24, 20, 7},
        // 8+ queries per item (rows × group): key tiles scored transposed; fewer (decode, chunks
        // of 1) key by key, so ChunkingDoesNotChangeAnyBit compares the two. Tails of d, d
        // below one vector, more queries than one 16-query softmax batch, a window.
        Case{"ManyQueriesHeadDimTail", 6, 2, 40, 13, 21},
        Case{"ManyQueriesHeadDimBelowOneVector", 8, 1, 5, 3, 11},
        Case{"MqaManyHeadsPrefill", 20, 1, 24, 5, 10},
        Case{"WindowManyQueries", 8, 2, 16, 30, 20, 7},
        // SmolLM-135M's attention decoding at a 64-token context: shared only when alone.
        Case{"SmolDecodeShortContext", 9, 3, 64, 63, 1}),
    [](const auto& info) { return std::string(info.param.name); });

// Scores that grow from tile to tile force a rescale at every tile; the result still matches.
TEST(GqaAttentionRescaleTest, IncreasingScoresMatchNaiveReference) {
  const int heads = 2, kv_heads = 1, d = 16, start = 200, n = 3;
  const int total = start + n;
  auto q = RandomVector(n * heads * d, 31);
  auto keys = RandomVector(total * kv_heads * d, 32);
  auto values = RandomVector(total * kv_heads * d, 33);
  // k_s = (1 + s/20) · u: the score with q grows with s wherever q·u > 0.
  const auto u = RandomVector(d, 34);
  for (int s = 0; s < total; ++s) {
    for (int x = 0; x < d; ++x) keys[s * d + x] = (1.0f + s / 20.0f) * u[x];
  }
  for (int i = 0; i < n * heads; ++i) {
    for (int x = 0; x < d; ++x) q[i * d + x] = u[x] * 0.5f;
  }
  const auto naive = NaiveAttention(q, keys, values, start, n, heads, kv_heads, d);
  for (KernelIsa isa : Isas()) {
    ScopedIsa scoped(isa);
    EXPECT_LE(MaxAbsDiff(Engine(q, keys, values, start, n, heads, kv_heads, d), naive), kTolerance)
        << IsaName(isa);
  }
}

// MLA's absorbed form as the kernel sees it: one KV head whose keys are the cache rows (width w)
// and whose values are their first dv elements, with the model's own softmax scale.
// Widths with tails (76 = 4·16 + 12 keys, 52 = 3·16 + 4 values) and enough rows to score key
// tiles transposed.
TEST(GqaAttentionShapeTest, ValuesNarrowerThanKeysWithAGivenScaleMatchNaiveReference) {
  struct Width {
    int w, dv, start, n;
  };
  for (const Width& width : {Width{80, 64, 40, 3}, Width{76, 52, 21, 11}}) {
    SCOPED_TRACE(width.w);
    const int heads = 4, w = width.w, dv = width.dv, start = width.start, n = width.n;
    const double scale = 0.0917;
    const int total = start + n;
    auto q = RandomVector(n * heads * w, 61);
    auto rows = RandomVector(total * w, 62);
    std::vector<float> want(n * heads * dv);
    for (int i = 0; i < n; ++i) {
      for (int h = 0; h < heads; ++h) {
        std::vector<double> p(start + i + 1);
        double max_s = -1e300, sum = 0;
        for (int s = 0; s <= start + i; ++s) {
          double dot = 0;
          for (int x = 0; x < w; ++x) dot += double{q[(i * heads + h) * w + x]} * rows[s * w + x];
          max_s = std::max(max_s, p[s] = dot * scale);
        }
        for (double& e : p) sum += (e = std::exp(e - max_s));
        for (int x = 0; x < dv; ++x) {
          double acc = 0;
          for (int s = 0; s <= start + i; ++s) acc += p[s] / sum * rows[s * w + x];
          want[(i * heads + h) * dv + x] = static_cast<float>(acc);
        }
      }
    }
    const AttentionShape shape{heads, 1, w, /*window=*/0, /*value_dim=*/dv, scale};
    const int32_t table[] = {0};
    const KvView kv{rows.data(), rows.data(), w, table, total};
    for (KernelIsa isa : Isas()) {
      ScopedIsa scoped(isa);
      std::vector<float> out(n * heads * dv), scratch(GqaAttentionScratchFloats(shape));
      GqaAttention(q.data(), kv, start, n, shape, scratch.data(), out.data());
      EXPECT_LE(MaxAbsDiff(out, want), kTolerance) << IsaName(isa);
    }
  }
}

// A bf16 view: keys and values stored rounded to bf16 (round to nearest even), paged.
std::vector<float> EngineBf16(const std::vector<float>& q, const std::vector<float>& keys,
                              const std::vector<float>& values, int start, int n, int heads,
                              int kv_heads, int d, int block_size, int window = 0) {
  const int total = start + n;
  const int kv_dim = kv_heads * d;
  const int num_blocks = (total + block_size - 1) / block_size;
  std::vector<int32_t> table(num_blocks);
  for (int b = 0; b < num_blocks; ++b) table[b] = num_blocks - 1 - b;
  std::vector<uint16_t> arena(num_blocks * block_size * 2 * kv_dim, 0x7fc0);  // NaN filler
  for (int s = 0; s < total; ++s) {
    const int slot = table[s / block_size] * block_size + s % block_size;
    for (int x = 0; x < kv_dim; ++x) {
      arena[slot * 2 * kv_dim + x] = RoundToBf16(keys[s * kv_dim + x]);
      arena[slot * 2 * kv_dim + kv_dim + x] = RoundToBf16(values[s * kv_dim + x]);
    }
  }
  std::vector<float> out(n * heads * d), scratch = Scratch(heads, kv_heads, d);
  const KvView kv{arena.data(), arena.data() + kv_dim, 2 * kv_dim, table.data(),
                  block_size,   cache::KvDtype::kBf16};
  GqaAttention(q.data(), kv, start, n, {heads, kv_heads, d, window}, scratch.data(), out.data());
  return out;
}

std::vector<float> RoundedToBf16(std::vector<float> v) {
  for (float& x : v) x = Bf16ToFloat(RoundToBf16(x));
  return v;
}

// bf16 cache: parity with the naive reference run on the same rounded K/V, and with the f32 kernel
// over the rounded values bit for bit (widening bf16 is exact), paged or chunked.
// Shapes: 32 queries per item with whole vectors, 18 with a tail of d; both ISAs give the same
// bits here too.
TEST(GqaAttentionBf16Test, MatchesReferenceOnRoundedKv) {
  struct Shape {
    int heads, kv_heads, d, start, n;
  };
  for (const Shape& shape : {Shape{8, 2, 64, 90, 23}, Shape{6, 2, 40, 30, 13}}) {
    SCOPED_TRACE(shape.d);
    const int heads = shape.heads, kv_heads = shape.kv_heads, d = shape.d, start = shape.start,
              n = shape.n, window = 0;
    const int total = start + n;
    auto q = RandomVector(n * heads * d, 41);
    auto keys = RandomVector(total * kv_heads * d, 42);
    auto values = RandomVector(total * kv_heads * d, 43);
    const auto rk = RoundedToBf16(keys), rv = RoundedToBf16(values);
    const auto naive = NaiveAttention(q, rk, rv, start, n, heads, kv_heads, d, window);
    std::vector<float> first_isa;
    for (KernelIsa isa : Isas()) {
      ScopedIsa scoped(isa);
      const auto bf16 = EngineBf16(q, keys, values, start, n, heads, kv_heads, d, 16, window);
      EXPECT_LE(MaxAbsDiff(bf16, naive), kTolerance) << IsaName(isa);
      EXPECT_EQ(bf16, Engine(q, rk, rv, start, n, heads, kv_heads, d, window)) << IsaName(isa);
      EXPECT_EQ(EngineBf16(q, keys, values, start, n, heads, kv_heads, d, 5, window), bf16)
          << IsaName(isa);
      if (first_isa.empty()) first_isa = bf16;
      EXPECT_EQ(bf16, first_isa) << IsaName(isa);
    }
  }
}

TEST(GqaAttentionBf16Test, ChunkingDoesNotChangeAnyBit) {
  const int heads = 4, kv_heads = 2, d = 32, start = 7, n = 41, window = 19;
  const int total = start + n;
  auto q = RandomVector(n * heads * d, 51);
  auto keys = RandomVector(total * kv_heads * d, 52);
  auto values = RandomVector(total * kv_heads * d, 53);
  for (KernelIsa isa : Isas()) {
    ScopedIsa scoped(isa);
    const auto whole = EngineBf16(q, keys, values, start, n, heads, kv_heads, d, 16, window);
    std::vector<float> steps;
    for (int i = 0; i < n; ++i) {
      std::vector<float> qi(q.begin() + i * heads * d, q.begin() + (i + 1) * heads * d);
      const auto out = EngineBf16(qi, keys, values, start + i, 1, heads, kv_heads, d, 16, window);
      steps.insert(steps.end(), out.begin(), out.end());
    }
    EXPECT_EQ(steps, whole) << IsaName(isa);
  }
}

// GQA with one K/V head per query head is MHA: same outputs as attention over per-head K/V.
TEST(GqaAttentionEquivalenceTest, GroupsEqualToHeadsIsMha) {
  const int heads = 4, d = 8, n = 6;
  auto q = RandomVector(n * heads * d, 11);
  auto keys = RandomVector(n * heads * d, 12);
  auto values = RandomVector(n * heads * d, 13);
  std::vector<float> mha(n * heads * d), scratch = Scratch(1, 1, d);
  // MHA done head by head as single-head attention over that head's own K/V.
  for (int h = 0; h < heads; ++h) {
    std::vector<float> qh(n * d), kh(n * d), vh(n * d), oh(n * d);
    for (int i = 0; i < n; ++i) {
      for (int x = 0; x < d; ++x) {
        qh[i * d + x] = q[(i * heads + h) * d + x];
        kh[i * d + x] = keys[(i * heads + h) * d + x];
        vh[i * d + x] = values[(i * heads + h) * d + x];
      }
    }
    const int32_t table[] = {0};
    const KvView kv{kh.data(), vh.data(), d, table, n};
    GqaAttention(qh.data(), kv, 0, n, {1, 1, d}, scratch.data(), oh.data());
    for (int i = 0; i < n; ++i) {
      for (int x = 0; x < d; ++x) mha[(i * heads + h) * d + x] = oh[i * d + x];
    }
  }
  EXPECT_EQ(Engine(q, keys, values, 0, n, heads, heads, d), mha);
}

// GQA with a single group is MQA: identical to GQA over K/V heads that are all copies of one head.
TEST(GqaAttentionEquivalenceTest, OneGroupIsMqa) {
  const int heads = 4, d = 8, n = 6;
  auto q = RandomVector(n * heads * d, 21);
  auto k1 = RandomVector(n * d, 22);
  auto v1 = RandomVector(n * d, 23);
  std::vector<float> k_rep(n * heads * d), v_rep(n * heads * d);
  for (int s = 0; s < n; ++s) {
    for (int h = 0; h < heads; ++h) {
      for (int x = 0; x < d; ++x) {
        k_rep[(s * heads + h) * d + x] = k1[s * d + x];
        v_rep[(s * heads + h) * d + x] = v1[s * d + x];
      }
    }
  }
  EXPECT_EQ(Engine(q, k1, v1, 0, n, heads, 1, d), Engine(q, k_rep, v_rep, 0, n, heads, heads, d));
}

}  // namespace
}  // namespace kvserve::engine
