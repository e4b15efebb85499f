// The clients' --api-key / KVSERVE_API_KEY and --tls-ca / --tls-cert / --tls-key
// (tools/client_security.h), through kvserve-bench's Runner against an in-process server on
// 127.0.0.1:0 that requires a key, TLS and a client certificate.
#include "tools/client_security.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/api_keys.h"
#include "server/kvserve_server.h"
#include "tests/testing/test_certificates.h"
#include "tools/bench/runner.h"

namespace kvserve::tools {
namespace {

using ::testing::HasSubstr;

constexpr char kKey[] = "client-test-key-0000000000000001";

class ClientSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<kvserve::testing::TestCertificates>> certs =
        kvserve::testing::TestCertificates::Make(::testing::TempDir());
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *std::move(certs);
    keys_path_ = certs_->Path("keys.txt");
    std::ofstream(keys_path_) << kKey << " acme\n";

    server::ApiKeyAuthenticator::Options auth;
    auth.keys_file = keys_path_;
    absl::StatusOr<std::unique_ptr<server::ApiKeyAuthenticator>> api_keys =
        server::ApiKeyAuthenticator::Create(auth);
    ASSERT_TRUE(api_keys.ok()) << api_keys.status();
    server::ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.engine.num_threads = 1;
    options.api_keys = *std::move(api_keys);
    options.tls.cert_file = certs_->Path("server-1.crt");
    options.tls.key_file = certs_->Path("server-1.key");
    options.tls.client_ca_file = certs_->Path("ca.crt");
    absl::StatusOr<std::unique_ptr<server::KvServer>> server = server::KvServer::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  void TearDown() override { unsetenv("KVSERVE_API_KEY"); }

  // Runner::Connect's outcome with `security` (ListModels and Tokenize on the server). Connect
  // waits for the server to be ready, so a handshake that can never succeed ends at `timeout_s`.
  std::string Connect(const ClientSecurity& security, double timeout_s = 30) {
    bench::RunnerOptions options;
    options.targets = {absl::StrCat("127.0.0.1:", server_->port())};
    options.connect_timeout_s = timeout_s;
    options.security = security;
    absl::StatusOr<std::unique_ptr<bench::Runner>> runner = bench::Runner::Create(options);
    if (!runner.ok()) return runner.status().ToString();
    return (*runner)->Connect().ToString();
  }

  ClientSecurity Full() const {
    ClientSecurity s;
    s.api_key = kKey;
    s.tls_ca_file = certs_->Path("ca.crt");
    s.tls_cert_file = certs_->Path("client.crt");
    s.tls_key_file = certs_->Path("client.key");
    return s;
  }

  std::unique_ptr<kvserve::testing::TestCertificates> certs_;
  std::string keys_path_;
  std::unique_ptr<server::KvServer> server_;
};

TEST_F(ClientSecurityTest, ConnectsWithTheKeyTheCaAndAClientCertificate) {
  EXPECT_EQ(Connect(Full()), "OK");
}

TEST_F(ClientSecurityTest, TakesTheKeyFromTheEnvironmentWhenNoFlagGivesIt) {
  ClientSecurity security = Full();
  security.api_key.clear();
  ASSERT_EQ(setenv("KVSERVE_API_KEY", kKey, 1), 0);
  EXPECT_EQ(Connect(security), "OK");
  // The flag wins over the variable.
  security.api_key = "client-test-key-9999999999999999";
  EXPECT_THAT(Connect(security), HasSubstr("UNAUTHENTICATED: authorization: unknown API key"));
}

TEST_F(ClientSecurityTest, EachMissingPieceIsRefused) {
  ClientSecurity no_key = Full();
  no_key.api_key.clear();
  EXPECT_THAT(Connect(no_key), HasSubstr("UNAUTHENTICATED: authorization: missing"));

  ClientSecurity no_client_cert = Full();
  no_client_cert.tls_cert_file.clear();
  no_client_cert.tls_key_file.clear();
  // The handshake fails on every attempt: the call never starts.
  EXPECT_THAT(Connect(no_client_cert, 1), HasSubstr("ListModels failed: DEADLINE_EXCEEDED"));

  ClientSecurity plaintext;
  plaintext.api_key = kKey;
  EXPECT_THAT(Connect(plaintext, 1), HasSubstr("ListModels failed: DEADLINE_EXCEEDED"));
}

TEST(ResolveClientSecurityTest, NamesTheFlagOfAnInconsistentOrMissingSetting) {
  struct Case {
    ClientSecurity security;
    std::string message;
  };
  const Case cases[] = {
      {{"", "", "c.pem", ""}, "--tls-cert and --tls-key: give both or neither"},
      {{"", "", "c.pem", "k.pem"}, "--tls-cert needs --tls-ca"},
      {{"", "/nonexistent/ca.pem", "", ""}, "--tls-ca /nonexistent/ca.pem: cannot open"},
      {{"a\nb", "", "", ""}, "--api-key: must be one line"},
  };
  for (const Case& c : cases) {
    ClientSecurity security = c.security;
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
        ResolveClientSecurity(&security);
    ASSERT_FALSE(credentials.ok()) << c.message;
    EXPECT_THAT(credentials.status().message(), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace kvserve::tools
