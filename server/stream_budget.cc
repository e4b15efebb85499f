#include "server/stream_budget.h"

#include <utility>

#include "base/logging.h"
#include "prometheus/gauge.h"

namespace kvserve::server {

StreamBudget::StreamBudget(int64_t max_stream_bytes, int64_t max_server_bytes,
                           prometheus::Gauge* gauge,
                           std::unique_ptr<StreamIdleTimeout> idle_timeout)
    : max_stream_bytes_(max_stream_bytes),
      max_server_bytes_(max_server_bytes),
      gauge_(gauge),
      idle_timeout_(std::move(idle_timeout)) {
  KV_CHECK(max_stream_bytes >= 1 && max_server_bytes >= 1);
}

void StreamBudget::Open() {
  absl::MutexLock lock(&mu_);
  ++num_open_;
}

void StreamBudget::Close() {
  absl::MutexLock lock(&mu_);
  KV_CHECK(num_open_ > 0);
  --num_open_;
}

int64_t StreamBudget::num_open() const {
  absl::MutexLock lock(&mu_);
  return num_open_;
}

bool StreamBudget::WaitUntilAllClosed(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto none_open = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return num_open_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&none_open), deadline);
}

int64_t StreamBudget::EventBytes(const engine::TokenEvent& event) {
  int64_t bytes =
      static_cast<int64_t>(event.token_ids.size() * sizeof(int32_t) + event.text.size());
  for (const engine::TokenLogprobs& logprobs : event.logprobs) {
    bytes += static_cast<int64_t>(sizeof(engine::TokenLogprobs) +
                                  logprobs.top.size() * sizeof(engine::TokenLogprob));
  }
  return bytes;
}

void StreamBudget::AddBuffered(int64_t delta) {
  if (delta == 0) return;
  buffered_bytes_.fetch_add(delta);
  // Increment is atomic: concurrent updates never leave the gauge at a stale total.
  if (gauge_ != nullptr) gauge_->Increment(static_cast<double>(delta));
}

void StreamBudget::StopIdleClock(StreamIdleTimeout::Key key) {
  if (idle_timeout_ != nullptr && key != 0) idle_timeout_->Stop(key);
}

}  // namespace kvserve::server
