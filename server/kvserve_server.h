// KvServer: the gRPC server process minus main(): models, engines, the kvserve.v1.KvServe service,
// grpc.health.v1 health checking and server reflection.
//
// Health: the overall service "" and "kvserve.v1.KvServe" report SERVING once every model is loaded
// and its engine runs; Shutdown flips both to NOT_SERVING first.
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
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/model_registry.h"
#include "server/request_log.h"

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
  // Serves Prometheus metrics on http://ADDRESS/metrics (port 0 picks a free port); empty: not
  // served (the series are still kept, see metrics()).
  std::string metrics_address;
  // One JSON line per finished request on stderr (server/request_log.h).
  bool log_requests = false;
  // The OpenAI-compatible HTTP API (server/http_server.h) on http.address; empty address: off.
  HttpServerOptions http;
};

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
  // The port the HTTP API is served on; 0 when ServerOptions::http.address is empty.
  int http_port() const { return http_ == nullptr ? 0 : http_->port(); }

  // Drains, then stops: health goes NOT_SERVING (HTTP /health 503), new Generate calls get
  // UNAVAILABLE (HTTP 503), the listener closes and clients are sent GOAWAY; in-flight streams of
  // both APIs run on and the call returns as soon as they are done. Streams still running at
  // `deadline` end with UNAVAILABLE. Engines stop. Idempotent. Blocks until done (at most about a
  // second past `deadline`).
  void Shutdown(std::chrono::system_clock::time_point deadline);
  // Blocks until Shutdown has completed.
  void Wait();

 private:
  class Service;
  KvServer() = default;

  // Declared first, destroyed last: engines report to them until they stop.
  std::shared_ptr<RequestLog> request_log_;  // null unless log_requests
  std::unique_ptr<PrometheusMetrics> metrics_;
  std::unique_ptr<ModelRegistry> registry_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<HttpServer> http_;  // null when the HTTP API is off
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_KVSERVE_SERVER_H_
