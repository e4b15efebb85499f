// HttpGeneration: the engine requests of one OpenAI HTTP call (one per prompt, n samples each),
// bridging the engine thread and the HTTP connection thread that serves the call.
//
// The engine pushes TokenEvents into the shared state and never waits: output is appended to the
// choice's pending buffer (so a slow reader gets fewer, larger chunks) and an eventfd is bumped.
// The connection thread sleeps in poll() on that eventfd and on the client's socket, so it wakes
// for new output or the moment the client hangs up (then it cancels the engine requests: within
// one engine step, as for gRPC).
//
// Backpressure (server/stream_budget.h, the budget the gRPC streams share): the call's unsent
// output, measured by StreamBudget::EventBytes, is the output in the pending buffers plus the
// output the connection thread has taken and not yet reported Written (the chunk it is writing to
// the socket). It is counted in the budget from the event until Written or Cancel. When
// StreamBudget::MustHold says so, every request of the call is held in the engine
// (Engine::SetHeld, from the engine thread's OnEvent, so no further token is generated) until a
// Written brings it back under. Bound: a call holds at most max_stream_bytes + one event per
// sample of kvserve memory for a client that does not read; what the kernel accepted from
// sink.write is bounded by the socket's buffers.
//
// Idle timeout (server/stream_idle_timeout.h): a hold that lasts longer ends the call from the
// timer's thread: its requests are cancelled and its output released at once, and the client's
// socket is shut down, so that the connection thread's blocked write fails (or its poll wakes),
// and it ends the call as for a client that hung up. The socket stays open while the call is not
// Cancelled (the connection thread closes it only after the call's response is destroyed, which
// cancels the call), and the timer shuts it down only under the state's mutex, having checked
// that, so it never touches a descriptor that was closed and reused.
//
// Choice index i * n + j is sample j of prompt i (OpenAI's order for a list of prompts).
//
// Thread-safety: Submit, WaitForOutput, Take, Written and Cancel are called by the one connection
// thread; the engine thread only reaches the state through the sinks, the idle timer's thread
// through its callback. All shared state is under a mutex; SetHeld and Cancel are called under it
// (the engine never calls a sink under its own lock), so the engine receives the holds in the
// order they were decided.
#ifndef KVSERVE_SERVER_HTTP_GENERATION_H_
#define KVSERVE_SERVER_HTTP_GENERATION_H_

#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "server/openai_api.h"

namespace kvserve::server {

class StreamBudget;

class HttpGeneration {
 public:
  // Submits `requests` (each with n samples) to `engine`; their unsent output is counted in
  // `budget`. Both must outlive the call. `client_socket` is the connection's (-1: unknown, then
  // an idle timeout cannot interrupt a blocked write, which ends at the write timeout). If one is
  // rejected, those already submitted are cancelled and its error returned (nothing streams).
  static absl::StatusOr<std::unique_ptr<HttpGeneration>> Submit(
      engine::Engine* engine, StreamBudget* budget, std::vector<engine::GenerationRequest> requests,
      int32_t n, int client_socket);
  ~HttpGeneration();  // Cancel()

  enum class Wake { kOutput, kHangup };
  // Blocks until there is output to Take (or the call is over), or until the client socket (if
  // known) reports that the peer closed the connection, or the idle timeout ended the call
  // (kHangup: the client is gone as far as the call is concerned).
  Wake WaitForOutput();

  struct Update {
    // Choices with new output since the last Take, in the order it arrived: (index, delta).
    std::vector<std::pair<int32_t, ChoiceOutput>> deltas;
    bool done = false;    // every choice finished, or an error ended the call
    absl::Status status;  // when done: OK, or the first error (cancelled, aborted, ...)
    Usage usage;          // when done and OK: prompt tokens once per prompt, all completions
    // When done and OK: the finish reason of the choice that finished last (the metrics label).
    engine::FinishReason last_finish_reason = engine::FinishReason::kNone;
    // StreamBudget::EventBytes of the deltas: still counted as unsent until passed to Written.
    int64_t bytes = 0;
  };
  Update Take();

  // The output of an Update (its `bytes`) is no longer kvserve's to hold: its write to the socket
  // returned, or it went into an answer that is sent in full once the call is done (non-streaming:
  // bounded by max_tokens, not by the reader). May let the call's requests go on.
  void Written(int64_t bytes);

  // Cancels every engine request of the call and stops counting its output (idempotent).
  void Cancel();

  int32_t num_choices() const { return num_choices_; }

 private:
  class State;
  class PromptSink;
  HttpGeneration(engine::Engine* engine, std::shared_ptr<State> state, int32_t num_choices)
      : engine_(engine), state_(std::move(state)), num_choices_(num_choices) {}

  engine::Engine* const engine_;
  const std::shared_ptr<State> state_;  // shared with the sinks the engine holds
  const int32_t num_choices_;
  std::vector<engine::RequestId> ids_;
  bool cancelled_ = false;
};

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_HTTP_GENERATION_H_
