#include "server/http_listener.h"

#include <signal.h>
#include <sys/socket.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/logging.h"

namespace kvserve::server {

namespace {

// Set on the thread that answers connections beyond max_connections: the pre-routing handler
// answers them 503 instead of routing.
thread_local bool t_over_connection_limit = false;

// cpp-httplib's task queue, bounded: at most `max_connections` connections are served at once, one
// per worker thread; the rest go to one rejecting thread, which answers each 503 and closes it
// (reading its request first, under the read timeout, as HTTP wants a request before a response).
// A connection is never queued behind busy workers, where a client could not tell "slow" from
// "refused". With TLS, each task begins with the handshake, so a client that stalls in it holds
// one thread for at most the read timeout.
class ConnectionPool final : public httplib::TaskQueue {
 public:
  explicit ConnectionPool(int32_t max_connections) : max_connections_(max_connections) {
    for (int32_t i = 0; i < max_connections; ++i) workers_.emplace_back([this] { Work(false); });
    rejecter_ = std::thread([this] { Work(true); });
  }

  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (num_busy_ + static_cast<int32_t>(jobs_.size()) < max_connections_) {
        jobs_.push_back(std::move(fn));
      } else {
        rejects_.push_back(std::move(fn));
      }
    }
    cv_.notify_all();
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      shutdown_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : workers_) t.join();
    rejecter_.join();
  }

 private:
  void Work(bool rejecter) {
    t_over_connection_limit = rejecter;
    std::deque<std::function<void()>>& queue = rejecter ? rejects_ : jobs_;
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return !queue.empty() || shutdown_; });
        if (queue.empty()) return;  // shutting down, nothing left
        fn = std::move(queue.front());
        queue.pop_front();
        if (!rejecter) ++num_busy_;
      }
      fn();  // serves the connection until it closes
      if (!rejecter) {
        std::lock_guard<std::mutex> lock(mu_);
        --num_busy_;
      }
    }
  }

  const int32_t max_connections_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;     // guarded by mu_
  std::deque<std::function<void()>> rejects_;  // guarded by mu_
  int32_t num_busy_ = 0;                       // guarded by mu_
  bool shutdown_ = false;                      // guarded by mu_
  std::vector<std::thread> workers_;
  std::thread rejecter_;
};

// The one place that picks the server class.
std::unique_ptr<httplib::Server> MakeHttplibServer(const TlsCertificateReloader* tls) {
  if (tls == nullptr) return std::make_unique<httplib::Server>();
  return std::make_unique<httplib::SSLServer>([tls](SSL_CTX& ctx) {
    tls->ConfigureServerContext(&ctx);
    return true;
  });
}

}  // namespace

absl::Status ParseHostPort(std::string_view address, std::string_view flag, std::string* host,
                           int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(std::string(address.substr(colon + 1)), port) || *port < 0 ||
      *port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(flag), ": expected HOST:PORT, got \"", std::string(address), "\""));
  }
  std::string_view h = address.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  *host = std::string(h);
  return absl::OkStatus();
}

HttpListener::HttpListener(HttpListenerOptions options)
    : options_(std::move(options)), server_(MakeHttplibServer(options_.tls.get())) {}

HttpListener::~HttpListener() { Stop(); }

absl::StatusOr<std::unique_ptr<HttpListener>> HttpListener::Create(HttpListenerOptions options) {
  std::string host;
  int port = 0;
  if (absl::Status s = ParseHostPort(options.address, options.flag, &host, &port); !s.ok()) {
    return s;
  }
  // Checked by the callers, which know the flags that set them.
  KV_CHECK(options.max_connections >= 1 && options.max_body_bytes >= 1 &&
           options.read_timeout.count() >= 1 && options.write_timeout.count() >= 1)
      << options.flag << ": limits below 1";
  std::unique_ptr<HttpListener> listener(new HttpListener(std::move(options)));
  if (!listener->server_->is_valid()) {
    return absl::InternalError(
        absl::StrCat(listener->options_.flag, ": OpenSSL could not set up the TLS context"));
  }
  httplib::Server& s = *listener->server_;
  const HttpListenerOptions& o = listener->options_;
  const int32_t max_connections = o.max_connections;
  s.new_task_queue = [max_connections] { return new ConnectionPool(max_connections); };
  s.set_payload_max_length(static_cast<size_t>(o.max_body_bytes));
  s.set_read_timeout(o.read_timeout);
  s.set_write_timeout(o.write_timeout);
  s.set_tcp_nodelay(true);  // SSE chunks are small and latency matters
  // httplib's default sets SO_REUSEPORT, which lets a second server bind the same port and take a
  // share of its connections (issue #18, as gRPC's default did): SO_REUSEADDR only, so a second
  // kvserve fails at start with "address in use" while a restart can still rebind over TIME_WAIT.
  s.set_socket_options([](socket_t sock) {
    const int one = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  });
  // cpp-httplib closes a connection after 5 requests by default; clients, load generators and
  // Prometheus keep theirs open.
  s.set_keep_alive_max_count(10000);
  s.set_pre_routing_handler([&o](const httplib::Request& req, httplib::Response& res) {
    if (t_over_connection_limit) {
      if (o.over_limit != nullptr) {
        o.over_limit(res);
      } else {
        res.set_content("too many open connections: retry later\n", "text/plain");
      }
      res.status = 503;
      if (!res.has_header("Retry-After")) res.set_header("Retry-After", "1");
      res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
    return o.pre_route != nullptr ? o.pre_route(req, res)
                                  : httplib::Server::HandlerResponse::Unhandled;
  });
  return listener;
}

absl::StatusOr<int> HttpListener::Start() {
  std::string host;
  int port = 0;
  if (absl::Status s = ParseHostPort(options_.address, options_.flag, &host, &port); !s.ok()) {
    return s;
  }
  // A client that hangs up mid-write must cost an EPIPE, not the process.
  signal(SIGPIPE, SIG_IGN);
  const int bound =
      port == 0 ? server_->bind_to_any_port(host) : (server_->bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat(options_.flag, ": cannot listen on ",
                                               options_.address, " (address in use or invalid)"));
  }
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    accept_loop_ended_.store(true);
  });
  // httplib's stop() does nothing until the accept loop has begun (its running flag is set inside
  // listen_after_bind), so a Stop right after Start, a SIGTERM during start-up, would be lost and
  // Stop would wait forever: return only once the loop runs (or has already ended).
  while (!server_->is_running() && !accept_loop_ended_.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return bound;
}

void HttpListener::Stop() {
  if (!thread_.joinable()) return;
  server_->stop();
  thread_.join();  // listen_after_bind returns after the task queue joined its threads
}

}  // namespace kvserve::server
