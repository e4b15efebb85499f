// A clock that moves only when a test moves it (engine/clock.h), for the engine's request timings
// and the server's idle timeout alike.
//
// Thread-safety: Now and Advance may be called from any thread.
#ifndef KVSERVE_TESTS_TESTING_FAKE_CLOCK_H_
#define KVSERVE_TESTS_TESTING_FAKE_CLOCK_H_

#include <chrono>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "engine/clock.h"

namespace kvserve::testing {

class FakeClock final : public engine::Clock {
 public:
  engine::SteadyTime Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(engine::SteadyTime::duration by) {
    absl::MutexLock lock(&mu_);
    now_ += by;
  }

 private:
  mutable absl::Mutex mu_;
  // Far from the epoch, so that times before "now" are representable.
  engine::SteadyTime now_ ABSL_GUARDED_BY(mu_) = engine::SteadyTime{} + std::chrono::hours(1);
};

}  // namespace kvserve::testing

#endif  // KVSERVE_TESTS_TESTING_FAKE_CLOCK_H_
