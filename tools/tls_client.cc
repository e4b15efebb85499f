#include "tools/tls_client.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace kvserve::tools {

namespace {

// OpenSSL's queued reasons, oldest first, and the queue emptied.
std::string OpenSslErrors() {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof(buffer));
    absl::StrAppend(&text, text.empty() ? "" : "; ", buffer);
  }
  return text.empty() ? "no reason given" : text;
}

bool IsIpAddress(const std::string& host) {
  unsigned char address[16];
  return inet_pton(AF_INET, host.c_str(), address) == 1 ||
         inet_pton(AF_INET6, host.c_str(), address) == 1;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const TlsClientContext>> TlsClientContext::Create(
    const ClientSecurity& security) {
  if (security.tls_ca_file.empty()) return std::shared_ptr<const TlsClientContext>();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return absl::ResourceExhaustedError("OpenSSL: no memory for a TLS context");
  std::shared_ptr<const TlsClientContext> context(new TlsClientContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_load_verify_locations(ctx, security.tls_ca_file.c_str(), nullptr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-ca ", security.tls_ca_file, ": ", OpenSslErrors()));
  }
  if (!security.tls_cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, security.tls_cert_file.c_str()) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-cert ", security.tls_cert_file, ": ", OpenSslErrors()));
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, security.tls_key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-key ", security.tls_key_file, ": ", OpenSslErrors()));
    }
  }
  return context;
}

TlsClientContext::~TlsClientContext() { SSL_CTX_free(ctx_); }

absl::StatusOr<std::unique_ptr<TlsStream>> TlsClientContext::Handshake(
    int fd, const std::string& host) const {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return absl::ResourceExhaustedError("OpenSSL: no memory for a connection");
  std::unique_ptr<TlsStream> stream(new TlsStream(ssl));
  SSL_set_fd(ssl, fd);
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (IsIpAddress(host)) {
    X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, host.c_str());
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  }
  if (SSL_connect(ssl) != 1) {
    return absl::UnavailableError(absl::StrCat("TLS handshake with ", host, ": ", OpenSslErrors()));
  }
  return stream;
}

TlsStream::~TlsStream() {
  SSL_shutdown(ssl_);  // close_notify; the caller closes the socket
  SSL_free(ssl_);
  ERR_clear_error();
}

long TlsStream::Write(absl::string_view data) {
  const int n = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
  if (n > 0) return n;
  ERR_clear_error();
  return -1;
}

long TlsStream::Read(char* buffer, size_t size) {
  const int n = SSL_read(ssl_, buffer, static_cast<int>(size));
  if (n > 0) return n;
  const int saved_errno = errno;
  const int error = SSL_get_error(ssl_, n);
  ERR_clear_error();
  // The peer's close_notify, or a close without one once the answer was complete (the caller
  // knows from Content-Length or the last chunk whether anything is missing).
  if (error == SSL_ERROR_ZERO_RETURN || (error == SSL_ERROR_SYSCALL && saved_errno == 0)) return 0;
  errno = saved_errno;
  return -1;
}

}  // namespace kvserve::tools
