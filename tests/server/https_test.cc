// HTTPS on the HTTP API and the metrics port: an in-process KvServer on 127.0.0.1:0 with
// --tls-cert/--tls-key (and --tls-client-ca), spoken to by an OpenSSL client
// (tests/testing/https_client.h), and the certificate reload the two HTTP listeners share
// (server/tls_certificate_reloader.h).
//
// Certificates are made at test time by the openssl command (tests/testing/test_certificates.h).
// Rotations are applied with KvServer::ReloadTlsCertificates, the check the reloader's own thread
// runs every refresh interval, so no test but one waits for a clock; the interval is set to a day
// so that thread never runs during the others.
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/kvserve_server.h"
#include "server/tls_certificate_reloader.h"
#include "server/tls_config.h"
#include "tests/testing/https_client.h"
#include "tests/testing/tls_test_fixture.h"

namespace kvserve::server {
namespace {

using ::kvserve::testing::HttpsClientOptions;
using ::kvserve::testing::HttpsGet;
using ::kvserve::testing::HttpsReply;
using ::kvserve::testing::PlainHttpGet;
using ::testing::HasSubstr;

constexpr char kDefaultModel[] = "tiny-llama-gqa-random-weights";
constexpr int kOneDay = 86400;

class HttpsTest : public ::kvserve::testing::TlsTestFixture {
 protected:
  TlsOptions Tls(bool mutual, int refresh_interval_seconds = kOneDay) const {
    TlsOptions tls;
    tls.cert_file = certs_->Path("serving.crt");
    tls.key_file = certs_->Path("serving.key");
    if (mutual) tls.client_ca_file = certs_->Path("ca.crt");
    tls.refresh_interval_seconds = refresh_interval_seconds;
    return tls;
  }

  void StartServer(bool mutual, int refresh_interval_seconds = kOneDay) {
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.metrics_address = "127.0.0.1:0";
    options.http.address = "127.0.0.1:0";
    options.engine.num_threads = 1;
    options.tls = Tls(mutual, refresh_interval_seconds);
    absl::StatusOr<std::unique_ptr<KvServer>> server = KvServer::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->http_port(), 0);
    ASSERT_GT(server_->metrics_port(), 0);
  }

  HttpsClientOptions TrustingCa() const { return {certs_->Path("ca.crt"), "", "", nullptr}; }
  HttpsClientOptions WithCertificate(const std::string& name) const {
    return {certs_->Path("ca.crt"), certs_->Path(name + ".crt"), certs_->Path(name + ".key"),
            nullptr};
  }

  std::unique_ptr<KvServer> server_;
};

TEST_F(HttpsTest, TheApiAndMetricsAnswerOverTlsAndNotInPlaintext) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*mutual=*/false));
  const HttpsReply models = HttpsGet(server_->http_port(), "/v1/models", TrustingCa());
  ASSERT_EQ(models.status, 200) << models.error;
  EXPECT_THAT(models.body, HasSubstr(absl::StrCat("\"id\":\"", kDefaultModel, "\"")));
  EXPECT_EQ(models.server_common_name, "server-1");

  const HttpsReply metrics = HttpsGet(server_->metrics_port(), "/metrics", TrustingCa());
  ASSERT_EQ(metrics.status, 200) << metrics.error;
  EXPECT_THAT(metrics.body, HasSubstr("kvserve_build_info{version=\"0.1.0\"} 1"));
  EXPECT_EQ(metrics.server_common_name, "server-1");

  // A client that trusts another CA refuses the server's certificate.
  const HttpsReply stranger =
      HttpsGet(server_->http_port(), "/v1/models", {certs_->Path("other-ca.crt"), "", "", nullptr});
  EXPECT_EQ(stranger.status, 0);
  EXPECT_THAT(stranger.error, HasSubstr("certificate verify failed"));

  // Plain HTTP gets no HTTP answer from either port.
  EXPECT_THAT(PlainHttpGet(server_->http_port(), "/v1/models"), ::testing::Not(HasSubstr("200")));
  EXPECT_EQ(PlainHttpGet(server_->http_port(), "/health").rfind("HTTP/1.1", 0), std::string::npos);
  EXPECT_EQ(PlainHttpGet(server_->metrics_port(), "/metrics").rfind("HTTP/1.1", 0),
            std::string::npos);
}

TEST_F(HttpsTest, MutualTlsRefusesClientsWithoutACertificateFromTheCaOnBothPorts) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*mutual=*/true));
  for (const int port : {server_->http_port(), server_->metrics_port()}) {
    const std::string path = port == server_->http_port() ? "/v1/models" : "/metrics";
    SCOPED_TRACE(path);
    // Refused in the handshake: with TLS 1.3 the client learns it only after sending its request,
    // from an alert or a reset (whichever reaches it first), so the test asserts what is certain:
    // no HTTP answer.
    const HttpsReply none = HttpsGet(port, path, TrustingCa());
    EXPECT_EQ(none.status, 0) << none.body;
    // A client certificate that another CA signed.
    const HttpsReply stranger = HttpsGet(port, path, WithCertificate("stranger"));
    EXPECT_EQ(stranger.status, 0) << stranger.body;
    const HttpsReply client = HttpsGet(port, path, WithCertificate("client"));
    EXPECT_EQ(client.status, 200) << client.error;
    EXPECT_EQ(client.server_common_name, "server-1");
  }
}

// Clients resume sessions (curl, Prometheus' Go client); under mutual TLS OpenSSL refuses a
// resumption fatally unless the server set a session id context.
TEST_F(HttpsTest, AClientResumesItsSessionUnderMutualTls) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*mutual=*/true));
  for (const int port : {server_->http_port(), server_->metrics_port()}) {
    const std::string path = port == server_->http_port() ? "/health" : "/metrics";
    SCOPED_TRACE(path);
    HttpsClientOptions options = WithCertificate("client");
    const HttpsReply first = HttpsGet(port, path, options);
    ASSERT_EQ(first.status, 200) << first.error;
    ASSERT_NE(first.session, nullptr);
    EXPECT_FALSE(first.resumed);
    options.session = first.session;
    const HttpsReply second = HttpsGet(port, path, options);
    EXPECT_EQ(second.status, 200) << second.error;
    EXPECT_TRUE(second.resumed);
  }
}

TEST_F(HttpsTest, ANewConnectionSeesTheRotatedCertificateOnBothPorts) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*mutual=*/false));
  ASSERT_EQ(HttpsGet(server_->http_port(), "/health", TrustingCa()).server_common_name, "server-1");
  // Nothing changed yet: nothing to publish.
  absl::StatusOr<bool> reloaded = server_->ReloadTlsCertificates();
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_FALSE(*reloaded);

  ASSERT_TRUE(certs_->Serve("server-2").ok());
  reloaded = server_->ReloadTlsCertificates();
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_TRUE(*reloaded);
  const HttpsReply api = HttpsGet(server_->http_port(), "/health", TrustingCa());
  EXPECT_EQ(api.status, 200) << api.error;
  EXPECT_EQ(api.server_common_name, "server-2");
  const HttpsReply metrics = HttpsGet(server_->metrics_port(), "/metrics", TrustingCa());
  EXPECT_EQ(metrics.status, 200) << metrics.error;
  EXPECT_EQ(metrics.server_common_name, "server-2");
}

// The one test of the reloader's own thread, which runs the same Reload every refresh interval: a
// bounded wait for the rotation to show (up to 30 times the interval), as tls_test.cc waits for
// gRPC's watcher. Every other test triggers the reload itself.
TEST_F(HttpsTest, TheReloaderChecksTheFilesEveryRefreshInterval) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*mutual=*/false, /*refresh_interval_seconds=*/1));
  ASSERT_TRUE(certs_->Serve("server-2").ok());
  std::string seen;
  for (int i = 0; i < 300 && seen != "server-2"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    seen = HttpsGet(server_->http_port(), "/health", TrustingCa()).server_common_name;
  }
  EXPECT_EQ(seen, "server-2");
}

TEST_F(HttpsTest, AHalfWrittenPairIsSkippedAndTheServedCertificateStays) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*mutual=*/false));
  // The certificate of server-2 next to the key of server-1: a rotation caught midway.
  std::ofstream(certs_->Path("serving.crt")) << certs_->Pem("server-2.crt");
  const absl::StatusOr<bool> reloaded = server_->ReloadTlsCertificates();
  ASSERT_FALSE(reloaded.ok());
  EXPECT_THAT(reloaded.status().message(),
              HasSubstr(absl::StrCat("--tls-key ", certs_->Path("serving.key"),
                                     ": not the key of the certificate in --tls-cert")));
  const HttpsReply api = HttpsGet(server_->http_port(), "/health", TrustingCa());
  EXPECT_EQ(api.status, 200) << api.error;
  EXPECT_EQ(api.server_common_name, "server-1");
  // The rest of the rotation lands; the next check publishes it.
  ASSERT_TRUE(certs_->Serve("server-2").ok());
  ASSERT_TRUE(server_->ReloadTlsCertificates().value_or(false));
  EXPECT_EQ(HttpsGet(server_->http_port(), "/health", TrustingCa()).server_common_name, "server-2");
}

TEST_F(HttpsTest, TheServerRefusesToStartOnAKeyThatIsNotTheCertificates) {
  TlsOptions tls = Tls(/*mutual=*/false);
  tls.key_file = certs_->Path("client.key");
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.http.address = "127.0.0.1:0";
  options.tls = tls;
  absl::StatusOr<std::unique_ptr<KvServer>> server = KvServer::Create(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), HasSubstr("--tls-key " + certs_->Path("client.key")));
}

TEST_F(HttpsTest, ReloadingWithoutTlsIsAnError) {
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<KvServer>> server = KvServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->ReloadTlsCertificates().status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace kvserve::server
