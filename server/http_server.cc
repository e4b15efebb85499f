#include "server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "server/http_generation.h"
#include "server/http_listener.h"
#include "server/openai_api.h"
#include "server/process_sockets.h"

namespace kvserve::server {

namespace {

// The tenant of the request this connection thread is handling (PreRoute sets it before the
// handler runs on the same thread); empty without API keys.
thread_local std::string t_tenant;

// Design note: cpp-httplib 0.11 gives a handler neither the connection's socket nor a way to ask
// whether the client is still there (Request::is_connection_closed came in later versions), but a
// generation must be cancelled when its client goes away. The connection is identified by its
// TCP 4-tuple, which the Request carries (local port, remote address and port) and which no other
// socket of the process can share; the socket is found once per connection among the process's
// descriptors and remembered per thread (a worker serves one connection at a time). It stays
// valid while the call is under way: only this thread closes it, after the response, and with it
// the call (HttpGeneration), has been destroyed.
bool SocketMatches(int fd, const httplib::Request& req) {
  sockaddr_storage local{}, peer{};
  socklen_t local_len = sizeof(local), peer_len = sizeof(peer);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) return false;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) return false;
  char host[INET6_ADDRSTRLEN] = {0};
  int local_port = 0, peer_port = 0;
  if (peer.ss_family == AF_INET) {
    const auto* p = reinterpret_cast<const sockaddr_in*>(&peer);
    inet_ntop(AF_INET, &p->sin_addr, host, sizeof(host));
    peer_port = ntohs(p->sin_port);
    local_port = ntohs(reinterpret_cast<const sockaddr_in*>(&local)->sin_port);
  } else if (peer.ss_family == AF_INET6) {
    const auto* p = reinterpret_cast<const sockaddr_in6*>(&peer);
    inet_ntop(AF_INET6, &p->sin6_addr, host, sizeof(host));
    peer_port = ntohs(p->sin6_port);
    local_port = ntohs(reinterpret_cast<const sockaddr_in6*>(&local)->sin6_port);
  } else {
    return false;
  }
  return local_port == req.local_port && peer_port == req.remote_port && req.remote_addr == host;
}

// The socket of the connection `req` came on; -1 if it cannot be found (then a hang-up is noticed
// only when a write fails).
int ClientSocket(const httplib::Request& req) {
  thread_local int cached = -1;
  if (cached >= 0 && SocketMatches(cached, req)) return cached;
  cached = FindOwnSocket([&req](int fd) { return SocketMatches(fd, req); });
  return cached;
}

void SetError(httplib::Response& res, const HttpError& error) {
  res.status = error.status;
  if (error.retry_after_seconds > 0) {
    res.set_header("Retry-After", absl::StrCat(error.retry_after_seconds));
  }
  res.set_content(error.body, "application/json");
}

int64_t UnixNow() { return absl::ToUnixSeconds(absl::Now()); }

}  // namespace

class HttpServer::Impl {
 public:
  Impl(const HttpServerOptions& options, const ModelRegistry* registry, PrometheusMetrics* metrics)
      : options_(options), registry_(registry), metrics_(metrics) {}

  absl::StatusOr<int> Start() {
    HttpListenerOptions listen;
    listen.address = options_.address;
    listen.flag = "--http-address";
    listen.max_body_bytes = options_.max_body_bytes;
    listen.max_connections = options_.max_connections;
    listen.read_timeout = options_.read_timeout;
    listen.write_timeout = options_.write_timeout;
    listen.tls = options_.tls;
    listen.over_limit = [this](httplib::Response& res) {
      SetError(res, HttpErrorFor(absl::UnavailableError(
                        absl::StrCat("too many open connections (--http-max-connections=",
                                     options_.max_connections, "): retry later"))));
    };
    listen.pre_route = [this](const httplib::Request& req, httplib::Response& res) {
      return PreRoute(req, res);
    };
    KV_ASSIGN_OR_RETURN(listener_, HttpListener::Create(std::move(listen)));
    httplib::Server& s = listener_->server();
    s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;  // a handler's own error
      if (res.status == 413) {
        res.set_content(ErrorBody("body: larger than --http-max-body-bytes",
                                  "invalid_request_error", "", "request_too_large"),
                        "application/json");
      } else if (res.status == 404) {
        res.set_content(ErrorBody("no such route", "invalid_request_error", "", "not_found"),
                        "application/json");
      } else {
        res.set_content(ErrorBody(absl::StrCat("the request was answered HTTP ", res.status),
                                  "invalid_request_error", "", ""),
                        "application/json");
      }
    });
    s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      if (draining_.load()) {
        res.status = 503;
        res.set_content("draining\n", "text/plain");
      } else {
        res.set_content("ok\n", "text/plain");
      }
    });
    s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      std::vector<const engine::ModelInfo*> infos;
      for (const auto& engine : registry_->engines()) infos.push_back(&engine->info());
      res.set_content(ModelListJson(infos, start_time_), "application/json");
    });
    s.Post("/tokenize",
           [this](const httplib::Request& req, httplib::Response& res) { Tokenize(req, res); });
    s.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      Generate(OpenAiEndpoint::kCompletions, req, res);
    });
    s.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      Generate(OpenAiEndpoint::kChatCompletions, req, res);
    });
    return listener_->Start();
  }

  void StartDraining() { draining_.store(true); }

  bool AwaitIdle(std::chrono::system_clock::time_point deadline) {
    absl::MutexLock lock(&calls_mu_);
    return calls_mu_.AwaitWithDeadline(absl::Condition(
                                           +[](int* n) { return *n == 0; }, &active_calls_),
                                       absl::FromChrono(deadline));
  }

  void Stop() {
    if (listener_ != nullptr) listener_->Stop();
  }

 private:
  // Runs before routing, on every request within the connection limit: authentication, content
  // type.
  httplib::Server::HandlerResponse PreRoute(const httplib::Request& req, httplib::Response& res) {
    using HR = httplib::Server::HandlerResponse;
    t_tenant.clear();
    // Health stays open, as on gRPC: probes carry no key.
    if (options_.api_keys != nullptr && req.path != "/health") {
      std::string header;  // owns the value: get_header_value returns a copy
      std::optional<std::string_view> authorization;
      if (req.has_header("Authorization")) {
        if (req.get_header_value_count("Authorization") > 1) {
          SetError(res,
                   HttpErrorFor(absl::UnauthenticatedError("Authorization: sent more than once")));
          return HR::Handled;
        }
        header = req.get_header_value("Authorization");
        authorization = header;
      }
      absl::StatusOr<std::string> tenant = options_.api_keys->Authenticate(authorization);
      if (!tenant.ok()) {
        SetError(res, HttpErrorFor(tenant.status()));
        return HR::Handled;
      }
      t_tenant = *std::move(tenant);
    }
    if (req.method == "POST") {
      const std::string type = req.get_header_value("Content-Type");
      if (!absl::StartsWithIgnoreCase(type, "application/json")) {
        res.status = 415;
        res.set_content(ErrorBody(absl::StrCat("Content-Type: must be application/json, got \"",
                                               type.substr(0, 64), "\""),
                                  "invalid_request_error", "Content-Type", ""),
                        "application/json");
        return HR::Handled;
      }
    }
    return HR::Unhandled;
  }

  // vLLM's POST /tokenize: the prompt's ids as a Generate call would use them.
  void Tokenize(const httplib::Request& req, httplib::Response& res) {
    absl::StatusOr<TokenizeRequest> parsed = ParseTokenizeRequest(req.body);
    if (!parsed.ok()) return SetError(res, HttpErrorFor(parsed.status()));
    absl::StatusOr<engine::Engine*> engine = registry_->Find(parsed->model);
    if (!engine.ok()) return SetError(res, HttpErrorFor(engine.status()));
    absl::StatusOr<std::vector<int32_t>> ids =
        (*engine)->tokenizer().Encode(parsed->prompt, parsed->add_special_tokens);
    if (!ids.ok()) {
      return SetError(res, HttpErrorFor(absl::InvalidArgumentError(
                               absl::StrCat("prompt: ", ids.status().message()))));
    }
    res.set_content(TokenizeResponseJson(*ids, (*engine)->info().config.max_position_embeddings),
                    "application/json");
  }

  // Counts a call that failed before reaching an engine and answers it.
  void Reject(ModelMetrics* m, const absl::Status& status, httplib::Response& res) {
    if (m != nullptr) {
      m->CountFailure(FailureReasonFor(status.code(), /*reached_engine=*/false, false));
    }
    SetError(res, HttpErrorFor(status));
  }

  void Generate(OpenAiEndpoint endpoint, const httplib::Request& req, httplib::Response& res) {
    absl::StatusOr<OpenAiRequest> parsed = ParseOpenAiRequest(endpoint, req.body);
    const std::string model = parsed.ok() ? parsed->model : "";
    if (draining_.load()) {
      if (ModelMetrics* m = metrics_->ForModel(model)) {
        m->CountFailure(FailureReason::kRejected);
      } else {
        metrics_->CountUnknownModel();
      }
      SetError(res, HttpErrorFor(absl::UnavailableError(
                        "server is draining: send the request to another replica")));
      return;
    }
    absl::StatusOr<engine::Engine*> engine = registry_->Find(model);
    if (!engine.ok()) {
      metrics_->CountUnknownModel();
      SetError(res, HttpErrorFor(engine.status()));
      return;
    }
    ModelMetrics* m = metrics_->ForModel((*engine)->info().name);
    if (!parsed.ok()) return Reject(m, parsed.status(), res);
    const engine::SteadyTime arrival = (*engine)->clock().Now();
    absl::StatusOr<std::vector<engine::GenerationRequest>> requests =
        ToEngineRequests(*parsed, **engine);
    if (!requests.ok()) return Reject(m, requests.status(), res);
    const bool chat = endpoint == OpenAiEndpoint::kChatCompletions;
    ResponseHeader header{absl::StrCat(chat ? "chatcmpl-" : "cmpl-", next_id_.fetch_add(1) + 1),
                          UnixNow(), (*engine)->info().name};
    for (size_t i = 0; i < requests->size(); ++i) {
      if (options_.api_keys != nullptr) {
        (*requests)[i].cache_salt =
            options_.api_keys->CacheSalt(t_tenant, (*requests)[i].cache_salt);
      }
      (*requests)[i].arrival_time = arrival;
      (*requests)[i].request_id =
          requests->size() == 1 ? header.id : absl::StrCat(header.id, "-", i);
    }
    absl::StatusOr<std::unique_ptr<HttpGeneration>> call = HttpGeneration::Submit(
        *engine, options_.streams, *std::move(requests), parsed->n(), ClientSocket(req));
    if (!call.ok()) return Reject(m, call.status(), res);

    auto active = std::make_shared<ActiveCall>(this);
    const engine::Tokenizer& tokenizer = (*engine)->tokenizer();
    if (!parsed->stream) {
      Collect(**call, *parsed, header, tokenizer, m, res);
      return;
    }
    // The provider runs on this thread after the handler returns, once the 200 and the headers
    // are sent; it writes the whole stream in one invocation. If the headers cannot be sent (the
    // client left while the call was held behind them) it never runs, and the releaser, run when
    // the response is destroyed, cancels the call and counts it instead. Both run on this thread.
    std::shared_ptr<HttpGeneration> shared_call = *std::move(call);
    auto counted = std::make_shared<bool>(false);  // the call's outcome was counted
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, shared_call, request = *std::move(parsed), header, &tokenizer, m, active, counted](
            size_t /*offset*/, httplib::DataSink& sink) {
          return Stream(*shared_call, request, header, tokenizer, m, sink, counted.get());
        },
        [shared_call, m, counted](bool /*success: never set by cpp-httplib 0.11*/) {
          if (*counted) return;
          shared_call->Cancel();
          if (m != nullptr) m->CountFailure(FailureReason::kCancelled);
        });
  }

  // Non-streaming: gathers every choice's output, then answers once.
  void Collect(HttpGeneration& call, const OpenAiRequest& request, const ResponseHeader& header,
               const engine::Tokenizer& tokenizer, ModelMetrics* m, httplib::Response& res) {
    std::vector<ChoiceOutput> choices(call.num_choices());
    for (;;) {
      if (call.WaitForOutput() == HttpGeneration::Wake::kHangup) {
        call.Cancel();
        if (m != nullptr) m->CountFailure(FailureReason::kCancelled);
        SetError(res, HttpErrorFor(absl::CancelledError("the client closed the connection")));
        return;
      }
      HttpGeneration::Update update = call.Take();
      for (auto& [index, delta] : update.deltas) {
        ChoiceOutput& c = choices[index];
        c.text += delta.text;
        c.token_ids.insert(c.token_ids.end(), delta.token_ids.begin(), delta.token_ids.end());
        for (auto& l : delta.logprobs) c.logprobs.push_back(std::move(l));
        if (delta.finish_reason != engine::FinishReason::kNone) {
          c.finish_reason = delta.finish_reason;
        }
      }
      // The answer is sent once, in full: what it gathers is bounded by max_tokens, not by how the
      // client reads, so it stops counting against the stream budget here.
      call.Written(update.bytes);
      if (!update.done) continue;
      if (!update.status.ok()) {
        if (m != nullptr) {
          m->CountFailure(FailureReasonFor(update.status.code(), /*reached_engine=*/true, false));
        }
        SetError(res, HttpErrorFor(update.status));
        return;
      }
      if (m != nullptr) m->CountSuccess(update.last_finish_reason);
      res.set_content(CompletionResponseJson(request, header, choices, update.usage, tokenizer),
                      "application/json");
      return;
    }
  }

  // Streaming: one SSE event per choice with new output, as it arrives. False ends the response
  // without the terminating chunk (cpp-httplib then closes the connection). Sets *counted once the
  // call's outcome is counted.
  bool Stream(HttpGeneration& call, const OpenAiRequest& request, const ResponseHeader& header,
              const engine::Tokenizer& tokenizer, ModelMetrics* m, httplib::DataSink& sink,
              bool* counted) {
    std::vector<bool> started(call.num_choices(), false);
    auto client_gone = [&] {
      *counted = true;
      call.Cancel();
      if (m != nullptr) m->CountFailure(FailureReason::kCancelled);
      return false;
    };
    std::string out;
    for (;;) {
      if (call.WaitForOutput() == HttpGeneration::Wake::kHangup) return client_gone();
      HttpGeneration::Update update = call.Take();
      out.clear();
      for (auto& [index, delta] : update.deltas) {
        out += StreamChunkEvent(request, header, index, delta, !started[index], tokenizer);
        started[index] = true;
      }
      if (update.done) {
        *counted = true;
        if (!update.status.ok()) {
          out += StreamErrorEvent(update.status);
          if (m != nullptr) {
            m->CountFailure(FailureReasonFor(update.status.code(), /*reached_engine=*/true, false));
          }
        } else {
          if (request.include_usage) out += StreamUsageEvent(request, header, update.usage);
          if (m != nullptr) m->CountSuccess(update.last_finish_reason);
        }
        out += kStreamDoneEvent;
        // The outcome is counted: a client that leaves now has had everything generated.
        sink.write(out.data(), out.size());
        call.Written(update.bytes);
        sink.done();
        return true;
      }
      // A write returns once the kernel has taken the bytes; until then they are the call's
      // unsent output, and a client that does not read keeps the call held (http_generation.h).
      if (!out.empty() && !sink.write(out.data(), out.size())) return client_gone();
      call.Written(update.bytes);
    }
  }

  // Counts a generation call under way, for AwaitIdle; lives as long as the call's response.
  class ActiveCall {
   public:
    explicit ActiveCall(Impl* impl) : impl_(impl) {
      absl::MutexLock lock(&impl_->calls_mu_);
      ++impl_->active_calls_;
    }
    ~ActiveCall() {
      absl::MutexLock lock(&impl_->calls_mu_);
      --impl_->active_calls_;
    }

   private:
    Impl* const impl_;
  };

  const HttpServerOptions options_;
  const ModelRegistry* const registry_;
  PrometheusMetrics* const metrics_;
  std::unique_ptr<HttpListener> listener_;
  const int64_t start_time_ = UnixNow();
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> next_id_{0};
  absl::Mutex calls_mu_;
  int active_calls_ ABSL_GUARDED_BY(calls_mu_) = 0;
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                              const ModelRegistry* registry,
                                                              PrometheusMetrics* metrics) {
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError("--http-max-connections: must be at least 1");
  }
  if (options.max_body_bytes < 1) {
    return absl::InvalidArgumentError("--http-max-body-bytes: must be at least 1");
  }
  KV_CHECK(options.streams != nullptr) << "HttpServerOptions::streams is required";
  if (options.read_timeout.count() < 1 || options.write_timeout.count() < 1) {
    return absl::InvalidArgumentError(
        "--http-read-timeout and --http-write-timeout: must be at least 1 second");
  }
  auto impl = std::make_unique<Impl>(options, registry, metrics);
  absl::StatusOr<int> port = impl->Start();
  if (!port.ok()) return port.status();
  std::unique_ptr<HttpServer> server(new HttpServer(std::move(impl)));
  server->port_ = *port;
  return server;
}

void HttpServer::StartDraining() { impl_->StartDraining(); }
bool HttpServer::AwaitIdle(std::chrono::system_clock::time_point deadline) {
  return impl_->AwaitIdle(deadline);
}
void HttpServer::Stop() { impl_->Stop(); }

}  // namespace kvserve::server
