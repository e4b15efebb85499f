#include "server/kvserve_server.h"

#include <atomic>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
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
  Service(const ModelRegistry* registry, PrometheusMetrics* metrics)
      : registry_(registry), metrics_(metrics) {}

  // From now on Generate answers UNAVAILABLE; streams already started are not affected.
  void StartDraining() { draining_.store(true); }

  grpc::ServerWriteReactor<pb::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const pb::GenerateRequest* request) override {
    return StartStream(context, *request, [request](const engine::Engine& engine) {
      return FromProto(*request, engine.tokenizer(), engine.info().default_sampling);
    });
  }

  grpc::ServerWriteReactor<pb::GenerateResponse>* Chat(grpc::CallbackServerContext* context,
                                                       const pb::ChatRequest* request) override {
    return StartStream(context, *request, [request](const engine::Engine& engine) {
      return FromProto(*request, engine.chat_prompt(), engine.tokenizer(),
                       engine.info().default_sampling);
    });
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
    absl::StatusOr<std::vector<int32_t>> ids = (*engine)->tokenizer().Encode(
        request->text(), !request->has_add_special_tokens() || request->add_special_tokens());
    if (!ids.ok()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   absl::StrCat("text: ", ids.status().message())));
      return reactor;
    }
    response->mutable_token_ids()->Add(ids->begin(), ids->end());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const pb::DetokenizeRequest* request,
                                       pb::DetokenizeResponse* response) override {
    auto* reactor = context->DefaultReactor();
    absl::StatusOr<engine::Engine*> engine = registry_->Find(request->model());
    if (!engine.ok()) {
      reactor->Finish(ToGrpcStatus(engine.status()));
      return reactor;
    }
    const engine::Tokenizer& tokenizer = (*engine)->tokenizer();
    const int32_t vocab_size = (*engine)->info().config.vocab_size;
    for (int i = 0; i < request->token_ids_size(); ++i) {
      const int32_t id = request->token_ids(i);
      if (id < 0 || id >= vocab_size) {
        reactor->Finish(
            grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         absl::StrCat("token_ids[", i, "]: ", id, " is outside the vocabulary [0, ",
                                      vocab_size, ")")));
        return reactor;
      }
    }
    response->set_text(tokenizer.DecodeAll(
        absl::MakeConstSpan(request->token_ids().data(), request->token_ids_size()),
        !request->has_skip_special_tokens() || request->skip_special_tokens()));
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  // The two streaming calls differ only in how the wire request becomes a GenerationRequest
  // (`convert`, run on this handler thread: tokenizing and template rendering take no engine
  // lock); draining, model lookup, arrival stamp and the stream itself are shared.
  template <typename Request, typename Convert>
  grpc::ServerWriteReactor<pb::GenerateResponse>* StartStream(grpc::CallbackServerContext* context,
                                                              const Request& request,
                                                              Convert convert) {
    if (draining_.load()) {
      if (ModelMetrics* m = MetricsFor(request.model())) {
        m->CountFailure(FailureReason::kRejected);
      } else {
        metrics_->CountUnknownModel();  // still counted, under model=""
      }
      // UNAVAILABLE is the code clients may retry on another replica: nothing was generated.
      auto* reactor = new FailedGenerate();
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                   "server is draining: send the request to another replica"));
      return reactor;
    }
    absl::StatusOr<engine::Engine*> engine = registry_->Find(request.model());
    if (!engine.ok()) {
      metrics_->CountUnknownModel();
      auto* reactor = new FailedGenerate();
      reactor->Finish(ToGrpcStatus(engine.status()));
      return reactor;
    }
    const engine::SteadyTime arrival = (*engine)->clock().Now();
    return new GenerateReactor(*engine, metrics_->ForModel((*engine)->info().name),
                               context->deadline(), arrival, convert(**engine),
                               request.return_prompt_token_ids());
  }

  // A Generate call rejected before it reached an engine.
  class FailedGenerate : public grpc::ServerWriteReactor<pb::GenerateResponse> {
    void OnDone() override { delete this; }
  };

  // The series of the model `name` resolves to; null for an unknown model.
  ModelMetrics* MetricsFor(const std::string& name) const {
    absl::StatusOr<engine::Engine*> engine = registry_->Find(name);
    return engine.ok() ? metrics_->ForModel((*engine)->info().name) : nullptr;
  }

  const ModelRegistry* registry_;
  PrometheusMetrics* const metrics_;
  std::atomic<bool> draining_{false};
};

absl::StatusOr<std::unique_ptr<KvServer>> KvServer::Create(const ServerOptions& options) {
  std::unique_ptr<KvServer> server(new KvServer());
  if (options.log_requests) server->request_log_ = std::make_shared<RequestLog>();
  server->metrics_ = std::make_unique<PrometheusMetrics>();
  KV_ASSIGN_OR_RETURN(
      server->registry_,
      ModelRegistry::Create(options.models, options.engine,
                            [&server](const std::string& name, const engine::ModelConfig& config) {
                              return server->metrics_->AddModel(
                                  name, config.max_position_embeddings, server->request_log_);
                            }));
  for (const auto& engine : server->registry_->engines()) {
    server->metrics_->SetEngineInfo(engine->info(), options.engine);
  }
  server->service_ = std::make_unique<Service>(server->registry_.get(), server->metrics_.get());

  grpc::EnableDefaultHealthCheckService(true);
  if (options.enable_reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, grpc::InsecureServerCredentials(),
                           &server->port_);
  builder.RegisterService(server->service_.get());
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  if (options.max_connection_age.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               static_cast<int>(options.max_connection_age.count()));
  }
  // Let clients keep idle channels warm without being sent GOAWAY for pinging.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    server->registry_->Shutdown();
    return absl::UnavailableError(absl::StrCat(
        "--listen: cannot listen on ", options.listen_address, " (address in use or invalid)"));
  }
  // After the gRPC port, so that a taken --listen address is the error reported when both are.
  if (!options.metrics_address.empty()) {
    if (absl::Status s = server->metrics_->Serve(options.metrics_address); !s.ok()) {
      server->server_->Shutdown(std::chrono::system_clock::now());
      server->registry_->Shutdown();
      return s;
    }
  }
  if (!options.http.address.empty()) {
    absl::StatusOr<std::unique_ptr<HttpServer>> http =
        HttpServer::Start(options.http, server->registry_.get(), server->metrics_.get());
    if (!http.ok()) {
      server->server_->Shutdown(std::chrono::system_clock::now());
      server->registry_->Shutdown();
      return http.status();
    }
    server->http_ = *std::move(http);
  }
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus(kServiceName, true);
  return server;
}

KvServer::~KvServer() { Shutdown(std::chrono::system_clock::now()); }

// How long the streams ended at the drain deadline get to deliver their UNAVAILABLE status before
// gRPC cancels whatever is still open.
constexpr std::chrono::milliseconds kFinalStatusGrace(1000);

// The drain, from the call on:
//   now        readiness NOT_SERVING (HTTP /health 503); Generate answers UNAVAILABLE (HTTP 503);
//              gRPC closes the listener and sends GOAWAY, so clients start new calls on other
//              replicas while the streams in flight go on (engines keep running)
//   ...        returns as soon as the last call of either API has finished
//   deadline   engines stop: unfinished streams end with UNAVAILABLE "the server is shutting down"
//              (gRPC alone would cancel them, which clients read as CANCELLED)
//   + grace    gRPC cancels anything still open
void KvServer::Shutdown(std::chrono::system_clock::time_point deadline) {
  if (shut_down_) return;
  shut_down_ = true;
  if (server_ != nullptr) {
    grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
    health->SetServingStatus(kServiceName, false);
    health->SetServingStatus("", false);
    service_->StartDraining();
    if (http_ != nullptr) http_->StartDraining();
    absl::Notification calls_done;
    std::thread grpc_shutdown([&] {
      server_->Shutdown(deadline + kFinalStatusGrace);
      calls_done.Notify();
    });
    const bool grpc_done = calls_done.WaitForNotificationWithDeadline(absl::FromChrono(deadline));
    const bool http_done = http_ == nullptr || http_->AwaitIdle(deadline);
    if (!grpc_done || !http_done) {
      int64_t unfinished = 0;
      for (const auto& engine : registry_->engines()) {
        const engine::EngineStats stats = engine->stats();
        unfinished += stats.num_running + stats.num_waiting;
      }
      if (unfinished > 0) {
        KV_LOG(INFO) << "drain deadline reached: ending " << unfinished
                     << " unfinished request(s) with UNAVAILABLE";
      }
      registry_->Shutdown();
    }
    grpc_shutdown.join();
  }
  if (registry_ != nullptr) registry_->Shutdown();
  // After the engines: HTTP streams still open have just ended (aborted), so the connection
  // threads are free to be joined.
  if (http_ != nullptr) http_->Stop();
}

void KvServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace kvserve::server
