// StreamIdleTimeout on a fake clock: which holds expire, in which order, and what is counted. The
// clock only moves when a test moves it, and CheckNow returns once the timer's thread has
// dispatched everything due, so nothing here depends on timing.
#include "server/stream_idle_timeout.h"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "tests/testing/fake_clock.h"

namespace kvserve::server {
namespace {

using ::kvserve::testing::FakeClock;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr seconds kTimeout(10);

class StreamIdleTimeoutTest : public ::testing::Test {
 protected:
  // A hold whose stream records its expiry and, if `ends`, says it ended.
  StreamIdleTimeout::Key Hold(const std::string& name, bool ends = true) {
    return timer_.Start([this, name, ends](StreamIdleTimeout::Key) -> std::optional<std::string> {
      absl::MutexLock lock(&mu_);
      expired_.push_back(name);
      if (!ends) return std::nullopt;
      return name;
    });
  }
  std::vector<std::string> Expired() {
    absl::MutexLock lock(&mu_);
    return expired_;
  }
  // Moves the clock and waits for the timer to act on it.
  void AdvanceAndCheck(seconds by) {
    clock_->Advance(by);
    timer_.CheckNow();
  }

  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  prometheus::Counter counter_;
  absl::Mutex mu_;
  std::vector<std::string> expired_ ABSL_GUARDED_BY(mu_);
  StreamIdleTimeout timer_{kTimeout, clock_, &counter_};  // last: its thread calls the above
};

TEST_F(StreamIdleTimeoutTest, HoldsExpireInTheOrderTheyStartedOnceTheTimeoutHasPassed) {
  Hold("a");
  AdvanceAndCheck(seconds(3));
  Hold("b");
  AdvanceAndCheck(seconds(2));
  Hold("c");
  EXPECT_EQ(timer_.num_pending(), 3);

  // t = 9: nothing has been held for 10 s yet.
  AdvanceAndCheck(seconds(4));
  EXPECT_THAT(Expired(), IsEmpty());
  // t = 10: "a" exactly at its timeout.
  AdvanceAndCheck(seconds(1));
  EXPECT_THAT(Expired(), ElementsAre("a"));
  // t = 20: the other two, oldest first, in one check.
  AdvanceAndCheck(seconds(10));
  EXPECT_THAT(Expired(), ElementsAre("a", "b", "c"));
  EXPECT_EQ(timer_.num_pending(), 0);
  EXPECT_EQ(timer_.num_timeouts(), 3);
  EXPECT_EQ(counter_.Value(), 3);
}

TEST_F(StreamIdleTimeoutTest, AStoppedHoldNeverExpires) {
  const StreamIdleTimeout::Key a = Hold("a");
  Hold("b");
  timer_.Stop(a);
  EXPECT_EQ(timer_.num_pending(), 1);
  AdvanceAndCheck(seconds(100));
  EXPECT_THAT(Expired(), ElementsAre("b"));
  // Stopping again, or stopping an expired hold, changes nothing.
  timer_.Stop(a);
  timer_.Stop(a + 1);
  timer_.Stop(0);
  EXPECT_EQ(timer_.num_timeouts(), 1);
}

TEST_F(StreamIdleTimeoutTest, AStreamThatLetsGoAndHoldsAgainStartsItsClockAgain) {
  StreamIdleTimeout::Key held = Hold("a");
  AdvanceAndCheck(seconds(8));
  // The client read: the hold ends, and a new one starts when the stream fills up again.
  timer_.Stop(held);
  held = Hold("a");
  AdvanceAndCheck(seconds(8));  // 16 s since the first hold, 8 s into this one
  EXPECT_THAT(Expired(), IsEmpty());
  AdvanceAndCheck(seconds(2));
  EXPECT_THAT(Expired(), ElementsAre("a"));
}

TEST_F(StreamIdleTimeoutTest, AStreamThatWasNotEndedIsNotCounted) {
  Hold("read just in time", /*ends=*/false);
  Hold("idle");
  AdvanceAndCheck(kTimeout);
  EXPECT_THAT(Expired(), ElementsAre("read just in time", "idle"));
  EXPECT_EQ(timer_.num_timeouts(), 1);
  EXPECT_EQ(counter_.Value(), 1);
}

TEST_F(StreamIdleTimeoutTest, AnExpiryMayStopAndStartHoldsOfItsOwn) {
  // What a stream's callback does under its own lock: the timer holds none of its own meanwhile.
  StreamIdleTimeout::Key later = 0;
  timer_.Start([&](StreamIdleTimeout::Key key) -> std::optional<std::string> {
    timer_.Stop(key);
    later = Hold("started by the first");
    return "first";
  });
  AdvanceAndCheck(kTimeout);
  EXPECT_NE(later, 0u);
  EXPECT_EQ(timer_.num_pending(), 1);
  AdvanceAndCheck(kTimeout);
  EXPECT_THAT(Expired(), ElementsAre("started by the first"));
  EXPECT_EQ(timer_.num_timeouts(), 2);
}

// The thread's own sleep, with no CheckNow: it wakes at the first expiry by itself.
TEST(StreamIdleTimeoutSteadyClockTest, AHoldExpiresWithoutBeingChecked) {
  absl::Notification expired;  // first: outlives the timer's thread
  StreamIdleTimeout timer(std::chrono::milliseconds(1), nullptr, nullptr);
  timer.Start([&expired](StreamIdleTimeout::Key) -> std::optional<std::string> {
    expired.Notify();
    return "a";
  });
  // Bounded: a broken timer fails here instead of hanging the test.
  EXPECT_TRUE(expired.WaitForNotificationWithTimeout(absl::Seconds(60)));
}

TEST(StreamIdleTimeoutDestructionTest, PendingHoldsAreDroppedWithoutRunning) {
  auto clock = std::make_shared<FakeClock>();
  bool ran = false;
  {
    StreamIdleTimeout timer(kTimeout, clock, nullptr);
    timer.Start([&ran](StreamIdleTimeout::Key) -> std::optional<std::string> {
      ran = true;
      return "a";
    });
    timer.CheckNow();
  }
  clock->Advance(kTimeout);
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace kvserve::server
