#include "tools/client_security.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "base/regular_file.h"

namespace kvserve::tools {

namespace {

constexpr int64_t kMaxPemBytes = 1 << 20;

absl::StatusOr<std::string> ReadPemFlag(const char* flag, const std::string& path) {
  absl::StatusOr<std::string> text = base::ReadRegularFile(path, kMaxPemBytes);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " ", text.status().message()));
  }
  return text;
}

}  // namespace

void AddClientSecurityFlags(base::FlagSet& flags, ClientSecurity* security) {
  flags.AddString("api-key", &security->api_key,
                  "API key sent as 'authorization: Bearer <key>' (default: $KVSERVE_API_KEY).");
  flags.AddString("tls-ca", &security->tls_ca_file,
                  "Connect with TLS, trusting the server certificates this PEM CA bundle signed.");
  flags.AddString("tls-cert", &security->tls_cert_file,
                  "With --tls-ca: present this PEM client certificate (mutual TLS).");
  flags.AddString("tls-key", &security->tls_key_file, "The PEM private key of --tls-cert.");
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ResolveClientSecurity(
    ClientSecurity* security) {
  if (security->api_key.empty()) {
    if (const char* env = std::getenv("KVSERVE_API_KEY"); env != nullptr) security->api_key = env;
  }
  if (security->api_key.find_first_of("\r\n") != std::string::npos) {
    return absl::InvalidArgumentError("--api-key: must be one line");
  }
  if (security->tls_cert_file.empty() != security->tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key: give both or neither");
  }
  if (security->tls_ca_file.empty()) {
    if (!security->tls_cert_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls-cert needs --tls-ca (a client certificate is sent "
          "only over TLS)");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  absl::StatusOr<std::string> ca = ReadPemFlag("tls-ca", security->tls_ca_file);
  if (!ca.ok()) return ca.status();
  ssl.pem_root_certs = *std::move(ca);
  if (!security->tls_cert_file.empty()) {
    absl::StatusOr<std::string> cert = ReadPemFlag("tls-cert", security->tls_cert_file);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPemFlag("tls-key", security->tls_key_file);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

void Authorize(const ClientSecurity& security, grpc::ClientContext* context) {
  if (!security.api_key.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", security.api_key));
  }
}

}  // namespace kvserve::tools
