// TLS and mutual TLS on the gRPC port, over real connections to an in-process KvServer on
// 127.0.0.1:0, and certificate rotation.
//
// The certificates are made at test time by the openssl command
// (tests/testing/test_certificates.h), so no private key is committed and nothing expires in the
// tree. Each check opens a fresh connection (a local subchannel pool), as a client arriving after a
// rotation would.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvserve/v1/kvserve.grpc.pb.h"
#include "server/kvserve_server.h"
#include "server/tls_config.h"
#include "tests/testing/test_certificates.h"
#include "tests/testing/tls_test_fixture.h"

namespace kvserve::server {
namespace {

namespace pb = ::kvserve::v1;
using ::testing::HasSubstr;

using Certificates = ::kvserve::testing::TestCertificates;

class TlsTest : public ::kvserve::testing::TlsTestFixture {
 protected:
  void StartServer(bool mutual) {
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.tls.cert_file = certs_->Path("serving.crt");
    options.tls.key_file = certs_->Path("serving.key");
    if (mutual) options.tls.client_ca_file = certs_->Path("ca.crt");
    options.tls.refresh_interval_seconds = 1;
    absl::StatusOr<std::unique_ptr<KvServer>> server = KvServer::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // A new connection with `credentials`; its ListModels status, and the server certificate's CN
  // it saw ("" when the call failed).
  std::pair<grpc::Status, std::string> Call(std::shared_ptr<grpc::ChannelCredentials> credentials) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // no connection shared with an earlier
    auto channel =
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->port()), credentials, args);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    pb::ListModelsResponse response;
    const grpc::Status status =
        pb::KvServe::NewStub(channel)->ListModels(&context, pb::ListModelsRequest(), &response);
    std::string common_name;
    if (status.ok()) {
      for (const grpc::string_ref& cn :
           context.auth_context()->FindPropertyValues("x509_common_name")) {
        common_name.assign(cn.data(), cn.size());
      }
    }
    return {status, common_name};
  }

  std::shared_ptr<grpc::ChannelCredentials> Tls(bool with_client_cert = false) const {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = certs_->Pem("ca.crt");
    if (with_client_cert) {
      ssl.pem_private_key = certs_->Pem("client.key");
      ssl.pem_cert_chain = certs_->Pem("client.crt");
    }
    return grpc::SslCredentials(ssl);
  }

  std::unique_ptr<KvServer> server_;
};

TEST_F(TlsTest, ATlsClientIsServedAndAPlaintextClientIsNot) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*mutual=*/false));
  const auto [status, cn] = Call(Tls());
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(cn, "server-1");
  EXPECT_EQ(Call(grpc::InsecureChannelCredentials()).first.error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*mutual=*/true));
  EXPECT_EQ(Call(Tls(/*with_client_cert=*/false)).first.error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // A client certificate that another CA signed.
  grpc::SslCredentialsOptions stranger;
  stranger.pem_root_certs = certs_->Pem("ca.crt");
  stranger.pem_private_key = certs_->Pem("stranger.key");
  stranger.pem_cert_chain = certs_->Pem("stranger.crt");
  EXPECT_EQ(Call(grpc::SslCredentials(stranger)).first.error_code(), grpc::StatusCode::UNAVAILABLE);
  const auto [status, cn] = Call(Tls(/*with_client_cert=*/true));
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(cn, "server-1");
  EXPECT_EQ(Call(grpc::InsecureChannelCredentials()).first.error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, ANewConnectionSeesARotatedCertificate) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*mutual=*/false));
  ASSERT_EQ(Call(Tls()).second, "server-1");
  ASSERT_TRUE(certs_->Serve("server-2").ok());
  // The provider re-reads the files every second: a bounded poll, not a guess at a delay.
  std::string cn;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    const auto [status, seen] = Call(Tls());
    ASSERT_TRUE(status.ok()) << status.error_message();
    cn = seen;
    if (cn == "server-2") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(cn, "server-2");
}

TEST(TlsConfigTest, NamesTheFlagOfAMissingOrWrongFile) {
  absl::StatusOr<std::unique_ptr<Certificates>> made = Certificates::Make(::testing::TempDir());
  ASSERT_TRUE(made.ok()) << made.status();
  const std::unique_ptr<Certificates>& certs = *made;
  struct Case {
    TlsOptions options;
    std::string message;
  };
  const std::string crt = certs->Path("server-1.crt");
  const std::string key = certs->Path("server-1.key");
  const Case cases[] = {
      {{crt, "", ""}, "--tls-cert and --tls-key: give both or neither"},
      {{"", key, ""}, "--tls-cert and --tls-key: give both or neither"},
      {{crt + ".missing", key, ""}, "--tls-cert " + crt + ".missing: cannot open"},
      {{key, key, ""}, "--tls-cert " + key + ": holds no PEM certificate"},
      {{crt, crt, ""}, "--tls-key " + crt + ": holds no PEM private key"},
      {{crt, key, key}, "--tls-client-ca " + key + ": holds no PEM CA certificate"},
      {{crt, key, "/dev/zero"}, "--tls-client-ca /dev/zero: not a regular file"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<TlsPem> pem = ReadTlsFiles(c.options);
    ASSERT_FALSE(pem.ok()) << c.message;
    EXPECT_THAT(pem.status().message(), HasSubstr(c.message));
    // The server refuses to start on them too.
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.tls = c.options;
    EXPECT_THAT(KvServer::Create(options).status().message(), HasSubstr(c.message));
  }
  absl::StatusOr<TlsPem> pem = ReadTlsFiles({crt, key, certs->Path("ca.crt")});
  ASSERT_TRUE(pem.ok()) << pem.status();
  EXPECT_EQ(pem->cert_chain, certs->Pem("server-1.crt"));
  EXPECT_EQ(pem->private_key, certs->Pem("server-1.key"));
  EXPECT_EQ(pem->client_ca, certs->Pem("ca.crt"));
}

}  // namespace
}  // namespace kvserve::server
