// TLS for the server's listeners: the certificate files (--tls-cert, --tls-key, --tls-client-ca),
// their start-up check, and gRPC server credentials that re-read them when they change.
//
// Rotation: Kubernetes updates a mounted secret by writing the new files into a fresh directory
// and swapping a symlink, so a reader sees either the old or the new pair, never a mix. gRPC's
// FileWatcherCertificateProvider re-reads the files every refresh interval and skips an update
// whose key does not match its certificate (a half-written pair); connections made after an
// update get the new certificate, open ones keep theirs.
//
// Nothing but GrpcServerCredentials depends on gRPC: an HTTP listener takes the same TlsOptions
// and reads the PEM text with ReadTlsFiles.
//
// Thread-safety: plain functions over immutable inputs; safe from any thread.
#ifndef KVSERVE_SERVER_TLS_CONFIG_H_
#define KVSERVE_SERVER_TLS_CONFIG_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"

namespace kvserve::server {

struct TlsOptions {
  std::string cert_file;       // PEM certificate chain, leaf first (--tls-cert)
  std::string key_file;        // PEM private key of the leaf (--tls-key)
  std::string client_ca_file;  // PEM CA bundle; set: clients must present a cert it signed (mTLS)
  // Seconds between checks of the files for a rotation (gRPC's smallest unit is a second).
  int refresh_interval_seconds = 60;

  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

// The files' PEM text.
struct TlsPem {
  std::string cert_chain;
  std::string private_key;
  std::string client_ca;  // empty without mTLS
};

// Reads the files named in `options` and checks that they hold what their flag says (a PEM
// certificate, a PEM private key). Errors are INVALID_ARGUMENT or NOT_FOUND naming the flag and
// the path: cert without key or the reverse, a client CA without a cert, an unreadable, empty,
// non-regular or oversized file, a file without the expected PEM block.
// REQUIRES: options.enabled().
absl::StatusOr<TlsPem> ReadTlsFiles(const TlsOptions& options);

// Server credentials that serve the certificate in `options` and follow its rotation; with
// client_ca_file, they require and verify a client certificate. Checks the files first
// (ReadTlsFiles), so a wrong path fails at start, not at the first handshake.
// REQUIRES: options.enabled().
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> GrpcServerCredentials(
    const TlsOptions& options);

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_TLS_CONFIG_H_
