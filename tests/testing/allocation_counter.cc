#include "tests/testing/allocation_counter.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
// Atomic: engine tests count allocations made on the engine thread.
std::atomic<std::size_t> g_num_allocations{0};
}  // namespace

// noinline: once inlined, GCC 12 pairs the callers' `new` with our free() and warns
// (-Wmismatched-new-delete) at -O2.
[[gnu::noinline]] void* operator new(std::size_t size) {
  g_num_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace kvserve::testing {

std::size_t NumAllocations() { return g_num_allocations.load(std::memory_order_relaxed); }

}  // namespace kvserve::testing
