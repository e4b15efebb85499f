#include "server/tls_config.h"

#include <string_view>

#include "absl/strings/str_cat.h"
#include "base/regular_file.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace kvserve::server {

namespace {

// A certificate chain or CA bundle of a few dozen certificates is tens of kilobytes.
constexpr int64_t kMaxPemBytes = 1 << 20;

// The file of `flag`, which must hold a PEM block whose label ends with `label_suffix` ("BEGIN
// CERTIFICATE", or "PRIVATE KEY" for PKCS#8, RSA and EC keys alike).
absl::StatusOr<std::string> ReadPem(std::string_view flag, const std::string& path,
                                    std::string_view label_suffix, std::string_view what) {
  const std::string name = absl::StrCat("--", std::string(flag));
  absl::StatusOr<std::string> text = base::ReadRegularFile(path, kMaxPemBytes);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat(name, " ", text.status().message()));
  }
  const size_t begin = text->find("-----BEGIN ");
  const size_t end_of_label = begin == std::string::npos ? begin : text->find("-----", begin + 11);
  if (end_of_label == std::string::npos ||
      !std::string_view(*text).substr(0, end_of_label).ends_with(label_suffix)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " ", path, ": holds no PEM ", std::string(what)));
  }
  return text;
}

}  // namespace

absl::StatusOr<TlsPem> ReadTlsFiles(const TlsOptions& options) {
  if (options.cert_file.empty() || options.key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key: give both or neither");
  }
  if (options.refresh_interval_seconds < 1) {
    return absl::InvalidArgumentError("TLS refresh interval: must be at least 1 second");
  }
  TlsPem pem;
  absl::StatusOr<std::string> cert =
      ReadPem("tls-cert", options.cert_file, "CERTIFICATE", "certificate");
  if (!cert.ok()) return cert.status();
  pem.cert_chain = *std::move(cert);
  absl::StatusOr<std::string> key =
      ReadPem("tls-key", options.key_file, "PRIVATE KEY", "private key");
  if (!key.ok()) return key.status();
  pem.private_key = *std::move(key);
  if (!options.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca =
        ReadPem("tls-client-ca", options.client_ca_file, "CERTIFICATE", "CA certificate");
    if (!ca.ok()) return ca.status();
    pem.client_ca = *std::move(ca);
  }
  return pem;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> GrpcServerCredentials(
    const TlsOptions& options) {
  absl::StatusOr<TlsPem> pem = ReadTlsFiles(options);
  if (!pem.ok()) return pem.status();
  namespace tls = grpc::experimental;
  auto provider = std::make_shared<tls::FileWatcherCertificateProvider>(
      options.key_file, options.cert_file, options.client_ca_file,
      static_cast<unsigned int>(options.refresh_interval_seconds));
  tls::TlsServerCredentialsOptions tls_options(provider);
  tls_options.watch_identity_key_cert_pairs();
  if (options.client_ca_file.empty()) {
    tls_options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    tls_options.watch_root_certs();
    tls_options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  std::shared_ptr<grpc::ServerCredentials> credentials = tls::TlsServerCredentials(tls_options);
  if (credentials == nullptr) {
    return absl::InvalidArgumentError("--tls-cert/--tls-key: gRPC refused the TLS options");
  }
  return credentials;
}

}  // namespace kvserve::server
