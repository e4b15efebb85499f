#include "engine/kernels/thread_pool.h"

#include <sched.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kvserve::engine {
namespace {

using Task = absl::FunctionRef<void(int64_t)>;

// How long a waiting thread spins before it sleeps (see the header).
std::chrono::microseconds SpinTime() {
  static const std::chrono::microseconds spin = [] {
    const char* value = std::getenv("KVSERVE_KERNEL_SPIN_US");
    if (value == nullptr || *value == '\0') return std::chrono::microseconds(50);
    char* end = nullptr;
    const long us = std::strtol(value, &end, 10);
    return std::chrono::microseconds(*end == '\0' && us >= 0 && us <= 1000000 ? us : 50);
  }();
  return spin;
}

inline void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// Spins until done() or the spin time has passed; returns done().
template <typename Done>
bool SpinUntil(Done done) {
  const auto spin = SpinTime();
  if (spin.count() == 0) return done();
  const auto deadline = std::chrono::steady_clock::now() + spin;
  for (int i = 1;; ++i) {
    if (done()) return true;
    CpuRelax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() >= deadline) return done();
  }
}

// True on a pool's workers always, and on a caller while it runs tasks: ParallelFor then runs
// serially.
thread_local bool t_in_task = false;

// The task index of a claim word while a job is being published: above any task count.
constexpr uint64_t kClosed = 0xFFFFFFFF;

// One calling thread's workers. Only the owning thread calls Run.
//
// A job is published in four steps: claim_ = (generation << 32 | kClosed), which no claim can
// advance; the fields (fn_, finished_, n_); claim_ = (generation << 32 | 0) with release; then
// generation_. A task is claimed by a compare-exchange on claim_ that also checks the
// generation, so a worker that read an older job's generation claims nothing of a newer one, and
// a successful claim proves its job is still running (a job ends only after all of its tasks are
// claimed and finished), which is why fn_ and n_ read after it are the job's own. The closing
// store matters: without it a worker holding the old job's final word (g, n_old) could read the
// new, larger n_ and claim index n_old under the old generation while the caller is still
// publishing (a stress run of ~10^9 jobs found it: a task ran twice, the count overshot and the
// caller slept forever).
class Pool {
 public:
  explicit Pool(int workers) {
    threads_.reserve(workers);
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { WorkerLoop(); });
  }

  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  int workers() const { return static_cast<int>(threads_.size()); }

  void Run(int64_t n, Task fn) {
    const uint32_t gen = ++last_generation_;
    // Close the previous job first: its claim word still reads (old generation, its n), and a
    // worker that checked an index against the *new* n_ could otherwise still claim it.
    claim_.store(uint64_t{gen} << 32 | kClosed, std::memory_order_seq_cst);
    fn_.store(&fn, std::memory_order_relaxed);
    finished_.store(0, std::memory_order_relaxed);
    n_.store(static_cast<uint32_t>(n), std::memory_order_release);
    claim_.store(uint64_t{gen} << 32, std::memory_order_release);
    generation_.store(gen, std::memory_order_seq_cst);
    // Dekker pairing with WorkerLoop: it counts itself a sleeper, then rereads generation_.
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(mu_);
      wake_.notify_all();
    }
    t_in_task = true;
    RunTasks(gen);
    t_in_task = false;
    const auto all_done = [&] { return finished_.load(std::memory_order_seq_cst) == n; };
    if (SpinUntil(all_done)) return;
    std::unique_lock<std::mutex> lock(done_mu_);
    caller_sleeping_.store(true, std::memory_order_seq_cst);
    done_.wait(lock, all_done);
    caller_sleeping_.store(false, std::memory_order_relaxed);
  }

 private:
  // Claims and runs tasks of job `gen` until none is left or a newer job has started.
  void RunTasks(uint32_t gen) {
    uint64_t c = claim_.load(std::memory_order_acquire);
    // n_ is read with acquire: a worker that sees a newer job's n_ then sees that job's
    // closing store of claim_, and its compare-exchange fails.
    while (static_cast<uint32_t>(c >> 32) == gen &&
           static_cast<uint32_t>(c) < n_.load(std::memory_order_acquire)) {
      if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
        continue;
      }
      const uint32_t n = n_.load(std::memory_order_relaxed);
      (*fn_.load(std::memory_order_relaxed))(static_cast<int64_t>(static_cast<uint32_t>(c)));
      // Dekker pairing with Run: it says it sleeps, then rereads finished_.
      if (finished_.fetch_add(1, std::memory_order_seq_cst) + 1 == n &&
          caller_sleeping_.load(std::memory_order_seq_cst)) {
        std::lock_guard<std::mutex> lock(done_mu_);
        done_.notify_one();
      }
      c = claim_.load(std::memory_order_acquire);
    }
  }

  void WorkerLoop() {
    t_in_task = true;
    uint32_t seen = 0;
    for (;;) {
      const auto changed = [&] { return generation_.load(std::memory_order_seq_cst) != seen; };
      if (!SpinUntil(changed)) {
        std::unique_lock<std::mutex> lock(mu_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, [&] { return stop_ || changed(); });
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
        if (stop_) return;
      }
      seen = generation_.load(std::memory_order_acquire);
      RunTasks(seen);
    }
  }

  uint32_t last_generation_ = 0;  // the owner's counter of published jobs
  std::atomic<const Task*> fn_{nullptr};
  std::atomic<uint32_t> n_{0};
  std::atomic<uint64_t> claim_{0};  // generation << 32 | next unclaimed task
  std::atomic<uint32_t> finished_{0};
  std::atomic<uint32_t> generation_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_sleeping_{false};
  std::mutex mu_;  // with wake_: workers sleeping for the next job; guards stop_
  std::condition_variable wake_;
  bool stop_ = false;
  std::mutex done_mu_;  // with done_: the caller sleeping for the last tasks
  std::condition_variable done_;
  std::vector<std::thread> threads_;
};

struct ThreadState {
  int threads = AvailableCpus();
  std::unique_ptr<Pool> pool;  // threads - 1 workers, once a call needed them
};

ThreadState& State() {
  thread_local ThreadState state;
  return state;
}

}  // namespace

int AvailableCpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

int KernelThreads() { return State().threads; }

void SetKernelThreads(int n) { State().threads = n < 1 ? 1 : n; }

void ParallelFor(int64_t n, Task fn) {
  if (n <= 0) return;
  if (n == 1 || t_in_task || n >= static_cast<int64_t>(kClosed) || State().threads <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  ThreadState& state = State();
  if (state.pool == nullptr || state.pool->workers() != state.threads - 1) {
    state.pool.reset();
    state.pool = std::make_unique<Pool>(state.threads - 1);
  }
  state.pool->Run(n, fn);
}

}  // namespace kvserve::engine
