#include "server/generate_reactor.h"

#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/logging.h"
#include "server/proto_convert.h"
#include "server/status_map.h"

namespace kvserve::server {

namespace pb = ::kvserve::v1;

// A cancel this close to the call's deadline is taken as the deadline's doing: gRPC fires the
// deadline on its own clock, converted to the system clock for ServerContext::deadline().
constexpr std::chrono::milliseconds kDeadlineSlack(10);

class GenerateReactor::StreamState : public engine::TokenSink {
 public:
  StreamState(GenerateReactor* reactor, ModelMetrics* metrics,
              std::chrono::system_clock::time_point deadline)
      : reactor_(reactor), metrics_(metrics), deadline_(deadline) {}

  // What to do with the reactor once the mutex is released.
  enum class Action { kNone, kWrite, kWriteAndFinish, kFinish };

  // Engine thread.
  void OnEvent(engine::TokenEvent event) override {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      if (finish_called_) return;  // client went away; the engine was told to cancel
      pending_ids_.insert(pending_ids_.end(), event.token_ids.begin(), event.token_ids.end());
      pending_text_ += event.text;
      if (event.finished) {
        final_status_ = event.status;
        finish_reason_ = event.finish_reason;
        prompt_tokens_ = event.prompt_tokens;
        completion_tokens_ = event.completion_tokens;
      }
      action = NextActionLocked();
    }
    Run(action);
  }

  // Handler thread, right after Submit. A cancel that raced ahead is forwarded now.
  void Started(engine::Engine* engine, engine::RequestId id) {
    bool cancel_now;
    {
      absl::MutexLock lock(&mu_);
      engine_ = engine;
      id_ = id;
      cancel_now = cancelled_;
    }
    if (cancel_now) engine->Cancel(id);
  }

  void SetRequestId(std::string request_id) {
    absl::MutexLock lock(&mu_);
    request_id_ = std::move(request_id);
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
      }
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
    }
    CancelEngineIfNeeded();
    Run(action);
  }

 private:
  Action NextActionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || finish_called_) return Action::kNone;
    if (final_status_.has_value() && !final_status_->ok()) {
      finish_called_ = true;
      return Action::kFinish;
    }
    const bool have_data = !pending_ids_.empty() || !pending_text_.empty();
    if (!have_data && !final_status_.has_value()) return Action::kNone;
    out_.Clear();
    if (!first_sent_) {
      out_.set_request_id(request_id_);
      first_sent_ = true;
    }
    out_.mutable_token_ids()->Add(pending_ids_.begin(), pending_ids_.end());
    out_.set_text(std::move(pending_text_));
    pending_ids_.clear();
    pending_text_.clear();
    if (final_status_.has_value()) {
      out_.set_finish_reason(ToProto(finish_reason_));
      out_.mutable_usage()->set_prompt_tokens(prompt_tokens_);
      out_.mutable_usage()->set_completion_tokens(completion_tokens_);
      finish_called_ = true;
      return Action::kWriteAndFinish;
    }
    write_in_flight_ = true;
    return Action::kWrite;
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
          metrics_->CountSuccess(finish_reason_);
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
    engine::Engine* engine;
    engine::RequestId id;
    {
      absl::MutexLock lock(&mu_);
      if (engine_cancel_sent_ || engine_ == nullptr || !cancelled_) return;
      engine_cancel_sent_ = true;
      engine = engine_;
      id = id_;
    }
    engine->Cancel(id);
  }

  GenerateReactor* const reactor_;  // valid until Finish has been called and OnDone has run
  ModelMetrics* const metrics_;     // may be null
  const std::chrono::system_clock::time_point deadline_;
  absl::Mutex mu_;
  engine::Engine* engine_ ABSL_GUARDED_BY(mu_) = nullptr;
  engine::RequestId id_ ABSL_GUARDED_BY(mu_) = 0;
  std::string request_id_ ABSL_GUARDED_BY(mu_);
  std::vector<int32_t> pending_ids_ ABSL_GUARDED_BY(mu_);
  std::string pending_text_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> final_status_ ABSL_GUARDED_BY(mu_);
  engine::FinishReason finish_reason_ ABSL_GUARDED_BY(mu_) = engine::FinishReason::kNone;
  int32_t prompt_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  int32_t completion_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  bool first_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool engine_cancel_sent_ ABSL_GUARDED_BY(mu_) = false;
  // The message being written; gRPC reads it until OnWriteDone / OnDone. Only touched by the thread
  // that set write_in_flight_ / finish_called_, so it needs no lock while a write is in flight.
  pb::GenerateResponse out_;
};

GenerateReactor::GenerateReactor(engine::Engine* engine, ModelMetrics* metrics,
                                 std::chrono::system_clock::time_point deadline,
                                 const pb::GenerateRequest& request)
    : state_(std::make_shared<StreamState>(this, metrics, deadline)) {
  // Arrival, for queue time and TTFT: before tokenization, as vLLM's front end stamps it.
  const auto arrival = std::chrono::steady_clock::now();
  absl::StatusOr<engine::GenerationRequest> converted = FromProto(request, *engine);
  if (!converted.ok()) {
    state_->FailNow(converted.status());
    return;
  }
  converted->arrival_time = arrival;
  static std::atomic<uint64_t> counter{0};
  if (converted->request_id.empty()) {
    converted->request_id = absl::StrCat("gen-", counter.fetch_add(1) + 1);
  }
  state_->SetRequestId(converted->request_id);
  absl::StatusOr<engine::RequestId> id = engine->Submit(std::move(*converted), state_);
  if (!id.ok()) {
    state_->FailNow(id.status());
    return;
  }
  state_->Started(engine, *id);
}

void GenerateReactor::OnWriteDone(bool ok) { state_->OnWriteDone(ok); }
void GenerateReactor::OnCancel() { state_->OnCancel(); }
void GenerateReactor::OnDone() { delete this; }

}  // namespace kvserve::server
