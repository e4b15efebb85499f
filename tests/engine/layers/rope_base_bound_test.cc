#include "engine/layers/rope_base_bound.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>

#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

// docs/math.md §7 oracle 19: for b = 1e4, d = 128, f_b(m) first goes negative at m = 1707.
TEST(RopeBaseBoundTest, TenThousandAt128DimsHoldsUpTo1707Tokens) {
  EXPECT_TRUE(RopeBaseKeepsLongRangeAttention(1e4, 128, 1707));
  EXPECT_FALSE(RopeBaseKeepsLongRangeAttention(1e4, 128, 1708));
}

// docs/math.md §7 oracle 19: the smallest integer base for L = 1024 at d = 128 is 4294, so b*
// lies in (4293, 4294]. Su's post and the paper round it to 4.3e3.
TEST(RopeBaseBoundTest, MatchesOracle19At1kTokens) {
  const std::optional<RopeBaseBound> b = MinRopeBase(128, 1024);
  ASSERT_TRUE(b.has_value());
  EXPECT_GT(b->min_base, 4293.0);
  EXPECT_LE(b->min_base, 4294.0);
  EXPECT_TRUE(RopeBaseKeepsLongRangeAttention(b->min_base, 128, 1024));
  EXPECT_FALSE(RopeBaseKeepsLongRangeAttention(b->min_base * (1 - 1e-5), 128, 1024));
}

// docs/math.md §7 oracle 31, recomputed by tools/reference/math_oracles.py with an integer-step
// scan: d = 128 gives 1.16e4 at 2k and 2.70e4 at 4k; d = 64 gives 7.75e3, 2.96e4 and 1.00e5.
TEST(RopeBaseBoundTest, MatchesOracle31At2kAnd4kTokens) {
  struct Case {
    int64_t dims, context;
    double lo, hi;
  };
  for (const Case& c :
       {Case{128, 2048, 11587, 11588}, Case{128, 4096, 26952, 26953}, Case{64, 1024, 7752, 7753},
        Case{64, 2048, 29617, 29618}, Case{64, 4096, 100069, 100071}}) {
    const std::optional<RopeBaseBound> b = MinRopeBase(c.dims, c.context);
    ASSERT_TRUE(b.has_value()) << c.dims << " " << c.context;
    EXPECT_GT(b->min_base, c.lo) << c.dims << " " << c.context;
    EXPECT_LE(b->min_base, c.hi) << c.dims << " " << c.context;
  }
}

// The work bound, independent of the machine's speed: the downward early exit and the witnesses
// keep the scan to a few dozen passes over the context (27 at 1k, 15 at 4k), not one per grid
// base (about 8500 grid bases lie below 1e4 at the default 0.1% step).
TEST(RopeBaseBoundTest, WorkStaysWithinAFewHundredPassesOverTheContext) {
  for (int64_t context : {1024, 4096}) {
    const std::optional<RopeBaseBound> b = MinRopeBase(128, context);
    ASSERT_TRUE(b.has_value());
    const double passes = static_cast<double>(b->num_terms) / (context * 64.0);
    std::printf("d = 128, L = %lld: b* = %.6g, %lld terms = %.1f passes over L\n",
                static_cast<long long>(context), b->min_base, static_cast<long long>(b->num_terms),
                passes);
    EXPECT_LT(passes, 64.0) << "context " << context;
  }
}

TEST(RopeBaseBoundTest, GivesUpWhenTheBudgetRunsOutOrNoBasePasses) {
  RopeBaseBoundOptions tight;
  tight.max_terms = 1000;
  EXPECT_FALSE(MinRopeBase(128, 4096, tight).has_value());
  // d = 2 has the single frequency θ_0 = 1 whatever the base: cos(2) < 0.
  EXPECT_FALSE(MinRopeBase(2, 16).has_value());
}

// Not part of the default run (timing, long contexts):
//   rope_base_bound_test --gtest_also_run_disabled_tests --gtest_filter='*DISABLED_Prints*'
TEST(RopeBaseBoundTest, DISABLED_PrintsBoundsForCommonContexts) {
  for (int64_t dims : {64, 128, 256}) {
    for (int64_t context : {1024, 2048, 4096, 32768, 131072}) {
      const auto start = std::chrono::steady_clock::now();
      const std::optional<RopeBaseBound> b = MinRopeBase(dims, context);
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("d = %3lld, L = %6lld: b* = %.4g (%.1f passes over L, %.2f s)\n",
                  static_cast<long long>(dims), static_cast<long long>(context),
                  b ? b->min_base : 0.0,
                  b ? static_cast<double>(b->num_terms) / (context * dims / 2.0) : 0.0, seconds);
    }
  }
}

}  // namespace
}  // namespace kvserve::engine
