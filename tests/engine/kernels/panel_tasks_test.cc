// PanelTasks covers every (weight, row, panel) of a call exactly once, in tasks of the promised
// shape: decode tasks take all rows and a panel range that is a multiple of the micro-kernel step
// (except a weight's last one), grid tasks stay inside one row block and one panel block.
#include "engine/kernels/panel_tasks.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

// Counts how often each (weight, row, panel) is covered; every count must be 1.
void ExpectExactCover(const PanelTasks& tasks, const std::vector<int64_t>& panels, int64_t m) {
  std::vector<std::vector<int>> seen(panels.size());
  for (size_t i = 0; i < panels.size(); ++i) seen[i].assign(m * panels[i], 0);
  for (int64_t t = 0; t < tasks.size(); ++t) {
    const PanelTask task = tasks[t];
    ASSERT_GE(task.weight, 0);
    ASSERT_LT(task.weight, static_cast<int>(panels.size()));
    ASSERT_LE(0, task.r0);
    ASSERT_LT(task.r0, task.r1);
    ASSERT_LE(task.r1, m);
    ASSERT_LE(0, task.p0);
    ASSERT_LT(task.p0, task.p1);
    ASSERT_LE(task.p1, panels[task.weight]);
    for (int64_t r = task.r0; r < task.r1; ++r) {
      for (int64_t p = task.p0; p < task.p1; ++p) ++seen[task.weight][r * panels[task.weight] + p];
    }
  }
  for (size_t i = 0; i < panels.size(); ++i) {
    for (int64_t e = 0; e < m * panels[i]; ++e) {
      ASSERT_EQ(seen[i][e], 1) << "weight " << i << " row " << e / panels[i] << " panel "
                               << e % panels[i];
    }
  }
}

TEST(PanelTasksTest, DecodeCoversEveryPanelOnceInStepMultiples) {
  const std::vector<std::vector<int64_t>> cases = {{36, 12, 12}, {96, 96}, {1},
                                                   {3, 1, 2, 5}, {3072},   {7}};
  for (const auto& panels : cases) {
    for (int64_t m : {1, 2, 4}) {
      for (int64_t step : {3, 8}) {
        for (int64_t num_tasks : {1, 4, 8, 12}) {
          const PanelTasks tasks = PanelTasks::Decode(panels, m, step, num_tasks);
          ExpectExactCover(tasks, panels, m);
          for (int64_t t = 0; t < tasks.size(); ++t) {
            const PanelTask task = tasks[t];
            EXPECT_EQ(task.r0, 0);
            EXPECT_EQ(task.r1, m);
            if (task.p1 < panels[task.weight]) {
              EXPECT_EQ((task.p1 - task.p0) % step, 0);
            }
          }
          // One task per thread's share of the panels: never more tasks than panels need.
          EXPECT_LE(tasks.size(), num_tasks + static_cast<int64_t>(panels.size()) - 1);
          if (num_tasks == 1) {
            EXPECT_EQ(tasks.size(), static_cast<int64_t>(panels.size()));
          }
        }
      }
    }
  }
}

TEST(PanelTasksTest, GridCoversEveryRowAndPanelOnceInsideItsBlocks) {
  const std::vector<std::vector<int64_t>> cases = {{36, 12, 12}, {96, 96}, {1}, {17, 4}};
  for (const auto& panels : cases) {
    for (int64_t m : {5, 64, 65, 200, 512}) {
      const int64_t row_block = 64, panel_block = 12;
      const PanelTasks tasks = PanelTasks::Grid(panels, m, row_block, panel_block);
      ExpectExactCover(tasks, panels, m);
      int64_t want = 0;
      for (int64_t p : panels) want += (m + row_block - 1) / row_block * ((p + 11) / 12);
      EXPECT_EQ(tasks.size(), want);
      for (int64_t t = 0; t < tasks.size(); ++t) {
        const PanelTask task = tasks[t];
        EXPECT_EQ(task.r0 % row_block, 0);
        EXPECT_EQ(task.p0 % panel_block, 0);
        EXPECT_LE(task.r1 - task.r0, row_block);
        EXPECT_LE(task.p1 - task.p0, panel_block);
      }
    }
  }
}

}  // namespace
}  // namespace kvserve::engine
