#include "server/stream_idle_timeout.h"

#include <utility>

#include "absl/time/time.h"
#include "base/logging.h"
#include "prometheus/counter.h"

namespace kvserve::server {

StreamIdleTimeout::StreamIdleTimeout(std::chrono::steady_clock::duration timeout,
                                     std::shared_ptr<const engine::Clock> clock,
                                     prometheus::Counter* counter)
    : timeout_(timeout),
      clock_(clock != nullptr ? std::move(clock) : std::make_shared<engine::SteadyClock>()),
      counter_(counter) {
  KV_CHECK(timeout > std::chrono::steady_clock::duration::zero());
  thread_ = std::thread([this] { Run(); });
}

StreamIdleTimeout::~StreamIdleTimeout() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    wake_.Signal();
  }
  thread_.join();
}

StreamIdleTimeout::Key StreamIdleTimeout::Start(Expire expire) {
  absl::MutexLock lock(&mu_);
  const Key key = next_key_++;
  // The thread sleeps without a deadline while nothing is held; any later hold expires after this
  // one, so only the first needs to wake it.
  if (holds_.empty()) wake_.Signal();
  // Read under mu_, so that keys and expiries increase together.
  holds_.emplace(key, Hold{clock_->Now() + timeout_, std::move(expire)});
  return key;
}

void StreamIdleTimeout::Stop(Key key) {
  absl::MutexLock lock(&mu_);
  holds_.erase(key);
}

void StreamIdleTimeout::CheckNow() {
  absl::MutexLock lock(&mu_);
  const uint64_t check = ++checks_requested_;
  wake_.Signal();
  auto answered = [this, check]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return checks_done_ >= check || stopping_;
  };
  mu_.Await(absl::Condition(&answered));
}

int64_t StreamIdleTimeout::num_pending() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(holds_.size());
}

int64_t StreamIdleTimeout::num_timeouts() const {
  absl::MutexLock lock(&mu_);
  return num_timeouts_;
}

void StreamIdleTimeout::Run() {
  mu_.Lock();
  while (!stopping_) {
    // Read before the clock: whatever a CheckNow saw on the clock, this pass sees too.
    const uint64_t checks = checks_requested_;
    const engine::SteadyTime now = clock_->Now();
    if (!holds_.empty() && holds_.begin()->second.expiry <= now) {
      auto first = holds_.begin();
      const Key key = first->first;
      Hold hold = std::move(first->second);
      holds_.erase(first);
      // Without mu_: the callback takes its stream's mutex, under which that stream calls Stop.
      mu_.Unlock();
      const std::optional<std::string> ended = hold.expire(key);
      if (ended.has_value()) {
        if (counter_ != nullptr) counter_->Increment();
        KV_LOG(INFO) << "--stream-idle-timeout: ended " << *ended
                     << ", whose client took no output for "
                     << std::chrono::duration<double>(timeout_).count() << " s";
      }
      mu_.Lock();
      if (ended.has_value()) ++num_timeouts_;
      continue;
    }
    checks_done_ = checks;
    if (holds_.empty()) {
      wake_.Wait(&mu_);
    } else {
      // Real time, also under a fake clock: CheckNow wakes the thread when a test moves it.
      wake_.WaitWithTimeout(&mu_, absl::FromChrono(holds_.begin()->second.expiry - now));
    }
  }
  mu_.Unlock();
}

}  // namespace kvserve::server
