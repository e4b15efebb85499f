#include "server/http_generation.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/logging.h"

namespace kvserve::server {

class HttpGeneration::State {
 public:
  State(int32_t num_prompts, int32_t n)
      : n_(n), choices_(static_cast<size_t>(num_prompts) * n), prompt_tokens_(num_prompts, 0) {
    event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    KV_CHECK(event_fd_ >= 0) << "eventfd failed, errno " << errno;
  }
  ~State() { close(event_fd_); }

  int event_fd() const { return event_fd_; }

  // Engine thread: never blocks (a non-blocking eventfd write; the counter cannot overflow in
  // practice).
  void OnEvent(int32_t prompt, engine::TokenEvent event) {
    {
      absl::MutexLock lock(&mu_);
      if (done_) return;
      const int32_t index = prompt * n_ + event.index;
      KV_CHECK(event.index >= 0 && event.index < n_ &&
               index < static_cast<int32_t>(choices_.size()))
          << "sample index " << event.index << " of a request with n = " << n_;
      Choice& c = choices_[index];
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
    }
    const uint64_t one = 1;
    // EAGAIN only at a counter of 2^64 - 2: the reader is awake then anyway.
    [[maybe_unused]] ssize_t ignored = write(event_fd_, &one, sizeof(one));
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

  bool HasNews() {
    absl::MutexLock lock(&mu_);
    return !ready_.empty() || error_.has_value() ||
           num_finished_ == static_cast<int32_t>(choices_.size());
  }

 private:
  struct Choice {
    ChoiceOutput pending;  // output not yet taken
    bool queued = false;   // in ready_
  };

  const int32_t n_;
  int event_fd_ = -1;
  absl::Mutex mu_;
  std::vector<Choice> choices_ ABSL_GUARDED_BY(mu_);
  std::deque<int32_t> ready_ ABSL_GUARDED_BY(mu_);  // choices with pending output, oldest first
  std::vector<int64_t> prompt_tokens_ ABSL_GUARDED_BY(mu_);
  int64_t completion_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  int32_t num_finished_ ABSL_GUARDED_BY(mu_) = 0;
  engine::FinishReason last_finish_reason_ ABSL_GUARDED_BY(mu_) = engine::FinishReason::kNone;
  std::optional<absl::Status> error_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;  // the final Update was taken: ignore the rest
};

class HttpGeneration::PromptSink final : public engine::TokenSink {
 public:
  PromptSink(std::shared_ptr<State> state, int32_t prompt)
      : state_(std::move(state)), prompt_(prompt) {}
  void OnEvent(engine::TokenEvent event) override { state_->OnEvent(prompt_, std::move(event)); }

 private:
  const std::shared_ptr<State> state_;
  const int32_t prompt_;
};

absl::StatusOr<std::unique_ptr<HttpGeneration>> HttpGeneration::Submit(
    engine::Engine* engine, std::vector<engine::GenerationRequest> requests, int32_t n) {
  // Submit rejects n outside [1, kMaxSamples] before any event; size the buffers for what it
  // accepts.
  const int32_t samples = std::clamp(n, 1, engine::kMaxSamples);
  const int32_t num_prompts = static_cast<int32_t>(requests.size());
  auto state = std::make_shared<State>(num_prompts, samples);
  std::unique_ptr<HttpGeneration> call(new HttpGeneration(engine, state, num_prompts * samples));
  for (int32_t i = 0; i < num_prompts; ++i) {
    absl::StatusOr<engine::RequestId> id =
        engine->Submit(std::move(requests[i]), std::make_shared<PromptSink>(state, i));
    if (!id.ok()) return id.status();  // the destructor cancels the ones submitted
    call->ids_.push_back(*id);
  }
  return call;
}

// Cancelling a finished request is a no-op for the engine, so this needs no bookkeeping.
HttpGeneration::~HttpGeneration() { Cancel(); }

HttpGeneration::Wake HttpGeneration::WaitForOutput(int client_socket) {
  for (;;) {
    if (state_->HasNews()) return Wake::kOutput;
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

void HttpGeneration::Cancel() {
  if (cancelled_) return;
  cancelled_ = true;
  for (engine::RequestId id : ids_) engine_->Cancel(id);
}

}  // namespace kvserve::server
