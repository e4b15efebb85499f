#include "server/http_generation.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/logging.h"
#include "server/stream_budget.h"

namespace kvserve::server {

class HttpGeneration::State : public std::enable_shared_from_this<State> {
 public:
  State(engine::Engine* engine, StreamBudget* budget, int32_t num_prompts, int32_t n,
        int client_socket, std::string name)
      : engine_(engine),
        budget_(budget),
        n_(n),
        client_socket_(client_socket),
        name_(std::move(name)),
        choices_(static_cast<size_t>(num_prompts) * n),
        prompt_tokens_(num_prompts, 0),
        prompts_(num_prompts) {
    event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    KV_CHECK(event_fd_ >= 0) << "eventfd failed, errno " << errno;
  }
  ~State() { close(event_fd_); }

  int event_fd() const { return event_fd_; }
  int client_socket() const { return client_socket_; }

  // Submit's thread, before prompt `prompt`'s request is queued: the id holds are sent for.
  void Accepted(int32_t prompt, engine::RequestId id) {
    absl::MutexLock lock(&mu_);
    prompts_[prompt].id = id;
  }

  // Submit accepted prompt `prompt`'s request: it is in the engine, so a hold decided before its
  // first event reaches it now (a SetHeld sent before the request is queued would be ignored).
  void Started(int32_t prompt) {
    absl::MutexLock lock(&mu_);
    prompts_[prompt].queued = true;
    UpdateHoldsLocked();
  }

  // Engine thread: never blocks (a non-blocking eventfd write; the counter cannot overflow in
  // practice).
  void OnEvent(int32_t prompt, engine::TokenEvent event) {
    {
      absl::MutexLock lock(&mu_);
      if (done_ || closed_) return;
      const int32_t index = prompt * n_ + event.index;
      KV_CHECK(event.index >= 0 && event.index < n_ &&
               index < static_cast<int32_t>(choices_.size()))
          << "sample index " << event.index << " of a request with n = " << n_;
      Choice& c = choices_[index];
      const int64_t bytes = StreamBudget::EventBytes(event);
      pending_bytes_ += bytes;
      unsent_bytes_ += bytes;
      budget_->AddBuffered(bytes);
      // An event proves its request is queued, even before Submit has returned to Started.
      prompts_[prompt].queued = true;
      c.pending.text += event.text;
      c.pending.token_ids.insert(c.pending.token_ids.end(), event.token_ids.begin(),
                                 event.token_ids.end());
      for (engine::TokenLogprobs& l : event.logprobs) c.pending.logprobs.push_back(std::move(l));
      if (event.finished) {
        c.pending.finish_reason = event.finish_reason;
        completion_tokens_ += event.completion_tokens;
        prompt_tokens_[prompt] = event.prompt_tokens;
        last_finish_reason_ = event.finish_reason;
        ++num_finished_;
        if (!event.status.ok()) {
          if (!error_.has_value()) error_ = event.status;
        }
      }
      if (!c.queued) {
        c.queued = true;
        ready_.push_back(index);
      }
      UpdateHoldsLocked();
    }
    WakeReader();
  }

  Update Take() {
    absl::MutexLock lock(&mu_);
    Update update;
    for (int32_t index : ready_) {
      Choice& c = choices_[index];
      c.queued = false;
      update.deltas.emplace_back(index, std::move(c.pending));
      c.pending = ChoiceOutput();
    }
    ready_.clear();
    // Taken output stays counted (in unsent_bytes_) until Written.
    update.bytes = pending_bytes_;
    pending_bytes_ = 0;
    if (error_.has_value()) {
      update.done = true;
      update.status = *error_;
      done_ = true;
    } else if (num_finished_ == static_cast<int32_t>(choices_.size())) {
      update.done = true;
      for (int64_t p : prompt_tokens_) update.usage.prompt_tokens += p;
      update.usage.completion_tokens = completion_tokens_;
      update.last_finish_reason = last_finish_reason_;
      done_ = true;
    }
    return update;
  }

  void Written(int64_t bytes) {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    KV_CHECK(bytes >= 0 && bytes <= unsent_bytes_ - pending_bytes_)
        << "written " << bytes << " of " << unsent_bytes_ - pending_bytes_ << " taken";
    unsent_bytes_ -= bytes;
    budget_->AddBuffered(-bytes);
    UpdateHoldsLocked();
  }

  // The call is over for its client: whatever it still counts is let go, later events are ignored.
  // Its requests are cancelled next (a held request ends like any other), so no hold is released.
  void Close() {
    absl::MutexLock lock(&mu_);
    CloseLocked();
  }

  // The timer's thread: the hold `key` lasted the whole idle timeout. Ends the call if that hold
  // is still on (http_generation.h).
  std::optional<std::string> OnIdleTimeout(StreamIdleTimeout::Key key) {
    {
      absl::MutexLock lock(&mu_);
      if (closed_ || idle_key_ != key) return std::nullopt;
      timed_out_ = true;
      CloseLocked();
      // The connection thread cancels them too once it notices; this frees their slots and cache
      // now. A prompt not queued yet is cancelled by that thread alone.
      for (const Prompt& p : prompts_) {
        if (p.queued) engine_->Cancel(p.id);
      }
      // Not closed, so the connection thread has not closed the socket either.
      if (client_socket_ >= 0) shutdown(client_socket_, SHUT_RDWR);
    }
    WakeReader();
    return "HTTP call " + name_;
  }

  // Whether WaitForOutput should return: output or the call's end to Take, or an idle timeout.
  bool HasNews(bool* timed_out) {
    absl::MutexLock lock(&mu_);
    *timed_out = timed_out_;
    return timed_out_ || !ready_.empty() || error_.has_value() ||
           num_finished_ == static_cast<int32_t>(choices_.size());
  }

 private:
  struct Choice {
    ChoiceOutput pending;  // output not yet taken
    bool queued = false;   // in ready_
  };
  struct Prompt {
    engine::RequestId id = 0;  // from Accepted
    bool queued = false;       // in the engine: holds may be sent
    bool held = false;         // the engine was told to hold it
  };

  // Holds or lets go of every queued request of the call, as StreamBudget::MustHold says. The
  // call's hold starts the idle clock, letting go stops it.
  void UpdateHoldsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const bool hold = !closed_ && budget_->MustHold(unsent_bytes_);
    for (Prompt& p : prompts_) {
      if (!p.queued || p.held == hold) continue;
      p.held = hold;
      engine_->SetHeld(p.id, hold);
    }
    if (hold == (idle_key_ != 0)) return;
    budget_->StopIdleClock(idle_key_);
    idle_key_ = 0;
    if (hold) idle_key_ = budget_->StartIdleClock(weak_from_this());
  }

  void CloseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (closed_) return;
    closed_ = true;
    budget_->AddBuffered(-unsent_bytes_);
    unsent_bytes_ = 0;
    pending_bytes_ = 0;
    budget_->StopIdleClock(idle_key_);
    idle_key_ = 0;
  }

  // Never blocks (a non-blocking eventfd write; the counter cannot overflow in practice).
  void WakeReader() {
    const uint64_t one = 1;
    // EAGAIN only at a counter of 2^64 - 2: the reader is awake then anyway.
    [[maybe_unused]] ssize_t ignored = write(event_fd_, &one, sizeof(one));
  }

  engine::Engine* const engine_;
  StreamBudget* const budget_;
  const int32_t n_;
  const int client_socket_;  // -1: unknown
  const std::string name_;   // in the idle timeout's log line
  int event_fd_ = -1;
  absl::Mutex mu_;
  std::vector<Choice> choices_ ABSL_GUARDED_BY(mu_);
  std::deque<int32_t> ready_ ABSL_GUARDED_BY(mu_);  // choices with pending output, oldest first
  std::vector<int64_t> prompt_tokens_ ABSL_GUARDED_BY(mu_);
  int64_t completion_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  int32_t num_finished_ ABSL_GUARDED_BY(mu_) = 0;
  engine::FinishReason last_finish_reason_ ABSL_GUARDED_BY(mu_) = engine::FinishReason::kNone;
  std::optional<absl::Status> error_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;       // the final Update was taken: ignore the rest
  bool closed_ ABSL_GUARDED_BY(mu_) = false;     // Close: nothing is counted any more
  bool timed_out_ ABSL_GUARDED_BY(mu_) = false;  // the idle timeout ended the call
  StreamIdleTimeout::Key idle_key_ ABSL_GUARDED_BY(mu_) = 0;  // the current hold's idle clock
  std::vector<Prompt> prompts_ ABSL_GUARDED_BY(mu_);
  // Counted in budget_: output not yet taken (pending_bytes_) plus output taken and not yet
  // Written.
  int64_t pending_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t unsent_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

class HttpGeneration::PromptSink final : public engine::TokenSink {
 public:
  PromptSink(std::shared_ptr<State> state, int32_t prompt)
      : state_(std::move(state)), prompt_(prompt) {}
  void OnAccepted(engine::RequestId id) override { state_->Accepted(prompt_, id); }
  void OnEvent(engine::TokenEvent event) override { state_->OnEvent(prompt_, std::move(event)); }

 private:
  const std::shared_ptr<State> state_;
  const int32_t prompt_;
};

absl::StatusOr<std::unique_ptr<HttpGeneration>> HttpGeneration::Submit(
    engine::Engine* engine, StreamBudget* budget, std::vector<engine::GenerationRequest> requests,
    int32_t n, int client_socket) {
  // Submit rejects n outside [1, kMaxSamples] before any event; size the buffers for what it
  // accepts.
  const int32_t samples = std::clamp(n, 1, engine::kMaxSamples);
  const int32_t num_prompts = static_cast<int32_t>(requests.size());
  auto state = std::make_shared<State>(engine, budget, num_prompts, samples, client_socket,
                                       requests.empty() ? "" : requests.front().request_id);
  std::unique_ptr<HttpGeneration> call(new HttpGeneration(engine, state, num_prompts * samples));
  for (int32_t i = 0; i < num_prompts; ++i) {
    absl::StatusOr<engine::RequestId> id =
        engine->Submit(std::move(requests[i]), std::make_shared<PromptSink>(state, i));
    if (!id.ok()) return id.status();  // the destructor cancels the ones submitted
    call->ids_.push_back(*id);
    state->Started(i);
  }
  return call;
}

// Cancelling a finished request is a no-op for the engine, so this needs no bookkeeping.
HttpGeneration::~HttpGeneration() { Cancel(); }

HttpGeneration::Wake HttpGeneration::WaitForOutput() {
  const int client_socket = state_->client_socket();
  for (;;) {
    bool timed_out = false;
    if (state_->HasNews(&timed_out)) return timed_out ? Wake::kHangup : Wake::kOutput;
    pollfd fds[2] = {{state_->event_fd(), POLLIN, 0}, {client_socket, POLLRDHUP, 0}};
    const int r = poll(fds, client_socket >= 0 ? 2 : 1, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      KV_LOG(ERROR) << "poll failed, errno " << errno;
      return Wake::kHangup;
    }
    // POLLHUP / POLLERR are reported whether asked for or not; POLLRDHUP: the peer closed its end.
    if (client_socket >= 0 && (fds[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
      return Wake::kHangup;
    }
    if ((fds[0].revents & POLLIN) != 0) {
      // Reset the counter, then look again: an event that lands after the reset is seen by
      // HasNews, and at worst leaves one spurious wake-up behind.
      uint64_t count;
      [[maybe_unused]] ssize_t ignored = read(state_->event_fd(), &count, sizeof(count));
    }
  }
}

HttpGeneration::Update HttpGeneration::Take() { return state_->Take(); }

void HttpGeneration::Written(int64_t bytes) { state_->Written(bytes); }

void HttpGeneration::Cancel() {
  if (cancelled_) return;
  cancelled_ = true;
  state_->Close();
  for (engine::RequestId id : ids_) engine_->Cancel(id);
}

}  // namespace kvserve::server
