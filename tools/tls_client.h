// TLS for kvserve-bench's own HTTP client (tools/bench/openai_client.h: the OpenAI API with
// --protocol=openai, and --metrics-url https://...), on OpenSSL: the same --tls-ca, --tls-cert and
// --tls-key as the gRPC channels (tools/client_security.h), so one set of flags reaches every port
// of a server run with --tls-cert.
//
// Thread-safety: a TlsClientContext is immutable after Create and shared by every connection; a
// TlsStream is used by one thread, except that the socket under it may be shut down from another
// (which fails its blocked read or write).
#ifndef KVSERVE_TOOLS_TLS_CLIENT_H_
#define KVSERVE_TOOLS_TLS_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tools/client_security.h"

// <openssl/ssl.h>
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace kvserve::tools {

class TlsStream;

class TlsClientContext {
 public:
  // Trusts `security.tls_ca_file` and presents tls_cert_file/tls_key_file when set. Null (and OK)
  // without --tls-ca: plain connections. INVALID_ARGUMENT naming the flag of a file OpenSSL
  // cannot load.
  static absl::StatusOr<std::shared_ptr<const TlsClientContext>> Create(
      const ClientSecurity& security);
  ~TlsClientContext();

  // The TLS handshake over the connected socket `fd` (which stays owned by the caller), verifying
  // the server's certificate for `host` (a name or an IP address). UNAVAILABLE with OpenSSL's
  // reason when it fails.
  absl::StatusOr<std::unique_ptr<TlsStream>> Handshake(int fd, const std::string& host) const;

 private:
  explicit TlsClientContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* const ctx_;
};

class TlsStream {
 public:
  ~TlsStream();
  // Like send(2) / recv(2): bytes moved, 0 at the end of the stream (read), -1 on an error (errno
  // is EAGAIN when the socket's timeout passed).
  long Write(absl::string_view data);
  long Read(char* buffer, size_t size);

 private:
  friend class TlsClientContext;
  explicit TlsStream(SSL* ssl) : ssl_(ssl) {}
  SSL* const ssl_;
};

}  // namespace kvserve::tools

#endif  // KVSERVE_TOOLS_TLS_CLIENT_H_
