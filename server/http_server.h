// HttpServer: the OpenAI-compatible HTTP API (server/openai_api.h), served on the same engines as
// the gRPC API, with cpp-httplib (Debian's libcpp-httplib-dev, the library llama.cpp's server
// uses).
//
//   POST /v1/completions, POST /v1/chat/completions   streaming (SSE) and not
//   GET  /v1/models                                   the served models
//   GET  /health                                      200 while serving, 503 once draining
//
// Threads: the listener (server/http_listener.h, shared with /metrics) serves each connection on
// one thread of a pool of max_connections threads; that thread parses, converts, submits to
// Engine::Submit and writes, and sleeps in poll() while the engine works
// (server/http_generation.h), so the engine thread never waits on HTTP. A connection beyond
// max_connections is answered 503 (Retry-After, Connection: close) by a separate thread, never
// queued behind the others. Every read and write has a timeout, bodies are bounded (413), so a
// slow or hostile client holds at most its own connection's thread.
//
// TLS is HttpServerOptions::tls (HTTPS, the certificate followed through rotations, mutual TLS with
// a client CA), and authentication is HttpServerOptions::api_keys, checked before routing.
//
// Thread-safety: Start, StartDraining, AwaitIdle and Stop are called from one controlling thread;
// the rest runs on cpp-httplib's threads.
#ifndef KVSERVE_SERVER_HTTP_SERVER_H_
#define KVSERVE_SERVER_HTTP_SERVER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/api_keys.h"
#include "server/metrics.h"
#include "server/model_registry.h"
#include "server/stream_budget.h"
#include "server/tls_certificate_reloader.h"

namespace kvserve::server {

struct HttpServerOptions {
  // HOST:PORT (port 0 picks a free port); empty: the HTTP API is off. kvserve's --http-address
  // defaults to 127.0.0.1:8000.
  std::string address;
  // Larger bodies are answered 413 (their bytes are read and dropped, never stored).
  int64_t max_body_bytes = 8 << 20;
  // Open connections served at once; more are answered 503 and closed.
  int32_t max_connections = 64;
  // Longest wait for each read of request headers or body, and for each write; a client that
  // stalls longer is disconnected (and its request cancelled).
  std::chrono::seconds read_timeout{10};
  std::chrono::seconds write_timeout{10};
  // API keys (server/api_keys.h), the same ones the gRPC API checks: every request but /health
  // must carry "Authorization: Bearer <key>" (else 401), and the key's tenant is folded into each
  // request's cache_salt, so tenants never share prefix-cache blocks unless the keys file says
  // so. Null: no authentication.
  std::shared_ptr<ApiKeyAuthenticator> api_keys;
  // HTTPS with the certificate of --tls-cert/--tls-key, and client certificates required when
  // --tls-client-ca is set (the policy of the gRPC port). Null: plain HTTP.
  std::shared_ptr<TlsCertificateReloader> tls;
  // The server's stream budget (server/stream_budget.h), shared with the gRPC streams: the unsent
  // output of every HTTP call is counted in it and bounded by backpressure
  // (server/http_generation.h). Required; KvServer passes its own.
  StreamBudget* streams = nullptr;
};

class HttpServer {
 public:
  // Binds and starts serving. `registry` and `metrics` must outlive the server.
  // UNAVAILABLE names the address when it cannot be bound; INVALID_ARGUMENT for a malformed one.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           const ModelRegistry* registry,
                                                           PrometheusMetrics* metrics);
  ~HttpServer();  // Stop()

  int port() const { return port_; }

  // From now on /health answers 503 and new generations 503 with Retry-After (the gRPC health
  // state goes NOT_SERVING at the same moment); calls under way go on.
  void StartDraining();
  // Waits until no generation call is under way, or `deadline`; true when none is.
  bool AwaitIdle(std::chrono::system_clock::time_point deadline);
  // Closes the listener and waits for the connection threads. Streams still running end when their
  // engine stops (KvServer shuts the engines down first). Idempotent.
  void Stop();

 private:
  class Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_HTTP_SERVER_H_
