// PanelTasks: how one call of a packed-weight kernel (Bf16Matmul, Int8Matmul) is cut into
// ParallelFor tasks (thread_pool.h), when the call multiplies the same rows by one or several
// weights at once (a layer's q/k/v or gate/up projections: one fork-join instead of three or two).
//
// A weight is a sequence of panels of 16 output columns. Two ways to cut:
//   - Decode (a few rows): every task takes all rows and a contiguous range of one weight's panels,
//     the same length for every task (a multiple of the micro-kernel's panel count `step`), sized
//     so that all the weights together give about `num_tasks` tasks. Tasks are handed out
//     dynamically, so a thread that loses its core on a shared machine does not hold up the call.
//   - Grid (prefill): every weight is cut into row blocks × panel blocks, weights one after
//     another, row-block-major within a weight.
// Which task computes an output element never changes its bits (each kernel fixes the order per
// element), so the cut is free to follow speed.
//
// Thread-safety: a value type; its methods are const and allocation-free.
#ifndef KVSERVE_ENGINE_KERNELS_PANEL_TASKS_H_
#define KVSERVE_ENGINE_KERNELS_PANEL_TASKS_H_

#include <array>
#include <cstdint>

#include "absl/types/span.h"

namespace kvserve::engine {

// Weights one kernel call can take at once (q/k/v is the most the models need).
inline constexpr int kMaxSharedWeights = 4;

struct PanelTask {
  int weight = 0;          // index into the call's weights
  int64_t r0 = 0, r1 = 0;  // rows [r0, r1)
  int64_t p0 = 0, p1 = 0;  // panels [p0, p1) of that weight
};

class PanelTasks {
 public:
  // REQUIRES: 1 <= panels.size() <= kMaxSharedWeights, every entry >= 1; m, step, num_tasks >= 1.
  static PanelTasks Decode(absl::Span<const int64_t> panels, int64_t m, int64_t step,
                           int64_t num_tasks);
  // REQUIRES: as Decode; row_block, panel_block >= 1.
  static PanelTasks Grid(absl::Span<const int64_t> panels, int64_t m, int64_t row_block,
                         int64_t panel_block);

  int64_t size() const { return end_[num_weights_ - 1]; }
  // REQUIRES: 0 <= t < size().
  PanelTask operator[](int64_t t) const;

 private:
  int num_weights_ = 0;
  int64_t m_ = 0;
  int64_t row_block_ = 0;    // grid: rows per block; decode: m
  int64_t panel_block_ = 0;  // panels per task (decode) or per block (grid)
  std::array<int64_t, kMaxSharedWeights> panels_{};
  std::array<int64_t, kMaxSharedWeights> panel_blocks_{};  // per weight
  std::array<int64_t, kMaxSharedWeights> end_{};           // one past each weight's last task
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_KERNELS_PANEL_TASKS_H_
