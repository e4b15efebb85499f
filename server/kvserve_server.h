// KvServer: the gRPC server process minus main(): models, engines, the kvserve.v1.KvServe service,
// grpc.health.v1 health checking and server reflection.
//
// Health: the overall service "" and "kvserve.v1.KvServe" report SERVING once every model is loaded
// and its engine runs; Shutdown flips both to NOT_SERVING first, and keeps answering health checks
// while the streams in flight drain. gRPC's built-in health service answers; its descriptor comes
// from grpc-proto's health.proto, so reflection can describe every service it lists
// (kvserve.v1.KvServe, grpc.health.v1.Health, its own).
//
// Thread-safety: Create/Shutdown/Wait from one controlling thread; the rest is driven by gRPC.
#ifndef KVSERVE_SERVER_KVSERVE_SERVER_H_
#define KVSERVE_SERVER_KVSERVE_SERVER_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
#include "server/api_keys.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/model_registry.h"
#include "server/request_log.h"
#include "server/stream_budget.h"
#include "server/tls_certificate_reloader.h"
#include "server/tls_config.h"

namespace kvserve::server {

inline constexpr char kServiceName[] = "kvserve.v1.KvServe";

struct ServerOptions {
  std::string listen_address = "127.0.0.1:50051";  // port 0 picks a free port
  std::vector<ModelSpec> models;                   // empty: the embedded default model
  engine::EngineOptions engine;
  bool enable_reflection = true;
  int max_receive_message_bytes = 4 << 20;
  // Connections older than this get GOAWAY (gRPC adds +-10% jitter), so clients re-resolve the
  // service name and spread over replicas added since; their streams in flight finish on the old
  // connection (no grace limit). Zero: never.
  std::chrono::milliseconds max_connection_age{0};
  // Serves Prometheus metrics on http://ADDRESS/metrics, https:// with `tls` (port 0 picks a free
  // port; an empty host,
  // ":PORT", means listen_address's host, see MetricsListenAddress); empty: not served (the series
  // are still kept, see metrics()).
  std::string metrics_address;
  // One JSON line per finished request on stderr (server/request_log.h).
  bool log_requests = false;
  // Backpressure (server/stream_budget.h): output a stream may hold for a client that does not
  // read before its request stops generating, and the same for all streams of the server.
  int64_t max_stream_buffer_bytes = 64 << 10;
  int64_t max_buffered_bytes = 64 << 20;
  // A stream held that long (its client took nothing meanwhile) is ended: its requests cancelled,
  // their slots and cache freed, its output dropped, the call torn down
  // (server/stream_idle_timeout.h; kvserve_stream_idle_timeouts_total). Zero: never.
  std::chrono::seconds stream_idle_timeout{300};
  // The idle timeout's time source; null: steady_clock. Tests inject a fake (and call
  // streams().idle_timeout()->CheckNow() after moving it).
  std::shared_ptr<const engine::Clock> stream_idle_clock;
  // API keys (server/api_keys.h): every kvserve.v1.KvServe call must carry a known key, and each
  // tenant gets a prefix cache of its own. Health and reflection stay open (probes carry no key;
  // reflection is switched off with enable_reflection). Null: no authentication.
  std::shared_ptr<ApiKeyAuthenticator> api_keys;
  // TLS (and mTLS with client_ca_file) on every port: gRPC, the HTTP API and /metrics, following
  // certificate rotation (server/tls_config.h, server/tls_certificate_reloader.h). Not enabled():
  // plaintext everywhere.
  TlsOptions tls;
  // ListModels reports a model directory's absolute path as ModelInfo.source; off: only the
  // directory's name (server paths tell an attacker about the host).
  bool show_model_paths = false;
  // The OpenAI-compatible HTTP API (server/http_server.h) on http.address; empty address: off.
  HttpServerOptions http;
};

// ServerOptions::stream_idle_timeout's range, [0, one year]; INVALID_ARGUMENT names the flag.
absl::Status ValidateStreamIdleTimeout(std::chrono::seconds timeout);

// Where metrics are served: `metrics_address` itself when it names a host; for ":PORT", the host
// of `listen_address`, so metrics are exactly as reachable as gRPC (loopback stays loopback, and a
// pod listening on 0.0.0.0 can be scraped); 127.0.0.1 when gRPC listens on a unix socket.
std::string MetricsListenAddress(const std::string& metrics_address,
                                 const std::string& listen_address);

class KvServer {
 public:
  static absl::StatusOr<std::unique_ptr<KvServer>> Create(const ServerOptions& options);
  ~KvServer();  // Shutdown() with no grace

  // The port actually bound (useful with port 0).
  int port() const { return port_; }
  const ModelRegistry& models() const { return *registry_; }
  // The port /metrics is served on; 0 when ServerOptions::metrics_address is empty.
  int metrics_port() const { return metrics_->port(); }
  const PrometheusMetrics& metrics() const { return *metrics_; }
  // Generate/Chat streams open now and the output they buffer.
  const StreamBudget& streams() const { return *streams_; }

  // The port the HTTP API is served on; 0 when ServerOptions::http.address is empty.
  int http_port() const { return http_ == nullptr ? 0 : http_->port(); }

  // Re-reads the TLS files for the HTTP API and /metrics now, as their periodic check does every
  // tls.refresh_interval_seconds (server/tls_certificate_reloader.h); gRPC keeps its own schedule.
  // True when a changed certificate is now served to new connections. FAILED_PRECONDITION without
  // TLS. Any thread.
  absl::StatusOr<bool> ReloadTlsCertificates();

  // Drains, then stops: health goes NOT_SERVING (HTTP /health 503) and new Generate calls get
  // UNAVAILABLE (HTTP 503), while the gRPC listener stays open (so probes read NOT_SERVING, not
  // "connection refused") and in-flight streams of both APIs run on; once they are done, or at
  // `deadline`, the listener closes and clients are sent GOAWAY. Streams still running at
  // `deadline` end with UNAVAILABLE. Engines stop. Idempotent. Blocks until done (at most about a
  // second past `deadline`).
  void Shutdown(std::chrono::system_clock::time_point deadline);
  // Blocks until Shutdown has completed.
  void Wait();

 private:
  class Service;
  KvServer() = default;

  // Declared first, destroyed last: engines report to them until they stop.
  std::shared_ptr<TlsCertificateReloader> tls_;  // null without TLS
  std::shared_ptr<RequestLog> request_log_;      // null unless log_requests
  std::unique_ptr<PrometheusMetrics> metrics_;
  std::unique_ptr<StreamBudget> streams_;  // outlives every stream (the server is shut down first)
  std::unique_ptr<ModelRegistry> registry_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<HttpServer> http_;  // null when the HTTP API is off
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_KVSERVE_SERVER_H_
