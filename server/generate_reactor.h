// GenerateReactor: one Generate stream, bridging the engine thread and gRPC's callback threads.
//
// The engine pushes TokenEvents into the reactor's StreamState (a TokenSink) and never waits:
// events produced while a write is in flight are coalesced, per sample, into that sample's next
// message, so a slow reader costs the engine nothing and gets fewer, larger messages; a message
// never mixes samples. At most one write is in flight; Finish is called exactly once, by whichever
// of {the last of the n samples' final events, an engine error, write failure, client cancel} comes
// first; after that no reactor method is called again, so OnDone may delete the reactor while the
// engine still holds the (now inert) StreamState.
//
// Output the client has not taken yet is counted in the server's StreamBudget and bounded by
// backpressure: past the budget's limits the stream holds its request in the engine until the
// client reads (server/stream_budget.h), or, with an idle timeout, until the hold has lasted that
// long: then the stream cancels its request and the call (server/stream_idle_timeout.h).
//
// Thread-safety: StreamState is shared by the engine thread and gRPC threads; all of its state is
// guarded by its mutex, and reactor operations are started outside that mutex.
#ifndef KVSERVE_SERVER_GENERATE_REACTOR_H_
#define KVSERVE_SERVER_GENERATE_REACTOR_H_

#include <chrono>
#include <memory>

#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
#include "kvserve/v1/kvserve.pb.h"
#include "server/metrics.h"

namespace kvserve::server {

class StreamBudget;

class GenerateReactor : public grpc::ServerWriteReactor<kvserve::v1::GenerateResponse> {
 public:
  // Submits `converted` (the call's request, converted by the handler; an error finishes the call
  // at once) to `engine`. `engine` and `metrics` (the model's series; may be null) must outlive the
  // call, which counts its outcome there exactly once. `deadline` is the call's: the engine gets it
  // as GenerationRequest::deadline (converted to the engine's clock), and it tells a cancel caused
  // by the deadline from a client's cancel. `arrival` is when the handler received the call, on
  // the engine's clock, taken before tokenization as vLLM's front end stamps it. With
  // `echo_prompt_ids` the stream's first message carries the prompt's token ids.
  // `budget` (the server's; must outlive the call) counts the stream as open until OnDone and
  // bounds what it buffers. `context` is the call's: an idle timeout cancels the call through it.
  GenerateReactor(grpc::CallbackServerContext* context, engine::Engine* engine,
                  ModelMetrics* metrics, StreamBudget* budget,
                  std::chrono::system_clock::time_point deadline, engine::SteadyTime arrival,
                  absl::StatusOr<engine::GenerationRequest> converted, bool echo_prompt_ids);
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  class StreamState;
  StreamBudget* const budget_;
  std::shared_ptr<StreamState> state_;
};

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_GENERATE_REACTOR_H_
