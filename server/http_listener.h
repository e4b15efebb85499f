// HttpListener: one cpp-httplib listening socket with kvserve's limits, over plain HTTP or HTTPS.
// Both HTTP endpoints of the server are one: the OpenAI API (server/http_server.h) and /metrics
// (server/metrics.h); each adds its routes to server() and the listener does the rest.
//
// What it owns, in one place for both:
//   binding      HOST:PORT ([V6]:PORT), port 0 picks a free port; errors name the flag; a port
//                in use is an error (no SO_REUSEPORT), never shared with another process
//   threads      max_connections connection threads, plus one that answers every connection
//                beyond them at once (503, Connection: close) instead of queueing it behind busy
//                ones, where a client could not tell "slow" from "refused"
//   limits       bounded bodies (413), a timeout on every read and write (TLS handshakes included)
//   TLS          with a TlsCertificateReloader: HTTPS with the certificate current at each
//                handshake, and with a client CA, client certificates required (mutual TLS)
//
// Thread-safety: Create, server(), Start and Stop from one controlling thread; handlers run on the
// connection threads.
#ifndef KVSERVE_SERVER_HTTP_LISTENER_H_
#define KVSERVE_SERVER_HTTP_LISTENER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/httplib.h"
#include "server/tls_certificate_reloader.h"

namespace kvserve::server {

struct HttpListenerOptions {
  std::string address;  // HOST:PORT; port 0 picks a free port
  std::string flag;     // the flag `address` came from, named in errors ("--http-address")
  int64_t max_body_bytes = 8 << 20;
  int32_t max_connections = 64;
  std::chrono::seconds read_timeout{10};
  std::chrono::seconds write_timeout{10};
  // Null: plain HTTP. Shared by every listener of the server (and outliving this one).
  std::shared_ptr<TlsCertificateReloader> tls;
  // Fills the body of the 503 answer to a connection beyond max_connections (the listener sets the
  // status, Retry-After and Connection: close). Null: a line of text.
  std::function<void(httplib::Response&)> over_limit;
  // Runs before routing on every request within the connection limit (authentication, content
  // types). Null: every request is routed.
  std::function<httplib::Server::HandlerResponse(const httplib::Request&, httplib::Response&)>
      pre_route;
};

class HttpListener {
 public:
  // Creates the server; nothing is bound yet. INVALID_ARGUMENT names the flag of a malformed
  // address. REQUIRES: the limits and timeouts are >= 1.
  static absl::StatusOr<std::unique_ptr<HttpListener>> Create(HttpListenerOptions options);
  ~HttpListener();  // Stop()

  // Where routes and the error handler go, before Start. (Not the pre-routing handler: that is
  // HttpListenerOptions::pre_route.)
  httplib::Server& server() { return *server_; }

  // Binds and serves on a thread of its own. Returns the port bound; UNAVAILABLE naming the flag
  // and address when it cannot be bound.
  absl::StatusOr<int> Start();
  // Closes the listening socket and waits for the connection threads to finish their
  // connections. Idempotent.
  void Stop();

  bool tls() const { return options_.tls != nullptr; }

 private:
  explicit HttpListener(HttpListenerOptions options);

  const HttpListenerOptions options_;
  const std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> accept_loop_ended_{false};
};

// Splits "HOST:PORT" ("[::1]:80" for IPv6). INVALID_ARGUMENT naming `flag` when malformed.
absl::Status ParseHostPort(std::string_view address, std::string_view flag, std::string* host,
                           int* port);

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_HTTP_LISTENER_H_
