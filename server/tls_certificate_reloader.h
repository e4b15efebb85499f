// TlsCertificateReloader: the certificate kvserve's HTTPS listeners (the HTTP API and /metrics)
// present, kept current with the files named by TlsOptions (server/tls_config.h).
//
// gRPC follows a rotation with its own FileWatcherCertificateProvider (GrpcServerCredentials);
// cpp-httplib has nothing alike, so this class does the same for OpenSSL: every refresh interval,
// and whenever Reload() is called, it re-reads the files with ReadTlsFiles (the one reader and
// checker of them) and, when their text changed and the new key matches the new certificate,
// publishes the new pair. A pair whose key does not match its certificate (one file rewritten, the
// other not yet) is skipped and looked at again at the next check, as gRPC does. The client CA
// bundle (mTLS) is followed the same way.
//
// ConfigureServerContext installs an OpenSSL certificate callback (SSL_CTX_set_cert_cb) that hands
// every handshake the pair current at that moment, so a new connection sees a rotated certificate
// without a restart and connections already open keep theirs.
//
// Thread-safety: thread-safe. The callback runs on the listeners' connection threads; the checks
// run on a thread of the reloader's own.
#ifndef KVSERVE_SERVER_TLS_CERTIFICATE_RELOADER_H_
#define KVSERVE_SERVER_TLS_CERTIFICATE_RELOADER_H_

#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/tls_config.h"

// <openssl/ssl.h>
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace kvserve::server {

class TlsCertificateReloader {
 public:
  // Reads and checks the files now, then checks them again every
  // options.refresh_interval_seconds. Errors: those of ReadTlsFiles, and INVALID_ARGUMENT naming
  // the flag when OpenSSL cannot parse a file or the key does not belong to the certificate.
  // REQUIRES: options.enabled().
  static absl::StatusOr<std::unique_ptr<TlsCertificateReloader>> Create(const TlsOptions& options);
  ~TlsCertificateReloader();  // stops the checks
  TlsCertificateReloader(const TlsCertificateReloader&) = delete;
  TlsCertificateReloader& operator=(const TlsCertificateReloader&) = delete;

  // Re-reads the files now: true when a changed pair or CA bundle was published, false when the
  // files hold what is served already. On an error the certificate served stays as it was.
  absl::StatusOr<bool> Reload();

  // Sets up `ctx` (cpp-httplib's SSLServer set-up callback) to serve TLS 1.2 or later with the
  // current certificate at each handshake and, with a client CA, to require and verify a client
  // certificate. REQUIRES: this reloader outlives every connection made with `ctx`.
  void ConfigureServerContext(SSL_CTX* ctx) const;

 private:
  struct Identity;  // the parsed files (tls_certificate_reloader.cc)
  explicit TlsCertificateReloader(const TlsOptions& options) : options_(options) {}

  std::shared_ptr<const Identity> Current() const;
  static int SelectCertificate(SSL* ssl, void* reloader);
  void CheckPeriodically();

  const TlsOptions options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Identity> current_ ABSL_GUARDED_BY(mu_);
  absl::Mutex stop_mu_;
  bool stopping_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread checker_;
};

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_TLS_CERTIFICATE_RELOADER_H_
