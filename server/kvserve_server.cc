#include "server/kvserve_server.h"

#include <algorithm>
#include <atomic>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/support/server_interceptor.h"
#include "kvserve/v1/kvserve.grpc.pb.h"
#include "server/generate_reactor.h"
#include "server/process_collector.h"
#include "server/proto_convert.h"
#include "server/protobuf_logging.h"
#include "server/status_map.h"

namespace kvserve::server {

namespace pb = ::kvserve::v1;

namespace {

// Counts calls whose request message gRPC could not deserialize (malformed protobuf, invalid
// UTF-8 in a string field). gRPC 1.51's callback handlers answer those UNIMPLEMENTED with an empty
// message before any handler runs (CallbackServerStreamingHandler::RunHandler substitutes its own
// reactor), so they cannot be answered INVALID_ARGUMENT from here; an interceptor still sees them,
// as a received message that is null (as is the message of a call cancelled before it arrived,
// which is counted too).
class MalformedRequestInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit MalformedRequestInterceptor(PrometheusMetrics* metrics) : metrics_(metrics) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      metrics_->CountMalformedRequest();
    }
    methods->Proceed();
  }

 private:
  PrometheusMetrics* const metrics_;
};

class MalformedRequestInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MalformedRequestInterceptorFactory(PrometheusMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* /*info*/) override {
    return new MalformedRequestInterceptor(metrics_);
  }

 private:
  PrometheusMetrics* const metrics_;
};

}  // namespace

// The unary methods are quick (no engine round trip) and answer inline.
class KvServer::Service final : public pb::KvServe::CallbackService {
 public:
  Service(const ModelRegistry* registry, PrometheusMetrics* metrics, StreamBudget* streams,
          std::shared_ptr<ApiKeyAuthenticator> api_keys, bool show_model_paths)
      : registry_(registry),
        metrics_(metrics),
        streams_(streams),
        api_keys_(std::move(api_keys)),
        show_model_paths_(show_model_paths) {}

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
    auto* reactor = context->DefaultReactor();
    if (absl::StatusOr<std::string> tenant = Authenticate(*context); !tenant.ok()) {
      reactor->Finish(ToGrpcStatus(tenant.status()));
      return reactor;
    }
    for (const auto& engine : registry_->engines()) {
      ToProto(engine->info(), response->add_models(), show_model_paths_);
    }
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const pb::TokenizeRequest* request,
                                     pb::TokenizeResponse* response) override {
    auto* reactor = context->DefaultReactor();
    if (absl::StatusOr<std::string> tenant = Authenticate(*context); !tenant.ok()) {
      reactor->Finish(ToGrpcStatus(tenant.status()));
      return reactor;
    }
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
    if (absl::StatusOr<std::string> tenant = Authenticate(*context); !tenant.ok()) {
      reactor->Finish(ToGrpcStatus(tenant.status()));
      return reactor;
    }
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
    // First, so a caller without a key learns nothing, not even whether the server drains.
    absl::StatusOr<std::string> tenant = Authenticate(*context);
    if (!tenant.ok()) {
      auto* reactor = new FailedGenerate();
      reactor->Finish(ToGrpcStatus(tenant.status()));
      return reactor;
    }
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
    absl::StatusOr<engine::GenerationRequest> converted = convert(**engine);
    if (converted.ok() && api_keys_ != nullptr) {
      converted->cache_salt = api_keys_->CacheSalt(*tenant, converted->cache_salt);
    }
    return new GenerateReactor(context, *engine, metrics_->ForModel((*engine)->info().name),
                               streams_, context->deadline(), arrival, std::move(converted),
                               request.return_prompt_token_ids());
  }

  // The caller's tenant ("" when no API keys are configured), or UNAUTHENTICATED.
  absl::StatusOr<std::string> Authenticate(const grpc::CallbackServerContext& context) const {
    if (api_keys_ == nullptr) return std::string();
    const auto [first, last] = context.client_metadata().equal_range("authorization");
    if (first == last) return api_keys_->Authenticate(std::nullopt);
    // Two values could be read differently by a proxy in front and by us: refuse the ambiguity.
    if (std::next(first) != last) {
      return absl::UnauthenticatedError("authorization: sent more than once");
    }
    return api_keys_->Authenticate(std::string_view(first->second.data(), first->second.size()));
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
  StreamBudget* const streams_;
  const std::shared_ptr<ApiKeyAuthenticator> api_keys_;  // null: no authentication
  const bool show_model_paths_;
  std::atomic<bool> draining_{false};
};

namespace {

// Reflection lists every registered service but describes them only from protobuf's generated
// pool. gRPC's built-in health service encodes its messages by hand and brings no descriptor, so
// `grpcurl describe` and `buf curl --list-methods` failed on grpc.health.v1.Health ("Symbol not
// found"). Naming a generated health.proto class (grpc-proto's file, the one the built-in service
// implements: Check and Watch) links that file in, which registers its descriptor; the built-in
// service, with its Watch streams and its shutdown handling, stays the one that answers.
void RequireReflectableServices() {
  const google::protobuf::FileDescriptor* health =
      grpc::health::v1::HealthCheckRequest::descriptor()->file();
  KV_CHECK(health->FindServiceByName("Health") != nullptr) << health->name();
  for (const char* service :
       {kServiceName, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}) {
    KV_CHECK(google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service) !=
             nullptr)
        << "reflection would list " << service << " but could not describe it";
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<KvServer>> KvServer::Create(const ServerOptions& options) {
  if (options.max_stream_buffer_bytes < 1 || options.max_buffered_bytes < 1) {
    return absl::InvalidArgumentError(
        "--max-stream-buffer-bytes and --max-buffered-bytes must be >= 1");
  }
  KV_RETURN_IF_ERROR(ValidateStreamIdleTimeout(options.stream_idle_timeout));
  RouteProtobufLogging();
  // Before the models load: a wrong certificate path fails at once.
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (options.tls.enabled()) {
    KV_ASSIGN_OR_RETURN(credentials, GrpcServerCredentials(options.tls));
  }
  std::unique_ptr<KvServer> server(new KvServer());
  if (options.tls.enabled()) {
    KV_ASSIGN_OR_RETURN(server->tls_, TlsCertificateReloader::Create(options.tls));
  }
  if (options.log_requests) server->request_log_ = std::make_shared<RequestLog>();
  server->metrics_ = std::make_unique<PrometheusMetrics>();
  std::unique_ptr<StreamIdleTimeout> idle_timeout;
  if (options.stream_idle_timeout.count() > 0) {
    idle_timeout =
        std::make_unique<StreamIdleTimeout>(options.stream_idle_timeout, options.stream_idle_clock,
                                            &server->metrics_->stream_idle_timeouts());
  }
  server->streams_ = std::make_unique<StreamBudget>(
      options.max_stream_buffer_bytes, options.max_buffered_bytes,
      &server->metrics_->stream_buffered_bytes(), std::move(idle_timeout));
  KV_ASSIGN_OR_RETURN(
      server->registry_,
      ModelRegistry::Create(options.models, options.engine,
                            [&server](const std::string& name, const engine::ModelConfig& config) {
                              return server->metrics_->AddModel(
                                  name, config.max_position_embeddings, server->request_log_);
                            }));
  for (const auto& engine : server->registry_->engines()) {
    server->metrics_->SetEngineInfo(engine->info(), options.engine,
                                    engine::CacheUsageOf(engine->stats().cache));
  }
  server->service_ =
      std::make_unique<Service>(server->registry_.get(), server->metrics_.get(),
                                server->streams_.get(), options.api_keys, options.show_model_paths);

  grpc::EnableDefaultHealthCheckService(true);
  if (options.enable_reflection) {
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    RequireReflectableServices();
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, credentials, &server->port_);
  builder.RegisterService(server->service_.get());
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  // gRPC sets SO_REUSEPORT by default, which lets a second server bind the same port and take a
  // share of new connections (possibly serving another model): off, so it fails at start instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (options.max_connection_age.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               static_cast<int>(options.max_connection_age.count()));
  }
  // Let clients keep idle channels warm without being sent GOAWAY for pinging.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(
      std::make_unique<MalformedRequestInterceptorFactory>(server->metrics_.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    server->registry_->Shutdown();
    return absl::UnavailableError(absl::StrCat(
        "--listen: cannot listen on ", options.listen_address, " (address in use or invalid)"));
  }
  // After the gRPC port, so that a taken --listen address is the error reported when both are.
  if (!options.metrics_address.empty()) {
    if (absl::Status s = server->metrics_->Serve(
            MetricsListenAddress(options.metrics_address, options.listen_address), server->tls_);
        !s.ok()) {
      server->server_->Shutdown(std::chrono::system_clock::now());
      server->registry_->Shutdown();
      return s;
    }
  }
  if (!options.http.address.empty()) {
    HttpServerOptions http_options = options.http;
    http_options.api_keys = options.api_keys;       // one set of keys for both APIs
    http_options.tls = server->tls_;                // and one certificate for every port
    http_options.streams = server->streams_.get();  // one budget, one gauge, for both APIs
    absl::StatusOr<std::unique_ptr<HttpServer>> http =
        HttpServer::Start(http_options, server->registry_.get(), server->metrics_.get());
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

absl::Status ValidateStreamIdleTimeout(std::chrono::seconds timeout) {
  // A year is past any sensible value and far from where a duration in nanoseconds overflows.
  constexpr std::chrono::seconds kMax = std::chrono::hours(24 * 365);
  if (timeout.count() < 0 || timeout > kMax) {
    return absl::InvalidArgumentError(absl::StrCat("--stream-idle-timeout: must be in [0, ",
                                                   kMax.count(), "] seconds (0 = off), got ",
                                                   timeout.count()));
  }
  return absl::OkStatus();
}

std::string MetricsListenAddress(const std::string& metrics_address,
                                 const std::string& listen_address) {
  if (!metrics_address.starts_with(':')) return metrics_address;
  if (listen_address.starts_with("unix:") || listen_address.starts_with("unix-abstract:")) {
    return absl::StrCat("127.0.0.1", metrics_address);
  }
  // HOST:PORT, [V6]:PORT or a bare host: the host is everything before the last ':' that follows
  // any ']'.
  const size_t bracket = listen_address.rfind(']');
  const size_t colon = listen_address.rfind(':');
  const bool has_port =
      colon != std::string::npos && (bracket == std::string::npos || colon > bracket);
  return absl::StrCat(has_port ? listen_address.substr(0, colon) : listen_address, metrics_address);
}

KvServer::~KvServer() { Shutdown(std::chrono::system_clock::now()); }

// How long the streams ended at the drain deadline get to deliver their UNAVAILABLE status before
// gRPC cancels whatever is still open.
constexpr std::chrono::milliseconds kFinalStatusGrace(1000);

// The drain, from the call on:
//   now        readiness NOT_SERVING (HTTP /health 503); Generate answers UNAVAILABLE (HTTP 503);
//              the gRPC listener stays open, so probes and load balancers read NOT_SERVING (a
//              closed port reads as a crash), while the streams in flight of both APIs go on
//              (engines keep running)
//   ...        as soon as the last stream of either API has finished: gRPC closes the listener,
//              sends GOAWAY and returns once the remaining (unary, health watch) calls are done
//   deadline   engines stop: unfinished streams end with UNAVAILABLE "the server is shutting down"
//              (gRPC alone would cancel them, which clients read as CANCELLED); then as above
//   + grace    gRPC cancels anything still open
void KvServer::Shutdown(std::chrono::system_clock::time_point deadline) {
  if (shut_down_) return;
  shut_down_ = true;
  if (server_ != nullptr) {
    // Draining first: whoever reads NOT_SERVING is also refused new streams.
    service_->StartDraining();
    grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
    health->SetServingStatus(kServiceName, false);
    health->SetServingStatus("", false);
    if (http_ != nullptr) http_->StartDraining();
    // Both waits end by `deadline`; the HTTP one only starts counting after the gRPC one.
    const bool grpc_done = streams_->WaitUntilAllClosed(absl::FromChrono(deadline));
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
    server_->Shutdown(std::max(deadline, std::chrono::system_clock::now()) + kFinalStatusGrace);
  }
  if (registry_ != nullptr) registry_->Shutdown();
  // After the engines: HTTP streams still open have just ended (aborted), so the connection
  // threads are free to be joined.
  if (http_ != nullptr) http_->Stop();
}

absl::StatusOr<bool> KvServer::ReloadTlsCertificates() {
  if (tls_ == nullptr) return absl::FailedPreconditionError("the server was started without TLS");
  return tls_->Reload();
}

void KvServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace kvserve::server
