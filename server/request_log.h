// RequestLog: one JSON line per finished request (--log-requests), for log pipelines:
//
//   {"time":"2025-06-01T12:00:00.123456Z","event":"request_finished","id":"gen-7","model":"tiny",
//    "status":"length","prompt_tokens":5,"generation_tokens":16,"cached_prompt_tokens":0,
//    "queue_time_s":0.000120,"ttft_s":0.004100,"e2e_s":0.051000}
//
// `status` is the engine's finish reason (length, stop, eos, cancelled, aborted); an interval whose
// end never happened (no token yet) is null. Times are seconds on the engine's monotonic clock,
// defined as for the metrics (server/metrics.h). Nothing is logged per token.
//
// Record() runs on the engine thread and never waits for the output: it formats the line and queues
// it, and a writer thread writes queued lines. If the output stalls and the queue fills up, lines
// are dropped; the writer reports how many with a {"event":"request_log_dropped"} line.
//
// Thread-safety: every method may be called from any thread.
#ifndef KVSERVE_SERVER_REQUEST_LOG_H_
#define KVSERVE_SERVER_REQUEST_LOG_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/engine_observer.h"

namespace kvserve::server {

class RequestLog {
 public:
  // Writes to `fd`, which it does not own (stderr by default).
  explicit RequestLog(int fd = 2, size_t max_queued_lines = 4096);
  // Writes the queued lines, then stops the writer.
  ~RequestLog();
  RequestLog(const RequestLog&) = delete;
  RequestLog& operator=(const RequestLog&) = delete;

  void Record(std::string_view model, const engine::RequestStats& stats);

  // The line Record queues for a request finished at wall time `now`, without the newline.
  static std::string FormatLine(std::string_view model, const engine::RequestStats& stats,
                                absl::Time now);

 private:
  void WriterLoop();
  bool HasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || stopping_;
  }

  const int fd_;
  const size_t max_queued_lines_;
  absl::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  int64_t num_dropped_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;
};

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_REQUEST_LOG_H_
