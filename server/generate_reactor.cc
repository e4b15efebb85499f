#include "server/generate_reactor.h"

#include <algorithm>
#include <atomic>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/logging.h"
#include "server/proto_convert.h"
#include "server/status_map.h"
#include "server/stream_budget.h"

namespace kvserve::server {

namespace pb = ::kvserve::v1;

namespace {

// A cancel this close to the call's deadline is taken as the deadline's doing: gRPC fires the
// deadline on its own clock, converted to the system clock for ServerContext::deadline().
constexpr std::chrono::milliseconds kDeadlineSlack(10);

// gRPC reports "no deadline" as a far-future time point; one further away than this counts as none.
constexpr std::chrono::hours kNoDeadlineBeyond(24 * 365);

// The call's deadline (system clock) on the engine's clock, given that clock's `steady_now`;
// SteadyTime{} (the engine's "none") when the call has no deadline.
engine::SteadyTime EngineDeadline(std::chrono::system_clock::time_point deadline,
                                  engine::SteadyTime steady_now) {
  const auto system_now = std::chrono::system_clock::now();
  // Compared before subtracting: gRPC's infinite past and future are the time_point extremes.
  if (deadline <= system_now) return steady_now;
  if (deadline - system_now > kNoDeadlineBeyond) return {};
  return steady_now +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(deadline - system_now);
}

}  // namespace

// Design note: the engine sends each of the request's n samples as its own ordered event stream,
// interleaved with the others. Output waiting for the network is buffered per sample, so that
// coalescing never mixes samples (a message belongs to one sample) and memory stays bounded by n
// buffers however slow the client is; `ready_` orders the samples with unsent output by the age of
// their oldest unsent event, so a sample is never starved. The call finishes OK with the message
// that carries the last of the n finished events, or with the first non-OK status at once.
//
// Backpressure: the bytes waiting in the sample buffers (`unsent_bytes_`) and in the message being
// written (`in_flight_bytes_`) are counted in the server's StreamBudget. When
// StreamBudget::MustHold says so, the stream holds its request in the engine (Engine::SetHeld,
// called from OnEvent on the engine thread, so no further token is generated), and lets it go once
// a finished write has drained the buffers: a client that never reads costs a bounded buffer and no
// engine steps. The SetHeld calls are made under mu_, so the engine receives them in the order of
// the decisions. The request's id comes from OnAccepted, before the request is queued: a hold
// decided before Submit has returned to the handler still stops the very next token (waiting for
// Started let the engine run on, unbounded, while the handler thread was descheduled).
//
// Idle timeout: each hold starts the budget's idle clock; a hold that outlasts it runs
// OnIdleTimeout on the timer's thread, which ends the stream as a client cancel would, except that
// the write in flight (which a client that does not read never completes) must be failed first:
// ServerContext::TryCancel. That call needs the context alive, so until it has returned nothing may
// call Finish (after Finish, OnDone may free the call): a Finish decided meanwhile, by OnWriteDone
// or OnCancel (gRPC may run them inline, within TryCancel), is deferred and run by OnIdleTimeout.
class GenerateReactor::StreamState : public engine::TokenSink,
                                     public std::enable_shared_from_this<StreamState> {
 public:
  StreamState(GenerateReactor* reactor, grpc::CallbackServerContext* context,
              engine::Engine* engine, ModelMetrics* metrics, StreamBudget* budget,
              std::chrono::system_clock::time_point deadline)
      : reactor_(reactor),
        context_(context),
        engine_(engine),
        metrics_(metrics),
        budget_(budget),
        deadline_(deadline) {}

  // Submit's thread, before the request is queued: the id holds are sent for.
  void OnAccepted(engine::RequestId id) override {
    absl::MutexLock lock(&mu_);
    id_ = id;
  }

  // What to do with the reactor once the mutex is released.
  enum class Action { kNone, kWrite, kWriteAndFinish, kFinish };

  // Engine thread.
  void OnEvent(engine::TokenEvent event) override {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      if (finish_called_) return;  // client went away or the call already failed
      KV_CHECK(event.index >= 0 && event.index < static_cast<int32_t>(samples_.size()))
          << "sample index " << event.index << " of a request with n = " << samples_.size();
      Sample& sample = samples_[event.index];
      KV_CHECK(!sample.finished) << "event after the last one of sample " << event.index;
      const int64_t bytes = StreamBudget::EventBytes(event);
      sample.bytes += bytes;
      unsent_bytes_ += bytes;
      budget_->AddBuffered(bytes);
      sample.token_ids.insert(sample.token_ids.end(), event.token_ids.begin(),
                              event.token_ids.end());
      for (engine::TokenLogprobs& logprobs : event.logprobs) {
        sample.logprobs.push_back(std::move(logprobs));
      }
      sample.text += event.text;
      if (event.prompt_logprobs.has_value()) prompt_logprobs_ = std::move(event.prompt_logprobs);
      if (event.finished) {
        sample.finished = true;
        sample.finish_reason = event.finish_reason;
        sample.prompt_tokens = event.prompt_tokens;
        sample.completion_tokens = event.completion_tokens;
        last_finish_reason_ = event.finish_reason;
        ++num_finished_;
        // The first error ends the call; cancellation, deadline and shutdown end every sample, so
        // the engine has nothing left to run for it.
        if (!event.status.ok()) {
          if (!final_status_.has_value()) final_status_ = event.status;
        } else if (num_finished_ == static_cast<int32_t>(samples_.size()) &&
                   !final_status_.has_value()) {
          final_status_ = absl::OkStatus();
        }
      }
      const bool has_output = !sample.token_ids.empty() || !sample.text.empty() || sample.finished;
      if (has_output && !sample.queued) {
        sample.queued = true;
        ready_[(ready_head_ + num_ready_) % ready_.size()] = event.index;
        ++num_ready_;
      }
      action = NextActionLocked();
      UpdateHoldLocked();
    }
    Run(action);
  }

  // Handler thread, before Submit: the request's id for the first message, its sample count, and
  // the prompt ids the first message echoes (empty = none).
  void SetRequest(std::string request_id, int32_t n, std::vector<int32_t> echo_prompt_ids) {
    absl::MutexLock lock(&mu_);
    request_id_ = std::move(request_id);
    echo_prompt_ids_ = std::move(echo_prompt_ids);
    // Submit rejects n outside [1, kMaxSamples], and then no event comes.
    samples_.resize(std::clamp(n, 1, engine::kMaxSamples));
    ready_.resize(samples_.size());
  }

  // Handler thread, right after Submit accepted the request. A cancel that raced ahead is
  // forwarded now (not from OnAccepted: a cancel may not reach the engine before its request).
  void Started() {
    bool cancel_now;
    engine::RequestId id;
    {
      absl::MutexLock lock(&mu_);
      started_ = true;
      cancel_now = cancelled_;
      id = id_;
    }
    if (cancel_now) engine_->Cancel(id);
  }

  // OnDone: whatever the stream still buffers is no longer counted (the engine may still hold
  // this state, but it buffers nothing more once the call is finished).
  void Close() {
    absl::MutexLock lock(&mu_);
    finish_called_ = true;
    ReleaseBufferedLocked();
    budget_->StopIdleClock(idle_key_);
    idle_key_ = 0;
  }

  // The timer's thread: the hold `key` lasted the whole idle timeout. Ends the stream if that hold
  // is still on: the request is cancelled and the output released at once, the call cancelled.
  std::optional<std::string> OnIdleTimeout(StreamIdleTimeout::Key key) {
    Action action = Action::kNone;
    bool try_cancel = false;
    std::string name;
    {
      absl::MutexLock lock(&mu_);
      // A stream already ending (finished, or cancelled by its client) is left to that.
      if (finish_called_ || cancelled_ || idle_key_ != key) return std::nullopt;
      idle_key_ = 0;
      name = absl::StrCat("gRPC stream ", request_id_);
      cancelled_ = true;
      if (!final_status_.has_value() || final_status_->ok()) {
        final_status_ =
            absl::CancelledError("--stream-idle-timeout: the client took no output for too long");
      }
      ReleaseBufferedLocked();
      // Under mu_, where the engine is known to be alive (the call is not finished, so the server
      // has not shut down its engines); the engine never calls a sink under its own lock.
      if (started_ && !engine_cancel_sent_) {
        engine_cancel_sent_ = true;
        engine_->Cancel(id_);
      }
      if (!write_in_flight_) {
        finish_called_ = true;
        action = Action::kFinish;
      } else {
        try_cancel = true;
        try_cancel_running_ = true;
      }
    }
    if (try_cancel) {
      // Fails the write in flight: OnWriteDone(false) then decides the Finish (deferred, below).
      context_->TryCancel();
      absl::MutexLock lock(&mu_);
      try_cancel_running_ = false;
      action = deferred_action_;
      deferred_action_ = Action::kNone;
    }
    Run(action);
    return name;
  }

  // Fails the call before anything was submitted.
  void FailNow(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      finish_called_ = true;
    }
    if (metrics_ != nullptr) {
      metrics_->CountFailure(
          FailureReasonFor(status.code(), /*reached_engine=*/false, /*deadline_passed=*/false));
    }
    reactor_->Finish(ToGrpcStatus(status));
  }

  void OnWriteDone(bool ok) {
    Action action = Action::kNone;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      budget_->AddBuffered(-in_flight_bytes_);
      in_flight_bytes_ = 0;
      if (finish_called_) return;
      if (!ok || cancelled_) {
        // The stream is broken (client gone or call cancelled): stop the engine, end the call.
        cancelled_ = true;
        finish_called_ = true;
        action = Action::kFinish;
        // An engine error that was waiting behind this write (e.g. UNAVAILABLE at the drain
        // deadline) is the real outcome; only a clean stream becomes a client cancel.
        if (!final_status_.has_value() || final_status_->ok()) {
          final_status_ = absl::CancelledError("the client cancelled the stream");
        }
      } else {
        action = NextActionLocked();
        UpdateHoldLocked();
      }
      action = DeferWhileTryCancelLocked(action);
    }
    CancelEngineIfNeeded();
    Run(action);
  }

  void OnCancel() {
    Action action = Action::kNone;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      if (!finish_called_ && !write_in_flight_) {
        finish_called_ = true;
        final_status_ = absl::CancelledError("the client cancelled the stream");
        action = Action::kFinish;
      }
      action = DeferWhileTryCancelLocked(action);
    }
    CancelEngineIfNeeded();
    Run(action);
  }

 private:
  // Output of one sample not yet written.
  struct Sample {
    std::vector<int32_t> token_ids;
    std::vector<engine::TokenLogprobs> logprobs;
    std::string text;
    bool queued = false;    // in ready_
    bool finished = false;  // its last event arrived
    int64_t bytes = 0;      // StreamBudget::EventBytes of the events buffered above
    engine::FinishReason finish_reason = engine::FinishReason::kNone;
    int32_t prompt_tokens = 0;
    int32_t completion_tokens = 0;
  };

  Action NextActionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || finish_called_) return Action::kNone;
    if (final_status_.has_value() && !final_status_->ok()) {
      finish_called_ = true;
      return Action::kFinish;
    }
    if (num_ready_ == 0) return Action::kNone;
    const int32_t index = ready_[ready_head_];
    ready_head_ = (ready_head_ + 1) % ready_.size();
    --num_ready_;
    Sample& sample = samples_[index];
    sample.queued = false;
    out_.Clear();
    if (!first_sent_) {
      out_.set_request_id(request_id_);
      out_.mutable_prompt_token_ids()->Add(echo_prompt_ids_.begin(), echo_prompt_ids_.end());
      first_sent_ = true;
    }
    // The engine sets them on the request's first event with output, so they go out with the
    // stream's first message.
    if (prompt_logprobs_.has_value()) {
      PromptLogprobsToProto(*prompt_logprobs_, &out_);
      prompt_logprobs_.reset();
    }
    out_.set_index(index);
    out_.mutable_token_ids()->Add(sample.token_ids.begin(), sample.token_ids.end());
    for (const engine::TokenLogprobs& logprobs : sample.logprobs) {
      ToProto(logprobs, out_.add_logprobs());
    }
    out_.set_text(std::move(sample.text));
    unsent_bytes_ -= sample.bytes;
    in_flight_bytes_ = sample.bytes;
    sample.bytes = 0;
    sample.token_ids.clear();
    sample.logprobs.clear();
    sample.text.clear();
    if (sample.finished) {
      out_.set_finish_reason(ToProto(sample.finish_reason));
      out_.mutable_usage()->set_prompt_tokens(sample.prompt_tokens);
      out_.mutable_usage()->set_completion_tokens(sample.completion_tokens);
      // final_status_ is OK only once every sample has finished.
      if (final_status_.has_value() && num_ready_ == 0) {
        finish_called_ = true;
        return Action::kWriteAndFinish;
      }
    }
    write_in_flight_ = true;
    return Action::kWrite;
  }

  // Holds or lets go of the request as StreamBudget::MustHold says. Only called after an event,
  // so after OnAccepted. A hold starts the idle clock, letting go stops it. A cancelled request
  // keeps its hold until the cancel ends it: letting it go would only buy it another step.
  void UpdateHoldLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (cancelled_) return;
    const bool hold = !finish_called_ && budget_->MustHold(unsent_bytes_);
    if (hold == held_) return;
    held_ = hold;
    engine_->SetHeld(id_, hold);
    budget_->StopIdleClock(idle_key_);
    idle_key_ = 0;
    if (hold) idle_key_ = budget_->StartIdleClock(weak_from_this());
  }

  // Stops counting what the stream buffers (its call is over or being ended).
  void ReleaseBufferedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    budget_->AddBuffered(-(unsent_bytes_ + in_flight_bytes_));
    unsent_bytes_ = 0;
    in_flight_bytes_ = 0;
    for (Sample& sample : samples_) sample.bytes = 0;
  }

  // While OnIdleTimeout's TryCancel runs, a reactor action is left for it to run afterwards.
  Action DeferWhileTryCancelLocked(Action action) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!try_cancel_running_ || action == Action::kNone) return action;
    KV_CHECK(deferred_action_ == Action::kNone) << "two reactor actions during one TryCancel";
    deferred_action_ = action;
    return Action::kNone;
  }

  // Reactor calls happen outside mu_: gRPC may run reactions inline. The two finishing actions
  // count the call's outcome, before the client can see it.
  void Run(Action action) {
    switch (action) {
      case Action::kNone:
        return;
      case Action::kWrite:
        reactor_->StartWrite(&out_);
        return;
      case Action::kWriteAndFinish:
        if (metrics_ != nullptr) {
          absl::MutexLock lock(&mu_);
          metrics_->CountSuccess(last_finish_reason_);
        }
        reactor_->StartWriteAndFinish(&out_, grpc::WriteOptions(), grpc::Status::OK);
        return;
      case Action::kFinish: {
        absl::Status status;
        {
          absl::MutexLock lock(&mu_);
          status = *final_status_;
        }
        if (metrics_ != nullptr) {
          const bool deadline_passed =
              std::chrono::system_clock::now() + kDeadlineSlack >= deadline_;
          metrics_->CountFailure(
              FailureReasonFor(status.code(), /*reached_engine=*/true, deadline_passed));
        }
        reactor_->Finish(ToGrpcStatus(status));
        return;
      }
    }
  }

  void CancelEngineIfNeeded() {
    engine::RequestId id;
    {
      absl::MutexLock lock(&mu_);
      if (engine_cancel_sent_ || !started_ || !cancelled_) return;
      engine_cancel_sent_ = true;
      id = id_;
    }
    engine_->Cancel(id);
  }

  GenerateReactor* const reactor_;  // valid until Finish has been called and OnDone has run
  grpc::CallbackServerContext* const context_;  // the same
  engine::Engine* const engine_;
  ModelMetrics* const metrics_;  // may be null
  StreamBudget* const budget_;
  const std::chrono::system_clock::time_point deadline_;
  absl::Mutex mu_;
  engine::RequestId id_ ABSL_GUARDED_BY(mu_) = 0;  // from OnAccepted
  bool started_ ABSL_GUARDED_BY(mu_) = false;      // Submit returned: cancels may be sent
  std::string request_id_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> echo_prompt_ids_ ABSL_GUARDED_BY(mu_);
  // The request's prompt_logprobs, from the engine event that carried them until written.
  std::optional<std::vector<engine::TokenLogprobs>> prompt_logprobs_ ABSL_GUARDED_BY(mu_);
  std::vector<Sample> samples_ ABSL_GUARDED_BY(mu_);  // one per sample, [0, n)
  // Samples with unsent output, oldest unsent event first: a ring of num_ready_ entries from
  // ready_head_. Each sample is in it at most once, so n slots suffice and nothing is allocated
  // per event.
  std::vector<int32_t> ready_ ABSL_GUARDED_BY(mu_);
  size_t ready_head_ ABSL_GUARDED_BY(mu_) = 0;
  size_t num_ready_ ABSL_GUARDED_BY(mu_) = 0;
  int32_t num_finished_ ABSL_GUARDED_BY(mu_) = 0;  // samples whose last event arrived
  // Set when the call's outcome is known: the first error, or OK once all n samples finished.
  std::optional<absl::Status> final_status_ ABSL_GUARDED_BY(mu_);
  // The finish reason of the sample that finished last: the success label of the call.
  engine::FinishReason last_finish_reason_ ABSL_GUARDED_BY(mu_) = engine::FinishReason::kNone;
  bool first_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool engine_cancel_sent_ ABSL_GUARDED_BY(mu_) = false;
  int64_t unsent_bytes_ ABSL_GUARDED_BY(mu_) = 0;     // in samples_' buffers
  int64_t in_flight_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // in out_, until OnWriteDone
  bool held_ ABSL_GUARDED_BY(mu_) = false;            // the engine was told to hold the request
  StreamIdleTimeout::Key idle_key_ ABSL_GUARDED_BY(mu_) = 0;  // the current hold's idle clock
  // OnIdleTimeout is in TryCancel: Finish must wait (the action that would call it waits here).
  bool try_cancel_running_ ABSL_GUARDED_BY(mu_) = false;
  Action deferred_action_ ABSL_GUARDED_BY(mu_) = Action::kNone;
  // The message being written; gRPC reads it until OnWriteDone / OnDone. Only touched by the thread
  // that set write_in_flight_ / finish_called_, so it needs no lock while a write is in flight.
  pb::GenerateResponse out_;
};

GenerateReactor::GenerateReactor(grpc::CallbackServerContext* context, engine::Engine* engine,
                                 ModelMetrics* metrics, StreamBudget* budget,
                                 std::chrono::system_clock::time_point deadline,
                                 engine::SteadyTime arrival,
                                 absl::StatusOr<engine::GenerationRequest> converted,
                                 bool echo_prompt_ids)
    : budget_(budget),
      state_(std::make_shared<StreamState>(this, context, engine, metrics, budget, deadline)) {
  budget_->Open();
  if (!converted.ok()) {
    state_->FailNow(converted.status());
    return;
  }
  converted->arrival_time = arrival;
  // The engine drops a request whose deadline passed (never prefilling one still queued), rather
  // than relying on the cancel that gRPC's own deadline timer sends.
  converted->deadline = EngineDeadline(deadline, arrival);
  static std::atomic<uint64_t> counter{0};
  if (converted->request_id.empty()) {
    converted->request_id = absl::StrCat("gen-", counter.fetch_add(1) + 1);
  }
  state_->SetRequest(converted->request_id, converted->n,
                     echo_prompt_ids ? converted->prompt_token_ids : std::vector<int32_t>());
  absl::StatusOr<engine::RequestId> id = engine->Submit(std::move(*converted), state_);
  if (!id.ok()) {
    state_->FailNow(id.status());
    return;
  }
  state_->Started();
}

void GenerateReactor::OnWriteDone(bool ok) { state_->OnWriteDone(ok); }
void GenerateReactor::OnCancel() { state_->OnCancel(); }
void GenerateReactor::OnDone() {
  state_->Close();
  budget_->Close();
  delete this;
}

}  // namespace kvserve::server
