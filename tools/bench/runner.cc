#include "tools/bench/runner.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "kvserve/v1/kvserve.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tools/bench/openai_client.h"

namespace kvserve::bench {

namespace pb = ::kvserve::v1;
using Clock = std::chrono::steady_clock;

namespace {

std::chrono::system_clock::time_point DeadlineAfter(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             std::chrono::duration<double>(seconds));
}

absl::Time ToAbslTime(Clock::time_point t) {
  return absl::Now() + absl::FromChrono(t - Clock::now());
}

// Splits "host:port" / "[v6]:port" into its host; the port is not checked here (gRPC does).
std::optional<std::string> HostOf(absl::string_view host_port) {
  if (absl::StartsWith(host_port, "[")) {
    const size_t close = host_port.find(']');
    if (close == absl::string_view::npos) return std::nullopt;
    return std::string(host_port.substr(1, close - 1));
  }
  const size_t colon = host_port.rfind(':');
  if (colon == absl::string_view::npos) return std::string(host_port);
  // More than one colon without brackets: a bare IPv6 address without a port.
  if (host_port.find(':') != colon) return std::string(host_port);
  return std::string(host_port.substr(0, colon));
}

}  // namespace

bool IsLoopbackHost(absl::string_view host) {
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
  }
  if (absl::EqualsIgnoreCase(host, "localhost") || host == "::1" ||
      absl::EqualsIgnoreCase(host, "ip6-localhost")) {
    return true;
  }
  const std::vector<absl::string_view> octets = absl::StrSplit(host, '.');
  if (octets.size() != 4) return false;
  for (absl::string_view octet : octets) {
    int value = 0;
    if (octet.empty() || !absl::SimpleAtoi(octet, &value) || value < 0 || value > 255) return false;
  }
  return octets[0] == "127";
}

absl::Status ValidateTarget(absl::string_view target, bool allow_remote) {
  if (target.empty()) return absl::InvalidArgumentError("--target must not be empty");
  absl::string_view rest = target;
  if (absl::StartsWith(rest, "unix:") || absl::StartsWith(rest, "unix-abstract:")) {
    return absl::OkStatus();
  }
  std::vector<std::string> hosts;
  if (absl::ConsumePrefix(&rest, "dns:")) {
    if (absl::ConsumePrefix(&rest, "//")) {
      const size_t slash = rest.find('/');  // skip the DNS server authority
      if (slash == absl::string_view::npos) {
        return absl::InvalidArgumentError(absl::StrCat("--target '", target, "': bad dns URI"));
      }
      rest = rest.substr(slash + 1);
    }
    if (auto h = HostOf(rest)) hosts.push_back(*h);
  } else if (absl::ConsumePrefix(&rest, "ipv4:") || absl::ConsumePrefix(&rest, "ipv6:")) {
    for (absl::string_view address : absl::StrSplit(rest, ',')) {
      if (auto h = HostOf(address)) hosts.push_back(*h);
    }
  } else if (auto h = HostOf(rest)) {
    hosts.push_back(*h);
  }
  if (hosts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--target '", target, "': no host"));
  }
  if (allow_remote) return absl::OkStatus();
  for (const std::string& host : hosts) {
    if (!IsLoopbackHost(host)) {
      return absl::PermissionDeniedError(absl::StrCat(
          "--target '", target, "': '", host,
          "' is not a loopback address. kvserve-bench loads only servers on this machine unless "
          "--allow-remote is given, so that a mistyped address cannot overload a shared server."));
    }
  }
  return absl::OkStatus();
}

namespace {

// The prompt's bytes: one token per byte with the byte-level tokenizer, an estimate otherwise (a
// chat template adds its markers; the server's usage counts replace the estimate).
int64_t PromptBytes(const BenchRequest& request) {
  int64_t bytes = static_cast<int64_t>(request.prompt.size());
  for (const BenchMessage& m : request.messages) bytes += static_cast<int64_t>(m.content.size());
  return bytes;
}

}  // namespace

struct Runner::Channel {
  std::string target;
  std::shared_ptr<grpc::Channel> channel;   // gRPC only
  std::unique_ptr<pb::KvServe::Stub> stub;  // gRPC only
};

// What every call has, whatever its protocol: the record it fills, and the client's cancel and
// cut-off marks. The protocol's class fills `record_` from its own threads and hands the call back
// with OnCallDone; the runner reads the record only after that (under the runner's mutex). The
// Runner owns every Call until the run ends, so CutOff may touch a call that has already finished.
class Runner::Call {
 public:
  Call(Runner* runner, int64_t index, int32_t target_index, const BenchRequest& request,
       int32_t estimated_prompt_tokens, int32_t cancel_after_tokens)
      : runner_(runner), cancel_after_tokens_(cancel_after_tokens) {
    record_.index = index;
    record_.target_index = target_index;
    record_.max_tokens = request.max_tokens;
    record_.prompt_tokens = estimated_prompt_tokens;
    record_.cancel_planned = cancel_after_tokens > 0;
  }
  virtual ~Call() = default;

  virtual void Start(Channel& channel, double timeout_s) = 0;
  // Runner thread, without the mutex (gRPC may run reactions inline).
  virtual void Cancel() = 0;
  // Runner thread, under the runner's mutex, for a call that has not reported done.
  void MarkCutOff() { cut_off_.store(true); }

  // After OnCallDone. `cut_off` holds only for calls that did not succeed anyway.
  RequestRecord TakeRecord() {
    record_.cancel_sent = cancel_sent_.load();
    record_.cut_off = cut_off_.load() && !record_.ok();
    return std::move(record_);
  }

 protected:
  // A message carrying `n` >= 1 tokens arrived now.
  void CountTokens(int32_t n) {
    const double now = runner_->Now();
    if (!record_.first_token_s) {
      record_.first_token_s = now;
    } else {
      record_.itl_s.push_back(now - last_token_s_);
    }
    last_token_s_ = now;
    record_.output_tokens += n;
    ++record_.num_token_messages;
    runner_->output_tokens_.fetch_add(n, std::memory_order_relaxed);
  }
  bool CancelDue() const {
    return cancel_after_tokens_ > 0 && record_.output_tokens >= cancel_after_tokens_ &&
           !cancel_sent_.load();
  }

  Runner* const runner_;
  const int32_t cancel_after_tokens_;
  RequestRecord record_;
  double last_token_s_ = 0;
  std::atomic<bool> cancel_sent_{false};
  std::atomic<bool> cut_off_{false};

 public:
  bool done_ = false;  // guarded by the runner's mu_: OnCallDone has run
};

// One Generate (or Chat) call. Reactions (OnReadDone, then OnDone) run one at a time on gRPC's
// threads and own `record_`.
class Runner::GrpcCall final : public Runner::Call,
                               public grpc::ClientReadReactor<pb::GenerateResponse> {
 public:
  GrpcCall(Runner* runner, int64_t index, int32_t target_index, const std::string& model,
           const BenchRequest& request, int32_t estimated_prompt_tokens,
           int32_t cancel_after_tokens)
      : Call(runner, index, target_index, request, estimated_prompt_tokens, cancel_after_tokens) {
    if (request.messages.empty()) {
      request_.set_model(model);
      request_.set_prompt(request.prompt);
      request_.set_max_tokens(request.max_tokens);
      request_.set_ignore_eos(true);
      if (runner->options_.temperature.has_value()) {
        request_.mutable_sampling()->set_temperature(
            static_cast<float>(*runner->options_.temperature));
      }
    } else {
      chat_ = true;
      chat_request_.set_model(model);
      for (const BenchMessage& m : request.messages) {
        pb::ChatMessage* message = chat_request_.add_messages();
        message->set_role(m.role);
        message->set_content(m.content);
      }
      chat_request_.set_max_tokens(request.max_tokens);
      chat_request_.set_chat_template(request.chat_template);
      chat_request_.set_ignore_eos(true);
      if (runner->options_.temperature.has_value()) {
        chat_request_.mutable_sampling()->set_temperature(
            static_cast<float>(*runner->options_.temperature));
      }
    }
  }

  void Start(Channel& channel, double timeout_s) override {
    if (timeout_s > 0) context_.set_deadline(DeadlineAfter(timeout_s));
    tools::Authorize(runner_->options_.security, &context_);
    record_.start_s = runner_->Now();
    if (chat_) {
      channel.stub->async()->Chat(&context_, &chat_request_, this);
    } else {
      channel.stub->async()->Generate(&context_, &request_, this);
    }
    StartRead(&response_);
    StartCall();
  }

  void Cancel() override {
    cancel_sent_.store(true);
    context_.TryCancel();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended; OnDone follows
    const int32_t n = response_.token_ids_size();
    if (n > 0) CountTokens(n);
    if (response_.finish_reason() != pb::FINISH_REASON_UNSPECIFIED) {
      record_.usage_output_tokens = response_.usage().completion_tokens();
      record_.prompt_tokens = response_.usage().prompt_tokens();
      record_.prompt_tokens_from_server = true;
    }
    if (CancelDue()) Cancel();
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    record_.end_s = runner_->Now();
    record_.status_code = static_cast<int>(status.error_code());
    record_.error_message = status.error_message();
    runner_->OnCallDone(this, status.ok());
  }

 private:
  grpc::ClientContext context_;
  bool chat_ = false;
  pb::GenerateRequest request_;
  pb::ChatRequest chat_request_;
  pb::GenerateResponse response_;
};

// One streaming OpenAI HTTP call, read by a thread of its own (joined when the call is destroyed,
// after it handed itself back with OnCallDone).
class Runner::OpenAiCall final : public Runner::Call {
 public:
  OpenAiCall(Runner* runner, int64_t index, int32_t target_index, const std::string& model,
             const BenchRequest& request, int32_t estimated_prompt_tokens,
             int32_t cancel_after_tokens)
      : Call(runner, index, target_index, request, estimated_prompt_tokens, cancel_after_tokens) {
    nlohmann::json body = {{"model", model},
                           {"max_tokens", request.max_tokens},
                           {"ignore_eos", true},
                           {"stream", true},
                           {"stream_options", {{"include_usage", true}}}};
    if (runner->options_.temperature.has_value()) {
      body["temperature"] = *runner->options_.temperature;
    }
    if (request.messages.empty()) {
      path_ = "/v1/completions";
      body["prompt"] = request.prompt;
    } else {
      path_ = "/v1/chat/completions";
      chat_ = true;
      nlohmann::json messages = nlohmann::json::array();
      for (const BenchMessage& m : request.messages) {
        messages.push_back({{"role", m.role}, {"content", m.content}});
      }
      body["messages"] = std::move(messages);
      if (!request.chat_template.empty()) body["chat_template"] = request.chat_template;
    }
    body_ = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  ~OpenAiCall() override {
    if (thread_.joinable()) thread_.join();
  }

  void Start(Channel& channel, double timeout_s) override {
    connection_ = std::make_unique<OpenAiConnection>(channel.target, runner_->http_tls_,
                                                     runner_->options_.security.api_key);
    record_.start_s = runner_->Now();
    thread_ = std::thread([this, timeout_s] { Run(timeout_s); });
  }

  void Cancel() override {
    cancel_sent_.store(true);
    connection_->Cancel();
  }

 private:
  void Run(double timeout_s) {
    bool finished = false;
    std::string stream_error;
    absl::StatusOr<HttpReply> reply =
        connection_->Stream(path_, body_, timeout_s, [&](absl::string_view data) {
          const nlohmann::json event = nlohmann::json::parse(data, nullptr, false);
          if (!event.is_object()) return;
          if (event.contains("error")) {
            stream_error = event["error"].value("message", std::string("error event"));
            return;
          }
          if (const auto usage = event.find("usage"); usage != event.end() && usage->is_object()) {
            record_.usage_output_tokens = usage->value("completion_tokens", 0);
            record_.prompt_tokens = usage->value("prompt_tokens", record_.prompt_tokens);
            record_.prompt_tokens_from_server = true;
          }
          const auto choices = event.find("choices");
          if (choices == event.end() || !choices->is_array() || choices->empty()) return;
          // The server sends a chunk per engine event that produced tokens; SSE chunks carry no
          // token count, so each counts one (the usage chunk gives the exact total).
          CountTokens(1);
          if (!(*choices)[0]["finish_reason"].is_null()) finished = true;
          if (CancelDue()) Cancel();
        });
    record_.end_s = runner_->Now();
    if (!reply.ok()) {
      record_.status_code = cancel_sent_.load() ? 1 /* CANCELLED */
                                                : static_cast<int>(reply.status().code());
      record_.error_message = std::string(reply.status().message());
    } else if (reply->status != 200) {
      record_.status_code = GrpcCodeForHttpStatus(reply->status);
      record_.error_message = reply->body.substr(0, 300);
    } else if (!stream_error.empty() || !finished) {
      record_.status_code = cancel_sent_.load() ? 1 : 13;  // CANCELLED : INTERNAL
      record_.error_message = stream_error.empty() ? "the stream ended unfinished" : stream_error;
    }
    // The exact count replaces the per-chunk estimate once the server reported it.
    if (record_.usage_output_tokens >= 0) record_.output_tokens = record_.usage_output_tokens;
    runner_->OnCallDone(this, record_.ok());
  }

  std::string path_;
  std::string body_;
  bool chat_ = false;
  std::unique_ptr<OpenAiConnection> connection_;
  std::thread thread_;
};

Runner::Runner(RunnerOptions options) : options_(std::move(options)) {}
Runner::~Runner() = default;

absl::StatusOr<std::unique_ptr<Runner>> Runner::Create(RunnerOptions options) {
  if (options.targets.empty()) return absl::InvalidArgumentError("no --target given");
  for (const std::string& target : options.targets) {
    if (absl::Status s = ValidateTarget(target, options.allow_remote); !s.ok()) return s;
  }
  if (!(options.connect_timeout_s > 0)) {
    return absl::InvalidArgumentError("connect timeout must be > 0");
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      tools::ResolveClientSecurity(&options.security);
  if (!credentials.ok()) return credentials.status();
  absl::StatusOr<std::shared_ptr<const tools::TlsClientContext>> http_tls =
      tools::TlsClientContext::Create(options.security);
  if (!http_tls.ok()) return http_tls.status();
  std::unique_ptr<Runner> runner(new Runner(std::move(options)));
  runner->http_tls_ = *std::move(http_tls);
  for (const std::string& target : runner->options_.targets) {
    auto channel = std::make_unique<Channel>();
    channel->target = target;
    if (runner->options_.protocol == Protocol::kOpenAi) {
      runner->channels_.push_back(std::move(channel));
      continue;
    }
    // A distinct channel argument per target keeps gRPC from sharing one subchannel (one TCP
    // connection) between targets that resolve to the same address.
    grpc::ChannelArguments args;
    args.SetInt("kvserve.bench.channel_index", static_cast<int>(runner->channels_.size()));
    channel->channel = grpc::CreateCustomChannel(target, *credentials, args);
    channel->stub = pb::KvServe::NewStub(channel->channel);
    runner->channels_.push_back(std::move(channel));
  }
  return runner;
}

absl::Status Runner::Connect() {
  targets_.clear();
  for (size_t i = 0; i < channels_.size(); ++i) {
    const std::string& target = options_.targets[i];
    TargetInfo info;
    info.target = target;
    if (options_.protocol == Protocol::kOpenAi) {
      KV_RETURN_IF_ERROR(ConnectOpenAi(i, &info));
      targets_.push_back(std::move(info));
      continue;
    }
    auto fail = [&](const grpc::Status& status, const char* rpc) {
      return absl::UnavailableError(absl::StrCat(
          "target ", target, ": ", rpc,
          " failed: ", absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())),
          ": ", status.error_message()));
    };
    pb::ListModelsResponse models;
    {
      grpc::ClientContext context;
      context.set_deadline(DeadlineAfter(options_.connect_timeout_s));
      tools::Authorize(options_.security, &context);
      context.set_wait_for_ready(true);  // a server that is still starting gets the timeout
      const grpc::Status status =
          channels_[i]->stub->ListModels(&context, pb::ListModelsRequest(), &models);
      if (!status.ok()) return fail(status, "ListModels");
    }
    const pb::ModelInfo* model = nullptr;
    for (const pb::ModelInfo& m : models.models()) {
      if (options_.model.empty() || m.name() == options_.model) {
        model = &m;
        break;
      }
    }
    if (model == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("target ", target, " does not serve model '", options_.model, "'"));
    }
    info.model = model->name();
    info.max_context_length = model->max_context_length();
    {
      grpc::ClientContext context;
      context.set_deadline(DeadlineAfter(options_.connect_timeout_s));
      tools::Authorize(options_.security, &context);
      pb::TokenizeRequest request;
      request.set_model(info.model);
      request.set_text("x");
      pb::TokenizeResponse response;
      const grpc::Status status = channels_[i]->stub->Tokenize(&context, request, &response);
      if (!status.ok()) return fail(status, "Tokenize");
      info.num_special_tokens = std::max(0, response.token_ids_size() - 1);
    }
    targets_.push_back(std::move(info));
  }
  return absl::OkStatus();
}

absl::Status Runner::ConnectOpenAi(size_t i, TargetInfo* info) {
  const std::string& target = options_.targets[i];
  // The server may still be starting: retry the connection until connect_timeout_s.
  const Clock::time_point give_up =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(options_.connect_timeout_s));
  absl::StatusOr<HttpReply> models;
  for (;;) {
    models = OpenAiConnection(target, http_tls_, options_.security.api_key)
                 .Exchange("/v1/models", "", options_.connect_timeout_s);
    if (models.ok() || Clock::now() >= give_up) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto fail = [&](absl::string_view what, absl::string_view why) {
    return absl::UnavailableError(absl::StrCat("target ", target, ": ", what, " failed: ", why));
  };
  if (!models.ok()) return fail("GET /v1/models", models.status().message());
  if (models->status != 200) return fail("GET /v1/models", models->body);
  const nlohmann::json list = nlohmann::json::parse(models->body, nullptr, false);
  if (!list.is_object() || !list["data"].is_array()) return fail("GET /v1/models", models->body);
  for (const nlohmann::json& m : list["data"]) {
    if (options_.model.empty() || m.value("id", std::string()) == options_.model) {
      info->model = m.value("id", std::string());
      info->max_context_length = m.value("max_model_len", 0);
      break;
    }
  }
  if (info->model.empty()) {
    return absl::NotFoundError(
        absl::StrCat("target ", target, " does not serve model '", options_.model, "'"));
  }
  // No Tokenize over HTTP: a one-token completion of "x" reports the prompt's tokens in its usage.
  const nlohmann::json probe = {{"model", info->model}, {"prompt", "x"}, {"max_tokens", 1}};
  absl::StatusOr<HttpReply> reply =
      OpenAiConnection(target, http_tls_, options_.security.api_key)
          .Exchange("/v1/completions", probe.dump(), options_.connect_timeout_s);
  if (!reply.ok()) return fail("POST /v1/completions", reply.status().message());
  const nlohmann::json usage =
      nlohmann::json::parse(reply->body, nullptr, false).value("usage", nlohmann::json());
  if (reply->status != 200 || !usage.is_object()) return fail("POST /v1/completions", reply->body);
  info->num_special_tokens = std::max(0, usage.value("prompt_tokens", 1) - 1);
  return absl::OkStatus();
}

void Runner::Stop() {
  absl::MutexLock lock(&mu_);
  stop_ = true;
}

bool Runner::stopped() const {
  absl::MutexLock lock(&mu_);
  return stop_;
}

Progress Runner::ProgressLocked(double elapsed_s) const {
  Progress p;
  p.elapsed_s = elapsed_s;
  p.total = total_;
  p.sent = sent_;
  p.in_flight = in_flight_;
  p.succeeded = succeeded_;
  p.failed = failed_;
  p.output_tokens = output_tokens_.load(std::memory_order_relaxed);
  return p;
}

void Runner::OnCallDone(Call* call, bool ok) {
  absl::MutexLock lock(&mu_);
  call->done_ = true;
  --in_flight_;
  ++(ok ? succeeded_ : failed_);
}

bool Runner::SlotFreeOrStopLocked() const {
  return stop_ || max_concurrency_ == 0 || in_flight_ < max_concurrency_;
}
bool Runner::IdleOrStopLocked() const { return stop_ || in_flight_ == 0; }
bool Runner::AllDoneLocked() const { return in_flight_ == 0; }

void Runner::MaybeReportLocked() {
  const Clock::time_point now = Clock::now();
  if (now < next_progress_) return;
  while (next_progress_ <= now) next_progress_ += load_->progress_interval;
  if (!load_->on_progress) return;
  const Progress p = ProgressLocked(Now());
  mu_.Unlock();  // the callback may print, slowly; calls finish meanwhile
  load_->on_progress(p);
  mu_.Lock();
}

void Runner::WaitLocked(const absl::Condition& condition, Clock::time_point until) {
  while (!condition.Eval() && Clock::now() < until) {
    mu_.AwaitWithDeadline(condition, ToAbslTime(std::min(until, next_progress_)));
    MaybeReportLocked();
  }
}

double Runner::Now() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

absl::StatusOr<RunResult> Runner::Run(const std::vector<BenchRequest>& requests,
                                      const LoadOptions& load) {
  KV_CHECK(targets_.size() == channels_.size()) << "Runner::Run before a successful Connect()";
  if (load.max_concurrency < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-concurrency must be >= 0 (0 = unlimited), got ", load.max_concurrency));
  }
  if (!(load.duration_s > 0) || std::isinf(load.duration_s)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--duration must be a finite number of seconds > 0, got ", load.duration_s));
  }
  if (!(load.cancel_fraction >= 0 && load.cancel_fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--cancel-fraction must be in [0, 1], got ", load.cancel_fraction));
  }
  if (!(load.request_timeout_s >= 0) || std::isinf(load.request_timeout_s)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout must be >= 0 seconds (0 = none), got ", load.request_timeout_s));
  }
  absl::StatusOr<ArrivalProcess> arrivals = ArrivalProcess::Create(load.arrivals);
  if (!arrivals.ok()) return arrivals.status();
  const int64_t n = static_cast<int64_t>(requests.size());
  for (int64_t i = 0; i < n; ++i) {
    const TargetInfo& t = targets_[static_cast<size_t>(i) % targets_.size()];
    const int64_t tokens = PromptBytes(requests[i]) + t.num_special_tokens + requests[i].max_tokens;
    if (t.max_context_length > 0 && tokens > t.max_context_length) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request ", i, ": ", PromptBytes(requests[i]), " prompt bytes + ", t.num_special_tokens,
          " special tokens + max_tokens ", requests[i].max_tokens, " = ", tokens, " exceeds model ",
          t.model, "'s context length ", t.max_context_length, " on ", t.target));
    }
  }

  const std::vector<double> due = arrivals->ArrivalTimes(n);
  // Cancellation plan: k > 0 = cancel after k tokens.
  std::vector<int32_t> cancel_after(static_cast<size_t>(n), 0);
  if (load.cancel_fraction > 0) {
    std::mt19937_64 rng(load.seed ^ 0x6b7673657276ULL);
    std::bernoulli_distribution cancel(load.cancel_fraction);
    for (int64_t i = 0; i < n; ++i) {
      const bool chosen = cancel(rng);
      if (!chosen || requests[i].max_tokens < 2) continue;
      std::uniform_int_distribution<int32_t> k(1, std::max(1, requests[i].max_tokens / 2));
      cancel_after[static_cast<size_t>(i)] = k(rng);
    }
  }

  std::vector<std::unique_ptr<Call>> calls;
  calls.reserve(static_cast<size_t>(n));
  mu_.Lock();
  total_ = n;
  sent_ = in_flight_ = succeeded_ = failed_ = 0;
  max_concurrency_ = load.max_concurrency;
  output_tokens_.store(0);
  start_ = Clock::now();
  const Clock::time_point end_by = start_ + std::chrono::duration_cast<Clock::duration>(
                                                std::chrono::duration<double>(load.duration_s));
  next_progress_ = start_ + load.progress_interval;
  load_ = &load;
  const absl::Condition stop_requested(&stop_);
  const absl::Condition slot_free(this, &Runner::SlotFreeOrStopLocked);
  const absl::Condition idle(this, &Runner::IdleOrStopLocked);

  for (int64_t i = 0; i < n; ++i) {
    const Clock::time_point due_at =
        start_ + std::chrono::duration_cast<Clock::duration>(
                     std::chrono::duration<double>(due[static_cast<size_t>(i)]));
    WaitLocked(stop_requested, std::min(due_at, end_by));
    WaitLocked(slot_free, end_by);
    if (stop_ || Clock::now() >= end_by) break;
    const int32_t target = static_cast<int32_t>(static_cast<size_t>(i) % targets_.size());
    const TargetInfo& t = targets_[static_cast<size_t>(target)];
    const BenchRequest& request = requests[static_cast<size_t>(i)];
    const int32_t estimated_prompt_tokens =
        static_cast<int32_t>(PromptBytes(request)) + t.num_special_tokens;
    if (options_.protocol == Protocol::kOpenAi) {
      calls.push_back(std::make_unique<OpenAiCall>(this, i, target, t.model, request,
                                                   estimated_prompt_tokens,
                                                   cancel_after[static_cast<size_t>(i)]));
    } else {
      calls.push_back(std::make_unique<GrpcCall>(this, i, target, t.model, request,
                                                 estimated_prompt_tokens,
                                                 cancel_after[static_cast<size_t>(i)]));
    }
    ++sent_;
    ++in_flight_;
    Call* call = calls.back().get();
    mu_.Unlock();
    call->Start(*channels_[static_cast<size_t>(target)], load.request_timeout_s);
    mu_.Lock();
  }
  WaitLocked(idle, end_by);

  RunResult result;
  result.stopped = stop_;
  result.num_not_sent = n - sent_;
  result.duration_reached = !stop_ && (in_flight_ > 0 || result.num_not_sent > 0);
  // Cut off what is still running: marked under mu_ (so OnCallDone sees it), cancelled outside.
  std::vector<Call*> running;
  for (const auto& call : calls) {
    if (!call->done_) {
      call->MarkCutOff();
      running.push_back(call.get());
    }
  }
  mu_.Unlock();
  for (Call* call : running) call->Cancel();
  mu_.Lock();
  mu_.Await(absl::Condition(this, &Runner::AllDoneLocked));
  const Progress last = ProgressLocked(Now());
  load_ = nullptr;
  mu_.Unlock();
  if (load.on_progress) load.on_progress(last);

  result.records.reserve(calls.size());
  for (const auto& call : calls) {
    result.records.push_back(call->TakeRecord());
    result.duration_s = std::max(result.duration_s, result.records.back().end_s);
  }
  return result;
}

}  // namespace kvserve::bench
