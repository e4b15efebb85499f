// Clock: the engine's one time source. Request timings (engine_observer.h), deadlines and the
// server's arrival stamps all read it, so a test that injects a fake clock controls every interval.
#ifndef KVSERVE_ENGINE_CLOCK_H_
#define KVSERVE_ENGINE_CLOCK_H_

#include <chrono>

namespace kvserve::engine {

using SteadyTime = std::chrono::steady_clock::time_point;

// The engine's time source for request timings. Production uses steady_clock; tests inject a fake.
// Thread-safety: Now() is called from the engine thread and from Submit's callers.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual SteadyTime Now() const = 0;
};

class SteadyClock final : public Clock {
 public:
  SteadyTime Now() const override { return std::chrono::steady_clock::now(); }
};

inline double SecondsBetween(SteadyTime from, SteadyTime to) {
  return std::chrono::duration<double>(to - from).count();
}

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_CLOCK_H_
