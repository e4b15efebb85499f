#include "engine/kernels/thread_pool.h"

#include <atomic>
#include <cstdint>
#include <set>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "tests/testing/allocation_counter.h"

namespace kvserve::engine {
namespace {

// Runs ParallelFor(n) and returns how many times each index was called.
std::vector<int> CallCounts(int64_t n) {
  std::vector<std::atomic<int>> counts(n);
  ParallelFor(n, [&](int64_t i) { counts[i].fetch_add(1, std::memory_order_relaxed); });
  std::vector<int> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = counts[i].load();
  return out;
}

TEST(ThreadPoolTest, EveryIndexRunsExactlyOnceForAnySizeAndThreadCount) {
  for (int threads : {1, 2, 3, 5}) {
    SetKernelThreads(threads);
    EXPECT_EQ(KernelThreads(), threads);
    for (int64_t n : {0, 1, 2, 3, 7, 64, 1000}) {
      EXPECT_EQ(CallCounts(n), std::vector<int>(n, 1)) << n << " tasks, " << threads << " threads";
    }
  }
  SetKernelThreads(1);
}

// 200,000 back-to-back jobs of a few tasks each: the shape of a decode step (~150 short
// calls). A task of one job claimed or counted in another would show as a wrong count.
TEST(ThreadPoolTest, BackToBackJobsNeverMixTheirTasks) {
  SetKernelThreads(3);
  for (int job = 0; job < 200000; ++job) {
    const int64_t n = 1 + job % 9;
    std::vector<int> counts(n, 0);
    std::atomic<int64_t> sum{0};
    ParallelFor(n, [&](int64_t i) {
      ++counts[i];  // each index is touched by one thread only
      sum.fetch_add(job * 100 + i, std::memory_order_relaxed);
    });
    ASSERT_EQ(counts, std::vector<int>(n, 1)) << "job " << job;
    ASSERT_EQ(sum.load(), n * job * 100 + n * (n - 1) / 2) << "job " << job;
  }
  SetKernelThreads(1);
}

// A call from inside a task runs serially on that thread (no nested pools, no deadlock).
TEST(ThreadPoolTest, NestedCallsRunOnTheCallingThread) {
  SetKernelThreads(2);
  std::vector<std::atomic<int>> counts(8 * 8);
  std::atomic<bool> nested_left_its_thread{false};
  ParallelFor(8, [&](int64_t i) {
    const std::thread::id outer = std::this_thread::get_id();
    ParallelFor(8, [&](int64_t j) {
      if (std::this_thread::get_id() != outer) nested_left_its_thread = true;
      counts[i * 8 + j].fetch_add(1);
    });
  });
  for (auto& c : counts) EXPECT_EQ(c.load(), 1);
  EXPECT_FALSE(nested_left_its_thread.load());
  SetKernelThreads(1);
}

// Thread counts are per calling thread, and two threads calling at once each use their own pool
// (two engines in one process).
TEST(ThreadPoolTest, EachCallingThreadHasItsOwnCountAndPool) {
  SetKernelThreads(1);
  std::vector<std::vector<int>> results(2);
  std::vector<int> seen_threads(2);
  std::vector<std::thread> callers;
  for (int c = 0; c < 2; ++c) {
    callers.emplace_back([&, c] {
      SetKernelThreads(2 + c);
      seen_threads[c] = KernelThreads();
      std::vector<int> all;
      for (int job = 0; job < 2000; ++job) {
        std::vector<int> counts = CallCounts(5);
        all.insert(all.end(), counts.begin(), counts.end());
      }
      results[c] = all;
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(KernelThreads(), 1);  // untouched by the other threads
  EXPECT_EQ(seen_threads, (std::vector<int>{2, 3}));
  for (const auto& r : results) EXPECT_EQ(r, std::vector<int>(2000 * 5, 1));
}

// Which thread runs which task varies; the work of a call is spread over the caller and its
// workers. With tasks that wait for each other, two threads must have taken part.
TEST(ThreadPoolTest, WorkersTakePartInACall) {
  SetKernelThreads(2);
  std::atomic<int> arrived{0};
  absl::Mutex mu;
  std::set<std::thread::id> ids;
  ParallelFor(2, [&](int64_t) {
    {
      absl::MutexLock lock(&mu);
      ids.insert(std::this_thread::get_id());
    }
    arrived.fetch_add(1);
    // Task 0 and task 1 can only both finish if two threads run them at the same time.
    while (arrived.load() < 2) std::this_thread::yield();
  });
  EXPECT_EQ(ids.size(), 2u);
  SetKernelThreads(1);
}

TEST(ThreadPoolTest, ACallAllocatesNothingOnceThePoolExists) {
  SetKernelThreads(2);
  std::atomic<int64_t> sum{0};
  auto task = [&](int64_t i) { sum.fetch_add(i); };
  ParallelFor(16, task);  // starts the workers
  const std::size_t before = kvserve::testing::NumAllocations();
  for (int i = 0; i < 100; ++i) ParallelFor(16, task);
  EXPECT_EQ(kvserve::testing::NumAllocations(), before);
  EXPECT_EQ(sum.load(), 101 * 120);
  SetKernelThreads(1);
}

TEST(ThreadPoolTest, ThreadCountsBelowOneMeanOne) {
  SetKernelThreads(0);
  EXPECT_EQ(KernelThreads(), 1);
  SetKernelThreads(-4);
  EXPECT_EQ(KernelThreads(), 1);
  EXPECT_GE(AvailableCpus(), 1);
}

}  // namespace
}  // namespace kvserve::engine
