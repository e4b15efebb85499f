// StreamBudget: what the output streams of one server share, over both APIs: gRPC Generate
// streams (server/generate_reactor.h) and OpenAI HTTP calls (server/http_generation.h).
//
//   - How many gRPC streams are open: the drain (KvServer::Shutdown) keeps the listener, and so
//     health checks, up until none is left or its deadline passes (HTTP calls are counted by
//     HttpServer::AwaitIdle instead).
//   - How many bytes of generated output they hold that their clients have not taken yet, measured
//     by EventBytes: for gRPC, output waiting for the stream's one write in flight plus that
//     write's message until gRPC reports it sent; for HTTP, output waiting in the call's pending
//     buffers plus the chunk the connection thread is writing until the write returns (bytes the
//     kernel has accepted are the kernel's to bound). Exported as kvserve_stream_buffered_bytes
//     and bounded, per stream (one gRPC stream, one HTTP call) and per server, by backpressure: a
//     stream whose unsent output reaches max_stream_bytes, or any stream with unsent output while
//     the server's total is at max_server_bytes, asks the engine to hold its requests
//     (Engine::SetHeld): no engine step, cache kept, until its client reads.
//
// Bound: a stream holds at most max_stream_bytes + one engine event per sample; for gRPC add the
// message in flight (itself at most that). The server total exceeds max_server_bytes by at most
// one event per running sample (the sink sees its own event before it can hold).
//
// A stream decides whether to hold only when something happens to it: one of its own events, or
// one of its own writes completing. So a stream held because the server's total reached
// max_server_bytes is not let go when other streams drain; it resumes when its own client reads
// (its write completes and MustHold is asked again), like a stream held by its own limit.
//
// A held stream keeps its engine slot and cache; with an idle timeout (--stream-idle-timeout,
// server/stream_idle_timeout.h) a stream whose hold lasts longer than that, its client taking
// nothing, is ended: StartIdleClock when a stream starts holding, StopIdleClock when it lets go or
// ends.
//
// Thread-safety: every method may be called from any thread.
#ifndef KVSERVE_SERVER_STREAM_BUDGET_H_
#define KVSERVE_SERVER_STREAM_BUDGET_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/request.h"
#include "server/stream_idle_timeout.h"

namespace prometheus {
class Gauge;
}  // namespace prometheus

namespace kvserve::server {

class StreamBudget {
 public:
  // `gauge` (may be null) mirrors buffered_bytes(); `idle_timeout` null: held streams wait for
  // their clients however long. REQUIRES: both limits >= 1.
  StreamBudget(int64_t max_stream_bytes, int64_t max_server_bytes, prometheus::Gauge* gauge,
               std::unique_ptr<StreamIdleTimeout> idle_timeout = nullptr);

  // A stream started / ended (its reactor's OnDone).
  void Open();
  void Close();
  int64_t num_open() const;
  // Blocks until no stream is open or `deadline` passes; true when none is open.
  bool WaitUntilAllClosed(absl::Time deadline);

  // What an event adds to a stream's buffer, in bytes of memory: the measure both APIs count
  // (token ids, text, logprobs; not the wire encoding, which the client takes at its own pace).
  static int64_t EventBytes(const engine::TokenEvent& event);

  // Bytes a stream took in (delta > 0) or let go of (delta < 0).
  void AddBuffered(int64_t delta);
  int64_t buffered_bytes() const { return buffered_bytes_.load(); }

  // Whether a stream with `unsent` bytes not yet handed to gRPC must stop generating.
  bool MustHold(int64_t unsent) const {
    return unsent >= max_stream_bytes_ || (unsent > 0 && buffered_bytes() >= max_server_bytes_);
  }

  int64_t max_stream_bytes() const { return max_stream_bytes_; }
  int64_t max_server_bytes() const { return max_server_bytes_; }

  // A stream started holding: StreamIdleTimeout::Start with an `expire` that runs
  // `stream->OnIdleTimeout(key)` (see StreamIdleTimeout::Expire) while the stream exists; 0 (no
  // clock) without an idle timeout.
  template <typename Stream>
  StreamIdleTimeout::Key StartIdleClock(std::weak_ptr<Stream> stream) {
    if (idle_timeout_ == nullptr) return 0;
    return idle_timeout_->Start(
        [stream = std::move(stream)](StreamIdleTimeout::Key key) -> std::optional<std::string> {
          const std::shared_ptr<Stream> alive = stream.lock();
          return alive == nullptr ? std::nullopt : alive->OnIdleTimeout(key);
        });
  }
  // The stream let go of its hold or ended: StreamIdleTimeout::Stop (0: nothing to stop).
  void StopIdleClock(StreamIdleTimeout::Key key);
  // Null without an idle timeout.
  StreamIdleTimeout* idle_timeout() const { return idle_timeout_.get(); }

 private:
  const int64_t max_stream_bytes_;
  const int64_t max_server_bytes_;
  prometheus::Gauge* const gauge_;
  std::atomic<int64_t> buffered_bytes_{0};
  mutable absl::Mutex mu_;
  int64_t num_open_ ABSL_GUARDED_BY(mu_) = 0;
  // Last: its thread, which runs the streams' callbacks, is joined first.
  const std::unique_ptr<StreamIdleTimeout> idle_timeout_;
};

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_STREAM_BUDGET_H_
