// The lower bound of the RoPE base (docs/math.md §3.1; Men et al., "Base of RoPE Bounds Context
// Length", arXiv:2405.14591, 2024; Su, "The road to a better Transformer, part 18: choosing the
// RoPE base", kexue.fm/archives/10122, 2024).
//
// For a head of d rotary dims and base b, θ_i = b^(−2i/d), i < d/2, and
//
//   f_b(m) = Σ_{i<d/2} cos(m θ_i)
//
// is, up to a positive factor, how much more a key similar to the query scores than a random key
// at relative distance m. Long-range attention stays able to single out similar keys only while
// f_b(m) ≥ 0 for every m < L, the context the model was trained on. The bound b*(L) is the
// smallest base for which that holds. The engine uses it for a load-time warning and ListModels;
// nothing at run time depends on it.
//
// Thread-safety: pure functions.
#ifndef KVSERVE_ENGINE_LAYERS_ROPE_BASE_BOUND_H_
#define KVSERVE_ENGINE_LAYERS_ROPE_BASE_BOUND_H_

#include <cstdint>
#include <optional>

namespace kvserve::engine {

struct RopeBaseBoundOptions {
  // Bases are scanned upward on the geometric grid 2·grid_ratio^k. f_b is not monotone in b: the
  // bases that pass form windows (for d = 128, L = 1024: [4293.4, 4331), [5603, 5645), ...), so a
  // window narrower than one grid step can be skipped. The first windows at d = 128 are 0.9%
  // (L = 1k) and 0.5% (L = 2k) wide; the default step is 0.1%.
  double grid_ratio = 1.0 + 1.0 / 1024;
  // The first passing grid base is refined by bisection on log b against the failing grid point
  // below it until the bracket is narrower than this relative width; the upper end is returned.
  double relative_precision = 1e-6;
  // Scanning stops (nullopt) above this base: no base passes at all when d = 2 (θ_0 = 1).
  double max_base = 1e15;
  // Work budget, in cos terms (one term = one i of one m of one base). Exceeded: nullopt.
  int64_t max_terms = int64_t{1} << 34;
};

struct RopeBaseBound {
  double min_base = 0;    // b*(L): f_b(m) >= 0 for all m < L at this base, not just below it
  int64_t num_terms = 0;  // work done, in cos terms
};

// Whether f_base(m) >= 0 for every m in [0, context_length). Adds the terms evaluated to *terms
// when terms is non-null. REQUIRES: rotary_dims >= 2 and even, context_length >= 1, base > 1.
bool RopeBaseKeepsLongRangeAttention(double base, int64_t rotary_dims, int64_t context_length,
                                     int64_t* terms = nullptr);

// b*(context_length) for rotary_dims dims, or nullopt when no base up to max_base passes or the
// work budget runs out. REQUIRES: as above.
std::optional<RopeBaseBound> MinRopeBase(int64_t rotary_dims, int64_t context_length,
                                         const RopeBaseBoundOptions& options = {});

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_LAYERS_ROPE_BASE_BOUND_H_
