#include "engine/layers/rope_base_bound.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/logging.h"

// Design note. Checking one base costs up to L·d/2 cos terms, and the bases that pass are windows
// rather than a half line (docs/math.md §3.1), so b* needs a fine upward scan, not a bisection
// from far away. Three things keep that scan cheap:
//   1. Early exit, scanning m downward from L-1: a base fails at the first negative f_b(m) found,
//      and bases below b* have their negatives near L (FindNegative).
//   2. Witnesses: the m that made recent bases fail usually makes the next grid base fail too, so
//      the last kWitnesses such m are tried first, at d/2 terms each, before any full scan.
//   3. Incremental evaluation: cos(mθ_i) and sin(mθ_i) advance by one rotation per row (a complex
//      multiply instead of two libm calls), re-anchored with exact values every kAnchorRows rows
//      so rounding cannot drift (the error stays near 1e-13, against f values of order 1).
// A full scan happens for grid bases that pass every witness: the one that passes outright, and
// those that fail at a new m (which then becomes a witness). Only the final bisection, about
// log2(log(grid_ratio) / relative_precision) ≈ 10 steps, scans bases that may pass.

namespace kvserve::engine {
namespace {

constexpr int kWitnesses = 16;
constexpr int64_t kAnchorRows = 1024;

// Looks for an m < L with f_b(m) < 0, scanning m = L-1, L-2, ..., 0; -1 when there is none.
// Downward, because the slowly turning dims that keep f positive at short range have turned the
// furthest at the top of the range: a base near b* almost always fails close to L, so a downward
// scan finds that in a few rows where an upward one would cross most of the range first.
int64_t FindNegative(double base, int64_t rotary_dims, int64_t context_length, int64_t* terms) {
  const int64_t half = rotary_dims / 2;
  std::vector<double> theta(half), step_cos(half), step_sin(half), c(half), s(half);
  for (int64_t i = 0; i < half; ++i) {
    theta[i] = std::pow(base, -2.0 * static_cast<double>(i) / rotary_dims);
    step_cos[i] = std::cos(theta[i]);
    step_sin[i] = std::sin(theta[i]);
  }
  for (int64_t row = 0; row < context_length; ++row) {
    const int64_t m = context_length - 1 - row;
    if (row % kAnchorRows == 0) {
      for (int64_t i = 0; i < half; ++i) {
        const double angle = static_cast<double>(m) * theta[i];
        c[i] = std::cos(angle);
        s[i] = std::sin(angle);
      }
    }
    double sum[4] = {0, 0, 0, 0};  // independent partial sums, so the loop vectorises
    int64_t i = 0;
    for (; i + 4 <= half; i += 4) {
      for (int64_t k = 0; k < 4; ++k) sum[k] += c[i + k];
    }
    for (; i < half; ++i) sum[0] += c[i];
    *terms += half;
    if ((sum[0] + sum[1]) + (sum[2] + sum[3]) < 0) return m;
    for (i = 0; i < half; ++i) {  // (c, s) <- (c, s) rotated by -θ_i: from m to m - 1
      const double next_c = c[i] * step_cos[i] + s[i] * step_sin[i];
      s[i] = s[i] * step_cos[i] - c[i] * step_sin[i];
      c[i] = next_c;
    }
  }
  return -1;
}

// f_b(m) from the frequencies theta: [d/2].
double F(const std::vector<double>& theta, int64_t m, int64_t* terms) {
  double f = 0;
  for (double t : theta) f += std::cos(static_cast<double>(m) * t);
  *terms += static_cast<int64_t>(theta.size());
  return f;
}

}  // namespace

bool RopeBaseKeepsLongRangeAttention(double base, int64_t rotary_dims, int64_t context_length,
                                     int64_t* terms) {
  KV_CHECK(rotary_dims >= 2 && rotary_dims % 2 == 0 && context_length >= 1 && base > 1);
  int64_t local = 0;
  const bool ok = FindNegative(base, rotary_dims, context_length, &local) < 0;
  if (terms != nullptr) *terms += local;
  return ok;
}

std::optional<RopeBaseBound> MinRopeBase(int64_t rotary_dims, int64_t context_length,
                                         const RopeBaseBoundOptions& options) {
  KV_CHECK(rotary_dims >= 2 && rotary_dims % 2 == 0 && context_length >= 1);
  KV_CHECK(options.grid_ratio > 1 && options.relative_precision > 0);
  RopeBaseBound result;
  int64_t& terms = result.num_terms;
  // (m, the base it failed) most recent first. A dip made by the slow frequencies moves in
  // proportion to b, so each witness is tried at m scaled by the ratio of the two bases as well as
  // at m itself (the fast frequencies make most dips move unpredictably; the downward scan is what
  // keeps those cheap).
  struct Witness {
    int64_t m;
    double found_at;
  };
  std::vector<Witness> witnesses;
  std::vector<double> theta(rotary_dims / 2);  // θ_i of the grid base being tried
  double failing = 0;                          // the last grid base that failed (0: none yet)
  double base = 2.0;
  for (;; base *= options.grid_ratio) {
    if (base > options.max_base || terms > options.max_terms) return std::nullopt;
    bool failed = false;
    for (int64_t i = 0; i < rotary_dims / 2; ++i) {
      theta[i] = std::pow(base, -2.0 * static_cast<double>(i) / rotary_dims);
    }
    for (const Witness& w : witnesses) {
      const int64_t moved = std::min<int64_t>(
          context_length - 1, std::llround(static_cast<double>(w.m) * base / w.found_at));
      if (F(theta, moved, &terms) < 0 || (moved != w.m && F(theta, w.m, &terms) < 0)) {
        failed = true;
        break;
      }
    }
    if (!failed) {
      const int64_t m = FindNegative(base, rotary_dims, context_length, &terms);
      if (m < 0) break;
      witnesses.insert(witnesses.begin(), Witness{m, base});
      if (witnesses.size() > kWitnesses) witnesses.pop_back();
    }
    failing = base;
  }
  if (failing == 0) {  // the very first grid base passes
    result.min_base = base;
    return result;
  }
  // Bisection on log b: lo fails, hi passes.
  double lo = failing, hi = base;
  while (hi / lo > 1 + options.relative_precision) {
    if (terms > options.max_terms) return std::nullopt;
    const double mid = std::sqrt(lo * hi);
    if (FindNegative(mid, rotary_dims, context_length, &terms) < 0) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  result.min_base = hi;
  return result;
}

}  // namespace kvserve::engine
