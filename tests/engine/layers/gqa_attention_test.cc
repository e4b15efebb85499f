// GqaAttention against a naive reference that materialises every query head's own K/V (repeating
// each K/V head across its group), builds the full masked score matrix in double, and applies
// softmax row by row.
#include "engine/layers/gqa_attention.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

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

// Runs the kernel over a contiguous cache: one block holding every position.
std::vector<float> Engine(const std::vector<float>& q, const std::vector<float>& keys,
                          const std::vector<float>& values, int start, int n, int heads,
                          int kv_heads, int d, int window = 0) {
  std::vector<float> out(n * heads * d), scratch(start + n);
  const int32_t table[] = {0};
  const KvView kv{keys.data(), values.data(), kv_heads * d, table, start + n};
  GqaAttention(q.data(), kv, start, n, {heads, kv_heads, d, window}, scratch.data(), out.data());
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
  std::vector<float> out(n * heads * d), scratch(total);
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

struct Case {
  const char* name;
  int heads, kv_heads, d, start, n;
  int window = 0;  // sliding window; 0 = full causal attention
};

class GqaAttentionTest : public ::testing::TestWithParam<Case> {};

TEST_P(GqaAttentionTest, MatchesNaiveReference) {
  const Case c = GetParam();
  const int total = c.start + c.n;
  auto q = RandomVector(c.n * c.heads * c.d, 1);
  auto keys = RandomVector(total * c.kv_heads * c.d, 2);
  auto values = RandomVector(total * c.kv_heads * c.d, 3);
  EXPECT_LE(
      MaxAbsDiff(Engine(q, keys, values, c.start, c.n, c.heads, c.kv_heads, c.d, c.window),
                 NaiveAttention(q, keys, values, c.start, c.n, c.heads, c.kv_heads, c.d, c.window)),
      1e-5f);
}

TEST_P(GqaAttentionTest, PagedViewIsBitIdenticalToContiguous) {
  const Case c = GetParam();
  const int total = c.start + c.n;
  auto q = RandomVector(c.n * c.heads * c.d, 4);
  auto keys = RandomVector(total * c.kv_heads * c.d, 5);
  auto values = RandomVector(total * c.kv_heads * c.d, 6);
  const auto contiguous = Engine(q, keys, values, c.start, c.n, c.heads, c.kv_heads, c.d, c.window);
  for (int block_size : {1, 3, 16}) {
    EXPECT_EQ(
        EnginePaged(q, keys, values, c.start, c.n, c.heads, c.kv_heads, c.d, block_size, c.window),
        contiguous)
        << "block size " << block_size;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GqaAttentionTest,
    ::testing::Values(Case{"MhaPrefill", 4, 4, 16, 0, 9}, Case{"MqaPrefill", 4, 1, 16, 0, 9},
                      Case{"GqaPrefill", 8, 2, 8, 0, 13}, Case{"MhaDecode", 4, 4, 16, 20, 1},
                      Case{"MqaDecode", 6, 1, 32, 31, 1}, Case{"GqaDecode", 8, 4, 8, 17, 1},
                      Case{"GqaChunkAfterPrefix", 6, 3, 8, 10, 5},
                      Case{"WindowPrefill", 8, 2, 8, 0, 13, 4},
                      Case{"WindowDecode", 8, 4, 8, 17, 1, 5},
                      Case{"WindowChunkAfterPrefix", 6, 3, 8, 10, 5, 3},
                      Case{"WindowWiderThanContext", 4, 2, 8, 3, 4, 64}),
    [](const auto& info) { return std::string(info.param.name); });

// GQA with one K/V head per query head is MHA: same outputs as attention over per-head K/V.
TEST(GqaAttentionEquivalenceTest, GroupsEqualToHeadsIsMha) {
  const int heads = 4, d = 8, n = 6;
  auto q = RandomVector(n * heads * d, 11);
  auto keys = RandomVector(n * heads * d, 12);
  auto values = RandomVector(n * heads * d, 13);
  std::vector<float> mha(n * heads * d), scratch(n);
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
