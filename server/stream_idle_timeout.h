// StreamIdleTimeout: ends output streams whose clients have taken nothing for longer than
// --stream-idle-timeout, with one thread for the whole server.
//
// Backpressure (server/stream_budget.h) stops a stream whose client does not read by holding its
// engine requests, but a held request keeps its running slot, its KV cache and the stream's
// buffered output until the client reads or disconnects: enough never-reading clients would block
// the server for good. So a stream that starts holding calls Start, which records the hold's start
// on the clock, and Stop when it lets go (its client read) or ends; a stream held continuously for
// `timeout` has its `expire` run, which ends it (cancels its engine requests, releases its
// buffered bytes, tears down the call) and names it, or returns nullopt when the stream was let go
// or finished while its expiry was being dispatched and so must be left alone. Streams it ended
// are counted (kvserve_stream_idle_timeouts_total) and logged, one INFO line each: a held request
// keeps its running slot, so at most max-num-seqs streams per model can be held at once and the
// lines are bounded by that number per timeout period.
//
// The clock is injectable (engine/clock.h): a test holds a stream, advances a fake clock past the
// timeout and calls CheckNow, which returns once every stream due at that time has been dispatched.
//
// Design: the timeout is the same for every stream and the clock never goes back, so the order in
// which holds start is the order in which they expire. Entries are kept in a std::map by key, keys
// increase with every Start, and the earliest expiry is the first entry: Start appends, Stop
// erases, and the thread sleeps on a condition variable until the first entry's expiry (woken by a
// Start on an empty map, CheckNow and the destructor).
//
// Thread-safety: every method may be called from any thread. Start and Stop never wait, so a
// stream may call them under its own mutex; `expire` runs on the timer's thread with no lock of the
// timer held, so it may take that stream mutex (lock order: stream mutex, then the timer's).
// CheckNow and the destructor wait for the thread: REQUIRES: neither is called from an `expire`
// callback or while holding a lock that one takes.
#ifndef KVSERVE_SERVER_STREAM_IDLE_TIMEOUT_H_
#define KVSERVE_SERVER_STREAM_IDLE_TIMEOUT_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "engine/clock.h"

namespace prometheus {
class Counter;
}  // namespace prometheus

namespace kvserve::server {

class StreamIdleTimeout {
 public:
  // Identifies one hold; never 0, so 0 can mean "not held".
  using Key = uint64_t;
  // Ends the stream the hold `key` belongs to if that hold is still its current one, and returns
  // the stream's name for the log ("gRPC stream gen-7"); nullopt if it did not end it.
  using Expire = std::function<std::optional<std::string>(Key key)>;

  // `clock` null: steady_clock. `counter` (may be null) counts the streams ended.
  // REQUIRES: timeout > 0.
  StreamIdleTimeout(std::chrono::steady_clock::duration timeout,
                    std::shared_ptr<const engine::Clock> clock, prometheus::Counter* counter);
  // Joins the thread; holds still registered are dropped without running their `expire`.
  ~StreamIdleTimeout();
  StreamIdleTimeout(const StreamIdleTimeout&) = delete;
  StreamIdleTimeout& operator=(const StreamIdleTimeout&) = delete;

  // A stream started holding now: unless Stop(key) comes first, `expire(key)` runs once on the
  // timer's thread when the clock reaches now + timeout.
  Key Start(Expire expire);
  // The hold ended (its client read, or the stream is over). An `expire` already being dispatched
  // still runs: it must find the hold gone and return nullopt. Unknown keys and 0 are ignored.
  void Stop(Key key);

  // Re-reads the clock now and returns once every hold due at that time has had its `expire` run.
  void CheckNow();

  std::chrono::steady_clock::duration timeout() const { return timeout_; }
  // Holds registered and not yet expired or stopped.
  int64_t num_pending() const;
  // Streams ended (an `expire` that named one).
  int64_t num_timeouts() const;

 private:
  struct Hold {
    engine::SteadyTime expiry;
    Expire expire;
  };

  void Run();

  const std::chrono::steady_clock::duration timeout_;
  const std::shared_ptr<const engine::Clock> clock_;
  prometheus::Counter* const counter_;
  mutable absl::Mutex mu_;
  absl::CondVar wake_;
  std::map<Key, Hold> holds_ ABSL_GUARDED_BY(mu_);  // by key, so by expiry
  Key next_key_ ABSL_GUARDED_BY(mu_) = 1;
  // CheckNow calls made / answered: a check is answered once the thread has read the clock after
  // it and dispatched every hold due then.
  uint64_t checks_requested_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t checks_done_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t num_timeouts_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: started once everything above is initialized
};

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_STREAM_IDLE_TIMEOUT_H_
