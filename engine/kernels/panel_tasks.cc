#include "engine/kernels/panel_tasks.h"

#include <algorithm>

namespace kvserve::engine {

PanelTasks PanelTasks::Decode(absl::Span<const int64_t> panels, int64_t m, int64_t step,
                              int64_t num_tasks) {
  int64_t total = 0;
  for (int64_t p : panels) total += p;
  // One row block of all m rows, panel blocks of a step multiple: the grid cut with those sizes.
  return Grid(panels, m, m, ((total + num_tasks - 1) / num_tasks + step - 1) / step * step);
}

PanelTasks PanelTasks::Grid(absl::Span<const int64_t> panels, int64_t m, int64_t row_block,
                            int64_t panel_block) {
  PanelTasks t;
  t.num_weights_ = static_cast<int>(panels.size());
  t.m_ = m;
  t.row_block_ = row_block;
  t.panel_block_ = panel_block;
  const int64_t row_blocks = (m + row_block - 1) / row_block;
  int64_t end = 0;
  for (int i = 0; i < t.num_weights_; ++i) {
    t.panels_[i] = panels[i];
    t.panel_blocks_[i] = (panels[i] + panel_block - 1) / panel_block;
    end += row_blocks * t.panel_blocks_[i];
    t.end_[i] = end;
  }
  return t;
}

PanelTask PanelTasks::operator[](int64_t t) const {
  PanelTask task;
  while (t >= end_[task.weight]) ++task.weight;
  const int64_t local = t - (task.weight == 0 ? 0 : end_[task.weight - 1]);
  const int64_t rb = local / panel_blocks_[task.weight];
  const int64_t pb = local % panel_blocks_[task.weight];
  task.r0 = rb * row_block_;
  task.r1 = std::min(m_, task.r0 + row_block_);
  task.p0 = pb * panel_block_;
  task.p1 = std::min(panels_[task.weight], task.p0 + panel_block_);
  return task;
}

}  // namespace kvserve::engine
