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
#include "server/model_registry.h"

namespace kvserve::server {

inline constexpr char kServiceName[] = "kvserve.v1.KvServe";

struct ServerOptions {
  std::string listen_address = "127.0.0.1:50051";  // port 0 picks a free port
  std::vector<ModelSpec> models;                   // empty: the embedded default model
  engine::EngineOptions engine;
  bool enable_reflection = true;
  int max_receive_message_bytes = 4 << 20;
};

class KvServer {
 public:
  static absl::StatusOr<std::unique_ptr<KvServer>> Create(const ServerOptions& options);
  ~KvServer();  // Shutdown() with no grace

  // The port actually bound (useful with port 0).
  int port() const { return port_; }
  const ModelRegistry& models() const { return *registry_; }

  // Readiness goes NOT_SERVING, the listener closes, in-flight calls get until `deadline` to finish
  // and are then cancelled; engines stop. Idempotent.
  void Shutdown(std::chrono::system_clock::time_point deadline);
  // Blocks until Shutdown has completed.
  void Wait();

 private:
  class Service;
  KvServer() = default;

  std::unique_ptr<ModelRegistry> registry_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_KVSERVE_SERVER_H_
