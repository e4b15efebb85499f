// Counts global operator new calls in a test binary, so "no allocation per token once warm" is
// checked rather than assumed. Linking a test that calls NumAllocations() pulls in replacements of
// the global operator new/delete (plain malloc/free underneath; sanitizers still see the calls).
#ifndef KVSERVE_TESTS_TESTING_ALLOCATION_COUNTER_H_
#define KVSERVE_TESTS_TESTING_ALLOCATION_COUNTER_H_

#include <cstddef>

namespace kvserve::testing {

// Global operator new calls so far in this process, by every thread (sized operator new only;
// aligned allocations are not counted).
std::size_t NumAllocations();

}  // namespace kvserve::testing

#endif  // KVSERVE_TESTS_TESTING_ALLOCATION_COUNTER_H_
