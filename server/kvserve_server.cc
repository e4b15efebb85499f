#include "server/kvserve_server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "kvserve/v1/kvserve.grpc.pb.h"
#include "server/generate_reactor.h"
#include "server/proto_convert.h"
#include "server/status_map.h"

namespace kvserve::server {

namespace pb = ::kvserve::v1;

// The unary methods are quick (no engine round trip) and answer inline.
class KvServer::Service final : public pb::KvServe::CallbackService {
 public:
  explicit Service(const ModelRegistry* registry) : registry_(registry) {}

  grpc::ServerWriteReactor<pb::GenerateResponse>* Generate(
      grpc::CallbackServerContext* /*context*/, const pb::GenerateRequest* request) override {
    absl::StatusOr<engine::Engine*> engine = registry_->Find(request->model());
    if (!engine.ok()) {
      auto* reactor = new FailedGenerate();
      reactor->Finish(ToGrpcStatus(engine.status()));
      return reactor;
    }
    return new GenerateReactor(*engine, *request);
  }

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const pb::ListModelsRequest* /*request*/,
                                       pb::ListModelsResponse* response) override {
    for (const auto& engine : registry_->engines()) ToProto(engine->info(), response->add_models());
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const pb::TokenizeRequest* request,
                                     pb::TokenizeResponse* response) override {
    auto* reactor = context->DefaultReactor();
    absl::StatusOr<engine::Engine*> engine = registry_->Find(request->model());
    if (!engine.ok()) {
      reactor->Finish(ToGrpcStatus(engine.status()));
      return reactor;
    }
    absl::StatusOr<std::vector<int32_t>> ids = (*engine)->tokenizer().Encode(request->text());
    if (!ids.ok()) {
      // The tokenizer names "prompt"; here the field is "text".
      reactor->Finish(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("text: ", absl::StripPrefix(ids.status().message(), "prompt: "))));
      return reactor;
    }
    response->mutable_token_ids()->Add(ids->begin(), ids->end());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  // A Generate call rejected before it reached an engine.
  class FailedGenerate : public grpc::ServerWriteReactor<pb::GenerateResponse> {
    void OnDone() override { delete this; }
  };

  const ModelRegistry* registry_;
};

absl::StatusOr<std::unique_ptr<KvServer>> KvServer::Create(const ServerOptions& options) {
  std::unique_ptr<KvServer> server(new KvServer());
  KV_ASSIGN_OR_RETURN(server->registry_, ModelRegistry::Create(options.models, options.engine));
  server->service_ = std::make_unique<Service>(server->registry_.get());

  grpc::EnableDefaultHealthCheckService(true);
  if (options.enable_reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, grpc::InsecureServerCredentials(),
                           &server->port_);
  builder.RegisterService(server->service_.get());
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  // Let clients keep idle channels warm without being sent GOAWAY for pinging.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    server->registry_->Shutdown();
    return absl::UnavailableError(absl::StrCat(
        "--listen: cannot listen on ", options.listen_address, " (address in use or invalid)"));
  }
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus(kServiceName, true);
  return server;
}

KvServer::~KvServer() { Shutdown(std::chrono::system_clock::now()); }

void KvServer::Shutdown(std::chrono::system_clock::time_point deadline) {
  if (shut_down_) return;
  shut_down_ = true;
  if (server_ != nullptr) {
    grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
    health->SetServingStatus(kServiceName, false);
    health->SetServingStatus("", false);
    // Engines are still running here, so in-flight streams can complete until the deadline.
    server_->Shutdown(deadline);
  }
  if (registry_ != nullptr) registry_->Shutdown();
}

void KvServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace kvserve::server
