// ParallelFor: the kernels' fork-join parallelism. The calling thread and a pool of workers it
// owns split a loop of independent tasks.
//
// Why not OpenMP (which the matmul kernels used before): libgomp's workers spin at the end of
// every parallel region, and its region ends with a barrier that waits for every thread of the
// team, including one the OS has descheduled. A decode step runs ~120 short parallel regions (q/k/v
// and gate/up share one each); on a 2-core pod the gRPC threads that send each token (or any
// neighbour) make a third runnable thread, and then a barrier can wait for a whole scheduler slice
// while the spinning threads keep the core. Measured at batch 1 on the SmolLM-135M shape
// (docs/benchmarks.md, "Tail latency"): with one competing process the inter-token latency p99 went
// to ~10x its median and throughput fell 2.6x; with this pool p99 stays at ~1.5x the median. Two
// rules fix this:
//   - the join waits for *tasks*, not threads: tasks are claimed one at a time from a shared
//     counter, the caller claims too, and a worker that has not woken up yet claims nothing, so
//     the call never waits for a thread that is not running one of its tasks;
//   - waiting is bounded: a worker (or the caller waiting for the last tasks) spins for about
//     kSpinMicros (default 50 µs; KVSERVE_KERNEL_SPIN_US overrides it, read once) and then
//     sleeps, so the cores go to other threads between engine steps instead of to spinning.
//
// Contract:
//   - ParallelFor(n, fn) calls fn(i) exactly once for every i in [0, n) and returns when every
//     call has returned. Which thread runs which i is unspecified: callers make each task's
//     result independent of it (the kernels give a task whole output elements, each summed in a
//     fixed order, so batch invariance does not depend on threads).
//   - The thread count is per calling thread, like OpenMP's: SetKernelThreads(n) on a thread sets
//     what its later calls use (default: the CPUs the process may run on). A thread whose count
//     is n > 1 owns n - 1 workers, started at its first call and joined when it exits; an engine
//     thread owns its pool, two engines do not share one.
//   - A call made from inside a task (any pool's worker, or the caller while it runs tasks) runs
//     serially on that thread: no nested parallelism.
//   - No allocation per call (fn is a FunctionRef; the engine's no-allocation tests cover it).
//   - fn must not throw.
//
// Thread-safety: any thread may call ParallelFor; the calls of one thread use that thread's pool.
#ifndef KVSERVE_ENGINE_KERNELS_THREAD_POOL_H_
#define KVSERVE_ENGINE_KERNELS_THREAD_POOL_H_

#include <cstdint>

#include "absl/functional/function_ref.h"

namespace kvserve::engine {

// Runs fn(0) … fn(n - 1) on the calling thread and its workers (see above).
void ParallelFor(int64_t n, absl::FunctionRef<void(int64_t)> fn);

// The calling thread's kernel thread count (itself included), >= 1.
int KernelThreads();

// Sets the calling thread's kernel thread count; n < 1 is taken as 1.
void SetKernelThreads(int n);

// The CPUs this process may run on (its affinity mask), >= 1: the default thread count.
int AvailableCpus();

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_KERNELS_THREAD_POOL_H_
