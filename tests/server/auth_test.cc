// API keys and tenant isolation over real gRPC: an in-process KvServer on 127.0.0.1:0 with a keys
// file, driven through the generated stubs. The embedded default model (byte tokenizer, block
// size 16) serves every test; prefix-cache reuse is read from kvserve_prefix_cache_hits_total.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvserve/v1/kvserve.grpc.pb.h"
#include "server/api_keys.h"
#include "server/kvserve_server.h"

namespace kvserve::server {
namespace {

namespace pb = ::kvserve::v1;
using ::testing::HasSubstr;

constexpr char kAcme1[] = "acme-0000000000000000000000000001";
constexpr char kAcme2[] = "acme-0000000000000000000000000002";
constexpr char kGlobex[] = "globex-00000000000000000000000001";
constexpr char kLoner[] = "loner-000000000000000000000000001";  // no tenant: one of its own
constexpr std::chrono::seconds kCallTimeout(60);

std::string KeysFile() {
  return absl::StrCat(kAcme1, " acme\n", kAcme2, " acme\n", kGlobex, " globex\n", kLoner, "\n");
}

// The one sample of `name` (one model, so one series) in the text exposition; -1 when absent.
double MetricValue(const std::string& text, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, name) || line.size() <= name.size()) continue;
    const char next = line[name.size()];
    if (next != '{' && next != ' ') continue;
    double value = -1;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) return value;
  }
  return -1;
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keys_path_ = ::testing::TempDir() + "/auth_test_keys_" + std::to_string(getpid()) + ".txt";
    ASSERT_NO_FATAL_FAILURE(WriteKeys(KeysFile()));
  }
  void TearDown() override {
    server_.reset();
    std::remove(keys_path_.c_str());
  }

  void WriteKeys(const std::string& text) {
    const std::string tmp = keys_path_ + ".new";
    std::ofstream(tmp) << text;
    ASSERT_EQ(std::rename(tmp.c_str(), keys_path_.c_str()), 0);
  }

  void StartServer(bool share_across_tenants = false) {
    ApiKeyAuthenticator::Options auth;
    auth.keys_file = keys_path_;
    auth.reload_check_interval = absl::ZeroDuration();
    auth.share_prefix_cache_across_tenants = share_across_tenants;
    absl::StatusOr<std::unique_ptr<ApiKeyAuthenticator>> api_keys =
        ApiKeyAuthenticator::Create(auth);
    ASSERT_TRUE(api_keys.ok()) << api_keys.status();
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.api_keys = *std::move(api_keys);
    absl::StatusOr<std::unique_ptr<KvServer>> server = KvServer::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = pb::KvServe::NewStub(channel_);
  }

  // A context with a deadline and, unless empty, `authorization` metadata.
  static void Prepare(grpc::ClientContext* context, const std::string& authorization) {
    context->set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    if (!authorization.empty()) context->AddMetadata("authorization", authorization);
  }

  // Runs a Generate call to the end; returns its status.
  grpc::Status Generate(const std::string& authorization, const pb::GenerateRequest& request) {
    grpc::ClientContext context;
    Prepare(&context, authorization);
    std::unique_ptr<grpc::ClientReader<pb::GenerateResponse>> reader =
        stub_->Generate(&context, request);
    pb::GenerateResponse response;
    while (reader->Read(&response)) {
    }
    return reader->Finish();
  }

  // kvserve_prefix_cache_hits_total once the engine has reported `generated` tokens in all.
  double PrefixHitsAfter(double generated) {
    std::string text;
    for (int i = 0; i < 2000; ++i) {  // a bounded poll: the observer reports after the stream ends
      text = server_->metrics().Serialize();
      if (MetricValue(text, "kvserve_generation_tokens_total") >= generated) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(MetricValue(text, "kvserve_generation_tokens_total"), generated);
    return MetricValue(text, "kvserve_prefix_cache_hits_total");
  }

  std::string keys_path_;
  std::unique_ptr<KvServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::KvServe::Stub> stub_;
};

// 40 prompt tokens: two full blocks of 16 that a later request of the same salt finds cached.
pb::GenerateRequest FortyTokenRequest() {
  pb::GenerateRequest request;
  for (int i = 0; i < 40; ++i) request.mutable_prompt_token_ids()->add_ids(20 + i);
  request.set_max_tokens(1);
  request.mutable_sampling()->set_temperature(0.0f);
  return request;
}

std::string Bearer(const char* key) { return absl::StrCat("Bearer ", key); }

TEST_F(AuthTest, EveryKvServeMethodRefusesACallWithoutAValidKey) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const std::pair<std::string, std::string> cases[] = {
      {"", "authorization: missing; send 'authorization: Bearer <API key>'"},
      {"Basic dXNlcjpwYXNz", "authorization: expected 'Bearer <API key>'"},
      {"Bearer not-a-key-of-this-server-0000", "authorization: unknown API key"},
  };
  for (const auto& [authorization, message] : cases) {
    SCOPED_TRACE(authorization);
    std::vector<grpc::Status> statuses;
    statuses.push_back(Generate(authorization, FortyTokenRequest()));
    {
      grpc::ClientContext context;
      Prepare(&context, authorization);
      pb::ChatRequest request;
      request.add_messages()->set_content("hi");
      pb::GenerateResponse response;
      auto reader = stub_->Chat(&context, request);
      while (reader->Read(&response)) {
      }
      statuses.push_back(reader->Finish());
    }
    {
      grpc::ClientContext context;
      Prepare(&context, authorization);
      pb::ListModelsResponse response;
      statuses.push_back(stub_->ListModels(&context, pb::ListModelsRequest(), &response));
      EXPECT_EQ(response.models_size(), 0);
    }
    {
      grpc::ClientContext context;
      Prepare(&context, authorization);
      pb::TokenizeRequest request;
      request.set_text("hi");
      pb::TokenizeResponse response;
      statuses.push_back(stub_->Tokenize(&context, request, &response));
      EXPECT_EQ(response.token_ids_size(), 0);
    }
    {
      grpc::ClientContext context;
      Prepare(&context, authorization);
      pb::DetokenizeRequest request;
      request.add_token_ids(65);
      pb::DetokenizeResponse response;
      statuses.push_back(stub_->Detokenize(&context, request, &response));
      EXPECT_EQ(response.text(), "");
    }
    for (const grpc::Status& status : statuses) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
      EXPECT_EQ(status.error_message(), message);
    }
  }
  // Nothing reached the engine.
  EXPECT_EQ(server_->models().engines().front()->stats().num_finished, 0);
}

TEST_F(AuthTest, AValidKeyIsServedAndHealthNeedsNoKey) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  EXPECT_TRUE(Generate(Bearer(kAcme1), FortyTokenRequest()).ok());
  grpc::ClientContext context;
  Prepare(&context, Bearer(kLoner));
  pb::TokenizeRequest request;
  request.set_text("A");
  pb::TokenizeResponse response;
  const grpc::Status status = stub_->Tokenize(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.token_ids_size(), 2);  // BOS, 'A'

  // Kubernetes probes carry no key.
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext health_context;
  health_context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  grpc::health::v1::HealthCheckResponse health_response;
  ASSERT_TRUE(health->Check(&health_context, {}, &health_response).ok());
  EXPECT_EQ(health_response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(AuthTest, TwoAuthorizationValuesAreRefused) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  grpc::ClientContext context;
  Prepare(&context, Bearer(kAcme1));
  context.AddMetadata("authorization", Bearer(kGlobex));
  pb::ListModelsResponse response;
  const grpc::Status status = stub_->ListModels(&context, pb::ListModelsRequest(), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(status.error_message(), "authorization: sent more than once");
}

TEST_F(AuthTest, TenantsDoNotShareCachedPromptsButKeysOfOneTenantDo) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const pb::GenerateRequest request = FortyTokenRequest();
  ASSERT_TRUE(Generate(Bearer(kAcme1), request).ok());
  EXPECT_EQ(PrefixHitsAfter(1), 0);
  // Another tenant, the same prompt: no hit, whatever the cache holds.
  ASSERT_TRUE(Generate(Bearer(kGlobex), request).ok());
  EXPECT_EQ(PrefixHitsAfter(2), 0);
  ASSERT_TRUE(Generate(Bearer(kLoner), request).ok());
  EXPECT_EQ(PrefixHitsAfter(3), 0);
  // Naming another tenant's salt explicitly does not reach its cache either.
  pb::GenerateRequest salted = request;
  salted.set_cache_salt("acme");
  ASSERT_TRUE(Generate(Bearer(kGlobex), salted).ok());
  EXPECT_EQ(PrefixHitsAfter(4), 0);
  // The other key of acme's: both full blocks found.
  ASSERT_TRUE(Generate(Bearer(kAcme2), request).ok());
  EXPECT_EQ(PrefixHitsAfter(5), 32);
  // Within a tenant, a client's own salt still separates.
  pb::GenerateRequest own_salt = request;
  own_salt.set_cache_salt("private");
  ASSERT_TRUE(Generate(Bearer(kAcme1), own_salt).ok());
  EXPECT_EQ(PrefixHitsAfter(6), 32);
}

TEST_F(AuthTest, SharingAcrossTenantsIsAnOptIn) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*share_across_tenants=*/true));
  const pb::GenerateRequest request = FortyTokenRequest();
  ASSERT_TRUE(Generate(Bearer(kAcme1), request).ok());
  ASSERT_TRUE(Generate(Bearer(kGlobex), request).ok());
  EXPECT_EQ(PrefixHitsAfter(2), 32);
}

TEST_F(AuthTest, AReplacedKeysFileTakesEffectOnTheNextCall) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  ASSERT_TRUE(Generate(Bearer(kGlobex), FortyTokenRequest()).ok());
  ASSERT_NO_FATAL_FAILURE(WriteKeys(absl::StrCat(kAcme1, " acme\n")));  // globex revoked
  const grpc::Status revoked = Generate(Bearer(kGlobex), FortyTokenRequest());
  EXPECT_EQ(revoked.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(revoked.error_message(), HasSubstr("unknown API key"));
  EXPECT_TRUE(Generate(Bearer(kAcme1), FortyTokenRequest()).ok());
}

}  // namespace
}  // namespace kvserve::server
